//! The practice itself: the Organization, its sites and rooms, its staff in
//! their national roles, and the appointment book (a Schedule per
//! clinician, Slots over the fortnight before and the four weeks after the
//! reference date, Appointments in the booked ones).

use rand::Rng;
use serde_json::{Value, json};
use time::Weekday;

use crate::Options;
use crate::codes::JOB_ROLE;
use crate::fhir::{add_days, coded, date, datetime, reference};

/// The practice's Organization id.
pub const ORG: &str = "practice";
/// Sites and their rooms: (id, name, part of).
pub const LOCATIONS: &[(&str, &str, Option<&str>)] = &[
    (
        "site-main",
        "Main Surgery, 1 Chapel Street, Leeds LS6 3AB",
        None,
    ),
    (
        "site-branch",
        "Meanwood Branch Surgery, 22 Green Road, Leeds LS6 4LA",
        None,
    ),
    ("room-main-1", "Consulting room 1", Some("site-main")),
    ("room-main-2", "Consulting room 2", Some("site-main")),
    ("room-main-3", "Consulting room 3", Some("site-main")),
    ("room-main-nurse", "Nurse treatment room", Some("site-main")),
    ("room-main-hca", "Phlebotomy room", Some("site-main")),
    ("room-branch-1", "Consulting room", Some("site-branch")),
    ("room-branch-nurse", "Treatment room", Some("site-branch")),
];

/// What a member of staff does, which decides their appointment book.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Gp,
    Nurse,
    Hca,
    Pharmacist,
    Admin,
}

/// A member of staff.
#[derive(Debug)]
pub struct StaffMember {
    /// The Practitioner id (the PractitionerRole is `role-` + this).
    pub id: &'static str,
    pub prefix: &'static str,
    pub given: &'static str,
    pub family: &'static str,
    /// National RBAC job role code and name (DOMAIN.md: R8000 clinical
    /// practitioner, R8001 nurse ...).
    pub role: (&'static str, &'static str),
    pub kind: Kind,
    /// The room they usually work in.
    pub room: &'static str,
    /// A synthetic SDS user id (12 digits starting 555, not allocated).
    pub sds: &'static str,
}

/// The staff.
pub const STAFF: &[StaffMember] = &[
    staff(
        "gp-patel",
        "Dr",
        "Anita",
        "Patel",
        GP,
        Kind::Gp,
        "room-main-1",
        "555000000011",
    ),
    staff(
        "gp-hughes",
        "Dr",
        "Owen",
        "Hughes",
        GP,
        Kind::Gp,
        "room-main-2",
        "555000000012",
    ),
    staff(
        "gp-okafor",
        "Dr",
        "Chiamaka",
        "Okafor",
        GP,
        Kind::Gp,
        "room-main-3",
        "555000000013",
    ),
    staff(
        "gp-lindqvist",
        "Dr",
        "Erik",
        "Lindqvist",
        GP,
        Kind::Gp,
        "room-branch-1",
        "555000000014",
    ),
    staff(
        "nurse-byrne",
        "",
        "Siobhan",
        "Byrne",
        NURSE,
        Kind::Nurse,
        "room-main-nurse",
        "555000000021",
    ),
    staff(
        "nurse-shah",
        "",
        "Priya",
        "Shah",
        NURSE,
        Kind::Nurse,
        "room-branch-nurse",
        "555000000022",
    ),
    staff(
        "hca-walker",
        "",
        "Dean",
        "Walker",
        HEALTH_PROFESSIONAL,
        Kind::Hca,
        "room-main-hca",
        "555000000031",
    ),
    staff(
        "pharm-ahmed",
        "",
        "Yusuf",
        "Ahmed",
        HEALTH_PROFESSIONAL,
        Kind::Pharmacist,
        "room-main-hca",
        "555000000032",
    ),
    staff(
        "rec-morris",
        "",
        "Julie",
        "Morris",
        RECEPTIONIST,
        Kind::Admin,
        "site-main",
        "555000000041",
    ),
    staff(
        "rec-evans",
        "",
        "Tom",
        "Evans",
        RECEPTIONIST,
        Kind::Admin,
        "site-branch",
        "555000000042",
    ),
    staff(
        "sec-kowalska",
        "",
        "Marta",
        "Kowalska",
        SECRETARY,
        Kind::Admin,
        "site-main",
        "555000000043",
    ),
    staff(
        "pm-clarke",
        "",
        "Helen",
        "Clarke",
        ADMIN,
        Kind::Admin,
        "site-main",
        "555000000044",
    ),
];

const GP: (&str, &str) = ("R8000", "Clinical Practitioner Access Role");
const NURSE: (&str, &str) = ("R8001", "Nurse Access Role");
const HEALTH_PROFESSIONAL: (&str, &str) = ("R8003", "Health Professional Access Role");
const SECRETARY: (&str, &str) = ("R8006", "Medical Secretary Access Role");
const ADMIN: (&str, &str) = ("R8008", "Admin/Clinical Support Access Role");
const RECEPTIONIST: (&str, &str) = ("R8009", "Receptionist Access Role");

#[allow(clippy::too_many_arguments)]
const fn staff(
    id: &'static str,
    prefix: &'static str,
    given: &'static str,
    family: &'static str,
    role: (&'static str, &'static str),
    kind: Kind,
    room: &'static str,
    sds: &'static str,
) -> StaffMember {
    StaffMember {
        id,
        prefix,
        given,
        family,
        role,
        kind,
        room,
        sds,
    }
}

/// Staff of a kind.
pub fn of_kind(kind: Kind) -> impl Iterator<Item = &'static StaffMember> {
    STAFF.iter().filter(move |s| s.kind == kind)
}

