//! The one mapping from errors to HTTP statuses and OperationOutcomes.
//!
//! | error                               | status | issue code     |
//! |-------------------------------------|--------|----------------|
//! | body not JSON / not a resource      | 400    | structure/invalid |
//! | bad parameter or header             | 400    | invalid        |
//! | no or expired session, sign-in refused | 401  | login (with `WWW-Authenticate`) |
//! | role does not allow it, other practice's session | 403 | forbidden |
//! | unknown type, id, version, practice | 404    | not-found      |
//! | method not allowed on the URL       | 405    | not-supported  |
//! | media type not acceptable           | 406    | not-supported  |
//! | `If-Match` mismatch, ambiguous condition | 412 | conflict / multiple-matches |
//! | state conflict                      | 409    | conflict       |
//! | write to a frozen (read-only) practice | 409 | lock-error     |
//! | deleted resource                    | 410    | deleted        |
//! | body over the configured limit      | 413    | too-long       |
//! | body media type not JSON            | 415    | not-supported  |
//! | resourceType/id contradicts the URL, patch fails | 422 | invalid/processing |
//! | too many sign-ins or refused requests from one address | 429 | throttled (with `Retry-After`) |
//! | interaction not implemented         | 501    | not-supported  |
//! | storage failure                     | 500    | exception (cause logged, not sent) |
//! | store closing                       | 503    | transient      |

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use gp_fhir::{IssueType, OperationOutcome};
use gp_store::StoreError;

use crate::negotiate::FHIR_JSON;

/// An error on its way to the client.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub outcome: OperationOutcome,
    /// The ETag of a deleted version.
    pub etag: Option<String>,
    /// Seconds before a throttled client may try again (`Retry-After`).
    pub retry_after: Option<u64>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: IssueType, msg: impl Into<String>) -> Self {
        Self::with_outcome(status, OperationOutcome::error(code, msg))
    }

    pub fn with_outcome(status: StatusCode, outcome: OperationOutcome) -> Self {
        ApiError {
            status,
            outcome,
            etag: None,
            retry_after: None,
        }
    }

    /// 429: too many attempts from this client; it may try again after
    /// `seconds`.
    pub fn throttled(seconds: u64, msg: impl Into<String>) -> Self {
        ApiError {
            retry_after: Some(seconds.max(1)),
            ..Self::new(StatusCode::TOO_MANY_REQUESTS, IssueType::Throttled, msg)
        }
    }

    pub fn bad_request(msg: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, IssueType::Invalid, msg)
    }

    pub fn not_found(msg: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, IssueType::NotFound, msg)
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        let (status, code) = status_of(&e);
        match e {
            StoreError::BadRequest(o) | StoreError::Unprocessable(o) => {
                ApiError::with_outcome(status, o)
            }
            StoreError::Gone { version, .. } => ApiError {
                etag: Some(format!("W/\"{version}\"")),
                ..ApiError::new(status, code, e.to_string())
            },
            StoreError::Backend(cause) => {
                // The cause may name tables or paths: log it, do not send it.
                tracing::error!(%cause, "storage failure");
                ApiError::new(
                    status,
                    code,
                    "the server could not complete the request because of a storage failure",
                )
            }
            other => ApiError::new(status, code, other.to_string()),
        }
    }
}

/// The status and issue code of a store error; also used for the responses
/// of failed batch entries.
pub fn status_of(e: &StoreError) -> (StatusCode, IssueType) {
    match e {
        StoreError::NotFound(_) | StoreError::Restricted(_) => {
            (StatusCode::NOT_FOUND, IssueType::NotFound)
        }
        StoreError::Gone { .. } => (StatusCode::GONE, IssueType::Deleted),
        StoreError::BadRequest(_) => (StatusCode::BAD_REQUEST, IssueType::Invalid),
        StoreError::Unprocessable(_) => (StatusCode::UNPROCESSABLE_ENTITY, IssueType::Invalid),
        StoreError::PreconditionFailed(_) => (StatusCode::PRECONDITION_FAILED, IssueType::Conflict),
        StoreError::Conflict(_) => (StatusCode::CONFLICT, IssueType::Conflict),
        StoreError::Frozen(_) => (StatusCode::CONFLICT, IssueType::LockError),
        StoreError::NotSupported(_) => (StatusCode::NOT_IMPLEMENTED, IssueType::NotSupported),
        StoreError::Backend(_) => (StatusCode::INTERNAL_SERVER_ERROR, IssueType::Exception),
        StoreError::Unauthorized(_) => (StatusCode::UNAUTHORIZED, IssueType::Login),
        StoreError::Forbidden(_) => (StatusCode::FORBIDDEN, IssueType::Forbidden),
        StoreError::Unavailable => (StatusCode::SERVICE_UNAVAILABLE, IssueType::Transient),
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = self.outcome.to_json().to_string();
        let mut res = (self.status, body).into_response();
        res.headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static(FHIR_JSON));
        if self.status == StatusCode::UNAUTHORIZED {
            // rfc6750 section 3: say how to authenticate.
            res.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"OpenGP\""),
            );
        }
        if let Some(s) = self.retry_after {
            res.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(s));
        }
        if let Some(tag) = self.etag.and_then(|t| HeaderValue::from_str(&t).ok()) {
            res.headers_mut().insert(header::ETAG, tag);
        }
        res
    }
}
