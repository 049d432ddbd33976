//! The part of UCUM (https://ucum.org/ucum) OpenGP reduces to base units:
//! metric prefixes on metre, gram, second, litre, mole and kelvin, the
//! customary inch, foot, pound and ounce, time units, mm[Hg], `%`, powers
//! of ten (`10*9`) and annotations (`{beats}`). FHIRPath compares
//! quantities with it (gp-fhirpath); search indexing writes each UCUM
//! quantity's canonical form beside it, so that `5.4|http://unitsofmeasure.org|mg`
//! finds 5400 ug (search.html#quantity).

use rust_decimal::Decimal;

/// The UCUM code system.
pub const SYSTEM: &str = "http://unitsofmeasure.org";

/// A UCUM unit's canonical form: the value in base units and the code of
/// those units (`g`, `m-3.mol`, `1` for a pure number), when the unit is
/// one OpenGP reduces.
pub fn canonical(value: f64, unit: &str) -> Option<(f64, String)> {
    let (factor, dims) = reduce(unit)?;
    let factor: f64 = factor.to_string().parse().ok()?;
    Some((value * factor, code(&dims)))
}

/// The code of a product of base units, in a fixed order.
fn code(dims: &Dims) -> String {
    const BASE: [&str; 5] = ["m", "g", "s", "mol", "K"];
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

/// Base dimensions: length, mass, time, amount of substance, temperature.
pub type Dims = [i8; 5];

fn dec(s: &str) -> Decimal {
    s.parse().unwrap_or(Decimal::ZERO)
}

/// Unprefixed atoms: code, factor to base units, dimensions, takes prefixes.
fn atom(code: &str) -> Option<(Decimal, Dims, bool)> {
    const L: Dims = [1, 0, 0, 0, 0];
    const M: Dims = [0, 1, 0, 0, 0];
    const T: Dims = [0, 0, 1, 0, 0];
    let a = match code {
        "m" => (Decimal::ONE, L, true),
        "g" => (Decimal::ONE, M, true),
        "s" => (Decimal::ONE, T, true),
        "mol" => (Decimal::ONE, [0, 0, 0, 1, 0], true),
        "K" => (Decimal::ONE, [0, 0, 0, 0, 1], true),
        "l" | "L" => (dec("0.001"), [3, 0, 0, 0, 0], true),
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
        "mm[Hg]" => (dec("133322.387415"), [-1, 1, -2, 0, 0], false),
        "%" => (dec("0.01"), [0; 5], false),
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
        return Some((Decimal::ONE, [0; 5]));
    }
    if let Some((base, exp)) = c.split_once('*') {
        let (b, e) = (base.parse::<u32>().ok()?, exp.parse::<u32>().ok()?);
        return Some((Decimal::from(b.checked_pow(e)?), [0; 5]));
    }
    if c.bytes().all(|b| b.is_ascii_digit()) {
        return Some((c.parse().ok()?, [0; 5]));
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
    let mut dims = [0i8; 5];
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

    #[test]
    fn units_reduce_to_base_units() {
        let near = |a: f64, b: f64| (a - b).abs() <= 1e-12 * a.abs().max(b.abs());
        for (value, unit, want, code) in [
            (5.4, "mg", 0.0054, "g"),
            (5400.0, "ug", 0.0054, "g"),
            (5.0, "mmol/L", 5.0, "m-3.mol"),
            (7.2, "10*9/L", 7.2e12, "m-3"),
            (7200.0, "10*6/L", 7.2e12, "m-3"),
            (120.0, "mm[Hg]", 120.0 * 133_322.387_415, "m-1.g.s-2"),
            (50.0, "%", 0.5, "1"),
            (72.0, "{beats}/min", 1.2, "s-1"),
            (1.8, "m", 1.8, "m"),
            (70.0, "kg", 70_000.0, "g"),
            (2.0, "[lb_av]", 907.184_74, "g"),
        ] {
            let (v, c) = canonical(value, unit).unwrap_or_else(|| panic!("{unit}"));
            assert!(near(v, want) && c == code, "{value} {unit}: {v} {c}");
        }
        assert_eq!(canonical(1.0, "Cel"), None, "not a ratio unit");
        assert_eq!(canonical(1.0, "tablets"), None);
    }
}
