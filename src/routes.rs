// The items below are generated from the spec; `tests/generated.rs` keeps a
// reviewed snapshot of them.
include!(concat!(env!("OUT_DIR"), "/gateway_routes.rs"));
