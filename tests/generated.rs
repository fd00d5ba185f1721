//! Reviewable routing: the code generated from `gateway.yaml` and its route
//! table are snapshots, so a pull request that edits the spec shows exactly
//! what routing changed. Accept an intended change with
//! `INSTA_UPDATE=always cargo test --test generated` (or `cargo insta review`).

fn bundled() -> gateway_codegen::Compiled {
    let text =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/gateway.yaml")).unwrap();
    gateway_codegen::compile_str("gateway.yaml", &text).unwrap()
}

#[test]
fn generated_routing_code() {
    insta::assert_snapshot!("gateway_routes.rs", bundled().render());
}

#[test]
fn route_table() {
    insta::assert_snapshot!("route_table", bundled().explain());
}

/// The binary was built from the same spec this test reads (unless
/// `GATEWAY_SPEC` points elsewhere), and the code `build.rs` wrote is the
/// code the snapshot shows.
#[test]
fn build_output_matches_the_snapshot_source() {
    if std::env::var_os("GATEWAY_SPEC").is_some() {
        return;
    }
    let built = std::fs::read_to_string(concat!(env!("OUT_DIR"), "/gateway_routes.rs")).unwrap();
    assert_eq!(built, bundled().render());
}

#[test]
fn gateway_routes_prints_the_table() {
    if std::env::var_os("GATEWAY_SPEC").is_some() {
        return;
    }
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_gateway"))
        .arg("routes")
        .output()
        .unwrap();
    assert!(out.status.success());
    assert_eq!(String::from_utf8(out.stdout).unwrap(), bundled().explain());
}

/// The specs the README runs (`examples/*.yaml`) stay valid.
#[test]
fn example_specs_compile() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/examples");
    let mut n = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "yaml") {
            let text = std::fs::read_to_string(&path).unwrap();
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            if let Err(e) = gateway_codegen::compile_str(&name, &text) {
                panic!("{}", e.render());
            }
            n += 1;
        }
    }
    assert!(n > 0, "no example spec found in {dir}");
}
