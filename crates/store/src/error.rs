//! What can go wrong in a storage call. The HTTP layer maps each variant to
//! one status and OperationOutcome issue code, in one table.

use gp_fhir::{Instant, OperationOutcome};

#[derive(Clone, Debug, thiserror::Error)]
pub enum StoreError {
    /// The resource, version or practice does not exist (or is another
    /// practice's, which must look the same).
    #[error("{0}")]
    NotFound(String),
    /// A restricted entry (`Type/id`) the context may not see (access.rs):
    /// answered exactly as an unknown resource (404, same words), but
    /// recorded in the audit trail as a refusal.
    #[error("{0} is not known")]
    Restricted(String),
    /// The resource exists but its latest version is a deletion.
    #[error("{what} was deleted")]
    Gone {
        what: String,
        version: u64,
        last_updated: Instant,
    },
    /// The client's input is malformed: not JSON, not a resource, a bad
    /// parameter (400).
    #[error("{}", first_diagnostic(.0))]
    BadRequest(OperationOutcome),
    /// The input is well formed but not acceptable here: a resourceType or
    /// id that contradicts the URL, a patch that does not apply (422).
    #[error("{}", first_diagnostic(.0))]
    Unprocessable(OperationOutcome),
    /// A version-aware precondition failed (`If-Match`), or a conditional
    /// operation matched more than one resource (412).
    #[error("{0}")]
    PreconditionFailed(String),
    /// The request conflicts with the current state (409).
    #[error("{0}")]
    Conflict(String),
    /// The practice is frozen read-only (for a migration's final export):
    /// writes are refused (409), reads go on.
    #[error("{0}")]
    Frozen(String),
    /// A feature this server does not implement (501 for interactions,
    /// 400 for parameters).
    #[error("{0}")]
    NotSupported(String),
    /// The storage engine failed; the cause is logged, never sent (500/503).
    #[error("storage failure: {0}")]
    Backend(String),
    /// No valid session, or a sign-in that failed (401). The message never
    /// tells which part was wrong.
    #[error("{0}")]
    Unauthorized(String),
    /// The user's role does not allow this (403).
    #[error("{0}")]
    Forbidden(String),
    /// The store is shutting down or its writer is gone (503).
    #[error("the store is not available")]
    Unavailable,
}

fn first_diagnostic(o: &OperationOutcome) -> String {
    o.issues
        .first()
        .map(|i| i.diagnostics.clone())
        .unwrap_or_default()
}

impl StoreError {
    pub fn bad_request(code: gp_fhir::IssueType, msg: impl Into<String>) -> Self {
        StoreError::BadRequest(OperationOutcome::error(code, msg))
    }

    pub fn unprocessable(code: gp_fhir::IssueType, msg: impl Into<String>) -> Self {
        StoreError::Unprocessable(OperationOutcome::error(code, msg))
    }
}
