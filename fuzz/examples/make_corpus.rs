//! Writes the seed corpora (`fuzz/corpus/<target>/`) and the spec
//! dictionary (`fuzz/dicts/spec_compile.dict`) from the repository's own
//! specs, fixtures and test vectors:
//!
//! ```sh
//! cd fuzz && cargo run --example make_corpus
//! ```
//!
//! The output is committed; rerun after adding specs or vectors. Existing
//! seed files are replaced, nothing else is deleted.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};

use gateway_codegen::validate::pattern::Seg;
use gateway_fuzz::{credentials, dispatch, encode, hmac, version};
use serde_json::Value;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("fuzz/ has a parent")
        .to_owned()
}

struct Out {
    dir: PathBuf,
    count: usize,
}

impl Out {
    fn new(target: &str) -> Self {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("corpus")
            .join(target);
        fs::create_dir_all(&dir).expect("create corpus dir");
        Out { dir, count: 0 }
    }

    fn write(&mut self, name: &str, data: &[u8]) {
        let name: String = name
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        fs::write(self.dir.join(format!("seed-{name}")), data).expect("write seed");
        self.count += 1;
    }
}

/// Every spec YAML of the repository, sorted: codegen fixtures, test specs
/// and the bundled `gateway.yaml`.
fn spec_files() -> Vec<PathBuf> {
    let root = repo();
    let mut files = BTreeSet::new();
    for dir in [
        "gateway-macros/codegen/tests/fixtures/ok",
        "gateway-macros/codegen/tests/fixtures/err",
        "tests/specs",
    ] {
        for e in fs::read_dir(root.join(dir)).expect("read spec dir") {
            let p = e.expect("dir entry").path();
            if p.extension().is_some_and(|x| x == "yaml") {
                files.insert(p);
            }
        }
    }
    files.insert(root.join("gateway.yaml"));
    files.into_iter().collect()
}

fn spec_compile() -> usize {
    let mut out = Out::new("spec_compile");
    let mut keys = BTreeSet::new();
    for p in spec_files() {
        let text = fs::read_to_string(&p).expect("read spec");
        let rel = p
            .strip_prefix(repo())
            .expect("in repo")
            .display()
            .to_string();
        out.write(&rel.replace(".yaml", ""), text.as_bytes());
        for line in text.lines() {
            let t = line.trim_start().trim_start_matches("- ");
            if let Some((k, _)) = t.split_once(':') {
                if !k.is_empty() && k.bytes().all(|b| b.is_ascii_lowercase() || b == b'_') {
                    keys.insert(format!("{k}:"));
                }
            }
        }
    }
    // A table the compiler must refuse (fuzz/dispatch found it accepted).
    let dotted = dispatch::generated_yaml("/a/{x}>/b/..;v/{x}").expect("a table");
    out.write("generated-dot-segment-template", dotted.as_bytes());
    let mut dict = String::from("# YAML keys of every spec in the repository (make_corpus).\n");
    for k in &keys {
        dict.push_str(&format!("\"{k}\"\n"));
    }
    for extra in [
        "{*rest}",
        "{id}",
        "*",
        "env:",
        "default:",
        "kind: hmac",
        "kind: jwt",
        "kind: none",
        "unsigned: true",
        "[GET, POST]",
        "30s",
        "1h",
        "\"http://localhost:1\"",
        "%2e",
        "..",
    ] {
        dict.push_str(&format!("{:?}\n", extra));
    }
    let dicts = Path::new(env!("CARGO_MANIFEST_DIR")).join("dicts");
    fs::create_dir_all(&dicts).expect("dicts dir");
    fs::write(dicts.join("spec_compile.dict"), dict).expect("write dict");
    out.count
}

fn refs(f: &[Vec<u8>]) -> Vec<&[u8]> {
    f.iter().map(Vec::as_slice).collect()
}

