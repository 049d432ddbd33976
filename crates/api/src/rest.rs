//! The interactions of http.html, one handler each.

use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{MethodRouter, get, post};
use bytes::Bytes;
use gp_fhir::bundle::BundleKind;
use gp_fhir::search::{self, SearchQuery, Total};
use gp_fhir::view::{Summary, View};
use gp_fhir::{Instant, IssueType, OperationOutcome, Resource, ResourceType};
use gp_store::{
    DeleteOutcome, EntryResult, HistoryScope, Preconditions, StoredVersion, WriteOutcome, render,
};
use serde_json::{Value, json};

use crate::call::Call;
use crate::error::{ApiError, status_of};
use crate::negotiate::{self, Return, fhir};
use crate::{AppState, capability, method_not_allowed, store_err, validate};

type Res = Result<Response, ApiError>;

pub fn routes() -> Router<AppState> {
    let deny = || async { method_not_allowed() };
    let with_405 = |r: MethodRouter<AppState>| r.fallback(deny);
    Router::new()
        .route("/", with_405(get(system_search).post(batch)))
        .route("/metadata", with_405(get(capability::metadata)))
        .route("/_search", with_405(post(system_search_post)))
        .route("/_history", with_405(get(system_history)))
        .route(
            "/{type}",
            with_405(
                get(type_search)
                    .post(create)
                    .put(conditional_update)
                    .delete(conditional_delete),
            ),
        )
        .route("/{type}/_search", with_405(post(type_search_post)))
        .route("/{type}/_history", with_405(get(type_history)))
        .route("/{type}/$validate", with_405(post(validate::on_type)))
        .route(
            "/{type}/{id}/$validate",
            with_405(get(validate::on_instance_get).post(validate::on_instance_post)),
        )
        .route(
            "/{type}/{id}",
            with_405(get(read).put(update).patch(patch).delete(delete)),
        )
        .route("/{type}/{id}/_history", with_405(get(instance_history)))
        .route(
            "/{type}/{id}/$break-glass",
            with_405(post(crate::glass::break_glass)),
        )
        .route(
            "/{type}/{id}/$everything",
            with_405(get(everything).post(everything)),
        )
        .route(
            "/{type}/{id}/{compartment_type}",
            with_405(get(compartment_search)),
        )
        .route("/{type}/{id}/_history/{vid}", with_405(get(vread)))
}

/// A short page for people who open the server in a browser.
pub async fn home(State(st): State<AppState>) -> Response {
    let practices = st
        .store
        .practices(&gp_store::Actor::system())
        .await
        .unwrap_or_default();
    let items: String = practices
        .iter()
        .map(|p| {
            let name = html_escape(&p.name);
            format!("<li>{name} ({ods}): <a href=\"/practices/{ods}/fhir/metadata\">/practices/{ods}/fhir</a></li>", ods = p.ods)
        })
        .collect();
    Html(format!(
        "<!doctype html><html lang=\"en\"><title>OpenGP</title><h1>OpenGP</h1>\
         <p>FHIR R4 API for each practice served here:</p><ul>{items}</ul></html>"
    ))
    .into_response()
}

fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

// ---- helpers ----

fn etag(version: u64) -> String {
    format!("W/\"{version}\"")
}

/// Reads the version number out of an `If-Match`/`If-None-Match` value.
fn version_tag(s: &str) -> Result<u64, ApiError> {
    s.trim()
        .trim_start_matches("W/")
        .trim_matches('"')
        .parse()
        .map_err(|_| {
            ApiError::bad_request(format!("'{s}' is not an ETag of the form W/\"version\""))
        })
}

fn version_headers(v: &StoredVersion) -> HeaderMap {
    let mut h = HeaderMap::new();
    if let Ok(t) = HeaderValue::from_str(&etag(v.version)) {
        h.insert(header::ETAG, t);
    }
    if let Ok(d) = HeaderValue::from_str(&v.last_updated.to_http_date()) {
        h.insert(header::LAST_MODIFIED, d);
    }
    h
}

