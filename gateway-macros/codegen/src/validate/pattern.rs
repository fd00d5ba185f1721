//! Route patterns and upstream templates.
//!
//! Patterns (contract §1): literal segments, `{name}` (one segment),
//! `{*name}` (the rest, last only), and a trailing `*` for a prefix route
//! that matches the path itself, the path with a trailing slash and
//! anything below it, at a segment boundary only.

pub use crate::diag::Problem;
pub use crate::ir::pattern::{Part, Pattern, Seg, Tier};

/// Parses a route pattern.
pub fn parse_pattern(s: &str) -> Result<Pattern, Problem> {
    let Some(body) = s.strip_prefix('/') else {
        return Err(Problem::new(
            format!("route path `{s}` does not start with `/`"),
            "write the path as the client sends it, starting with `/`",
        ));
    };
    let (body, prefix) = match body.strip_suffix('*') {
        Some(b) if !b.ends_with('}') => (b, true),
        _ => (body, false),
    };
    if prefix && body.ends_with('/') {
        let base = s.trim_end_matches('*').trim_end_matches('/');
        return Err(Problem::new(
            format!("prefix route `{s}` has a `/` before its `*`"),
            format!("write `{base}*`: a prefix route matches `{base}`, `{base}/` and everything below, at segment boundaries"),
        ));
    }
    let trailing_slash = !prefix && body.ends_with('/') && !body.is_empty();
    let body = if trailing_slash {
        &body[..body.len() - 1]
    } else {
        body
    };
    let mut segments = Vec::new();
    if !body.is_empty() {
        let parts: Vec<&str> = body.split('/').collect();
        for (i, part) in parts.iter().enumerate() {
            let last = i + 1 == parts.len();
            segments.push(parse_segment(s, part, last)?);
        }
    }
    if matches!(segments.last(), Some(Seg::CatchAll(_))) && trailing_slash {
        return Err(Problem::new(
            format!("route `{s}` has a `/` after its catch-all"),
            "a catch-all `{*name}` is the last thing in a path",
        ));
    }
    let mut seen: Vec<&str> = Vec::new();
    for seg in &segments {
        if let Seg::Param(n) | Seg::CatchAll(n) = seg {
            if seen.contains(&n.as_str()) {
                return Err(Problem::new(
                    format!("route `{s}` uses the parameter `{n}` twice"),
                    "give each parameter its own name",
                ));
            }
            seen.push(n);
        }
    }
    Ok(Pattern {
        segments,
        prefix,
        trailing_slash,
    })
}

fn parse_segment(path: &str, part: &str, last: bool) -> Result<Seg, Problem> {
    if part.is_empty() {
        return Err(Problem::new(
            format!("route `{path}` has an empty segment (`//`)"),
            "remove the doubled `/`",
        ));
    }
    if let Some(inner) = part.strip_prefix('{').and_then(|p| p.strip_suffix('}')) {
        if let Some(name) = inner.strip_prefix('*') {
            check_param_name(path, name)?;
            if !last {
                return Err(Problem::new(
                    format!("catch-all `{{*{name}}}` in `{path}` is not the last segment"),
                    "move the catch-all to the end, or use `{name}` for a single segment",
                ));
            }
            return Ok(Seg::CatchAll(name.to_owned()));
        }
        check_param_name(path, inner)?;
        return Ok(Seg::Param(inner.to_owned()));
    }
    if part.contains('{') || part.contains('}') {
        return Err(Problem::new(
            format!("segment `{part}` of `{path}` mixes a parameter with text"),
            "a parameter is a whole segment: `/{id}`, not `/item-{id}`",
        ));
    }
    check_literal(path, part)?;
    Ok(Seg::Lit(part.to_owned()))
}

fn check_param_name(path: &str, name: &str) -> Result<(), Problem> {
    let ok = name
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if ok {
        Ok(())
    } else {
        Err(Problem::new(
            format!("parameter name `{name}` in `{path}` is not an identifier"),
            "name parameters with letters, digits and `_`, e.g. `{conv_id}`",
        ))
    }
}

