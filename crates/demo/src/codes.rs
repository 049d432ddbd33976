//! The codes the generator writes, in one place: SNOMED CT concepts (every
//! one is in the shipped GP subset, `crates/terminology/data/snomed`; a test
//! checks), dm+d products, and the national code systems for staff roles.

/// SNOMED CT.
pub const SCT: &str = "http://snomed.info/sct";
/// dm+d, as the UK Core examples write it.
pub const DMD: &str = "https://dmd.nhs.uk";

/// A SNOMED CT concept: id and the term the generator displays.
pub type Concept = (&'static str, &'static str);

/// A chronic condition on the problem list.
pub struct Chronic {
    /// The problem's concept.
    pub concept: Concept,
    /// Patients on the register over all registered patients (QOF-style
    /// register prevalence for England, rounded).
    pub prevalence: f64,
    /// Youngest age on the register.
    pub min_age: u32,
    /// Relative likelihood by age band (0-17, 18-39, 40-59, 60-74, 75+):
    /// scaled so that the practice's prevalence comes out at `prevalence`.
    pub by_age: [f64; 5],
    /// Reviews a year (chronic disease clinics).
    pub reviews: u32,
}

/// Conditions and their English register prevalence (QOF 2022-23,
/// rounded): hypertension 14%, diabetes 7%, asthma 6.5%, depression 13%
/// (adults), CKD 4%, hypothyroidism 3.5%, CHD 3%, AF 2.2%, COPD 2%, heart
/// failure 1%.
pub const CHRONIC: &[Chronic] = &[
    Chronic {
        concept: ("38341003", "Hypertension"),
        prevalence: 0.14,
        min_age: 18,
        by_age: [0.0, 0.05, 0.8, 2.2, 3.5],
        reviews: 1,
    },
    Chronic {
        concept: ("44054006", "Type 2 diabetes mellitus"),
        prevalence: 0.065,
        min_age: 25,
        by_age: [0.0, 0.1, 0.9, 2.0, 2.2],
        reviews: 2,
    },
    Chronic {
        concept: ("46635009", "Type 1 diabetes mellitus"),
        prevalence: 0.005,
        min_age: 1,
        by_age: [0.8, 1.0, 1.0, 1.0, 0.8],
        reviews: 2,
    },
    Chronic {
        concept: ("195967001", "Asthma"),
        prevalence: 0.065,
        min_age: 6,
        by_age: [1.0, 1.0, 1.0, 1.0, 1.0],
        reviews: 1,
    },
    Chronic {
        concept: ("13645005", "Chronic obstructive pulmonary disease"),
        prevalence: 0.02,
        min_age: 40,
        by_age: [0.0, 0.0, 0.6, 2.5, 3.0],
        reviews: 1,
    },
    Chronic {
        concept: ("35489007", "Depression"),
        prevalence: 0.11,
        min_age: 18,
        by_age: [0.0, 1.2, 1.1, 0.9, 0.8],
        reviews: 1,
    },
    Chronic {
        concept: ("709044004", "Chronic kidney disease"),
        prevalence: 0.04,
        min_age: 18,
        by_age: [0.0, 0.05, 0.4, 2.0, 5.5],
        reviews: 1,
    },
    Chronic {
        concept: ("40930008", "Hypothyroidism"),
        prevalence: 0.035,
        min_age: 18,
        by_age: [0.0, 0.4, 1.0, 1.8, 2.2],
        reviews: 1,
    },
    Chronic {
        concept: ("414545008", "Ischemic heart disease"),
        prevalence: 0.03,
        min_age: 35,
        by_age: [0.0, 0.0, 0.5, 2.5, 5.0],
        reviews: 1,
    },
    Chronic {
        concept: ("49436004", "Atrial fibrillation"),
        prevalence: 0.022,
        min_age: 40,
        by_age: [0.0, 0.0, 0.2, 2.0, 6.5],
        reviews: 1,
    },
    Chronic {
        concept: ("84114007", "Heart failure"),
        prevalence: 0.01,
        min_age: 40,
        by_age: [0.0, 0.0, 0.2, 1.5, 4.5],
        reviews: 1,
    },
];

/// Index of type 2 diabetes in [`CHRONIC`] (HbA1c follows diabetes).
pub fn is_diabetes(c: &Chronic) -> bool {
    matches!(c.concept.0, "44054006" | "46635009")
}

/// Acute problems a consultation may be about (recorded as resolved).
pub const ACUTE: &[Concept] = &[
    ("49727002", "Cough"),
    ("162397003", "Sore throat"),
    ("161891005", "Back pain"),
    ("25064002", "Headache"),
    ("68566005", "Urinary tract infection"),
    ("65363002", "Otitis media"),
    ("84229001", "Fatigue"),
    ("57676002", "Joint pain"),
    ("271807003", "Rash"),
    ("21522001", "Abdominal pain"),
    ("404640003", "Dizziness"),
    ("193462001", "Insomnia"),
    ("197480006", "Anxiety disorder"),
    ("62315008", "Diarrhoea"),
    ("6142004", "Influenza"),
];

