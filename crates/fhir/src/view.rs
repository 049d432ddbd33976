//! Partial views of a resource: `_summary` and `_elements`
//! (search.html#summary, search.html#elements).

use serde_json::{Map, Value, json};

use crate::definitions;

/// `_summary` values.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Summary {
    True,
    Text,
    Data,
    Count,
    False,
}

impl Summary {
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "true" => Summary::True,
            "text" => Summary::Text,
            "data" => Summary::Data,
            "count" => Summary::Count,
            "false" => Summary::False,
            _ => return None,
        })
    }
}

/// What a client asked to see of each resource.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct View {
    pub summary: Option<Summary>,
    pub elements: Option<Vec<String>>,
}

impl View {
    /// True when the stored resource can be sent as it is.
    pub fn is_full(&self) -> bool {
        self.elements.is_none() && matches!(self.summary, None | Some(Summary::False))
    }

    /// Applies the view to a resource, marking a subset with the
    /// `SUBSETTED` tag as the specification requires.
    pub fn apply(&self, resource: Value) -> Value {
        let Value::Object(body) = resource else {
            return resource;
        };
        let rt = body
            .get("resourceType")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        let keep: Option<Vec<String>> = match (&self.elements, self.summary) {
            (Some(elements), _) => {
                let mut k: Vec<String> = elements.clone();
                k.extend(
                    definitions::mandatory_elements(&rt)
                        .into_iter()
                        .map(str::to_owned),
                );
                Some(k)
            }
            (None, Some(Summary::True)) => Some(
                definitions::summary_elements(&rt)
                    .into_iter()
                    .map(str::to_owned)
                    .collect(),
            ),
            (None, Some(Summary::Text)) => {
                let mut k: Vec<String> = vec!["text".into()];
                k.extend(
                    definitions::mandatory_elements(&rt)
                        .into_iter()
                        .map(str::to_owned),
                );
                Some(k)
            }
            (None, Some(Summary::Data)) => {
                let mut b = body;
                b.remove("text");
                return subsetted(b);
            }
            (None, _) => return Value::Object(body),
        };
        let keep = keep.unwrap_or_default();
        let mut out = Map::new();
        for (key, value) in body {
            let stem_kept = keep.iter().any(|k| {
                key == *k
                    || (key.starts_with(k.as_str())
                        && key[k.len()..].starts_with(|c: char| c.is_ascii_uppercase()))
            });
            if key == "resourceType" || key == "id" || key == "meta" || stem_kept {
                out.insert(key, value);
            }
        }
        subsetted(out)
    }
}

fn subsetted(mut body: Map<String, Value>) -> Value {
    let tag = json!({
        "system": "http://terminology.hl7.org/CodeSystem/v3-ObservationValue",
        "code": "SUBSETTED",
        "display": "Resource encoded in summary mode"
    });
    let meta = body.entry("meta").or_insert_with(|| json!({}));
    if let Value::Object(m) = meta {
        let tags = m.entry("tag").or_insert_with(|| json!([]));
        if let Value::Array(t) = tags {
            t.push(tag);
        }
    }
    Value::Object(body)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn patient() -> Value {
        json!({"resourceType":"Patient","id":"p","text":{"status":"generated","div":"<div/>"},
               "name":[{"family":"Smith"}],"contact":[{"name":{"family":"X"}}],"deceasedBoolean":false,"active":true})
    }

    #[test]
    fn summary_true_keeps_summary_elements_and_tags_the_subset() {
        let v = View {
            summary: Some(Summary::True),
            elements: None,
        }
        .apply(patient());
        assert!(v.get("text").is_none() && v.get("contact").is_none());
        assert_eq!(v["deceasedBoolean"], false);
        assert_eq!(v["name"][0]["family"], "Smith");
        assert_eq!(v["meta"]["tag"][0]["code"], "SUBSETTED");
    }

    #[test]
    fn elements_keeps_asked_elements_only() {
        let v = View {
            summary: None,
            elements: Some(vec!["active".into()]),
        }
        .apply(patient());
        assert_eq!(v["active"], true);
        assert!(v.get("name").is_none() && v.get("text").is_none());
        assert_eq!(v["id"], "p");
    }

    #[test]
    fn summary_data_drops_the_narrative() {
        let v = View {
            summary: Some(Summary::Data),
            elements: None,
        }
        .apply(patient());
        assert!(v.get("text").is_none());
        assert!(v.get("contact").is_some());
    }
}
