//! Which search parameters each resource type has (from the specification's
//! SearchParameter definitions, embedded by `definitions`).

use std::collections::HashMap;
use std::sync::LazyLock;

use crate::ResourceType;
use crate::definitions::{self, SearchParamDef};

/// The type of a search parameter (search.html#ptypes).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ParamKind {
    Number,
    Date,
    String,
    Token,
    Reference,
    Composite,
    Quantity,
    Uri,
    Special,
}

impl ParamKind {
    fn parse(s: &str) -> ParamKind {
        match s {
            "number" => ParamKind::Number,
            "date" => ParamKind::Date,
            "string" => ParamKind::String,
            "token" => ParamKind::Token,
            "reference" => ParamKind::Reference,
            "composite" => ParamKind::Composite,
            "quantity" => ParamKind::Quantity,
            "uri" => ParamKind::Uri,
            _ => ParamKind::Special,
        }
    }
}

/// A search parameter of one resource type.
#[derive(Debug)]
pub struct SearchParam {
    pub code: &'static str,
    pub kind: ParamKind,
    /// The FHIRPath expression that extracts its values, if it has one.
    pub expression: Option<&'static str>,
    /// For references: the types it may point to.
    pub targets: Vec<ResourceType>,
    pub url: &'static str,
    /// For composites: each component's parameter URL and expression.
    pub components: Vec<(&'static str, &'static str)>,
}

static BY_TYPE: LazyLock<HashMap<ResourceType, Vec<SearchParam>>> = LazyLock::new(build);

fn build() -> HashMap<ResourceType, Vec<SearchParam>> {
    let mut map: HashMap<ResourceType, Vec<SearchParam>> = HashMap::new();
    for def in definitions::search_parameters() {
        let param = |def: &'static SearchParamDef| SearchParam {
            code: def.code.as_str(),
            kind: ParamKind::parse(&def.kind),
            expression: def.expression.as_deref(),
            targets: def
                .target
                .iter()
                .filter_map(|t| ResourceType::parse(t))
                .collect(),
            url: def.url.as_str(),
            components: def
                .component
                .iter()
                .filter_map(|c| Some((c["definition"].as_str()?, c["expression"].as_str()?)))
                .collect(),
        };
        for base in &def.base {
            if base == "Resource" || base == "DomainResource" {
                for t in ResourceType::all() {
                    map.entry(t).or_default().push(param(def));
                }
            } else if let Some(t) = ResourceType::parse(base) {
                map.entry(t).or_default().push(param(def));
            }
        }
    }
    for params in map.values_mut() {
        params.sort_by_key(|p| p.code);
    }
    map
}

impl SearchParam {
    /// Whether search supports this parameter: it has a type search can
    /// match and an expression to index it by, or it is one of the
    /// full-text parameters (`_text`, `_content`), indexed apart. (`_query`,
    /// `_filter`, `_list` and the `special` ones are not.)
    pub fn is_searchable(&self) -> bool {
        (self.kind != ParamKind::Special && self.expression.is_some())
            || super::TEXT_PARAMS.contains(&self.code)
    }
}

/// Every search parameter of `ty`, sorted by code.
pub fn params(ty: ResourceType) -> &'static [SearchParam] {
    BY_TYPE.get(&ty).map_or(&[], Vec::as_slice)
}

/// The parameter `code` of `ty`.
pub fn param(ty: ResourceType, code: &str) -> Option<&'static SearchParam> {
    let ps = params(ty);
    ps.binary_search_by(|p| p.code.cmp(code))
        .ok()
        .map(|i| &ps[i])
}

/// The parameter with this canonical URL (for composite components).
pub fn by_url(ty: ResourceType, url: &str) -> Option<&'static SearchParam> {
    params(ty).iter().find(|p| p.url == url)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(name: &str) -> ResourceType {
        ResourceType::parse(name).unwrap_or_else(|| panic!("{name}"))
    }

    #[test]
    fn parameters_by_type() {
        let p = param(t("Patient"), "birthdate").map(|p| p.kind);
        assert_eq!(p, Some(ParamKind::Date));
        let subj = param(t("Observation"), "subject").unwrap_or_else(|| panic!("subject"));
        assert_eq!(subj.kind, ParamKind::Reference);
        assert!(subj.targets.contains(&t("Patient")));
        // Parameters on Resource apply to every type.
        assert!(param(t("Binary"), "_tag").is_some());
        // Shared definitions (clinical-patient) reach each of their bases.
        assert!(param(t("Condition"), "patient").is_some());
        assert!(param(t("Patient"), "nonsense").is_none());
        let code_value =
            param(t("Observation"), "code-value-quantity").unwrap_or_else(|| panic!("composite"));
        assert_eq!(code_value.components.len(), 2);
    }
}
