//! Parse errors in the spec's own words.
//!
//! serde_yaml reports a value of the wrong shape in Rust's terms
//! (`invalid type: integer -5, expected u32`), a key written twice at the
//! start of its mapping, and bad indentation as a libyaml parser state.
//! Each is translated here into what the user wrote wrong and how to write
//! it: the field's accepted range, `write a list: methods: [POST]`, the
//! line of the second key. Messages that have no translation keep
//! serde_yaml's words, which are already located.

use super::locate::{self, PathSeg, SpecPath};
use super::Source;
use crate::diag::Diagnostic;

/// A parse error as a located diagnostic.
pub(super) fn diagnose(src: &Source<'_>, e: &serde_yaml::Error) -> Diagnostic {
    let (line, col) = e
        .location()
        .map(|l| (l.line(), l.column()))
        .unwrap_or((1, 1));
    let raw = strip_location(&e.to_string());
    let (path, core) = split_path(&raw);
    let field = path.0.iter().rev().find_map(|s| match s {
        PathSeg::Key(k) | PathSeg::KeyName(k) => Some(k.as_str()),
        PathSeg::Index(_) => None,
    });
    let found = match field {
        Some(f) => wrong_type(f, core),
        None => None,
    }
    .map(|(message, help)| (line, col, message, help))
    .or_else(|| repeated_key(src, &path, core))
    .or_else(|| syntax(src, core, line, col));
    let (line, col, message, help) =
        found.unwrap_or_else(|| (line, col, raw.clone(), parse_help(&raw)));
    Diagnostic::at(src, line, col, message).help(help)
}

/// serde_yaml appends " at line L column C" to messages; we show the
/// location ourselves, but keep any later context ("while parsing a flow
/// sequence at line 12 column 14"), which points at the real cause.
fn strip_location(msg: &str) -> String {
    let Some(i) = msg.find(" at line ") else {
        return msg.to_owned();
    };
    let rest = &msg[i + " at line ".len()..];
    let end = rest
        .find(" column ")
        .map(|c| {
            let after = &rest[c + " column ".len()..];
            c + " column ".len()
                + after
                    .find(|ch: char| !ch.is_ascii_digit())
                    .unwrap_or(after.len())
        })
        .unwrap_or(0);
    format!("{}{}", &msg[..i], &rest[end..])
}

fn parse_help(message: &str) -> String {
    if message.contains("unknown field") {
        "check the spelling; docs/gateway-yaml.md lists every field".into()
    } else if message.contains("declared twice") {
        "remove or rename one of them: the second would silently replace the first".into()
    } else if message.contains("missing field") {
        "add the field; docs/gateway-yaml.md shows an example".into()
    } else {
        "fix the YAML at this position; docs/gateway-yaml.md shows the expected shape".into()
    }
}

/// `routes[0].methods: invalid type: ...` -> (`routes[0].methods`, the
/// rest). Messages about the document itself carry no path.
fn split_path(msg: &str) -> (SpecPath, &str) {
    let Some((head, core)) = msg.split_once(": ") else {
        return (SpecPath::root(), msg);
    };
    if head.is_empty() || head.contains([' ', '`', '\'', '"']) {
        return (SpecPath::root(), msg);
    }
    let mut path = SpecPath::root();
    for part in head.split('.') {
        let (key, mut indexes) = part.split_once('[').unwrap_or((part, ""));
        if !key.is_empty() {
            path = path.key(key);
        }
        while let Some((n, rest)) = indexes.split_once(']') {
            match n.parse() {
                Ok(n) => path = path.index(n),
                Err(_) => return (SpecPath::root(), msg),
            }
            indexes = rest.strip_prefix('[').unwrap_or(rest);
        }
    }
    (path, core)
}

