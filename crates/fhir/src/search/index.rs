//! What a resource contributes to search: index entries, one per value of
//! each search parameter, written with the resource's current version
//! (search.html#ptypes). Extraction (evaluating each parameter's FHIRPath
//! expression) lives in `gp-search`; stores only persist and query these.

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
    Quantity {
        value: f64,
        system: Option<String>,
        code: Option<String>,
    },
    /// A local reference (`target_type`/`target_id`) or an absolute or
    /// canonical URL.
    Reference {
        target_type: Option<String>,
        target_id: Option<String>,
        url: Option<String>,
    },
    Uri(String),
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
        }
    }
}
