//! `GET [base]/metadata`: a CapabilityStatement that says exactly what this
//! server does (http.html#capabilities).

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use bytes::Bytes;
use gp_fhir::{FHIR_VERSION, Instant, ResourceType};
use serde_json::{Value, json};

use crate::AppState;
use crate::call::Call;
use crate::error::ApiError;
use crate::negotiate::fhir;

/// The search parameters every resource type supports in this release.
const COMMON_SEARCH: [(&str, &str, &str); 2] = [
    (
        "_id",
        "http://hl7.org/fhir/SearchParameter/Resource-id",
        "token",
    ),
    (
        "_lastUpdated",
        "http://hl7.org/fhir/SearchParameter/Resource-lastUpdated",
        "date",
    ),
];

pub async fn metadata(State(_st): State<AppState>, call: Call) -> Result<Response, ApiError> {
    let search: Vec<Value> = COMMON_SEARCH
        .iter()
        .map(|(name, def, ty)| json!({ "name": name, "definition": def, "type": ty }))
        .collect();
    let interactions = [
        "read",
        "vread",
        "update",
        "patch",
        "delete",
        "history-instance",
        "history-type",
        "create",
        "search-type",
    ];
    let resources: Vec<Value> = ResourceType::all()
        .map(|t| {
            json!({
                "type": t.as_str(),
                "interaction": interactions.iter().map(|i| json!({ "code": i })).collect::<Vec<_>>(),
                "versioning": "versioned-update",
                "readHistory": true,
                "updateCreate": true,
                "conditionalCreate": true,
                "conditionalRead": "not-supported",
                "conditionalUpdate": true,
                "conditionalDelete": "single",
                "searchParam": search,
            })
        })
        .collect();
    let body = json!({
        "resourceType": "CapabilityStatement",
        "status": "active",
        "date": Instant::now().to_fhir(),
        "publisher": "OpenGP",
        "kind": "instance",
        "software": { "name": "OpenGP", "version": env!("CARGO_PKG_VERSION") },
        "implementation": {
            "description": format!("OpenGP FHIR API for {} ({})", call.ctx.practice.name, call.ctx.practice.ods),
            "url": call.base,
        },
        "fhirVersion": FHIR_VERSION,
        "format": ["application/fhir+json", "json"],
        "patchFormat": ["application/json-patch+json"],
        "rest": [{
            "mode": "server",
            "resource": resources,
            "interaction": [
                { "code": "transaction" },
                { "code": "batch" },
                { "code": "search-system" },
                { "code": "history-system" }
            ],
            "searchParam": search,
        }],
    });
    Ok(fhir(
        StatusCode::OK,
        call.format,
        HeaderMap::new(),
        Bytes::from(body.to_string()),
    ))
}
