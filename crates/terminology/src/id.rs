//! SNOMED CT identifiers (SCTIDs): 6 to 18 digits, the last a Verhoeff check
//! digit, the two before it the partition (concept, description,
//! relationship; short or extension form).

use std::fmt;

/// A SNOMED CT identifier whose check digit is right. dm+d ids are SCTIDs too.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SctId(u64);

const D: [[u8; 10]; 10] = [
    [0, 1, 2, 3, 4, 5, 6, 7, 8, 9],
    [1, 2, 3, 4, 0, 6, 7, 8, 9, 5],
    [2, 3, 4, 0, 1, 7, 8, 9, 5, 6],
    [3, 4, 0, 1, 2, 8, 9, 5, 6, 7],
    [4, 0, 1, 2, 3, 9, 5, 6, 7, 8],
    [5, 9, 8, 7, 6, 0, 4, 3, 2, 1],
    [6, 5, 9, 8, 7, 1, 0, 4, 3, 2],
    [7, 6, 5, 9, 8, 2, 1, 0, 4, 3],
    [8, 7, 6, 5, 9, 3, 2, 1, 0, 4],
    [9, 8, 7, 6, 5, 4, 3, 2, 1, 0],
];
const P: [[u8; 10]; 8] = [
    [0, 1, 2, 3, 4, 5, 6, 7, 8, 9],
    [1, 5, 7, 6, 2, 8, 3, 0, 9, 4],
    [5, 8, 0, 3, 7, 9, 6, 1, 4, 2],
    [8, 9, 1, 6, 0, 4, 3, 5, 2, 7],
    [9, 4, 5, 3, 1, 2, 6, 8, 7, 0],
    [4, 2, 8, 6, 5, 7, 3, 9, 0, 1],
    [2, 7, 9, 3, 8, 0, 6, 4, 1, 5],
    [7, 0, 4, 6, 9, 1, 3, 2, 5, 8],
];
const INV: [u8; 10] = [0, 4, 3, 2, 1, 5, 6, 7, 8, 9];

/// Whether the digits (check digit last) pass the Verhoeff check.
fn verhoeff_ok(digits: &[u8]) -> bool {
    let mut c = 0u8;
    for (i, d) in digits.iter().rev().enumerate() {
        c = D[c as usize][P[i % 8][*d as usize] as usize];
    }
    c == 0
}

/// The Verhoeff check digit for `digits` (without one).
fn verhoeff_digit(digits: &[u8]) -> u8 {
    let mut c = 0u8;
    for (i, d) in digits.iter().rev().enumerate() {
        c = D[c as usize][P[(i + 1) % 8][*d as usize] as usize];
    }
    INV[c as usize]
}

fn digits_of(mut n: u64) -> Vec<u8> {
    let mut v = Vec::with_capacity(20);
    loop {
        v.push((n % 10) as u8);
        n /= 10;
        if n == 0 {
            break;
        }
    }
    v.reverse();
    v
}

/// What an identifier identifies, from its partition digit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Partition {
    Concept,
    Description,
    Relationship,
}

impl SctId {
    /// Parses an SCTID: digits only, 6 to 18 of them, no leading zero, a
    /// right check digit.
    pub fn parse(s: &str) -> Option<SctId> {
        let b = s.as_bytes();
        if !(6..=18).contains(&b.len()) || b[0] == b'0' || !b.iter().all(u8::is_ascii_digit) {
            return None;
        }
        let digits: Vec<u8> = b.iter().map(|c| c - b'0').collect();
        if !verhoeff_ok(&digits) {
            return None;
        }
        s.parse().ok().map(SctId)
    }

    /// Checks a number read from a release (RF2 files, the store).
    pub fn from_u64(n: u64) -> Option<SctId> {
        let digits = digits_of(n);
        ((6..=18).contains(&digits.len()) && verhoeff_ok(&digits)).then_some(SctId(n))
    }

    /// Makes an identifier from an item number, a namespace (`None` for the
    /// international short form) and a partition, with its check digit:
    /// how the synthetic releases and the project-assigned ids are minted.
    pub fn mint(item: u64, namespace: Option<u32>, partition: Partition) -> SctId {
        let code = match partition {
            Partition::Concept => 0u64,
            Partition::Description => 1,
            Partition::Relationship => 2,
        };
        let body = match namespace {
            Some(ns) => (item * 10_000_000 + u64::from(ns)) * 100 + 10 + code,
            None => item * 100 + code,
        };
        let check = verhoeff_digit(&digits_of(body));
        SctId(body * 10 + u64::from(check))
    }

    pub fn get(self) -> u64 {
        self.0
    }

    /// The partition, from the second digit from the right.
    pub fn partition(self) -> Option<Partition> {
        match (self.0 / 10) % 10 {
            0 => Some(Partition::Concept),
            1 => Some(Partition::Description),
            2 => Some(Partition::Relationship),
            _ => None,
        }
    }
}

impl fmt::Display for SctId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn real_ids_pass_and_typos_fail() {
        for ok in [
            "138875005",
            "404684003",
            "71388002",
            "116680003",
            "44054006",
            "886921000000105",
            "900000000000548007",
            "999001261000000100",
        ] {
            assert!(SctId::parse(ok).is_some(), "{ok}");
        }
        for bad in ["138875006", "44054007", "012345", "12345", "12a45678", ""] {
            assert!(SctId::parse(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn minted_ids_are_valid_with_their_partition() {
        for item in [1_000u64, 42_000, 123_456] {
            for (p, ns) in [
                (Partition::Concept, None),
                (Partition::Description, Some(1_000_230)),
                (Partition::Relationship, Some(9_999_999)),
            ] {
                let id = SctId::mint(item, ns, p);
                assert_eq!(SctId::from_u64(id.get()), Some(id));
                assert_eq!(id.partition(), Some(p));
            }
        }
    }
}
