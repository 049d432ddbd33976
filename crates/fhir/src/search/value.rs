//! Search parameter values by type (search.html#ptypes), with their
//! prefixes (search.html#prefix), modifiers (search.html#modifiers) and
//! escaping (search.html#escaping).

use super::registry::ParamKind;
use crate::{DateRange, Instant, ResourceType};

/// A search prefix (search.html#prefix).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Prefix {
    Eq,
    Ne,
    Gt,
    Lt,
    Ge,
    Le,
    Sa,
    Eb,
    Ap,
}

const PREFIXES: [(&str, Prefix); 9] = [
    ("eq", Prefix::Eq),
    ("ne", Prefix::Ne),
    ("gt", Prefix::Gt),
    ("lt", Prefix::Lt),
    ("ge", Prefix::Ge),
    ("le", Prefix::Le),
    ("sa", Prefix::Sa),
    ("eb", Prefix::Eb),
    ("ap", Prefix::Ap),
];

/// Splits a leading prefix off a number, date or quantity value.
pub fn split_prefix(s: &str) -> (Prefix, &str) {
    PREFIXES
        .iter()
        .find_map(|(p, v)| {
            s.strip_prefix(p)
                .filter(|rest| {
                    rest.starts_with(|c: char| c.is_ascii_digit() || c == '-' || c == '.')
                })
                .map(|r| (*v, r))
        })
        .unwrap_or((Prefix::Eq, s))
}

/// A date criterion: a prefix and the range the value's precision implies.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DateCriterion {
    pub prefix: Prefix,
    pub range: DateRange,
}

impl DateCriterion {
    pub fn parse(s: &str) -> Result<Self, String> {
        let (prefix, rest) = split_prefix(s);
        let range = DateRange::parse(rest).map_err(|e| e.to_string())?;
        Ok(DateCriterion { prefix, range })
    }

    /// Whether a point in time (such as `meta.lastUpdated`) matches.
    /// A point is the range `[t, t+1ms)`, and the prefix semantics of
    /// search.html#prefix reduce to these comparisons.
    pub fn matches(&self, t: Instant) -> bool {
        let (low, high) = (self.range.low, self.range.high);
        match self.prefix {
            Prefix::Eq | Prefix::Ap => t >= low && t < high,
            Prefix::Ne => t < low || t >= high,
            Prefix::Gt | Prefix::Sa => t >= high,
            Prefix::Lt | Prefix::Eb => t < low,
            Prefix::Ge => t >= low,
            Prefix::Le => t < high,
        }
    }
}

/// A decimal search value with the implicit range of its precision:
/// `100` is `[99.5, 100.5)`, `100.00` is `[99.995, 100.005)`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct NumberCriterion {
    pub prefix: Prefix,
    pub value: f64,
    pub low: f64,
    pub high: f64,
}

impl NumberCriterion {
    pub fn parse(s: &str) -> Result<Self, String> {
        let (prefix, rest) = split_prefix(s);
        let value: f64 = rest
            .parse()
            .map_err(|_| format!("'{rest}' is not a number"))?;
        if !value.is_finite() {
            return Err(format!("'{rest}' is not a finite number"));
        }
        let (mantissa, exponent) = match rest.to_ascii_lowercase().split_once('e') {
            Some((m, e)) => (
                m.to_owned(),
                e.parse::<i32>()
                    .map_err(|_| format!("'{rest}' is not a number"))?,
            ),
            None => (rest.to_owned(), 0),
        };
        let decimals = mantissa.split_once('.').map_or(0, |(_, f)| f.len() as i32);
        let half = 0.5 * 10f64.powi(exponent - decimals);
        Ok(NumberCriterion {
            prefix,
            value,
            low: value - half,
            high: value + half,
        })
    }
}

/// A search modifier (search.html#modifiers).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Modifier {
    None,
    Exact,
    Contains,
    Text,
    Not,
    Above,
    Below,
    In,
    NotIn,
    OfType,
    Identifier,
    /// `:[type]` on a reference parameter.
    Type(ResourceType),
}

