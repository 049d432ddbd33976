//! A FHIR resource as a JSON object whose `resourceType` R4 defines.

use serde_json::{Map, Value};

use crate::{Id, Instant, ResourceType};

/// A parsed resource: a JSON object with a known `resourceType`.
#[derive(Clone, Debug, PartialEq)]
pub struct Resource {
    /// Checked against the R4 definitions when parsed; never changes after.
    resource_type: ResourceType,
    /// Always a JSON object. Kept as a `Value` so that FHIRPath evaluation,
    /// validation and indexing can borrow it without copying.
    json: Value,
}

/// Why a body is not a resource. All of these are the client's fault (400).
#[derive(Clone, Debug, thiserror::Error, PartialEq, Eq)]
pub enum ResourceError {
    #[error("the body is not valid JSON: {0}")]
    Json(String),
    #[error("the body is not a JSON object")]
    NotObject,
    #[error("the body has no resourceType")]
    NoResourceType,
    #[error("'{0}' is not a FHIR R4 resource type")]
    UnknownType(String),
    #[error("the resource id is not valid: {0}")]
    BadId(String),
    #[error("'meta' must be an object")]
    BadMeta,
}

impl Resource {
    pub fn from_slice(bytes: &[u8]) -> Result<Self, ResourceError> {
        let value: Value =
            serde_json::from_slice(bytes).map_err(|e| ResourceError::Json(e.to_string()))?;
        Self::from_value(value)
    }

    /// Parses a body for a create, which ignores any client id
    /// (http.html#create), valid or not.
    pub fn from_value_for_create(mut value: Value) -> Result<Self, ResourceError> {
        if let Value::Object(body) = &mut value {
            body.remove("id");
        }
        Self::from_value(value)
    }

    pub fn from_value(value: Value) -> Result<Self, ResourceError> {
        let Value::Object(body) = value else {
            return Err(ResourceError::NotObject);
        };
        let name = body
            .get("resourceType")
            .and_then(Value::as_str)
            .ok_or(ResourceError::NoResourceType)?;
        let resource_type =
            ResourceType::parse(name).ok_or_else(|| ResourceError::UnknownType(name.to_owned()))?;
        match body.get("id") {
            None => {}
            Some(Value::String(s)) => {
                Id::parse(s).map_err(|e| ResourceError::BadId(e.to_string()))?;
            }
            Some(other) => return Err(ResourceError::BadId(format!("{other} is not a string"))),
        }
        if body.get("meta").is_some_and(|m| !m.is_object()) {
            return Err(ResourceError::BadMeta);
        }
        Ok(Resource {
            resource_type,
            json: Value::Object(body),
        })
    }

    pub fn resource_type(&self) -> ResourceType {
        self.resource_type
    }

    pub fn id(&self) -> Option<&str> {
        self.map().get("id").and_then(Value::as_str)
    }

    pub fn set_id(&mut self, id: &Id) {
        self.with_map(|m| m.insert("id".into(), Value::String(id.to_string())));
        self.order_head();
    }

    pub fn clear_id(&mut self) {
        self.with_map(|m| m.remove("id"));
    }

    /// Sets the server-owned meta fields (http.html#versioning), keeping the
    /// rest of `meta` (profiles, tags, security labels) as the client sent it.
    pub fn set_meta(&mut self, version: u64, last_updated: Instant) {
        self.with_map(|body| {
            let meta = body
                .entry("meta")
                .or_insert_with(|| Value::Object(Map::new()));
            if !meta.is_object() {
                *meta = Value::Object(Map::new());
            }
            if let Value::Object(m) = meta {
                m.insert("versionId".into(), Value::String(version.to_string()));
                m.insert("lastUpdated".into(), Value::String(last_updated.to_fhir()));
            }
        });
        self.order_head();
    }

    /// Puts `resourceType`, `id` and `meta` first, in that order, as people
    /// reading the JSON expect; the rest keeps the client's order.
    fn order_head(&mut self) {
        self.with_map(order_head);
    }

    pub fn body(&self) -> &Map<String, Value> {
        self.map()
    }

    /// The resource as JSON, borrowed.
    pub fn as_json(&self) -> &Value {
        &self.json
    }

    fn map(&self) -> &Map<String, Value> {
        static EMPTY: std::sync::LazyLock<Map<String, Value>> = std::sync::LazyLock::new(Map::new);
        self.json.as_object().unwrap_or(&EMPTY)
    }

    /// Runs `f` on the object (the invariant: `json` is always one).
    fn with_map<R: Default>(&mut self, f: impl FnOnce(&mut Map<String, Value>) -> R) -> R {
        match &mut self.json {
            Value::Object(m) => f(m),
            _ => R::default(),
        }
    }

    pub fn into_value(self) -> Value {
        self.json
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(&self.json).unwrap_or_default()
    }