pub fn generate(opts: &Options, rng: &mut impl Rng) -> Vec<Value> {
    let mut out = vec![json!({
        "resourceType": "Organization",
        "id": ORG,
        "identifier": [{ "system": "https://fhir.nhs.uk/Id/ods-organization-code", "value": opts.ods }],
        "active": true,
        "type": [coded("https://fhir.nhs.uk/CodeSystem/organisation-role", "76", "GP PRACTICE")],
        "name": opts.name,
        "telecom": [{ "system": "phone", "value": "0113 496 0000", "use": "work" }],
        "address": [{ "line": ["1 Chapel Street"], "city": "Leeds", "postalCode": "LS6 3AB", "country": "GB" }]
    })];
    for (id, name, part_of) in LOCATIONS {
        let (code, display) = match part_of {
            None => ("si", "Site"),
            Some(_) => ("ro", "Room"),
        };
        let mut loc = json!({
            "resourceType": "Location",
            "id": id,
            "status": "active",
            "name": name,
            "mode": "instance",
            "physicalType": coded("http://terminology.hl7.org/CodeSystem/location-physical-type", code, display),
            "managingOrganization": reference("Organization", ORG)
        });
        if let Some(site) = part_of {
            loc["partOf"] = reference("Location", site);
        }
        out.push(loc);
    }
    for s in STAFF {
        let mut name = json!({ "use": "official", "family": s.family, "given": [s.given] });
        if !s.prefix.is_empty() {
            name["prefix"] = json!([s.prefix]);
        }
        out.push(json!({
            "resourceType": "Practitioner",
            "id": s.id,
            "identifier": [{ "system": "https://fhir.nhs.uk/Id/sds-user-id", "value": s.sds }],
            "active": true,
            "name": [name]
        }));
        out.push(json!({
            "resourceType": "PractitionerRole",
            "id": format!("role-{}", s.id),
            "identifier": [{ "system": "https://fhir.nhs.uk/Id/sds-role-profile-id", "value": format!("{}9", s.sds) }],
            "active": true,
            "practitioner": reference("Practitioner", s.id),
            "organization": reference("Organization", ORG),
            "code": [coded(JOB_ROLE, s.role.0, s.role.1)],
            "location": [reference("Location", s.room)]
        }));
    }
    appointment_book(opts, rng, &mut out);
    out
}

/// A Schedule per clinician; slots on weekdays from 14 days before the
/// reference date to 28 days after (mornings 08:30-12:00 and afternoons
/// 14:00-17:30); most past slots and fewer future ones booked.
fn appointment_book(opts: &Options, rng: &mut impl Rng, out: &mut Vec<Value>) {
    let from = add_days(opts.today, -14);
    let to = add_days(opts.today, 28);
    let clinicians = STAFF.iter().filter(|s| s.kind != Kind::Admin);
    for s in clinicians {
        let schedule = format!("schedule-{}", s.id);
        out.push(json!({
            "resourceType": "Schedule",
            "id": schedule,
            "active": true,
            "actor": [reference("Practitioner", s.id), reference("Location", s.room)],
            "planningHorizon": { "start": date(from), "end": date(to) },
            "comment": format!("{} {} {}", s.prefix, s.given, s.family).trim().to_owned()
        }));
        let length = if s.kind == Kind::Gp { 10 } else { 15 };
        let mut day = from;
        let mut n = 0u32;
        while day < to {
            if !matches!(day.weekday(), Weekday::Saturday | Weekday::Sunday) {
                let ahead = crate::fhir::days_between(opts.today, day);
                for (start, end) in [(8 * 60 + 30, 12 * 60), (14 * 60, 17 * 60 + 30)] {
                    let mut m = start;
                    while m + length <= end {
                        n += 1;
                        let slot = format!("slot-{}-{n:05}", s.id);
                        // Past sessions were nearly full; the future fills
                        // up as it gets closer.
                        let booked_share = if ahead < 0 {
                            0.85
                        } else {
                            (0.9 - 0.025 * ahead as f64).max(0.15)
                        };
                        let booked = rng.random_bool(booked_share);
                        out.push(json!({
                            "resourceType": "Slot",
                            "id": slot,
                            "schedule": reference("Schedule", &schedule),
                            "status": if booked { "busy" } else { "free" },
                            "start": datetime(day, m),
                            "end": datetime(day, m + length)
                        }));
                        if booked {
                            out.push(appointment(opts, rng, s, &slot, day, m, m + length, ahead));
                        }
                        m += length;
                    }
                }
            }
            day = add_days(day, 1);
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn appointment(
    opts: &Options,
    rng: &mut impl Rng,
    s: &StaffMember,
    slot: &str,
    day: time::Date,
    start: u32,
    end: u32,
    ahead: i64,
) -> Value {
    let patient = crate::patient::patient_id(rng.random_range(0..opts.patients.max(1)));
    let status = if ahead >= 0 {
        "booked"
    } else {
        match rng.random_range(0..100) {
            0..=3 => "noshow",
            _ => "fulfilled",
        }
    };
    let booked_on = add_days(day, -rng.random_range(0..21));
    json!({
        "resourceType": "Appointment",
        "id": slot.replacen("slot-", "appt-", 1),
        "status": status,
        "appointmentType": coded("http://terminology.hl7.org/CodeSystem/v2-0276", "ROUTINE", "Routine appointment - default if not valued"),
        "start": datetime(day, start),
        "end": datetime(day, end),
        "slot": [reference("Slot", slot)],
        "created": date(booked_on),
        "participant": [
            { "actor": reference("Patient", &patient), "required": "required", "status": "accepted" },
            { "actor": reference("Practitioner", s.id), "required": "required", "status": "accepted" },
            { "actor": reference("Location", s.room), "required": "required", "status": "accepted" }
        ]
    })
}
