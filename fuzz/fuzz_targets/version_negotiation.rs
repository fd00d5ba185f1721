//! API version negotiation (`policy::version::VersionSet::select`) on
//! arbitrary `Accept` and `API-Version` headers, for the version set that
//! `gateway_macros::spec!` compiles from `tests/specs/versions.yaml` or for
//! sets cut from a pool of awkward names (`1`, `1.0`, `01`, `v1`, `A`/`a`
//! ...) and vendors (`a.b`, `x.v1` ...).
//!
//! Oracles:
//! - nothing panics; a chosen index is in range;
//! - `API-Version` lines decide alone: all naming (trimmed) the same live
//!   version select it, anything else is refused;
//! - an exact `API-Version` of a live version always selects it, whatever
//!   `Accept` says; so does a lone `application/vnd.<vendor>.v<name>+json`
//!   or `application/json; version=<name>`;
//! - without either header the default is chosen;
//! - the choice never depends on the order of headers or of ranges;
//! - `response_headers` names the chosen version.
#![no_main]

use std::sync::OnceLock;

use gateway::policy::version::{VersionSet, VersionSpec};
use gateway::spec::Spec;
use gateway_fuzz::version as field;
use gateway_fuzz::Fields;
use http::header::ACCEPT;
use http::{HeaderMap, HeaderName, HeaderValue};
use libfuzzer_sys::fuzz_target;

mod versions {
    gateway_macros::spec!("../tests/specs/versions.yaml");
}

const API_VERSION: HeaderName = HeaderName::from_static("api-version");

macro_rules! pool {
    ($($name:literal),* $(,)?) => {
        const NAMES: &[&str] = &[$($name),*];
        static POOL: &[VersionSpec] = &[$(VersionSpec {
            name: $name,
            service: 0,
            upstream: &[],
            deprecated: None,
        }),*];
    };
}

// Valid spec version names (letters, digits, `.`, `_`, `-`), chosen to
// be prefixes, case variants and look-alikes of each other.
pool!(
    "1",
    "2",
    "2024-06-01",
    "1.0",
    "01",
    "v1",
    "A",
    "a",
    "10",
    "1_1",
    "json",
    "2.1-beta"
);

/// Valid spec vendors (lower-case letters, digits, `.`, `-`).
const VENDORS: &[&str] = &["aegis", "acme", "a.b", "acme-v2", "x.v1", "v"];

fn spec_set() -> &'static VersionSet {
    static SET: OnceLock<&'static VersionSet> = OnceLock::new();
    SET.get_or_init(|| {
        versions::Spec::PATHS
            .iter()
            .flat_map(|(_, routes)| routes.iter())
            .find_map(|r| versions::Spec::route(*r).versions)
            .expect("versions.yaml has a versioned route")
    })
}

fn pool_set(desc: &[u8]) -> VersionSet {
    let at = |i: usize| usize::from(desc.get(i).copied().unwrap_or(0));
    let vendor = VENDORS[at(0) % VENDORS.len()];
    let start = at(1) % NAMES.len();
    let len = 1 + at(2) % (NAMES.len() - start);
    VersionSet {
        vendor,
        default: at(3) % len,
        live: &POOL[start..start + len],
        names: &NAMES[start..start + len],
    }
}

fn with(h: &HeaderMap, name: HeaderName, value: &str) -> HeaderMap {
    let mut h = h.clone();
    h.insert(name, HeaderValue::from_str(value).expect("valid value"));
    h
}

fuzz_target!(|data: &[u8]| {
    let f = Fields::parse(data, field::FIELDS);
    let pooled;
    let set: &VersionSet = if f.ctl & field::FROM_SPEC != 0 {
        spec_set()
    } else {
        pooled = pool_set(f.bytes(field::SET));
        &pooled
    };
    let n = set.live.len();

    let mut h = HeaderMap::new();
    for line in f.bytes(field::HEADERS).split(|b| *b == b'\r') {
        let Some((&kind, value)) = line.split_first() else {
            continue;
        };
        let value = value.strip_prefix(b":").unwrap_or(value);
        let Ok(value) = HeaderValue::from_bytes(value) else {
            continue;
        };
        let name = match kind {
            b'a' => ACCEPT,
            b'v' => API_VERSION,
            _ => HeaderName::from_static("x-other"),
        };
        h.append(name, value);
    }

    let got = set.select(&h);
    assert_eq!(set.select(&h), got, "not deterministic");
    if let Ok(i) = got {
        assert!(i < n, "index {i} of {n}");
        let mut out = HeaderMap::new();
        set.response_headers(Some(i), &mut out);
        assert_eq!(
            out.get(&API_VERSION).map(|v| v.as_bytes()),
            Some(set.live[i].name.as_bytes())
        );
    }

    // API-Version decides alone.
    let named: Vec<Option<usize>> = h
        .get_all(&API_VERSION)
        .iter()
        .map(|v| {
            let v = v.to_str().ok()?.trim();
            set.live.iter().position(|l| l.name == v)
        })
        .collect();
    if let Some(&first) = named.first() {
        let want = match first {
            Some(i) if named.iter().all(|x| *x == Some(i)) => Ok(i),
            _ => Err(()),
        };
        assert_eq!(got.map_err(|_| ()), want, "API-Version lines {named:?}");
    } else {
        if h.get(ACCEPT).is_none() {
            assert_eq!(got, Ok(set.default), "no version named, not the default");
        }
        // Order: headers reversed, and the ranges within each.
        let mut reversed = HeaderMap::new();
        for (k, v) in h.iter().collect::<Vec<_>>().into_iter().rev() {
            let v = match v.to_str() {
                Ok(t) => HeaderValue::from_str(&t.split(',').rev().collect::<Vec<_>>().join(","))
                    .expect("rejoined ranges"),
                Err(_) => v.clone(),
            };
            reversed.append(k.clone(), v);
        }
        assert_eq!(set.select(&reversed), got, "order changed the choice");
    }

    // Each live version, named exactly, is selected.
    let j = usize::from(f.ctl >> 1) % n;
    let name = set.live[j].name;
    assert_eq!(
        set.select(&with(&h, API_VERSION, name)),
        Ok(j),
        "API-Version {name}"
    );
    let mut plain = HeaderMap::new();
    for accept in [
        format!("application/vnd.{}.v{name}+json", set.vendor),
        format!("application/json; version={name}"),
    ] {
        plain = with(&plain, ACCEPT, &accept);
        assert_eq!(set.select(&plain), Ok(j), "Accept: {accept}");
    }
});
