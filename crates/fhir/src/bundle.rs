//! Bundles: reading batch and transaction requests (http.html#transaction)
//! and writing searchset, history and response bundles.

use serde_json::{Map, Value, json};

use crate::outcome::{IssueType, OperationOutcome};

/// Whether entries succeed or fail together.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BundleKind {
    Batch,
    Transaction,
}

/// The HTTP verb of an entry's request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Method {
    Get,
    Head,
    Post,
    Put,
    Patch,
    Delete,
}

impl Method {
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "GET" => Method::Get,
            "HEAD" => Method::Head,
            "POST" => Method::Post,
            "PUT" => Method::Put,
            "PATCH" => Method::Patch,
            "DELETE" => Method::Delete,
            _ => return None,
        })
    }

    /// The order a transaction processes entries in (http.html#trules):
    /// deletes, then creates, then updates and patches, then reads.
    pub fn transaction_order(self) -> u8 {
        match self {
            Method::Delete => 0,
            Method::Post => 1,
            Method::Put | Method::Patch => 2,
            Method::Get | Method::Head => 3,
        }
    }
}

/// One entry of a batch or transaction request.
#[derive(Clone, Debug, PartialEq)]
pub struct RequestEntry {
    /// Position in the bundle, so responses come back in request order.
    pub index: usize,
    pub full_url: Option<String>,
    pub resource: Option<Value>,
    pub method: Method,
    /// The request URL relative to the base, e.g. `Patient/1` or `Patient?identifier=x`.
    pub url: String,
    pub if_match: Option<String>,
    pub if_none_match: Option<String>,
    pub if_none_exist: Option<String>,
    pub if_modified_since: Option<String>,
}

/// Reads a batch or transaction Bundle; any other body is refused.
pub fn parse_request(bundle: &Value) -> Result<(BundleKind, Vec<RequestEntry>), OperationOutcome> {
    let bad = |msg: String| OperationOutcome::error(IssueType::Invalid, msg);
    if bundle["resourceType"] != "Bundle" {
        return Err(bad("a batch or transaction must be a Bundle".into()));
    }
    let kind = match bundle["type"].as_str() {
        Some("batch") => BundleKind::Batch,
        Some("transaction") => BundleKind::Transaction,
        Some(other) => {
            return Err(bad(format!(
                "a Bundle of type '{other}' cannot be processed; use batch or transaction"
            )));
        }
        None => return Err(bad("the Bundle has no type".into())),
    };
    let mut entries = Vec::new();
    for (index, e) in bundle["entry"].as_array().into_iter().flatten().enumerate() {
        let at = format!("Bundle.entry[{index}]");
        let req = &e["request"];
        let method = req["method"]
            .as_str()
            .and_then(Method::parse)
            .ok_or_else(|| {
                bad(format!(
                    "{at}.request.method is missing or not an HTTP verb"
                ))
                .at(format!("{at}.request.method"))
            })?;
        let url = req["url"].as_str().ok_or_else(|| {
            bad(format!("{at}.request.url is missing")).at(format!("{at}.request.url"))
        })?;
        let text = |v: &Value| v.as_str().map(str::to_owned);
        entries.push(RequestEntry {
            index,
            full_url: text(&e["fullUrl"]),
            resource: e.get("resource").cloned(),
            method,
            url: url.trim_start_matches('/').to_owned(),
            if_match: text(&req["ifMatch"]),
            if_none_match: text(&req["ifNoneMatch"]),
            if_none_exist: text(&req["ifNoneExist"]),
            if_modified_since: text(&req["ifModifiedSince"]),
        });
    }
    Ok((kind, entries))
}

/// Writes a Bundle as bytes, splicing in stored resource JSON as it is so
/// that reads never re-serialise what the store already holds.
pub struct BundleWriter {
    buf: Vec<u8>,
    entries: usize,
}

/// One entry to write.
#[derive(Default)]
pub struct EntryParts<'a> {
    pub full_url: Option<&'a str>,
    /// Raw resource JSON (an object).
    pub resource: Option<&'a [u8]>,
    pub search: Option<Value>,
    pub request: Option<Value>,
    pub response: Option<Value>,
}

