//! FHIR Bulk Data export (Bulk Data Access IG, export.html): the kick-off
//! at `[base]/$export`, `[base]/Patient/$export` and
//! `[base]/Group/[id]/$export` (`Prefer: respond-async`, 202 with
//! `Content-Location`), the status URL (202 with `X-Progress` while running,
//! the completion manifest when done, `DELETE` to cancel) and the NDJSON
//! files. Only the user who kicked a job off, in its practice, sees it.

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use gp_fhir::{DateRange, IssueType, ResourceType, search};
use gp_migrate::bulk::{ExportRequest, Exports, Level, Status};
use serde_json::json;

use crate::call::Call;
use crate::error::ApiError;
use crate::{AppState, method_not_allowed};

type Res = Result<Response, ApiError>;

pub fn routes() -> Router<AppState> {
    let deny = || async { method_not_allowed() };
    Router::new()
        .route("/$export", get(system).post(system).fallback(deny))
        .route(
            "/Patient/$export",
            get(patient).post(patient).fallback(deny),
        )
        .route("/Group/{id}/$export", get(group).post(group).fallback(deny))
        .route(
            "/$export-poll-status/{job}",
            get(poll).delete(cancel).fallback(deny),
        )
        .route("/$export-file/{job}/{file}", get(file).fallback(deny))
}

fn exports(st: &AppState) -> Result<Arc<Exports>, ApiError> {
    st.exports.clone().ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_IMPLEMENTED,
            IssueType::NotSupported,
            "this server has no place for export files",
        )
    })
}

async fn system(State(st): State<AppState>, call: Call) -> Res {
    kick_off(&st, &call, Level::System).await
}

async fn patient(State(st): State<AppState>, call: Call) -> Res {
    kick_off(&st, &call, Level::Patient).await
}

async fn group(State(st): State<AppState>, call: Call) -> Res {
    let id = call
        .param("id")
        .ok_or_else(|| ApiError::bad_request("no Group id"))?
        .to_owned();
    // The group must exist for the caller (404 otherwise) before a job starts.
    let gid = gp_fhir::Id::parse(&id).map_err(|e| ApiError::bad_request(e.to_string()))?;
    let group_type = ResourceType::parse("Group").ok_or_else(|| ApiError::not_found("Group"))?;
    st.store
        .read(&call.ctx, group_type, gid)
        .await
        .map_err(crate::store_err)?;
    kick_off(&st, &call, Level::Group(id)).await
}

/// export.html#bulk-data-kick-off-request: checks the request, starts the
/// job, answers 202 with where to poll.
async fn kick_off(st: &AppState, call: &Call, level: Level) -> Res {
    let exports = exports(st)?;
    let prefer = call.header("prefer").unwrap_or_default();
    if !prefer
        .split([',', ';'])
        .any(|p| p.trim() == "respond-async")
    {
        return Err(ApiError::bad_request(
            "a bulk export runs asynchronously: send 'Prefer: respond-async'",
        ));
    }
    let mut request = ExportRequest {
        level,
        types: Vec::new(),
        since: None,
        type_filters: Vec::new(),
        url: String::new(),
    };
    let path = match &request.level {
        Level::System => "$export".to_owned(),
        Level::Patient => "Patient/$export".to_owned(),
        Level::Group(id) => format!("Group/{id}/$export"),
    };
    let query = serde_urlencoded::to_string(&call.query).unwrap_or_default();
    request.url = if query.is_empty() {
        format!("{}/{path}", call.base)
    } else {
        format!("{}/{path}?{query}", call.base)
    };
    for (k, v) in &call.query {
        match k.as_str() {
            "_outputFormat"
                if !["application/fhir+ndjson", "application/ndjson", "ndjson"]
                    .contains(&v.as_str()) =>
            {
                return Err(ApiError::bad_request(format!(
                    "_outputFormat '{v}' is not supported; use application/fhir+ndjson"
                )));
            }
            "_type" => {
                for t in v.split(',').map(str::trim).filter(|t| !t.is_empty()) {
                    request.types.push(ResourceType::parse(t).ok_or_else(|| {
                        ApiError::bad_request(format!("_type: '{t}' is not an R4 resource type"))
                    })?);
                }
            }
            "_since" => {
                let r = DateRange::parse(v).map_err(|_| {
                    ApiError::bad_request(format!("_since: '{v}' is not an instant"))
                })?;
                request.since = Some(r.low);
            }
            "_typeFilter" => {
                let (t, q) = v.split_once('?').ok_or_else(|| {
                    ApiError::bad_request(format!("_typeFilter '{v}' is not Type?query"))
                })?;
                let ty = ResourceType::parse(t).ok_or_else(|| {
                    ApiError::bad_request(format!("_typeFilter: '{t}' is not an R4 resource type"))
                })?;
                let params = search::parse_query_string(q);
                // Checked now, so that a bad filter is a 400, not a failed job.
                let parsed = search::parse(Some(ty), &params, true)
                    .map_err(|o| ApiError::with_outcome(StatusCode::BAD_REQUEST, o))?;
                // A resource changed since the transactionTime is filtered
                // by the version exported, on its own index entries.
                if let Some(what) = gp_migrate::filter::undecidable(&parsed.criteria) {
                    return Err(ApiError::new(
                        StatusCode::BAD_REQUEST,
                        IssueType::NotSupported,
                        format!(
                            "_typeFilter '{v}': {what} is not supported in an export's filter, which is decided on each resource as it was at the transactionTime"
                        ),
                    ));
                }
                request.type_filters.push((ty, params));
            }
            "includeAssociatedData" | "patient" | "_elements" => {
                return Err(ApiError::new(
                    StatusCode::BAD_REQUEST,
                    IssueType::NotSupported,
                    format!("the export parameter '{k}' is not supported"),
                ));
            }
            _ => {}
        }
    }
    // The kick-off is audited as an export; each page the job reads is
    // audited as the search it is, with the patients it returned.
    let event = gp_store::audit::Event::new(gp_store::audit::Kind::Export).query(query);
    st.store.audit(&call.ctx, event);
    let job = exports
        .start(st.store.clone(), call.ctx.clone(), request)
        .await
        .map_err(|e| {
            ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                IssueType::Exception,
                format!("the export could not be recorded: {e:#}"),
            )
        })?;
    let mut headers = HeaderMap::new();
    let status_url = format!("{}/$export-poll-status/{}", call.base, job.id);
    if let Ok(v) = HeaderValue::from_str(&status_url) {
        headers.insert(header::CONTENT_LOCATION, v);
    }
    Ok((StatusCode::ACCEPTED, headers).into_response())
}