impl Modifier {
    /// The modifiers each parameter type accepts.
    pub fn parse(kind: ParamKind, s: &str) -> Option<Modifier> {
        use ParamKind as K;
        let m = match s {
            "" => Modifier::None,
            "exact" if kind == K::String => Modifier::Exact,
            "contains" if kind == K::String => Modifier::Contains,
            "text" if kind == K::Token => Modifier::Text,
            "not" if kind == K::Token => Modifier::Not,
            "above" if matches!(kind, K::Token | K::Uri | K::Reference) => Modifier::Above,
            "below" if matches!(kind, K::Token | K::Uri | K::Reference) => Modifier::Below,
            "in" if kind == K::Token => Modifier::In,
            "not-in" if kind == K::Token => Modifier::NotIn,
            "of-type" if kind == K::Token => Modifier::OfType,
            "identifier" if kind == K::Reference => Modifier::Identifier,
            t if kind == K::Reference => Modifier::Type(ResourceType::parse(t)?),
            _ => return None,
        };
        Some(m)
    }
}

/// One value of a criterion (values of a criterion are ORed).
#[derive(Clone, Debug, PartialEq)]
pub enum ParamValue {
    Number(NumberCriterion),
    Date(DateCriterion),
    /// Normalised (see [`normalize`]) unless the modifier is `:exact`.
    String(String),
    /// `system|code`: `system` `None` means any system, `Some("")` no system;
    /// `code` `None` means any code in the system.
    Token {
        system: Option<String>,
        code: Option<String>,
    },
    /// `:of-type`: an identifier's type (`system|code`) and its value.
    OfType {
        system: String,
        code: String,
        value: String,
    },
    /// A reference by type and id (relative), or by absolute URL.
    Reference {
        ty: Option<ResourceType>,
        id: Option<String>,
        url: Option<String>,
    },
    /// `:identifier`: `system|value`.
    Identifier {
        system: Option<String>,
        value: Option<String>,
    },
    Quantity {
        number: NumberCriterion,
        system: Option<String>,
        code: Option<String>,
    },
    Uri(String),
    Composite(Vec<ParamValue>),
    /// A token whose code is one of `codes` in `system`: what the store's
    /// engine makes of `:below`, `:above`, `:in` and `:not-in` on a token
    /// (subsumption and value sets need the terminology, which this crate
    /// does not have), so that the SQL never sees a modifier it would have
    /// to understand.
    Codes {
        system: String,
        codes: Vec<String>,
    },
}

/// Case- and accent-insensitive form of a string, for string search
/// (search.html#string: "ignoring case and accents").
pub fn normalize(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars().flat_map(char::to_lowercase) {
        out.push(fold_accent(c));
    }
    out.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The base letter of common Latin accented letters (enough for names and
/// places in UK records: é, ö, ñ, ç, ø, ł ...).
fn fold_accent(c: char) -> char {
    match c {
        'à' | 'á' | 'â' | 'ã' | 'ä' | 'å' | 'ā' | 'ă' | 'ą' => 'a',
        'ç' | 'ć' | 'č' => 'c',
        'ď' | 'đ' => 'd',
        'è' | 'é' | 'ê' | 'ë' | 'ē' | 'ė' | 'ę' | 'ě' => 'e',
        'ğ' | 'ģ' => 'g',
        'ì' | 'í' | 'î' | 'ï' | 'ī' | 'į' | 'ı' => 'i',
        'ķ' => 'k',
        'ĺ' | 'ļ' | 'ľ' | 'ł' => 'l',
        'ñ' | 'ń' | 'ņ' | 'ň' => 'n',
        'ò' | 'ó' | 'ô' | 'õ' | 'ö' | 'ø' | 'ō' | 'ő' => 'o',
        'ŕ' | 'ř' => 'r',
        'ś' | 'ş' | 'š' | 'ș' => 's',
        'ţ' | 'ť' | 'ț' => 't',
        'ù' | 'ú' | 'û' | 'ü' | 'ū' | 'ů' | 'ű' | 'ų' => 'u',
        'ý' | 'ÿ' => 'y',
        'ź' | 'ż' | 'ž' => 'z',
        other => other,
    }
}

/// Splits on `sep` where it is not escaped with a backslash.
pub fn split_unescaped(s: &str, sep: char) -> Vec<String> {
    let mut parts = vec![String::new()];
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                // Keep the escape for a later split; `unescape` removes it.
                if let Some(n) = chars.next()
                    && let Some(last) = parts.last_mut()
                {
                    last.push('\\');
                    last.push(n);
                }
            }
            c if c == sep => parts.push(String::new()),
            c => {
                if let Some(last) = parts.last_mut() {
                    last.push(c);
                }
            }
        }
    }
    parts
}

