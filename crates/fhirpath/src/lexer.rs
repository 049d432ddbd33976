//! Tokens of the FHIRPath grammar (http://hl7.org/fhirpath/N1/#grammar):
//! identifiers (plain and `delimited`), string, number and date/time
//! literals, `$this`-style special names, `%`-variables, operators and
//! both comment forms.

use crate::ParseError;

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Tok {
    /// An identifier; `true` when it was written `delimited` (never a keyword).
    Ident(String, bool),
    Str(String),
    /// A number as written, so that decimals keep their precision.
    Num(String),
    /// A date, date-time or time literal without its `@`.
    Temporal(String),
    /// `$this`, `$index`, `$total`.
    Special(String),
    /// `%name` or `%`name``.
    Var(String),
    Sym(&'static str),
}

/// Two-character symbols first, so that `<=` is not read as `<` `=`.
const SYMBOLS: [&str; 22] = [
    "<=", ">=", "!=", "!~", ".", "[", "]", "(", ")", "{", "}", ",", "+", "-", "*", "/", "&", "|",
    "=", "~", "<", ">",
];

pub(crate) fn tokenize(src: &str) -> Result<Vec<Tok>, ParseError> {
    let chars: Vec<char> = src.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c.is_whitespace() {
            i += 1;
        } else if c == '/' && chars.get(i + 1) == Some(&'/') {
            while i < chars.len() && chars[i] != '\n' {
                i += 1;
            }
        } else if c == '/' && chars.get(i + 1) == Some(&'*') {
            i += 2;
            loop {
                if i + 1 >= chars.len() {
                    return Err(ParseError::new("unterminated comment"));
                }
                if chars[i] == '*' && chars[i + 1] == '/' {
                    i += 2;
                    break;
                }
                i += 1;
            }
        } else if c == '\'' || c == '`' {
            let (s, next) = quoted(&chars, i)?;
            out.push(if c == '\'' {
                Tok::Str(s)
            } else {
                Tok::Ident(s, true)
            });
            i = next;
        } else if c.is_ascii_digit() {
            let start = i;
            while i < chars.len() && chars[i].is_ascii_digit() {
                i += 1;
            }
            if chars.get(i) == Some(&'.') && chars.get(i + 1).is_some_and(char::is_ascii_digit) {
                i += 1;
                while i < chars.len() && chars[i].is_ascii_digit() {
                    i += 1;
                }
            }
            out.push(Tok::Num(chars[start..i].iter().collect()));
        } else if c.is_alphabetic() || c == '_' {
            let start = i;
            while i < chars.len() && (chars[i].is_alphanumeric() || chars[i] == '_') {
                i += 1;
            }
            out.push(Tok::Ident(chars[start..i].iter().collect(), false));
        } else if c == '$' {
            let start = i + 1;
            i += 1;
            while i < chars.len() && chars[i].is_alphanumeric() {
                i += 1;
            }
            out.push(Tok::Special(chars[start..i].iter().collect()));
        } else if c == '%' {
            i += 1;
            match chars.get(i) {
                Some('`') | Some('\'') => {
                    let (s, next) = quoted(&chars, i)?;
                    out.push(Tok::Var(s));
                    i = next;
                }
                _ => {
                    let start = i;
                    while i < chars.len()
                        && (chars[i].is_alphanumeric() || chars[i] == '_' || chars[i] == '-')
                    {
                        i += 1;
                    }
                    if start == i {
                        return Err(ParseError::new("empty variable name"));
                    }
                    out.push(Tok::Var(chars[start..i].iter().collect()));
                }
            }
        } else if c == '@' {
            let start = i + 1;
            i += 1;
            while i < chars.len() && temporal_char(&chars, i) {
                i += 1;
            }
            let text: String = chars[start..i].iter().collect();
            if text.is_empty() {
                return Err(ParseError::new("empty date/time literal"));
            }
            out.push(Tok::Temporal(text));
        } else {
            let rest: String = chars[i..chars.len().min(i + 2)].iter().collect();
            let Some(sym) = SYMBOLS.iter().find(|s| rest.starts_with(**s)).copied() else {
                return Err(ParseError::new(format!("unexpected character '{c}'")));
            };
            out.push(Tok::Sym(sym));
            i += sym.chars().count();
        }
    }
    Ok(out)
}

/// Characters that continue a date/time literal. A `.` continues it only
/// when followed by a digit (fractional seconds), so `@2015.is(Date)` ends
/// the literal before the dot.
fn temporal_char(chars: &[char], i: usize) -> bool {
    match chars[i] {
        c if c.is_ascii_digit() => true,
        '-' | ':' | 'T' | 'Z' => {
            // A `-` that starts an offset or a date part is always followed
            // by a digit; `- 1 'month'` (with a space) is an operator.
            chars[i] != '-' || chars.get(i + 1).is_some_and(char::is_ascii_digit)
        }
        '+' => chars.get(i + 1).is_some_and(char::is_ascii_digit),
        '.' => chars.get(i + 1).is_some_and(char::is_ascii_digit),
        _ => false,
    }
}

/// A quoted string or delimited identifier starting at `start`, with its
/// escapes (http://hl7.org/fhirpath/N1/#string) resolved.
fn quoted(chars: &[char], start: usize) -> Result<(String, usize), ParseError> {
    let quote = chars[start];
    let mut s = String::new();
    let mut i = start + 1;
    loop {
        let Some(&c) = chars.get(i) else {
            return Err(ParseError::new("unterminated string"));
        };
        i += 1;
        if c == quote {
            return Ok((s, i));
        }
        if c != '\\' {
            s.push(c);
            continue;
        }
        let Some(&e) = chars.get(i) else {
            return Err(ParseError::new("unterminated escape"));
        };
        i += 1;
        match e {
            'n' => s.push('\n'),
            'r' => s.push('\r'),
            't' => s.push('\t'),
            'f' => s.push('\u{c}'),
            'u' => {
                let hex: String = chars.get(i..i + 4).unwrap_or_default().iter().collect();
                let ch = u32::from_str_radix(&hex, 16)
                    .ok()
                    .and_then(char::from_u32)
                    .ok_or_else(|| ParseError::new("bad \\u escape"))?;
                s.push(ch);
                i += 4;
            }
            other => s.push(other),
        }
    }
}
