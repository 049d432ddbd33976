//! How a version's JSON is kept on disk: a zstd frame compressed with a
//! dictionary the store trained on its own resources, or, before the store
//! has one, the JSON as it is.
//!
//! FHIR JSON repeats itself across resources (element names, code system
//! URLs, profile and extension URLs, the shape of an AuditEvent), and a
//! resource is too small (1 to 3 KB) for a compressor to learn that from
//! the resource alone: zstd on its own shrinks a Synthea resource 1.8
//! times, with a dictionary trained on the store's own resources about 5
//! times (docs/benchmarks.md). A store trains its first dictionary once it
//! holds [`FIRST_TRAINING`] versions, and again each time it has grown
//! [`GROWTH`] times, so that the dictionary follows what the practice
//! records. Every dictionary is kept: a frame names the one it was
//! written with (its zstd dictionary id), and versions are never
//! rewritten.
//!
//! What is compressed is exactly the bytes the version had before, so the
//! audit chain's hashes, `ETag`s and exports do not change: only the
//! storage crates see frames.

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use gp_store::StoreError;
use zstd::dict::{DecoderDictionary, EncoderDictionary};
use zstd::zstd_safe;

/// The zstd frame magic number, as the first four bytes of a frame.
const MAGIC: [u8; 4] = [0x28, 0xb5, 0x2f, 0xfd];

/// Compression level: level 1 with a dictionary compresses these small
/// documents within 5 % of level 3, about a third faster.
const LEVEL: i32 = 1;

/// The store trains its first dictionary when it holds this many versions.
pub const FIRST_TRAINING: i64 = 5_000;

/// ... and another each time it has grown this many times since the last.
pub const GROWTH: i64 = 10;

/// At most this many of the newest versions are the training samples.
pub const SAMPLES: usize = 20_000;

/// A dictionary's largest size (zstd's recommendation for documents of
/// a few kilobytes).
const DICT_BYTES: usize = 64 * 1024;

/// The store's dictionaries: every one, to read frames, and the newest,
/// to write them.
#[derive(Default)]
pub struct Codec {
    readers: RwLock<HashMap<u32, Arc<DecoderDictionary<'static>>>>,
    writer: RwLock<Option<(u32, Arc<EncoderDictionary<'static>>)>>,
}

thread_local! {
    static CCTX: RefCell<zstd_safe::CCtx<'static>> = RefCell::new(zstd_safe::CCtx::create());
    static DCTX: RefCell<zstd_safe::DCtx<'static>> = RefCell::new(zstd_safe::DCtx::create());
}

fn corrupt(what: impl std::fmt::Display) -> StoreError {
    StoreError::Backend(format!("a stored resource body cannot be read: {what}"))
}

impl Codec {
    /// Makes `dict` known for reading and, when `write` is set, the one new
    /// versions are compressed with. Its zstd id, or `None` if it is not a
    /// zstd dictionary.
    pub fn add(&self, dict: &[u8], write: bool) -> Option<u32> {
        let id = dict_id(dict)?;
        if let Ok(mut r) = self.readers.write() {
            r.entry(id)
                .or_insert_with(|| Arc::new(DecoderDictionary::copy(dict)));
        }
        if write && let Ok(mut w) = self.writer.write() {
            *w = Some((id, Arc::new(EncoderDictionary::copy(dict, LEVEL))));
        }
        Some(id)
    }

    /// The id of the dictionary new versions are written with.
    pub fn writing_with(&self) -> Option<u32> {
        self.writer
            .read()
            .ok()
            .and_then(|w| w.as_ref().map(|w| w.0))
    }

    /// What to store for a version's bytes. An empty body (a deletion)
    /// stays empty; without a dictionary the JSON is stored as it is.
    pub fn encode(&self, json: &[u8]) -> Vec<u8> {
        let dict = self.writer.read().ok().and_then(|w| w.clone());
        let Some((_, dict)) = dict.filter(|_| !json.is_empty()) else {
            return json.to_vec();
        };
        let mut out = Vec::with_capacity(zstd_safe::compress_bound(json.len()));
        let done = CCTX.with(|c| {
            c.borrow_mut()
                .compress_using_cdict(&mut out, json, dict.as_cdict())
        });
        match done {
            Ok(_) if out.len() < json.len() => out,
            _ => json.to_vec(),
        }
    }

