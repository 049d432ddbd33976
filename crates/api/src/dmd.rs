//! dm+d through the FHIR terminology operations (code system
//! `https://dmd.nhs.uk`):
//!
//! - `CodeSystem/$lookup?system=https://dmd.nhs.uk&code=ID`: the product's
//!   name as display, its kind (`VTM` ... `AMPP`), `inactive` (dm+d's
//!   `INVALID`), the products above (`parent`) and below (`child`: a VMP's
//!   AMPs and VMPPs), and every attribute of the release by its element name
//!   (`DFORM/FORMCD`, `DROUTE/ROUTECD`, `CONTROL_INFO/CATCD`, `SUPPCD` ...)
//!   with the lookup's description where there is one.
//! - `ValueSet/$expand` over value sets of dm+d kinds, OpenGP's own
//!   convention modelled on SNOMED CT's implicit value sets (dm+d defines
//!   none): `https://dmd.nhs.uk?fhir_vs` is every product, and
//!   `https://dmd.nhs.uk?fhir_vs=vmp-amp` every VMP and AMP, what a
//!   prescriber picks from; any kinds joined by `-` work (`=vtm`, `=vmpp-ampp`).
//!   `filter` is name search (generic products first, then brands, then
//!   packs; shorter names first).
//! - `$validate-code` on `CodeSystem` (`system` or `url` dm+d) and on those
//!   value sets: whether the id is a product (of the value set's kinds),
//!   not withdrawn, and `display` its name.

use axum::http::StatusCode;
use gp_fhir::IssueType;
use gp_terminology::dmd::{DMD_URI, DmdIndex, DmdQuery, Kind, Product, lookup_table};
use serde_json::{Value, json};

use crate::AppState;
use crate::call::Call;
use crate::error::ApiError;
use crate::terminology::{Params, answer, boolean, number};

type Res = Result<axum::response::Response, ApiError>;

/// A dm+d release in memory.
pub struct LoadedDmd {
    /// The release's name, reported as the code system version.
    pub release: String,
    pub index: DmdIndex,
}

fn loaded(st: &AppState) -> Result<std::sync::Arc<LoadedDmd>, ApiError> {
    st.terminology.get_dmd().ok_or_else(|| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            IssueType::Transient,
            "no dm+d release is loaded yet",
        )
    })
}

/// The kinds a dm+d value set URL names, or `None` if it is not one.
pub fn value_set_kinds(url: &str) -> Option<Result<Vec<Kind>, String>> {
    let rest = url.strip_prefix(DMD_URI)?.strip_prefix("?fhir_vs")?;
    if rest.is_empty() {
        return Some(Ok(Vec::new()));
    }
    let list = rest.strip_prefix('=')?;
    Some(
        list.split('-')
            .map(|k| {
                Kind::parse(k).ok_or_else(|| {
                    format!("'{k}' is not a dm+d kind (vtm, vmp, amp, vmpp, ampp) in '{url}'")
                })
            })
            .collect(),
    )
}

/// `$lookup` for a dm+d code.
pub(crate) fn lookup(st: &AppState, call: &Call, p: &Params) -> Res {
    let raw = p
        .get("code")
        .ok_or_else(|| ApiError::bad_request("the 'code' parameter is required"))?;
    let id: u64 = raw
        .parse()
        .map_err(|_| ApiError::bad_request(format!("'{raw}' is not a dm+d identifier")))?;
    let t = loaded(st)?;
    let product = t.index.product(id).ok_or_else(|| {
        ApiError::not_found(format!("{id} is not a product of the loaded dm+d release"))
    })?;
    let property = |code: &str, value: Value, description: Option<&str>| {
        let mut part = vec![json!({"name": "code", "valueCode": code}), value];
        if let Some(d) = description {
            part.push(json!({"name": "description", "valueString": d}));
        }
        json!({"name": "property", "part": part})
    };
    let mut params = vec![
        json!({"name": "name", "valueString": "dm+d"}),
        json!({"name": "version", "valueString": t.release}),
        json!({"name": "display", "valueString": product.name}),
        property(
            "kind",
            json!({"name": "value", "valueCode": product.kind.code()}),
            None,
        ),
        property(
            "inactive",
            json!({"name": "value", "valueBoolean": product.invalid}),
            None,
        ),
    ];
    for up in [product.parent, product.amp].into_iter().flatten() {
        let name = t.index.product(up).map(|p| p.name.as_str());
        params.push(property(
            "parent",
            json!({"name": "value", "valueCode": up.to_string()}),
            name,
        ));
    }
    for kind in Kind::ALL {
        for below in t.index.below(id, kind) {
            params.push(property(
                "child",
                json!({"name": "value", "valueCode": below.id.to_string()}),
                Some(&below.name),
            ));
        }
    }
    for (name, value) in &product.attributes {
        let description = lookup_table(name).and_then(|table| t.index.describe(table, value));
        params.push(property(
            name,
            json!({"name": "value", "valueString": value}),
            description,
        ));
    }
    Ok(answer(
        call,
        json!({"resourceType": "Parameters", "parameter": params}),
    ))
}