    /// Rewrites every `Reference.reference` (and every `uri`-typed value equal
    /// to a bundle fullUrl) for which `map` gives a replacement. Used for
    /// transaction `urn:uuid:` references (http.html#trules).
    pub fn rewrite_references(&mut self, map: &dyn Fn(&str) -> Option<String>) {
        if let Value::Object(body) = &mut self.json {
            for value in body.values_mut() {
                rewrite(value, map);
            }
        }
    }
}

/// Puts `resourceType`, `id` and `meta` first, keeping the rest in order.
fn order_head(body: &mut Map<String, Value>) {
    let old = std::mem::take(body);
    let mut rest = Map::new();
    let mut head: [Option<Value>; 3] = [None, None, None];
    for (key, value) in old {
        match key.as_str() {
            "resourceType" => head[0] = Some(value),
            "id" => head[1] = Some(value),
            "meta" => head[2] = Some(value),
            _ => {
                rest.insert(key, value);
            }
        }
    }
    for (key, value) in ["resourceType", "id", "meta"].into_iter().zip(head) {
        if let Some(v) = value {
            body.insert(key.to_owned(), v);
        }
    }
    body.extend(rest);
}

fn rewrite(value: &mut Value, map: &dyn Fn(&str) -> Option<String>) {
    match value {
        Value::Object(obj) => {
            for (key, v) in obj.iter_mut() {
                if let Value::String(s) = v {
                    if (key == "reference" || s.starts_with("urn:"))
                        && let Some(new) = map(s)
                    {
                        *s = new;
                    }
                } else {
                    rewrite(v, map);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(|v| match v {
            Value::String(s) if s.starts_with("urn:") => {
                if let Some(new) = map(s) {
                    *s = new;
                }
            }
            other => rewrite(other, map),
        }),
        _ => {}
    }
}

/// Compares two resources as the specification's read-back does: equal but
/// for the server-owned `meta.versionId` and `meta.lastUpdated` (and a `meta`
/// left empty without them).
pub fn equal_ignoring_meta(a: &Value, b: &Value) -> bool {
    fn strip(v: &Value) -> Value {
        let mut v = v.clone();
        if let Some(obj) = v.as_object_mut()
            && let Some(Value::Object(meta)) = obj.get_mut("meta")
        {
            meta.remove("versionId");
            meta.remove("lastUpdated");
            if meta.is_empty() {
                obj.remove("meta");
            }
        }
        v
    }
    strip(a) == strip(b)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn bodies_that_are_not_resources_are_refused() {
        let cases: [(&[u8], ResourceError); 5] = [
            (b"{", ResourceError::Json(String::new())),
            (b"[]", ResourceError::NotObject),
            (b"{\"id\":\"a\"}", ResourceError::NoResourceType),
            (
                b"{\"resourceType\":\"Pateint\"}",
                ResourceError::UnknownType("Pateint".into()),
            ),
            (
                b"{\"resourceType\":\"Patient\",\"id\":\"a b\"}",
                ResourceError::BadId(String::new()),
            ),
        ];
        for (body, want) in cases {
            let got = Resource::from_slice(body).err();
            assert_eq!(
                std::mem::discriminant(&got.clone().unwrap_or(ResourceError::NotObject)),
                std::mem::discriminant(&want),
                "{got:?}"
            );
        }
    }

    #[test]
    fn meta_is_set_after_id_and_keeps_client_content() {
        let mut r = Resource::from_value(
            json!({"resourceType":"Patient","id":"p","active":true,"meta":{"tag":[{"code":"x"}]}}),
        )
        .unwrap_or_else(|e| panic!("{e}"));
        r.set_meta(3, Instant::from_millis(0));
        let text = String::from_utf8(r.to_bytes()).unwrap_or_default();
        assert_eq!(
            text,
            r#"{"resourceType":"Patient","id":"p","meta":{"tag":[{"code":"x"}],"versionId":"3","lastUpdated":"1970-01-01T00:00:00.000Z"},"active":true}"#
        );
    }

    #[test]
    fn urn_references_are_rewritten_everywhere() {
        let mut r = Resource::from_value(json!({
            "resourceType":"Observation",
            "subject":{"reference":"urn:uuid:1"},
            "hasMember":[{"reference":"urn:uuid:2"},{"reference":"Patient/x"}],
            "focus":[{"reference":"urn:uuid:3"}]
        }))
        .unwrap_or_else(|e| panic!("{e}"));
        r.rewrite_references(&|s| match s {
            "urn:uuid:1" => Some("Patient/a".into()),
            "urn:uuid:2" => Some("Observation/b".into()),
            _ => None,
        });
        let v = r.into_value();
        assert_eq!(v["subject"]["reference"], "Patient/a");
        assert_eq!(v["hasMember"][0]["reference"], "Observation/b");
        assert_eq!(v["hasMember"][1]["reference"], "Patient/x");
        assert_eq!(v["focus"][0]["reference"], "urn:uuid:3");
    }
}
