//! SMART on FHIR: registered apps, the tokens issued to them and the
//! authorization server's one-time values. Every statement binds the
//! practice key as `$1`.

use gp_fhir::Instant;
use gp_store::smart::{AppKind, AppRecord, TokenKind, TokenRecord};
use gp_store::{OnceWrite, StoreError};
use postgres::Row;

use crate::conn::db_err;
use crate::scoped::Scoped;
use crate::write::ScopedWrite;

/// Schema migration 9. New tables only: nothing running is locked.
pub(crate) const MIGRATION: &str = "
    CREATE TABLE smart_app (
        practice bigint NOT NULL,
        client_id text NOT NULL,
        name text NOT NULL,
        kind text NOT NULL,
        secret_hash text,
        redirect_uris text NOT NULL,
        jwks text,
        scope text NOT NULL,
        created_at bigint NOT NULL,
        PRIMARY KEY (practice, client_id)
    );
    -- Tokens by the SHA-256 of the token; the token itself is never stored.
    CREATE TABLE smart_token (
        practice bigint NOT NULL,
        token_hash text NOT NULL,
        kind text NOT NULL,
        grant_id text NOT NULL,
        client_id text NOT NULL,
        user_id text,
        role text,
        scope text NOT NULL,
        patient text,
        created_at bigint NOT NULL,
        expires_at bigint NOT NULL,
        revoked boolean NOT NULL,
        PRIMARY KEY (practice, token_hash)
    );
    CREATE INDEX smart_token_by_grant ON smart_token (practice, grant_id);";

/// Schema migration 12: apps can be disabled (a column with a constant
/// default: no table rewrite); the authorization server's one-time values
/// (codes, launch contexts, client assertion `jti`s) by the SHA-256 of
/// their key, until they expire.
pub(crate) const ONCE_MIGRATION: &str = "
    ALTER TABLE smart_app ADD COLUMN disabled boolean NOT NULL DEFAULT false;
    CREATE TABLE smart_once (
        practice bigint NOT NULL,
        kind text NOT NULL,
        key_hash text NOT NULL,
        body text NOT NULL,
        expires_at bigint NOT NULL,
        PRIMARY KEY (practice, kind, key_hash)
    );
    CREATE INDEX smart_once_by_expiry ON smart_once (practice, expires_at);";

const APP_COLUMNS: &str = "client_id, name, kind, secret_hash, redirect_uris, jwks, scope, created_at, disabled, launch_url";
const TOKEN_COLUMNS: &str = "token_hash, kind, grant_id, client_id, user_id, role, scope, patient, created_at, expires_at, revoked";

fn app_row(r: &Row) -> Result<AppRecord, StoreError> {
    let kind: String = r.try_get(2).map_err(db_err)?;
    let uris: String = r.try_get(4).map_err(db_err)?;
    Ok(AppRecord {
        client_id: r.try_get(0).map_err(db_err)?,
        name: r.try_get(1).map_err(db_err)?,
        kind: AppKind::parse(&kind).unwrap_or(AppKind::Public),
        secret_hash: r.try_get(3).map_err(db_err)?,
        redirect_uris: uris.split_whitespace().map(str::to_owned).collect(),
        jwks: r.try_get(5).map_err(db_err)?,
        scope: r.try_get(6).map_err(db_err)?,
        created: Instant::from_millis(r.try_get(7).map_err(db_err)?),
        disabled: r.try_get(8).map_err(db_err)?,
        launch_url: r.try_get(9).map_err(db_err)?,
    })
}

fn token_row(r: &Row) -> Result<TokenRecord, StoreError> {
    let kind: String = r.try_get(1).map_err(db_err)?;
    Ok(TokenRecord {
        token_hash: r.try_get(0).map_err(db_err)?,
        kind: TokenKind::parse(&kind).unwrap_or(TokenKind::Access),
        grant_id: r.try_get(2).map_err(db_err)?,
        client_id: r.try_get(3).map_err(db_err)?,
        user_id: r.try_get(4).map_err(db_err)?,
        role: r.try_get(5).map_err(db_err)?,
        scope: r.try_get(6).map_err(db_err)?,
        patient: r.try_get(7).map_err(db_err)?,
        created: Instant::from_millis(r.try_get(8).map_err(db_err)?),
        expires: Instant::from_millis(r.try_get(9).map_err(db_err)?),
        revoked: r.try_get(10).map_err(db_err)?,
    })
}

