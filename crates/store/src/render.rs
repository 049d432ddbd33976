//! Search and history results as Bundles (search.html#return,
//! http.html#history), with paging links. Stored resource JSON is spliced in
//! as it is unless the client asked for a partial view.

use gp_fhir::bundle::{BundleWriter, EntryParts};
use gp_fhir::search::{SearchQuery, Total};
use gp_fhir::{Instant, OperationOutcome, ResourceType};
use serde_json::{Map, Value, json};

use crate::SearchResult;
use crate::backend::{HistoryPage, HistoryQuery, StoredVersion};

/// Characters escaped in query values: all but RFC 3986's unreserved ones.
const QUERY: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

fn encode(s: &str) -> String {
    percent_encoding::utf8_percent_encode(s, QUERY).to_string()
}

pub(crate) fn query_string(params: &[(String, String)]) -> String {
    params
        .iter()
        .map(|(k, v)| format!("{}={}", encode(k), encode(v)))
        .collect::<Vec<_>>()
        .join("&")
}

fn header(kind: &str, total: Option<u64>, links: Vec<(&str, String)>) -> Map<String, Value> {
    let mut h = Map::new();
    h.insert(
        "meta".into(),
        json!({ "lastUpdated": Instant::now().to_fhir() }),
    );
    h.insert("type".into(), json!(kind));
    if let Some(t) = total {
        h.insert("total".into(), json!(t));
    }
    let links: Vec<Value> = links
        .into_iter()
        .map(|(rel, url)| json!({ "relation": rel, "url": url }))
        .collect();
    h.insert("link".into(), Value::Array(links));
    h
}

/// The full URL of a resource.
pub fn resource_url(base: &str, v: &StoredVersion) -> String {
    format!("{base}/{}/{}", v.resource_type, v.id)
}

/// A searchset Bundle. `path` is the search's URL without a query
/// (`[base]/Patient` or `[base]`).
pub fn searchset(base: &str, path: &str, query: &SearchQuery, result: &SearchResult) -> Vec<u8> {
    let page = &result.page;
    // Without `_sort`, pages are keyset pages in (type, id) order, stable
    // while writes go on; with `_sort`, offsets.
    let keyset = query.sort.is_empty();
    let link = |offset: usize, after: Option<String>| {
        let mut params = query.used.clone();
        params.retain(|(k, _)| k != "_count");
        params.push(("_count".into(), query.count.to_string()));
        if let Some(a) = after {
            params.push(("_after".into(), a));
        } else if offset > 0 {
            params.push(("_offset".into(), offset.to_string()));
        }
        format!("{path}?{}", query_string(&params))
    };
    let current = query.after.as_ref().map(|(t, id)| format!("{t}/{id}"));
    let mut links = vec![
        ("self", link(query.offset, current.clone())),
        ("first", link(0, None)),
    ];
    if !keyset && query.offset > 0 {
        links.push((
            "previous",
            link(query.offset.saturating_sub(query.count), None),
        ));
    }
    let full = page.entries.len() >= query.count && query.count > 0;
    let more = match (keyset, page.total) {
        (false, Some(t)) => (query.offset + page.entries.len()) < t as usize,
        (true, Some(t)) if current.is_none() => page.entries.len() < t as usize,
        _ => full,
    };
    if more {
        let next = if keyset {
            page.entries
                .last()
                .map(|v| link(0, Some(format!("{}/{}", v.resource_type, v.id))))
        } else {
            Some(link(query.offset + query.count, None))
        };
        if let Some(n) = next {
            links.push(("next", n));
        }
    }
    let total = if query.total == Total::None {
        None
    } else {
        page.total
    };
    let mut w = BundleWriter::new(
        &uuid::Uuid::new_v4().to_string(),
        header("searchset", total, links),
    );
    let modes = page
        .entries
        .iter()
        .map(|v| (v, "match"))
        .chain(result.included.iter().map(|v| (v, "include")));
    for (v, mode) in modes {
        let full = resource_url(base, v);
        let shaped;
        let body: &[u8] = if query.view.is_full() {
            &v.body
        } else {
            let value: Value = serde_json::from_slice(&v.body).unwrap_or(Value::Null);
            shaped = serde_json::to_vec(&query.view.apply(value)).unwrap_or_default();
            &shaped
        };
        w.push(EntryParts {
            full_url: Some(&full),
            resource: Some(body),
            search: Some(json!({ "mode": mode })),
            ..Default::default()
        });
    }
    if !query.ignored.is_empty() {
        // search.html#errors: parameters the server ignored are reported.
        let outcome = OperationOutcome::new(
            gp_fhir::Severity::Warning,
            gp_fhir::IssueType::NotSupported,
            format!(
                "these search parameters were not used: {}",
                query.ignored.join(", ")
            ),
        );
        let body = outcome.to_json().to_string();
        w.push(EntryParts {
            resource: Some(body.as_bytes()),
            search: Some(json!({ "mode": "outcome" })),
            ..Default::default()
        });
    }
    w.finish()
}

/// A history Bundle, newest version first (http.html#history).
pub fn history(base: &str, path: &str, query: &HistoryQuery, page: &HistoryPage) -> Vec<u8> {
    let link = |offset: usize| {
        let mut params = Vec::new();
        if let Some(s) = query.since {
            params.push(("_since".to_owned(), s.to_fhir()));
        }
        params.push(("_count".to_owned(), query.count.to_string()));
        params.push(("_until".to_owned(), page.until.to_string()));
        if offset > 0 {
            params.push(("_offset".to_owned(), offset.to_string()));
        }
        format!("{path}?{}", query_string(&params))
    };
    let mut links = vec![("self", link(query.offset)), ("first", link(0))];
    if query.offset > 0 {
        links.push(("previous", link(query.offset.saturating_sub(query.count))));
    }
    if ((query.offset + page.entries.len()) as u64) < page.total {
        links.push(("next", link(query.offset + query.count)));
    }
    let mut w = BundleWriter::new(
        &uuid::Uuid::new_v4().to_string(),
        header("history", Some(page.total), links),
    );
    for v in &page.entries {
        let full = resource_url(base, v);
        let rel = format!("{}/{}", v.resource_type, v.id);
        let (method, url, status) = if v.deleted {
            ("DELETE", rel.clone(), "204 No Content")
        } else if v.version == 1 {
            ("POST", v.resource_type.to_string(), "201 Created")
        } else {
            ("PUT", rel.clone(), "200 OK")
        };
        let response = json!({
            "status": status,
            "etag": format!("W/\"{}\"", v.version),
            "lastModified": v.last_updated.to_fhir(),
        });
        w.push(EntryParts {
            full_url: Some(&full),
            resource: if v.deleted { None } else { Some(&v.body) },
            request: Some(json!({ "method": method, "url": url })),
            response: Some(response),
            ..Default::default()
        });
    }
    w.finish()
}

/// The path of a type or the whole practice, for links.
pub fn search_path(base: &str, ty: Option<ResourceType>) -> String {
    match ty {
        Some(t) => format!("{base}/{t}"),
        None => base.to_owned(),
    }
}
