//! The front-end files the binary serves: the NHS design system's styles
//! (built into `assets/dist/opengp.css` by `assets/build.sh`), htmx, and
//! our own script. Each is served under a name carrying a hash of its
//! content, so browsers may keep it for a year and a new build is fetched
//! at once.

use std::sync::OnceLock;

use axum::extract::Path;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};

struct Asset {
    /// The name pages use (`opengp.css`).
    name: &'static str,
    content_type: &'static str,
    bytes: &'static [u8],
}

const ASSETS: &[Asset] = &[
    Asset {
        name: "opengp.css",
        content_type: "text/css; charset=utf-8",
        bytes: include_bytes!("../assets/dist/opengp.css"),
    },
    Asset {
        name: "htmx.js",
        content_type: "text/javascript; charset=utf-8",
        bytes: include_bytes!("../assets/dist/htmx.min.js"),
    },
    Asset {
        name: "app.js",
        content_type: "text/javascript; charset=utf-8",
        bytes: include_bytes!("../assets/src/app.js"),
    },
];

/// Images the stylesheet refers to by fixed name.
const IMAGES: &[(&str, &[u8])] = &[
    (
        "nhsuk-icon-arrow-down.svg",
        include_bytes!("../assets/dist/images/nhsuk-icon-arrow-down.svg"),
    ),
    (
        "nhsuk-icon-arrow-up.svg",
        include_bytes!("../assets/dist/images/nhsuk-icon-arrow-up.svg"),
    ),
    (
        "nhsuk-icon-arrow-up-down.svg",
        include_bytes!("../assets/dist/images/nhsuk-icon-arrow-up-down.svg"),
    ),
    (
        "nhsuk-icon-cross.svg",
        include_bytes!("../assets/dist/images/nhsuk-icon-cross.svg"),
    ),
    (
        "favicon.svg",
        include_bytes!("../assets/dist/images/favicon.svg"),
    ),
];

/// `name` → `stem.hash.ext`, computed once.
fn hashed() -> &'static Vec<String> {
    static NAMES: OnceLock<Vec<String>> = OnceLock::new();
    NAMES.get_or_init(|| {
        ASSETS
            .iter()
            .map(|a| {
                let digest = Sha256::digest(a.bytes);
                let hex: String = digest[..5].iter().map(|b| format!("{b:02x}")).collect();
                let (stem, ext) = a.name.rsplit_once('.').unwrap_or((a.name, ""));
                format!("{stem}.{hex}.{ext}")
            })
            .collect()
    })
}

/// The URL of an asset by its plain name.
pub fn url(name: &str) -> String {
    let names = hashed();
    ASSETS
        .iter()
        .position(|a| a.name == name)
        .and_then(|i| names.get(i))
        .map_or_else(
            || format!("/app/assets/{name}"),
            |h| format!("/app/assets/{h}"),
        )
}

/// `GET /app/assets/{file}`.
pub async fn serve(Path(file): Path<String>) -> Response {
    let names = hashed();
    if let Some(i) = names.iter().position(|n| *n == file)
        && let Some(a) = ASSETS.get(i)
    {
        return (
            [
                (header::CONTENT_TYPE, a.content_type),
                (header::CACHE_CONTROL, "public, max-age=31536000, immutable"),
            ],
            a.bytes,
        )
            .into_response();
    }
    StatusCode::NOT_FOUND.into_response()
}

/// `GET /app/assets/images/{file}`.
pub async fn image(Path(file): Path<String>) -> Response {
    match IMAGES.iter().find(|(n, _)| *n == file) {
        Some((_, bytes)) => (
            [
                (header::CONTENT_TYPE, "image/svg+xml"),
                (header::CACHE_CONTROL, "public, max-age=86400"),
            ],
            *bytes,
        )
            .into_response(),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}
