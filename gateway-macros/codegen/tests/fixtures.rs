//! Table-driven spec fixtures (STYLE.md, "Tests"; compare `prost-build/src/fixtures/`).
//!
//! - Every `fixtures/ok/*.yaml` compiles; its generated code (`render()`) and
//!   route table (`explain()`) are snapshotted as `ok__<stem>__render` and
//!   `ok__<stem>__explain`.
//! - Every `fixtures/warn/*.yaml` compiles (a warning never fails the
//!   build) with at least one warning; its rendered warnings are
//!   snapshotted as `warn__<stem>`, and the lines they point at are those
//!   marked `# <- warning`.
//! - Every `fixtures/err/*.yaml` is rejected; its rendered diagnostics are
//!   snapshotted as `err__<stem>`. An err fixture is named after the class of
//!   error it shows, and ends each line that a diagnostic must point at with
//!   the comment `# <- error`: the reported lines must be exactly those (so a
//!   diagnostic that falls back to `1:1`, or lands on a neighbouring line, fails
//!   before any snapshot is compared).
//!
//! Every fixture is compiled under the name `gateway.yaml`, so snapshots do not
//! depend on where the repository is checked out.
//!
//! To add a fixture: write the YAML, run
//! `INSTA_UPDATE=always cargo test -p gateway-codegen --test fixtures` (or
//! `cargo insta test --review`), read the new snapshot, and commit both. In CI
//! (`CI=true`) insta writes nothing, so a missing or stale snapshot fails, and
//! `every_snapshot_has_a_fixture` fails on a snapshot whose fixture is gone.

use std::collections::BTreeSet;
use std::fs;
use std::panic::{self, AssertUnwindSafe};
use std::path::{Path, PathBuf};

/// The name every fixture is compiled under.
const FILE: &str = "gateway.yaml";

/// Ends a line of an err fixture that a diagnostic must point at.
const MARKER: &str = "# <- error";

/// Ends a line of a warn fixture that a warning must point at.
const WARN_MARKER: &str = "# <- warning";

/// Err fixtures whose diagnostics do not (yet) point at every marked line.
/// Each entry is a codegen bug, named with the reason. The test fails once a
/// listed fixture does point at its marked lines, so that the entry is removed
/// together with the fix.
const WRONG_LINES: &[(&str, &str)] = &[];

/// Values that must never appear in a diagnostic's message or help, only in
/// the excerpt of the spec line: they may be secrets.
const NEVER_REPEATED: &[(&str, &str)] = &[
    ("literal_secret_env", "s3cr3t-value"),
    ("url_with_credentials", "hunter2"),
];

fn fixture_dir(kind: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(kind)
}

/// The `*.yaml` files of `fixtures/<kind>/`, sorted, with their stems.
fn fixtures(kind: &str) -> Vec<(String, PathBuf)> {
    let dir = fixture_dir(kind);
    let mut out: Vec<(String, PathBuf)> = fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()))
        .map(|entry| entry.expect("directory entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .map(|p| {
            let stem = p
                .file_stem()
                .expect("file stem")
                .to_string_lossy()
                .into_owned();
            (stem, p)
        })
        .collect();
    out.sort();
    assert!(!out.is_empty(), "no fixtures in {}", dir.display());
    out
}

/// Insta settings for one fixture: the snapshot records the fixture's path
/// and its leading comment, so a reviewer sees what it is about.
fn settings(path: &Path, text: &str) -> insta::Settings {
    let mut s = insta::Settings::clone_current();
    s.set_input_file(path);
    s.set_omit_expression(true);
    let about: Vec<&str> = text
        .lines()
        .map_while(|l| l.strip_prefix('#'))
        .map(str::trim)
        .take_while(|l| !l.is_empty())
        .collect();
    if !about.is_empty() {
        s.set_description(about.join(" "));
    }
    s
}