fn view_of(call: &Call) -> Result<View, ApiError> {
    let mut view = View::default();
    for (k, v) in &call.query {
        match k.as_str() {
            "_summary" => {
                view.summary =
                    Some(Summary::parse(v).ok_or_else(|| {
                        ApiError::bad_request(format!("_summary cannot be '{v}'"))
                    })?)
            }
            "_elements" => {
                view.elements = Some(v.split(',').map(|s| s.trim().to_owned()).collect())
            }
            _ => {}
        }
    }
    Ok(view)
}

/// The stored bytes, or the view of them the client asked for.
fn shaped(body: &Bytes, view: &View) -> Bytes {
    if view.is_full() {
        return body.clone();
    }
    let value: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    Bytes::from(serde_json::to_vec(&view.apply(value)).unwrap_or_default())
}

fn parse_resource(call: &Call, bytes: &[u8], for_create: bool) -> Result<Resource, ApiError> {
    negotiate::check_content_type(&call.headers, negotiate::RESOURCE_TYPES)?;
    let parsed = serde_json::from_slice::<Value>(bytes)
        .map_err(|e| gp_fhir::ResourceError::Json(e.to_string()))
        .and_then(|v| {
            if for_create {
                Resource::from_value_for_create(v)
            } else {
                Resource::from_value(v)
            }
        });
    parsed.map_err(|e| {
        let code = if matches!(e, gp_fhir::ResourceError::Json(_)) {
            IssueType::Structure
        } else {
            IssueType::Invalid
        };
        ApiError::new(StatusCode::BAD_REQUEST, code, e.to_string())
    })
}

fn if_match(call: &Call) -> Result<Preconditions, ApiError> {
    Ok(Preconditions {
        if_match: call.header("if-match").map(version_tag).transpose()?,
    })
}

/// The answer to a create or update, shaped by `Prefer: return`.
fn written(call: &Call, w: WriteOutcome) -> Response {
    let v = &w.version;
    let mut h = version_headers(v);
    let location = format!(
        "{}/{}/{}/_history/{}",
        call.base, v.resource_type, v.id, v.version
    );
    if let Ok(l) = HeaderValue::from_str(&location) {
        h.insert(
            if w.created {
                header::LOCATION
            } else {
                header::CONTENT_LOCATION
            },
            l,
        );
    }
    let status = if w.created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    let body = match call.prefer.ret {
        Return::Minimal => Bytes::new(),
        Return::Representation => v.body.clone(),
        Return::OperationOutcome => {
            let msg = match (w.created, w.written) {
                (true, _) => format!("created {}/{} version {}", v.resource_type, v.id, v.version),
                (false, true) => format!(
                    "updated {}/{} to version {}",
                    v.resource_type, v.id, v.version
                ),
                (false, false) => format!(
                    "{}/{} already matches; nothing was written",
                    v.resource_type, v.id
                ),
            };
            Bytes::from(OperationOutcome::information(msg).to_json().to_string())
        }
    };
    if body.is_empty() {
        return (status, h).into_response();
    }
    fhir(status, call.format, h, body)
}

// ---- instance level ----

async fn read(State(st): State<AppState>, call: Call) -> Res {
    let (ty, id) = (call.ty()?, call.id()?);
    let view = view_of(&call)?;
    let v = st.store.read(&call.ctx, ty, id).await.map_err(store_err)?;
    let h = version_headers(&v);
    // http.html#cread: conditional reads answer 304 when nothing changed.
    if let Some(tag) = call.header("if-none-match")
        && (tag.trim() == "*" || version_tag(tag).ok() == Some(v.version))
    {
        return Ok((StatusCode::NOT_MODIFIED, h).into_response());
    }
    if let Some(since) = call
        .header("if-modified-since")
        .and_then(Instant::parse_http_date)
        && v.last_updated.truncate_to_second() <= since
    {
        return Ok((StatusCode::NOT_MODIFIED, h).into_response());
    }
    Ok(fhir(StatusCode::OK, call.format, h, shaped(&v.body, &view)))
}

