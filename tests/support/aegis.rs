//! The bundled AEGIS spec as the tests know it: `tests/specs/aegis.yaml`, a
//! copy of `gateway.yaml`. Tests of AEGIS behaviour (its routes, rewrites,
//! public routes, identities) run against this copy, so editing
//! `gateway.yaml` and accepting the snapshots needs no Rust edit (README,
//! "Changing a route"; `.ci/route-change-check` proves it).

gateway_macros::spec!("tests/specs/aegis.yaml");
