//! Profiles (http://hl7.org/fhir/R4/profiling.html): a resource naming a
//! profile in `meta.profile` claims to conform to it, and the server checks
//! the claim for every profile it knows, by canonical URL. Today it knows
//! the base definitions (`http://hl7.org/fhir/StructureDefinition/Patient`,
//! whose rules every resource is checked against anyway); UK Core
//! profiles will register here. A profile the server does not know is
//! reported as a warning: the claim cannot be checked, but it is not wrong.

use std::collections::HashMap;
use std::sync::LazyLock;

use gp_fhir::outcome::Issue;
use gp_fhir::{IssueType, Severity};
use serde_json::Value;

/// Rules a profile adds to the base definition of its type.
pub trait Profile: Send + Sync {
    /// The resource type the profile constrains.
    fn resource_type(&self) -> &str;
    /// Adds the profile's issues with `resource` (already checked against
    /// the base definition) to `issues`; `location` is the resource's.
    fn check(&self, resource: &Value, location: &str, issues: &mut Vec<Issue>);
}

/// The base definition of a resource type as a profile: nothing beyond
/// what the walk checks for every resource.
struct Base(&'static str);

impl Profile for Base {
    fn resource_type(&self) -> &str {
        self.0
    }

    fn check(&self, _: &Value, _: &str, _: &mut Vec<Issue>) {}
}

/// The profiles a validator knows, by canonical URL.
pub struct Profiles {
    by_url: HashMap<String, Box<dyn Profile>>,
}

pub(crate) static BASE: LazyLock<Profiles> = LazyLock::new(Profiles::base);

impl Profiles {
    /// The base definition of every R4 resource type.
    pub fn base() -> Self {
        let by_url = gp_fhir::definitions::resource_types()
            .iter()
            .map(|t| {
                let p: Box<dyn Profile> = Box::new(Base(t));
                (format!("http://hl7.org/fhir/StructureDefinition/{t}"), p)
            })
            .collect();
        Profiles { by_url }
    }

    /// Adds (or replaces) the profile at canonical `url`.
    pub fn register(&mut self, url: impl Into<String>, profile: Box<dyn Profile>) {
        self.by_url.insert(url.into(), profile);
    }

    /// Validates `resource` against its base definition and every profile
    /// it names in `meta.profile`.
    pub fn validate(&self, resource: &Value) -> Vec<Issue> {
        let mut issues = crate::walk::validate(resource);
        let ty = resource
            .get("resourceType")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let profiles = resource
            .get("meta")
            .and_then(|m| m.get("profile"))
            .and_then(Value::as_array);
        for (i, url) in profiles.into_iter().flatten().enumerate() {
            let Some(url) = url.as_str() else { continue };
            let location = format!("{ty}.meta.profile[{i}]");
            // A canonical may carry a version (`|4.0.1`).
            let key = url.split('|').next().unwrap_or(url);
            match self.by_url.get(key) {
                Some(p) if p.resource_type() != ty => issues.push(crate::error(
                    IssueType::Invalid,
                    &location,
                    format!("profile {url} is for {}, not {ty}", p.resource_type()),
                )),
                Some(p) => p.check(resource, ty, &mut issues),
                None => issues.push(crate::issue(
                    Severity::Warning,
                    IssueType::NotSupported,
                    &location,
                    format!("profile {url} is not known to this server; not checked"),
                )),
            }
        }
        issues
    }
}