/// `$validate-code` for a dm+d code, on the code system or on a dm+d value
/// set (`https://dmd.nhs.uk?fhir_vs=vmp-amp` ...): `result` false, with a
/// message, for an id that is not a product, a withdrawn product
/// (`INVALID`), a product of a kind the value set leaves out, or a
/// `display` that is not its name.
pub(crate) fn validate(st: &AppState, call: &Call, p: &Params, on_code_system: bool) -> Res {
    let kinds = if on_code_system {
        Vec::new()
    } else {
        let url = p
            .get("url")
            .ok_or_else(|| ApiError::bad_request("the 'url' parameter is required"))?;
        value_set_kinds(url)
            .ok_or_else(|| {
                ApiError::not_found(format!("'{url}' is not a dm+d value set this server knows"))
            })?
            .map_err(ApiError::bad_request)?
    };
    let raw = p
        .get("code")
        .ok_or_else(|| ApiError::bad_request("the 'code' parameter is required"))?;
    let t = loaded(st)?;
    let product = raw.parse::<u64>().ok().and_then(|id| t.index.product(id));
    let message = match product {
        None => Some(format!(
            "'{raw}' is not a product of the loaded dm+d release"
        )),
        Some(pr) if pr.invalid => Some(format!("{raw} ({}) is withdrawn", pr.name)),
        Some(pr) if !kinds.is_empty() && !kinds.contains(&pr.kind) => Some(format!(
            "{raw} ({}) is a {}, which the value set leaves out",
            pr.name,
            pr.kind.code()
        )),
        Some(pr) => p
            .get("display")
            .filter(|d| !d.trim().eq_ignore_ascii_case(&pr.name))
            .map(|d| format!("'{d}' is not the name of {raw} ({})", pr.name)),
    };
    Ok(crate::terminology::validation(
        call,
        message.is_none(),
        message,
        product.map(|pr| pr.name.as_str()),
    ))
}

/// `$expand` of a dm+d value set, with `filter` as name search.
pub(crate) fn expand(st: &AppState, call: &Call, p: &Params) -> Res {
    let url = p.get("url").unwrap_or_default();
    let kinds = value_set_kinds(url)
        .ok_or_else(|| {
            ApiError::not_found(format!(
                "'{url}' is not a dm+d value set this server knows ({DMD_URI}?fhir_vs, {DMD_URI}?fhir_vs=vmp-amp, ...)"
            ))
        })?
        .map_err(ApiError::bad_request)?;
    let count = number(p, "count", 100, 1000)?;
    let offset = number(p, "offset", 0, usize::MAX)?;
    let active_only = boolean(p, "activeOnly", true)?;
    let t = loaded(st)?;
    let entry = |product: &Product| {
        let mut e =
            json!({"system": DMD_URI, "code": product.id.to_string(), "display": product.name});
        if product.invalid {
            e["inactive"] = json!(true);
        }
        e
    };
    let (contains, total): (Vec<Value>, Option<usize>) = match p.get("filter") {
        Some(filter) if !filter.trim().is_empty() => {
            let hits = t.index.search(&DmdQuery {
                text: filter,
                kinds: &kinds,
                limit: count,
                offset,
                include_invalid: !active_only,
            });
            let total = (hits.len() < count).then_some(offset + hits.len());
            (hits.iter().map(|h| entry(h)).collect(), total)
        }
        _ => {
            let all: Vec<&Product> = t
                .index
                .all(&kinds)
                .filter(|p| !active_only || !p.invalid)
                .collect();
            let page = all.iter().skip(offset).take(count).map(|p| entry(p));
            (page.collect(), Some(all.len()))
        }
    };
    let mut expansion = json!({
        "identifier": format!("urn:uuid:{}", uuid::Uuid::new_v4()),
        "timestamp": gp_fhir::Instant::now().to_string(),
        "offset": offset,
        "parameter": [{"name": "version", "valueUri": format!("{DMD_URI}|{}", t.release)}],
        "contains": contains,
    });
    if let Some(total) = total {
        expansion["total"] = json!(total);
    }
    Ok(answer(
        call,
        json!({"resourceType": "ValueSet", "url": url, "status": "active", "expansion": expansion}),
    ))
}

#[cfg(test)]
mod tests {
    use super::value_set_kinds;
    use gp_terminology::dmd::Kind;

    /// What a URL should give: not a dm+d value set, an error, or kinds.
    type Expected = Option<Result<Vec<Kind>, ()>>;

    #[test]
    fn dmd_value_set_urls_name_kinds() {
        let cases: &[(&str, Expected)] = &[
            ("https://dmd.nhs.uk?fhir_vs", Some(Ok(vec![]))),
            (
                "https://dmd.nhs.uk?fhir_vs=vmp-amp",
                Some(Ok(vec![Kind::Vmp, Kind::Amp])),
            ),
            ("https://dmd.nhs.uk?fhir_vs=VTM", Some(Ok(vec![Kind::Vtm]))),
            ("https://dmd.nhs.uk?fhir_vs=vmp-pill", Some(Err(()))),
            ("https://dmd.nhs.uk", None),
            ("https://dmd.nhs.uk?fhir_vsx", None),
            ("http://snomed.info/sct?fhir_vs", None),
        ];
        for (url, expected) in cases {
            let got = value_set_kinds(url).map(|r| r.map_err(|_| ()));
            assert_eq!(&got, expected, "{url}");
        }
    }
}