impl Scoped<'_> {
    pub(crate) fn smart_app(&mut self, client_id: &str) -> Result<Option<AppRecord>, StoreError> {
        let sql =
            format!("SELECT {APP_COLUMNS} FROM smart_app WHERE practice = $1 AND client_id = $2");
        let row = self
            .conn
            .query_opt(&sql, &[&self.practice, &client_id])
            .map_err(db_err)?;
        row.as_ref().map(app_row).transpose()
    }

    pub(crate) fn smart_apps(&mut self) -> Result<Vec<AppRecord>, StoreError> {
        let sql = format!(
            "SELECT {APP_COLUMNS} FROM smart_app WHERE practice = $1 ORDER BY name, client_id"
        );
        let rows = self.conn.query(&sql, &[&self.practice]).map_err(db_err)?;
        rows.iter().map(app_row).collect()
    }

    pub(crate) fn smart_token(&mut self, hash: &str) -> Result<Option<TokenRecord>, StoreError> {
        let sql = format!(
            "SELECT {TOKEN_COLUMNS} FROM smart_token WHERE practice = $1 AND token_hash = $2"
        );
        let row = self
            .conn
            .query_opt(&sql, &[&self.practice, &hash])
            .map_err(db_err)?;
        row.as_ref().map(token_row).transpose()
    }

    pub(crate) fn put_smart_app(&mut self, a: &AppRecord) -> Result<(), StoreError> {
        let sql = format!(
            "INSERT INTO smart_app (practice, {APP_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
             ON CONFLICT (practice, client_id) DO UPDATE SET name = excluded.name,
               kind = excluded.kind, secret_hash = excluded.secret_hash,
               redirect_uris = excluded.redirect_uris, jwks = excluded.jwks,
               scope = excluded.scope, disabled = excluded.disabled,
               launch_url = excluded.launch_url"
        );
        let uris = a.redirect_uris.join(" ");
        self.conn
            .execute(
                &sql,
                &[
                    &self.practice,
                    &a.client_id,
                    &a.name,
                    &a.kind.code(),
                    &a.secret_hash,
                    &uris,
                    &a.jwks,
                    &a.scope,
                    &a.created.millis(),
                    &a.disabled,
                    &a.launch_url,
                ],
            )
            .map(drop)
            .map_err(db_err)
    }

    pub(crate) fn put_smart_token(&mut self, t: &TokenRecord) -> Result<(), StoreError> {
        let sql = format!(
            "INSERT INTO smart_token (practice, {TOKEN_COLUMNS})
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)"
        );
        self.conn
            .execute(
                &sql,
                &[
                    &self.practice,
                    &t.token_hash,
                    &t.kind.code(),
                    &t.grant_id,
                    &t.client_id,
                    &t.user_id,
                    &t.role,
                    &t.scope,
                    &t.patient,
                    &t.created.millis(),
                    &t.expires.millis(),
                    &t.revoked,
                ],
            )
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
            .execute(
                &format!(
                    "UPDATE smart_token SET revoked = true WHERE practice = $1 AND {} = $2",
                    column.column()
                ),
                &[&self.practice, &value],
            )
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
        let practice = self.read.practice;
        let conn = &mut *self.read.conn;
        conn.execute(
            "DELETE FROM smart_once WHERE practice = $1 AND expires_at <= $2",
            &[&practice, &now.millis()],
        )
        .map_err(db_err)?;
        conn.execute(
            "INSERT INTO smart_once (practice, kind, key_hash, body, expires_at)
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING",
            &[&practice, &kind, &key, &body, &expires.millis()],
        )
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
            "DELETE FROM smart_once WHERE practice = $1 AND kind = $2 AND key_hash = $3
             RETURNING body, expires_at"
        } else {
            "SELECT body, expires_at FROM smart_once
             WHERE practice = $1 AND kind = $2 AND key_hash = $3"
        };
        let practice = self.read.practice;
        let row = self
            .read
            .conn
            .query_opt(sql, &[&practice, &kind, &key])
            .map_err(db_err)?;
        let Some(r) = row else {
            return Ok(None);
        };
        let body: String = r.try_get(0).map_err(db_err)?;
        let exp: i64 = r.try_get(1).map_err(db_err)?;
        Ok((exp > now.millis()).then_some(body))
    }
}
