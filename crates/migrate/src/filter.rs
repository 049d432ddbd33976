//! `_typeFilter` decided on one version's own index entries: for a
//! resource changed since an export's `transactionTime`, whose index rows
//! in the store are its current version's, the filter is decided on the
//! entries of the version being exported, extracted in memory as the
//! writer extracts them (`gp_search::extract_json`). The comparisons are
//! those of the store's SQL (`gp_store_sql::value_sql`) for the criteria
//! a resource's own entries decide; [`undecidable`] names the others
//! (chains, `_has`, `_list`, full text, composites, terminology
//! modifiers), which an export refuses at kick-off rather than filter by
//! the current index.

use gp_fhir::Instant;
use gp_fhir::search::index::{IndexEntry, IndexValue};
use gp_fhir::search::{
    Criterion, DateCriterion, Modifier, NumberCriterion, ParamKind, ParamValue, Prefix,
};

/// The first criterion of `criteria` that a version's own entries cannot
/// decide, described for the client; `None` when every one can.
pub fn undecidable(criteria: &[Criterion]) -> Option<String> {
    criteria.iter().find_map(|c| match c {
        Criterion::Id(_) | Criterion::LastUpdated(_) => None,
        Criterion::Missing { kind, code, .. } => {
            (*kind == ParamKind::Composite).then(|| format!("'{code}:missing' on a composite"))
        }
        Criterion::Param {
            code,
            kind,
            modifier,
            values,
        } => {
            let plain = matches!(
                modifier,
                Modifier::None
                    | Modifier::Exact
                    | Modifier::Contains
                    | Modifier::Text
                    | Modifier::Not
                    | Modifier::Identifier
                    | Modifier::OfType
                    | Modifier::Type(_)
            ) || (*kind == ParamKind::Uri
                && matches!(modifier, Modifier::Above | Modifier::Below));
            let composite = *kind == ParamKind::Composite
                || values.iter().any(|v| matches!(v, ParamValue::Composite(_)));
            (!plain || composite).then(|| format!("'{code}' with {modifier:?} on a {kind:?}"))
        }
        Criterion::Chain { code, .. } => Some(format!("the chain '{code}.'")),
        Criterion::Has { .. } => Some("'_has'".to_owned()),
        Criterion::Text { code, .. } => Some(format!("'{code}'")),
        Criterion::List(_) => Some("'_list'".to_owned()),
        _ => Some("this criterion".to_owned()),
    })
}

/// Whether the version `id`, written at `last_updated`, with index
/// `entries`, matches every one of `criteria` (which [`undecidable`]
/// passed; any other criterion does not match).
pub fn matches(
    criteria: &[Criterion],
    id: &str,
    last_updated: Instant,
    entries: &[IndexEntry],
) -> bool {
    criteria.iter().all(|c| match c {
        Criterion::Id(ids) => ids.iter().any(|i| i.as_str() == id),
        Criterion::LastUpdated(dates) => dates.iter().any(|d| d.matches(last_updated)),
        Criterion::Missing { code, missing, .. } => {
            entries.iter().any(|e| e.code == *code) != *missing
        }
        Criterion::Param {
            code,
            kind,
            modifier,
            values,
        } => {
            let (code, kind) = if *modifier == Modifier::Identifier {
                (format!("{code}:identifier"), ParamKind::Token)
            } else {
                ((*code).to_owned(), *kind)
            };
            let found = entries.iter().filter(|e| e.code == code).any(|e| {
                values
                    .iter()
                    .any(|v| value_matches(kind, *modifier, v, e, entries))
            });
            found != (*modifier == Modifier::Not)
        }
        _ => false,
    })
}