/// Consultation types (Encounter.type).
pub const ENC_SYMPTOM: Concept = ("185345009", "Encounter for symptom");
pub const ENC_PROBLEM: Concept = ("185347001", "Encounter for problem");
pub const ENC_CHECK: Concept = ("185349003", "Encounter for check up");
pub const ENC_FOLLOW_UP: Concept = ("390906007", "Follow-up encounter");
pub const ENC_NEW_PATIENT: Concept = ("185387006", "New patient consultation");

/// Observations.
pub const BP: Concept = ("75367002", "Blood pressure");
pub const SYSTOLIC: Concept = ("271649006", "Systolic blood pressure");
pub const DIASTOLIC: Concept = ("271650006", "Diastolic blood pressure");
pub const HBA1C: Concept = ("43396009", "HbA1c measurement");
pub const BMI: Concept = ("60621009", "Body mass index");
pub const WEIGHT: Concept = ("27113001", "Body weight");
pub const HEIGHT: Concept = ("50373000", "Body height measure");
pub const CHOLESTEROL: Concept = ("77068002", "Cholesterol measurement");
pub const HEART_RATE: Concept = ("364075005", "Heart rate");
pub const SMOKING: Concept = ("365981007", "Tobacco smoking behaviour - finding");
pub const SMOKER: Concept = ("77176002", "Smoker");
pub const EX_SMOKER: Concept = ("8517006", "Ex-smoker");
pub const NEVER_SMOKED: Concept = ("266919005", "Never smoked tobacco");

/// Allergies: (allergy concept, what it is to, category, share of patients).
pub const ALLERGIES: &[(Concept, &str, f64)] = &[
    (("91936005", "Allergy to penicillin"), "medication", 0.06),
    (("91935009", "Allergy to peanuts"), "food", 0.012),
    (("300916003", "Latex allergy"), "environment", 0.008),
];
/// What a patient asked about allergies with none says.
pub const NKDA: Concept = ("409137002", "No known drug allergy");
/// The reaction recorded with an allergy.
pub const RASH: Concept = ("271807003", "Rash");

/// Practitioner roles (PractitionerRole.code, SNOMED occupations are not in
/// the subset; the national RBAC job role is what sign-in will use).
pub const JOB_ROLE: &str = "https://fhir.nhs.uk/CodeSystem/NHSDigital-SDS-JobRoleCode";

/// Every SNOMED CT concept the generator can write.
pub fn snomed_codes() -> Vec<&'static str> {
    let mut out: Vec<&'static str> = CHRONIC.iter().map(|c| c.concept.0).collect();
    out.extend(ACUTE.iter().map(|c| c.0));
    out.extend(ALLERGIES.iter().map(|a| a.0.0));
    out.extend(
        [
            ENC_SYMPTOM,
            ENC_PROBLEM,
            ENC_CHECK,
            ENC_FOLLOW_UP,
            ENC_NEW_PATIENT,
            BP,
            SYSTOLIC,
            DIASTOLIC,
            HBA1C,
            BMI,
            WEIGHT,
            HEIGHT,
            CHOLESTEROL,
            HEART_RATE,
            SMOKING,
            SMOKER,
            EX_SMOKER,
            NEVER_SMOKED,
            NKDA,
            RASH,
        ]
        .iter()
        .map(|c| c.0),
    );
    out
}

/// A repeat medicine: the dm+d VMP and its usual directions.
pub struct Medicine {
    pub vmp: &'static str,
    pub name: &'static str,
    pub dose: &'static str,
    /// Quantity per 28-day issue and its unit.
    pub quantity: u32,
    pub unit: &'static str,
}

