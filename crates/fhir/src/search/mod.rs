//! Search requests (search.html): parsing a query string into what a store
//! executes. Parameters are known from the specification's SearchParameter
//! definitions ([`registry`]); values are parsed by type ([`value`]).
//!
//! Parsing is strict about values (a malformed date is a 400) and, unless
//! `Prefer: handling=strict`, lenient about unknown parameters, which are
//! ignored and reported (search.html#errors).

pub mod index;
pub mod registry;
pub mod value;

use crate::outcome::{IssueType, OperationOutcome};
use crate::view::{Summary, View};
use crate::{Id, Instant, ResourceType};
pub use registry::{ParamKind, SearchParam};
pub use value::{DateCriterion, Modifier, NumberCriterion, ParamValue, Prefix};

/// The full-text parameters (search.html#text): the narrative, and the
/// whole resource.
pub const TEXT_PARAMS: [&str; 2] = ["_text", "_content"];

/// The number of results on a page when the client does not say.
pub const DEFAULT_COUNT: usize = 50;
/// The most results a page may hold, whatever the client asks.
pub const MAX_COUNT: usize = 1000;
/// How deep chains and `_has` may nest.
const MAX_CHAIN: usize = 3;

/// One search criterion; criteria are ANDed, the values inside one ORed.
/// More kinds may arrive, so backends refuse what they do not know.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum Criterion {
    Id(Vec<Id>),
    LastUpdated(Vec<DateCriterion>),
    /// A parameter of the searched type, with its values.
    Param {
        code: &'static str,
        kind: ParamKind,
        modifier: Modifier,
        values: Vec<ParamValue>,
    },
    /// `[param]:missing=true|false`.
    Missing {
        code: &'static str,
        kind: ParamKind,
        missing: bool,
    },
    /// `[reference]:[Type].[param]=...`: resources whose reference points at
    /// a resource of one of `targets` matching `inner` (search.html#chaining).
    Chain {
        code: &'static str,
        targets: Vec<ResourceType>,
        inner: Box<Criterion>,
    },
    /// `_has:[Type]:[reference]:[param]=...`: resources that some `source`
    /// resource refers to through `code` and that matches `inner`
    /// (search.html#has).
    Has {
        source: ResourceType,
        code: &'static str,
        inner: Box<Criterion>,
    },
    /// `_type` on a whole-practice search.
    Types(Vec<ResourceType>),
    /// `_text` (the narrative) or `_content` (the whole resource), per
    /// search.html#text: each value's words must all appear, as words or
    /// word prefixes, ignoring case and accents; values are ORed.
    Text {
        code: &'static str,
        values: Vec<Vec<String>>,
    },
    /// `_list=[id]` (search.html#list): resources that an entry of one of
    /// these Lists refers to (`List.entry.item`, the List's `item`
    /// parameter). The List itself must be one the caller may see.
    List(Vec<Id>),
    /// Membership of a compartment (`Patient/123/Observation`,
    /// compartmentdefinition.html): the compartment's resource itself, and
    /// resources of each member type whose listed reference parameters
    /// point at it.
    Compartment {
        compartment: ResourceType,
        id: String,
        members: Vec<(ResourceType, Vec<&'static str>)>,
    },
    /// Every one of these criteria. Never parsed from a URL: the store
    /// puts it inside a chain or `_has` to narrow the resources it reaches
    /// to those its context may search (an app's scopes).
    All(Vec<Criterion>),
}

/// The criterion for the compartment `compartment/id`, restricted to `ty`
/// when given. `None` when `compartment` has no compartment definition or
/// `ty` is not a member of it.
pub fn compartment(
    compartment: ResourceType,
    id: &Id,
    ty: Option<ResourceType>,
) -> Option<Criterion> {
    let def = crate::definitions::compartments()
        .iter()
        .find(|c| c["code"] == compartment.as_str())?;
    let members: Vec<(ResourceType, Vec<&'static str>)> = def["resource"]
        .as_object()?
        .iter()
        .filter_map(|(t, params)| {
            let t = ResourceType::parse(t)?;
            if ty.is_some_and(|want| want != t) {
                return None;
            }
            let codes: Vec<&'static str> = params
                .as_array()?
                .iter()
                .filter_map(|p| registry::param(t, p.as_str()?))
                .filter(|p| p.kind == ParamKind::Reference && p.is_searchable())
                .map(|p| p.code)
                .collect();
            (!codes.is_empty() || t == compartment).then_some((t, codes))
        })
        .collect();
    if members.is_empty() && ty != Some(compartment) {
        return None;
    }
    Some(Criterion::Compartment {
        compartment,
        id: id.to_string(),
        members,
    })
}

/// What a sort key sorts by.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SortField {
    Id,
    LastUpdated,
    Param { code: &'static str, kind: ParamKind },
}

/// A sort key (search.html#sort).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SortKey {
    pub field: SortField,
    pub desc: bool,
}

