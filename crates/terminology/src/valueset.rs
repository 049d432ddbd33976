//! SNOMED CT implicit value sets (FHIR R4 snomedct.html#implicit): a URL
//! `http://snomed.info/sct` (optionally with `/[module]/version/[date]`)
//! followed by `?fhir_vs`, `?fhir_vs=isa/[id]`, `?fhir_vs=refset`,
//! `?fhir_vs=refset/[id]` or `?fhir_vs=ecl/[expression]`.

use crate::ecl::EclError;
use crate::index::Index;
use crate::set::ConceptSet;

/// An implicit value set.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Implicit {
    /// Every concept.
    All,
    /// The concept and its descendants.
    IsA(u64),
    /// Every refset with members.
    Refsets,
    /// The active members of a refset.
    Refset(u64),
    Ecl(String),
}

/// Whether `url` names a SNOMED CT implicit value set: `None` if it is not
/// a SNOMED URL at all, an error if it is one this server cannot read.
pub fn implicit(url: &str) -> Option<Result<Implicit, String>> {
    let rest = url.strip_prefix(crate::SNOMED_URI)?;
    let (_, query) = rest.split_once('?')?;
    let vs = match query.strip_prefix("fhir_vs") {
        Some(v) => v,
        None => return Some(Err(format!("'{url}' has no fhir_vs part"))),
    };
    let id = |s: &str| -> Result<u64, String> {
        crate::SctId::parse(s)
            .map(crate::SctId::get)
            .ok_or_else(|| format!("'{s}' is not a SNOMED CT identifier"))
    };
    Some(match vs {
        "" => Ok(Implicit::All),
        "=refset" => Ok(Implicit::Refsets),
        v => match v.strip_prefix('=') {
            Some(v) => {
                if let Some(c) = v.strip_prefix("isa/") {
                    id(c).map(Implicit::IsA)
                } else if let Some(c) = v.strip_prefix("refset/") {
                    id(c).map(Implicit::Refset)
                } else if let Some(e) = v.strip_prefix("ecl/") {
                    Ok(Implicit::Ecl(percent_decode(e)))
                } else {
                    Err(format!(
                        "'{v}' is not an implicit value set this server knows (isa/, refset/, ecl/)"
                    ))
                }
            }
            None => Err(format!("'{url}' is not an implicit value set URL")),
        },
    })
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = |c: u8| (c as char).to_digit(16);
        match (
            b[i],
            b.get(i + 1).copied().and_then(hex),
            b.get(i + 2).copied().and_then(hex),
        ) {
            (b'%', Some(h), Some(l)) => {
                out.push((h * 16 + l) as u8);
                i += 3;
            }
            (b'+', _, _) => {
                out.push(b' ');
                i += 1;
            }
            (c, _, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

impl Index {
    /// The concepts of an implicit value set.
    pub fn expand_implicit(&self, vs: &Implicit) -> Result<ConceptSet, EclError> {
        Ok(match vs {
            Implicit::All => self.all(),
            Implicit::IsA(id) => self.descendants_or_self(*id),
            Implicit::Refsets => self.set_of(self.refset_ids()),
            Implicit::Refset(id) => self.refset(*id),
            Implicit::Ecl(e) => self.ecl(e)?,
        })
    }

    /// `expand(value set url) -> codes`, for the search engine's `:in`:
    /// `None` if the URL is not a SNOMED CT implicit value set.
    pub fn expand_url(&self, url: &str) -> Option<Result<ConceptSet, String>> {
        Some(implicit(url)?.and_then(|vs| self.expand_implicit(&vs).map_err(|e| e.to_string())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_implicit_value_set_urls() {
        let table = [
            ("http://snomed.info/sct?fhir_vs", Some(Ok(Implicit::All))),
            (
                "http://snomed.info/sct?fhir_vs=isa/73211009",
                Some(Ok(Implicit::IsA(73211009))),
            ),
            (
                "http://snomed.info/sct/999000011000000103/version/20240101?fhir_vs=refset/999001261000000100",
                Some(Ok(Implicit::Refset(999001261000000100))),
            ),
            (
                "http://snomed.info/sct?fhir_vs=refset",
                Some(Ok(Implicit::Refsets)),
            ),
            (
                "http://snomed.info/sct?fhir_vs=ecl/%3C%3C%2073211009",
                Some(Ok(Implicit::Ecl("<< 73211009".into()))),
            ),
            ("http://hl7.org/fhir/ValueSet/condition-code", None),
        ];
        for (url, want) in table {
            assert_eq!(implicit(url), want, "{url}");
        }
        assert!(matches!(
            implicit("http://snomed.info/sct?fhir_vs=isa/123"),
            Some(Err(_))
        ));
        assert!(matches!(
            implicit("http://snomed.info/sct?fhir_vs=foo"),
            Some(Err(_))
        ));
    }
}
