//! What every FHIR request carries, extracted once: the practice and acting
//! user, the base URL, the response format, `Prefer`, and the query.

use std::collections::HashMap;

use axum::body::Body;
use axum::extract::{FromRequestParts, Path};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode};
use bytes::Bytes;
use gp_fhir::{Id, IssueType, ResourceType};
use gp_store::Ctx;
use http_body_util::BodyExt;

use crate::AppState;
use crate::error::ApiError;
use crate::negotiate::{Format, Prefer};

/// A FHIR request, ready for a handler.
pub struct Call {
    pub ctx: Ctx,
    /// The practice's FHIR base URL, e.g. `http://host/practices/A81001/fhir`.
    pub base: String,
    pub format: Format,
    pub prefer: Prefer,
    /// The query parameters in order, repeats kept.
    pub query: Vec<(String, String)>,
    pub headers: HeaderMap,
    params: HashMap<String, String>,
    max_body: usize,
}

impl FromRequestParts<AppState> for Call {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let Path(params) = Path::<HashMap<String, String>>::from_request_parts(parts, state)
            .await
            .map_err(|e| ApiError::bad_request(format!("the URL could not be read: {e}")))?;
        let ods = params.get("ods").cloned().unwrap_or_default();
        let practice = state.practice(&ods).await?;
        let query = gp_fhir::search::parse_query_string(parts.uri.query().unwrap_or(""));
        let format = Format::from_request(&query, &parts.headers)?;
        let root = crate::root_url(&state.config, &parts.uri, &parts.headers);
        let base = format!("{root}/practices/{}/fhir", practice.ods);
        // Every request resolves to an access context, which the store
        // enforces; only the CapabilityStatement is public.
        // (Inside the nested router the path is relative to the FHIR base.)
        let path = parts.uri.path();
        let public = path == "/metadata" || path.ends_with("/fhir/metadata");
        let ctx = if public {
            Ctx::anonymous(practice)
        } else {
            let address = crate::auth::client_address(&parts.extensions);
            crate::auth::authenticate(state, &practice, &parts.headers, address).await?
        };
        Ok(Call {
            ctx,
            base,
            format,
            prefer: Prefer::from_headers(&parts.headers),
            query,
            headers: parts.headers.clone(),
            params,
            max_body: state.config.max_body_bytes,
        })
    }
}

impl Call {
    /// The `{type}` path segment, which must name an R4 resource type.
    pub fn ty(&self) -> Result<ResourceType, ApiError> {
        let t = self
            .params
            .get("type")
            .map(String::as_str)
            .unwrap_or_default();
        ResourceType::parse(t).ok_or_else(|| {
            ApiError::not_found(format!("'{t}' is not a resource type this server supports"))
        })
    }

    /// The `{id}` path segment.
    pub fn id(&self) -> Result<Id, ApiError> {
        let id = self
            .params
            .get("id")
            .map(String::as_str)
            .unwrap_or_default();
        Id::parse(id).map_err(|e| ApiError::bad_request(e.to_string()))
    }

    /// The `{vid}` path segment.
    pub fn version(&self) -> Result<u64, ApiError> {
        let v = self
            .params
            .get("vid")
            .map(String::as_str)
            .unwrap_or_default();
        v.parse()
            .map_err(|_| ApiError::not_found(format!("'{v}' is not a version id")))
    }

    /// A path segment by name.
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params.get(name).map(String::as_str)
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// Reads the body, refusing one over the configured limit (413).
    pub async fn body(&self, body: Body) -> Result<Bytes, ApiError> {
        let too_long = || {
            ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                IssueType::TooLong,
                format!(
                    "the body is larger than this server accepts ({} bytes)",
                    self.max_body
                ),
            )
        };
        let declared = self
            .header("content-length")
            .and_then(|v| v.parse::<usize>().ok());
        if declared.is_some_and(|n| n > self.max_body) {
            linger(body).await;
            return Err(too_long());
        }
        let mut body = body;
        let mut bytes = bytes::BytesMut::new();
        while let Some(frame) = body.frame().await {
            let frame = frame
                .map_err(|e| ApiError::bad_request(format!("the body could not be read: {e}")))?;
            if let Some(data) = frame.data_ref() {
                if bytes.len() + data.len() > self.max_body {
                    linger(body).await;
                    return Err(too_long());
                }
                bytes.extend_from_slice(data);
            }
        }
        Ok(bytes.freeze())
    }
}

/// Reads and discards what is left of a refused body, for a bounded time and
/// amount, before the refusal is sent ("lingering close"). A server that
/// answers while the client is still uploading and then closes makes the
/// client's socket reset, and the client never sees the 413 that explains why.
async fn linger(body: Body) {
    const MAX_BYTES: usize = 256 * 1024 * 1024;
    const MAX_TIME: std::time::Duration = std::time::Duration::from_secs(10);
    let mut body = body;
    let drain = async {
        let mut seen = 0usize;
        while let Some(Ok(frame)) = body.frame().await {
            seen += frame.data_ref().map_or(0, Bytes::len);
            if seen > MAX_BYTES {
                break;
            }
        }
    };
    let _ = tokio::time::timeout(MAX_TIME, drain).await;
}
