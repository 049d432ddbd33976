//! `POST [base]/Patient/[id]/$break-glass`: breaking the glass to see a
//! patient's restricted entries (gp-store glass.rs). The body is a
//! Parameters resource with a `reason` (valueString, required); the answer
//! a Parameters with the grant's `patient` and `expires`. An operation
//! rather than a header on every request: the override is one deliberate,
//! audited act with its reason, not something a client repeats unnoticed.

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use bytes::Bytes;
use serde_json::{Value, json};

use crate::call::Call;
use crate::error::ApiError;
use crate::negotiate::{self, fhir};
use crate::{AppState, store_err};

pub(crate) async fn break_glass(
    State(st): State<AppState>,
    call: Call,
    body: Body,
) -> Result<Response, ApiError> {
    let (ty, id) = (call.ty()?, call.id()?);
    if ty.as_str() != "Patient" {
        return Err(ApiError::bad_request(
            "$break-glass is an operation on a Patient",
        ));
    }
    negotiate::check_content_type(&call.headers, negotiate::RESOURCE_TYPES)?;
    let bytes = call.body(body).await?;
    let params: Value = serde_json::from_slice(&bytes)
        .map_err(|e| ApiError::bad_request(format!("the body is not valid JSON: {e}")))?;
    if params["resourceType"] != "Parameters" {
        return Err(ApiError::bad_request(
            "the body must be a Parameters resource with a 'reason'",
        ));
    }
    let reason = params["parameter"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|p| p["name"] == "reason")
        .and_then(|p| p["valueString"].as_str())
        .unwrap_or_default();
    let grant = st
        .store
        .break_glass(&call.ctx, id, reason)
        .await
        .map_err(store_err)?;
    let out = json!({
        "resourceType": "Parameters",
        "parameter": [
            {"name": "patient", "valueReference": {"reference": format!("Patient/{}", grant.patient)}},
            {"name": "expires", "valueInstant": grant.expires.to_fhir()}
        ]
    });
    Ok(fhir(
        StatusCode::OK,
        call.format,
        HeaderMap::new(),
        Bytes::from(out.to_string()),
    ))
}
