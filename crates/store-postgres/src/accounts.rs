//! Staff accounts, sessions and the practice's access policy. Every
//! statement binds the practice key as `$1`.

use gp_fhir::Instant;
use gp_store::access::{Grant, Holder};
use gp_store::accounts::{SessionRecord, UserRecord};
use gp_store::smart::{AppRecord, TokenRecord};
use gp_store::{AccountsRead, AccountsWrite, StoreError};
use postgres::Row;

use crate::conn::{db_err, is_unique_violation};
use crate::scoped::Scoped;
use crate::write::ScopedWrite;

/// Schema migration 6. New tables only: nothing running is locked.
pub(crate) const MIGRATION: &str = "
    CREATE TABLE app_user (
        practice bigint NOT NULL,
        id text NOT NULL,
        username text NOT NULL,
        name text NOT NULL,
        password_hash text NOT NULL,
        roles text NOT NULL,
        practitioner text,
        failed integer NOT NULL,
        locked_until bigint,
        PRIMARY KEY (practice, id),
        UNIQUE (practice, username)
    );
    -- Sessions by the SHA-256 of their token; the token itself is never stored.
    CREATE TABLE app_session (
        practice bigint NOT NULL,
        token_hash text NOT NULL,
        user_id text NOT NULL,
        role text NOT NULL,
        created_at bigint NOT NULL,
        expires_at bigint NOT NULL,
        revoked boolean NOT NULL,
        PRIMARY KEY (practice, token_hash)
    );
    CREATE INDEX app_session_by_user ON app_session (practice, user_id);
    CREATE TABLE access_policy (
        practice bigint PRIMARY KEY,
        body text NOT NULL
    );";

/// Schema migration 8: restricted entries and break-glass grants
/// (access.rs), as SQLite's migration 9. Adding a nullable column without
/// a default does not rewrite the table; [`backfill_restricted`] marks
/// what was stored before.
pub(crate) const RESTRICTED_MIGRATION: &str = "
    ALTER TABLE resource_current ADD COLUMN restricted text;
    CREATE TABLE break_glass (
        practice bigint NOT NULL,
        user_id text NOT NULL,
        patient text NOT NULL,
        reason text NOT NULL,
        granted_at bigint NOT NULL,
        expires bigint NOT NULL
    );
    CREATE INDEX break_glass_by_user ON break_glass (practice, user_id, patient, expires);
    CREATE INDEX resource_current_restricted ON resource_current (practice, restricted)
        WHERE restricted IS NOT NULL;";

/// Marks the restricted current versions stored before migration 8, in
/// the migration's transaction, practice by practice.
pub(crate) fn backfill_restricted(conn: &mut crate::conn::Conn) -> Result<(), postgres::Error> {
    let practices: Vec<i64> = conn
        .query("SELECT key FROM practice", &[])?
        .iter()
        .map(|r| r.try_get(0))
        .collect::<Result<_, _>>()?;
    for practice in practices {
        let rows = conn.query(
            "SELECT c.type, c.id, v.body FROM resource_current c
             JOIN resource_version v ON v.practice = $1 AND v.type = c.type AND v.id = c.id AND v.version = c.version
             WHERE c.practice = $1 AND NOT c.deleted AND position('v3-Confidentiality'::bytea IN v.body) > 0",
            &[&practice],
        )?;
        for r in rows {
            let (ty, id, body): (String, String, Vec<u8>) =
                (r.try_get(0)?, r.try_get(1)?, r.try_get(2)?);
            let restricted = gp_fhir::ResourceType::parse(&ty)
                .and_then(|t| gp_store::access::restriction(t, &id, &body));
            if restricted.is_some() {
                conn.execute(
                    "UPDATE resource_current SET restricted = $4 WHERE practice = $1 AND type = $2 AND id = $3",
                    &[&practice, &ty, &id, &restricted],
                )?;
            }
        }
    }
    Ok(())
}

const USER_COLUMNS: &str =
    "id, username, name, password_hash, roles, practitioner, failed, locked_until, disabled";

fn user_row(r: &Row) -> Result<UserRecord, StoreError> {
    let roles: String = r.try_get(4).map_err(db_err)?;
    Ok(UserRecord {
        id: r.try_get(0).map_err(db_err)?,
        username: r.try_get(1).map_err(db_err)?,
        name: r.try_get(2).map_err(db_err)?,
        password_hash: r.try_get(3).map_err(db_err)?,
        roles: roles.split_whitespace().map(str::to_owned).collect(),
        practitioner: r.try_get(5).map_err(db_err)?,
        failed: r.try_get::<_, i32>(6).map_err(db_err)? as u32,
        locked_until: r
            .try_get::<_, Option<i64>>(7)
            .map_err(db_err)?
            .map(Instant::from_millis),
        disabled: r.try_get(8).map_err(db_err)?,
    })
}