fn hmac_seeds() -> usize {
    let mut out = Out::new("hmac_verify");
    let text = fs::read_to_string(repo().join("tests/vectors/hmac.json")).expect("vectors");
    let json: Value = serde_json::from_str(&text).expect("vectors are JSON");
    let s = |v: &Value, k: &str| v[k].as_str().unwrap_or("").to_owned();
    for (i, v) in json["vectors"]
        .as_array()
        .expect("vectors")
        .iter()
        .enumerate()
    {
        let v2 = s(v, "version") == "v2";
        let pq = if v2 {
            s(v, "path_and_query")
        } else {
            s(v, "path")
        };
        let ts = s(v, "timestamp");
        let kind = if v2 { hmac::KIND_V2 } else { hmac::KIND_V1 };
        let mut fields: Vec<Vec<u8>> = vec![Vec::new(); hmac::FIELDS];
        fields[hmac::METHOD] = s(v, "method").into_bytes();
        fields[hmac::PATH_AND_QUERY] = pq.into_bytes();
        fields[hmac::NOW] = ts.clone().into_bytes();
        fields[hmac::TIMESTAMP] = ts.into_bytes();
        fields[hmac::NONCE] = s(v, "nonce").into_bytes();
        fields[hmac::TENANT] = s(v, "tenant").into_bytes();
        fields[hmac::SECRET] = s(v, "secret").into_bytes();
        fields[hmac::BODY] = s(v, "body").into_bytes();
        // Signed by the target, as the gateway would (accepted).
        out.write(&format!("vector{i}-signed"), &encode(kind, &refs(&fields)));
        // The vector's own header, as received from its service (refused:
        // the verifier knows only the gateway).
        let mut raw = fields.clone();
        raw[hmac::EXTRA] = format!(
            "x-internal-service-auth: {}\rx-service-name: {}\rx-internal-timestamp: {}\rx-internal-nonce: {}\rx-tenant-id: {}",
            s(v, "header"),
            if s(v, "service").is_empty() { "billing".into() } else { s(v, "service") },
            s(v, "timestamp"),
            s(v, "nonce"),
            s(v, "tenant"),
        )
        .into_bytes();
        out.write(
            &format!("vector{i}-raw"),
            &encode(hmac::KIND_RAW, &refs(&raw)),
        );
        // Each covered change, for the first v1 and v2 vectors.
        if i == 0 || i == 3 {
            for m in 1..8u8 {
                let ctl = kind | (m << hmac::MUTATION_SHIFT);
                out.write(
                    &format!("vector{i}-mutation{m}"),
                    &encode(ctl, &refs(&fields)),
                );
            }
            let rot = kind | hmac::ROTATION;
            out.write(&format!("vector{i}-rotation"), &encode(rot, &refs(&fields)));
            let only = kind | hmac::V2_ONLY;
            out.write(&format!("vector{i}-v2-only"), &encode(only, &refs(&fields)));
            let mut stale = fields.clone();
            stale[hmac::NOW] = b"1700000061".to_vec();
            out.write(&format!("vector{i}-stale"), &encode(kind, &refs(&stale)));
            let mut late = fields.clone();
            late[hmac::NOW] = b"18446744073709551615".to_vec();
            late[hmac::TIMESTAMP] = b"18446744073709551610".to_vec();
            out.write(
                &format!("vector{i}-end-of-time"),
                &encode(kind, &refs(&late)),
            );
            let mut wide = fields.clone();
            wide[hmac::WINDOW] = b"18446744073709551615".to_vec();
            out.write(
                &format!("vector{i}-widest-window"),
                &encode(kind, &refs(&wide)),
            );
            if v2 {
                let mut utf8 = fields.clone();
                utf8[hmac::TENANT] = "Zürich".as_bytes().to_vec();
                out.write("vector3-utf8-tenant", &encode(kind, &refs(&utf8)));
                let mut unsigned = fields.clone();
                unsigned[hmac::TENANT] = Vec::new();
                unsigned[hmac::EXTRA] = b"x-tenant-id: \xffacme".to_vec();
                out.write("vector3-unsigned-tenant", &encode(kind, &refs(&unsigned)));
            }
            let mut shadow = fields.clone();
            shadow[hmac::EXTRA] = b"x-internal-service-auth: v2=00\rx-tenant-id: other".to_vec();
            out.write(
                &format!("vector{i}-extra-first"),
                &encode(kind | hmac::EXTRA_FIRST, &refs(&shadow)),
            );
        }
        if i == 3 {
            for (name, jwt) in [
                ("fresh", "0,120"),
                ("expired", "-400,300"),
                ("too-long", "0,301"),
                ("issued-ahead", "100,60"),
            ] {
                let mut j = fields.clone();
                j[hmac::JWT] = jwt.as_bytes().to_vec();
                out.write(&format!("jwt-{name}"), &encode(hmac::KIND_JWT, &refs(&j)));
            }
            let mut late = fields.clone();
            late[hmac::NOW] = b"18446744073709551605".to_vec();
            late[hmac::JWT] = b"0,5".to_vec();
            out.write("jwt-end-of-time", &encode(hmac::KIND_JWT, &refs(&late)));
            let mut j = fields.clone();
            j[hmac::JWT] = b"0,120".to_vec();
            let ctl = hmac::KIND_JWT | (7 << hmac::MUTATION_SHIFT);
            out.write("jwt-wrong-secret", &encode(ctl, &refs(&j)));
        }
    }
    out.count
}

