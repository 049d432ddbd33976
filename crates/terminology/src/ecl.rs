//! A subset of the SNOMED CT Expression Constraint Language (ECL 2.x):
//! constraint operators `<` `<<` `>` `>>` `<!` `>!`, member-of `^`, the
//! wildcard `*`, `AND` `OR` `MINUS` (and `,` for `AND`), parentheses, and
//! refinements of attributes `focus : attribute = value` (`!=` too, several
//! joined by `,` or `AND`), where attribute and value are themselves
//! constraints (`<< 404684003 : 363698007 = << 39057004`). Terms between
//! pipes are ignored, as ECL says. Cardinality, attribute groups, reverse
//! attributes, concrete values and filters are refused with an error.

use crate::index::Index;
use crate::set::ConceptSet;

/// An ECL expression that could not be parsed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("ECL error at character {at}: {msg}")]
pub struct EclError {
    pub at: usize,
    pub msg: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Op {
    Descendant,
    DescendantOrSelf,
    Ancestor,
    AncestorOrSelf,
    Child,
    Parent,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Join {
    And,
    Or,
    Minus,
}

/// A parsed expression constraint.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Ecl {
    Concept(u64),
    Any,
    MemberOf(Box<Ecl>),
    Constraint(OpKind, Box<Ecl>),
    And(Box<Ecl>, Box<Ecl>),
    Or(Box<Ecl>, Box<Ecl>),
    Minus(Box<Ecl>, Box<Ecl>),
    Refined(Box<Ecl>, Vec<Refinement>),
}

/// A constraint operator.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OpKind(Op);

/// `attribute = value` (or `!=`) in a refinement.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refinement {
    pub attribute: Ecl,
    pub negated: bool,
    pub value: Ecl,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Tok {
    Num(u64),
    Op(Op),
    Caret,
    Star,
    LParen,
    RParen,
    Colon,
    Eq,
    NotEq,
    Comma,
    Join(Join),
}

fn err(at: usize, msg: impl Into<String>) -> EclError {
    EclError {
        at,
        msg: msg.into(),
    }
}

fn lex(s: &str) -> Result<Vec<(usize, Tok)>, EclError> {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        let start = i;
        let two = |x: u8| b.get(i + 1) == Some(&x);
        let tok = match c {
            b' ' | b'\t' | b'\n' | b'\r' => {
                i += 1;
                continue;
            }
            b'|' => {
                // A term: ignored.
                let end = s[i + 1..]
                    .find('|')
                    .ok_or_else(|| err(i, "a term has no closing '|'"))?;
                i += end + 2;
                continue;
            }
            b'<' if two(b'<') => {
                i += 2;
                Tok::Op(Op::DescendantOrSelf)
            }
            b'<' if two(b'!') => {
                i += 2;
                Tok::Op(Op::Child)
            }
            b'<' => {
                i += 1;
                Tok::Op(Op::Descendant)
            }
            b'>' if two(b'>') => {
                i += 2;
                Tok::Op(Op::AncestorOrSelf)
            }
            b'>' if two(b'!') => {
                i += 2;
                Tok::Op(Op::Parent)
            }
            b'>' => {
                i += 1;
                Tok::Op(Op::Ancestor)
            }
            b'!' if two(b'=') => {
                i += 2;
                Tok::NotEq
            }
            b'^' => {
                i += 1;
                Tok::Caret
            }
            b'*' => {
                i += 1;
                Tok::Star
            }
            b'(' => {
                i += 1;
                Tok::LParen
            }
            b')' => {
                i += 1;
                Tok::RParen
            }
            b':' => {
                i += 1;
                Tok::Colon
            }
            b'=' => {
                i += 1;
                Tok::Eq
            }
            b',' => {
                i += 1;
                Tok::Comma
            }
            b'0'..=b'9' => {
                while i < b.len() && b[i].is_ascii_digit() {
                    i += 1;
                }
                let n = s[start..i]
                    .parse()
                    .map_err(|_| err(start, "the concept id is too long"))?;
                Tok::Num(n)
            }
            c if c.is_ascii_alphabetic() => {
                while i < b.len() && b[i].is_ascii_alphabetic() {
                    i += 1;
                }
                match s[start..i].to_ascii_uppercase().as_str() {
                    "AND" => Tok::Join(Join::And),
                    "OR" => Tok::Join(Join::Or),
                    "MINUS" => Tok::Join(Join::Minus),
                    w => return Err(err(start, format!("'{w}' is not supported here"))),
                }
            }
            b'{' => return Err(err(i, "attribute groups are not supported")),
            b'[' => return Err(err(i, "cardinality is not supported")),
            b'#' => return Err(err(i, "concrete values are not supported")),
            _ => {
                return Err(err(
                    i,
                    format!("unexpected '{}'", s[i..].chars().next().unwrap_or(' ')),
                ));
            }
        };
        out.push((start, tok));
    }
    Ok(out)
}

