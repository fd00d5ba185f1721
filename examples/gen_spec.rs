//! Writes a generated gateway spec of N routes to stdout, for the dispatch
//! benchmarks and the build-cost figures in BENCHMARKS.md:
//!
//! `cargo run --example gen_spec -- 1000 > /tmp/routes-1000.yaml`

fn main() {
    let n = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(1000);
    print!("{}", generated_spec(n));
}

/// A generated spec of `n` routes on 20 services, in realistic shapes that
/// repeat every five routes: a static path, one parameter, two parameters,
/// a catch-all and a prefix route, under three API versions.
pub fn generated_spec(n: usize) -> String {
    let mut y =
        String::from("gateway:\n  name: generated\n  listen: \"127.0.0.1:8000\"\n\nservices:\n");
    for s in 0..20 {
        y.push_str(&format!(
            "  svc{s}:\n    url: {{ env: SVC{s}_URL, default: \"http://localhost:{}\" }}\n    identity: {{ kind: none, unsigned: true }}\n",
            9000 + s
        ));
    }
    y.push_str("\nroutes:\n");
    for i in 0..n {
        let base = format!("/api/v{}/res{i}", 1 + i % 3);
        let (path, up) = match i % 5 {
            0 => (base, format!("/res{i}")),
            1 => (format!("{base}/{{id}}"), format!("/res{i}/{{id}}")),
            2 => (
                format!("{base}/{{id}}/items/{{item}}"),
                format!("/res{i}/{{id}}/items/{{item}}"),
            ),
            3 => (
                format!("{base}/files/{{*path}}"),
                "/files/{*path}".to_owned(),
            ),
            _ => (format!("{base}*"), format!("/res{i}*")),
        };
        y.push_str(&format!(
            "  - path: {path}\n    service: svc{}\n    upstream: {up}\n",
            i % 20
        ));
    }
    y
}
