//! JSON Patch (RFC 6902) on resources, as http.html#patch describes.

use serde_json::Value;

/// Why a patch could not be applied.
#[derive(Debug, thiserror::Error)]
pub enum PatchError {
    /// The body is not a JSON Patch document (400).
    #[error("the body is not a JSON Patch document: {0}")]
    BadDocument(String),
    /// The patch does not apply to the current resource (422).
    #[error("the patch cannot be applied: {0}")]
    Failed(String),
}

/// Parses a JSON Patch document.
pub fn parse(body: &[u8]) -> Result<json_patch::Patch, PatchError> {
    serde_json::from_slice(body).map_err(|e| PatchError::BadDocument(e.to_string()))
}

/// Applies `patch` to a copy of `resource`; the original is untouched when
/// any operation fails (patches are all or nothing).
pub fn apply(resource: &Value, patch: &json_patch::Patch) -> Result<Value, PatchError> {
    let mut out = resource.clone();
    json_patch::patch(&mut out, patch).map_err(|e| PatchError::Failed(e.to_string()))?;
    Ok(out)
}