/// What a whole-number field accepts, in the words of its own check.
fn int_help(field: &str, expected: &str) -> String {
    let range = match field {
        "failures" => "a whole number from 1 to 1000",
        "probes" => "a whole number from 1 to 100",
        "failure_rate" | "budget" => "a whole number from 1 to 100 (percent)",
        "min_requests" => "a whole number of at least 1 (the default is 20)",
        "nonce_cache" => "a whole number from 1000 to 10000000",
        "burst" => "a whole number from 1 to 4294967295 (requests allowed at once)",
        "attempts" => "a whole number from 2 to 10 (attempts in all)",
        "on" => "an HTTP status worth retrying: 500 to 599, 408 or 429",
        "min_per_second" => "a whole number from 0 to 1000",
        "max_headers" => "a whole number from 1 to 1000 (header fields per request)",
        _ => match expected {
            "u16" => "a whole number from 0 to 65535",
            "u32" => "a whole number from 0 to 4294967295",
            _ => "a whole number from 0 to 18446744073709551615",
        },
    };
    format!("use {range}")
}

/// The value serde_yaml quotes after `invalid type: `, as the user wrote
/// it: `string "POST"` -> `POST`, ``integer `-5` as u128`` -> `-5`. `None`
/// for a mapping, a list or nothing.
fn written(found: &str) -> Option<&str> {
    if let Some(s) = found.strip_prefix("string \"") {
        return s.strip_suffix('"');
    }
    let (_, rest) = found.split_once(" `")?;
    rest.split('`').next()
}

/// A list-valued field given one value is written as that value in a list,
/// when it is short and plain enough to repeat.
fn as_list(value: Option<&str>) -> String {
    match value {
        Some(v)
            if !v.is_empty()
                && v.len() <= 40
                && !v.contains(['[', ']', '{', '}', '#', '"', '\\', '`']) =>
        {
            format!("[{v}]")
        }
        _ => "[...]".into(),
    }
}

/// `invalid type: X, expected Y` and `invalid value: X, expected Y` for
/// `field`, as (message, help).
fn wrong_type(field: &str, core: &str) -> Option<(String, String)> {
    let rest = core
        .strip_prefix("invalid type: ")
        .or_else(|| core.strip_prefix("invalid value: "))?;
    let (found, expected) = rest.rsplit_once(", expected ")?;
    let value = written(found);
    let int = matches!(expected, "u8" | "u16" | "u32" | "u64" | "usize");
    if int {
        let help = int_help(field, expected);
        let message = match value {
            Some(v) if found.starts_with("integer") => {
                format!("`{v}` is out of range for `{field}`")
            }
            Some(v) if found.starts_with("floating point") => {
                format!("`{field}` is a whole number, and `{v}` is not")
            }
            Some(v) if v.parse::<i128>().is_ok() => {
                return Some((
                    format!("`{field}` is a number, but `\"{v}\"` is quoted as a string"),
                    format!("remove the quotes: `{field}: {v}`"),
                ));
            }
            _ => format!("`{field}` is a whole number"),
        };
        return Some((message, help));
    }
    match expected {
        "a sequence" => {
            let message = match found {
                "map" => format!("`{field}` is a list, not a mapping"),
                "unit value" => format!("`{field}` has no value, and it takes a list"),
                _ => format!("`{field}` is a list, not a single value"),
            };
            Some((
                message,
                format!("write a list: `{field}: {}`", as_list(value)),
            ))
        }
        "a boolean" => Some((
            format!("`{field}` is `true` or `false`"),
            format!("write `{field}: true` or `{field}: false`"),
        )),
        "a string" if found == "sequence" || found == "map" => {
            let what = if found == "map" {
                "a mapping"
            } else {
                "a list"
            };
            Some((
                format!("`{field}` is a single value, not {what}"),
                format!("write one value: `{field}: ...`; docs/gateway-yaml.md describes it"),
            ))
        }
        "f64" => Some((
            format!("`{field}` is a number"),
            "write a number, e.g. `5` or `0.5`".into(),
        )),
        _ => None,
    }
}

/// `routes[0]: duplicate field `service``, reported by serde at the start
/// of the route, is reported at the second key.
fn repeated_key(
    src: &Source<'_>,
    path: &SpecPath,
    core: &str,
) -> Option<(usize, usize, String, String)> {
    let key = core.strip_prefix("duplicate field `")?.strip_suffix('`')?;
    let (line, col) = locate::locate_repeated_key(src.text, path, key)?;
    let first = locate::locate(src.text, &path.key_name(key)).0;
    Some((
        line,
        col,
        format!("`{key}` is written twice in one mapping; the first is at line {first}"),
        "remove one of them: a mapping holds each key once".into(),
    ))
}

