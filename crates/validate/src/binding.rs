//! Required bindings (http://hl7.org/fhir/R4/terminologies.html#required):
//! a coded value must come from the bound value set. Only value sets the
//! specification enumerates are checked; `gp_fhir::definitions::value_set_codes`
//! answers `Some(None)` for the few it cannot (UCUM units, MIME types and a
//! LOINC answer list), which pass unchecked.

use serde_json::Value;

use gp_fhir::definitions::value_set_codes;

/// Why `value`, of type `code` (`code`, `Coding`, `CodeableConcept`,
/// `string`, `uri`), is not in `value_set`; `None` when it is, or when the
/// value set is not enumerable here.
pub fn check(value_set: &str, code: &str, value: &Value) -> Option<String> {
    let codes = value_set_codes(value_set).flatten()?;
    let in_set = |system: Option<&str>, c: &str| match system {
        Some(s) => codes
            .get(s)
            .is_some_and(|list| list.binary_search_by(|x| x.as_str().cmp(c)).is_ok()),
        None => codes
            .values()
            .any(|list| list.binary_search_by(|x| x.as_str().cmp(c)).is_ok()),
    };
    let vs = value_set.split('|').next().unwrap_or(value_set);
    match code {
        "code" | "string" | "uri" => {
            let c = value.as_str()?;
            (!in_set(None, c))
                .then(|| format!("'{c}' is not a code of the required value set {vs}"))
        }
        "Coding" => {
            let c = value.get("code")?.as_str()?;
            let system = value.get("system").and_then(Value::as_str);
            (!in_set(system, c)).then(|| {
                format!(
                    "{}'{c}' is not a code of the required value set {vs}",
                    system.map(|s| format!("{s}|")).unwrap_or_default()
                )
            })
        }
        "CodeableConcept" => {
            // Text alone says nothing checkable; codings, if any, must
            // include one from the value set.
            let codings = value.get("coding")?.as_array()?;
            let coded: Vec<(Option<&str>, &str)> = codings
                .iter()
                .filter_map(|c| {
                    Some((
                        c.get("system").and_then(Value::as_str),
                        c.get("code")?.as_str()?,
                    ))
                })
                .collect();
            (!coded.is_empty() && !coded.iter().any(|(s, c)| in_set(*s, c)))
                .then(|| format!("no coding is from the required value set {vs}"))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::check;

    const GENDER: &str = "http://hl7.org/fhir/ValueSet/administrative-gender|4.0.1";

    #[test]
    fn codes_codings_and_concepts() {
        assert_eq!(check(GENDER, "code", &json!("female")), None);
        assert!(check(GENDER, "code", &json!("femme")).is_some());
        let sys = "http://hl7.org/fhir/administrative-gender";
        assert_eq!(
            check(GENDER, "Coding", &json!({"system": sys, "code": "male"})),
            None
        );
        assert!(check(GENDER, "Coding", &json!({"system": "x", "code": "male"})).is_some());
        let cc =
            json!({"coding": [{"system": "x", "code": "y"}, {"system": sys, "code": "other"}]});
        assert_eq!(check(GENDER, "CodeableConcept", &cc), None);
        assert!(
            check(
                GENDER,
                "CodeableConcept",
                &json!({"coding": [{"code": "y"}]})
            )
            .is_some()
        );
        assert_eq!(
            check(GENDER, "CodeableConcept", &json!({"text": "f"})),
            None
        );
        // Not enumerable: never rejected.
        assert_eq!(
            check(
                "http://hl7.org/fhir/ValueSet/ucum-units",
                "code",
                &json!("zz")
            ),
            None
        );
    }
}
