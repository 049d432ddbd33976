//! Who is acting, and for which practice.

use gp_fhir::OdsCode;

use crate::StoreError;
use crate::access::{Access, Activities, Activity, Holder, Sees, SignedIn};
use crate::online::Online;
use crate::smart::{AppGrant, Op, Reach};

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
/// practice's data without one. The engine checks `access` on every
/// interaction.
#[derive(Clone, Debug)]
pub struct Ctx {
    pub practice: Practice,
    pub actor: Actor,
    pub access: Access,
    /// Where the request came from (the client's network address), when
    /// the HTTP layer knows it; recorded in the audit trail.
    pub address: Option<std::sync::Arc<str>>,
    /// What a SMART app was granted, when the request comes from one: the
    /// engine narrows every interaction to its scopes.
    pub grant: Option<std::sync::Arc<AppGrant>>,
    /// Whom a patient account acts for, when the request comes from one
    /// (online.rs): the engine confines it to that patient's record.
    pub online: Option<std::sync::Arc<Online>>,
}

impl Ctx {
    /// The server's or a console operator's context, with every activity
    /// (demo seeding, migration, the `opengp` commands). The HTTP API
    /// never builds one: its requests come with [`Ctx::signed_in`].
    pub fn new(practice: Practice, actor: Actor) -> Self {
        Ctx {
            practice,
            actor,
            access: Access::operator(),
            address: None,
            grant: None,
            online: None,
        }
    }

    /// Nobody: a request that needs no sign-in (the CapabilityStatement).
    /// It allows no activity.
    pub fn anonymous(practice: Practice) -> Self {
        Ctx {
            practice,
            actor: Actor::new("anonymous"),
            access: Access {
                user: None,
                activities: Activities::default(),
            },
            address: None,
            grant: None,
            online: None,
        }
    }

    /// A signed-in user's context, with what their role allows.
    pub fn signed_in(practice: Practice, user: SignedIn, activities: Activities) -> Self {
        Ctx {
            practice,
            actor: Actor::new(user.username.clone()),
            access: Access {
                user: Some(std::sync::Arc::new(user)),
                activities,
            },
            address: None,
            grant: None,
            online: None,
        }
    }

    /// The same context, for a request from `address`.
    pub fn from_address(mut self, address: Option<String>) -> Self {
        self.address = address.map(std::sync::Arc::from);
        self
    }

    /// Refuses (403) unless the role allows `activity`.
    pub fn require(&self, activity: Activity) -> Result<(), StoreError> {
        if self.access.activities.contains(activity) {
            return Ok(());
        }
        let role = self
            .access
            .user
            .as_ref()
            .map_or("this context", |u| u.role.as_str());
        Err(StoreError::Forbidden(format!(
            "the role {role} does not allow the activity '{}'",
            activity.code()
        )))
    }

    /// Which restricted entries this context sees (access.rs): all with
    /// the view-restricted activity, else the unrestricted ones and those
    /// of patients the user broke the glass for (view-record roles only).
    pub fn sees(&self) -> Sees {
        if self.online.is_some() {
            return Sees::Online;
        }
        if self.allows(Activity::ViewRestricted) {
            return Sees::All;
        }
        Sees::Unrestricted {
            holder: self
                .access
                .user
                .as_ref()
                .filter(|_| self.allows(Activity::ViewRecord))
                .map(|u| Holder {
                    user_id: u.user_id.clone(),
                    session: u.session.clone(),
                }),
            now: gp_fhir::Instant::now(),
        }
    }

    /// How far `op` on `ty` reaches under the app's scopes (anywhere
    /// without an app); 403 when they do not allow it.
    pub fn reach(&self, ty: Option<gp_fhir::ResourceType>, op: Op) -> Result<Reach, StoreError> {
        if let Some(online) = &self.online {
            return online.reach(op);
        }
        match &self.grant {
            Some(g) => g.reach(ty, op),
            None => Ok(Reach::Any),
        }
    }

    /// The search parameters an app's v2 query-restricted scopes confine
    /// `op` on `ty` to (`None` without an app or a restriction).
    pub fn scope_query(
        &self,
        ty: Option<gp_fhir::ResourceType>,
        op: Op,
    ) -> Result<Option<Vec<(String, String)>>, StoreError> {
        match &self.grant {
            Some(g) => g.scope_query(ty, op),
            None => Ok(None),
        }
    }

    /// When the context stops being valid: its session's or token's end.
    pub fn expires(&self) -> Option<gp_fhir::Instant> {
        let user = self.access.user.as_ref().map(|u| u.expires);
        let app = self.grant.as_ref().map(|g| g.expires);
        match (user, app) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Whether the role allows `activity`.
    pub fn allows(&self, activity: Activity) -> bool {
        self.access.activities.contains(activity)
    }
}
