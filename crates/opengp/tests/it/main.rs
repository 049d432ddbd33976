//! OpenGP's integration tests, in one test binary: the FHIR API through a
//! real server on a loopback port, the command line as a user types it,
//! crash safety with SIGKILL, and real data (the specification's examples
//! and the Synthea bundles).

mod api;
mod bundles;
mod cli;
mod crash;
mod real_data;
mod support;
