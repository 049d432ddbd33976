//! The part of UCUM (https://ucum.org/ucum) OpenGP reduces to base units:
//! metric prefixes on metre, gram, second, litre, mole (and equivalents,
//! osmoles), kelvin, pascal, bar, katal and the enzyme unit `U`, the
//! clinical mm[Hg] and cm[H2O], the customary inch, foot, pound, ounce and
//! degree Rankine, time units, `%`, powers of ten (`10*9`), annotations
//! (`{beats}`), the international unit (`[iU]`, `[IU]`: an arbitrary unit,
//! UCUM §24–25, commensurable with itself and its prefixed forms only) and
//! the special units on non-ratio scales degree Celsius and degree
//! Fahrenheit (§21–22: alone, converted to kelvin by their functions).
//! FHIRPath compares quantities with it (gp-fhirpath, ratio units only);
//! search indexing writes each UCUM quantity's canonical form beside it, so
//! that `5.4|http://unitsofmeasure.org|mg` finds 5400 ug and
//! `37|http://unitsofmeasure.org|Cel` finds 98.6 [degF] (search.html#quantity).

use rust_decimal::Decimal;

/// The UCUM code system.
pub const SYSTEM: &str = "http://unitsofmeasure.org";

/// How values in a unit become values in its canonical units:
/// `value * factor + offset` (the offset is zero but for the special units
/// on non-ratio scales, degrees Celsius and Fahrenheit), with the code of
/// those units.
#[derive(Clone, Debug, PartialEq)]
pub struct Conversion {
    pub factor: f64,
    pub offset: f64,
    /// The canonical units' code (`g`, `m-3.mol`, `K`, `1` for a pure
    /// number).
    pub code: String,
}

impl Conversion {
    /// `value` in the canonical units.
    pub fn apply(&self, value: f64) -> f64 {
        value * self.factor + self.offset
    }
}

/// The conversion of a UCUM unit to its canonical units, when the unit is
/// one OpenGP reduces.
pub fn conversion(unit: &str) -> Option<Conversion> {
    let (factor, offset, dims) = match special(unit.trim()) {
        Some(s) => s,
        None => {
            let (factor, dims) = reduce(unit)?;
            (factor, Decimal::ZERO, dims)
        }
    };
    Some(Conversion {
        factor: factor.to_string().parse().ok()?,
        offset: offset.to_string().parse().ok()?,
        code: code(&dims),
    })
}

/// A UCUM unit's canonical form: the value in base units and the code of
/// those units (`g`, `m-3.mol`, `K`, `1` for a pure number), when the unit
/// is one OpenGP reduces.
pub fn canonical(value: f64, unit: &str) -> Option<(f64, String)> {
    let c = conversion(unit)?;
    Some((c.apply(value), c.code))
}

/// The special units on non-ratio scales OpenGP converts (UCUM §21–22):
/// factor and offset to kelvin. They take part in no product, quotient or
/// power; the degree Celsius, being metric, takes a prefix (§22 ■3).
fn special(unit: &str) -> Option<(Decimal, Decimal, Dims)> {
    const TEMPERATURE: Dims = [0, 0, 0, 0, 1, 0];
    if unit == "[degF]" {
        // K = (°F + 459.67) × 5/9.
        let five_ninths = dec("5") / dec("9");
        return Some((five_ninths, dec("459.67") * five_ninths, TEMPERATURE));
    }
    let alpha = match unit.strip_suffix("Cel")? {
        "" => Decimal::ONE,
        p => prefix(p)?,
    };
    // K = α·°C + 273.15.
    Some((alpha, dec("273.15"), TEMPERATURE))
}

/// The code of a product of base units, in a fixed order.
fn code(dims: &Dims) -> String {
    const BASE: [&str; 6] = ["m", "g", "s", "mol", "K", "[iU]"];
    let parts: Vec<String> = BASE
        .iter()
        .zip(dims)
        .filter(|(_, d)| **d != 0)
        .map(|(b, d)| {
            if *d == 1 {
                (*b).to_owned()
            } else {
                format!("{b}{d}")
            }
        })
        .collect();
    if parts.is_empty() {
        "1".to_owned()
    } else {
        parts.join(".")
    }
}

/// Base dimensions: length, mass, time, amount of substance, temperature,
/// and the international unit, an arbitrary unit (UCUM §24: "not of any
/// specific dimension and not commensurable with any other unit"), so a
/// dimension of its own that only it and its prefixed forms have.
pub type Dims = [i8; 6];

fn dec(s: &str) -> Decimal {
    s.parse().unwrap_or(Decimal::ZERO)
}