/// Runs `check` on every fixture of `kind`, then fails naming every fixture
/// that failed, so that one broken fixture does not hide the others.
fn for_each_fixture(kind: &str, check: impl Fn(&str, &Path, &str)) {
    let mut failed = Vec::new();
    for (stem, path) in fixtures(kind) {
        let text = fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
        let run = panic::catch_unwind(AssertUnwindSafe(|| {
            settings(&path, &text).bind(|| check(&stem, &path, &text));
        }));
        if run.is_err() {
            failed.push(stem);
        }
    }
    assert!(
        failed.is_empty(),
        "{} {kind} fixture(s) failed: {}",
        failed.len(),
        failed.join(", ")
    );
}

#[test]
fn ok_fixtures_compile() {
    for_each_fixture("ok", |stem, _, text| {
        let compiled = gateway_codegen::compile_str(FILE, text)
            .unwrap_or_else(|d| panic!("ok/{stem}.yaml was rejected:\n{}", d.render()));
        let render = compiled.render();
        assert!(
            render
                .starts_with("// @generated by gateway-codegen from gateway.yaml. Do not edit.\n"),
            "ok/{stem}.yaml: render() lacks the @generated header"
        );
        // `render()` falls back to unformatted tokens when they do not parse;
        // a checked spec must always give valid Rust.
        if let Err(e) = syn::parse_file(&render) {
            panic!("ok/{stem}.yaml: render() is not valid Rust: {e}\n{render}");
        }
        insta::assert_snapshot!(format!("ok__{stem}__render"), render);
        insta::assert_snapshot!(format!("ok__{stem}__explain"), compiled.explain());
    });
}

#[test]
fn err_fixtures_are_rejected() {
    for_each_fixture("err", |stem, _, text| {
        let diags = match gateway_codegen::compile_str(FILE, text) {
            Ok(_) => panic!("err/{stem}.yaml compiled, but it must be rejected"),
            Err(d) => d,
        };
        let rendered = diags.render();
        check_lines(stem, text, &rendered, MARKER);
        check_not_repeated(stem, &rendered);
        insta::assert_snapshot!(format!("err__{stem}"), rendered);
    });
}

#[test]
fn warn_fixtures_compile_with_warnings() {
    for_each_fixture("warn", |stem, path, text| {
        let compiled = gateway_codegen::compile_str(FILE, text)
            .unwrap_or_else(|d| panic!("warn/{stem}.yaml was rejected:\n{}", d.render()));
        let warnings = compiled.warnings();
        assert!(
            !warnings.has_errors() && warnings.warnings().count() == warnings.0.len(),
            "warn/{stem}.yaml: a compiled spec carries only warnings"
        );
        let rendered = warnings.render();
        check_lines(stem, text, &rendered, WARN_MARKER);
        insta::assert_snapshot!(format!("warn__{stem}"), rendered);
        // build.rs's path: the code is written, the warnings come back
        // with it, one line each for `cargo::warning=`.
        let out = std::env::temp_dir().join(format!(
            "gateway-codegen-warn-{stem}-{}.rs",
            std::process::id()
        ));
        let built = gateway_codegen::compile_file(path, &out)
            .unwrap_or_else(|d| panic!("warn/{stem}.yaml: compile_file failed:\n{}", d.render()));
        let written = fs::read_to_string(&out).expect("compile_file wrote the code");
        let _ = fs::remove_file(&out);
        assert!(written.starts_with("// @generated by gateway-codegen"));
        for w in built.warnings().warnings() {
            let line = w.one_line();
            assert!(
                !line.contains('\n') && line.contains(": warning: ") && line.contains("(help: "),
                "{line}"
            );
        }
        assert_eq!(built.warnings().0.len(), warnings.0.len());
    });
}

/// `gateway.yaml:LINE:COL:` headers of a rendered diagnostics list.
fn reported_positions(rendered: &str) -> Vec<(usize, usize)> {
    rendered
        .lines()
        .filter_map(|l| l.strip_prefix("gateway.yaml:"))
        .map(|rest| {
            let mut it = rest.splitn(3, ':');
            let mut num = || -> usize {
                it.next()
                    .and_then(|n| n.parse().ok())
                    .unwrap_or_else(|| panic!("malformed diagnostic header `gateway.yaml:{rest}`"))
            };
            (num(), num())
        })
        .collect()
}