    /// The version's bytes from what was stored. `fetch` gives the bytes of
    /// a dictionary this codec does not know yet (one another process
    /// trained after this one opened the store).
    pub fn decode(
        &self,
        stored: Vec<u8>,
        fetch: impl FnOnce(u32) -> Result<Option<Vec<u8>>, StoreError>,
    ) -> Result<Vec<u8>, StoreError> {
        if !stored.starts_with(&MAGIC) {
            return Ok(stored);
        }
        let id = zstd_safe::get_dict_id_from_frame(&stored)
            .map(|i| i.get())
            .ok_or_else(|| corrupt("a frame without a dictionary"))?;
        let known = self.readers.read().ok().and_then(|r| r.get(&id).cloned());
        let dict = match known {
            Some(d) => d,
            None => {
                let bytes =
                    fetch(id)?.ok_or_else(|| corrupt(format!("dictionary {id} is missing")))?;
                self.add(&bytes, false);
                self.readers
                    .read()
                    .ok()
                    .and_then(|r| r.get(&id).cloned())
                    .ok_or_else(|| corrupt(format!("dictionary {id} is not a zstd dictionary")))?
            }
        };
        let size = zstd_safe::get_frame_content_size(&stored)
            .ok()
            .flatten()
            .ok_or_else(|| corrupt("a frame without its size"))?;
        let size = usize::try_from(size).map_err(corrupt)?;
        let mut out = Vec::with_capacity(size);
        DCTX.with(|d| {
            d.borrow_mut()
                .decompress_using_ddict(&mut out, &stored, dict.as_ddict())
        })
        .map_err(|code| corrupt(zstd_safe::get_error_name(code)))?;
        Ok(out)
    }
}

/// A zstd dictionary's id, or `None` if `dict` is not one.
pub fn dict_id(dict: &[u8]) -> Option<u32> {
    zstd_safe::get_dict_id_from_dict(dict).map(|i| i.get())
}

/// Whether a store whose newest version is `newest` (its position in write
/// order), with the last dictionary trained at `trained_at` (or none),
/// should train one now.
pub fn due(newest: i64, trained_at: Option<i64>) -> bool {
    match trained_at {
        None => newest >= FIRST_TRAINING,
        Some(at) => newest >= at.max(FIRST_TRAINING).saturating_mul(GROWTH),
    }
}

/// A dictionary trained on `samples` (version bodies as JSON), or `None`
/// when they are too few or too alike for zstd to build one.
pub fn train(samples: &[Vec<u8>]) -> Option<Vec<u8>> {
    let total: usize = samples.iter().map(Vec::len).sum();
    // zstd wants about a hundred times the dictionary's size in samples.
    let size = DICT_BYTES.min(total / 100).max(1024);
    zstd::dict::from_samples(samples, size).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn samples(n: usize) -> Vec<Vec<u8>> {
        (0..n)
            .map(|i| {
                format!(
                    r#"{{"resourceType":"Observation","id":"obs-{i}","meta":{{"versionId":"1","lastUpdated":"2026-11-22T03:{:02}:00Z"}},"status":"final","code":{{"coding":[{{"system":"http://snomed.info/sct","code":"{}","display":"Systolic blood pressure"}}]}},"subject":{{"reference":"Patient/pat-{:06}"}},"valueQuantity":{{"value":{},"unit":"mmHg","system":"http://unitsofmeasure.org","code":"mm[Hg]"}}}}"#,
                    i % 60,
                    271649006 + i % 7,
                    i % 977,
                    100 + i % 61
                )
                .into_bytes()
            })
            .collect()
    }

    #[test]
    fn without_a_dictionary_the_json_is_stored_as_it_is() {
        let codec = Codec::default();
        let json = samples(1).remove(0);
        assert_eq!(codec.encode(&json), json);
        assert_eq!(codec.decode(json.clone(), |_| Ok(None)).ok(), Some(json));
        assert_eq!(codec.encode(b""), b"");
    }

    #[test]
    fn frames_round_trip_and_name_their_dictionary() {
        let all = samples(3000);
        let dict = train(&all).unwrap_or_else(|| panic!("no dictionary"));
        let codec = Codec::default();
        let id = codec.add(&dict, true).unwrap_or_else(|| panic!("no id"));
        assert_eq!(codec.writing_with(), Some(id));
        let json = &all[1234];
        let stored = codec.encode(json);
        assert!(stored.starts_with(&MAGIC));
        assert!(
            stored.len() * 3 < json.len(),
            "{} -> {} bytes",
            json.len(),
            stored.len()
        );
        assert_eq!(
            codec.decode(stored.clone(), |_| Ok(None)).ok(),
            Some(json.clone())
        );
        // Another process's codec fetches the dictionary it lacks.
        let other = Codec::default();
        let mut asked = None;
        let back = other.decode(stored.clone(), |i| {
            asked = Some(i);
            Ok(Some(dict.clone()))
        });
        assert_eq!(back.ok(), Some(json.clone()));
        assert_eq!(asked, Some(id));
        // ... and says so when it is missing, rather than answering garbage.
        let lost = Codec::default().decode(stored, |_| Ok(None));
        assert!(matches!(lost, Err(StoreError::Backend(m)) if m.contains("missing")));
    }

    #[test]
    fn training_follows_the_store_growing() {
        assert!(!due(FIRST_TRAINING - 1, None));
        assert!(due(FIRST_TRAINING, None));
        assert!(!due(FIRST_TRAINING * GROWTH - 1, Some(FIRST_TRAINING)));
        assert!(due(FIRST_TRAINING * GROWTH, Some(FIRST_TRAINING)));
        assert!(due(70_000, Some(6_000)));
        assert!(!due(59_999, Some(6_000)));
    }
}
