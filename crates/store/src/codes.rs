//! Token search modifiers that need the terminology (search.html#modifiers):
//! `:below` and `:above` (the code and its descendants, or its ancestors, by
//! SNOMED CT subsumption) and `:in` and `:not-in` (membership of a SNOMED CT
//! implicit value set: `?fhir_vs`, `?fhir_vs=isa/X`, `?fhir_vs=refset/X`,
//! `?fhir_vs=ecl/...`). The engine expands each into a plain list of codes
//! ([`ParamValue::Codes`]) before a backend sees the query, so the SQL
//! builder needs no terminology; `:not-in` becomes `:not` over the list.
//! An expansion larger than the bound is refused with a 400 that says so,
//! rather than sent to the database as an enormous statement.

use gp_fhir::IssueType;
use gp_fhir::search::{Criterion, Modifier, ParamKind, ParamValue};
use gp_terminology::valueset::implicit;
use gp_terminology::{Index, SNOMED_URI, SctId};

use crate::StoreError;

/// The most codes one criterion may expand to.
pub const MAX_CODES: usize = 10_000;

fn bad(msg: String) -> StoreError {
    StoreError::bad_request(IssueType::Invalid, msg)
}

/// Expands every terminology modifier in `criteria` (chains and `_has`
/// included) against `index`, at most `limit` codes per criterion.
pub(crate) fn expand(
    index: Option<&Index>,
    criteria: &mut [Criterion],
    limit: usize,
) -> Result<(), StoreError> {
    for c in criteria {
        match c {
            Criterion::Chain { inner, .. } | Criterion::Has { inner, .. } => {
                expand(index, std::slice::from_mut(inner.as_mut()), limit)?;
            }
            Criterion::All(all) => expand(index, all, limit)?,
            Criterion::Param {
                code,
                kind: ParamKind::Token,
                modifier,
                values,
            } if matches!(
                modifier,
                Modifier::Below | Modifier::Above | Modifier::In | Modifier::NotIn
            ) =>
            {
                let index = index.ok_or_else(|| {
                    StoreError::NotSupported(format!(
                        "'{code}:{}' needs a SNOMED CT release, and none is loaded",
                        name(*modifier)
                    ))
                })?;
                let codes = codes_of(index, code, *modifier, values, limit)?;
                *modifier = if *modifier == Modifier::NotIn {
                    Modifier::Not
                } else {
                    Modifier::None
                };
                *values = vec![ParamValue::Codes {
                    system: SNOMED_URI.to_owned(),
                    codes,
                }];
            }
            _ => {}
        }
    }
    Ok(())
}

fn name(m: Modifier) -> &'static str {
    match m {
        Modifier::Below => "below",
        Modifier::Above => "above",
        Modifier::In => "in",
        _ => "not-in",
    }
}

