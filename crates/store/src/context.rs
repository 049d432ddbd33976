//! Who is acting, and for which practice.

use gp_fhir::OdsCode;

/// A practice (the tenant). Obtained only from a backend, so that its
/// storage key is always one the backend issued.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Practice {
    /// The backend's key for the practice; every stored row carries it.
    pub key: i64,
    pub ods: OdsCode,
    pub name: String,
}

/// The user (or system component) on whose behalf a call is made. Recorded
/// on every version written, for the audit trail.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Actor {
    id: String,
}

impl Actor {
    pub fn new(id: impl Into<String>) -> Self {
        Actor { id: id.into() }
    }

    /// The server itself, for work no user asked for (start-up, demo data).
    pub fn system() -> Self {
        Actor::new("system")
    }

    pub fn id(&self) -> &str {
        &self.id
    }
}

/// The context every storage call carries: there is no way to reach a
/// practice's data without one.
#[derive(Clone, Debug)]
pub struct Ctx {
    pub practice: Practice,
    pub actor: Actor,
}

impl Ctx {
    pub fn new(practice: Practice, actor: Actor) -> Self {
        Ctx { practice, actor }
    }
}
