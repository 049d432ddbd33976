//! Staff accounts, sessions and the practice's access policy. Every
//! statement binds the practice key as `?1`.

use gp_fhir::Instant;
use gp_store::access::{Grant, Holder};
use gp_store::accounts::{SessionRecord, UserRecord};
use gp_store::smart::{AppRecord, TokenRecord};
use gp_store::{AccountsRead, AccountsWrite, StoreError};
use rusqlite::{OptionalExtension, params};

use crate::db_err;
use crate::scoped::{Scoped, ScopedWrite};

/// Schema migration 7.
pub(crate) const MIGRATION: &str = "
    CREATE TABLE app_user (
        practice INTEGER NOT NULL REFERENCES practice(key),
        id TEXT NOT NULL,
        username TEXT NOT NULL,
        name TEXT NOT NULL,
        password_hash TEXT NOT NULL,
        roles TEXT NOT NULL,
        practitioner TEXT,
        failed INTEGER NOT NULL,
        locked_until INTEGER,
        PRIMARY KEY (practice, id),
        UNIQUE (practice, username)
    );
    -- Sessions by the SHA-256 of their token; the token itself is never stored.
    CREATE TABLE app_session (
        practice INTEGER NOT NULL REFERENCES practice(key),
        token_hash TEXT NOT NULL,
        user_id TEXT NOT NULL,
        role TEXT NOT NULL,
        created_at INTEGER NOT NULL,
        expires_at INTEGER NOT NULL,
        revoked INTEGER NOT NULL,
        PRIMARY KEY (practice, token_hash)
    );
    CREATE INDEX app_session_by_user ON app_session (practice, user_id);
    CREATE TABLE access_policy (
        practice INTEGER PRIMARY KEY REFERENCES practice(key),
        body TEXT NOT NULL
    );";

/// Schema migration 9: restricted entries and break-glass grants
/// (access.rs). `resource_current.restricted` is the patient a restricted
/// current version belongs to (`''` for none), NULL when it is not
/// restricted; [`backfill_restricted`] marks what was stored before.
pub(crate) const RESTRICTED_MIGRATION: &str = "
    ALTER TABLE resource_current ADD COLUMN restricted TEXT;
    CREATE TABLE break_glass (
        practice INTEGER NOT NULL REFERENCES practice(key),
        user_id TEXT NOT NULL,
        patient TEXT NOT NULL,
        reason TEXT NOT NULL,
        granted_at INTEGER NOT NULL,
        expires INTEGER NOT NULL
    );
    CREATE INDEX break_glass_by_user ON break_glass (practice, user_id, patient, expires);
    CREATE INDEX resource_current_restricted ON resource_current (practice, restricted)
        WHERE restricted IS NOT NULL;";

/// Marks the restricted current versions stored before migration 9.
pub(crate) fn backfill_restricted(conn: &rusqlite::Connection) -> Result<(), StoreError> {
    let found: Vec<(i64, String, String, Option<String>)> = {
        let mut s = conn
            .prepare(
                "SELECT c.practice, c.type, c.id, v.body FROM resource_current c
                 JOIN resource_version v ON v.rowid = c.vrow
                 WHERE NOT c.deleted AND instr(v.body, CAST('v3-Confidentiality' AS BLOB)) > 0",
            )
            .map_err(db_err)?;
        let rows = s
            .query_map([], |r| {
                let (ty, id): (String, String) = (r.get(1)?, r.get(2)?);
                let body: Vec<u8> = r.get(3)?;
                let restricted = gp_fhir::ResourceType::parse(&ty)
                    .and_then(|t| gp_store::access::restriction(t, &id, &body));
                Ok((r.get(0)?, ty, id, restricted))
            })
            .map_err(db_err)?;
        rows.collect::<Result<_, _>>().map_err(db_err)?
    };
    for (practice, ty, id, restricted) in found.into_iter().filter(|f| f.3.is_some()) {
        conn.execute(
            "UPDATE resource_current SET restricted = ?4 WHERE practice = ?1 AND type = ?2 AND id = ?3",
            params![practice, ty, id, restricted],
        )
        .map_err(db_err)?;
    }
    Ok(())
}

fn grant_rows(
    s: &mut rusqlite::CachedStatement<'_>,
    practice: i64,
    holder: &Holder,
    now: Instant,
) -> Result<Vec<Grant>, StoreError> {
    let rows = s
        .query_map(
            params![practice, holder.user_id, holder.session, now.millis()],
            |r| {
                Ok(Grant {
                    user_id: holder.user_id.clone(),
                    session: holder.session.clone(),
                    patient: r.get(0)?,
                    reason: r.get(1)?,
                    expires: Instant::from_millis(r.get(2)?),
                })
            },
        )
        .map_err(db_err)?;
    rows.collect::<Result<_, _>>().map_err(db_err)
}

const USER_COLUMNS: &str =
    "id, username, name, password_hash, roles, practitioner, failed, locked_until, disabled";

fn user_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<UserRecord> {
    let roles: String = r.get(4)?;
    Ok(UserRecord {
        id: r.get(0)?,
        username: r.get(1)?,
        name: r.get(2)?,
        password_hash: r.get(3)?,
        roles: roles.split_whitespace().map(str::to_owned).collect(),
        practitioner: r.get(5)?,
        failed: r.get::<_, i64>(6)? as u32,
        locked_until: r.get::<_, Option<i64>>(7)?.map(Instant::from_millis),
        disabled: r.get(8)?,
    })
}