fn job_param(call: &Call) -> Result<String, ApiError> {
    call.param("job")
        .map(str::to_owned)
        .ok_or_else(|| ApiError::not_found("no export job"))
}

fn no_job() -> ApiError {
    ApiError::not_found(
        "there is no such export job (it was cancelled or deleted, or its files expired)",
    )
}

/// export.html#bulk-data-status-request.
async fn poll(State(st): State<AppState>, call: Call) -> Res {
    let exports = exports(&st)?;
    let job = exports
        .poll(&job_param(&call)?, &st.store, &call.ctx)
        .ok_or_else(no_job)?;
    match job.status() {
        Status::Running {
            resources,
            types_done,
            types,
        } => {
            let mut h = HeaderMap::new();
            let progress = format!("{resources} resources; {types_done} of {types} types");
            if let Ok(v) = HeaderValue::from_str(&progress) {
                h.insert("x-progress", v);
            }
            h.insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            Ok((StatusCode::ACCEPTED, h).into_response())
        }
        Status::Done { outputs, expires } => {
            let output: Vec<_> = outputs
                .iter()
                .map(|o| {
                    json!({
                        "type": o.ty.as_str(),
                        "url": format!("{}/$export-file/{}/{}", call.base, job.id, o.file),
                        "count": o.count,
                    })
                })
                .collect();
            let manifest = json!({
                "transactionTime": job.transaction_time.to_string(),
                "request": job.request.url,
                "requiresAccessToken": true,
                "output": output,
                "error": [],
            });
            let mut h = HeaderMap::new();
            h.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            // When the files stop being available (export.html#response---complete-status).
            if let Ok(v) = HeaderValue::from_str(&expires.to_http_date()) {
                h.insert(header::EXPIRES, v);
            }
            Ok((StatusCode::OK, h, manifest.to_string()).into_response())
        }
        Status::Failed { why, .. } => Err(ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            IssueType::Exception,
            format!("the export failed: {why}"),
        )),
    }
}

/// export.html#bulk-data-delete-request.
async fn cancel(State(st): State<AppState>, call: Call) -> Res {
    let exports = exports(&st)?;
    if exports.cancel(&job_param(&call)?, &call.ctx) {
        Ok(StatusCode::ACCEPTED.into_response())
    } else {
        Err(no_job())
    }
}

/// export.html#file-request.
async fn file(State(st): State<AppState>, call: Call) -> Res {
    let exports = exports(&st)?;
    let name = call.param("file").unwrap_or_default().to_owned();
    let path = exports
        .file(&job_param(&call)?, &name, &call.ctx)
        .ok_or_else(|| ApiError::not_found(format!("there is no export file '{name}'")))?;
    // Streamed from disk: a file may be far larger than memory.
    let file = std::fs::File::open(&path).map_err(|e| {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            IssueType::Exception,
            format!("reading the export file: {e}"),
        )
    })?;
    let mut h = HeaderMap::new();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/fhir+ndjson"),
    );
    if let Ok(meta) = file.metadata()
        && let Ok(v) = HeaderValue::from_str(&meta.len().to_string())
    {
        h.insert(header::CONTENT_LENGTH, v);
    }
    Ok((
        StatusCode::OK,
        h,
        axum::body::Body::new(FileBody::read(file)),
    )
        .into_response())
}

/// A file sent in chunks as a blocking task reads them, a few chunks ahead
/// of the client at most.
struct FileBody {
    chunks: tokio::sync::mpsc::Receiver<std::io::Result<bytes::Bytes>>,
}

impl FileBody {
    const CHUNK: usize = 64 * 1024;

    fn read(mut file: std::fs::File) -> FileBody {
        use std::io::Read;
        let (tx, chunks) = tokio::sync::mpsc::channel(4);
        tokio::task::spawn_blocking(move || {
            loop {
                let mut buf = vec![0; Self::CHUNK];
                let chunk = match file.read(&mut buf) {
                    Ok(0) => return,
                    Ok(n) => {
                        buf.truncate(n);
                        Ok(bytes::Bytes::from(buf))
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                    Err(e) => Err(e),
                };
                let failed = chunk.is_err();
                // A client gone away drops the receiver: stop reading.
                if tx.blocking_send(chunk).is_err() || failed {
                    return;
                }
            }
        });
        FileBody { chunks }
    }
}

impl http_body::Body for FileBody {
    type Data = bytes::Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<bytes::Bytes>, std::io::Error>>> {
        self.chunks
            .poll_recv(cx)
            .map(|c| c.map(|r| r.map(http_body::Frame::data)))
    }
}
