//! A synthetic UK general practice as FHIR R4 resources (JSON), generated
//! deterministically from a seed and a reference date: the practice
//! (Organization with its ODS code), its sites and rooms (Location), staff
//! in their national roles (Practitioner, PractitionerRole), sessions, slots
//! and appointments around the reference date (Schedule, Slot,
//! Appointment), and registered patients with years of coded records:
//! problems (Condition) at about their English prevalence, consultations
//! (Encounter), observations that fit the problems, repeat medicines
//! (MedicationRequest), allergies, immunisations and letters.
//!
//! Every resource carries its id, so the caller writes them with `PUT`
//! (update as create) in any grouping and order. The same seed, size and
//! date give byte-identical resources on every platform (ChaCha8 streams,
//! integer date arithmetic, no floating-point library functions). Patient
//! `i` comes from its own random stream, so patients can be generated in
//! parallel and in any order.
//!
//! Pure: no IO.

mod codes;
mod fhir;
mod patient;
pub mod people;
mod practice;

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde_json::Value;
use time::Date;

pub use codes::snomed_codes;
pub use practice::{STAFF, StaffMember};

/// What to generate.
#[derive(Clone, Debug)]
pub struct Options {
    /// The seed: the same seed gives the same practice.
    pub seed: u64,
    /// Registered patients.
    pub patients: u32,
    /// The reference date ("today"): history runs up to it, future
    /// appointments after it.
    pub today: Date,
    /// Years of consultations before the reference date.
    pub years: u32,
    /// The practice's ODS code and name.
    pub ods: String,
    pub name: String,
}

impl Options {
    /// A practice of the default size (2,000 patients, five years).
    pub fn new(seed: u64, today: Date, ods: &str, name: &str) -> Options {
        Options {
            seed,
            patients: 2_000,
            today,
            years: 5,
            ods: ods.to_owned(),
            name: name.to_owned(),
        }
    }
}

/// The generator for one practice.
pub struct Demo {
    opts: Options,
    /// For each chronic condition, the factor that turns its relative
    /// likelihood by age into a probability, so that the practice's
    /// prevalence matches the published one.
    scale: Vec<f64>,
}

impl Demo {
    pub fn new(opts: Options) -> Demo {
        let weights = people::year_weights();
        let scale = codes::CHRONIC
            .iter()
            .map(|c| {
                let expected: f64 = weights
                    .iter()
                    .filter(|(age, _)| *age >= c.min_age)
                    .map(|(age, w)| w * c.by_age[people::coarse(*age)])
                    .sum();
                if expected > 0.0 {
                    c.prevalence / expected
                } else {
                    0.0
                }
            })
            .collect();
        Demo { opts, scale }
    }

    pub fn options(&self) -> &Options {
        &self.opts
    }

    /// The practice's own resources: organisation, sites, rooms, staff,
    /// schedules, slots and appointments.
    pub fn practice(&self) -> Vec<Value> {
        practice::generate(&self.opts, &mut self.rng(0))
    }

    /// Patient `i`'s record (0-based, below `patients`), the Patient first.
    pub fn patient(&self, i: u32) -> Vec<Value> {
        patient::generate(&self.opts, &self.scale, i, &mut self.rng(u64::from(i) + 1))
    }

    /// The id of patient `i`'s Patient resource.
    pub fn patient_id(i: u32) -> String {
        patient::patient_id(i)
    }

    /// Patient `i`'s own random stream: independent of every other
    /// patient's, so that generation order does not matter.
    fn rng(&self, stream: u64) -> ChaCha8Rng {
        let mut rng = ChaCha8Rng::seed_from_u64(self.opts.seed);
        rng.set_stream(stream);
        rng
    }
}