/// `_include` or `_revinclude` (search.html#include).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Include {
    /// The type holding the reference parameter.
    pub source: ResourceType,
    pub code: &'static str,
    /// Only targets of this type, if given.
    pub target: Option<ResourceType>,
    /// `:iterate`: apply again to what was included.
    pub iterate: bool,
}

/// `_total` (search.html#total).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Total {
    None,
    Estimate,
    #[default]
    Accurate,
}

/// A parsed search: criteria are ANDed.
#[derive(Clone, Debug, PartialEq)]
pub struct SearchQuery {
    pub criteria: Vec<Criterion>,
    pub sort: Vec<SortKey>,
    pub include: Vec<Include>,
    pub revinclude: Vec<Include>,
    pub count: usize,
    pub offset: usize,
    /// Keyset paging in the default order (type, then id): results after
    /// this resource. Pages stay stable while resources are created or
    /// updated between them (search.html#paging).
    pub after: Option<(ResourceType, String)>,
    pub total: Total,
    pub view: View,
    /// The parameters that were used, in canonical form, for the self link.
    pub used: Vec<(String, String)>,
    /// Parameters ignored because they are unknown or unsupported.
    pub ignored: Vec<String>,
    /// The resources as they were at this instant rather than as they are:
    /// each resource's latest version written at or before it, left out
    /// when that is a deletion or when there is none (created since). The
    /// criteria are matched by the index, which holds current versions: for
    /// a resource changed since, what its current version matches. Set by
    /// a Bulk Data export (its `transactionTime`), never from a URL.
    pub as_of: Option<Instant>,
}

impl Default for SearchQuery {
    fn default() -> Self {
        SearchQuery {
            criteria: Vec::new(),
            sort: Vec::new(),
            include: Vec::new(),
            revinclude: Vec::new(),
            count: DEFAULT_COUNT,
            offset: 0,
            after: None,
            total: Total::default(),
            view: View::default(),
            used: Vec::new(),
            ignored: Vec::new(),
            as_of: None,
        }
    }
}

/// Decodes a query string (`a=1&b=x%2Cy`, `+` for space) into pairs, in
/// order, keeping repeats (search.html#combining: repeats are ANDed).
pub fn parse_query_string(query: &str) -> Vec<(String, String)> {
    let decode = |s: &str| {
        let s = s.replace('+', " ");
        percent_encoding::percent_decode_str(&s)
            .decode_utf8_lossy()
            .into_owned()
    };
    query
        .split('&')
        .filter(|kv| !kv.is_empty())
        .map(|kv| {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            (decode(k), decode(v))
        })
        .collect()
}

/// Parameters the HTTP layer handles, which search neither uses nor reports.
const TRANSPORT_PARAMS: [&str; 2] = ["_format", "_pretty"];

fn invalid(why: String) -> OperationOutcome {
    OperationOutcome::error(IssueType::Invalid, why)
}

fn unsupported(why: String) -> OperationOutcome {
    OperationOutcome::error(IssueType::NotSupported, why)
}

/// Why a parameter could not be used.
enum Refusal {
    /// The value is malformed: always an error (400).
    Invalid(String),
    /// The parameter is unknown or unsupported: an error only when strict.
    Unsupported(String),
}

