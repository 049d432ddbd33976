//! `GET [base]/metadata`: a CapabilityStatement that says exactly what this
//! server does (http.html#capabilities).

use std::sync::LazyLock;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use bytes::Bytes;
use gp_fhir::search::FUNCTIONAL_LISTS;
use gp_fhir::search::registry::{self, ParamKind};
use gp_fhir::{FHIR_VERSION, Instant, ResourceType};
use serde_json::{Value, json};

use crate::AppState;
use crate::call::Call;
use crate::error::ApiError;
use crate::negotiate::fhir;

/// Whether search supports parameter `p` of `ty`: the registry's, but of
/// AuditEvent only those the audit trail indexes.
fn supported(ty: ResourceType, p: &registry::SearchParam) -> bool {
    p.is_searchable()
        && (ty.as_str() != "AuditEvent" || gp_store::audit::INDEXED_PARAMS.contains(&p.code))
}

/// The search parameters of a type that search really supports
/// (search.html#conformance): the same registry the parser uses.
fn search_params(ty: ResourceType) -> Vec<Value> {
    let own = registry::params(ty)
        .iter()
        .filter(|p| supported(ty, p))
        .map(|p| {
            let kind = match p.kind {
                ParamKind::Number => "number",
                ParamKind::Date => "date",
                ParamKind::String => "string",
                ParamKind::Token => "token",
                ParamKind::Reference => "reference",
                ParamKind::Composite => "composite",
                ParamKind::Quantity => "quantity",
                ParamKind::Uri => "uri",
                ParamKind::Special => "special",
            };
            json!({
                "name": p.code,
                "definition": p.url,
                "type": kind,
                "documentation": modifiers(p.kind),
            })
        });
    own.chain(std::iter::once(list_param())).collect()
}

/// `_list` (search.html#list), which R4 defines no SearchParameter for.
fn list_param() -> Value {
    let functional: Vec<String> = FUNCTIONAL_LISTS
        .iter()
        .map(|f| {
            let criteria: Vec<String> = f.params.iter().map(|(c, v)| format!("{c}={v}")).collect();
            format!("{} ({}?{})", f.name, f.ty, criteria.join("&"))
        })
        .collect();
    json!({
        "name": "_list",
        "type": "special",
        "documentation": format!(
            "The resources a List's entries refer to (_list=[List id]), or a functional list: {}.",
            functional.join("; ")
        ),
    })
}

/// The modifiers search accepts on a parameter type (search.html#modifiers),
/// as the parameter's documentation: R4's CapabilityStatement has no element
/// for them.
fn modifiers(kind: ParamKind) -> &'static str {
    match kind {
        ParamKind::String => "Modifiers: :exact, :contains, :missing.",
        ParamKind::Token => {
            "Modifiers: :not, :text, :of-type, :missing; :below and :above for SNOMED CT codes \
             (http://snomed.info/sct|code, by subsumption); :in and :not-in for SNOMED CT implicit \
             value sets (http://snomed.info/sct?fhir_vs, ?fhir_vs=isa/X, ?fhir_vs=refset/X, \
             ?fhir_vs=ecl/...), expanded to at most 10,000 codes."
        }
        ParamKind::Reference => "Modifiers: :[type], :identifier, :missing.",
        ParamKind::Uri => "Modifiers: :below, :above, :missing.",
        _ => "Modifiers: :missing.",
    }
}

/// `_include` values a type supports: each of its reference parameters.
fn includes(ty: ResourceType) -> Vec<String> {
    registry::params(ty)
        .iter()
        .filter(|p| p.kind == ParamKind::Reference && supported(ty, p))
        .map(|p| format!("{ty}:{}", p.code))
        .collect()
}

/// Search parameters on the whole practice (`GET [base]?...`).
const SYSTEM_SEARCH: [(&str, &str, &str); 3] = [
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
    (
        "_type",
        "http://hl7.org/fhir/SearchParameter/Resource-type",
        "token",
    ),
];

/// `rest.resource` for every type; it depends on nothing but the
/// specification, so it is built once.
static RESOURCES: LazyLock<Vec<Value>> = LazyLock::new(|| {
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
    let mut revincludes: std::collections::BTreeMap<ResourceType, Vec<String>> = Default::default();
    for source in ResourceType::all() {
        for p in registry::params(source)
            .iter()
            .filter(|p| p.kind == ParamKind::Reference && supported(source, p))
        {
            for target in &p.targets {
                revincludes
                    .entry(*target)
                    .or_default()
                    .push(format!("{source}:{}", p.code));
            }
        }
    }
    ResourceType::all()
        .map(|t| {
            json!({
                "type": t.as_str(),
                // The audit trail is append-only: no client writes it.
                "interaction": interactions
                    .iter()
                    .filter(|i| t.as_str() != "AuditEvent" || matches!(**i, "read" | "vread" | "history-instance" | "history-type" | "search-type"))
                    .map(|i| json!({ "code": i }))
                    .collect::<Vec<_>>(),
                "versioning": "versioned-update",
                "readHistory": true,
                "updateCreate": true,
                "conditionalCreate": true,
                "conditionalRead": "not-supported",
                "conditionalUpdate": true,
                "conditionalDelete": "single",
                "searchInclude": includes(t),
                "searchRevInclude": revincludes.remove(&t).unwrap_or_default(),
                "searchParam": search_params(t),
                // resource-operation-validate.html, on the type and instance.
                "operation": [{
                    "name": "validate",
                    "definition": "http://hl7.org/fhir/OperationDefinition/Resource-validate",
                }],
            })
        })
        .collect()
});

pub async fn metadata(State(_st): State<AppState>, call: Call) -> Result<Response, ApiError> {
    let search: Vec<Value> = SYSTEM_SEARCH
        .iter()
        .map(|(name, def, ty)| json!({ "name": name, "definition": def, "type": ty }))
        .chain(std::iter::once(list_param()))
        .collect();
    let resources: &[Value] = &RESOURCES;
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
            "security": crate::smart::capability_security(&crate::smart::Endpoints::new(
                call.base.trim_end_matches(&format!("/practices/{}/fhir", call.ctx.practice.ods)),
                &call.ctx.practice,
            )),
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
