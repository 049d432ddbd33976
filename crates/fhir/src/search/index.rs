//! What a resource contributes to search: index entries, one per value of
//! each search parameter, written with the resource's current version
//! (search.html#ptypes). Extraction (evaluating each parameter's FHIRPath
//! expression) lives in `gp-search`; stores only persist and query these.

use serde_json::Value;

use crate::ResourceType;

/// One value of one search parameter of a resource.
#[derive(Clone, Debug, PartialEq)]
pub struct IndexEntry {
    /// The parameter code (`name`, `subject`...). A reference's identifier
    /// is indexed as a token under `"{code}:identifier"`; a composite's
    /// components under `"{code}${n}"`.
    pub code: String,
    /// Entries with the same non-zero group came from one element, so that
    /// a composite's components match together.
    pub group: u32,
    pub value: IndexValue,
}

/// An indexed value, by parameter type.
#[derive(Clone, Debug, PartialEq)]
pub enum IndexValue {
    /// `norm` is [`super::value::normalize`]d for the default and
    /// `:contains` searches; `exact` is kept for `:exact`.
    String {
        norm: String,
        exact: String,
    },
    /// A code with its system (none for a plain `code` element), and the
    /// normalised display or text for `:text`.
    Token {
        system: Option<String>,
        code: Option<String>,
        text: Option<String>,
    },
    /// A date as the half-open range of milliseconds it covers.
    Date {
        low: i64,
        high: i64,
    },
    Number {
        value: f64,
    },
    /// A quantity as written, and for a UCUM unit OpenGP reduces, its
    /// canonical form ([`crate::ucum::canonical`]: the value in base
    /// units and their code), which UCUM searches compare.
    Quantity {
        value: f64,
        system: Option<String>,
        code: Option<String>,
        canonical: Option<(f64, String)>,
    },
    /// A local reference (`target_type`/`target_id`) or an absolute or
    /// canonical URL.
    Reference {
        target_type: Option<String>,
        target_id: Option<String>,
        url: Option<String>,
    },
    Uri(String),
    /// The words of the narrative (`_text`) or of the whole resource
    /// (`_content`), [`words`]-normalised, each once, space-separated, for
    /// the store's full-text index.
    Text(String),
}

/// The distinct words of `text`: [`super::value::normalize`]d (lower case,
/// accents folded), split at every character that is not a letter or a
/// digit. Both the indexed text and the searched words go through it, so
/// they match whatever the database's tokenizer would make of them.
pub fn words(text: &str) -> Vec<String> {
    let norm = super::value::normalize(text);
    let mut seen = std::collections::HashSet::new();
    norm.split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty() && seen.insert(*w))
        .map(str::to_owned)
        .collect()
}

impl IndexValue {
    /// The parameter type this value belongs to.
    pub fn kind(&self) -> super::ParamKind {
        use super::ParamKind as K;
        match self {
            IndexValue::String { .. } => K::String,
            IndexValue::Token { .. } => K::Token,
            IndexValue::Date { .. } => K::Date,
            IndexValue::Number { .. } => K::Number,
            IndexValue::Quantity { .. } => K::Quantity,
            IndexValue::Reference { .. } => K::Reference,
            IndexValue::Uri(_) => K::Uri,
            IndexValue::Text(_) => K::Special,
        }
    }
}

/// The entries of `_text` (the words of the narrative, `text.div`) and of
/// `_content` (the words of every string in the resource, the narrative's
/// included, but not its type, ids, `meta`, nor code system and extension
/// URLs), for the store's full-text index (search.html#text).
/// DomainResources only, the types these parameters are defined on.
pub fn text_entries(ty: ResourceType, json: &Value) -> Vec<IndexEntry> {
    let mut out = Vec::new();
    if super::registry::param(ty, "_text").is_none() {
        return out;
    }
    let narrative = json["text"]["div"].as_str().map(strip_tags);
    if let Some(n) = narrative.as_deref() {
        push_text("_text", n, &mut out);
    }
    let mut all = String::new();
    strings(json, &mut all);
    push_text("_content", &all, &mut out);
    out
}

fn push_text(code: &str, text: &str, out: &mut Vec<IndexEntry>) {
    let words = words(text);
    if !words.is_empty() {
        out.push(IndexEntry {
            code: code.to_owned(),
            group: 0,
            value: IndexValue::Text(words.join(" ")),
        });
    }
}

/// Every string of a JSON value, space-separated, but for the keys below;
/// the narrative without its markup.
fn strings(v: &Value, out: &mut String) {
    match v {
        Value::String(s) => {
            out.push_str(s);
            out.push(' ');
        }
        Value::Array(items) => items.iter().for_each(|i| strings(i, out)),
        Value::Object(m) => {
            for (k, v) in m {
                match (k.as_str(), v) {
                    // Bookkeeping and identifiers of code systems and
                    // extensions, which every resource of a kind shares.
                    ("resourceType" | "id" | "meta" | "system" | "url", _) => {}
                    ("div", Value::String(div)) => {
                        out.push_str(&strip_tags(div));
                        out.push(' ');
                    }
                    _ => strings(v, out),
                }
            }
        }
        _ => {}
    }
}

/// XHTML's text: tags dropped (each a word break), the common entities
/// decoded.
fn strip_tags(xhtml: &str) -> String {
    let mut out = String::with_capacity(xhtml.len());
    let mut in_tag = false;
    for c in xhtml.chars() {
        match c {
            '<' => in_tag = true,
            '>' if in_tag => {
                in_tag = false;
                out.push(' ');
            }
            _ if !in_tag => out.push(c),
            _ => {}
        }
    }
    // XML's entities and character references (`&#233;`, `&#xE9;`), and
    // `&nbsp;`; text that is not well-formed is indexed as it stands.
    let entity = |e: &str| match e {
        "nbsp" => Some(" "),
        e => quick_xml::escape::resolve_xml_entity(e),
    };
    match quick_xml::escape::unescape_with(&out, entity) {
        Ok(text) => text.into_owned(),
        Err(_) => out,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn narrative_words_decode_entities_and_character_references() {
        let json = serde_json::json!({
            "resourceType": "Condition",
            "text": {"status": "generated", "div": "<div xmlns=\"http://www.w3.org/1999/xhtml\">Caf&#233; &amp; asthma&#x2014;review&nbsp;clinic &lt;b&gt;</div>"}
        });
        let Some(ty) = crate::ResourceType::parse("Condition") else {
            panic!("Condition is a resource type");
        };
        let entries = text_entries(ty, &json);
        let narrative = entries.iter().find(|e| e.code == "_text");
        let Some(IndexValue::Text(words)) = narrative.map(|e| &e.value) else {
            panic!("no narrative words in {entries:?}");
        };
        assert_eq!(words, "cafe asthma review clinic b");
        // Text that is not well-formed keeps its words.
        assert_eq!(strip_tags("<p>fish & chips</p>"), " fish & chips ");
    }
}
