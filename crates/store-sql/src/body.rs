//! How a version's JSON is kept on disk: a zstd frame compressed with a
//! dictionary the store trained on its own resources, or, before the store
//! has one, the JSON as it is.
//!
//! Each practice has its own dictionaries, trained on its own versions
//! only, so that nothing of one practice's records is ever needed to read
//! or write another's.
//!
//! FHIR JSON repeats itself across resources (element names, code system
//! URLs, profile and extension URLs, the shape of an AuditEvent), and a
//! resource is too small (1 to 3 KB) for a compressor to learn that from
//! the resource alone: zstd on its own shrinks a Synthea resource 1.8
//! times, with a dictionary trained on the store's own resources about 5
//! times (docs/benchmarks.md). A practice's first dictionary is trained once
//! it holds [`FIRST_TRAINING`] versions, and another each time it has grown
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
use std::sync::{Arc, Mutex, RwLock};

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

/// A store's dictionaries, per practice: every one, to read frames, the
/// newest, to write them, and when to train the next.
#[derive(Default)]
pub struct Codec {
    readers: RwLock<HashMap<(i64, u32), Arc<DecoderDictionary<'static>>>>,
    writers: RwLock<HashMap<i64, Arc<EncoderDictionary<'static>>>>,
    training: Mutex<HashMap<i64, Training>>,
}

/// A practice's training bookkeeping.
#[derive(Clone, Copy, Debug, Default)]
struct Training {
    /// The practice's versions when its last dictionary was trained.
    trained_at: Option<i64>,
    /// A training is under way.
    busy: bool,
    /// The practice's versions when the store last counted them (none yet
    /// in this process), and those encoded since.
    counted: Option<i64>,
    encoded: i64,
}

thread_local! {
    static CCTX: RefCell<zstd_safe::CCtx<'static>> = RefCell::new(zstd_safe::CCtx::create());
    static DCTX: RefCell<zstd_safe::DCtx<'static>> = RefCell::new(zstd_safe::DCtx::create());
}

fn corrupt(what: impl std::fmt::Display) -> StoreError {
    StoreError::Backend(format!("a stored resource body cannot be read: {what}"))
}

impl Codec {
    /// Makes `dict`, trained on `practice`'s versions when it held
    /// `trained_at`, known for reading its frames and, when `write` is set,
    /// the one its new versions are compressed with. Its zstd id, or `None`
    /// if it is not a zstd dictionary.
    pub fn add(&self, practice: i64, dict: &[u8], trained_at: i64, write: bool) -> Option<u32> {
        let id = dict_id(dict)?;
        if let Ok(mut r) = self.readers.write() {
            r.entry((practice, id))
                .or_insert_with(|| Arc::new(DecoderDictionary::copy(dict)));
        }
        if write {
            if let Ok(mut w) = self.writers.write() {
                w.insert(practice, Arc::new(EncoderDictionary::copy(dict, LEVEL)));
            }
            if let Ok(mut t) = self.training.lock() {
                let t = t.entry(practice).or_default();
                t.trained_at = t.trained_at.max(Some(trained_at));
            }
        }
        Some(id)
    }

    /// The practices that wrote versions in this process whose count the
    /// store has not given yet ([`Codec::counted`]).
    pub fn uncounted(&self) -> Vec<i64> {
        let Ok(t) = self.training.lock() else {
            return Vec::new();
        };
        t.iter()
            .filter(|(_, t)| t.counted.is_none() && t.encoded > 0)
            .map(|(p, _)| *p)
            .collect()
    }

    /// `practice` holds `versions`, every one encoded so far included.
    pub fn counted(&self, practice: i64, versions: i64) {
        if let Ok(mut t) = self.training.lock() {
            let t = t.entry(practice).or_default();
            t.counted = Some(versions);
            t.encoded = 0;
        }
    }

