//! The spec compiler (`gateway_codegen::compile_str`) on arbitrary YAML.
//!
//! Oracles:
//! - it never panics, whatever the text;
//! - an error is located: at least one error diagnostic, each rendered as
//!   `spec.yaml:LINE:COL: ...` with LINE and COL at least 1 and LINE at
//!   most one past the last line (as YAML counts lines), and the summary
//!   counts them;
//! - a spec that compiles yields generated items that parse as a Rust file
//!   (`emit::render` calls that unreachable otherwise), a route table
//!   (`explain`) and located warnings, and compiling it again gives the
//!   same code.
#![no_main]

use gateway_codegen::{compile_str, Diagnostic, Diagnostics, Severity};
use libfuzzer_sys::fuzz_target;

const FILE: &str = "spec.yaml";

/// Lines as the YAML parser counts them: `\n`, `\r\n` and a lone `\r`
/// each end one (YAML 1.1 also counts NEL, LS and PS).
fn yaml_lines(text: &str) -> usize {
    let breaks = text
        .replace("\r\n", "\n")
        .chars()
        .filter(|c| matches!(c, '\n' | '\r' | '\u{85}' | '\u{2028}' | '\u{2029}'))
        .count();
    breaks + 1
}

fn assert_located(d: &Diagnostic, text: &str) {
    let lines = yaml_lines(text);
    assert_eq!(d.file, FILE);
    assert!(d.line >= 1 && d.column >= 1, "unlocated: {d}");
    assert!(d.line <= lines + 1, "line {} of {lines}: {d}", d.line);
    let rendered = d.to_string();
    let head = format!("{FILE}:{}:{}: ", d.line, d.column);
    assert!(rendered.starts_with(&head), "{rendered}");
}

fn assert_all_located(diags: &Diagnostics, text: &str) {
    for d in &diags.0 {
        assert_located(d, text);
    }
}

fuzz_target!(|data: &[u8]| {
    // YAML is text; invalid UTF-8 is replaced the way an editor would.
    let text = String::from_utf8_lossy(data);
    match compile_str(FILE, &text) {
        Err(diags) => {
            assert!(diags.has_errors(), "refused without an error: {diags:?}");
            assert_all_located(&diags, &text);
            let errors = diags
                .0
                .iter()
                .filter(|d| d.severity == Severity::Error)
                .count();
            let rendered = diags.render();
            let s = if errors == 1 { "" } else { "s" };
            assert!(
                rendered.ends_with(&format!("{errors} error{s} in the gateway spec\n")),
                "{rendered}"
            );
        }
        Ok(compiled) => {
            assert!(!compiled.warnings().has_errors());
            assert_all_located(compiled.warnings(), &text);
            let tokens = compiled.tokens();
            if let Err(e) = syn::parse2::<syn::File>(tokens.clone()) {
                panic!("generated items do not parse: {e}\n{tokens}");
            }
            let table = compiled.explain();
            for r in &compiled.checked().routes {
                assert!(
                    table.contains(&r.pattern_text),
                    "{} missing from\n{table}",
                    r.pattern_text
                );
            }
            let again = compile_str(FILE, &text).expect("compiles twice");
            assert_eq!(
                again.tokens().to_string(),
                tokens.to_string(),
                "not deterministic"
            );
        }
    }
});