/// The reported lines are the lines marked `marker`, and none is line 1
/// unless line 1 is marked.
fn check_lines(stem: &str, text: &str, rendered: &str, marker: &str) {
    let positions = reported_positions(rendered);
    assert!(
        !positions.is_empty(),
        "{stem}.yaml: no located diagnostic in:\n{rendered}"
    );
    let marked: BTreeSet<usize> = text
        .lines()
        .enumerate()
        .filter(|(_, l)| l.trim_end().ends_with(marker))
        .map(|(i, _)| i + 1)
        .collect();
    assert!(
        !marked.is_empty(),
        "{stem}.yaml marks no line with `{marker}`"
    );
    for &(line, col) in &positions {
        assert!(
            line != 1 || marked.contains(&1),
            "{stem}.yaml: a diagnostic points at 1:{col}, a fallback position:\n{rendered}"
        );
    }
    let reported: BTreeSet<usize> = positions.iter().map(|&(l, _)| l).collect();
    let known_wrong = WRONG_LINES.iter().find(|(s, _)| *s == stem);
    match known_wrong {
        None => assert_eq!(
            reported, marked,
            "{stem}.yaml: reported lines (left) differ from the lines marked `{marker}` (right):\n{rendered}"
        ),
        Some((_, why)) => assert_ne!(
            reported, marked,
            "err/{stem}.yaml now points at its marked lines; remove it from WRONG_LINES ({why})"
        ),
    }
}

/// Message and help lines never repeat a value that may be a secret.
fn check_not_repeated(stem: &str, rendered: &str) {
    for (_, value) in NEVER_REPEATED.iter().filter(|(s, _)| *s == stem) {
        let leaked: Vec<&str> = rendered
            .lines()
            .filter(|l| l.starts_with("gateway.yaml:") || l.trim_start().starts_with("= help:"))
            .filter(|l| l.contains(value))
            .collect();
        assert!(
            leaked.is_empty(),
            "err/{stem}.yaml: the literal value `{value}` is repeated outside the excerpt: {leaked:?}"
        );
        assert!(
            rendered.contains(value),
            "err/{stem}.yaml: `{value}` should still be visible in the excerpt"
        );
    }
}

/// A snapshot whose fixture was deleted or renamed would otherwise linger
/// unnoticed, since insta only compares the snapshots that tests ask for.
#[test]
fn every_snapshot_has_a_fixture() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/snapshots");
    let ok: BTreeSet<String> = fixtures("ok").into_iter().map(|(s, _)| s).collect();
    let err: BTreeSet<String> = fixtures("err").into_iter().map(|(s, _)| s).collect();
    let warn: BTreeSet<String> = fixtures("warn").into_iter().map(|(s, _)| s).collect();
    let entries = match fs::read_dir(&dir) {
        Ok(entries) => entries,
        // No snapshots yet: the other tests fail on every missing one.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return,
        Err(e) => panic!("cannot read {}: {e}", dir.display()),
    };
    let mut orphans = Vec::new();
    for entry in entries {
        let name = entry
            .expect("directory entry")
            .file_name()
            .to_string_lossy()
            .into_owned();
        let Some(snap) = name
            .strip_prefix("fixtures__")
            .and_then(|n| n.strip_suffix(".snap"))
        else {
            continue;
        };
        let known = if let Some(rest) = snap.strip_prefix("ok__") {
            ["__render", "__explain"]
                .iter()
                .any(|sfx| rest.strip_suffix(sfx).is_some_and(|s| ok.contains(s)))
        } else if let Some(stem) = snap.strip_prefix("err__") {
            err.contains(stem)
        } else if let Some(stem) = snap.strip_prefix("warn__") {
            warn.contains(stem)
        } else {
            false
        };
        if !known {
            orphans.push(name);
        }
    }
    assert!(
        orphans.is_empty(),
        "snapshots without a fixture (delete them): {}",
        orphans.join(", ")
    );
}
