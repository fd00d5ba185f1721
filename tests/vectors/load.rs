//! The HMAC test vectors of `tests/vectors/hmac.json`, read once for the
//! gateway's tests (`tests/hmac_vectors.rs`) and the `gateway-service`
//! crate's (`gateway-service/tests/vectors.rs`), which include this file.

use serde_json::Value;

/// One vector: every field as a string (`""` when the vector has none).
#[derive(Debug)]
pub struct Vector {
    pub version: String,
    pub note: String,
    pub secret: String,
    pub method: String,
    pub path: String,
    pub path_and_query: String,
    pub timestamp: String,
    pub nonce: String,
    pub service: String,
    pub tenant: String,
    pub body: String,
    pub body_sha256: String,
    pub canonical: String,
    pub header: String,
}

/// Every vector of the file, checked to be complete.
pub fn vectors() -> Vec<Vector> {
    let file = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(super::FILE);
    let text = std::fs::read_to_string(&file).unwrap_or_else(|e| panic!("{file:?}: {e}"));
    let json: Value = serde_json::from_str(&text).unwrap();
    let field = |v: &Value, k: &str| v[k].as_str().unwrap_or_default().to_owned();
    let all: Vec<Vector> = json["vectors"]
        .as_array()
        .expect("a `vectors` array")
        .iter()
        .map(|v| Vector {
            version: field(v, "version"),
            note: field(v, "note"),
            secret: field(v, "secret"),
            method: field(v, "method"),
            path: field(v, "path"),
            path_and_query: field(v, "path_and_query"),
            timestamp: field(v, "timestamp"),
            nonce: field(v, "nonce"),
            service: field(v, "service"),
            tenant: field(v, "tenant"),
            body: field(v, "body"),
            body_sha256: field(v, "body_sha256"),
            canonical: field(v, "canonical"),
            header: field(v, "header"),
        })
        .collect();
    assert!(
        all.iter().filter(|v| v.version == "v1").count() >= 3
            && all.iter().filter(|v| v.version == "v2").count() >= 4,
        "the vector file lost vectors"
    );
    for v in &all {
        assert!(v.version == "v1" || v.version == "v2", "{v:?}");
        assert!(!v.secret.is_empty() && !v.canonical.is_empty() && !v.header.is_empty());
    }
    all
}