/// Unprefixed atoms: code, factor to base units, dimensions, takes prefixes
/// (UCUM's "metric" column). Factors are UCUM's definitions: mm[Hg] is
/// 133.3220 Pa (`m[Hg]` = 133.3220 kPa), exactly as pascals reduce.
fn atom(code: &str) -> Option<(Decimal, Dims, bool)> {
    const L: Dims = [1, 0, 0, 0, 0, 0];
    const M: Dims = [0, 1, 0, 0, 0, 0];
    const T: Dims = [0, 0, 1, 0, 0, 0];
    const N: Dims = [0, 0, 0, 1, 0, 0];
    const TEMPERATURE: Dims = [0, 0, 0, 0, 1, 0];
    const PRESSURE: Dims = [-1, 1, -2, 0, 0, 0];
    const CATALYTIC: Dims = [0, 0, -1, 1, 0, 0];
    let a = match code {
        "m" => (Decimal::ONE, L, true),
        "g" => (Decimal::ONE, M, true),
        "s" => (Decimal::ONE, T, true),
        // Equivalents and osmoles are defined as 1 mol.
        "mol" | "eq" | "osm" => (Decimal::ONE, N, true),
        "K" => (Decimal::ONE, TEMPERATURE, true),
        "l" | "L" => (dec("0.001"), [3, 0, 0, 0, 0, 0], true),
        // N/m2, with the gram as base: 1000 g.m-1.s-2.
        "Pa" => (dec("1000"), PRESSURE, true),
        "bar" => (dec("100000000"), PRESSURE, true),
        "m[Hg]" => (dec("133322000"), PRESSURE, true),
        "m[H2O]" => (dec("9806650"), PRESSURE, true),
        "kat" => (Decimal::ONE, CATALYTIC, true),
        // The enzyme unit, umol/min.
        "U" => (dec("0.000001") / dec("60"), CATALYTIC, true),
        // [IU] is defined as 1 [iU].
        "[iU]" | "[IU]" => (Decimal::ONE, [0, 0, 0, 0, 0, 1], true),
        "min" => (dec("60"), T, false),
        "h" => (dec("3600"), T, false),
        "d" => (dec("86400"), T, false),
        "wk" => (dec("604800"), T, false),
        "mo" => (dec("2629800"), T, false),
        "a" => (dec("31557600"), T, false),
        "[in_i]" => (dec("0.0254"), L, false),
        "[ft_i]" => (dec("0.3048"), L, false),
        "[lb_av]" => (dec("453.59237"), M, false),
        "[oz_av]" => (dec("28.349523125"), M, false),
        "[degR]" => (dec("5") / dec("9"), TEMPERATURE, false),
        "%" => (dec("0.01"), [0; 6], false),
        _ => return None,
    };
    Some(a)
}

fn prefix(p: &str) -> Option<Decimal> {
    let f = match p {
        "G" => "1000000000",
        "M" => "1000000",
        "k" => "1000",
        "h" => "100",
        "da" => "10",
        "d" => "0.1",
        "c" => "0.01",
        "m" => "0.001",
        "u" => "0.000001",
        "n" => "0.000000001",
        "p" => "0.000000000001",
        _ => return None,
    };
    Some(dec(f))
}

/// One component such as `cm`, `m2`, `s-1`, `10*3`, `{beats}` or `1`.
fn component(c: &str) -> Option<(Decimal, Dims)> {
    if c.starts_with('{') && c.ends_with('}') {
        return Some((Decimal::ONE, [0; 6]));
    }
    if let Some((base, exp)) = c.split_once('*') {
        let (b, e) = (base.parse::<u32>().ok()?, exp.parse::<u32>().ok()?);
        return Some((Decimal::from(b.checked_pow(e)?), [0; 6]));
    }
    if c.bytes().all(|b| b.is_ascii_digit()) {
        return Some((c.parse().ok()?, [0; 6]));
    }
    let split = c
        .char_indices()
        .rfind(|(_, ch)| !(ch.is_ascii_digit() || *ch == '-' || *ch == '+'))
        .map_or(0, |(i, ch)| i + ch.len_utf8());
    let (code, exp) = c.split_at(split);
    let exp: i32 = if exp.is_empty() { 1 } else { exp.parse().ok()? };
    let (factor, dims) = match atom(code) {
        Some((f, d, _)) => (f, d),
        None => (1..code.len()).find_map(|i| {
            let (p, rest) = (code.get(..i)?, code.get(i..)?);
            let (f, d, prefixable) = atom(rest)?;
            prefixable.then_some(())?;
            Some((prefix(p)? * f, d))
        })?,
    };
    let mut out = Decimal::ONE;
    for _ in 0..exp.unsigned_abs() {
        out = out.checked_mul(factor)?;
    }
    if exp < 0 {
        out = Decimal::ONE.checked_div(out)?;
    }
    Some((out, dims.map(|d| d * exp as i8)))
}

