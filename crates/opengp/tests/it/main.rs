//! OpenGP's integration tests, in one test binary: the FHIR API through a
//! real server on a loopback port, the command line as a user types it,
//! crash safety with SIGKILL, the audit trail, and real data (the specification's examples
//! and the Synthea bundles). The API, bundle and real-data suites run on
//! both storage backends, PostgreSQL on a throwaway cluster (`pg`).

mod admin;
mod api;
mod audit;
mod auth;
mod browser;
mod bulk;
mod bundles;
mod child;
mod cli;
mod concurrency;
mod crash;
mod demo;
mod dmd;
mod matrix;
mod migrate;
mod modifiers;
mod oidc;
mod online;
mod pg;
mod real_data;
mod reindex;
mod search;
mod smart;
mod support;
mod tenancy;
mod terminology;
mod tls;
mod validation;