/// Example request targets for every route of a spec: each parameter
/// filled, prefixes with and without a rest, plus a query.
fn example_targets(spec: &Path) -> Vec<String> {
    let text = fs::read_to_string(spec).expect("read spec");
    let compiled = gateway_codegen::compile_str("spec.yaml", &text).expect("spec compiles");
    let mut out = Vec::new();
    for r in &compiled.checked().routes {
        let mut base = String::new();
        for seg in &r.pattern.segments {
            base.push('/');
            match seg {
                Seg::Lit(l) => base.push_str(l),
                Seg::Param(_) => base.push_str("p%20q"),
                Seg::CatchAll(_) => base.push_str("a/b.c/d"),
            }
        }
        if r.pattern.trailing_slash || base.is_empty() {
            base.push('/');
        }
        if r.pattern.prefix {
            out.push(format!("{base}/deeper/still?x=1"));
            out.push(format!("{base}/"));
        }
        out.push(base);
    }
    out
}

fn dispatch_seeds() -> usize {
    let mut out = Out::new("dispatch");
    let tables = [
        (0u8, "gateway.yaml"),
        (1, "tests/specs/edge_cases.yaml"),
        (2, "tests/specs/fetch_service.yaml"),
        (3, "tests/specs/versions.yaml"),
        (
            4,
            "gateway-macros/codegen/tests/fixtures/ok/prefix_and_catch_all.yaml",
        ),
        (
            5,
            "gateway-macros/codegen/tests/fixtures/ok/param_beside_catch_all.yaml",
        ),
    ];
    for (table, file) in tables {
        let targets = example_targets(&repo().join(file));
        // A few per table keep the corpus small; the fuzzer finds the rest.
        let step = (targets.len() / 6).max(1);
        for (i, t) in targets.iter().step_by(step).enumerate() {
            let method = if i % 2 == 0 { "GET" } else { "POST" };
            let data = encode(table, &[method.as_bytes(), b"", t.as_bytes()]);
            out.write(&format!("t{table}-{i}"), &data);
        }
    }
    // Path sanity (400s) on the bundled table.
    for (i, bad) in [
        "/api/v1/conversations/%2e%2e/x",
        "/api/v1/conversations/a%2fb",
        "/api/v1/../x",
        "/api/v1/conversations/..;x/y",
        "/api/v1/conversations/.%2E/",
        "/api/v1/conversations/a%5cb",
        "/api/v1/conversations/%00",
        "/api/v1/conversations/%zz",
        "/api/v1/conversations//x",
        "no-slash",
    ]
    .iter()
    .enumerate()
    {
        out.write(
            &format!("bad{i}"),
            &encode(0, &[b"GET", b"", bad.as_bytes()]),
        );
    }
    // Generated tables (the routing_props laws).
    for (i, (desc, target)) in [
        ("/a/{x} /a/b* /c/{*rest}", "/a/b/c"),
        ("/ab/{p}/c /ab/{*rest} /ab/c", "/ab/q/c"),
        ("/{p0}/x/", "/q/x/"),
        ("/a*>/* /a/b", "/a/b/"),
        ("/x/{a}/y/{b}>/y/{b}/x/{a}", "/x/1/y/2?q=3"),
        ("/*>/root*", "/deep/er"),
        // Empty segments: below a catch-all or prefix base they match
        // neither, deeper down they are forwarded.
        ("/x/{*rest} /x/{p}", "/x//y"),
        ("/x* /x/a", "/x//y"),
        ("/*>/root* /a/{p}", "//"),
        ("/x/{*rest}>/u/{*rest} /x/y*", "/x/z//w/"),
    ]
    .iter()
    .enumerate()
    {
        let yaml = dispatch::generated_yaml(desc).expect("a table");
        if let Err(e) = gateway_codegen::compile_str("generated.yaml", &yaml) {
            panic!("generated seed {desc:?} does not compile:\n{e}");
        }
        let data = encode(6, &[b"GET", desc.as_bytes(), target.as_bytes()]);
        out.write(&format!("generated{i}"), &data);
    }
    out.count
}

