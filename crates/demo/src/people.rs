//! Who the patients are: NHS numbers from the test range, British names,
//! addresses with postcodes, and England's age and sex structure.

use rand::Rng;

/// An NHS number in the range reserved for test data (999...), with its
/// Modulus 11 check digit, distinct for each `n` below [`MAX_PATIENTS`].
/// Digits 4 to 8 are `n` scrambled (a bijection), digit 9 the smallest that
/// makes a valid number: its weight is 2, so of two neighbouring values at
/// most one gives the invalid remainder.
pub fn nhs_number(n: u32) -> String {
    let scrambled = (u64::from(n) * 7919) % u64::from(MAX_PATIENTS);
    for last in 0..10 {
        let body = format!("999{scrambled:05}{last}");
        if let Some(check) = check_digit(&body) {
            return format!("{body}{check}");
        }
    }
    // Unreachable: `last` 0 or 1 always gives a valid number.
    format!("999{scrambled:05}00")
}

/// The most patients that get distinct NHS numbers.
pub const MAX_PATIENTS: u32 = 100_000;

/// The Modulus 11 check digit of nine digits, or `None` when the number
/// cannot be valid (the remainder gives 10).
pub fn check_digit(nine: &str) -> Option<u32> {
    let digits: Vec<u32> = nine.chars().filter_map(|c| c.to_digit(10)).collect();
    if digits.len() != 9 {
        return None;
    }
    let sum: u32 = digits.iter().zip((2..=10).rev()).map(|(d, w)| d * w).sum();
    match 11 - sum % 11 {
        11 => Some(0),
        10 => None,
        c => Some(c),
    }
}

/// Whether a ten-digit string is a valid NHS number.
pub fn valid_nhs_number(s: &str) -> bool {
    s.len() == 10
        && s.chars().all(|c| c.is_ascii_digit())
        && check_digit(&s[..9]).and_then(|c| char::from_digit(c, 10)) == s.chars().nth(9)
}

const FEMALE: &[&str] = &[
    "Olivia",
    "Amelia",
    "Isla",
    "Ava",
    "Mia",
    "Grace",
    "Freya",
    "Lily",
    "Sophie",
    "Emily",
    "Poppy",
    "Ella",
    "Evie",
    "Chloe",
    "Jessica",
    "Charlotte",
    "Ruby",
    "Megan",
    "Hannah",
    "Lucy",
    "Sarah",
    "Emma",
    "Rebecca",
    "Laura",
    "Claire",
    "Rachel",
    "Helen",
    "Nicola",
    "Joanne",
    "Susan",
    "Margaret",
    "Patricia",
    "Elizabeth",
    "Jean",
    "Anne",
    "Janet",
    "Christine",
    "Carol",
    "Sandra",
    "Pauline",
    "Aisha",
    "Priya",
    "Fatima",
    "Zainab",
    "Anita",
    "Siobhan",
    "Niamh",
    "Bethan",
    "Rhiannon",
    "Eilidh",
];
const MALE: &[&str] = &[
    "Oliver", "George", "Harry", "Noah", "Jack", "Leo", "Arthur", "Oscar", "Charlie", "Jacob",
    "Thomas", "James", "William", "Daniel", "Joshua", "Samuel", "Matthew", "Ryan", "Adam", "Luke",
    "David", "Paul", "Mark", "Andrew", "Richard", "Stephen", "Michael", "Peter", "John", "Robert",
    "Brian", "Kenneth", "Derek", "Graham", "Keith", "Colin", "Mohammed", "Ahmed", "Ravi", "Sanjay",
    "Kwame", "Tunde", "Rhys", "Owen", "Callum", "Ewan", "Connor", "Liam", "Sean", "Dylan",
];
const FAMILY: &[&str] = &[
    "Smith",
    "Jones",
    "Williams",
    "Taylor",
    "Brown",
    "Davies",
    "Evans",
    "Wilson",
    "Thomas",
    "Johnson",
    "Roberts",
    "Robinson",
    "Thompson",
    "Wright",
    "Walker",
    "White",
    "Edwards",
    "Hughes",
    "Green",
    "Hall",
    "Lewis",
    "Harris",
    "Clarke",
    "Patel",
    "Jackson",
    "Wood",
    "Turner",
    "Martin",
    "Cooper",
    "Hill",
    "Ward",
    "Morris",
    "Moore",
    "Clark",
    "Lee",
    "King",
    "Baker",
    "Harrison",
    "Morgan",
    "Allen",
    "James",
    "Scott",
    "Phillips",
    "Watson",
    "Davis",
    "Parker",
    "Price",
    "Bennett",
    "Young",
    "Griffiths",
    "Mitchell",
    "Kelly",
    "Cook",
    "Carter",
    "Richardson",
    "Bailey",
    "Collins",
    "Bell",
    "Shaw",
    "Murphy",
    "Miller",
    "Cox",
    "Richards",
    "Khan",
    "Marshall",
    "Anderson",
    "Simpson",
    "Ellis",
    "Adams",
    "Singh",
    "Begum",
    "Wilkinson",
    "Foster",
    "Chapman",
    "Powell",
    "Webb",
    "Rogers",
    "Gray",
    "Mason",
    "Ali",
    "Hunt",
    "Hussain",
    "Campbell",
    "Matthews",
    "Owen",
    "Palmer",
    "Holmes",
    "Mills",
    "Barnes",
    "Knight",
    "Lloyd",
    "Butler",
    "Russell",
    "Barker",
    "Fisher",
    "Stevens",
    "Jenkins",
    "Murray",
    "Dixon",
    "Harvey",
    "Okafor",
    "Mensah",
    "Nowak",
    "Kowalski",
    "Chen",
    "Nguyen",
    "O'Brien",
    "McDonald",
];
const STREETS: &[&str] = &[
    "High Street",
    "Station Road",
    "Church Lane",
    "Main Street",
    "Park Road",
    "Victoria Road",
    "Green Lane",
    "Manor Road",
    "Church Street",
    "Park Avenue",
    "Queens Road",
    "The Avenue",
    "New Road",
    "Grange Road",
    "Kings Road",
    "Mill Lane",
    "School Lane",
    "York Road",
    "Chapel Street",
    "Albert Road",
    "Springfield Road",
    "Windsor Road",
    "Beech Grove",
    "Oak Avenue",
    "Elm Close",
    "Meadow Way",
    "Orchard Close",
    "Willow Drive",
    "Hawthorn Crescent",
    "Cherry Tree Walk",
];