/// Parses query parameters for a search of `ty` (or of the whole practice).
/// With `strict` (`Prefer: handling=strict`), an unknown or unsupported
/// parameter is an error; otherwise it is ignored and listed in
/// [`SearchQuery::ignored`] (search.html#errors).
pub fn parse(
    ty: Option<ResourceType>,
    params: &[(String, String)],
    strict: bool,
) -> Result<SearchQuery, OperationOutcome> {
    let mut q = SearchQuery::default();
    for (name, value) in params {
        if TRANSPORT_PARAMS.contains(&name.as_str()) {
            continue;
        }
        match parse_one(&mut q, ty, name, value) {
            Ok(true) => q.used.push((name.clone(), value.clone())),
            Ok(false) => {}
            Err(Refusal::Invalid(why)) => return Err(invalid(why)),
            Err(Refusal::Unsupported(why)) => {
                if strict {
                    return Err(unsupported(why));
                }
                q.ignored.push(name.clone());
            }
        }
    }
    Ok(q)
}

/// Parses one parameter into `q`; `Ok(false)` for those that are used but
/// not echoed in the self link.
fn parse_one(
    q: &mut SearchQuery,
    ty: Option<ResourceType>,
    name: &str,
    value: &str,
) -> Result<bool, Refusal> {
    let bad = Refusal::Invalid;
    let whole = |what: &str| -> Result<usize, Refusal> {
        value
            .parse()
            .map_err(|_| Refusal::Invalid(format!("{what} must be a whole number, not '{value}'")))
    };
    match name {
        "_count" => q.count = whole("_count")?.min(MAX_COUNT),
        "_offset" => {
            q.offset = whole("_offset")?;
            return Ok(false);
        }
        "_after" => {
            let (t, id) = value
                .split_once('/')
                .ok_or_else(|| bad(format!("_after must be Type/id, not '{value}'")))?;
            let t = ResourceType::parse(t)
                .ok_or_else(|| bad(format!("_after: '{t}' is not a resource type")))?;
            q.after = Some((t, id.to_owned()));
            return Ok(false);
        }
        "_total" => {
            q.total = match value {
                "none" => Total::None,
                "estimate" => Total::Estimate,
                "accurate" => Total::Accurate,
                other => {
                    return Err(bad(format!(
                        "_total must be none, estimate or accurate, not '{other}'"
                    )));
                }
            }
        }
        "_summary" => {
            q.view.summary = Some(
                Summary::parse(value)
                    .ok_or_else(|| bad(format!("_summary cannot be '{value}'")))?,
            )
        }
        "_elements" => {
            q.view.elements = Some(value.split(',').map(|s| s.trim().to_owned()).collect())
        }
        "_sort" => {
            for key in value.split(',').filter(|k| !k.is_empty()) {
                q.sort.push(sort_key(ty, key)?);
            }
        }
        "_type" if ty.is_none() => {
            let types = value
                .split(',')
                .map(|t| {
                    ResourceType::parse(t)
                        .ok_or_else(|| bad(format!("_type: '{t}' is not a resource type")))
                })
                .collect::<Result<Vec<_>, _>>()?;
            q.criteria.push(Criterion::Types(types));
        }
        "_list" => {
            for c in list(ty, value)? {
                q.criteria.push(c);
            }
        }
        n if n == "_include"
            || n.starts_with("_include:")
            || n == "_revinclude"
            || n.starts_with("_revinclude:") =>
        {
            let iterate = n.ends_with(":iterate") || n.ends_with(":recurse");
            let inc = include(value, iterate)?;
            if n.starts_with("_include") {
                q.include.push(inc);
            } else {
                q.revinclude.push(inc);
            }
        }
        _ => {
            let c = criterion(ty, name, value, 0)?;
            q.criteria.push(c);
        }
    }
    Ok(true)
}

/// A functional list (lifecycle.html#lists): a type, and the parameters
/// its members match.
pub struct FunctionalList {
    pub name: &'static str,
    pub ty: &'static str,
    pub params: &'static [(&'static str, &'static str)],
}

/// The functional lists the server defines, from what the record holds: the
/// same criteria the clinical record's screens use.
pub const FUNCTIONAL_LISTS: [FunctionalList; 3] = [
    FunctionalList {
        name: "$current-problems",
        ty: "Condition",
        params: &[
            (
                "clinical-status",
                "http://terminology.hl7.org/CodeSystem/condition-clinical|active",
            ),
            (
                "category",
                "http://terminology.hl7.org/CodeSystem/condition-category|problem-list-item",
            ),
        ],
    },
    FunctionalList {
        name: "$current-medications",
        ty: "MedicationRequest",
        params: &[("status", "active")],
    },
    FunctionalList {
        name: "$current-allergies",
        ty: "AllergyIntolerance",
        params: &[(
            "clinical-status",
            "http://terminology.hl7.org/CodeSystem/allergyintolerance-clinical|active",
        )],
    },
];

