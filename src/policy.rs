//! Policy steps that routes compose into their chains.

pub mod breaker;
pub mod canary;
pub mod cors;
pub mod credentials;
pub mod ratelimit;
pub mod retry;
pub mod version;

pub use credentials::StripCredentials;