impl AccountsRead for Scoped<'_> {
    fn user_named(&mut self, username: &str) -> Result<Option<UserRecord>, StoreError> {
        let sql =
            format!("SELECT {USER_COLUMNS} FROM app_user WHERE practice = $1 AND username = $2");
        let row = self
            .conn
            .query_opt(&sql, &[&self.practice, &username])
            .map_err(db_err)?;
        row.as_ref().map(user_row).transpose()
    }

    fn user_by_id(&mut self, id: &str) -> Result<Option<UserRecord>, StoreError> {
        let sql = format!("SELECT {USER_COLUMNS} FROM app_user WHERE practice = $1 AND id = $2");
        let row = self
            .conn
            .query_opt(&sql, &[&self.practice, &id])
            .map_err(db_err)?;
        row.as_ref().map(user_row).transpose()
    }

    fn users(&mut self) -> Result<Vec<UserRecord>, StoreError> {
        let sql =
            format!("SELECT {USER_COLUMNS} FROM app_user WHERE practice = $1 ORDER BY username");
        let rows = self.conn.query(&sql, &[&self.practice]).map_err(db_err)?;
        rows.iter().map(user_row).collect()
    }

    fn session(&mut self, token_hash: &str) -> Result<Option<SessionRecord>, StoreError> {
        let row = self
            .conn
            .query_opt(
                "SELECT token_hash, user_id, role, created_at, expires_at, revoked, roles
                 FROM app_session WHERE practice = $1 AND token_hash = $2",
                &[&self.practice, &token_hash],
            )
            .map_err(db_err)?;
        let Some(r) = row else { return Ok(None) };
        Ok(Some(SessionRecord {
            token_hash: r.try_get(0).map_err(db_err)?,
            user_id: r.try_get(1).map_err(db_err)?,
            role: r.try_get(2).map_err(db_err)?,
            created: Instant::from_millis(r.try_get(3).map_err(db_err)?),
            expires: Instant::from_millis(r.try_get(4).map_err(db_err)?),
            revoked: r.try_get(5).map_err(db_err)?,
            roles: r
                .try_get::<_, Option<String>>(6)
                .map_err(db_err)?
                .map(|t| t.split_whitespace().map(str::to_owned).collect()),
        }))
    }

    fn policy(&mut self) -> Result<Option<String>, StoreError> {
        let row = self
            .conn
            .query_opt(
                "SELECT body FROM access_policy WHERE practice = $1",
                &[&self.practice],
            )
            .map_err(db_err)?;
        row.map(|r| r.try_get(0).map_err(db_err)).transpose()
    }

    fn grants(&mut self, holder: &Holder, now: Instant) -> Result<Vec<Grant>, StoreError> {
        let rows = self
            .conn
            .query(
                "SELECT patient, reason, expires FROM break_glass
                 WHERE practice = $1 AND user_id = $2 AND session = $3 AND expires > $4
                 ORDER BY expires",
                &[
                    &self.practice,
                    &holder.user_id,
                    &holder.session,
                    &now.millis(),
                ],
            )
            .map_err(db_err)?;
        rows.iter()
            .map(|r| {
                Ok(Grant {
                    user_id: holder.user_id.clone(),
                    session: holder.session.clone(),
                    patient: r.try_get(0).map_err(db_err)?,
                    reason: r.try_get(1).map_err(db_err)?,
                    expires: Instant::from_millis(r.try_get(2).map_err(db_err)?),
                })
            })
            .collect()
    }
    fn app(&mut self, client_id: &str) -> Result<Option<AppRecord>, StoreError> {
        self.smart_app(client_id)
    }
    fn apps(&mut self) -> Result<Vec<AppRecord>, StoreError> {
        self.smart_apps()
    }
    fn token(&mut self, token_hash: &str) -> Result<Option<TokenRecord>, StoreError> {
        self.smart_token(token_hash)
    }
}

impl AccountsRead for ScopedWrite<'_> {
    fn user_named(&mut self, username: &str) -> Result<Option<UserRecord>, StoreError> {
        self.read.user_named(username)
    }
    fn user_by_id(&mut self, id: &str) -> Result<Option<UserRecord>, StoreError> {
        self.read.user_by_id(id)
    }
    fn users(&mut self) -> Result<Vec<UserRecord>, StoreError> {
        self.read.users()
    }
    fn session(&mut self, token_hash: &str) -> Result<Option<SessionRecord>, StoreError> {
        self.read.session(token_hash)
    }
    fn policy(&mut self) -> Result<Option<String>, StoreError> {
        self.read.policy()
    }
    fn grants(&mut self, holder: &Holder, now: Instant) -> Result<Vec<Grant>, StoreError> {
        self.flush()?;
        self.read.grants(holder, now)
    }
    fn app(&mut self, client_id: &str) -> Result<Option<AppRecord>, StoreError> {
        self.read.smart_app(client_id)
    }
    fn apps(&mut self) -> Result<Vec<AppRecord>, StoreError> {
        self.read.smart_apps()
    }
    fn token(&mut self, token_hash: &str) -> Result<Option<TokenRecord>, StoreError> {
        self.read.smart_token(token_hash)
    }
}

