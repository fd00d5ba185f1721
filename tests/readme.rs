//! README.md holds: its sample build error is the compiler's real output
//! for `tests/readme/unknown_service.yaml`, and its relative links point
//! at files of the repository. (`.ci/readme-check` runs its shell blocks.)

use std::path::Path;

fn readme() -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md")).unwrap()
}

/// The ```text block that follows `marker` in the README, unindented.
fn text_block_after(readme: &str, marker: &str) -> String {
    let start = readme
        .find(marker)
        .unwrap_or_else(|| panic!("README.md has no `{marker}`"));
    let mut lines = readme[start..]
        .lines()
        .skip_while(|l| l.trim() != "```text");
    let fence = lines.next().expect("a ```text block follows");
    let indent = fence.len() - fence.trim_start().len();
    lines
        .take_while(|l| l.trim() != "```")
        .map(|l| l.get(indent..).unwrap_or("").trim_end())
        .collect::<Vec<_>>()
        .join("\n")
}

/// Issue 14, point 5: the sample named line 56 when the real line was
/// 103. It is now the rendered diagnostic of a fixture, compared here.
#[test]
fn the_sample_build_error_is_the_compilers_output() {
    let fixture = "tests/readme/unknown_service.yaml";
    let spec =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(fixture)).unwrap();
    let rendered = match gateway_codegen::compile_str("gateway.yaml", &spec) {
        Ok(_) => panic!("{fixture} must not compile"),
        Err(d) => d.render(),
    };
    let expected = rendered.trim_end();
    let shown = text_block_after(&readme(), "A mistake stops the build");
    assert_eq!(
        shown, expected,
        "README.md's sample error is stale; paste this block:\n{expected}"
    );
}

/// Every relative link of the README names a file in the repository (it
/// once linked `../shared/contract.md`, outside any clone).
#[test]
fn relative_links_point_into_the_repository() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let text = readme();
    let mut checked = 0;
    for (i, _) in text.match_indices("](") {
        let rest = &text[i + 2..];
        let Some(end) = rest.find(')') else { continue };
        let target = rest[..end].split('#').next().unwrap_or("");
        if target.is_empty() || target.contains("://") {
            continue;
        }
        let path = root.join(target);
        assert!(
            path.exists() && path.starts_with(root) && !target.starts_with(".."),
            "README.md links `{target}`, which is not a file of the repository"
        );
        checked += 1;
    }
    assert!(checked > 0, "no relative links found");
}
