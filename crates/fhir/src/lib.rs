//! The FHIR R4 (4.0.1) model OpenGP works with, over JSON.
//!
//! Resources stay as JSON objects (`serde_json::Map`) rather than generated
//! structs: the server stores and returns what clients send, extensions and
//! unknown-but-valid content included, and the build stays small. What the
//! server needs to know about the specification (resource types, element
//! trees, search parameters, compartments) is embedded from `data/`, derived
//! from the official package by `cargo xtask codegen`.
//!
//! This crate is pure: no IO, no async, no SQL, no HTTP.

pub mod bundle;
pub mod definitions;
mod id;
mod instant;
pub mod outcome;
pub mod patch;
pub mod resource;
pub mod search;
pub mod ucum;
pub mod view;

pub use id::{Id, IdError, OdsCode, ResourceType};
pub use instant::{DateRange, Instant, InstantError};
pub use outcome::{IssueType, OperationOutcome, Severity};
pub use resource::{Resource, ResourceError};

/// The FHIR version this server implements.
pub const FHIR_VERSION: &str = "4.0.1";