    /// The practices that should train a dictionary now, with their
    /// versions; each is marked as training until [`Codec::trained`].
    pub fn start_training(&self) -> Vec<(i64, i64)> {
        let Ok(mut t) = self.training.lock() else {
            return Vec::new();
        };
        let mut due_now = Vec::new();
        for (p, t) in t.iter_mut() {
            let Some(counted) = t.counted else { continue };
            let versions = counted + t.encoded;
            if !t.busy && due(versions, t.trained_at) {
                t.busy = true;
                due_now.push((*p, versions));
            }
        }
        due_now
    }

    /// Starts a thread named `thread` for each practice due to train
    /// ([`Codec::start_training`]). `work(practice, versions)` samples,
    /// trains and has the dictionary stored before anything is written
    /// with it, answering its size; this logs how it went and marks the
    /// training ended on every path.
    pub fn spawn_training<W>(self: &Arc<Self>, thread: &str, work: W)
    where
        W: Fn(i64, i64) -> Result<usize, StoreError> + Clone + Send + 'static,
    {
        for (practice, versions) in self.start_training() {
            let (codec, work) = (self.clone(), work.clone());
            let spawned = std::thread::Builder::new()
                .name(thread.into())
                .spawn(move || {
                    let started = std::time::Instant::now();
                    match work(practice, versions) {
                        Ok(bytes) => tracing::info!(
                            practice,
                            versions,
                            bytes,
                            ms = started.elapsed().as_millis() as u64,
                            "trained a dictionary for resource bodies"
                        ),
                        Err(e) => tracing::warn!(error = %e, practice, "training a dictionary"),
                    }
                    codec.trained(practice, versions);
                });
            if let Err(e) = spawned {
                tracing::warn!(error = %e, "starting the dictionary training");
                self.trained(practice, versions);
            }
        }
    }

    /// A training of `practice` at `versions` ended; with a dictionary it
    /// was [`Codec::add`]ed first. Either way the next waits for the
    /// practice to grow.
    pub fn trained(&self, practice: i64, versions: i64) {
        if let Ok(mut t) = self.training.lock() {
            let t = t.entry(practice).or_default();
            t.busy = false;
            t.trained_at = t.trained_at.max(Some(versions));
        }
    }

