//! Compiles the gateway spec (`gateway.yaml`, or the file named by
//! `GATEWAY_SPEC`) into `$OUT_DIR/gateway_routes.rs`.

use std::path::{Path, PathBuf};

fn main() {
    println!("cargo::rerun-if-env-changed=GATEWAY_SPEC");
    let spec = std::env::var("GATEWAY_SPEC").unwrap_or_else(|_| "gateway.yaml".into());
    println!("cargo::rerun-if-changed={spec}");
    let out = PathBuf::from(std::env::var("OUT_DIR").unwrap_or_default()).join("gateway_routes.rs");
    match gateway_codegen::compile_file(Path::new(&spec), &out) {
        Ok(compiled) => {
            for w in compiled.warnings().warnings() {
                println!("cargo::warning={}", w.one_line());
            }
        }
        Err(diags) => {
            eprintln!("{}", diags.render());
            std::process::exit(1);
        }
    }
}
