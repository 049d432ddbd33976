//! Configuration: command-line flags, then `OPENGP_*` environment
//! variables, then a TOML file (`--config`), then defaults.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::Deserialize;

/// What a configuration file may say. Every field is optional.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    pub data: Option<PathBuf>,
    pub database: Option<String>,
    pub listen: Option<SocketAddr>,
    pub public_url: Option<String>,
    pub max_body_bytes: Option<usize>,
    pub practice: Option<String>,
    pub practice_name: Option<String>,
    pub log_format: Option<String>,
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    pub sign_in_limit: Option<u32>,
    /// Seconds a finished Bulk Data export's files are kept.
    pub export_retention: Option<u64>,
    /// Reverse proxies trusted to say the client's address
    /// (`X-Forwarded-For`): addresses or networks.
    pub trusted_proxies: Option<Vec<String>>,
    /// `[oidc]`: staff sign-in through an external OpenID Connect provider.
    pub oidc: Option<OidcFile>,
}

/// The `[oidc]` table: `issuer`, `client_id`, `client_secret`, `scopes`
/// (an array), `username_claim`, `roles_claim`, `name`.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OidcFile {
    pub issuer: Option<String>,
    pub client_id: Option<String>,
    pub client_secret: Option<String>,
    pub scopes: Option<Vec<String>>,
    pub username_claim: Option<String>,
    pub roles_claim: Option<String>,
    pub name: Option<String>,
}

impl FileConfig {
    pub fn load(path: Option<&Path>) -> Result<FileConfig> {
        let Some(path) = path else {
            return Ok(FileConfig::default());
        };
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading the configuration file {}", path.display()))?;
        toml::from_str(&text)
            .with_context(|| format!("the configuration file {} is not valid", path.display()))
    }
}

/// The settings a server runs with, all decided.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// The data directory: the SQLite file and its WAL live here.
    pub data: PathBuf,
    /// A PostgreSQL URL (`postgres://user@host/db`): when set, the store is
    /// that database instead of the embedded SQLite file in `data`.
    pub database: Option<String>,
    pub listen: SocketAddr,
    pub public_url: Option<String>,
    pub max_body_bytes: usize,
    /// The practice to create on first start.
    pub practice: String,
    pub practice_name: String,
    /// Serve HTTPS with this certificate and key instead of HTTP.
    pub tls: Option<gp_api::tls::TlsFiles>,
    /// Rate limits per client address.
    pub limits: gp_api::limit::LimitConfig,
    /// The OpenID Connect provider staff may sign in with (discovered at start).
    pub oidc: Option<gp_api::oidc::OidcConfig>,
    /// Reverse proxies whose `X-Forwarded-For` names the client.
    pub trusted_proxies: Vec<ipnet::IpNet>,
    /// How long a finished Bulk Data export's files are kept (they are
    /// under `data/bulk-export`).
    pub export_retention: std::time::Duration,
}

pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";
pub const DEFAULT_PRACTICE: &str = "A81001";
pub const DEFAULT_PRACTICE_NAME: &str = "OpenGP Practice";
pub const DEFAULT_MAX_BODY: usize = 32 * 1024 * 1024;