/// YAML syntax errors that have a clearer cause: an unclosed `[` or `{`,
/// and a line indented unlike the keys around it.
fn syntax(
    src: &Source<'_>,
    core: &str,
    line: usize,
    col: usize,
) -> Option<(usize, usize, String, String)> {
    if let Some((kind, l, c)) = context_mark(core) {
        let close = match kind {
            "flow sequence" => Some(("list", '[', ']')),
            "flow mapping" => Some(("mapping", '{', '}')),
            _ => None,
        };
        if let Some((what, open, close)) = close {
            let rest: String = src
                .text
                .lines()
                .skip(l.saturating_sub(1))
                .collect::<Vec<_>>()
                .join("\n")
                .chars()
                .skip(c.saturating_sub(1))
                .collect();
            // libyaml says the same when something else breaks the
            // collection (a stray `: `); only an unbalanced one is unclosed.
            let unclosed = !closes(&rest, open, close);
            if unclosed && core.contains(&format!("expected ',' or '{close}'")) {
                let text = src.text.lines().nth(l.saturating_sub(1)).unwrap_or("");
                let from: String = text.chars().skip(c.saturating_sub(1)).collect();
                let written = written_part(&from, close);
                let pad = if written.starts_with(&format!("{open} ")) {
                    " "
                } else {
                    ""
                };
                return Some((
                    l,
                    c,
                    format!("the {what} opened with `{open}` here is never closed"),
                    format!("close it with `{close}` on the same line: `{written}{pad}{close}`"),
                ));
            }
        }
    }
    let text = src.text.lines().nth(line.saturating_sub(1)).unwrap_or("");
    let tab_indent = text.trim_start_matches(' ').starts_with('\t');
    let tab_error = core.starts_with("found a tab character")
        || core.starts_with("found character that cannot start any token");
    if tab_error && tab_indent {
        let col = text.find('\t').unwrap_or(0) + 1;
        return Some((
            line,
            col,
            "this line is indented with a tab, and YAML indents with spaces only".into(),
            "replace the tab with spaces, as many as the keys it belongs with".into(),
        ));
    }
    let indentation = core.starts_with("mapping values are not allowed")
        || core.starts_with("did not find expected key")
        || core.starts_with("did not find expected '-' indicator");
    if indentation {
        return indentation_problem(src, line, col, core);
    }
    None
}

/// What was written of an unclosed collection: the line up to a comment
/// or a closer of the other kind that nothing opened (`[a }` -> `[a`).
fn written_part(line: &str, close: char) -> &str {
    let (other_open, other_close) = if close == ']' { ('{', '}') } else { ('[', ']') };
    let line = line.split(" #").next().unwrap_or("");
    let mut depth = 0usize;
    let mut end = line.len();
    for (i, ch) in line.char_indices() {
        if ch == other_open {
            depth += 1;
        } else if ch == other_close {
            if depth == 0 {
                end = i;
                break;
            }
            depth -= 1;
        }
    }
    line[..end].trim_end()
}

/// Whether the bracket that starts `text` is closed somewhere in it,
/// skipping quoted strings and comments.
fn closes(text: &str, open: char, close: char) -> bool {
    let mut depth = 0usize;
    let mut quote = None;
    let mut comment = false;
    let mut prev = ' ';
    for ch in text.chars() {
        match (quote, ch) {
            _ if comment => comment = ch != '\n',
            (Some(q), _) if ch == q => quote = None,
            (Some(_), _) => {}
            // A quote opens a string only where a scalar starts.
            (None, '"' | '\'') if prev.is_whitespace() || "[{,:".contains(prev) => quote = Some(ch),
            (None, '#') if prev.is_whitespace() => comment = true,
            (None, _) if ch == open => depth += 1,
            (None, _) if ch == close => {
                depth = depth.saturating_sub(1);
                if depth == 0 {
                    return true;
                }
            }
            _ => {}
        }
        prev = ch;
    }
    false
}

