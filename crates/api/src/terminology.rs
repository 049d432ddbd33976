//! The FHIR terminology operations on SNOMED CT (terminology-service.html),
//! at each practice's base (terminology is the same for all):
//! `CodeSystem/$lookup`, `CodeSystem/$subsumes`, `ValueSet/$expand` (with
//! `filter` for typeahead, over SNOMED CT implicit value sets
//! snomedct.html#implicit: `?fhir_vs`, `isa/`, `refset/`, `ecl/`) and
//! `$validate-code` on ValueSet and CodeSystem; dm+d's `$lookup`,
//! `$expand` and `$validate-code` are in `dmd.rs`. GET takes the parameters from
//! the query, POST from a Parameters body. A bad parameter is a 400, an
//! unknown code a 404, and a server without a loaded release answers 503.

use std::sync::{Arc, RwLock};

use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::routing::get;
use bytes::Bytes;
use gp_fhir::IssueType;
use gp_terminology::dmd::DMD_URI;
use gp_terminology::valueset::implicit;
use gp_terminology::{ConceptSet, FSN, Index, SNOMED_URI, SYNONYM, SctId, TermQuery};
use serde_json::{Value, json};

use crate::call::Call;
use crate::error::ApiError;
use crate::negotiate::{self, fhir};
use crate::{AppState, method_not_allowed};

type Res = Result<Response, ApiError>;

/// The SNOMED CT and dm+d releases the server answers from, each swapped
/// whole when a new one is loaded.
#[derive(Clone, Default)]
pub struct Terminology {
    inner: Arc<RwLock<Option<Arc<Loaded>>>>,
    dmd: Arc<RwLock<Option<Arc<crate::dmd::LoadedDmd>>>>,
}

/// A release in memory.
pub struct Loaded {
    /// The release's name, reported as the code system version.
    pub release: String,
    /// Shared with the store, which expands search modifiers against it.
    pub index: Arc<Index>,
}

impl Terminology {
    pub fn set(&self, release: String, index: Arc<Index>) {
        if let Ok(mut g) = self.inner.write() {
            *g = Some(Arc::new(Loaded { release, index }));
        }
    }

    pub fn set_dmd(&self, release: String, index: gp_terminology::dmd::DmdIndex) {
        if let Ok(mut g) = self.dmd.write() {
            *g = Some(Arc::new(crate::dmd::LoadedDmd { release, index }));
        }
    }

    /// The loaded dm+d release.
    pub fn get_dmd(&self) -> Option<Arc<crate::dmd::LoadedDmd>> {
        self.dmd.read().ok().and_then(|g| g.clone())
    }

    /// The loaded release, for the search engine and other callers.
    pub fn get(&self) -> Option<Arc<Loaded>> {
        self.inner.read().ok().and_then(|g| g.clone())
    }

    fn loaded(&self) -> Result<Arc<Loaded>, ApiError> {
        self.get().ok_or_else(|| {
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                IssueType::Transient,
                "no SNOMED CT release is loaded yet",
            )
        })
    }
}

pub fn routes() -> Router<AppState> {
    let deny = || async { method_not_allowed() };
    Router::new()
        .route(
            "/CodeSystem/$lookup",
            get(lookup).post(lookup_post).fallback(deny),
        )
        .route(
            "/CodeSystem/$subsumes",
            get(subsumes).post(subsumes_post).fallback(deny),
        )
        .route(
            "/ValueSet/$expand",
            get(expand).post(expand_post).fallback(deny),
        )
        .route(
            "/ValueSet/$validate-code",
            get(validate_vs).post(validate_vs_post).fallback(deny),
        )
        .route(
            "/CodeSystem/$validate-code",
            get(validate_cs).post(validate_cs_post).fallback(deny),
        )
}

/// Operation parameters as name/value strings.
pub(crate) struct Params(Vec<(String, String)>);

