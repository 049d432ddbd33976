//! Content negotiation and request preferences (http.html#mime-type,
//! http.html#parameters, http.html#ops for `Prefer`).

use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use gp_fhir::IssueType;

use crate::error::ApiError;

pub const FHIR_JSON: &str = "application/fhir+json; charset=utf-8";
const PLAIN_JSON: &str = "application/json; charset=utf-8";

/// How to write the response body.
#[derive(Clone, Copy, Debug)]
pub struct Format {
    /// The media type to answer with: FHIR JSON unless the client asked
    /// for plain `application/json`.
    pub media: &'static str,
    /// `_pretty=true`.
    pub pretty: bool,
}

fn media_is_json(m: &str) -> Option<&'static str> {
    let m = m
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    match m.as_str() {
        "json" | "application/fhir+json" | "application/json+fhir" => Some(FHIR_JSON),
        "application/json" => Some(PLAIN_JSON),
        "*/*" | "application/*" | "" => Some(FHIR_JSON),
        _ => None,
    }
}

impl Format {
    /// `_format` overrides `Accept`; XML and other formats are not served.
    pub fn from_request(
        query: &[(String, String)],
        headers: &HeaderMap,
    ) -> Result<Format, ApiError> {
        let pretty = query.iter().any(|(k, v)| k == "_pretty" && v == "true");
        let not_acceptable = |what: &str| {
            ApiError::new(
                StatusCode::NOT_ACCEPTABLE,
                IssueType::NotSupported,
                format!("'{what}' is not available; this server speaks FHIR JSON"),
            )
        };
        if let Some((_, f)) = query.iter().find(|(k, _)| k == "_format") {
            let media = media_is_json(f).ok_or_else(|| not_acceptable(f))?;
            return Ok(Format { media, pretty });
        }
        let accept = headers
            .get(header::ACCEPT)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        if accept.trim().is_empty() {
            return Ok(Format {
                media: FHIR_JSON,
                pretty,
            });
        }
        // The first acceptable type in the client's list wins; we ignore
        // q-values beyond refusing `q=0`.
        for part in accept.split(',') {
            if part.contains("q=0") && !part.contains("q=0.") {
                continue;
            }
            if let Some(media) = media_is_json(part) {
                return Ok(Format { media, pretty });
            }
        }
        Err(not_acceptable(accept))
    }
}

/// Refuses request bodies that are not JSON of an allowed media type (415).
pub fn check_content_type(headers: &HeaderMap, allowed: &[&str]) -> Result<(), ApiError> {
    let ct = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let base = ct
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    if allowed.contains(&base.as_str()) {
        Ok(())
    } else {
        let shown = if ct.is_empty() { "no Content-Type" } else { ct };
        Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            IssueType::NotSupported,
            format!(
                "{shown} is not accepted here; send {}",
                allowed.join(" or ")
            ),
        ))
    }
}

/// Body types accepted for resources.
pub const RESOURCE_TYPES: &[&str] = &[
    "application/fhir+json",
    "application/json",
    "application/json+fhir",
];
/// Body types accepted for PATCH.
pub const PATCH_TYPES: &[&str] = &["application/json-patch+json"];

/// `Prefer: return=...` (http.html#ops).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Return {
    Minimal,
    #[default]
    Representation,
    OperationOutcome,
}

/// What the client said in `Prefer`.
#[derive(Clone, Copy, Debug, Default)]
pub struct Prefer {
    pub ret: Return,
    /// `handling=strict`: refuse unknown search parameters.
    pub strict: bool,
}

impl Prefer {
    pub fn from_headers(headers: &HeaderMap) -> Prefer {
        let mut p = Prefer::default();
        for v in headers
            .get_all("prefer")
            .iter()
            .filter_map(|v| v.to_str().ok())
        {
            for token in v.split([',', ';']).map(str::trim) {
                match token {
                    "return=minimal" => p.ret = Return::Minimal,
                    "return=representation" => p.ret = Return::Representation,
                    "return=OperationOutcome" => p.ret = Return::OperationOutcome,
                    "handling=strict" => p.strict = true,
                    "handling=lenient" => p.strict = false,
                    _ => {}
                }
            }
        }
        p
    }
}

/// A FHIR JSON response. The body is sent as it is unless `_pretty` asks
/// for indentation.
pub fn fhir(status: StatusCode, format: Format, headers: HeaderMap, body: Bytes) -> Response {
    let body = if format.pretty && !body.is_empty() {
        serde_json::from_slice::<serde_json::Value>(&body)
            .ok()
            .and_then(|v| serde_json::to_vec_pretty(&v).ok())
            .map(Bytes::from)
            .unwrap_or(body)
    } else {
        body
    };
    let mut res = (status, headers, body).into_response();
    res.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(format.media));
    res
}
