//! The pieces of the `opengp` binary that tests also use: configuration
//! and starting a server. Everything here is glue over the library crates.

pub mod config;
pub mod demo;
pub mod server;
pub mod terminology;
