//! Credential extraction and stripping: `auth::jwt::token_from` (which
//! credential authenticates a request) and `policy::credentials::strip_cookie`
//! (what an upstream no longer sees), on arbitrary `Authorization` and
//! `Cookie` header bytes.
//!
//! Oracles:
//! - nothing panics;
//! - `token_from` prefers a bearer `Authorization` (even an empty or invalid
//!   token), else takes the first cookie of that name, else nothing; it
//!   never reads a cookie when asked for none; checked against a reference
//!   reading written here;
//! - after `strip_cookie` the named cookie is gone: no pair of that name is
//!   left in any `Cookie` header, and `token_from` finds no cookie token;
//! - every other cookie survives byte for byte and in order, in a single
//!   `Cookie` header (none when nothing is left);
//! - no other header is touched.
#![no_main]

use gateway::auth::jwt::token_from;
use gateway::policy::credentials::strip_cookie;
use gateway_fuzz::credentials as field;
use gateway_fuzz::Fields;
use http::header::{AUTHORIZATION, COOKIE};
use http::{HeaderMap, HeaderValue};
use libfuzzer_sys::fuzz_target;

fn valid_cookie_name(n: &[u8]) -> bool {
    !n.is_empty()
        && n.iter()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(b))
}

/// The reference: the `Authorization` scheme is `Bearer` (any case), the
/// token what follows the first space, trimmed.
fn reference_bearer(h: &HeaderMap) -> Option<&str> {
    let auth = h.get(AUTHORIZATION)?.to_str().ok()?.trim();
    let (scheme, token) = auth.split_once(' ').unwrap_or((auth, ""));
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

/// The cookie pairs of every textual `Cookie` header, in order.
fn text_pairs(h: &HeaderMap) -> Vec<(&str, &str)> {
    let mut out = Vec::new();
    for v in h.get_all(COOKIE) {
        let Ok(v) = v.to_str() else { continue };
        for pair in v.split(';') {
            if let Some((k, val)) = pair.trim().split_once('=') {
                out.push((k, val.trim()));
            }
        }
    }
    out
}

/// Every non-empty pair of every `Cookie` header, raw bytes, trimmed.
fn raw_pairs(h: &HeaderMap) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    for v in h.get_all(COOKIE) {
        for pair in v.as_bytes().split(|b| *b == b';') {
            let pair = pair.trim_ascii();
            if !pair.is_empty() {
                out.push(pair.to_vec());
            }
        }
    }
    out
}

fn pair_name(pair: &[u8]) -> &[u8] {
    pair.split(|b| *b == b'=').next().unwrap_or(pair)
}

fuzz_target!(|data: &[u8]| {
    let f = Fields::parse(data, field::FIELDS);
    let index = usize::from(f.ctl & field::NAME_MASK);
    let custom = f.bytes(field::NAME);
    let name: &str = match std::str::from_utf8(custom) {
        Ok(c) if index == field::COOKIE_NAMES.len() - 1 && valid_cookie_name(custom) => c,
        _ => field::COOKIE_NAMES[index],
    };

    let mut h = HeaderMap::new();
    h.append("x-other", HeaderValue::from_static("kept"));
    if f.ctl & field::NO_AUTHORIZATION == 0 {
        if let Ok(v) = HeaderValue::from_bytes(f.bytes(field::AUTHORIZATION)) {
            h.append(AUTHORIZATION, v);
            if f.ctl & field::SECOND_AUTHORIZATION != 0 {
                h.append(AUTHORIZATION, HeaderValue::from_static("Bearer second"));
            }
        }
    }
    for value in f.bytes(field::COOKIES).split(|b| *b == b'\r') {
        if let Ok(v) = HeaderValue::from_bytes(value) {
            h.append(COOKIE, v);
        }
    }

    // Which credential authenticates the request.
    let bearer = reference_bearer(&h);
    let cookie = text_pairs(&h)
        .into_iter()
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v);
    let got = token_from(&h, Some(name));
    assert_eq!(got, bearer.or(cookie), "token_from with cookie `{name}`");
    if f.ctl & field::NO_COOKIE_NAME != 0 {
        assert_eq!(token_from(&h, None), bearer, "a cookie read without a name");
    }

    // What the upstream sees once the cookie is stripped.
    let before = raw_pairs(&h);
    let mut stripped = h.clone();
    strip_cookie(&mut stripped, name);
    let after = raw_pairs(&stripped);
    assert!(
        after.iter().all(|p| pair_name(p) != name.as_bytes()),
        "`{name}` survived: {:?}",
        stripped.get_all(COOKIE).iter().collect::<Vec<_>>()
    );
    assert!(
        text_pairs(&stripped).iter().all(|(k, _)| *k != name),
        "`{name}` survived"
    );
    assert_eq!(
        token_from(&stripped, Some(name)),
        bearer,
        "a cookie token survived"
    );
    let kept: Vec<Vec<u8>> = before
        .into_iter()
        .filter(|p| pair_name(p) != name.as_bytes())
        .collect();
    assert_eq!(after, kept, "other cookies changed");
    let cookie_headers = stripped.get_all(COOKIE).iter().count();
    assert_eq!(cookie_headers, usize::from(!kept.is_empty()));
    // Nothing else moved.
    for k in h.keys().filter(|k| *k != COOKIE) {
        assert!(
            stripped.get_all(k).iter().eq(h.get_all(k).iter()),
            "{k} changed"
        );
    }
    assert_eq!(
        stripped.keys_len() - usize::from(stripped.contains_key(COOKIE)),
        h.keys_len() - usize::from(h.contains_key(COOKIE))
    );
});
