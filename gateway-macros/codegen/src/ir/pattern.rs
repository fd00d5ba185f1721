//! Route patterns and upstream templates, parsed (contract §1). The
//! parsers, with their rules and messages, are in `validate::pattern`.

/// A parsed route pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pattern {
    /// Segments after the leading `/`.
    pub segments: Vec<Seg>,
    /// `true` for `/prefix*`.
    pub prefix: bool,
    /// The pattern ends with `/` (and is not a prefix route).
    pub trailing_slash: bool,
}

/// One pattern segment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Seg {
    /// Matched literally.
    Lit(String),
    /// `{name}`: exactly one non-empty segment.
    Param(String),
    /// `{*name}`: the rest of the path, one or more bytes.
    CatchAll(String),
}

impl Pattern {
    /// Names of `{name}` and `{*name}` parameters in path order.
    pub fn params(&self) -> impl Iterator<Item = &str> {
        self.segments.iter().filter_map(|s| match s {
            Seg::Param(n) | Seg::CatchAll(n) => Some(n.as_str()),
            Seg::Lit(_) => None,
        })
    }

    /// Where the forwarded rest starts, counted in path segments: the
    /// segment of a `{*name}` catch-all, or the first segment below a
    /// prefix route's base. `None` for exact routes.
    pub fn rest_segment(&self) -> Option<usize> {
        if self.prefix {
            return Some(self.segments.len());
        }
        match self.segments.last() {
            Some(Seg::CatchAll(_)) => Some(self.segments.len() - 1),
            _ => None,
        }
    }

    /// The paths inserted into the matchit router for this pattern, each
    /// with its [`Tier`]. Parameters are renamed by position (`{p0}`) since
    /// dispatch reads them by position, never by name.
    ///
    /// A catch-all (and a prefix route's "anything below") is inserted as a
    /// one-segment parameter plus a catch-all below it, never as a bare
    /// catch-all: matchit cannot hold `{param}` and `{*rest}` at the same
    /// position, while the contract ranks them (static > param > rest). The
    /// parameter leaf is [`Tier::Rest`], so a real `{param}` route at the
    /// same leaf wins it.
    pub fn router_paths(&self) -> Vec<(String, Tier)> {
        let mut base = String::new();
        let mut n = 0;
        for seg in &self.segments {
            match seg {
                Seg::Lit(l) => {
                    base.push('/');
                    base.push_str(&escape(l));
                }
                Seg::Param(_) => {
                    base.push_str(&format!("/{{p{n}}}"));
                    n += 1;
                }
                Seg::CatchAll(_) => {}
            }
        }
        let below = |base: &str| {
            vec![
                (format!("{base}/{{p{n}}}"), Tier::Rest),
                (format!("{base}/{{p{n}}}/"), Tier::Rest),
                (format!("{base}/{{p{n}}}/{{*p{}}}", n + 1), Tier::Rest),
            ]
        };
        if self.prefix {
            let mut v = if base.is_empty() {
                vec![("/".to_owned(), Tier::Exact)]
            } else {
                vec![
                    (base.clone(), Tier::Exact),
                    (format!("{base}/"), Tier::Exact),
                ]
            };
            v.extend(below(&base));
            return v;
        }
        if matches!(self.segments.last(), Some(Seg::CatchAll(_))) {
            return below(&base);
        }
        if base.is_empty() || self.trailing_slash {
            base.push('/');
        }
        vec![(base, Tier::Exact)]
    }
}

/// How a router path was produced: where two routes share a path, the
/// more specific tier wins it outright (no fall-back on method).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Tier {
    /// The route's own literal and `{param}` segments.
    Exact,
    /// The first segment(s) of a catch-all or prefix rest.
    Rest,
}

/// matchit treats `{` and `}` specially; literals never contain them (they
/// are rejected), so escaping is the identity, kept for clarity.
fn escape(lit: &str) -> String {
    lit.replace('{', "{{").replace('}', "}}")
}

/// One piece of an upstream path template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Part {
    /// Copied as is.
    Lit(String),
    /// The n-th `{name}` parameter, raw as received.
    Param(usize),
    /// The `{*name}` catch-all's value, raw: `a/b` (no leading slash).
    Rest,
    /// What follows a prefix route's base: ``, `/` or `/...`.
    Suffix,
}