impl BundleWriter {
    /// Starts a bundle with its header fields (`type`, `total`, `link`...)
    /// given as a JSON object.
    pub fn new(id: &str, header: Map<String, Value>) -> Self {
        let mut buf = Vec::with_capacity(4096);
        buf.extend_from_slice(br#"{"resourceType":"Bundle","id":"#);
        buf.extend_from_slice(json!(id).to_string().as_bytes());
        for (k, v) in header {
            buf.push(b',');
            buf.extend_from_slice(json!(k).to_string().as_bytes());
            buf.push(b':');
            buf.extend_from_slice(v.to_string().as_bytes());
        }
        BundleWriter { buf, entries: 0 }
    }

    pub fn push(&mut self, e: EntryParts<'_>) {
        self.buf.extend_from_slice(if self.entries == 0 {
            b",\"entry\":[{"
        } else {
            b",{"
        });
        self.entries += 1;
        let mut first = true;
        let mut field = |buf: &mut Vec<u8>, name: &str, raw: &[u8]| {
            if !first {
                buf.push(b',');
            }
            first = false;
            buf.push(b'"');
            buf.extend_from_slice(name.as_bytes());
            buf.extend_from_slice(b"\":");
            buf.extend_from_slice(raw);
        };
        if let Some(u) = e.full_url {
            field(&mut self.buf, "fullUrl", json!(u).to_string().as_bytes());
        }
        if let Some(r) = e.resource {
            field(&mut self.buf, "resource", r);
        }
        for (name, v) in [
            ("search", e.search),
            ("request", e.request),
            ("response", e.response),
        ] {
            if let Some(v) = v {
                field(&mut self.buf, name, v.to_string().as_bytes());
            }
        }
        self.buf.push(b'}');
    }

    pub fn finish(mut self) -> Vec<u8> {
        if self.entries > 0 {
            self.buf.push(b']');
        }
        self.buf.push(b'}');
        self.buf
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writer_splices_raw_resources_and_omits_empty_entry() {
        let mut header = Map::new();
        header.insert("type".into(), json!("searchset"));
        header.insert("total".into(), json!(0));
        let empty = BundleWriter::new("b", header.clone()).finish();
        let v: Value = serde_json::from_slice(&empty).unwrap_or_default();
        assert!(v.get("entry").is_none());
        assert_eq!(v["total"], 0);

        let mut w = BundleWriter::new("b", header);
        w.push(EntryParts {
            full_url: Some("http://x/Patient/1"),
            resource: Some(br#"{"resourceType":"Patient","id":"1"}"#),
            search: Some(json!({"mode":"match"})),
            ..Default::default()
        });
        w.push(EntryParts {
            response: Some(json!({"status":"200 OK"})),
            ..Default::default()
        });
        let v: Value = serde_json::from_slice(&w.finish()).unwrap_or_default();
        assert_eq!(v["entry"][0]["resource"]["id"], "1");
        assert_eq!(v["entry"][1]["response"]["status"], "200 OK");
    }

    #[test]
    fn requests_are_read_with_their_conditions() {
        let b = json!({"resourceType":"Bundle","type":"transaction","entry":[
            {"fullUrl":"urn:uuid:1","resource":{"resourceType":"Patient"},"request":{"method":"POST","url":"Patient","ifNoneExist":"_id=x"}},
            {"request":{"method":"DELETE","url":"/Patient/2"}}]});
        let (kind, entries) = parse_request(&b).unwrap_or((BundleKind::Batch, Vec::new()));
        assert_eq!(kind, BundleKind::Transaction);
        assert_eq!(entries[0].if_none_exist.as_deref(), Some("_id=x"));
        assert_eq!(entries[1].url, "Patient/2");
        assert!(parse_request(&json!({"resourceType":"Bundle","type":"collection"})).is_err());
        assert!(parse_request(&json!({"resourceType":"Bundle","type":"batch","entry":[{"request":{"method":"FOO","url":"x"}}]})).is_err());
    }
}