    /// What to store for a version of `practice`. An empty body (a
    /// deletion) stays empty; without a dictionary the JSON is stored as
    /// it is.
    pub fn encode(&self, practice: i64, json: &[u8]) -> Vec<u8> {
        if let Ok(mut t) = self.training.lock() {
            t.entry(practice).or_default().encoded += 1;
        }
        let dict = self
            .writers
            .read()
            .ok()
            .and_then(|w| w.get(&practice).cloned());
        let Some(dict) = dict.filter(|_| !json.is_empty()) else {
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

    /// The bytes of a version of `practice` from what was stored. `fetch`
    /// gives the bytes of one of the practice's dictionaries this codec
    /// does not know yet (one another process trained after this one
    /// opened the store).
    pub fn decode(
        &self,
        practice: i64,
        stored: Vec<u8>,
        fetch: impl FnOnce(u32) -> Result<Option<Vec<u8>>, StoreError>,
    ) -> Result<Vec<u8>, StoreError> {
        if !stored.starts_with(&MAGIC) {
            return Ok(stored);
        }
        let id = zstd_safe::get_dict_id_from_frame(&stored)
            .map(|i| i.get())
            .ok_or_else(|| corrupt("a frame without a dictionary"))?;
        let known = |c: &Codec| {
            c.readers
                .read()
                .ok()
                .and_then(|r| r.get(&(practice, id)).cloned())
        };
        let dict = match known(self) {
            Some(d) => d,
            None => {
                let bytes =
                    fetch(id)?.ok_or_else(|| corrupt(format!("dictionary {id} is missing")))?;
                if dict_id(&bytes) != Some(id) {
                    return Err(corrupt(format!("dictionary {id} is not the one stored")));
                }
                if let Ok(mut r) = self.readers.write() {
                    r.entry((practice, id))
                        .or_insert_with(|| Arc::new(DecoderDictionary::copy(&bytes)));
                }
                known(self).ok_or_else(|| corrupt(format!("dictionary {id}")))?
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

/// Whether a practice holding `versions`, whose last dictionary was
/// trained at `trained_at` versions (or none), should train one now.
fn due(versions: i64, trained_at: Option<i64>) -> bool {
    match trained_at {
        None => versions >= FIRST_TRAINING,
        Some(at) => versions >= at.max(FIRST_TRAINING).saturating_mul(GROWTH),
    }
}

/// A dictionary trained on `samples` (version bodies as JSON); an error
/// when they are too few or too alike for zstd to build one.
pub fn train(samples: &[Vec<u8>]) -> Result<Vec<u8>, StoreError> {
    let total: usize = samples.iter().map(Vec::len).sum();
    // zstd wants about a hundred times the dictionary's size in samples.
    let size = DICT_BYTES.min(total / 100).max(1024);
    zstd::dict::from_samples(samples, size)
        .ok()
        .filter(|d| dict_id(d).is_some())
        .ok_or_else(|| {
            StoreError::Backend(format!(
                "no dictionary from {} samples ({total} bytes)",
                samples.len()
            ))
        })
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
        assert_eq!(codec.encode(1, &json), json);
        assert_eq!(codec.decode(1, json.clone(), |_| Ok(None)).ok(), Some(json));
        assert_eq!(codec.encode(1, b""), b"");
    }

    #[test]
    fn frames_round_trip_and_name_their_practice_s_dictionary() {
        let all = samples(3000);
        let dict = train(&all).unwrap_or_else(|e| panic!("{e}"));
        let codec = Codec::default();
        let id = codec
            .add(1, &dict, 3000, true)
            .unwrap_or_else(|| panic!("no id"));
        let json = &all[1234];
        let stored = codec.encode(1, json);
        assert!(stored.starts_with(&MAGIC));
        assert!(
            stored.len() * 3 < json.len(),
            "{} -> {} bytes",
            json.len(),
            stored.len()
        );
        assert_eq!(
            codec.decode(1, stored.clone(), |_| Ok(None)).ok(),
            Some(json.clone())
        );
        // Another practice has no dictionary: its versions stay JSON, and
        // a frame of practice 1 read as practice 2's is not decoded with
        // practice 1's dictionary.
        assert_eq!(codec.encode(2, json), *json);
        assert!(codec.decode(2, stored.clone(), |_| Ok(None)).is_err());
        // Another process's codec fetches the dictionary it lacks...
        let other = Codec::default();
        let mut asked = None;
        let back = other.decode(1, stored.clone(), |i| {
            asked = Some(i);
            Ok(Some(dict.clone()))
        });
        assert_eq!(back.ok(), Some(json.clone()));
        assert_eq!(asked, Some(id));
        // ... and says so when it is missing, rather than answering garbage.
        let lost = Codec::default().decode(1, stored, |_| Ok(None));
        assert!(matches!(lost, Err(StoreError::Backend(m)) if m.contains("missing")));
    }

    #[test]
    fn each_practice_trains_as_it_grows() {
        let codec = Codec::default();
        for _ in 0..10 {
            codec.encode(1, b"{}");
        }
        codec.encode(2, b"{}");
        let mut uncounted = codec.uncounted();
        uncounted.sort();
        assert_eq!(uncounted, vec![1, 2]);
        assert!(codec.start_training().is_empty(), "nothing counted yet");
        codec.counted(1, FIRST_TRAINING - 1);
        codec.counted(2, 10);
        assert!(codec.uncounted().is_empty());
        assert!(codec.start_training().is_empty());
        codec.encode(1, b"{}");
        assert_eq!(codec.start_training(), vec![(1, FIRST_TRAINING)]);
        codec.encode(1, b"{}");
        assert!(codec.start_training().is_empty(), "one training at a time");
        codec.trained(1, FIRST_TRAINING);
        codec.counted(1, FIRST_TRAINING * GROWTH - 1);
        assert!(codec.start_training().is_empty());
        codec.encode(1, b"{}");
        assert_eq!(codec.start_training(), vec![(1, FIRST_TRAINING * GROWTH)]);
        assert!(due(70_000, Some(6_000)));
        assert!(!due(59_999, Some(6_000)));
    }
}
