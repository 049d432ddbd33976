//! SMART on FHIR: registered apps, the tokens issued to them and the
//! authorization server's one-time values. Every statement binds the
//! practice key as `?1`.

use gp_fhir::Instant;
use gp_store::smart::{AppKind, AppRecord, TokenKind, TokenRecord};
use gp_store::{OnceWrite, StoreError};
use rusqlite::{OptionalExtension, params};

use crate::db_err;
use crate::scoped::{Scoped, ScopedWrite};

/// Schema migration 10.
pub(crate) const MIGRATION: &str = "
    CREATE TABLE smart_app (
        practice INTEGER NOT NULL REFERENCES practice(key),
        client_id TEXT NOT NULL,
        name TEXT NOT NULL,
        kind TEXT NOT NULL,
        secret_hash TEXT,
        redirect_uris TEXT NOT NULL,
        jwks TEXT,
        scope TEXT NOT NULL,
        created_at INTEGER NOT NULL,
        PRIMARY KEY (practice, client_id)
    );
    -- Tokens by the SHA-256 of the token; the token itself is never stored.
    CREATE TABLE smart_token (
        practice INTEGER NOT NULL REFERENCES practice(key),
        token_hash TEXT NOT NULL,
        kind TEXT NOT NULL,
        grant_id TEXT NOT NULL,
        client_id TEXT NOT NULL,
        user_id TEXT,
        role TEXT,
        scope TEXT NOT NULL,
        patient TEXT,
        created_at INTEGER NOT NULL,
        expires_at INTEGER NOT NULL,
        revoked INTEGER NOT NULL,
        PRIMARY KEY (practice, token_hash)
    );
    CREATE INDEX smart_token_by_grant ON smart_token (practice, grant_id);";

/// Schema migration 13: apps can be disabled; the authorization server's
/// one-time values (codes, launch contexts, client assertion `jti`s) by
/// the SHA-256 of their key, until they expire.
pub(crate) const ONCE_MIGRATION: &str = "
    ALTER TABLE smart_app ADD COLUMN disabled INTEGER NOT NULL DEFAULT 0;
    CREATE TABLE smart_once (
        practice INTEGER NOT NULL REFERENCES practice(key),
        kind TEXT NOT NULL,
        key_hash TEXT NOT NULL,
        body TEXT NOT NULL,
        expires_at INTEGER NOT NULL,
        PRIMARY KEY (practice, kind, key_hash)
    );
    CREATE INDEX smart_once_by_expiry ON smart_once (practice, expires_at);";

const APP_COLUMNS: &str = "client_id, name, kind, secret_hash, redirect_uris, jwks, scope, created_at, disabled, launch_url";
const TOKEN_COLUMNS: &str = "token_hash, kind, grant_id, client_id, user_id, role, scope, patient, created_at, expires_at, revoked";

fn app_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<AppRecord> {
    let kind: String = r.get(2)?;
    let uris: String = r.get(4)?;
    Ok(AppRecord {
        client_id: r.get(0)?,
        name: r.get(1)?,
        kind: AppKind::parse(&kind).unwrap_or(AppKind::Public),
        secret_hash: r.get(3)?,
        redirect_uris: uris.split_whitespace().map(str::to_owned).collect(),
        jwks: r.get(5)?,
        scope: r.get(6)?,
        created: Instant::from_millis(r.get(7)?),
        disabled: r.get::<_, i64>(8)? != 0,
        launch_url: r.get(9)?,
    })
}

fn token_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<TokenRecord> {
    let kind: String = r.get(1)?;
    Ok(TokenRecord {
        token_hash: r.get(0)?,
        kind: TokenKind::parse(&kind).unwrap_or(TokenKind::Access),
        grant_id: r.get(2)?,
        client_id: r.get(3)?,
        user_id: r.get(4)?,
        role: r.get(5)?,
        scope: r.get(6)?,
        patient: r.get(7)?,
        created: Instant::from_millis(r.get(8)?),
        expires: Instant::from_millis(r.get(9)?),
        revoked: r.get::<_, i64>(10)? != 0,
    })
}

