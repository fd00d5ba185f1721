use super::path::{check, PathError::*};
use super::*;

#[test]
fn path_sanity_table() {
    let cases: &[(&str, Result<(), PathError>)] = &[
        ("/", Ok(())),
        ("/api/v1/x", Ok(())),
        ("/a/b.c/..d/...", Ok(())),
        ("/a%20b/%41", Ok(())),
        ("/a//b", Ok(())),
        ("/a/", Ok(())),
        ("*", Err(NotAbsolute)),
        ("", Err(NotAbsolute)),
        ("api/v1", Err(NotAbsolute)),
        ("/.", Err(DotSegment)),
        ("/..", Err(DotSegment)),
        ("/a/./b", Err(DotSegment)),
        ("/a/../b", Err(DotSegment)),
        ("/a/%2e/b", Err(DotSegment)),
        ("/a/%2E%2e/b", Err(DotSegment)),
        ("/a/.%2e", Err(DotSegment)),
        ("/a/%2e.", Err(DotSegment)),
        ("/a/..", Err(DotSegment)),
        ("/a/..;/b", Err(DotSegment)),
        ("/a/.;x", Err(DotSegment)),
        ("/a/b;c", Ok(())),
        ("/a/..x;/b", Ok(())),
        ("/a%2fb", Err(EncodedSlash)),
        ("/a%2Fb", Err(EncodedSlash)),
        ("/a%5cb", Err(EncodedSlash)),
        ("/a%5Cb", Err(EncodedSlash)),
        ("/a\\b", Err(Backslash)),
        ("/a%00", Err(ControlByte)),
        ("/a%0a", Err(ControlByte)),
        ("/a%7F", Err(ControlByte)),
        ("/a\tb", Err(ControlByte)),
        ("/a\u{0}b", Err(ControlByte)),
        ("/a%", Err(BadEscape)),
        ("/a%2", Err(BadEscape)),
        ("/a%g0", Err(BadEscape)),
        ("/caf\u{e9}", Err(NonAscii)),
        // Overlong UTF-8 for `.`, `/`, `\` (issue 13 §5), any case, in
        // 2-, 3-, 4-, 5- and 6-byte forms.
        ("/a/%c0%ae%c0%ae/b", Err(OverlongUtf8)),
        ("/a/%C0%AE/b", Err(OverlongUtf8)),
        ("/a%c0%afb", Err(OverlongUtf8)),
        ("/a%c1%9cb", Err(OverlongUtf8)),
        ("/a/%e0%80%ae/b", Err(OverlongUtf8)),
        ("/a%E0%80%AFb", Err(OverlongUtf8)),
        ("/a/%f0%80%80%ae", Err(OverlongUtf8)),
        ("/a/%f8%80%80%80%ae", Err(OverlongUtf8)),
        ("/a/%fc%80%80%80%80%af", Err(OverlongUtf8)),
        ("/a%c0%80", Err(OverlongUtf8)),
        // Shortest forms, and legacy single bytes, still pass.
        ("/caf%c3%a9", Ok(())),
        ("/%e0%a4%85", Ok(())),
        ("/%f0%9f%98%80", Ok(())),
        ("/a%c0b", Ok(())),
        ("/a%c0/%ae", Ok(())),
        ("/%e9t%e9", Ok(())),
    ];
    for (path, want) in cases {
        assert_eq!(check(path), *want, "{path:?}");
    }
}

#[test]
fn lookup_checks_the_path_before_matching() {
    let router = Router::new([("/{*rest}", 1)]).unwrap();
    assert!(router.lookup("/a/b").is_ok());
    assert_eq!(
        router.lookup("/a/../b").unwrap_err(),
        Miss::BadPath(DotSegment)
    );
    let empty = Router::new([("/a", 1)]).unwrap();
    assert_eq!(empty.lookup("/b").unwrap_err(), Miss::NotFound);
}

/// Precedence among static paths, parameters and a catch-all: an exact
/// static path wins over every pattern that also matches it.
#[test]
fn static_paths_win_exactly_and_only_exactly() {
    let router = Router::new([
        ("/a/b", 1),
        ("/a/{x}", 2),
        ("/a/{x}/c", 3),
        ("/{*rest}", 4),
        ("/a", 5),
        ("/lit/{{x}}", 6),
    ])
    .unwrap();
    let hit = |p: &str| router.lookup(p).map(|m| (*m.routes, m.params.len()));
    assert_eq!(hit("/a/b"), Ok((1, 0)));
    assert_eq!(hit("/a"), Ok((5, 0)));
    assert_eq!(hit("/a/bb"), Ok((2, 1)));
    assert_eq!(hit("/a/b/c"), Ok((3, 1)));
    assert_eq!(hit("/a/"), Ok((4, 1)));
    assert_eq!(hit("/A/b"), Ok((4, 1)), "paths are case-sensitive");
    // An escaped literal brace is static to matchit, and still found.
    assert_eq!(hit("/lit/{x}"), Ok((6, 0)));
}

#[test]
fn method_selection_reports_the_union_for_allow() {
    let routes = [
        (0, Methods(Methods::GET | Methods::HEAD)),
        (1, Methods(Methods::POST)),
    ];
    let of = |r: usize| routes[r].1;
    assert_eq!(select_method(&[0, 1], &http::Method::POST, of), Ok(1));
    assert_eq!(select_method(&[0, 1], &http::Method::HEAD, of), Ok(0));
    let allow = select_method(&[0, 1], &http::Method::DELETE, of).unwrap_err();
    assert_eq!(allow.allow_header(), "GET, HEAD, POST");
    assert!(select_method(&[0], &http::Method::CONNECT, of).is_err());
}