/// The codes one criterion's values stand for (ORed), ascending.
fn codes_of(
    index: &Index,
    param: &str,
    modifier: Modifier,
    values: &[ParamValue],
    limit: usize,
) -> Result<Vec<String>, StoreError> {
    let mut set = index.empty_set();
    // A code the release does not know still matches itself.
    let mut unknown: Vec<String> = Vec::new();
    for v in values {
        match (modifier, v) {
            (Modifier::Below | Modifier::Above, ParamValue::Token { code: Some(c), .. }) => {
                let id = SctId::parse(c)
                    .ok_or_else(|| bad(format!("'{c}' is not a SNOMED CT identifier")))?
                    .get();
                if !index.contains(id) {
                    unknown.push(c.clone());
                } else if modifier == Modifier::Below {
                    set = set.or(&index.descendants_or_self(id));
                } else {
                    set = set.or(&index.ancestors_or_self(id));
                }
            }
            (Modifier::In | Modifier::NotIn, ParamValue::Uri(url)) => {
                let vs = implicit(url)
                    .ok_or_else(|| bad(format!("'{url}' is not a SNOMED CT implicit value set")))?
                    .map_err(bad)?;
                let members = index
                    .expand_implicit(&vs)
                    .map_err(|e| bad(format!("'{url}': {e}")))?;
                set = set.or(&members);
            }
            (_, other) => {
                return Err(bad(format!(
                    "'{param}:{}' cannot take {other:?}",
                    name(modifier)
                )));
            }
        }
        let n = set.len() + unknown.len();
        if n > limit {
            return Err(bad(format!(
                "'{param}:{}' stands for {n} codes or more, over the {limit} a search may expand to; \
                 search by a narrower concept or value set",
                name(modifier)
            )));
        }
    }
    let mut codes: Vec<String> = index.ids_of(&set).map(|id| id.to_string()).collect();
    codes.extend(unknown);
    Ok(codes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use gp_fhir::ResourceType;
    use gp_fhir::search::{parse, parse_query_string};

    fn criteria(q: &str) -> Vec<Criterion> {
        criteria_of("Condition", q)
    }

    fn criteria_of(ty: &str, q: &str) -> Vec<Criterion> {
        parse(ResourceType::parse(ty), &parse_query_string(q), true)
            .unwrap_or_else(|e| panic!("{q}: {e:?}"))
            .criteria
    }

    fn codes(c: &[Criterion]) -> (Modifier, Vec<String>) {
        match c.first() {
            Some(Criterion::Param {
                modifier, values, ..
            }) => match values.as_slice() {
                [ParamValue::Codes { system, codes }] => {
                    assert_eq!(system, SNOMED_URI);
                    (*modifier, codes.clone())
                }
                other => panic!("{other:?}"),
            },
            other => panic!("{other:?}"),
        }
    }

    fn subset() -> Index {
        gp_terminology::subset::index().unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn modifiers_become_code_lists() {
        let index = subset();
        // search.html#modifiers, :below: 73211009 |Diabetes mellitus| and
        // what is below it, type 2 diabetes among them.
        let mut c = criteria("code:below=http://snomed.info/sct|73211009");
        expand(Some(&index), &mut c, MAX_CODES).unwrap_or_else(|e| panic!("{e}"));
        let (m, below) = codes(&c);
        assert_eq!(m, Modifier::None);
        assert!(below.contains(&"73211009".to_owned()));
        assert!(below.contains(&"44054006".to_owned()));
        // :above: type 2 diabetes and its ancestors, diabetes among them.
        let mut c = criteria("code:above=http://snomed.info/sct|44054006");
        expand(Some(&index), &mut c, MAX_CODES).unwrap_or_else(|e| panic!("{e}"));
        let (_, above) = codes(&c);
        assert!(above.contains(&"73211009".to_owned()), "{above:?}");
        assert!(!above.contains(&"46635009".to_owned()), "{above:?}");
        // :in an isa/ value set is :below; :not-in is :not over the list.
        let mut c = criteria("code:in=http://snomed.info/sct?fhir_vs=isa/73211009");
        expand(Some(&index), &mut c, MAX_CODES).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(codes(&c), (Modifier::None, below.clone()));
        let mut c = criteria("code:not-in=http://snomed.info/sct?fhir_vs=isa/73211009");
        expand(Some(&index), &mut c, MAX_CODES).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(codes(&c), (Modifier::Not, below));
        // A code the release does not know matches itself only.
        let mut c = criteria("code:below=http://snomed.info/sct|123456789006");
        expand(Some(&index), &mut c, MAX_CODES).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(codes(&c).1, vec!["123456789006".to_owned()]);
        // Reverse chains (and chains) are expanded too.
        let mut c = criteria_of(
            "Patient",
            "_has:Condition:subject:code:below=http://snomed.info/sct|73211009",
        );
        expand(Some(&index), &mut c, MAX_CODES).unwrap_or_else(|e| panic!("{e}"));
        assert!(!format!("{c:?}").contains("Below"), "{c:?}");
    }

    #[test]
    fn bad_or_oversized_expansions_are_400s() {
        let index = subset();
        for q in [
            "code:below=http://snomed.info/sct|12345",
            "code:in=http://snomed.info/sct?fhir_vs=ecl/<<",
            "code:in=http://snomed.info/sct?fhir_vs=nonsense",
        ] {
            let mut c = criteria(q);
            let e = expand(Some(&index), &mut c, MAX_CODES).err();
            assert!(matches!(e, Some(StoreError::BadRequest(_))), "{q}: {e:?}");
        }
        // The whole subset is about 2,000 concepts: over a bound of 100.
        let mut c = criteria("code:below=http://snomed.info/sct|138875005");
        match expand(Some(&index), &mut c, 100) {
            Err(StoreError::BadRequest(o)) => {
                let text = format!("{o:?}");
                assert!(text.contains("over the 100"), "{text}");
            }
            other => panic!("{other:?}"),
        }
        let mut c = criteria("code:below=http://snomed.info/sct|73211009");
        assert!(matches!(
            expand(None, &mut c, MAX_CODES),
            Err(StoreError::NotSupported(_))
        ));
    }
}
