//! Method sets as bits, in `Allow` order. The runtime's `gateway::spec::Methods`
//! uses the same bits, so a set is emitted as these names, never as a number.

/// `GET`.
pub const GET: u16 = 1;
/// `HEAD`: implied by `GET` (RFC 9110 §9.3.2).
pub const HEAD: u16 = 2;
/// `POST`.
pub const POST: u16 = 4;
/// `PUT`.
pub const PUT: u16 = 8;
/// `PATCH`.
pub const PATCH: u16 = 16;
/// `DELETE`.
pub const DELETE: u16 = 32;
/// `OPTIONS`.
pub const OPTIONS: u16 = 64;
/// Every standard method: the default for a route that lists none.
pub const ALL: u16 = GET | HEAD | POST | PUT | PATCH | DELETE | OPTIONS;

/// The methods a route may list, in `Allow` order, with their bits.
pub const METHODS: [(&str, u16); 7] = [
    ("GET", GET),
    ("HEAD", HEAD),
    ("POST", POST),
    ("PUT", PUT),
    ("PATCH", PATCH),
    ("DELETE", DELETE),
    ("OPTIONS", OPTIONS),
];

/// The names of the methods in `bits`, in `Allow` order.
pub fn names(bits: u16) -> impl Iterator<Item = &'static str> {
    METHODS
        .iter()
        .filter(move |(_, b)| bits & b != 0)
        .map(|(m, _)| *m)
}

/// Methods as written in an `Allow` header, or `any`.
pub fn text(bits: u16) -> String {
    if bits == ALL {
        return "any".into();
    }
    names(bits).collect::<Vec<_>>().join(",")
}
