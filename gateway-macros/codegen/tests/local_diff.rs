//! The generated code is shaped for review (issue 15 §6): a policy is
//! written once, so editing it changes one hunk; routes are one item and
//! one row each, so adding a route adds lines and rewrites none.

const SPEC: &str = r#"gateway: { name: g, listen: "127.0.0.1:8000" }
services:
  a:
    url: { env: A_URL, default: "http://localhost:9001" }
    identity: { kind: none, unsigned: true }
  b:
    url: { env: B_URL, default: "http://localhost:9002" }
    identity: { kind: none, unsigned: true }
policies:
  default:
    timeout: 20s
    rate_limit: { rate: 100/min, burst: 10, key: ip }
    cors: { origins: ["*"], headers: [Content-Type] }
  slow:
    timeout: 5m
  tight:
    rate_limit: { rate: 5/s, key: ip }
routes:
  - { path: /a, service: a, upstream: /a }
  - { path: "/a/{id}", methods: [GET], service: a, upstream: "/a/{id}" }
  - { path: "/b*", service: b, upstream: "/b*", policy: slow }
  - { path: /c, service: b, upstream: /c, policy: tight }
  - { path: "/d/{*rest}", service: a, upstream: "/d/{*rest}", policy: { timeout: 1s } }
  - { path: /e, service: b, upstream: /e }
"#;

fn render(text: &str) -> String {
    gateway_codegen::compile_str("gateway.yaml", text)
        .unwrap_or_else(|d| panic!("{}", d.render()))
        .render()
}

/// One hunk of a unified diff: the old lines removed and the new lines
/// added at one place (changes up to six unchanged lines apart share a
/// hunk, as with `git diff`'s three lines of context).
#[derive(Debug, Default)]
struct Hunk {
    removed: Vec<String>,
    added: Vec<String>,
}

const CONTEXT: usize = 6;

/// The hunks between `old` and `new` (longest common subsequence of lines).
fn hunks(old: &str, new: &str) -> Vec<Hunk> {
    let (a, b): (Vec<&str>, Vec<&str>) = (old.lines().collect(), new.lines().collect());
    let mut lcs = vec![vec![0u32; b.len() + 1]; a.len() + 1];
    for i in (0..a.len()).rev() {
        for j in (0..b.len()).rev() {
            lcs[i][j] = if a[i] == b[j] {
                lcs[i + 1][j + 1] + 1
            } else {
                lcs[i + 1][j].max(lcs[i][j + 1])
            };
        }
    }
    let (mut i, mut j) = (0, 0);
    let mut out = Vec::new();
    let mut open: Option<Hunk> = None;
    let mut unchanged = 0;
    while i < a.len() || j < b.len() {
        if i < a.len() && j < b.len() && a[i] == b[j] {
            unchanged += 1;
            if unchanged > CONTEXT {
                out.extend(open.take());
            }
            i += 1;
            j += 1;
            continue;
        }
        unchanged = 0;
        if j < b.len() && (i == a.len() || lcs[i][j + 1] >= lcs[i + 1][j]) {
            open.get_or_insert_with(Hunk::default)
                .added
                .push(b[j].to_owned());
            j += 1;
        } else {
            open.get_or_insert_with(Hunk::default)
                .removed
                .push(a[i].to_owned());
            i += 1;
        }
    }
    out.extend(open);
    out
}

#[test]
fn editing_a_policy_changes_one_hunk() {
    let before = render(SPEC);
    for (what, from, to) in [
        ("default's rate limit", "rate: 100/min", "rate: 200/min"),
        (
            "default's CORS",
            "headers: [Content-Type]",
            "headers: [Content-Type, X-Id]",
        ),
        ("default's timeout", "timeout: 20s", "timeout: 25s"),
        ("another policy's timeout", "timeout: 5m", "timeout: 6m"),
        ("another policy's rate limit", "rate: 5/s", "rate: 6/s"),
    ] {
        assert!(SPEC.contains(from), "{what}");
        let after = render(&SPEC.replace(from, to));
        let diff = hunks(&before, &after);
        assert_eq!(
            diff.len(),
            1,
            "editing {what} changed {} places: {diff:#?}",
            diff.len()
        );
    }
}

#[test]
fn adding_a_route_adds_lines_and_rewrites_none() {
    let before = render(SPEC);
    let routes = SPEC.find("routes:\n").unwrap() + "routes:\n".len();
    let second = SPEC[routes..].find("\n  - ").unwrap() + routes + 1;
    for (place, at) in [("first", routes), ("middle", second), ("last", SPEC.len())] {
        let mut spec = SPEC.to_owned();
        spec.insert_str(
            at,
            "  - { path: \"/new/{id}\", methods: [POST], service: b, upstream: \"/n/{id}\" }\n",
        );
        let diff = hunks(&before, &render(&spec));
        let rewritten: Vec<&Hunk> = diff.iter().filter(|h| !h.removed.is_empty()).collect();
        assert!(
            rewritten.is_empty(),
            "a route added {place} rewrote lines: {rewritten:#?}"
        );
        assert!(!diff.is_empty());
    }
}

#[test]
fn the_hunk_finder_sees_a_rewrite() {
    // The oracle itself: a changed line is a hunk that removes and adds.
    let far = "a\nb\nc\nd\ne\nf\ng\nh\ni\nj\n";
    let diff = hunks(far, &far.replace('b', "B").replace('j', "J"));
    assert_eq!(diff.len(), 2, "{diff:#?}");
    assert_eq!(diff[0].removed, ["b"]);
    assert_eq!(diff[1].added, ["J"]);
    assert_eq!(
        hunks(far, &far.replace('b', "B").replace('d', "D")).len(),
        1
    );
}