struct Parser {
    toks: Vec<(usize, Tok)>,
    pos: usize,
    len: usize,
}

impl Parser {
    fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.pos).map(|t| &t.1)
    }

    fn at(&self) -> usize {
        self.toks.get(self.pos).map_or(self.len, |t| t.0)
    }

    fn next(&mut self) -> Option<Tok> {
        let t = self.toks.get(self.pos).map(|t| t.1.clone());
        self.pos += 1;
        t
    }

    /// compound := refined ((AND | OR | MINUS | ',') refined)*, one kind of
    /// operator per level unless parenthesised, as ECL requires.
    fn compound(&mut self) -> Result<Ecl, EclError> {
        let mut left = self.refined()?;
        let mut kind: Option<Join> = None;
        loop {
            let join = match self.peek() {
                Some(Tok::Join(j)) => *j,
                Some(Tok::Comma) => Join::And,
                _ => return Ok(left),
            };
            if kind.is_some_and(|k| k != join) || (join == Join::Minus && kind.is_some()) {
                return Err(err(
                    self.at(),
                    "different operators at one level need parentheses",
                ));
            }
            kind = Some(join);
            self.pos += 1;
            let right = self.refined()?;
            left = match join {
                Join::And => Ecl::And(Box::new(left), Box::new(right)),
                Join::Or => Ecl::Or(Box::new(left), Box::new(right)),
                Join::Minus => Ecl::Minus(Box::new(left), Box::new(right)),
            };
        }
    }

    fn refined(&mut self) -> Result<Ecl, EclError> {
        let focus = self.sub()?;
        if self.peek() != Some(&Tok::Colon) {
            return Ok(focus);
        }
        self.pos += 1;
        let mut refinements = vec![self.attribute()?];
        loop {
            // `,` and AND join attributes; what follows must be one.
            let save = self.pos;
            match self.peek() {
                Some(Tok::Comma) | Some(Tok::Join(Join::And)) => {
                    self.pos += 1;
                    match self.attribute() {
                        Ok(a) => refinements.push(a),
                        Err(_) => {
                            self.pos = save;
                            break;
                        }
                    }
                }
                Some(Tok::Join(Join::Or)) => {
                    return Err(err(self.at(), "OR between attributes is not supported"));
                }
                _ => break,
            }
        }
        Ok(Ecl::Refined(Box::new(focus), refinements))
    }

    fn attribute(&mut self) -> Result<Refinement, EclError> {
        let attribute = self.sub()?;
        let negated = match self.next() {
            Some(Tok::Eq) => false,
            Some(Tok::NotEq) => true,
            _ => return Err(err(self.at(), "expected '=' after the attribute")),
        };
        let value = self.sub()?;
        Ok(Refinement {
            attribute,
            negated,
            value,
        })
    }

    fn sub(&mut self) -> Result<Ecl, EclError> {
        let op = match self.peek() {
            Some(Tok::Op(op)) => {
                let op = *op;
                self.pos += 1;
                Some(op)
            }
            _ => None,
        };
        let focus = match self.next() {
            Some(Tok::Num(n)) => Ecl::Concept(n),
            Some(Tok::Star) => Ecl::Any,
            Some(Tok::Caret) => Ecl::MemberOf(Box::new(self.sub()?)),
            Some(Tok::LParen) => {
                let inner = self.compound()?;
                if self.next() != Some(Tok::RParen) {
                    return Err(err(self.at(), "expected ')'"));
                }
                inner
            }
            _ => {
                self.pos = self.pos.saturating_sub(1);
                return Err(err(self.at(), "expected a concept id, '*', '^' or '('"));
            }
        };
        Ok(match op {
            Some(op) => Ecl::Constraint(OpKind(op), Box::new(focus)),
            None => focus,
        })
    }
}