impl AccountsWrite for ScopedWrite<'_> {
    fn put_user(&mut self, u: &UserRecord) -> Result<(), StoreError> {
        let sql = format!(
            "INSERT INTO app_user (practice, {USER_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
             ON CONFLICT (practice, id) DO UPDATE SET username = excluded.username,
               name = excluded.name, password_hash = excluded.password_hash,
               roles = excluded.roles, practitioner = excluded.practitioner,
               failed = excluded.failed, locked_until = excluded.locked_until,
               disabled = excluded.disabled"
        );
        let roles = u.roles.join(" ");
        let failed = u.failed as i32;
        let locked = u.locked_until.map(Instant::millis);
        self.read
            .conn
            .execute(
                &sql,
                &[
                    &self.read.practice,
                    &u.id,
                    &u.username,
                    &u.name,
                    &u.password_hash,
                    &roles,
                    &u.practitioner,
                    &failed,
                    &locked,
                    &u.disabled,
                ],
            )
            .map(drop)
            .map_err(|e| {
                if is_unique_violation(&e) {
                    StoreError::Conflict(format!(
                        "the practice already has a user '{}'",
                        u.username
                    ))
                } else {
                    db_err(e)
                }
            })
    }

    fn put_session(&mut self, s: &SessionRecord) -> Result<(), StoreError> {
        self.read
            .conn
            .execute(
                "INSERT INTO app_session (practice, token_hash, user_id, role, created_at, expires_at, revoked, roles)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
                &[
                    &self.read.practice,
                    &s.token_hash,
                    &s.user_id,
                    &s.role,
                    &s.created.millis(),
                    &s.expires.millis(),
                    &s.revoked,
                    &s.roles.as_ref().map(|r| r.join(" ")),
                ],
            )
            .map(drop)
            .map_err(db_err)
    }

    fn revoke_sessions(&mut self, user_id: &str, only: Option<&str>) -> Result<(), StoreError> {
        self.read
            .conn
            .execute(
                "UPDATE app_session SET revoked = true
                 WHERE practice = $1 AND user_id = $2 AND ($3::text IS NULL OR token_hash = $3)",
                &[&self.read.practice, &user_id, &only],
            )
            .map(drop)
            .map_err(db_err)
    }

    fn put_policy(&mut self, policy: &str) -> Result<(), StoreError> {
        self.read
            .conn
            .execute(
                "INSERT INTO access_policy (practice, body) VALUES ($1, $2)
                 ON CONFLICT (practice) DO UPDATE SET body = excluded.body",
                &[&self.read.practice, &policy],
            )
            .map(drop)
            .map_err(db_err)
    }

    fn put_grant(&mut self, g: &Grant) -> Result<(), StoreError> {
        self.read
            .conn
            .execute(
                "INSERT INTO break_glass (practice, user_id, session, patient, reason, granted_at, expires)
                 VALUES ($1, $2, $3, $4, $5, $6, $7)",
                &[
                    &self.read.practice,
                    &g.user_id,
                    &g.session,
                    &g.patient,
                    &g.reason,
                    &Instant::now().millis(),
                    &g.expires.millis(),
                ],
            )
            .map(drop)
            .map_err(db_err)
    }
    fn put_app(&mut self, app: &AppRecord) -> Result<(), StoreError> {
        self.read.put_smart_app(app)
    }
    fn put_token(&mut self, token: &TokenRecord) -> Result<(), StoreError> {
        self.read.put_smart_token(token)
    }
    fn revoke_tokens(&mut self, grant_id: &str) -> Result<(), StoreError> {
        self.read
            .revoke_smart(gp_store_sql::Revoke::Grant, grant_id)
    }
    fn revoke_user_tokens(&mut self, user_id: &str) -> Result<(), StoreError> {
        self.read.revoke_smart(gp_store_sql::Revoke::User, user_id)
    }
    fn revoke_app_tokens(&mut self, client_id: &str) -> Result<(), StoreError> {
        self.read.revoke_smart(gp_store_sql::Revoke::App, client_id)
    }
}