/// Removes escaping backslashes (`\,` `\|` `\$` `\\`).
pub fn unescape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            if let Some(n) = chars.next() {
                out.push(n);
            }
        } else {
            out.push(c);
        }
    }
    out
}

fn opt(s: &str) -> Option<String> {
    if s.is_empty() {
        None
    } else {
        Some(unescape(s))
    }
}

/// Parses one value of a parameter of `kind` under `modifier`.
pub fn parse_value(kind: ParamKind, modifier: Modifier, raw: &str) -> Result<ParamValue, String> {
    use ParamKind as K;
    Ok(match (kind, modifier) {
        (K::Number, _) => ParamValue::Number(NumberCriterion::parse(raw)?),
        (K::Date, _) => ParamValue::Date(DateCriterion::parse(raw)?),
        (K::String, Modifier::Exact) => ParamValue::String(unescape(raw)),
        (K::String, _) => ParamValue::String(normalize(&unescape(raw))),
        (K::Token, Modifier::Text) => ParamValue::String(normalize(&unescape(raw))),
        // search.html#modifiers: a value set's canonical URL.
        (K::Token, Modifier::In | Modifier::NotIn) => ParamValue::Uri(unescape(raw)),
        (K::Token, Modifier::OfType) => {
            let parts = split_unescaped(raw, '|');
            match parts.as_slice() {
                [s, c, v] if !c.is_empty() && !v.is_empty() => ParamValue::OfType {
                    system: unescape(s),
                    code: unescape(c),
                    value: unescape(v),
                },
                _ => return Err(format!("':of-type' takes system|code|value, not '{raw}'")),
            }
        }
        (K::Token, _) => {
            let parts = split_unescaped(raw, '|');
            match parts.as_slice() {
                [code] => ParamValue::Token {
                    system: None,
                    code: opt(code),
                },
                [system, code] => ParamValue::Token {
                    system: Some(unescape(system)),
                    code: opt(code),
                },
                _ => return Err(format!("'{raw}' is not a token (system|code)")),
            }
        }
        (K::Reference, Modifier::Identifier) => {
            let parts = split_unescaped(raw, '|');
            match parts.as_slice() {
                [value] => ParamValue::Identifier {
                    system: None,
                    value: opt(value),
                },
                [system, value] => ParamValue::Identifier {
                    system: opt(system),
                    value: opt(value),
                },
                _ => return Err(format!("'{raw}' is not an identifier (system|value)")),
            }
        }
        (K::Reference, m) => reference_value(&unescape(raw), m)?,
        (K::Quantity, _) => {
            let parts = split_unescaped(raw, '|');
            let number = NumberCriterion::parse(parts.first().map_or("", String::as_str))?;
            match parts.as_slice() {
                [_] => ParamValue::Quantity {
                    number,
                    system: None,
                    code: None,
                },
                [_, system, code] => ParamValue::Quantity {
                    number,
                    system: opt(system),
                    code: opt(code),
                },
                _ => return Err(format!("'{raw}' is not a quantity (number|system|code)")),
            }
        }
        (K::Uri, _) => ParamValue::Uri(unescape(raw)),
        (K::Composite, _) | (K::Special, _) => {
            return Err("composite and special values are parsed with their definition".into());
        }
    })
}

