//! Input formats shared by the fuzz targets (`fuzz_targets/`) and the seed
//! generator (`examples/make_corpus.rs`).
//!
//! Every target reads the same simple layout, so that seeds are readable
//! text and libFuzzer's byte mutations stay meaningful: one control byte,
//! then fields separated by `\n`; the last field takes the rest of the
//! input (it may contain `\n`). A missing field is empty.

/// A fuzz input split into its control byte and fields.
#[derive(Debug)]
pub struct Fields<'a> {
    /// The first byte (0 for an empty input).
    pub ctl: u8,
    fields: Vec<&'a [u8]>,
}

impl<'a> Fields<'a> {
    /// Splits `data` into a control byte and at most `n` fields.
    pub fn parse(data: &'a [u8], n: usize) -> Self {
        let Some((&ctl, rest)) = data.split_first() else {
            return Fields {
                ctl: 0,
                fields: Vec::new(),
            };
        };
        Fields {
            ctl,
            fields: rest.splitn(n, |b| *b == b'\n').collect(),
        }
    }

    /// Field `i`, empty when absent.
    pub fn bytes(&self, i: usize) -> &'a [u8] {
        self.fields.get(i).copied().unwrap_or(b"")
    }

    /// Field `i` as text, `None` when it is not UTF-8.
    pub fn text(&self, i: usize) -> Option<&'a str> {
        std::str::from_utf8(self.bytes(i)).ok()
    }

    /// Field `i` as an unsigned decimal, `None` when it is not one.
    pub fn number(&self, i: usize) -> Option<u64> {
        self.text(i)?.trim().parse().ok()
    }
}

/// The inverse of [`Fields::parse`], for seeds.
pub fn encode(ctl: u8, fields: &[&[u8]]) -> Vec<u8> {
    let mut out = vec![ctl];
    for (i, f) in fields.iter().enumerate() {
        if i > 0 {
            out.push(b'\n');
        }
        out.extend_from_slice(f);
    }
    out
}

/// `name: value` lines separated by `\r`, as the extra-headers fields
/// carry them. Pairs without a `:` are skipped.
pub fn header_pairs(field: &[u8]) -> impl Iterator<Item = (&[u8], &[u8])> {
    field.split(|b| *b == b'\r').filter_map(|line| {
        let at = line.iter().position(|b| *b == b':')?;
        let (name, value) = line.split_at(at);
        Some((name, value[1..].trim_ascii_start()))
    })
}

/// `hmac_verify`: the control byte and fields.
pub mod hmac {
    /// Control bits 0-1: build a v1 signature.
    pub const KIND_V1: u8 = 0;
    /// Control bits 0-1: build a v2 signature.
    pub const KIND_V2: u8 = 1;
    /// Control bits 0-1: build a service JWT.
    pub const KIND_JWT: u8 = 2;
    /// Control bits 0-1: send the extra headers only (no built proof).
    pub const KIND_RAW: u8 = 3;
    /// Control bits 2-4: which covered part to change after signing.
    pub const MUTATION_SHIFT: u8 = 2;
    /// Control bit 5: the verifier accepts HMAC v2 only.
    pub const V2_ONLY: u8 = 1 << 5;
    /// Control bit 6: the verifier also holds an older secret (rotation).
    pub const ROTATION: u8 = 1 << 6;
    /// Control bit 7: the extra headers come before the built ones.
    pub const EXTRA_FIRST: u8 = 1 << 7;

    /// Field: request method.
    pub const METHOD: usize = 0;
    /// Field: path and query, as sent.
    pub const PATH_AND_QUERY: usize = 1;
    /// Field: the verifier's clock (Unix seconds, decimal).
    pub const NOW: usize = 2;
    /// Field: the verifier's window in seconds (decimal; 60 when empty).
    pub const WINDOW: usize = 3;
    /// Field: `X-Internal-Timestamp` as sent (the clock when empty).
    pub const TIMESTAMP: usize = 4;
    /// Field: `X-Internal-Nonce` (v2) or the JWT's `jti`.
    pub const NONCE: usize = 5;
    /// Field: `X-Service-Name` (the gateway's name when empty).
    pub const SERVICE: usize = 6;
    /// Field: `X-Tenant-Id` (absent when empty).
    pub const TENANT: usize = 7;
    /// Field: the shared secret.
    pub const SECRET: usize = 8;
    /// Field: extra headers, `name: value` separated by `\r`.
    pub const EXTRA: usize = 9;
    /// Field: JWT `iat` offset from the clock and lifetime, `OFF,LIFE`.
    pub const JWT: usize = 10;
    /// Field: the body (the rest of the input).
    pub const BODY: usize = 11;
    /// Number of fields.
    pub const FIELDS: usize = 12;
}

/// `dispatch`: the control byte and fields.
pub mod dispatch {
    /// Control bits 0-2: which route table (see the target).
    pub const TABLE_MASK: u8 = 0b111;
    /// Field: the request method.
    pub const METHOD: usize = 0;
    /// Field: for the generated table, its description.
    pub const TABLE: usize = 1;
    /// Field: the request target (path and query), the rest of the input.
    pub const TARGET: usize = 2;
    /// Number of fields.
    pub const FIELDS: usize = 3;