async fn vread(State(st): State<AppState>, call: Call) -> Res {
    let (ty, id, version) = (call.ty()?, call.id()?, call.version()?);
    let view = view_of(&call)?;
    let v = st
        .store
        .vread(&call.ctx, ty, id, version)
        .await
        .map_err(store_err)?;
    Ok(fhir(
        StatusCode::OK,
        call.format,
        version_headers(&v),
        shaped(&v.body, &view),
    ))
}

async fn update(State(st): State<AppState>, call: Call, body: Body) -> Res {
    let (ty, id) = (call.ty()?, call.id()?);
    let bytes = call.body(body).await?;
    let resource = parse_resource(&call, &bytes, false)?;
    let w = st
        .store
        .update(&call.ctx, ty, id, resource, if_match(&call)?)
        .await
        .map_err(store_err)?;
    Ok(written(&call, w))
}

async fn patch(State(st): State<AppState>, call: Call, body: Body) -> Res {
    let (ty, id) = (call.ty()?, call.id()?);
    let bytes = call.body(body).await?;
    negotiate::check_content_type(&call.headers, negotiate::PATCH_TYPES)?;
    let patch = gp_fhir::patch::parse(&bytes).map_err(|e| ApiError::bad_request(e.to_string()))?;
    let w = st
        .store
        .patch(&call.ctx, ty, id, patch, if_match(&call)?)
        .await
        .map_err(store_err)?;
    Ok(written(&call, w))
}

async fn delete(State(st): State<AppState>, call: Call) -> Res {
    let (ty, id) = (call.ty()?, call.id()?);
    let d = st
        .store
        .delete(&call.ctx, ty, id)
        .await
        .map_err(store_err)?;
    Ok(deleted(&call, d))
}

fn deleted(call: &Call, d: DeleteOutcome) -> Response {
    let mut h = HeaderMap::new();
    let msg = match d {
        DeleteOutcome::Deleted { version } => {
            if let Ok(t) = HeaderValue::from_str(&etag(version)) {
                h.insert(header::ETAG, t);
            }
            format!("deleted; the deletion is version {version}")
        }
        DeleteOutcome::NothingToDelete => "there was nothing to delete".to_owned(),
    };
    if call.prefer.ret == Return::OperationOutcome {
        let body = Bytes::from(OperationOutcome::information(msg).to_json().to_string());
        return fhir(StatusCode::OK, call.format, h, body);
    }
    (StatusCode::NO_CONTENT, h).into_response()
}

// ---- type level ----

async fn create(State(st): State<AppState>, call: Call, body: Body) -> Res {
    let ty = call.ty()?;
    let bytes = call.body(body).await?;
    let resource = parse_resource(&call, &bytes, true)?;
    if resource.resource_type() != ty {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            IssueType::Invalid,
            format!(
                "the body is a {} but was posted to {ty}",
                resource.resource_type()
            ),
        ));
    }
    let cond = call.header("if-none-exist").map(str::to_owned);
    let w = st
        .store
        .create(&call.ctx, resource, cond)
        .await
        .map_err(store_err)?;
    Ok(written(&call, w))
}

fn criteria(call: &Call) -> Vec<(String, String)> {
    call.query
        .iter()
        .filter(|(k, _)| k != "_format" && k != "_pretty")
        .cloned()
        .collect()
}

async fn conditional_update(State(st): State<AppState>, call: Call, body: Body) -> Res {
    let ty = call.ty()?;
    let bytes = call.body(body).await?;
    let resource = parse_resource(&call, &bytes, false)?;
    let w = st
        .store
        .conditional_update(&call.ctx, ty, criteria(&call), resource, if_match(&call)?)
        .await
        .map_err(store_err)?;
    Ok(written(&call, w))
}

async fn conditional_delete(State(st): State<AppState>, call: Call) -> Res {
    let ty = call.ty()?;
    let d = st
        .store
        .conditional_delete(&call.ctx, ty, criteria(&call))
        .await
        .map_err(store_err)?;
    Ok(deleted(&call, d))
}

