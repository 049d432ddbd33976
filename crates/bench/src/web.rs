//! The clinician web app's page budgets, as a browser on a slow line would
//! meet them: bytes transferred (compressed, with headers) for the first
//! page with its CSS and JavaScript and for each later interaction, and
//! the time each page takes on loopback (which is server time).

use std::fmt;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::percentile;

/// What to run.
#[derive(Clone, Debug)]
pub struct WebPlan {
    /// The server's root URL (`http://127.0.0.1:PORT`).
    pub site: String,
    pub practice: String,
    pub username: String,
    pub password: String,
    /// Patients whose pages are timed, in turn.
    pub patients: Vec<String>,
    /// Pages timed per kind.
    pub pages: usize,
}

/// One kind of page: its size and times.
#[derive(Clone, Debug)]
pub struct PageFigures {
    pub name: &'static str,
    pub mean_bytes: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
}

/// The figures.
#[derive(Clone, Debug)]
pub struct WebReport {
    /// The sign-in page with its stylesheet and scripts.
    pub first_page_bytes: usize,
    pub first_page_parts: Vec<(String, usize)>,
    pub pages: Vec<PageFigures>,
}

impl fmt::Display for WebReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "First page (sign-in, with CSS and JavaScript, brotli): {:.1} KB transferred (budget 150 KB)",
            self.first_page_bytes as f64 / 1024.0
        )?;
        for (url, n) in &self.first_page_parts {
            writeln!(f, "  {url}: {:.1} KB", *n as f64 / 1024.0)?;
        }
        writeln!(f)?;
        writeln!(f, "| page | transferred (mean) | p50 | p99 |")?;
        writeln!(f, "|---|---|---|---|")?;
        for p in &self.pages {
            writeln!(
                f,
                "| {} | {:.1} KB | {:.2} ms | {:.2} ms |",
                p.name,
                p.mean_bytes / 1024.0,
                p.p50_ms,
                p.p99_ms
            )?;
        }
        Ok(())
    }
}

/// Bytes a response took on the wire: status line, headers and body.
fn wire_size(res: &reqwest::Response, body: usize) -> usize {
    let headers: usize = res
        .headers()
        .iter()
        .map(|(k, v)| k.as_str().len() + v.len() + 4)
        .sum();
    17 + headers + body
}

struct Browser {
    client: reqwest::Client,
    site: String,
    cookie: String,
}

impl Browser {
    /// A GET as a browser sends it (compressed), answering the bytes
    /// transferred and the body as text.
    async fn get(&self, path: &str, htmx: bool) -> Result<(usize, String, Duration)> {
        let mut req = self
            .client
            .get(format!("{}{path}", self.site))
            .header("accept-encoding", "br, gzip")
            .header("cookie", &self.cookie);
        if htmx {
            req = req.header("hx-request", "true");
        }
        let started = Instant::now();
        let res = req.send().await.with_context(|| format!("GET {path}"))?;
        let status = res.status();
        let encoding = res
            .headers()
            .get("content-encoding")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        let headers_len = wire_size(&res, 0);
        let body = res.bytes().await?;
        let took = started.elapsed();
        if !status.is_success() {
            bail!("GET {path}: {status}");
        }
        let text = match encoding.as_str() {
            "" => String::from_utf8_lossy(&body).into_owned(),
            // Only the links in the page are read back; the size is what counts.
            _ => String::new(),
        };
        Ok((headers_len + body.len(), text, took))
    }
}

/// The asset URLs a page links to.
fn assets(html: &str) -> Vec<String> {
    let mut out = Vec::new();
    for marker in ["href=\"/app/assets/", "src=\"/app/assets/"] {
        let mut rest = html;
        while let Some(i) = rest.find(marker) {
            let start = i + marker.len() - "/app/assets/".len();
            let tail = &rest[start..];
            if let Some(end) = tail.find('"') {
                let url = &tail[..end];
                if !url.contains("/images/") {
                    out.push(url.to_owned());
                }
            }
            rest = &rest[i + marker.len()..];
        }
    }
    out
}

pub async fn run(plan: &WebPlan) -> Result<WebReport> {
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()?;
    let mut b = Browser {
        client: client.clone(),
        site: plan.site.clone(),
        cookie: String::new(),
    };
    // The first page: its HTML uncompressed to find the links, then every
    // part compressed as a browser fetches it.
    let plain = client
        .get(format!("{}/app/login", plan.site))
        .send()
        .await?
        .text()
        .await?;
    let mut parts = Vec::new();
    let (n, _, _) = b.get("/app/login", false).await?;
    parts.push(("/app/login".to_owned(), n));
    for url in assets(&plain) {
        let (n, _, _) = b.get(&url, false).await?;
        parts.push((url, n));
    }
    let first_page_bytes = parts.iter().map(|(_, n)| n).sum();
    // Sign in.
    let res = client
        .post(format!("{}/app/login", plan.site))
        .form(&[
            ("practice", plan.practice.as_str()),
            ("username", plan.username.as_str()),
            ("password", plan.password.as_str()),
            ("next", "/app"),
        ])
        .send()
        .await?;
    let cookie = res
        .headers()
        .get("set-cookie")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(str::to_owned)
        .context("signing in gave no session cookie")?;
    b.cookie = cookie;
    if plan.patients.is_empty() {
        bail!("there are no patients to open");
    }
    let kinds: [(&'static str, bool); 6] = [
        ("patient summary", false),
        ("journal", false),
        ("new consultation form", false),
        ("patient search (htmx fragment)", true),
        ("SNOMED CT typeahead (htmx fragment)", true),
        ("home", false),
    ];
    let words = ["smi", "jon", "pat", "wil", "bro", "tay", "smtih", "jnoes"];
    let terms = ["diab", "asth", "hyperten", "blood press", "weig", "depress"];
    let mut pages = Vec::new();
    for (name, htmx) in kinds {
        let mut times = Vec::with_capacity(plan.pages);
        let mut bytes = 0usize;
        for i in 0..plan.pages {
            let p = &plan.patients[i % plan.patients.len()];
            let path = match name {
                "patient summary" => format!("/app/patients/{p}"),
                "journal" => format!("/app/patients/{p}/journal"),
                "new consultation form" => format!("/app/patients/{p}/consultation"),
                "patient search (htmx fragment)" => {
                    format!("/app/patients?q={}", words[i % words.len()])
                }
                "SNOMED CT typeahead (htmx fragment)" => format!(
                    "/app/snomed?slot=problem&problem_text={}",
                    terms[i % terms.len()].replace(' ', "+")
                ),
                _ => "/app".to_owned(),
            };
            let (n, _, took) = b.get(&path, htmx).await?;
            bytes += n;
            times.push(took);
        }
        times.sort();
        pages.push(PageFigures {
            name,
            mean_bytes: bytes as f64 / plan.pages.max(1) as f64,
            p50_ms: percentile(&times, 0.50),
            p99_ms: percentile(&times, 0.99),
        });
    }
    Ok(WebReport {
        first_page_bytes,
        first_page_parts: parts,
        pages,
    })
}
