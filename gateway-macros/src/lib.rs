//! Proc-macros over `gateway-codegen`: compile a gateway spec file into the
//! same items `build.rs` generates for `gateway.yaml`, so tests and
//! benchmarks can build other specs next to the bundled one.
//!
//! ```text
//! mod fetch_service {
//!     gateway_macros::spec!("tests/specs/fetch_service.yaml");
//! }
//! let gw = gateway::server::Gateway::<fetch_service::Spec>::new(&env)?;
//! ```
#![deny(missing_docs)]
#![forbid(unsafe_code)]

use proc_macro::TokenStream;
use quote::quote;
use syn::{parse_macro_input, LitStr};

/// Compiles the spec file at the given path (relative to the calling
/// crate's `Cargo.toml`) into a `Spec`, a `RouteId` enum, route constants
/// and chains. A spec error is a compile error carrying the located
/// diagnostics; editing the file recompiles the caller.
#[proc_macro]
pub fn spec(input: TokenStream) -> TokenStream {
    let lit = parse_macro_input!(input as LitStr);
    expand(&lit).unwrap_or_else(|e| e.to_compile_error()).into()
}

fn expand(lit: &LitStr) -> syn::Result<proc_macro2::TokenStream> {
    let rel = lit.value();
    if std::path::Path::new(&rel).is_absolute() {
        return Err(syn::Error::new_spanned(
            lit,
            "spec paths are relative to the crate's Cargo.toml, so builds do not depend on the machine",
        ));
    }
    let dir = std::env::var("CARGO_MANIFEST_DIR").map_err(|_| {
        syn::Error::new_spanned(lit, "CARGO_MANIFEST_DIR is not set; build with cargo")
    })?;
    let path = std::path::Path::new(&dir).join(&rel);
    let text = std::fs::read_to_string(&path)
        .map_err(|e| syn::Error::new_spanned(lit, format!("cannot read spec `{rel}`: {e}")))?;
    let compiled = gateway_codegen::compile_str(&rel, &text).map_err(|d| {
        syn::Error::new_spanned(lit, format!("invalid gateway spec\n{}", d.render()))
    })?;
    // Stable Rust gives a proc-macro no warning of its own, and a lint
    // trick would fail `-D warnings` builds; cargo shows what the macro
    // prints when the caller is compiled.
    for w in compiled.warnings().warnings() {
        eprintln!("{w}");
    }
    let items = compiled.tokens();
    let abs = path.display().to_string();
    if std::env::var_os("GATEWAY_CODEGEN_DEBUG").is_some() {
        eprintln!("{}", compiled.render());
    }
    Ok(quote! {
        // Makes cargo recompile the caller when the spec file changes.
        const _: &str = include_str!(#abs);
        #items
    })
}
