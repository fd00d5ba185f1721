//! The reference route matcher: the routing rules of contract §1 and
//! README "Behaviour", read literally from route patterns as written in a
//! spec (`/a/{id}/b*`), one request segment at a time.
//!
//! It is the one oracle for route matching, shared by
//! `tests/routing_props.rs` and `fuzz/fuzz_targets/dispatch.rs` (both
//! include this file with `#[path]`). It uses only `std`: it reads neither
//! the compiler's pattern model nor the runtime router, so a bug there
//! cannot hide here too.
//!
//! The rules:
//! - a literal segment matches itself;
//! - `{name}` matches one segment, never an empty one (`//`);
//! - `{*name}` (last) matches the rest of the path, at least one byte, and
//!   its first segment is not empty (`/x//y` matches no `/x/{*rest}`);
//! - `/base*` matches `/base`, `/base/` and anything below at a segment
//!   boundary whose first segment is not empty (`/base//y` does not
//!   match);
//! - a pattern ending in `/` matches only the path with that trailing
//!   slash, one without matches only the path without;
//! - the most specific route wins: segment by segment from the left,
//!   literal before `{param}` before the rest of a catch-all or prefix.
//!
//! Whatever the gateway does with empty segments, it never forwards an
//! upstream path starting with `//`; the last two rules are how.

/// How specific one request segment's match was; lower is more specific.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Rank {
    /// A literal segment, or the trailing slash itself.
    Static,
    /// A `{name}` parameter.
    Param,
    /// Part of a catch-all's or prefix route's rest.
    Rest,
}

/// A route pattern matching a path, with what it captures (as received,
/// never decoded).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Match<'p> {
    /// How each request segment matched, left to right; compared
    /// lexicographically between routes matching the same path.
    pub rank: Vec<Rank>,
    /// The `{name}` parameters, in path order.
    pub params: Vec<&'p str>,
    /// A catch-all's value, without its leading `/` (`a/b`).
    pub rest: Option<&'p str>,
    /// What follows a prefix route's base: ``, `/` or `/...`.
    pub suffix: Option<&'p str>,
}

/// A pattern as written: `/` segments, then an optional `*` (prefix route)
/// or `/` (trailing slash). `{*name}` ends in `*` but is no prefix route.
struct Pattern<'a> {
    segs: Vec<&'a str>,
    prefix: bool,
    trailing_slash: bool,
}

impl<'a> Pattern<'a> {
    fn read(pattern: &'a str) -> Option<Self> {
        let body = pattern.strip_prefix('/')?;
        let (body, prefix) = match body.strip_suffix('*') {
            Some(b) if !b.ends_with('}') => (b, true),
            _ => (body, false),
        };
        let (body, trailing_slash) = match body.strip_suffix('/') {
            Some(b) if !prefix => (b, true),
            _ => (body, false),
        };
        let segs = if body.is_empty() {
            Vec::new()
        } else {
            body.split('/').collect()
        };
        Some(Pattern {
            segs,
            prefix,
            trailing_slash,
        })
    }
}

/// Whether `pattern` matches `path`, and what it captures.
pub fn match_route<'p>(pattern: &str, path: &'p str) -> Option<Match<'p>> {
    let pat = Pattern::read(pattern)?;
    // Each request segment with where it starts in `path`.
    let mut req: Vec<(usize, &'p str)> = Vec::new();
    let mut at = 1;
    for seg in path.strip_prefix('/')?.split('/') {
        req.push((at, seg));
        at += seg.len() + 1;
    }
    let mut m = Match {
        rank: Vec::new(),
        params: Vec::new(),
        rest: None,
        suffix: None,
    };
    for (i, written) in pat.segs.iter().enumerate() {
        let &(start, seg) = req.get(i)?;
        if written.starts_with("{*") {
            if seg.is_empty() {
                return None;
            }
            m.rest = Some(&path[start..]);
            m.rank.extend(req[i..].iter().map(|_| Rank::Rest));
            return Some(m);
        } else if written.starts_with('{') {
            if seg.is_empty() {
                return None;
            }
            m.params.push(seg);
            m.rank.push(Rank::Param);
        } else if seg == *written {
            m.rank.push(Rank::Static);
        } else {
            return None;
        }
    }
    let n = pat.segs.len();
    let below = &req[n..];
    if pat.prefix {
        let base_end = req[..n].last().map_or(0, |&(s, seg)| s + seg.len());
        m.suffix = Some(&path[base_end..]);
        match below {
            // The base itself, or the base with a trailing slash.
            [] => {}
            [(_, "")] => m.rank.push(Rank::Static),
            // Anything below, at a segment boundary, first segment not empty.
            [(_, first), ..] if !first.is_empty() => {
                m.rank.extend(below.iter().map(|_| Rank::Rest));
            }
            _ => return None,
        }
        return Some(m);
    }
    match below {
        // The root pattern `/` is the empty path with its slash.
        [(_, "")] if n == 0 => Some(m),
        [(_, "")] if pat.trailing_slash => {
            m.rank.push(Rank::Static);
            Some(m)
        }
        [] if !pat.trailing_slash && n > 0 => Some(m),
        _ => None,
    }
}

/// The index of the most specific pattern matching `path` (the first one
/// on a tie); `None` when none matches.
pub fn most_specific<'a>(patterns: impl IntoIterator<Item = &'a str>, path: &str) -> Option<usize> {
    patterns
        .into_iter()
        .enumerate()
        .filter_map(|(i, p)| match_route(p, path).map(|m| (m.rank, i)))
        .min()
        .map(|(_, i)| i)
}