/// The practice's town, and the postcode districts its patients live in.
pub const TOWN: &str = "Leeds";
const DISTRICTS: &[&str] = &["LS6", "LS7", "LS8", "LS16", "LS17", "LS4"];

/// A patient's name and address.
pub struct Person {
    pub female: bool,
    pub given: &'static str,
    pub family: &'static str,
    pub line: String,
    pub postcode: String,
}

/// A person of the given sex with an address in the practice's area.
pub fn person(rng: &mut impl Rng, female: bool) -> Person {
    let given = if female {
        pick(rng, FEMALE)
    } else {
        pick(rng, MALE)
    };
    let number = rng.random_range(1..=180u32);
    let street = pick(rng, STREETS);
    let district = pick(rng, DISTRICTS);
    // Inward codes: a digit then two letters, never C, I, K, M, O or V.
    const UNIT: &[u8] = b"ABDEFGHJLNPQRSTUWXYZ";
    let a = UNIT[rng.random_range(0..UNIT.len())] as char;
    let b = UNIT[rng.random_range(0..UNIT.len())] as char;
    Person {
        female,
        given,
        family: pick(rng, FAMILY),
        line: format!("{number} {street}"),
        postcode: format!("{district} {}{a}{b}", rng.random_range(1..=9u32)),
    }
}

/// One element of a non-empty table.
pub fn pick<T: Copy>(rng: &mut impl Rng, table: &[T]) -> T {
    table[rng.random_range(0..table.len())]
}

/// England's population by five-year age band (ONS mid-year estimates,
/// rounded, per thousand), 0-4 to 90+.
const AGE_BANDS: [u32; 19] = [
    55, 60, 61, 57, 60, 66, 68, 66, 63, 64, 69, 67, 59, 51, 50, 37, 25, 15, 9,
];

/// An age in years drawn from England's structure.
pub fn age(rng: &mut impl Rng) -> u32 {
    let total: u32 = AGE_BANDS.iter().sum();
    let mut x = rng.random_range(0..total);
    for (band, w) in AGE_BANDS.iter().enumerate() {
        if x < *w {
            let width = if band == 18 { 10 } else { 5 };
            return band as u32 * 5 + rng.random_range(0..width);
        }
        x -= w;
    }
    40
}

/// Whether a person of this age is female: about even, with more women
/// among the old.
pub fn female(rng: &mut impl Rng, age: u32) -> bool {
    let share = match age {
        0..=64 => 0.495,
        65..=79 => 0.53,
        _ => 0.6,
    };
    rng.random_bool(share)
}

/// The share of the population at each age (0 to 99), from [`AGE_BANDS`],
/// for scaling prevalence by age.
pub fn year_weights() -> Vec<(u32, f64)> {
    let total: f64 = AGE_BANDS.iter().map(|w| f64::from(*w)).sum();
    let mut out = Vec::with_capacity(100);
    for (band, w) in AGE_BANDS.iter().enumerate() {
        let width = if band == 18 { 10 } else { 5 };
        for year in 0..width {
            out.push((
                band as u32 * 5 + year,
                f64::from(*w) / f64::from(width) / total,
            ));
        }
    }
    out
}

/// The coarse band of an age.
pub fn coarse(age: u32) -> usize {
    match age {
        0..=17 => 0,
        18..=39 => 1,
        40..=59 => 2,
        60..=74 => 3,
        _ => 4,
    }
}