/// `_list=[id],...` or `_list=$[function]` (search.html#list). A functional
/// list becomes its type's criteria; asked of another type it is an error,
/// since ignoring it would return everything.
fn list(ty: Option<ResourceType>, value: &str) -> Result<Vec<Criterion>, Refusal> {
    if value.starts_with('$') {
        let Some(FunctionalList { ty: of, params, .. }) =
            FUNCTIONAL_LISTS.iter().find(|f| f.name == value)
        else {
            return Err(Refusal::Unsupported(format!(
                "_list: '{value}' is not a functional list this server knows ({})",
                FUNCTIONAL_LISTS.map(|f| f.name).join(", ")
            )));
        };
        let of = ResourceType::parse(of)
            .ok_or_else(|| Refusal::Invalid(format!("'{of}' is not a resource type")))?;
        let mut criteria = match ty {
            Some(t) if t != of => {
                return Err(Refusal::Invalid(format!(
                    "_list: {value} holds {of} resources, not {t}"
                )));
            }
            Some(_) => Vec::new(),
            None => vec![Criterion::Types(vec![of])],
        };
        for (code, v) in *params {
            criteria.push(criterion(Some(of), code, v, 0)?);
        }
        return Ok(criteria);
    }
    Ok(vec![criterion(ty, "_list", value, 0)?])
}

fn sort_key(ty: Option<ResourceType>, key: &str) -> Result<SortKey, Refusal> {
    let (desc, code) = match key.strip_prefix('-') {
        Some(c) => (true, c),
        None => (false, key),
    };
    let field = match code {
        "_id" => SortField::Id,
        "_lastUpdated" => SortField::LastUpdated,
        other => {
            let p = ty.and_then(|t| registry::param(t, other)).ok_or_else(|| {
                Refusal::Unsupported(format!("sorting by '{other}' is not supported here"))
            })?;
            if matches!(p.kind, ParamKind::Composite | ParamKind::Special) {
                return Err(Refusal::Unsupported(format!(
                    "sorting by the {:?} parameter '{other}' is not supported",
                    p.kind
                )));
            }
            SortField::Param {
                code: p.code,
                kind: p.kind,
            }
        }
    };
    Ok(SortKey { field, desc })
}

/// `Source:param` or `Source:param:Target`.
fn include(value: &str, iterate: bool) -> Result<Include, Refusal> {
    let parts: Vec<&str> = value.split(':').collect();
    let (src, code, target) = match parts.as_slice() {
        [s, c] => (*s, *c, None),
        [s, c, t] => (*s, *c, Some(*t)),
        _ => {
            return Err(Refusal::Invalid(format!(
                "'{value}' is not Type:parameter[:Target]"
            )));
        }
    };
    let source = ResourceType::parse(src)
        .ok_or_else(|| Refusal::Invalid(format!("'{src}' is not a resource type")))?;
    let p = registry::param(source, code)
        .filter(|p| p.kind == ParamKind::Reference)
        .ok_or_else(|| {
            Refusal::Unsupported(format!("{src} has no reference parameter '{code}'"))
        })?;
    let target = match target {
        Some(t) => Some(
            ResourceType::parse(t)
                .ok_or_else(|| Refusal::Invalid(format!("'{t}' is not a resource type")))?,
        ),
        None => None,
    };
    Ok(Include {
        source,
        code: p.code,
        target,
        iterate,
    })
}

