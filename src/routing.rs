//! Routing: path sanity, then a `matchit` lookup built once from the
//! compiled spec's paths, then the method check. Contract §1.
//!
//! Everything here allocates nothing per request
//! (`tests/dispatch_alloc.rs` proves it for the bundled spec).

pub mod path;

#[cfg(test)]
mod tests;

use crate::spec::Methods;
pub use path::PathError;

/// Why a request matched no route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Miss {
    /// The path broke a sanity rule (400).
    BadPath(PathError),
    /// No route matches the path (404).
    NotFound,
}

/// A path match: the routes sharing the matched path, and the captured
/// parameters in path order, raw as received.
#[derive(Debug)]
pub struct PathMatch<'r, 'p, V> {
    /// The routes registered at the matched path.
    pub routes: &'r V,
    /// Captured parameters, in path order.
    pub params: matchit::Params<'r, 'p>,
}

impl<V> PathMatch<'_, '_, V> {
    /// The n-th captured parameter.
    #[inline]
    pub fn param(&self, n: usize) -> Option<&str> {
        self.params.iter().nth(n).map(|(_, v)| v)
    }
}

/// The router: built once at start-up, read-only afterwards.
#[derive(Debug)]
pub struct Router<V> {
    inner: matchit::Router<V>,
}

impl<V> Router<V> {
    /// Builds a router from compiled paths. The spec compiler inserted the
    /// same paths into the same matchit version, so this cannot fail for a
    /// compiled spec.
    ///
    /// # Errors
    /// A path matchit rejects (only for hand-built tables).
    pub fn new<S: Into<String>>(
        paths: impl IntoIterator<Item = (S, V)>,
    ) -> Result<Self, matchit::InsertError> {
        let mut inner = matchit::Router::new();
        for (p, v) in paths {
            inner.insert(p, v)?;
        }
        Ok(Router { inner })
    }

    /// Checks the path and finds the most specific matching path.
    ///
    /// # Errors
    /// [`Miss::BadPath`] before matching, [`Miss::NotFound`] after.
    #[inline]
    pub fn lookup<'r, 'p>(&'r self, path: &'p str) -> Result<PathMatch<'r, 'p, V>, Miss> {
        path::check(path).map_err(Miss::BadPath)?;
        let m = self.inner.at(path).map_err(|_| Miss::NotFound)?;
        Ok(PathMatch {
            routes: m.value,
            params: m.params,
        })
    }
}

/// Picks the route among those sharing a path that accepts `method`.
///
/// # Errors
/// The union of their methods, for `405` and `Allow`.
#[inline]
pub fn select_method<R: Copy>(
    routes: &[R],
    method: &http::Method,
    methods_of: impl Fn(R) -> Methods,
) -> Result<R, Methods> {
    let mut allow = 0;
    for &r in routes {
        let m = methods_of(r);
        if m.contains(method) {
            return Ok(r);
        }
        allow |= m.0;
    }
    Err(Methods(allow))
}
