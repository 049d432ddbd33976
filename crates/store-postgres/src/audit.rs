//! The audit chain (gp-store's `audit.rs`): one link per AuditEvent, in the
//! order they committed. Every statement binds the practice key as `$1`.
//!
//! The writer keeps the practice's chain head in its locked counter state,
//! so a group of audited reads costs one head query per practice, and
//! buffers links like versions, sent as one multi-row insert.

use bytes::Bytes;
use gp_store::StoreError;
use gp_store::audit::{AuditLink, StoredLink};

use crate::conn::{Conn, db_err};

/// Schema migration 7. The chain is append-only, and so are the
/// AuditEvents it protects: triggers refuse to change or remove either, so
/// only someone who bypasses OpenGP (and drops the triggers) can, and
/// `opengp audit verify` then finds the broken link.
pub(crate) const MIGRATION: &str = "
    CREATE TABLE audit_chain (
        practice bigint NOT NULL,
        seq bigint NOT NULL,
        event text NOT NULL,
        hash text NOT NULL,
        PRIMARY KEY (practice, seq)
    );
    CREATE FUNCTION opengp_audit_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        IF TG_TABLE_NAME = 'audit_chain' OR OLD.type = 'AuditEvent' THEN
            RAISE EXCEPTION 'the audit trail is append-only';
        END IF;
        IF TG_OP = 'DELETE' THEN RETURN OLD; END IF;
        RETURN NEW;
    END $$;
    CREATE TRIGGER audit_chain_append_only BEFORE UPDATE OR DELETE ON audit_chain
        FOR EACH ROW EXECUTE FUNCTION opengp_audit_append_only();
    CREATE TRIGGER audit_event_append_only BEFORE UPDATE OR DELETE ON resource_version
        FOR EACH ROW EXECUTE FUNCTION opengp_audit_append_only();
";

const LINKS: &str =
    "SELECT a.seq, a.event, a.hash, v.body, v.last_updated, v.author FROM audit_chain a
     LEFT JOIN resource_version v ON v.practice = $1 AND v.type = 'AuditEvent'
       AND v.id = a.event AND v.version = 1
     WHERE a.practice = $1 AND a.seq > $2 ORDER BY a.seq LIMIT $3";

const HEAD: &str =
    "SELECT seq, hash FROM audit_chain WHERE practice = $1 ORDER BY seq DESC LIMIT 1";

const INSERT_LINKS: &str = "INSERT INTO audit_chain (practice, seq, event, hash)
     SELECT $1, t.seq, t.event, t.hash
     FROM unnest($2::int8[], $3::text[], $4::text[]) AS t(seq, event, hash)";

pub(crate) fn links(
    conn: &mut Conn,
    bodies: &crate::body::Bodies,
    practice: i64,
    after: i64,
    limit: usize,
) -> Result<Vec<StoredLink>, StoreError> {
    let rows = conn
        .query(LINKS, &[&practice, &after, &(limit as i64)])
        .map_err(db_err)?;
    rows.iter()
        .map(|r| {
            Ok(StoredLink {
                link: AuditLink {
                    seq: r.try_get(0).map_err(db_err)?,
                    event: r.try_get(1).map_err(db_err)?,
                    hash: r.try_get(2).map_err(db_err)?,
                },
                body: r
                    .try_get::<_, Option<Vec<u8>>>(3)
                    .map_err(db_err)?
                    .map(|b| bodies.decode(conn, practice, Bytes::from(b)))
                    .transpose()?,
                last_updated: r
                    .try_get::<_, Option<i64>>(4)
                    .map_err(db_err)?
                    .map(gp_fhir::Instant::from_millis),
                author: r.try_get(5).map_err(db_err)?,
            })
        })
        .collect()
}

pub(crate) fn head(conn: &mut Conn, practice: i64) -> Result<Option<(i64, String)>, StoreError> {
    conn.query_opt(HEAD, &[&practice])
        .map_err(db_err)?
        .map(|r| Ok((r.try_get(0).map_err(db_err)?, r.try_get(1).map_err(db_err)?)))
        .transpose()
}

pub(crate) fn insert(
    conn: &mut Conn,
    practice: i64,
    links: &[AuditLink],
) -> Result<(), StoreError> {
    if links.is_empty() {
        return Ok(());
    }
    let seqs: Vec<i64> = links.iter().map(|l| l.seq).collect();
    let events: Vec<&str> = links.iter().map(|l| l.event.as_str()).collect();
    let hashes: Vec<&str> = links.iter().map(|l| l.hash.as_str()).collect();
    conn.execute(INSERT_LINKS, &[&practice, &seqs, &events, &hashes])
        .map(|_| ())
        .map_err(db_err)
}