/// One criterion: `name[:modifier][.chain]=value`, or `_has:...`.
fn criterion(
    ty: Option<ResourceType>,
    name: &str,
    value: &str,
    depth: usize,
) -> Result<Criterion, Refusal> {
    let bad = Refusal::Invalid;
    if depth > MAX_CHAIN {
        return Err(Refusal::Unsupported(format!(
            "'{name}' chains more than {MAX_CHAIN} levels"
        )));
    }
    match name {
        "_id" => {
            let ids = value
                .split(',')
                .map(|s| Id::parse(s).map_err(|e| bad(format!("_id: {e}"))))
                .collect::<Result<Vec<_>, _>>()?;
            return Ok(Criterion::Id(ids));
        }
        "_lastUpdated" => {
            let dates = value
                .split(',')
                .map(|s| DateCriterion::parse(s).map_err(|e| bad(format!("_lastUpdated: {e}"))))
                .collect::<Result<Vec<_>, _>>()?;
            return Ok(Criterion::LastUpdated(dates));
        }
        n if n
            .split(':')
            .next()
            .is_some_and(|c| TEXT_PARAMS.contains(&c)) =>
        {
            let (code, modifier) = n.split_once(':').unwrap_or((n, ""));
            if !modifier.is_empty() {
                return Err(Refusal::Unsupported(format!(
                    "the modifier ':{modifier}' is not supported on '{code}'"
                )));
            }
            let code = TEXT_PARAMS
                .into_iter()
                .find(|c| *c == code)
                .unwrap_or("_content");
            let values = value::split_unescaped(value, ',')
                .iter()
                .map(|v| {
                    let w = index::words(v);
                    if w.is_empty() {
                        Err(bad(format!("{code} needs at least one word, not '{v}'")))
                    } else {
                        Ok(w)
                    }
                })
                .collect::<Result<Vec<_>, _>>()?;
            return Ok(Criterion::Text { code, values });
        }
        "_list" if !value.starts_with('$') => {
            let ids = value
                .split(',')
                .map(|s| Id::parse(s).map_err(|e| bad(format!("_list: {e}"))))
                .collect::<Result<Vec<_>, _>>()?;
            return Ok(Criterion::List(ids));
        }
        _ => {}
    }
    if let Some(rest) = name.strip_prefix("_has:") {
        // _has:Source:reference:rest
        let mut parts = rest.splitn(3, ':');
        let (Some(src), Some(code), Some(inner)) = (parts.next(), parts.next(), parts.next())
        else {
            return Err(bad(format!(
                "'{name}' is not _has:Type:reference:parameter"
            )));
        };
        let source = ResourceType::parse(src)
            .ok_or_else(|| bad(format!("_has: '{src}' is not a resource type")))?;
        let p = registry::param(source, code)
            .filter(|p| p.kind == ParamKind::Reference)
            .ok_or_else(|| {
                Refusal::Unsupported(format!("_has: {src} has no reference parameter '{code}'"))
            })?;
        if let Some(t) = ty
            && !p.targets.is_empty()
            && !p.targets.contains(&t)
        {
            return Err(bad(format!("_has: {src}.{code} cannot refer to {t}")));
        }
        let inner = criterion(Some(source), inner, value, depth + 1)?;
        return Ok(Criterion::Has {
            source,
            code: p.code,
            inner: Box::new(inner),
        });
    }
    let Some(ty) = ty else {
        return Err(Refusal::Unsupported(format!(
            "'{name}' cannot be searched across all types; use _type or a type's URL"
        )));
    };
    // Split a chain at the first '.', then the modifier at ':'.
    let (head, chain) = match name.split_once('.') {
        Some((h, c)) => (h, Some(c)),
        None => (name, None),
    };
    let (code, modifier) = head.split_once(':').unwrap_or((head, ""));
    let p = registry::param(ty, code)
        .ok_or_else(|| Refusal::Unsupported(format!("{ty} has no search parameter '{code}'")))?;
    if !p.is_searchable() {
        return Err(Refusal::Unsupported(format!(
            "the parameter '{code}' is not supported"
        )));
    }
    if let Some(chain) = chain {
        if p.kind != ParamKind::Reference {
            return Err(bad(format!(
                "'{code}' is not a reference, so it cannot be chained"
            )));
        }
        let targets: Vec<ResourceType> = match modifier {
            "" => p.targets.clone(),
            t => vec![
                ResourceType::parse(t)
                    .ok_or_else(|| bad(format!("'{t}' is not a resource type")))?,
            ],
        };
        let chained_code = chain.split([':', '.']).next().unwrap_or(chain);
        let usable: Vec<ResourceType> = targets
            .into_iter()
            .filter(|t| {
                chained_code == "_id"
                    || chained_code == "_lastUpdated"
                    || registry::param(*t, chained_code).is_some()
            })
            .collect();
        let Some(first) = usable.first().copied() else {
            return Err(Refusal::Unsupported(format!(
                "no target of '{code}' has a parameter '{chained_code}'"
            )));
        };
        // The inner criterion is parsed against one target; its kind is the
        // same on every target that defines the parameter.
        let inner = criterion(Some(first), chain, value, depth + 1)?;
        return Ok(Criterion::Chain {
            code: p.code,
            targets: usable,
            inner: Box::new(inner),
        });
    }
    if modifier == "missing" {
        let missing = match value {
            "true" => true,
            "false" => false,
            other => return Err(bad(format!(":missing takes true or false, not '{other}'"))),
        };
        return Ok(Criterion::Missing {
            code: p.code,
            kind: p.kind,
            missing,
        });
    }
    let modifier = Modifier::parse(p.kind, modifier).ok_or_else(|| {
        Refusal::Unsupported(format!(
            "the modifier ':{modifier}' is not supported on '{code}'"
        ))
    })?;
    // `:in`, `:not-in`, `:above` and `:below` on a token are parsed here and
    // expanded into codes by the store's engine, which has the terminology.
    let values = value::split_unescaped(value, ',')
        .iter()
        .map(|v| {
            if p.kind == ParamKind::Composite {
                composite_value(ty, p, v)
            } else {
                value::parse_value(p.kind, modifier, v).map_err(|e| format!("{code}: {e}"))
            }
        })
        .collect::<Result<Vec<_>, _>>()
        .map_err(Refusal::Invalid)?;
    if p.kind == ParamKind::Token {
        check_terminology_modifier(name, modifier, &values)?;
    }
    Ok(Criterion::Param {
        code: p.code,
        kind: p.kind,
        modifier,
        values,
    })
}