/// One value against one entry of its parameter (`value_sql`).
fn value_matches(
    kind: ParamKind,
    modifier: Modifier,
    v: &ParamValue,
    e: &IndexEntry,
    entries: &[IndexEntry],
) -> bool {
    match (kind, v, &e.value) {
        (ParamKind::String, ParamValue::String(s), IndexValue::String { norm, exact }) => {
            match modifier {
                Modifier::Exact => exact == s,
                Modifier::Contains => norm.contains(s.as_str()),
                _ => norm.starts_with(s.as_str()),
            }
        }
        (ParamKind::Token, ParamValue::String(t), IndexValue::Token { text, .. }) => text
            .as_deref()
            .is_some_and(|x| x.starts_with(t.as_str()) || x.contains(&format!(" {t}"))),
        (ParamKind::Token, ParamValue::Token { system, code }, IndexValue::Token { .. })
        | (
            ParamKind::Token,
            ParamValue::Identifier {
                system,
                value: code,
            },
            IndexValue::Token { .. },
        ) => token_matches(e, system.as_deref(), code.as_deref()),
        (ParamKind::Token, ParamValue::Codes { system, codes }, IndexValue::Token { .. }) => codes
            .iter()
            .any(|c| token_matches(e, Some(system), Some(c))),
        (
            ParamKind::Token,
            ParamValue::OfType {
                system,
                code,
                value,
            },
            IndexValue::Token { .. },
        ) => {
            // The identifier's value, and its type in the same element.
            let of_type = format!("{}:type", e.code);
            token_matches(e, None, Some(value))
                && entries.iter().any(|t| {
                    t.code == of_type
                        && t.group == e.group
                        && token_matches(t, Some(system), Some(code))
                })
        }
        (ParamKind::Date, ParamValue::Date(d), IndexValue::Date { low, high }) => {
            date_matches(d, *low, *high)
        }
        (ParamKind::Number, ParamValue::Number(n), IndexValue::Number { value }) => {
            number_matches(n, *value, &|v| v)
        }
        (
            ParamKind::Quantity,
            ParamValue::Quantity {
                number,
                system,
                code,
            },
            IndexValue::Quantity {
                value,
                system: vs,
                code: vc,
                canonical,
            },
        ) => {
            // A UCUM value is compared in canonical units.
            if system.as_deref() == Some(gp_fhir::ucum::SYSTEM)
                && let Some(c) = code
                && let Some(conv) = gp_fhir::ucum::conversion(c)
                && conv.factor > 0.0
            {
                return canonical.as_ref().is_some_and(|(cv, cc)| {
                    *cc == conv.code && number_matches(number, *cv, &|v| conv.apply(v))
                });
            }
            number_matches(number, *value, &|v| v)
                && code.as_ref().is_none_or(|c| vc.as_ref() == Some(c))
                && system.as_ref().is_none_or(|s| vs.as_ref() == Some(s))
        }
        (
            ParamKind::Reference,
            ParamValue::Reference { ty, id, url },
            IndexValue::Reference {
                target_type,
                target_id,
                url: vu,
            },
        ) => {
            (ty.is_some() || id.is_some() || url.is_some())
                && ty.is_none_or(|t| target_type.as_deref() == Some(t.as_str()))
                && id.as_ref().is_none_or(|i| target_id.as_ref() == Some(i))
                && url.as_ref().is_none_or(|u| vu.as_ref() == Some(u))
        }
        (ParamKind::Uri, ParamValue::Uri(u), IndexValue::Uri(vu)) => match modifier {
            Modifier::Below => vu.starts_with(u.as_str()),
            Modifier::Above => u.starts_with(vu.as_str()),
            _ => vu == u,
        },
        _ => false,
    }
}

/// `system|code` against a token entry: `system` `None` is any system,
/// `Some("")` none; `code` `None` any code.
fn token_matches(e: &IndexEntry, system: Option<&str>, code: Option<&str>) -> bool {
    let IndexValue::Token {
        system: es,
        code: ec,
        ..
    } = &e.value
    else {
        return false;
    };
    code.is_none_or(|c| ec.as_deref() == Some(c))
        && match system {
            None => true,
            Some("") => es.is_none(),
            Some(s) => es.as_deref() == Some(s),
        }
}

/// search.html#date: the entry's range `[low, high)` against the value's.
fn date_matches(d: &DateCriterion, low: i64, high: i64) -> bool {
    let (pl, ph) = (d.range.low.millis(), d.range.high.millis());
    let within = low >= pl && low <= ph && high <= ph;
    match d.prefix {
        Prefix::Eq => within,
        Prefix::Ne => !within,
        Prefix::Gt => high > ph,
        Prefix::Lt => low < pl,
        Prefix::Ge => high > ph || within,
        Prefix::Le => low < pl || within,
        Prefix::Sa => low >= ph,
        Prefix::Eb => high <= pl,
        Prefix::Ap => low < ph && high > pl,
    }
}

/// search.html#number, each bound passed through `to` (the conversion to
/// the entry's units).
fn number_matches(n: &NumberCriterion, v: f64, to: &dyn Fn(f64) -> f64) -> bool {
    match n.prefix {
        Prefix::Eq => v >= to(n.low) && v < to(n.high),
        Prefix::Ne => v < to(n.low) || v >= to(n.high),
        Prefix::Gt | Prefix::Sa => v > to(n.value),
        Prefix::Lt | Prefix::Eb => v < to(n.value),
        Prefix::Ge => v >= to(n.value),
        Prefix::Le => v <= to(n.value),
        Prefix::Ap => {
            let margin = (n.value * 0.1).abs();
            v >= to(n.value - margin) && v <= to(n.value + margin)
        }
    }
}