async fn type_search(State(st): State<AppState>, call: Call) -> Res {
    let ty = call.ty()?;
    let params = call.query.clone();
    run_search(&st, &call, Some(ty), &params, None).await
}

/// `GET [base]/[Compartment]/[id]/[type]?...` (http.html#search and
/// compartmentdefinition.html); `*` for every member type.
async fn compartment_search(State(st): State<AppState>, call: Call) -> Res {
    let (compartment, id) = (call.ty()?, call.id()?);
    let member = call
        .param("compartment_type")
        .unwrap_or_default()
        .to_owned();
    let ty = match member.as_str() {
        "*" => None,
        t => Some(ResourceType::parse(t).ok_or_else(|| {
            ApiError::not_found(format!("'{t}' is not a resource type this server supports"))
        })?),
    };
    let criterion = search::compartment(compartment, &id, ty).ok_or_else(|| {
        ApiError::not_found(format!("{member} is not in a {compartment} compartment"))
    })?;
    let path = format!("{}/{compartment}/{id}/{member}", call.base);
    let params = call.query.clone();
    run_search(&st, &call, ty, &params, Some((criterion, path))).await
}

/// `[base]/Patient/[id]/$everything` (patient-operation-everything.html):
/// the patient and everything in their compartment, paged.
async fn everything(State(st): State<AppState>, call: Call) -> Res {
    let (ty, id) = (call.ty()?, call.id()?);
    if ty.as_str() != "Patient" && ty.as_str() != "Encounter" {
        return Err(ApiError::not_found(format!(
            "$everything is defined on Patient and Encounter, not {ty}"
        )));
    }
    // The focal resource must exist (404) and not be deleted (410).
    st.store
        .read(&call.ctx, ty, id.clone())
        .await
        .map_err(store_err)?;
    let criterion = search::compartment(ty, &id, None)
        .ok_or_else(|| ApiError::not_found(format!("{ty} has no compartment")))?;
    let path = format!("{}/{ty}/{id}/$everything", call.base);
    let params: Vec<(String, String)> = call
        .query
        .iter()
        .filter(|(k, _)| k != "start" && k != "end")
        .cloned()
        .collect();
    run_search(&st, &call, None, &params, Some((criterion, path))).await
}

async fn type_search_post(State(st): State<AppState>, call: Call, body: Body) -> Res {
    let ty = call.ty()?;
    let params = form_params(&call, body).await?;
    run_search(&st, &call, Some(ty), &params, None).await
}

async fn system_search(State(st): State<AppState>, call: Call) -> Res {
    let params = call.query.clone();
    run_search(&st, &call, None, &params, None).await
}

async fn system_search_post(State(st): State<AppState>, call: Call, body: Body) -> Res {
    let params = form_params(&call, body).await?;
    run_search(&st, &call, None, &params, None).await
}

/// `POST _search` takes parameters from the URL and a form body
/// (search.html#search-post).
async fn form_params(call: &Call, body: Body) -> Result<Vec<(String, String)>, ApiError> {
    let bytes = call.body(body).await?;
    let mut params = call.query.clone();
    if !bytes.is_empty() {
        negotiate::check_content_type(&call.headers, &["application/x-www-form-urlencoded"])?;
        let text = std::str::from_utf8(&bytes)
            .map_err(|_| ApiError::bad_request("the form body is not UTF-8"))?;
        params.extend(search::parse_query_string(text));
    }
    Ok(params)
}

async fn run_search(
    st: &AppState,
    call: &Call,
    ty: Option<ResourceType>,
    params: &[(String, String)],
    scope: Option<(search::Criterion, String)>,
) -> Res {
    let mut q: SearchQuery = search::parse(ty, params, call.prefer.strict)
        .map_err(|o| ApiError::with_outcome(StatusCode::BAD_REQUEST, o))?;
    if q.view.summary == Some(Summary::Count) {
        q.count = 0;
        q.total = Total::Accurate;
    }
    if let Some((c, _)) = &scope {
        q.criteria.push(c.clone());
    }
    let page = st
        .store
        .search(&call.ctx, ty, q.clone())
        .await
        .map_err(store_err)?;
    let path = match &scope {
        Some((_, p)) => p.clone(),
        None => render::search_path(&call.base, ty),
    };
    let body = render::searchset(&call.base, &path, &q, &page);
    Ok(fhir(
        StatusCode::OK,
        call.format,
        HeaderMap::new(),
        Bytes::from(body),
    ))
}