impl Scoped<'_> {
    pub(crate) fn smart_app(&mut self, client_id: &str) -> Result<Option<AppRecord>, StoreError> {
        self.conn
            .prepare_cached(&format!(
                "SELECT {APP_COLUMNS} FROM smart_app WHERE practice = ?1 AND client_id = ?2"
            ))
            .and_then(|mut s| {
                s.query_row(params![self.practice, client_id], app_row)
                    .optional()
            })
            .map_err(db_err)
    }

    pub(crate) fn smart_apps(&mut self) -> Result<Vec<AppRecord>, StoreError> {
        let mut s = self
            .conn
            .prepare_cached(&format!(
                "SELECT {APP_COLUMNS} FROM smart_app WHERE practice = ?1 ORDER BY name, client_id"
            ))
            .map_err(db_err)?;
        let rows = s
            .query_map(params![self.practice], app_row)
            .map_err(db_err)?;
        rows.collect::<Result<Vec<_>, _>>().map_err(db_err)
    }

    pub(crate) fn smart_token(&mut self, hash: &str) -> Result<Option<TokenRecord>, StoreError> {
        self.conn
            .prepare_cached(&format!(
                "SELECT {TOKEN_COLUMNS} FROM smart_token WHERE practice = ?1 AND token_hash = ?2"
            ))
            .and_then(|mut s| {
                s.query_row(params![self.practice, hash], token_row)
                    .optional()
            })
            .map_err(db_err)
    }

    pub(crate) fn put_smart_app(&mut self, a: &AppRecord) -> Result<(), StoreError> {
        self.conn
            .prepare_cached(&format!(
                "INSERT INTO smart_app (practice, {APP_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)
                 ON CONFLICT (practice, client_id) DO UPDATE SET name = excluded.name,
                   kind = excluded.kind, secret_hash = excluded.secret_hash,
                   redirect_uris = excluded.redirect_uris, jwks = excluded.jwks,
                   scope = excluded.scope, disabled = excluded.disabled,
                   launch_url = excluded.launch_url"
            ))
            .and_then(|mut s| {
                s.execute(params![
                    self.practice,
                    a.client_id,
                    a.name,
                    a.kind.code(),
                    a.secret_hash,
                    a.redirect_uris.join(" "),
                    a.jwks,
                    a.scope,
                    a.created.millis(),
                    a.disabled as i64,
                    a.launch_url,
                ])
            })
            .map(drop)
            .map_err(db_err)
    }

    pub(crate) fn put_smart_token(&mut self, t: &TokenRecord) -> Result<(), StoreError> {
        self.conn
            .prepare_cached(&format!(
                "INSERT INTO smart_token (practice, {TOKEN_COLUMNS})
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)"
            ))
            .and_then(|mut s| {
                s.execute(params![
                    self.practice,
                    t.token_hash,
                    t.kind.code(),
                    t.grant_id,
                    t.client_id,
                    t.user_id,
                    t.role,
                    t.scope,
                    t.patient,
                    t.created.millis(),
                    t.expires.millis(),
                    t.revoked as i64,
                ])
            })
            .map(drop)
            .map_err(db_err)
    }

    /// Revokes the practice's tokens whose `column` (`grant_id`, `user_id`
    /// or `client_id`) is `value`.
    pub(crate) fn revoke_smart(
        &mut self,
        column: gp_store_sql::Revoke,
        value: &str,
    ) -> Result<(), StoreError> {
        self.conn
            .prepare_cached(&format!(
                "UPDATE smart_token SET revoked = 1 WHERE practice = ?1 AND {} = ?2",
                column.column()
            ))
            .and_then(|mut s| s.execute(params![self.practice, value]))
            .map(drop)
            .map_err(db_err)
    }
}

impl OnceWrite for ScopedWrite<'_> {
    fn put_once(
        &mut self,
        kind: &str,
        key: &str,
        body: &str,
        expires: Instant,
        now: Instant,
    ) -> Result<bool, StoreError> {
        let conn = self.read.conn;
        let practice = self.read.practice;
        conn.prepare_cached("DELETE FROM smart_once WHERE practice = ?1 AND expires_at <= ?2")
            .and_then(|mut s| s.execute(params![practice, now.millis()]))
            .map_err(db_err)?;
        conn.prepare_cached(
            "INSERT INTO smart_once (practice, kind, key_hash, body, expires_at)
             VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT DO NOTHING",
        )
        .and_then(|mut s| s.execute(params![practice, kind, key, body, expires.millis()]))
        .map(|n| n == 1)
        .map_err(db_err)
    }

    fn once(
        &mut self,
        kind: &str,
        key: &str,
        now: Instant,
        take: bool,
    ) -> Result<Option<String>, StoreError> {
        let sql = if take {
            "DELETE FROM smart_once WHERE practice = ?1 AND kind = ?2 AND key_hash = ?3
             RETURNING body, expires_at"
        } else {
            "SELECT body, expires_at FROM smart_once
             WHERE practice = ?1 AND kind = ?2 AND key_hash = ?3"
        };
        let found: Option<(String, i64)> = self
            .read
            .conn
            .prepare_cached(sql)
            .and_then(|mut s| {
                s.query_row(params![self.read.practice, kind, key], |r| {
                    Ok((r.get(0)?, r.get(1)?))
                })
                .optional()
            })
            .map_err(db_err)?;
        Ok(found.and_then(|(body, exp)| (exp > now.millis()).then_some(body)))
    }
}