fn reference_value(s: &str, modifier: Modifier) -> Result<ParamValue, String> {
    let forced = match modifier {
        Modifier::Type(t) => Some(t),
        _ => None,
    };
    if s.contains("://") || s.starts_with("urn:") {
        // An absolute URL; a local one `[base]/Type/id` is matched by its
        // tail by the store, which knows the base.
        return Ok(ParamValue::Reference {
            ty: None,
            id: None,
            url: Some(s.to_owned()),
        });
    }
    let segs: Vec<&str> = s.split('/').collect();
    let (ty, id) = match segs.as_slice() {
        [id] => (forced, *id),
        [t, id] => (
            Some(ResourceType::parse(t).ok_or_else(|| format!("'{t}' is not a resource type"))?),
            *id,
        ),
        [t, id, "_history", _] => (
            Some(ResourceType::parse(t).ok_or_else(|| format!("'{t}' is not a resource type"))?),
            *id,
        ),
        _ => return Err(format!("'{s}' is not a reference")),
    };
    if let (Some(f), Some(t)) = (forced, ty)
        && f != t
    {
        return Err(format!("':{f}' contradicts the reference '{s}'"));
    }
    if id.is_empty() {
        return Err(format!("'{s}' has no id"));
    }
    Ok(ParamValue::Reference {
        ty,
        id: Some(id.to_owned()),
        url: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn number_ranges_follow_precision() {
        // search.html#number: the implicit range of significant figures.
        let cases = [
            ("100", 99.5, 100.5),
            ("100.00", 99.995, 100.005),
            ("1e2", 50.0, 150.0),
            ("0.1", 0.05, 0.15),
        ];
        for (s, low, high) in cases {
            let n = NumberCriterion::parse(s).unwrap_or_else(|e| panic!("{e}"));
            assert!(
                (n.low - low).abs() < 1e-9 && (n.high - high).abs() < 1e-9,
                "{s}: {n:?}"
            );
        }
        assert_eq!(
            NumberCriterion::parse("gt5").map(|n| n.prefix),
            Ok(Prefix::Gt)
        );
        assert!(NumberCriterion::parse("five").is_err());
        assert!(NumberCriterion::parse("NaN").is_err());
    }

    #[test]
    fn tokens_and_escapes() {
        let tok = |s: &str| parse_value(ParamKind::Token, Modifier::None, s);
        assert_eq!(
            tok("http://loinc.org|1234-5"),
            Ok(ParamValue::Token {
                system: Some("http://loinc.org".into()),
                code: Some("1234-5".into())
            })
        );
        assert_eq!(
            tok("|x"),
            Ok(ParamValue::Token {
                system: Some(String::new()),
                code: Some("x".into())
            })
        );
        assert_eq!(
            tok("sys|"),
            Ok(ParamValue::Token {
                system: Some("sys".into()),
                code: None
            })
        );
        assert_eq!(
            tok(r"a\|b"),
            Ok(ParamValue::Token {
                system: None,
                code: Some("a|b".into())
            })
        );
        assert_eq!(
            split_unescaped(r"a\,b,c", ','),
            vec![r"a\,b".to_owned(), "c".to_owned()]
        );
        assert!(tok("a|b|c").is_err());
    }

    #[test]
    fn strings_normalise_case_and_accents() {
        assert_eq!(normalize("  Zoë  ÓBrien "), "zoe obrien");
        assert_eq!(
            parse_value(ParamKind::String, Modifier::Exact, "Zoë"),
            Ok(ParamValue::String("Zoë".into()))
        );
    }

    #[test]
    fn references() {
        let r = |m, s: &str| parse_value(ParamKind::Reference, m, s);
        let pat = ResourceType::parse("Patient");
        assert_eq!(
            r(Modifier::None, "Patient/1"),
            Ok(ParamValue::Reference {
                ty: pat,
                id: Some("1".into()),
                url: None
            })
        );
        assert_eq!(
            r(Modifier::None, "1"),
            Ok(ParamValue::Reference {
                ty: None,
                id: Some("1".into()),
                url: None
            })
        );
        let typed = Modifier::Type(pat.unwrap_or_else(|| panic!("Patient")));
        assert_eq!(
            r(typed, "1"),
            Ok(ParamValue::Reference {
                ty: pat,
                id: Some("1".into()),
                url: None
            })
        );
        assert!(r(typed, "Group/1").is_err());
        assert!(r(Modifier::None, "Nope/1").is_err());
    }
}
