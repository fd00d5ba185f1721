//! The HTTP methods a route accepts, as bits: the 405's `Allow` header
//! and the generated method tables both read them.

/// A set of HTTP methods as bits, in `Allow` order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Methods(pub u16);

impl Methods {
    /// `GET`
    pub const GET: u16 = 1;
    /// `HEAD`
    pub const HEAD: u16 = 2;
    /// `POST`
    pub const POST: u16 = 4;
    /// `PUT`
    pub const PUT: u16 = 8;
    /// `PATCH`
    pub const PATCH: u16 = 16;
    /// `DELETE`
    pub const DELETE: u16 = 32;
    /// `OPTIONS`
    pub const OPTIONS: u16 = 64;
    /// Every method a route can accept (the default).
    pub const ANY: Methods = Methods(127);

    /// Method names and bits, in the order `Allow` lists them.
    pub const NAMES: [(&'static str, u16); 7] = [
        ("GET", 1),
        ("HEAD", 2),
        ("POST", 4),
        ("PUT", 8),
        ("PATCH", 16),
        ("DELETE", 32),
        ("OPTIONS", 64),
    ];

    /// The bit of a request method, or 0 for a method no route accepts.
    pub fn bit(m: &http::Method) -> u16 {
        match *m {
            http::Method::GET => 1,
            http::Method::HEAD => 2,
            http::Method::POST => 4,
            http::Method::PUT => 8,
            http::Method::PATCH => 16,
            http::Method::DELETE => 32,
            http::Method::OPTIONS => 64,
            _ => 0,
        }
    }

    /// Whether `m` is in the set.
    pub fn contains(self, m: &http::Method) -> bool {
        self.0 & Self::bit(m) != 0
    }

    /// The `Allow` header value. Built from a fixed table, so a static
    /// string per set would also do; sets are few and 405s are rare.
    pub fn allow_header(self) -> String {
        Self::NAMES
            .iter()
            .filter(|(_, b)| self.0 & b != 0)
            .map(|(n, _)| *n)
            .collect::<Vec<_>>()
            .join(", ")
    }
}