/// A UCUM expression (components joined by `.` and `/`, with
/// parentheses) reduced to its factor over the base units and their
/// dimensions; `None` for a unit outside the subset.
pub fn reduce(unit: &str) -> Option<(Decimal, Dims)> {
    let unit = unit.trim();
    let mut factor = Decimal::ONE;
    let mut dims = [0i8; 6];
    let mut divide = false;
    let mut rest = unit;
    if let Some(r) = rest.strip_prefix('/') {
        divide = true;
        rest = r;
    }
    while !rest.is_empty() {
        let (piece, (f, d)) = if rest.starts_with('(') {
            let close = rest.find(')')?;
            (&rest[..=close], reduce(&rest[1..close])?)
        } else {
            let mut depth = 0;
            let end = rest
                .char_indices()
                .find(|(_, c)| {
                    match c {
                        '[' | '{' => depth += 1,
                        ']' | '}' => depth -= 1,
                        _ => {}
                    }
                    depth == 0 && (*c == '.' || *c == '/')
                })
                .map_or(rest.len(), |(i, _)| i);
            (&rest[..end], component(&rest[..end])?)
        };
        if divide {
            factor = factor.checked_div(f)?;
            dims = std::array::from_fn(|i| dims[i] - d[i]);
        } else {
            factor = factor.checked_mul(f)?;
            dims = std::array::from_fn(|i| dims[i] + d[i]);
        }
        rest = &rest[piece.len()..];
        match rest.chars().next() {
            Some('.') => divide = false,
            Some('/') => divide = true,
            None => break,
            Some(_) => return None,
        }
        rest = &rest[1..];
    }
    Some((factor, dims))
}

#[cfg(test)]
mod tests {
    use super::canonical;

    fn near(a: f64, b: f64) -> bool {
        (a - b).abs() <= 1e-12 * a.abs().max(b.abs())
    }

    #[test]
    fn units_reduce_to_base_units() {
        for (value, unit, want, code) in [
            (5.4, "mg", 0.0054, "g"),
            (5400.0, "ug", 0.0054, "g"),
            (5.0, "mmol/L", 5.0, "m-3.mol"),
            (7.2, "10*9/L", 7.2e12, "m-3"),
            (7200.0, "10*6/L", 7.2e12, "m-3"),
            (50.0, "%", 0.5, "1"),
            (72.0, "{beats}/min", 1.2, "s-1"),
            (1.8, "m", 1.8, "m"),
            (70.0, "kg", 70_000.0, "g"),
            (2.0, "[lb_av]", 907.184_74, "g"),
            // Pressure: m[Hg] is 133.3220 kPa, so mm[Hg] reduces exactly as
            // 133.322 Pa does.
            (120.0, "mm[Hg]", 120.0 * 133_322.0, "m-1.g.s-2"),
            (133.322, "Pa", 133_322.0, "m-1.g.s-2"),
            (16.0, "kPa", 16_000_000.0, "m-1.g.s-2"),
            (1.0, "bar", 100_000_000.0, "m-1.g.s-2"),
            (10.0, "cm[H2O]", 980_665.0, "m-1.g.s-2"),
            // Equivalents and osmoles are moles (UCUM: eq = 1 mol).
            (140.0, "meq/L", 140.0, "m-3.mol"),
            (290.0, "mosm/kg", 0.000_29, "g-1.mol"),
            // The enzyme unit is umol/min, a catalytic activity like katal.
            (60.0, "U/L", 1e-3, "m-3.s-1.mol"),
            (1.0, "ukat/L", 1e-3, "m-3.s-1.mol"),
            // The international unit is its own dimension; [IU] = 1 [iU].
            (5.0, "[iU]/L", 5000.0, "m-3.[iU]"),
            (5.0, "m[iU]/mL", 5000.0, "m-3.[iU]"),
            (5.0, "[IU]/L", 5000.0, "m-3.[iU]"),
            // Temperature: kelvin and degrees Rankine are ratio units,
            // degrees Celsius and Fahrenheit special units with an offset.
            (310.15, "K", 310.15, "K"),
            (558.27, "[degR]", 310.15, "K"),
            (37.0, "Cel", 310.15, "K"),
            (98.6, "[degF]", 310.15, "K"),
            (-40.0, "[degF]", 233.15, "K"),
            (37_000.0, "mCel", 310.15, "K"),
        ] {
            let (v, c) = canonical(value, unit).unwrap_or_else(|| panic!("{unit}"));
            assert!(near(v, want) && c == code, "{value} {unit}: {v} {c}");
        }
    }

    /// What UCUM does not make comparable stays out: special units in a
    /// product or quotient (§22 ■1), other arbitrary units (§24–25), codes
    /// that are not UCUM's (UCUM's equivalents are `eq`, case-sensitive).
    #[test]
    fn what_ucum_does_not_reduce() {
        for unit in [
            "Cel/h",
            "[degF]2",
            "kCel.m",
            "[arb'U]",
            "[USP'U]/mL",
            "mEq/L",
            "tablets",
        ] {
            assert_eq!(canonical(1.0, unit), None, "{unit}");
        }
        // An arbitrary unit is commensurable with no other unit.
        let iu = canonical(1.0, "[iU]").map(|c| c.1);
        assert_ne!(iu, canonical(1.0, "1").map(|c| c.1));
        assert_ne!(iu, canonical(1.0, "U").map(|c| c.1));
    }
}
