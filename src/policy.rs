//! Policy steps that routes compose into their chains.

pub mod breaker;
pub mod credentials;

pub use credentials::StripCredentials;
