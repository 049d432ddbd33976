//! What a request URL (relative to a practice's FHIR base) addresses, as
//! http.html lays out its interactions.

use gp_fhir::{Id, IssueType, ResourceType};

use crate::StoreError;

/// The target of an interaction.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    /// `[base]` or `[base]?query`.
    System { query: Vec<(String, String)> },
    /// `[base]/[type]` or `[base]/[type]?query`.
    Type {
        ty: ResourceType,
        query: Vec<(String, String)>,
    },
    /// `[base]/[type]/[id]`.
    Instance { ty: ResourceType, id: Id },
    /// `[base]/[type]/[id]/_history/[vid]`.
    Version {
        ty: ResourceType,
        id: Id,
        version: u64,
    },
    /// `[base]/_history`, `[base]/[type]/_history`, `[base]/[type]/[id]/_history`.
    History {
        ty: Option<ResourceType>,
        id: Option<Id>,
        query: Vec<(String, String)>,
    },
}

impl Target {
    /// Parses a relative URL such as `Patient/1/_history/2` or
    /// `Observation?_id=a`. An absolute URL must start with `base`.
    pub fn parse(url: &str, base: &str) -> Result<Target, StoreError> {
        let url = url
            .strip_prefix(base)
            .unwrap_or(url)
            .trim_start_matches('/');
        let (path, query) = url.split_once('?').unwrap_or((url, ""));
        let query = gp_fhir::search::parse_query_string(query);
        let segs: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
        let ty = |s: &str| {
            ResourceType::parse(s).ok_or_else(|| {
                StoreError::NotFound(format!("'{s}' is not a resource type this server knows"))
            })
        };
        let id = |s: &str| {
            Id::parse(s).map_err(|e| StoreError::bad_request(IssueType::Invalid, e.to_string()))
        };
        if segs.iter().any(|s| s.starts_with('$')) {
            return Err(StoreError::NotSupported(format!(
                "the operation in '{path}' is not supported"
            )));
        }
        Ok(match segs.as_slice() {
            [] => Target::System { query },
            ["_history"] => Target::History {
                ty: None,
                id: None,
                query,
            },
            [t] => Target::Type { ty: ty(t)?, query },
            [t, "_history"] => Target::History {
                ty: Some(ty(t)?),
                id: None,
                query,
            },
            [t, i] => Target::Instance {
                ty: ty(t)?,
                id: id(i)?,
            },
            [t, i, "_history"] => Target::History {
                ty: Some(ty(t)?),
                id: Some(id(i)?),
                query,
            },
            [t, i, "_history", v] => Target::Version {
                ty: ty(t)?,
                id: id(i)?,
                version: v
                    .parse()
                    .map_err(|_| StoreError::NotFound(format!("'{v}' is not a version id")))?,
            },
            _ => {
                return Err(StoreError::bad_request(
                    IssueType::Invalid,
                    format!("'{url}' is not a FHIR request URL"),
                ));
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_map_to_interaction_targets() {
        let base = "http://h/practices/A81001/fhir";
        let t = |u: &str| Target::parse(u, base);
        assert!(matches!(t("Patient"), Ok(Target::Type { .. })));
        assert!(matches!(t("/Patient/1"), Ok(Target::Instance { .. })));
        assert!(matches!(
            t("http://h/practices/A81001/fhir/Patient/1/_history/3"),
            Ok(Target::Version { version: 3, .. })
        ));
        assert!(matches!(
            t("Patient/_history"),
            Ok(Target::History { id: None, .. })
        ));
        assert!(matches!(
            t("_history"),
            Ok(Target::History { ty: None, .. })
        ));
        assert!(
            matches!(t("Patient?_id=a%2Cb"), Ok(Target::Type { ref query, .. }) if query[0].1 == "a,b")
        );
        assert!(matches!(t("Nope/1"), Err(StoreError::NotFound(_))));
        assert!(matches!(t("Patient/a b"), Err(StoreError::BadRequest(_))));
        assert!(matches!(
            t("Patient/$everything"),
            Err(StoreError::NotSupported(_))
        ));
        assert!(matches!(
            t("Patient/1/x/y/z"),
            Err(StoreError::BadRequest(_))
        ));
    }
}
