//! `$validate` (http://hl7.org/fhir/R4/resource-operation-validate.html):
//! on the type (`POST [base]/[type]/$validate`, the body a resource or a
//! Parameters whose `resource` parameter holds it) and on the instance
//! (`POST [base]/[type]/[id]/$validate` with a body, `GET` for the stored
//! version). The answer is 200 with an OperationOutcome, whatever it finds:
//! a problem in the resource is the operation's result, not its failure.

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use bytes::Bytes;
use gp_fhir::IssueType;
use serde_json::Value;

use crate::call::Call;
use crate::error::ApiError;
use crate::negotiate::{self, fhir};
use crate::{AppState, store_err};

type Res = Result<Response, ApiError>;

pub(crate) async fn on_type(State(_st): State<AppState>, call: Call, body: Body) -> Res {
    let resource = resource_of(&call, body).await?;
    answer(&call, resource).await
}

pub(crate) async fn on_instance_post(State(_st): State<AppState>, call: Call, body: Body) -> Res {
    call.id()?;
    let resource = resource_of(&call, body).await?;
    answer(&call, resource).await
}

pub(crate) async fn on_instance_get(State(st): State<AppState>, call: Call) -> Res {
    let (ty, id) = (call.ty()?, call.id()?);
    let v = st.store.read(&call.ctx, ty, id).await.map_err(store_err)?;
    let resource: Value = serde_json::from_slice(&v.body).map_err(|e| {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            IssueType::Exception,
            e.to_string(),
        )
    })?;
    answer(&call, resource).await
}

/// The resource to validate: the body, or the `resource` parameter of a
/// Parameters body. Unparseable input is 400, as for a create.
async fn resource_of(call: &Call, body: Body) -> Result<Value, ApiError> {
    let ty = call.ty()?;
    negotiate::check_content_type(&call.headers, negotiate::RESOURCE_TYPES)?;
    let bytes = call.body(body).await?;
    let value: Value = serde_json::from_slice(&bytes).map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            IssueType::Structure,
            format!("the body is not valid JSON: {e}"),
        )
    })?;
    let value = if value["resourceType"] == "Parameters" && ty.as_str() != "Parameters" {
        value["parameter"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|p| p["name"] == "resource")
            .and_then(|p| p.get("resource"))
            .cloned()
            .ok_or_else(|| ApiError::bad_request("the Parameters have no 'resource' parameter"))?
    } else {
        value
    };
    match value["resourceType"].as_str() {
        Some(t) if t == ty.as_str() => Ok(value),
        Some(t) => Err(ApiError::bad_request(format!(
            "the resource is a {t}, not a {ty}"
        ))),
        None => Err(ApiError::bad_request("the body has no resourceType")),
    }
}

/// Validates off the async executor (it is CPU work) and answers 200.
async fn answer(call: &Call, resource: Value) -> Res {
    let outcome =
        tokio::task::spawn_blocking(move || gp_validate::outcome(gp_validate::validate(&resource)))
            .await
            .map_err(|e| {
                ApiError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    IssueType::Exception,
                    e.to_string(),
                )
            })?;
    let body = Bytes::from(outcome.to_json().to_string());
    Ok(fhir(StatusCode::OK, call.format, HeaderMap::new(), body))
}
