//! Moving a practice between OpenGP stores without losing anything.
//!
//! A **practice package** is a folder: `versions.ndjson` holds every version
//! of every resource the practice owns, deletions included, in the order
//! they were written, each line with its author, its instant and the
//! SHA-256 of its JSON; `accounts.json` the staff accounts (with their role
//! profiles and Argon2id hashes, never a session), the practice's own access
//! policy and its registered SMART apps (a confidential app's secret hash,
//! never a token); `audit.ndjson` the audit trail, each AuditEvent with its
//! link of the hash chain, so that the chain still verifies where it lands;
//! `manifest.json`, written last, names the practice, counts versions and
//! resources per type, accounts and audit records, and seals each file with
//! its own SHA-256 (an export cut short has no manifest, and an import
//! refuses it). OpenGP stores and serves each version's JSON byte for byte,
//! so those bytes are the version's canonical JSON, and their digest is
//! what the verifier compares.
//!
//! [`export`] writes a package from a store, [`import`] loads one into a
//! store (keeping ids, versions, instants and authors; idempotent and
//! resumable; every source record accounted for in a [`Report`]), and
//! [`verify`] compares two sides version by version.

mod accounts;
pub mod bulk;
mod export;
pub mod filter;
mod foreign;
mod import;
mod trail;
mod verify;

pub use accounts::{Account, Accounts, App};
pub use export::export;
pub use foreign::import_foreign;
pub use import::{
    Checked, Outcome, Rejection, Report, Transformation, TypeCounts, check_package, import,
};
pub use trail::would_continue;
pub use verify::{Comparison, Difference, Side, digests, verify};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// The package's version file and its manifest.
pub const VERSIONS_FILE: &str = "versions.ndjson";
pub const MANIFEST_FILE: &str = "manifest.json";
/// Staff accounts, access policy and SMART apps; the audit trail.
pub const ACCOUNTS_FILE: &str = "accounts.json";
pub const AUDIT_FILE: &str = "audit.ndjson";
/// What `manifest.json` says it is.
pub const FORMAT: &str = "opengp-practice-package";
/// 2: accounts and the audit trail joined the resources.
pub const FORMAT_VERSION: u32 = 2;

/// `manifest.json`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Manifest {
    pub format: String,
    pub format_version: u32,
    pub practice: PracticeInfo,
    /// When the export finished, and who ran it.
    pub exported_at: String,
    pub exported_by: String,
    pub source: String,
    /// Versions and resources per resource type.
    pub types: std::collections::BTreeMap<String, TypeTotals>,
    pub totals: TypeTotals,
    /// The versions file and the SHA-256 of its bytes.
    pub versions_file: String,
    pub versions_sha256: String,
    /// Staff accounts, SMART apps and whether the practice has its own
    /// access policy; the file that holds them and its SHA-256.
    pub accounts: AccountTotals,
    pub accounts_file: String,
    pub accounts_sha256: String,
    /// The audit trail: records, the chain's last hash; its file.
    pub audit: AuditTotals,
    pub audit_file: String,
    pub audit_sha256: String,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct AccountTotals {
    pub users: u64,
    pub apps: u64,
    /// 1 when the practice stores its own policy, 0 when it uses the baseline.
    pub policy: u64,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct AuditTotals {
    pub records: u64,
    /// The hash of the chain's last link (none for an empty trail).
    pub head: Option<String>,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct PracticeInfo {
    pub ods: String,
    pub name: String,
    /// Why the practice was frozen read-only when it was exported (the
    /// cut-over), if it was. An import does not freeze the target: it is
    /// the system that takes over.
    #[serde(default)]
    pub frozen: Option<String>,
}

/// Counts of one type (or of all).
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct TypeTotals {
    /// Every version, deletions included.
    pub versions: u64,
    /// Distinct resources (logical ids).
    pub resources: u64,
    /// Resources whose latest version is a deletion.
    pub deleted: u64,
}

/// One line of `versions.ndjson`.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Line<'a> {
    resource_type: &'a str,
    id: &'a str,
    version: u64,
    last_updated: &'a str,
    deleted: bool,
    author: &'a str,
    sha256: &'a str,
    #[serde(borrow)]
    resource: Option<&'a serde_json::value::RawValue>,
}

/// An instant as the package writes it.
pub(crate) fn instant(s: &str) -> Option<gp_fhir::Instant> {
    gp_fhir::DateRange::parse(s).ok().map(|r| r.low)
}

/// The SHA-256 of a version's JSON bytes (empty for a deletion), in hex.
pub fn digest(body: &[u8]) -> String {
    hex(&Sha256::digest(body))
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
    s
}

/// Where a long command has got to: `done` of `total` (0 when unknown).
#[derive(Clone, Copy, Debug)]
pub struct Progress {
    pub done: u64,
    pub total: u64,
}