/// Repeat medicines by the condition they treat (SNOMED id of the
/// condition): the usual first-line treatments of English primary care,
/// as VMPs of the shipped dm+d sample (`gp_terminology::dmd::shipped`,
/// whose ids are project-assigned), so that every one resolves in the
/// server's own dm+d (`$lookup`, the prescribing search). A test checks
/// each id names that VMP.
pub const REPEATS: &[(&str, Medicine)] = &[
    (
        "38341003",
        Medicine {
            vmp: "2000029999998102",
            name: "Amlodipine 5mg tablets",
            dose: "One tablet once a day",
            quantity: 28,
            unit: "tablet",
        },
    ),
    (
        "38341003",
        Medicine {
            vmp: "2000069999998106",
            name: "Ramipril 5mg capsules",
            dose: "One capsule once a day",
            quantity: 28,
            unit: "capsule",
        },
    ),
    (
        "44054006",
        Medicine {
            vmp: "2000659999998104",
            name: "Metformin 500mg tablets",
            dose: "One tablet twice a day with meals",
            quantity: 56,
            unit: "tablet",
        },
    ),
    (
        "44054006",
        Medicine {
            vmp: "2000409999998100",
            name: "Atorvastatin 20mg tablets",
            dose: "One tablet at night",
            quantity: 28,
            unit: "tablet",
        },
    ),
    (
        "44054006",
        Medicine {
            vmp: "2000689999998105",
            name: "Gliclazide 80mg tablets",
            dose: "One tablet each morning with breakfast",
            quantity: 28,
            unit: "tablet",
        },
    ),
    (
        "46635009",
        Medicine {
            vmp: "2000409999998100",
            name: "Atorvastatin 20mg tablets",
            dose: "One tablet at night",
            quantity: 28,
            unit: "tablet",
        },
    ),
    (
        "195967001",
        Medicine {
            vmp: "2001899999998103",
            name: "Salbutamol 100micrograms/dose inhaler",
            dose: "Two puffs when required",
            quantity: 200,
            unit: "dose",
        },
    ),
    (
        "195967001",
        Medicine {
            vmp: "2001909999998104",
            name: "Beclometasone 100micrograms/dose inhaler",
            dose: "Two puffs twice a day",
            quantity: 200,
            unit: "dose",
        },
    ),
    (
        "195967001",
        Medicine {
            vmp: "2001889999998101",
            name: "Montelukast 10mg tablets",
            dose: "One tablet at night",
            quantity: 28,
            unit: "tablet",
        },
    ),
    (
        "13645005",
        Medicine {
            vmp: "2001899999998103",
            name: "Salbutamol 100micrograms/dose inhaler",
            dose: "Two puffs up to four times a day when required",
            quantity: 200,
            unit: "dose",
        },
    ),
    (
        "13645005",
        Medicine {
            vmp: "2001919999998101",
            name: "Tiotropium 2.5micrograms/dose inhaler",
            dose: "Two puffs once a day",
            quantity: 60,
            unit: "dose",
        },
    ),
    (
        "35489007",
        Medicine {
            vmp: "2001199999998106",
            name: "Sertraline 50mg tablets",
            dose: "One tablet once a day",
            quantity: 28,
            unit: "tablet",
        },
    ),
    (
        "709044004",
        Medicine {
            vmp: "2000069999998106",
            name: "Ramipril 5mg capsules",
            dose: "One capsule once a day",
            quantity: 28,
            unit: "capsule",
        },
    ),
    (
        "709044004",
        Medicine {
            vmp: "2000409999998100",
            name: "Atorvastatin 20mg tablets",
            dose: "One tablet at night",
            quantity: 28,
            unit: "tablet",
        },
    ),
    (
        "40930008",
        Medicine {
            vmp: "2000809999998102",
            name: "Levothyroxine sodium 100microgram tablets",
            dose: "One tablet each morning",
            quantity: 28,
            unit: "tablet",
        },
    ),
    (
        "414545008",
        Medicine {
            vmp: "2000509999998104",
            name: "Aspirin 75mg gastro-resistant tablets",
            dose: "One tablet once a day",
            quantity: 28,
            unit: "tablet",
        },
    ),
    (
        "414545008",
        Medicine {
            vmp: "2000409999998100",
            name: "Atorvastatin 20mg tablets",
            dose: "One tablet at night",
            quantity: 28,
            unit: "tablet",
        },
    ),
    (
        "414545008",
        Medicine {
            vmp: "2000249999998104",
            name: "Bisoprolol 2.5mg tablets",
            dose: "One tablet once a day",
            quantity: 28,
            unit: "tablet",
        },
    ),
    (
        "49436004",
        Medicine {
            vmp: "2000539999998105",
            name: "Apixaban 5mg tablets",
            dose: "One tablet twice a day",
            quantity: 56,
            unit: "tablet",
        },
    ),
    (
        "49436004",
        Medicine {
            vmp: "2000249999998104",
            name: "Bisoprolol 2.5mg tablets",
            dose: "One tablet once a day",
            quantity: 28,
            unit: "tablet",
        },
    ),
    (
        "84114007",
        Medicine {
            vmp: "2000369999998108",
            name: "Furosemide 40mg tablets",
            dose: "One tablet each morning",
            quantity: 28,
            unit: "tablet",
        },
    ),
    (
        "84114007",
        Medicine {
            vmp: "2000249999998104",
            name: "Bisoprolol 2.5mg tablets",
            dose: "One tablet once a day",
            quantity: 28,
            unit: "tablet",
        },
    ),
    (
        "84114007",
        Medicine {
            vmp: "2000069999998106",
            name: "Ramipril 5mg capsules",
            dose: "One capsule once a day",
            quantity: 28,
            unit: "capsule",
        },
    ),
];

/// Vaccines (dm+d products from the UK Core and EPS examples).
pub const FLU_VACCINE: (&str, &str) = (
    "11278411000001109",
    "Influenza vaccine (split virion, inactivated) suspension for injection 0.5ml pre-filled syringes (Pfizer Ltd)",
);
pub const COVID_VACCINE: (&str, &str) = (
    "39115611000001103",
    "Comirnaty COVID-19 mRNA Vaccine 30micrograms/0.3ml dose concentrate for dispersion for injection multidose vials (Pfizer Ltd)",
);
pub const INFANT_VACCINE: (&str, &str) = (
    "10795711000001100",
    "Diphtheria / Tetanus / Pertussis (acellular component) / Poliomyelitis (inactivated) / Haemophilus type b conjugate vaccine (adsorbed) powder and suspension for suspension for injection 0.5ml pre-filled syringes",
);