/// Parses an expression constraint.
pub fn parse(s: &str) -> Result<Ecl, EclError> {
    let toks = lex(s)?;
    if toks.is_empty() {
        return Err(err(0, "the expression is empty"));
    }
    let mut p = Parser {
        toks,
        pos: 0,
        len: s.len(),
    };
    let e = p.compound()?;
    if p.pos < p.toks.len() {
        return Err(err(p.at(), "unexpected text after the expression"));
    }
    Ok(e)
}

impl Index {
    /// Evaluates a parsed constraint. Unknown concepts match nothing.
    pub fn evaluate(&self, e: &Ecl) -> ConceptSet {
        match e {
            Ecl::Concept(id) => self.set_of([*id]),
            Ecl::Any => self.all(),
            Ecl::MemberOf(inner) => {
                let refsets = self.evaluate(inner);
                let mut out = self.empty_set();
                for id in self.ids_of(&refsets) {
                    out = out.or(&self.refset(id));
                }
                out
            }
            Ecl::Constraint(OpKind(op), inner) => {
                let s = self.evaluate(inner);
                match op {
                    Op::Descendant => self.descendants_of_set(&s, false),
                    Op::DescendantOrSelf => self.descendants_of_set(&s, true),
                    Op::Ancestor => self.ancestors_of_set(&s, false),
                    Op::AncestorOrSelf => self.ancestors_of_set(&s, true),
                    Op::Child => self.children_of_set(&s, false),
                    Op::Parent => self.children_of_set(&s, true),
                }
            }
            Ecl::And(a, b) => self.evaluate(a).and(&self.evaluate(b)),
            Ecl::Or(a, b) => self.evaluate(a).or(&self.evaluate(b)),
            Ecl::Minus(a, b) => self.evaluate(a).minus(&self.evaluate(b)),
            Ecl::Refined(focus, refinements) => {
                let mut s = self.evaluate(focus);
                for r in refinements {
                    let types = self.evaluate(&r.attribute);
                    let values = self.evaluate(&r.value);
                    let mut keep = self.empty_set();
                    for n in s.iter() {
                        let hit = self.attributes_of(n).iter().any(|a| {
                            types.contains(a.type_idx)
                                && values.contains(a.destination) != r.negated
                        });
                        if hit {
                            keep.insert(n);
                        }
                    }
                    s = keep;
                }
                s
            }
        }
    }

    /// Parses and evaluates an ECL expression.
    pub fn ecl(&self, expression: &str) -> Result<ConceptSet, EclError> {
        Ok(self.evaluate(&parse(expression)?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_supported_subset_and_refuses_the_rest() {
        for ok in [
            "<< 73211009 |Diabetes mellitus|",
            "< 404684003 MINUS << 73211009",
            "(<< 1 OR << 2) AND ^ 3",
            "<< 404684003 : 363698007 = << 39057004",
            "<< 404684003 : << 363698007 = *, 116676008 != 79654002",
            ">! 44054006",
            "*",
        ] {
            assert!(parse(ok).is_ok(), "{ok}: {:?}", parse(ok));
        }
        for bad in [
            "",
            "<<",
            "<< 1 AND << 2 OR << 3",
            "<< 1 : { 2 = 3 }",
            "<< 1 : [1..2] 2 = 3",
            "(<< 1",
            "<< 1 |unclosed",
            "<< 1 foo",
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }
}