/// The code system whose hierarchy and implicit value sets the server knows.
const SNOMED: &str = "http://snomed.info/sct";

/// `:above`/`:below` on a token need SNOMED CT codes (`system|code`), and
/// `:in`/`:not-in` a SNOMED CT implicit value set (`http://snomed.info/sct?fhir_vs...`):
/// those are what the engine can expand; anything else is unsupported.
fn check_terminology_modifier(
    name: &str,
    modifier: Modifier,
    values: &[ParamValue],
) -> Result<(), Refusal> {
    let ok = |v: &ParamValue| match (modifier, v) {
        (Modifier::Above | Modifier::Below, ParamValue::Token { system, code }) => {
            system.as_deref() == Some(SNOMED) && code.is_some()
        }
        (Modifier::In | Modifier::NotIn, ParamValue::Uri(url)) => url
            .strip_prefix(SNOMED)
            .is_some_and(|rest| rest.starts_with("?fhir_vs")),
        (Modifier::Above | Modifier::Below | Modifier::In | Modifier::NotIn, _) => false,
        _ => true,
    };
    if values.iter().all(ok) {
        return Ok(());
    }
    Err(Refusal::Unsupported(match modifier {
        Modifier::In | Modifier::NotIn => format!(
            "'{name}': value sets here are SNOMED CT implicit ones ({SNOMED}?fhir_vs, ?fhir_vs=isa/X, ?fhir_vs=refset/X, ?fhir_vs=ecl/...)"
        ),
        _ => format!("'{name}': subsumption is supported for SNOMED CT codes ({SNOMED}|code) only"),
    }))
}

/// `a$b`: each part parsed as its component's type.
fn composite_value(ty: ResourceType, p: &SearchParam, raw: &str) -> Result<ParamValue, String> {
    let parts = value::split_unescaped(raw, '$');
    if parts.len() != p.components.len() {
        return Err(format!(
            "'{}' takes {} values joined by '$'",
            p.code,
            p.components.len()
        ));
    }
    let values = parts
        .iter()
        .zip(&p.components)
        .map(|(part, (url, _))| {
            let kind = registry::by_url(ty, url).map_or(ParamKind::Token, |c| c.kind);
            value::parse_value(kind, Modifier::None, part)
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(ParamValue::Composite(values))
}

#[cfg(test)]
mod tests;
