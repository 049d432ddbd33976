//! Validated identifiers: a resource type the specification defines and a
//! logical id of the form the specification allows (datatypes.html#id).

use std::fmt;

use crate::definitions;

/// A concrete (non-abstract) R4 resource type, such as `Patient`.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ResourceType(&'static str);

impl ResourceType {
    /// Parses a type name; `None` unless R4 defines it as a concrete resource.
    pub fn parse(name: &str) -> Option<Self> {
        definitions::resource_type(name).map(ResourceType)
    }

    pub fn as_str(&self) -> &'static str {
        self.0
    }

    /// Every concrete resource type, in alphabetical order.
    pub fn all() -> impl Iterator<Item = ResourceType> {
        definitions::resource_types()
            .iter()
            .map(|t| ResourceType(t))
    }
}

impl fmt::Display for ResourceType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }
}

impl fmt::Debug for ResourceType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }
}

/// A logical resource id: 1 to 64 characters of `A-Z a-z 0-9 - .`.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Id(String);

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("'{0}' is not a valid FHIR id (1 to 64 letters, digits, '-' or '.')")]
pub struct IdError(pub String);

impl Id {
    pub fn parse(s: &str) -> Result<Self, IdError> {
        let ok = !s.is_empty()
            && s.len() <= 64
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.');
        if ok {
            Ok(Id(s.to_owned()))
        } else {
            Err(IdError(s.to_owned()))
        }
    }

    /// A fresh server-assigned id: a random UUID, so that no id sequence is
    /// shared between practices or nodes.
    pub fn generate(uuid: impl fmt::Display) -> Self {
        Id(uuid.to_string())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Id {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Id {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.0)
    }
}

/// An ODS code: the national identifier of an organisation such as a
/// practice (`A81001`). Upper-case letters and digits, 3 to 10 characters.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Debug)]
pub struct OdsCode(String);

impl OdsCode {
    /// Parses a code, accepting lower case and normalising to upper case.
    pub fn parse(s: &str) -> Option<Self> {
        let ok = (3..=10).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_alphanumeric());
        ok.then(|| OdsCode(s.to_ascii_uppercase()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for OdsCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_follow_the_datatype_rule() {
        for ok in ["a", "example", "123", "a.b-c", &"x".repeat(64)] {
            assert!(Id::parse(ok).is_ok(), "{ok}");
        }
        for bad in ["", "a b", "a_b", "é", "a/b", &"x".repeat(65)] {
            assert!(Id::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn ods_codes() {
        assert_eq!(
            OdsCode::parse("a81001").map(|c| c.to_string()),
            Some("A81001".into())
        );
        for bad in ["", "A8", "A81-001", "A810011234567"] {
            assert!(OdsCode::parse(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn resource_types_are_the_concrete_r4_ones() {
        assert!(ResourceType::parse("Patient").is_some());
        assert!(ResourceType::parse("patient").is_none());
        assert!(ResourceType::parse("DomainResource").is_none());
        assert!(ResourceType::parse("HumanName").is_none());
        assert_eq!(ResourceType::all().count(), 146);
    }
}