/// `..., while parsing a flow sequence at line 13 column 14` ->
/// (`flow sequence`, 13, 14).
fn context_mark(core: &str) -> Option<(&str, usize, usize)> {
    let (_, ctx) = core.rsplit_once("while parsing a ")?;
    let (kind, at) = ctx.split_once(" at line ")?;
    let (l, c) = at.split_once(" column ")?;
    Some((kind, l.trim().parse().ok()?, c.trim().parse().ok()?))
}

/// A line's indentation, its key and whether the key has a value on the
/// line, with any `- ` list markers counted as indentation:
/// `  - path: /a` -> (4, `path`, true).
fn key_of(line: &str) -> Option<(usize, &str, bool)> {
    let mut indent = 0;
    let mut rest = line;
    loop {
        let trimmed = rest.trim_start_matches(' ');
        indent += rest.len() - trimmed.len();
        match trimmed.strip_prefix('-') {
            Some(after) if after.starts_with(' ') => {
                indent += 1;
                rest = after;
            }
            _ => {
                rest = trimmed;
                break;
            }
        }
    }
    if rest.is_empty() || rest.starts_with('#') {
        return None;
    }
    // A key ends at `: ` or a final `:`; `a:b` is one plain scalar.
    let rest = rest.split(" #").next().unwrap_or(rest).trim_end();
    let (key, value) = match rest.split_once(": ") {
        Some(kv) => kv,
        None => (rest.strip_suffix(':').unwrap_or(rest), ""),
    };
    let value = value.trim();
    Some((
        indent,
        key.trim_end(),
        !value.is_empty() && !value.starts_with('#'),
    ))
}

/// The line at fault is indented unlike any key that it could sit beside,
/// or holds a second `: `. The keys it could align with are those of the
/// lines above it that open the enclosing mappings: the nearest line, then
/// each shallower one. When none of these explains the error, `None`
/// keeps libyaml's words rather than guess.
fn indentation_problem(
    src: &Source<'_>,
    line: usize,
    col: usize,
    core: &str,
) -> Option<(usize, usize, String, String)> {
    let lines: Vec<&str> = src.text.lines().collect();
    let text = lines.get(line.checked_sub(1)?)?;
    let (indent, key, _) = key_of(text)?;
    // Only a plain key is worth naming; anything else is left to libyaml.
    let plain = |c: char| c.is_ascii_alphanumeric() || "_-.".contains(c);
    if key.is_empty() || !key.chars().all(plain) {
        return None;
    }
    let key_colon = indent + key.len() + 1;
    if core.starts_with("mapping values are not allowed") && col > key_colon {
        return Some((
            line,
            col,
            format!("the value of `{key}` contains `: `, which YAML reads as another key"),
            format!("quote the value if the `: ` belongs in it (`{key}: \"a: b\"`), or move the next key to a line of its own"),
        ));
    }
    let mut levels: Vec<(usize, &str, bool)> = Vec::new();
    for l in lines[..line - 1].iter().rev() {
        let Some((i, k, v)) = key_of(l) else { continue };
        if levels.last().is_none_or(|&(last, ..)| i < last) {
            levels.push((i, k, v));
        }
        if i == 0 {
            break;
        }
    }
    let (above, above_key, above_value) = *levels.first()?;
    let spaces = |n: usize| {
        if n == 1 {
            "1 space".to_owned()
        } else {
            format!("{n} spaces")
        }
    };
    let (message, help) = if indent > above && above_value {
        (
            format!("`{key}:` is indented deeper than `{above_key}:` above it, so YAML reads it as part of that value"),
            format!("indent it by {}, like `{above_key}:`", spaces(above)),
        )
    } else if indent < above && levels.iter().all(|&(i, ..)| i != indent) {
        let options: Vec<String> = levels
            .iter()
            .take(2)
            .map(|&(i, k, _)| format!("{} (like `{k}:`)", spaces(i)))
            .collect();
        (
            format!(
                "`{key}:` is indented by {}, which lines up with no key above it",
                spaces(indent)
            ),
            format!(
                "indent it like the keys it belongs with: {}",
                options.join(" or ")
            ),
        )
    } else {
        return None;
    };
    Some((line, indent + 1, message, help))
}

#[cfg(test)]
mod tests;