// ---- history ----

async fn run_history(st: &AppState, call: &Call, scope: HistoryScope, path: String) -> Res {
    let q = gp_store::history_query(&call.query).map_err(store_err)?;
    let page = st
        .store
        .history(&call.ctx, scope, q.clone())
        .await
        .map_err(store_err)?;
    let body = render::history(&call.base, &path, &q, &page);
    Ok(fhir(
        StatusCode::OK,
        call.format,
        HeaderMap::new(),
        Bytes::from(body),
    ))
}

async fn instance_history(State(st): State<AppState>, call: Call) -> Res {
    let (ty, id) = (call.ty()?, call.id()?);
    let path = format!("{}/{ty}/{id}/_history", call.base);
    run_history(&st, &call, HistoryScope::Instance(ty, id.to_string()), path).await
}

async fn type_history(State(st): State<AppState>, call: Call) -> Res {
    let ty = call.ty()?;
    let path = format!("{}/{ty}/_history", call.base);
    run_history(&st, &call, HistoryScope::Type(ty), path).await
}

async fn system_history(State(st): State<AppState>, call: Call) -> Res {
    let path = format!("{}/_history", call.base);
    run_history(&st, &call, HistoryScope::Practice, path).await
}

// ---- batch and transaction ----

async fn batch(State(st): State<AppState>, call: Call, body: Body) -> Res {
    let bytes = call.body(body).await?;
    negotiate::check_content_type(&call.headers, negotiate::RESOURCE_TYPES)?;
    let value: Value = serde_json::from_slice(&bytes).map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            IssueType::Structure,
            format!("the body is not valid JSON: {e}"),
        )
    })?;
    let (kind, results) = st
        .store
        .bundle(&call.ctx, &value, &call.base)
        .await
        .map_err(store_err)?;
    let kind_name = match kind {
        BundleKind::Batch => "batch-response",
        BundleKind::Transaction => "transaction-response",
    };
    let mut header = serde_json::Map::new();
    header.insert("type".into(), json!(kind_name));
    let mut w = gp_fhir::bundle::BundleWriter::new(&uuid::Uuid::new_v4().to_string(), header);
    for r in &results {
        entry_response(&mut w, call.prefer.ret, r);
    }
    Ok(fhir(
        StatusCode::OK,
        call.format,
        HeaderMap::new(),
        Bytes::from(w.finish()),
    ))
}

fn entry_response(w: &mut gp_fhir::bundle::BundleWriter, ret: Return, r: &EntryResult) {
    let reason = |s: StatusCode| format!("{} {}", s.as_u16(), s.canonical_reason().unwrap_or(""));
    match r {
        Ok(e) => {
            let status = StatusCode::from_u16(e.status).unwrap_or(StatusCode::OK);
            let mut response = json!({ "status": reason(status) });
            if let Some(l) = &e.location {
                response["location"] = json!(l);
            }
            if let Some(t) = &e.etag {
                response["etag"] = json!(t);
            }
            if let Some(m) = e.last_modified {
                response["lastModified"] = json!(m.to_fhir());
            }
            if let Some(o) = &e.outcome {
                response["outcome"] = o.to_json();
            }
            let resource = if ret == Return::Minimal {
                None
            } else {
                e.resource.as_deref()
            };
            w.push(gp_fhir::bundle::EntryParts {
                resource,
                response: Some(response),
                ..Default::default()
            });
        }
        Err(err) => {
            let (status, _) = status_of(err);
            let outcome = ApiError::from(err.clone()).outcome.to_json();
            let response = json!({ "status": reason(status), "outcome": outcome });
            w.push(gp_fhir::bundle::EntryParts {
                response: Some(response),
                ..Default::default()
            });
        }
    }
}