impl Params {
    pub(crate) fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    fn all(&self, name: &str) -> impl Iterator<Item = &str> {
        self.0
            .iter()
            .filter(move |(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    fn from_query(call: &Call) -> Params {
        Params(
            call.query
                .iter()
                .filter(|(n, _)| !n.starts_with('_'))
                .cloned()
                .collect(),
        )
    }

    /// A Parameters body: primitive values by name; a Coding as its
    /// parts (`coding` gives `system` and `code`, `codingA` gives `codeA`).
    async fn from_body(call: &Call, body: Body) -> Result<Params, ApiError> {
        negotiate::check_content_type(&call.headers, negotiate::RESOURCE_TYPES)?;
        let bytes = call.body(body).await?;
        let v: Value = serde_json::from_slice(&bytes).map_err(|e| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                IssueType::Structure,
                format!("the body is not valid JSON: {e}"),
            )
        })?;
        if v["resourceType"] != "Parameters" {
            return Err(ApiError::bad_request(
                "the body must be a Parameters resource",
            ));
        }
        let mut out = Params::from_query(call).0;
        for p in v["parameter"].as_array().into_iter().flatten() {
            let Some(name) = p["name"].as_str() else {
                return Err(ApiError::bad_request("a parameter has no name"));
            };
            let Some(obj) = p.as_object() else { continue };
            for (k, val) in obj {
                match (k.as_str(), val) {
                    ("valueCoding", c) => {
                        let suffix = name.strip_prefix("coding").unwrap_or("");
                        for part in ["system", "code", "display"] {
                            if let Some(s) = c[part].as_str() {
                                out.push((format!("{part}{suffix}"), s.to_owned()));
                            }
                        }
                    }
                    (k, Value::String(s)) if k.starts_with("value") => {
                        out.push((name.to_owned(), s.clone()))
                    }
                    (k, Value::Number(n)) if k.starts_with("value") => {
                        out.push((name.to_owned(), n.to_string()))
                    }
                    (k, Value::Bool(b)) if k.starts_with("value") => {
                        out.push((name.to_owned(), b.to_string()))
                    }
                    _ => {}
                }
            }
        }
        Ok(Params(out))
    }
}

pub(crate) fn answer(call: &Call, v: Value) -> Response {
    fhir(
        StatusCode::OK,
        call.format,
        HeaderMap::new(),
        Bytes::from(v.to_string()),
    )
}

fn check_system(p: &Params, name: &str) -> Result<(), ApiError> {
    match p.get(name) {
        None => Ok(()),
        Some(s) if s == SNOMED_URI => Ok(()),
        Some(s) => Err(ApiError::bad_request(format!(
            "this operation answers for SNOMED CT ({SNOMED_URI}){}, not '{s}'",
            if name == "system" {
                " and dm+d ($lookup, $expand, $validate-code)"
            } else {
                ""
            }
        ))),
    }
}

/// A required SNOMED CT code parameter: 400 if missing or malformed.
fn code(p: &Params, name: &str) -> Result<u64, ApiError> {
    let raw = p
        .get(name)
        .ok_or_else(|| ApiError::bad_request(format!("the '{name}' parameter is required")))?;
    SctId::parse(raw)
        .map(SctId::get)
        .ok_or_else(|| ApiError::bad_request(format!("'{raw}' is not a SNOMED CT identifier")))
}

fn known(index: &Index, id: u64) -> Result<u64, ApiError> {
    if index.contains(id) {
        Ok(id)
    } else {
        Err(ApiError::not_found(format!(
            "{id} is not a concept of the loaded SNOMED CT release"
        )))
    }
}

pub(crate) fn boolean(p: &Params, name: &str, default: bool) -> Result<bool, ApiError> {
    match p.get(name) {
        None => Ok(default),
        Some("true") => Ok(true),
        Some("false") => Ok(false),
        Some(v) => Err(ApiError::bad_request(format!(
            "'{name}' must be true or false, not '{v}'"
        ))),
    }
}

pub(crate) fn number(
    p: &Params,
    name: &str,
    default: usize,
    max: usize,
) -> Result<usize, ApiError> {
    match p.get(name) {
        None => Ok(default),
        Some(v) => v
            .parse::<usize>()
            .map(|n| n.min(max))
            .map_err(|_| ApiError::bad_request(format!("'{name}' must be a count, not '{v}'"))),
    }
}

async fn lookup(State(st): State<AppState>, call: Call) -> Res {
    let p = Params::from_query(&call);
    do_lookup(&st, &call, &p)
}

async fn lookup_post(State(st): State<AppState>, call: Call, body: Body) -> Res {
    let p = Params::from_body(&call, body).await?;
    do_lookup(&st, &call, &p)
}

/// `$lookup` (codesystem-operation-lookup.html).
fn do_lookup(st: &AppState, call: &Call, p: &Params) -> Res {
    if p.get("system") == Some(DMD_URI) {
        return crate::dmd::lookup(st, call, p);
    }
    check_system(p, "system")?;
    let t = st.terminology.loaded()?;
    let id = known(&t.index, code(p, "code")?)?;
    let c = t
        .index
        .concept(id)
        .ok_or_else(|| ApiError::not_found(format!("{id} is not in the loaded release")))?;
    let mut params = vec![
        json!({"name": "name", "valueString": "SNOMED CT"}),
        json!({"name": "version", "valueString": t.release}),
        json!({"name": "display", "valueString": t.index.display(id).unwrap_or_default()}),
        json!({"name": "property", "part": [
            {"name": "code", "valueCode": "inactive"},
            {"name": "value", "valueBoolean": !c.active}]}),
    ];
    for d in c.descriptions.iter().filter(|d| d.active) {
        let (use_code, use_display) = if d.fsn {
            (FSN, "Fully specified name")
        } else {
            (SYNONYM, "Synonym")
        };
        params.push(json!({"name": "designation", "part": [
            {"name": "language", "valueCode": "en"},
            {"name": "use", "valueCoding": {"system": SNOMED_URI, "code": use_code.to_string(), "display": use_display}},
            {"name": "value", "valueString": d.term}]}));
    }
    let wanted: Vec<&str> = p.all("property").collect();
    let mut relatives = vec![("parent", &c.parents)];
    if wanted.contains(&"child") {
        relatives.push(("child", &c.children));
    }
    for (name, ids) in relatives {
        for r in ids {
            params.push(json!({"name": "property", "part": [
                {"name": "code", "valueCode": name},
                {"name": "value", "valueCode": r.to_string()}]}));
        }
    }
    Ok(answer(
        call,
        json!({"resourceType": "Parameters", "parameter": params}),
    ))
}

async fn subsumes(State(st): State<AppState>, call: Call) -> Res {
    let p = Params::from_query(&call);
    do_subsumes(&st, &call, &p)
}

async fn subsumes_post(State(st): State<AppState>, call: Call, body: Body) -> Res {
    let p = Params::from_body(&call, body).await?;
    do_subsumes(&st, &call, &p)
}

/// `$subsumes` (codesystem-operation-subsumes.html).
fn do_subsumes(st: &AppState, call: &Call, p: &Params) -> Res {
    check_system(p, "system")?;
    check_system(p, "systemA")?;
    check_system(p, "systemB")?;
    let (a, b) = (code(p, "codeA")?, code(p, "codeB")?);
    let t = st.terminology.loaded()?;
    let (a, b) = (known(&t.index, a)?, known(&t.index, b)?);
    let outcome = t
        .index
        .subsumes(a, b)
        .ok_or_else(|| ApiError::not_found("a code is not in the loaded release"))?;
    Ok(answer(
        call,
        json!({"resourceType": "Parameters", "parameter": [
            {"name": "outcome", "valueCode": outcome.code()}]}),
    ))
}

/// The concepts of the value set the `url` parameter names.
fn value_set(index: &Index, p: &Params) -> Result<(String, ConceptSet), ApiError> {
    let url = p
        .get("url")
        .ok_or_else(|| ApiError::bad_request("the 'url' parameter is required"))?;
    let vs = implicit(url)
        .ok_or_else(|| {
            ApiError::not_found(format!(
                "'{url}' is not a value set this server knows (SNOMED CT implicit value sets only)"
            ))
        })?
        .map_err(ApiError::bad_request)?;
    let set = index
        .expand_implicit(&vs)
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
    Ok((url.to_owned(), set))
}

async fn expand(State(st): State<AppState>, call: Call) -> Res {
    let p = Params::from_query(&call);
    do_expand(&st, &call, &p)
}

async fn expand_post(State(st): State<AppState>, call: Call, body: Body) -> Res {
    let p = Params::from_body(&call, body).await?;
    do_expand(&st, &call, &p)
}

/// `$expand` (valueset-operation-expand.html): `filter` is typeahead;
/// `count` (at most 1000) and `offset` page; `activeOnly` defaults to true.
fn do_expand(st: &AppState, call: &Call, p: &Params) -> Res {
    if p.get("url").is_some_and(|u| u.starts_with(DMD_URI)) {
        return crate::dmd::expand(st, call, p);
    }
    let count = number(p, "count", 100, 1000)?;
    let offset = number(p, "offset", 0, usize::MAX)?;
    let active_only = boolean(p, "activeOnly", true)?;
    let t = st.terminology.loaded()?;
    let index = &t.index;
    let (url, set) = value_set(index, p)?;
    let entry = |id: u64, display: &str, active: bool| {
        let mut e = json!({"system": SNOMED_URI, "code": id.to_string(), "display": display});
        if !active {
            e["inactive"] = json!(true);
        }
        e
    };
    let (contains, total): (Vec<Value>, Option<usize>) = match p.get("filter") {
        Some(filter) if !filter.trim().is_empty() => {
            let q = TermQuery {
                offset,
                include_inactive: !active_only,
                within: Some(&set),
                ..TermQuery::new(filter, count)
            };
            let hits = index.search(&q);
            // The total is known only when the page is the last one.
            let total = (hits.len() < count).then_some(offset + hits.len());
            let contains = hits
                .iter()
                .map(|h| entry(h.concept, h.preferred_term, h.active))
                .collect();
            (contains, total)
        }
        _ => {
            let ids: Vec<u64> = index
                .ids_of(&set)
                .filter(|id| !active_only || index.is_active(*id) == Some(true))
                .collect();
            let contains = ids
                .iter()
                .skip(offset)
                .take(count)
                .map(|id| {
                    entry(
                        *id,
                        index.display(*id).unwrap_or_default(),
                        index.is_active(*id) == Some(true),
                    )
                })
                .collect();
            (contains, Some(ids.len()))
        }
    };
    let mut expansion = json!({
        "identifier": format!("urn:uuid:{}", uuid::Uuid::new_v4()),
        "timestamp": gp_fhir::Instant::now().to_string(),
        "offset": offset,
        "parameter": [{"name": "version", "valueUri": format!("{SNOMED_URI}|{}", t.release)}],
        "contains": contains,
    });
    if let Some(total) = total {
        expansion["total"] = json!(total);
    }
    Ok(answer(
        call,
        json!({"resourceType": "ValueSet", "url": url, "status": "active", "expansion": expansion}),
    ))
}

async fn validate_vs(State(st): State<AppState>, call: Call) -> Res {
    let p = Params::from_query(&call);
    do_validate(&st, &call, &p, false)
}

async fn validate_vs_post(State(st): State<AppState>, call: Call, body: Body) -> Res {
    let p = Params::from_body(&call, body).await?;
    do_validate(&st, &call, &p, false)
}

async fn validate_cs(State(st): State<AppState>, call: Call) -> Res {
    let p = Params::from_query(&call);
    do_validate(&st, &call, &p, true)
}

async fn validate_cs_post(State(st): State<AppState>, call: Call, body: Body) -> Res {
    let p = Params::from_body(&call, body).await?;
    do_validate(&st, &call, &p, true)
}

/// `$validate-code` (valueset-operation-validate-code.html,
/// codesystem-operation-validate-code.html): `result` is the answer, so an
/// unknown code is `false` with a message, not an error.
fn do_validate(st: &AppState, call: &Call, p: &Params, on_code_system: bool) -> Res {
    let dmd = p.get("system") == Some(DMD_URI)
        || p.get("url").is_some_and(|u| {
            if on_code_system {
                u == DMD_URI
            } else {
                u.starts_with(DMD_URI)
            }
        });
    if dmd {
        return crate::dmd::validate(st, call, p, on_code_system);
    }
    check_system(p, "system")?;
    if on_code_system {
        check_system(p, "url")?;
    }
    let raw = p
        .get("code")
        .ok_or_else(|| ApiError::bad_request("the 'code' parameter is required"))?;
    let t = st.terminology.loaded()?;
    let index = &t.index;
    let set = if on_code_system {
        None
    } else {
        Some(value_set(index, p)?.1)
    };
    let id = SctId::parse(raw).map(SctId::get);
    let display = id.and_then(|id| index.display(id));
    let (result, message) = match id {
        None => (
            false,
            Some(format!("'{raw}' is not a SNOMED CT identifier")),
        ),
        Some(id) if !index.contains(id) => {
            (false, Some(format!("{id} is not in the loaded release")))
        }
        Some(id) if index.is_active(id) != Some(true) => (false, Some(format!("{id} is inactive"))),
        Some(id) if set.as_ref().is_some_and(|s| !index.set_contains(s, id)) => {
            (false, Some(format!("{id} is not in the value set")))
        }
        Some(id) => match p.get("display") {
            Some(d)
                if !index.concept(id).is_some_and(|c| {
                    c.descriptions
                        .iter()
                        .any(|x| x.active && x.term.eq_ignore_ascii_case(d))
                }) =>
            {
                (false, Some(format!("'{d}' is not a display of {id}")))
            }
            _ => (true, None),
        },
    };
    Ok(validation(call, result, message, display))
}

/// The answer of `$validate-code`: `result`, and the `message` and
/// `display` when there are some.
pub(crate) fn validation(
    call: &Call,
    result: bool,
    message: Option<String>,
    display: Option<&str>,
) -> Response {
    let mut params = vec![json!({"name": "result", "valueBoolean": result})];
    if let Some(m) = message {
        params.push(json!({"name": "message", "valueString": m}));
    }
    if let Some(d) = display {
        params.push(json!({"name": "display", "valueString": d}));
    }
    answer(
        call,
        json!({"resourceType": "Parameters", "parameter": params}),
    )
}