    /// The spec of a generated table: routes separated by spaces in
    /// `desc`, each `PATTERN` or `PATTERN>TEMPLATE`; the template defaults
    /// to `/u` plus the pattern's `{name}` parameters in reverse order,
    /// then its catch-all or prefix rest. `None` when `desc` names no route
    /// or has characters that would break out of a YAML string.
    pub fn generated_yaml(desc: &str) -> Option<String> {
        let mut y = String::from(
            "gateway: { name: fuzz, listen: \"127.0.0.1:0\" }\nservices:\n  s: { url: { env: S_URL, default: \"http://localhost:1\" }, identity: { kind: none, unsigned: true } }\nroutes:\n",
        );
        let mut n = 0;
        for (i, route) in desc
            .split(' ')
            .filter(|r| !r.is_empty())
            .take(8)
            .enumerate()
        {
            if route
                .bytes()
                .any(|b| b == b'"' || b == b'\\' || !(0x20..0x7f).contains(&b))
            {
                return None;
            }
            let template = match route.split_once('>') {
                Some((_, t)) => t.to_owned(),
                None => default_template(route),
            };
            let pattern = route.split_once('>').map_or(route, |(p, _)| p);
            y.push_str(&format!(
                "  - {{ id: r{i}, path: \"{pattern}\", service: s, upstream: \"{template}\" }}\n"
            ));
            n += 1;
        }
        (n > 0).then_some(y)
    }

    fn default_template(pattern: &str) -> String {
        let (base, prefix) = match pattern.strip_suffix('*') {
            Some(b) if !b.ends_with('}') => (b, true),
            _ => (pattern, false),
        };
        let segs: Vec<&str> = base.split('/').collect();
        let mut t = String::from("/u");
        for p in segs
            .iter()
            .rev()
            .filter(|s| s.starts_with('{') && !s.starts_with("{*"))
        {
            t.push('/');
            t.push_str(p);
        }
        if let Some(c) = segs.iter().find(|s| s.starts_with("{*")) {
            t.push('/');
            t.push_str(c);
        } else if prefix {
            t.push('*');
        }
        t
    }
}

/// `credentials`: the control byte and fields.
pub mod credentials {
    /// Control bits 0-2: the cookie name, an index into [`COOKIE_NAMES`].
    pub const NAME_MASK: u8 = 0b111;
    /// Control bit 3: no `Authorization` header at all.
    pub const NO_AUTHORIZATION: u8 = 1 << 3;
    /// Control bit 4: a second `Authorization` header (the first wins).
    pub const SECOND_AUTHORIZATION: u8 = 1 << 4;
    /// Control bit 5: `token_from` is also asked without a cookie name.
    pub const NO_COOKIE_NAME: u8 = 1 << 5;
    /// Cookie names: valid spec cookie names (letters, digits, `-_.`);
    /// the last entry is replaced by the [`NAME`] field when that is one.
    pub const COOKIE_NAMES: [&str; 8] = [
        "aegis_token",
        "token",
        "a",
        "jwt.v2",
        "T-1",
        "aegis_token2",
        "session",
        "x",
    ];
    /// Field: a cookie name (used when valid and the name index is 7).
    pub const NAME: usize = 0;
    /// Field: the `Authorization` value.
    pub const AUTHORIZATION: usize = 1;
    /// Field: `Cookie` header values, one per `\r`-separated part (the rest).
    pub const COOKIES: usize = 2;
    /// Number of fields.
    pub const FIELDS: usize = 3;
}

/// `version_negotiation`: the control byte and fields.
pub mod version {
    /// Control bit 0: the spec-compiled set (`tests/specs/versions.yaml`);
    /// otherwise a set cut from the pool by the `SET` field.
    pub const FROM_SPEC: u8 = 1;
    /// Field: for a pool set, `vendor,start,len,default` (numbers as bytes
    /// `0`-`9`, `a`-`z`).
    pub const SET: usize = 0;
    /// Field: headers, one per `\r`-separated line, `a:` for `Accept`,
    /// `v:` for `API-Version`, anything else for an unrelated header.
    pub const HEADERS: usize = 1;
    /// Number of fields.
    pub const FIELDS: usize = 2;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_round_trip() {
        let data = encode(7, &[b"GET", b"/a?b", b"body\nwith\nlines"]);
        let f = Fields::parse(&data, 3);
        assert_eq!(f.ctl, 7);
        assert_eq!(f.bytes(0), b"GET");
        assert_eq!(f.text(1), Some("/a?b"));
        assert_eq!(f.bytes(2), b"body\nwith\nlines");
        assert_eq!(f.bytes(3), b"");
        assert_eq!(Fields::parse(b"", 3).bytes(0), b"");
    }

    #[test]
    fn generated_tables_fill_default_templates() {
        let y = dispatch::generated_yaml("/a/{x}/b/{y} /c* /d/{*rest}>/e/{*rest}").unwrap();
        assert!(y.contains(r#"path: "/a/{x}/b/{y}", service: s, upstream: "/u/{y}/{x}""#));
        assert!(y.contains(r#"path: "/c*", service: s, upstream: "/u*""#));
        assert!(y.contains(r#"path: "/d/{*rest}", service: s, upstream: "/e/{*rest}""#));
        assert_eq!(dispatch::generated_yaml("/a\"b"), None);
        assert_eq!(dispatch::generated_yaml("  "), None);
    }

    #[test]
    fn header_pairs_split_on_cr_and_colon() {
        let pairs: Vec<_> = header_pairs(b"a: 1\rbogus\rb:2").collect();
        assert_eq!(pairs, vec![(&b"a"[..], &b"1"[..]), (&b"b"[..], &b"2"[..])]);
    }
}