/// Literal segments are plain URI path characters: no dot segments, also
/// not with path parameters (`..;v`; they would never match, since such
/// requests are rejected), no percent escapes or wildcards.
fn check_literal(path: &str, seg: &str) -> Result<(), Problem> {
    // `..;v` is `..` to servers that strip path parameters (Tomcat, Spring).
    let head = seg.split(';').next().unwrap_or(seg);
    if head == "." || head == ".." {
        return Err(Problem::new(
            format!("`{path}` contains a `{seg}` segment"),
            "requests with dot segments are rejected before matching; remove it",
        ));
    }
    let bad = seg
        .chars()
        .find(|&c| !(c.is_ascii_alphanumeric() || "-._~!$&'()+,;=:@".contains(c)));
    match bad {
        None => Ok(()),
        Some('*') => Err(Problem::new(
            format!("`*` inside `{path}` is only allowed at the very end"),
            "end the path with `*` for a prefix route, or use `{*rest}`",
        )),
        Some(c) => Err(Problem::new(
            format!("`{path}` contains the character {c:?}, which is not allowed in a route path"),
            "use letters, digits and `-._~!$&'()+,;=:@` in literal segments",
        )),
    }
}

/// Parses an upstream template against its route's pattern.
pub fn parse_template(t: &str, pattern: &Pattern) -> Result<Vec<Part>, Problem> {
    if !t.starts_with('/') {
        return Err(Problem::new(
            format!("upstream path `{t}` does not start with `/`"),
            "write the path the upstream expects, starting with `/`",
        ));
    }
    let (body, suffix) = match t.strip_suffix('*') {
        Some(b) if !b.ends_with('}') => (b, true),
        _ => (t, false),
    };
    if suffix && !pattern.prefix {
        return Err(Problem::new(
            format!("upstream `{t}` ends in `*` but the route is not a prefix route"),
            "end the route path with `*` too, or remove the `*`",
        ));
    }
    let names: Vec<&str> = pattern.params().collect();
    let segs: Vec<&str> = body[1..].split('/').collect();
    let mut parts = Vec::new();
    let mut lit = String::new();
    for (i, seg) in segs.iter().enumerate() {
        lit.push('/');
        let last = i + 1 == segs.len();
        if let Some(inner) = seg.strip_prefix('{').and_then(|p| p.strip_suffix('}')) {
            let (name, catch_all) = match inner.strip_prefix('*') {
                Some(n) => (n, true),
                None => (inner, false),
            };
            let Some(pos) = names.iter().position(|n| *n == name) else {
                return Err(Problem::new(
                    format!(
                        "upstream `{t}` uses `{{{inner}}}`, which the route path does not capture"
                    ),
                    format!(
                        "capture it in the route path, or use one of: {}",
                        list_or_none(&names)
                    ),
                ));
            };
            let is_catch_all = pattern
                .segments
                .iter()
                .any(|s| matches!(s, Seg::CatchAll(n) if n == name));
            if catch_all != is_catch_all {
                let want = if is_catch_all {
                    format!("{{*{name}}}")
                } else {
                    format!("{{{name}}}")
                };
                return Err(Problem::new(
                    format!("upstream `{t}` writes `{{{inner}}}`, but the route captures it as `{want}`"),
                    format!("write `{want}` in the upstream path"),
                ));
            }
            if catch_all && !last {
                return Err(Problem::new(
                    format!("catch-all `{{*{name}}}` in upstream `{t}` is not the last segment"),
                    "move the catch-all to the end of the upstream path",
                ));
            }
            parts.push(Part::Lit(std::mem::take(&mut lit)));
            parts.push(if catch_all {
                Part::Rest
            } else {
                Part::Param(pos)
            });
            continue;
        }
        if seg.contains('{') || seg.contains('}') {
            return Err(Problem::new(
                format!("segment `{seg}` of upstream `{t}` mixes a parameter with text"),
                "a parameter is a whole segment: `/{id}`, not `/item-{id}`",
            ));
        }
        if seg.is_empty() && !last {
            return Err(Problem::new(
                format!("upstream `{t}` has an empty segment (`//`)"),
                "remove the doubled `/`",
            ));
        }
        if !seg.is_empty() {
            check_literal(t, seg).map_err(|mut p| {
                p.message = p.message.replace("a route path", "an upstream path");
                p
            })?;
        }
        lit.push_str(seg);
    }
    if suffix {
        // `/conversations*`: the suffix brings its own leading slash.
        if lit.ends_with('/') {
            lit.pop();
        }
        if !lit.is_empty() {
            parts.push(Part::Lit(lit));
        }
        parts.push(Part::Suffix);
    } else if !lit.is_empty() {
        parts.push(Part::Lit(lit));
    }
    parts.retain(|p| !matches!(p, Part::Lit(l) if l.is_empty()));
    Ok(parts)
}

fn list_or_none(names: &[&str]) -> String {
    if names.is_empty() {
        "(the route has no parameters)".into()
    } else {
        names
            .iter()
            .map(|n| format!("`{{{n}}}`"))
            .collect::<Vec<_>>()
            .join(", ")
    }
}