fn credential_seeds() -> usize {
    let mut out = Out::new("credentials");
    let cases: &[(u8, &str, &str, &str)] = &[
        (
            0,
            "",
            "Bearer abc.def.ghi",
            "aegis_token=cookie.jwt; theme=dark",
        ),
        (
            0,
            "",
            "",
            "theme=dark; aegis_token=cookie.jwt\raegis_token=second",
        ),
        (
            credentials::NO_AUTHORIZATION,
            "",
            "",
            "a=1; aegis_token=x; b=2",
        ),
        (1, "", "bearer   spaced  ", "token=t; token=u"),
        (1, "", "Basic dXNlcjpwdw==", "token=t"),
        (2, "", "Bearer", "a=; =a; a"),
        (3, "", "BEARER x", "jwt.v2=1;jwt.v2=2;;  ;"),
        (7, "custom-name", "Token x", "custom-name=v\rother=\u{ff}"),
        (7, "x", "Bearer\tx", " x = y ; x=z"),
        (
            credentials::SECOND_AUTHORIZATION,
            "",
            "Basic a",
            "aegis_token=j",
        ),
        (credentials::NO_COOKIE_NAME | 4, "", "", "T-1=abc"),
    ];
    for (i, (ctl, name, auth, cookies)) in cases.iter().enumerate() {
        let data = encode(
            *ctl,
            &[name.as_bytes(), auth.as_bytes(), cookies.as_bytes()],
        );
        out.write(&format!("case{i}"), &data);
    }
    out.count
}

fn version_seeds() -> usize {
    let mut out = Out::new("version_negotiation");
    let cases: &[(u8, &[u8], &str)] = &[
        (version::FROM_SPEC, b"", ""),
        (version::FROM_SPEC, b"", "v:2024-06-01"),
        (
            version::FROM_SPEC,
            b"",
            "a:application/vnd.acme.v2024-06-01+json",
        ),
        (version::FROM_SPEC, b"", "a:application/json; version=1"),
        (
            version::FROM_SPEC,
            b"",
            "a:application/vnd.acme.v1+json\rv:2",
        ),
        (version::FROM_SPEC | 2, b"", "v:1\rv: 1 "),
        (version::FROM_SPEC, b"", "v:1\rv:2"),
        (version::FROM_SPEC, b"", "a:application/vnd.acme.v9+json"),
        (version::FROM_SPEC, b"", "a:application/json, */*;q=0.1"),
        (
            0,
            &[0, 0, 3, 1],
            "a:application/vnd.aegis.v1+json;q=0.5, application/json;version=2024-06-01;q=0.9",
        ),
        (0, &[0, 0, 3, 1], "a:application/vnd.AEGIS.v1+JSON"),
        (
            0,
            &[0, 0, 3, 1],
            "a:application/vnd.aegis.v1+json; version=2",
        ),
        (0, &[0, 0, 3, 1], "a:application/vnd.aegis.v1+json;q=0"),
        (
            4,
            &[4, 3, 9, 2],
            "a:application/vnd.x.v1.v1.0+json, application/vnd.x.v1.v01+json;q=0.999",
        ),
        (
            6,
            &[2, 5, 3, 0],
            "a:application/vnd.a.b.vA+json\ra:application/vnd.a.b.va+json",
        ),
        (
            8,
            &[5, 8, 4, 3],
            "a:application/vnd.v.vjson+json;q=0.0\ra:text/html;version=10",
        ),
    ];
    for (i, (ctl, set, headers)) in cases.iter().enumerate() {
        let data = encode(*ctl, &[set, headers.as_bytes()]);
        out.write(&format!("case{i}"), &data);
    }
    out.count
}

fn main() {
    let counts = [
        ("hmac_verify", hmac_seeds()),
        ("dispatch", dispatch_seeds()),
        ("spec_compile", spec_compile()),
        ("credentials", credential_seeds()),
        ("version_negotiation", version_seeds()),
    ];
    for (target, n) in counts {
        println!("corpus/{target}: {n} seeds");
    }
}