impl AccountsRead for Scoped<'_> {
    fn user_named(&mut self, username: &str) -> Result<Option<UserRecord>, StoreError> {
        self.conn
            .prepare_cached(&format!(
                "SELECT {USER_COLUMNS} FROM app_user WHERE practice = ?1 AND username = ?2"
            ))
            .and_then(|mut s| {
                s.query_row(params![self.practice, username], user_row)
                    .optional()
            })
            .map_err(db_err)
    }

    fn user_by_id(&mut self, id: &str) -> Result<Option<UserRecord>, StoreError> {
        self.conn
            .prepare_cached(&format!(
                "SELECT {USER_COLUMNS} FROM app_user WHERE practice = ?1 AND id = ?2"
            ))
            .and_then(|mut s| s.query_row(params![self.practice, id], user_row).optional())
            .map_err(db_err)
    }

    fn users(&mut self) -> Result<Vec<UserRecord>, StoreError> {
        let mut s = self
            .conn
            .prepare_cached(&format!(
                "SELECT {USER_COLUMNS} FROM app_user WHERE practice = ?1 ORDER BY username"
            ))
            .map_err(db_err)?;
        let rows = s
            .query_map(params![self.practice], user_row)
            .map_err(db_err)?;
        rows.collect::<Result<Vec<_>, _>>().map_err(db_err)
    }

    fn session(&mut self, token_hash: &str) -> Result<Option<SessionRecord>, StoreError> {
        self.conn
            .prepare_cached(
                "SELECT token_hash, user_id, role, created_at, expires_at, revoked, roles
                 FROM app_session WHERE practice = ?1 AND token_hash = ?2",
            )
            .and_then(|mut s| {
                s.query_row(params![self.practice, token_hash], |r| {
                    Ok(SessionRecord {
                        token_hash: r.get(0)?,
                        user_id: r.get(1)?,
                        role: r.get(2)?,
                        created: Instant::from_millis(r.get(3)?),
                        expires: Instant::from_millis(r.get(4)?),
                        revoked: r.get::<_, i64>(5)? != 0,
                        roles: r
                            .get::<_, Option<String>>(6)?
                            .map(|t| t.split_whitespace().map(str::to_owned).collect()),
                    })
                })
                .optional()
            })
            .map_err(db_err)
    }

    fn policy(&mut self) -> Result<Option<String>, StoreError> {
        self.conn
            .prepare_cached("SELECT body FROM access_policy WHERE practice = ?1")
            .and_then(|mut s| s.query_row(params![self.practice], |r| r.get(0)).optional())
            .map_err(db_err)
    }

    fn grants(&mut self, holder: &Holder, now: Instant) -> Result<Vec<Grant>, StoreError> {
        let mut s = self
            .conn
            .prepare_cached(
                "SELECT patient, reason, expires FROM break_glass
                 WHERE practice = ?1 AND user_id = ?2 AND session = ?3 AND expires > ?4
                 ORDER BY expires",
            )
            .map_err(db_err)?;
        grant_rows(&mut s, self.practice, holder, now)
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
        self.read
            .conn
            .prepare_cached(&format!(
                "INSERT INTO app_user (practice, {USER_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)
                 ON CONFLICT (practice, id) DO UPDATE SET username = excluded.username,
                   name = excluded.name, password_hash = excluded.password_hash,
                   roles = excluded.roles, practitioner = excluded.practitioner,
                   failed = excluded.failed, locked_until = excluded.locked_until,
               disabled = excluded.disabled"
            ))
            .and_then(|mut s| {
                s.execute(params![
                    self.read.practice,
                    u.id,
                    u.username,
                    u.name,
                    u.password_hash,
                    u.roles.join(" "),
                    u.practitioner,
                    u.failed as i64,
                    u.locked_until.map(Instant::millis),
                    u.disabled,
                ])
            })
            .map(drop)
            .map_err(db_err)
    }

    fn put_session(&mut self, s: &SessionRecord) -> Result<(), StoreError> {
        self.read
            .conn
            .prepare_cached(
                "INSERT INTO app_session (practice, token_hash, user_id, role, created_at, expires_at, revoked, roles)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            )
            .and_then(|mut st| {
                st.execute(params![
                    self.read.practice,
                    s.token_hash,
                    s.user_id,
                    s.role,
                    s.created.millis(),
                    s.expires.millis(),
                    s.revoked as i64,
                    s.roles.as_ref().map(|r| r.join(" ")),
                ])
            })
            .map(drop)
            .map_err(db_err)
    }

    fn revoke_sessions(&mut self, user_id: &str, only: Option<&str>) -> Result<(), StoreError> {
        self.read
            .conn
            .prepare_cached(
                "UPDATE app_session SET revoked = 1
                 WHERE practice = ?1 AND user_id = ?2 AND (?3 IS NULL OR token_hash = ?3)",
            )
            .and_then(|mut s| s.execute(params![self.read.practice, user_id, only]))
            .map(drop)
            .map_err(db_err)
    }

    fn put_policy(&mut self, policy: &str) -> Result<(), StoreError> {
        self.read
            .conn
            .prepare_cached(
                "INSERT INTO access_policy (practice, body) VALUES (?1, ?2)
                 ON CONFLICT (practice) DO UPDATE SET body = excluded.body",
            )
            .and_then(|mut s| s.execute(params![self.read.practice, policy]))
            .map(drop)
            .map_err(db_err)
    }

    fn put_grant(&mut self, g: &Grant) -> Result<(), StoreError> {
        self.read
            .conn
            .prepare_cached(
                "INSERT INTO break_glass (practice, user_id, session, patient, reason, granted_at, expires)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            )
            .and_then(|mut s| {
                s.execute(params![
                    self.read.practice,
                    g.user_id,
                    g.session,
                    g.patient,
                    g.reason,
                    Instant::now().millis(),
                    g.expires.millis(),
                ])
            })
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
