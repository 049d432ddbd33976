//! The R4 primitive types (http://hl7.org/fhir/R4/datatypes.html#primitive):
//! which JSON type each is written as (json.html#primitive), and the
//! regular expression its value must match.

use std::sync::LazyLock;

use regex::Regex;
use serde_json::Value;

const YEAR: &str = r"([0-9]([0-9]([0-9][1-9]|[1-9]0)|[1-9]00)|[1-9]000)";
const TIME: &str = r"([01][0-9]|2[0-3]):[0-5][0-9]:([0-5][0-9]|60)(\.[0-9]+)?";
const ZONE: &str = r"(Z|(\+|-)((0[0-9]|1[0-3]):[0-5][0-9]|14:00))";

struct Formats {
    id: Format,
    date: Format,
    date_time: Format,
    instant: Format,
    time: Format,
    code: Format,
    oid: Format,
    uuid: Format,
    base64: Format,
}

/// The patterns are constants (tested below); one that failed to compile
/// would accept everything rather than bring the server down.
struct Format(Option<Regex>);

impl Format {
    fn is_match(&self, s: &str) -> bool {
        self.0.as_ref().is_none_or(|r| r.is_match(s))
    }
}

fn anchored(re: &str) -> Format {
    Format(Regex::new(&format!("^(?:{re})$")).ok())
}

static FORMATS: LazyLock<Formats> = LazyLock::new(|| {
    let month = r"(0[1-9]|1[0-2])";
    let day = r"(0[1-9]|[1-2][0-9]|3[0-1])";
    Formats {
        id: anchored(r"[A-Za-z0-9\-\.]{1,64}"),
        date: anchored(&format!("{YEAR}(-{month}(-{day})?)?")),
        date_time: anchored(&format!("{YEAR}(-{month}(-{day}(T{TIME}{ZONE})?)?)?")),
        instant: anchored(&format!("{YEAR}-{month}-{day}T{TIME}{ZONE}")),
        time: anchored(TIME),
        // `\s` in the specification's (XML Schema) patterns is ASCII
        // whitespace; a no-break space is an ordinary character there.
        code: anchored(r"[^ \t\r\n]+( [^ \t\r\n]+)*"),
        oid: anchored(r"urn:oid:[0-2](\.(0|[1-9][0-9]*))+"),
        uuid: anchored(r"urn:uuid:[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"),
        base64: anchored(r"([ \t\r\n]*([0-9a-zA-Z\+/=]){4}[ \t\r\n]*)+"),
    }
});

/// Whether `code` names a primitive type.
pub fn is_primitive(code: &str) -> bool {
    matches!(
        code,
        "boolean"
            | "integer"
            | "positiveInt"
            | "unsignedInt"
            | "decimal"
            | "string"
            | "markdown"
            | "id"
            | "code"
            | "uri"
            | "url"
            | "canonical"
            | "oid"
            | "uuid"
            | "base64Binary"
            | "date"
            | "dateTime"
            | "instant"
            | "time"
            | "xhtml"
    )
}

/// Why `value` is not a valid `code` (a primitive type name), or `None`.
pub fn check(code: &str, value: &Value) -> Option<String> {
    match (code, value) {
        ("boolean", Value::Bool(_)) => None,
        ("boolean", _) => Some(format!("{value} is not a boolean (true or false)")),
        ("decimal", Value::Number(_)) => None,
        ("decimal", _) => Some(format!("{value} is not a decimal (a JSON number)")),
        ("integer" | "positiveInt" | "unsignedInt", Value::Number(n)) => {
            let Some(i) = n.as_i64().filter(|i| i32::try_from(*i).is_ok()) else {
                return Some(format!("{n} is not a 32-bit integer"));
            };
            match code {
                "positiveInt" if i < 1 => Some(format!("{i} is not a positiveInt (1 or more)")),
                "unsignedInt" if i < 0 => Some(format!("{i} is not an unsignedInt (0 or more)")),
                _ => None,
            }
        }
        ("integer" | "positiveInt" | "unsignedInt", _) => {
            Some(format!("{value} is not an {code} (a JSON number)"))
        }
        (_, Value::String(s)) => check_string(code, s),
        _ => Some(format!("{value} is not a {code} (a JSON string)")),
    }
}

fn check_string(code: &str, s: &str) -> Option<String> {
    if s.is_empty() {
        return Some(format!("an empty string is not a valid {code}"));
    }
    let f = &*FORMATS;
    let ok = match code {
        "id" => f.id.is_match(s),
        "date" => f.date.is_match(s),
        "dateTime" => f.date_time.is_match(s),
        "instant" => f.instant.is_match(s),
        "time" => f.time.is_match(s),
        "code" => f.code.is_match(s),
        "oid" => f.oid.is_match(s),
        "uuid" => f.uuid.is_match(s),
        "base64Binary" => f.base64.is_match(s),
        "uri" | "url" | "canonical" => !s.bytes().any(|b| b.is_ascii_whitespace()),
        "xhtml" => s.trim_start().starts_with("<div"),
        // string, markdown: no control characters but tab, CR and LF, and
        // not only whitespace (datatypes.html#string).
        _ => {
            if s.chars()
                .any(|c| c < ' ' && !matches!(c, '\t' | '\r' | '\n'))
            {
                return Some(format!("{s:?} holds control characters"));
            }
            !s.trim_matches(|c: char| c.is_ascii_whitespace()).is_empty()
        }
    };
    (!ok).then(|| format!("{s:?} is not a valid {code}"))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::check;

    /// datatypes.html#primitive: one valid and one invalid value per type.
    #[test]
    fn formats() {
        let cases = [
            ("id", json!("a-b.C1"), json!("a_b")),
            ("date", json!("2019-02"), json!("2019-02-30T10:00:00Z")),
            (
                "dateTime",
                json!("2019-02-03T10:00:00+01:00"),
                json!("2019-02-03T10:00"),
            ),
            (
                "instant",
                json!("2019-02-03T10:00:00.123Z"),
                json!("2019-02-03"),
            ),
            ("time", json!("23:59:60"), json!("24:00:00")),
            ("code", json!("a b"), json!(" a")),
            ("uri", json!("urn:x"), json!("a b")),
            ("oid", json!("urn:oid:1.2.3"), json!("urn:oid:1.02")),
            (
                "uuid",
                json!("urn:uuid:c757873d-ec9a-4326-a141-556f43239520"),
                json!("urn:uuid:X"),
            ),
            ("base64Binary", json!("aGVsbG8="), json!("a")),
            ("boolean", json!(true), json!("true")),
            ("integer", json!(-3), json!(1.5)),
            ("positiveInt", json!(1), json!(0)),
            ("unsignedInt", json!(0), json!(-1)),
            ("decimal", json!(1.5), json!("1.5")),
            ("string", json!("a\tb"), json!("  ")),
            ("markdown", json!("*x*"), json!("a\u{1}")),
        ];
        for (code, good, bad) in cases {
            assert_eq!(check(code, &good), None, "{code} {good}");
            assert!(check(code, &bad).is_some(), "{code} {bad}");
        }
        assert!(check("integer", &json!(3_000_000_000_i64)).is_some());
        assert_eq!(check("code", &json!("KIDN\u{a0}")), None);
        let f = &*super::FORMATS;
        for re in [
            &f.id,
            &f.date,
            &f.date_time,
            &f.instant,
            &f.time,
            &f.code,
            &f.oid,
            &f.uuid,
            &f.base64,
        ] {
            assert!(re.0.is_some());
        }
    }
}
