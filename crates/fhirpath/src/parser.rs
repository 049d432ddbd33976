//! The expression tree and a precedence-climbing parser for it, following
//! the operator precedence of http://hl7.org/fhirpath/N1/#operator-precedence.

use rust_decimal::Decimal;

use crate::ParseError;
use crate::lexer::{Tok, tokenize};
use crate::quantity::{Quantity, calendar_unit};
use crate::temporal::Temporal;
use crate::value::Item;

/// A type specifier such as `Quantity`, `FHIR.string` or `System.Boolean`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct TypeSpec {
    pub namespace: Option<String>,
    pub name: String,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum BinOp {
    Mul,
    Div,
    IntDiv,
    Mod,
    Add,
    Sub,
    Concat,
    Union,
    Lt,
    Gt,
    Le,
    Ge,
    Eq,
    Ne,
    Equiv,
    NotEquiv,
    In,
    Contains,
    And,
    Or,
    Xor,
    Implies,
}

#[derive(Debug, Clone)]
pub(crate) enum Ast {
    /// `{}`.
    Empty,
    Literal(Item<'static>),
    /// An identifier at the start of a path, resolved against the focus.
    Ident(String),
    Member(Box<Ast>, String),
    Index(Box<Ast>, Box<Ast>),
    /// A function call on `target`, or on the focus when `target` is `None`.
    Call(Option<Box<Ast>>, String, Vec<Ast>),
    This,
    IndexVar,
    Total,
    Var(String),
    Negate(Box<Ast>),
    Binary(BinOp, Box<Ast>, Box<Ast>),
    Is(Box<Ast>, TypeSpec),
    As(Box<Ast>, TypeSpec),
}

impl Ast {
    /// The type specifier an argument of `is()`, `as()` or `ofType()` names.
    pub(crate) fn as_type_spec(&self) -> Option<TypeSpec> {
        match self {
            Ast::Ident(name) => Some(TypeSpec {
                namespace: None,
                name: name.clone(),
            }),
            Ast::Member(base, name) => match &**base {
                Ast::Ident(ns) => Some(TypeSpec {
                    namespace: Some(ns.clone()),
                    name: name.clone(),
                }),
                _ => None,
            },
            _ => None,
        }
    }
}

pub(crate) fn parse_ast(src: &str) -> Result<Ast, ParseError> {
    let toks = tokenize(src)?;
    let mut p = Parser { toks, pos: 0 };
    let ast = p.expr(0)?;
    if p.pos < p.toks.len() {
        return Err(ParseError::new(format!(
            "unexpected {:?} after the expression",
            p.toks[p.pos]
        )));
    }
    Ok(ast)
}

struct Parser {
    toks: Vec<Tok>,
    pos: usize,
}

/// Binding power of an infix operator (higher binds tighter), or `None`.
fn infix(tok: &Tok) -> Option<(u8, Infix)> {
    let op = match tok {
        Tok::Sym(s) => match *s {
            "*" => (10, Infix::Bin(BinOp::Mul)),
            "/" => (10, Infix::Bin(BinOp::Div)),
            "+" => (9, Infix::Bin(BinOp::Add)),
            "-" => (9, Infix::Bin(BinOp::Sub)),
            "&" => (9, Infix::Bin(BinOp::Concat)),
            "|" => (7, Infix::Bin(BinOp::Union)),
            "<" => (6, Infix::Bin(BinOp::Lt)),
            ">" => (6, Infix::Bin(BinOp::Gt)),
            "<=" => (6, Infix::Bin(BinOp::Le)),
            ">=" => (6, Infix::Bin(BinOp::Ge)),
            "=" => (5, Infix::Bin(BinOp::Eq)),
            "!=" => (5, Infix::Bin(BinOp::Ne)),
            "~" => (5, Infix::Bin(BinOp::Equiv)),
            "!~" => (5, Infix::Bin(BinOp::NotEquiv)),
            _ => return None,
        },
        Tok::Ident(s, false) => match s.as_str() {
            "div" => (10, Infix::Bin(BinOp::IntDiv)),
            "mod" => (10, Infix::Bin(BinOp::Mod)),
            "is" => (8, Infix::Is),
            "as" => (8, Infix::As),
            "in" => (4, Infix::Bin(BinOp::In)),
            "contains" => (4, Infix::Bin(BinOp::Contains)),
            "and" => (3, Infix::Bin(BinOp::And)),
            "or" => (2, Infix::Bin(BinOp::Or)),
            "xor" => (2, Infix::Bin(BinOp::Xor)),
            "implies" => (1, Infix::Bin(BinOp::Implies)),
            _ => return None,
        },
        _ => return None,
    };
    Some(op)
}

enum Infix {
    Bin(BinOp),
    Is,
    As,
}

impl Parser {
    fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.pos)
    }

    fn next(&mut self) -> Result<Tok, ParseError> {
        let t = self
            .toks
            .get(self.pos)
            .cloned()
            .ok_or_else(|| ParseError::new("unexpected end of expression"))?;
        self.pos += 1;
        Ok(t)
    }

    fn eat(&mut self, sym: &str) -> bool {
        if matches!(self.peek(), Some(Tok::Sym(s)) if *s == sym) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    fn expect(&mut self, sym: &str) -> Result<(), ParseError> {
        if self.eat(sym) {
            Ok(())
        } else {
            Err(ParseError::new(format!("expected '{sym}'")))
        }
    }

    fn expr(&mut self, min_bp: u8) -> Result<Ast, ParseError> {
        let mut lhs = self.unary()?;
        while let Some((bp, op)) = self.peek().and_then(infix) {
            // Every operator is left-associative: stop at one that binds no
            // tighter than the operator whose right operand this is.
            if bp <= min_bp {
                break;
            }
            self.pos += 1;
            lhs = match op {
                Infix::Bin(op) => {
                    let rhs = self.expr(bp)?;
                    Ast::Binary(op, Box::new(lhs), Box::new(rhs))
                }
                Infix::Is => Ast::Is(Box::new(lhs), self.type_spec()?),
                Infix::As => Ast::As(Box::new(lhs), self.type_spec()?),
            };
        }
        Ok(lhs)
    }

    fn type_spec(&mut self) -> Result<TypeSpec, ParseError> {
        let first = self.ident()?;
        if self.eat(".") {
            let name = self.ident()?;
            Ok(TypeSpec {
                namespace: Some(first),
                name,
            })
        } else {
            Ok(TypeSpec {
                namespace: None,
                name: first,
            })
        }
    }

    fn ident(&mut self) -> Result<String, ParseError> {
        match self.next()? {
            Tok::Ident(s, _) => Ok(s),
            t => Err(ParseError::new(format!(
                "expected an identifier, found {t:?}"
            ))),
        }
    }

    /// Unary `+` and `-` bind above every infix operator and below `.` and
    /// `[]`, so `-1.convertsToInteger()` negates the call's result.
    fn unary(&mut self) -> Result<Ast, ParseError> {
        if self.eat("-") {
            let operand = self.unary()?;
            return Ok(Ast::Negate(Box::new(operand)));
        }
        if self.eat("+") {
            return self.unary();
        }
        self.postfix()
    }

    fn postfix(&mut self) -> Result<Ast, ParseError> {
        let mut e = self.term()?;
        loop {
            if self.eat(".") {
                let name = self.ident()?;
                if self.eat("(") {
                    let args = self.args()?;
                    e = Ast::Call(Some(Box::new(e)), name, args);
                } else {
                    e = Ast::Member(Box::new(e), name);
                }
            } else if self.eat("[") {
                let index = self.expr(0)?;
                self.expect("]")?;
                e = Ast::Index(Box::new(e), Box::new(index));
            } else {
                return Ok(e);
            }
        }
    }

    fn args(&mut self) -> Result<Vec<Ast>, ParseError> {
        let mut args = Vec::new();
        if self.eat(")") {
            return Ok(args);
        }
        loop {
            args.push(self.expr(0)?);
            if self.eat(")") {
                return Ok(args);
            }
            self.expect(",")?;
        }
    }

    fn term(&mut self) -> Result<Ast, ParseError> {
        match self.next()? {
            Tok::Sym("(") => {
                let e = self.expr(0)?;
                self.expect(")")?;
                Ok(e)
            }
            Tok::Sym("{") => {
                self.expect("}")?;
                Ok(Ast::Empty)
            }
            Tok::Str(s) => Ok(Ast::Literal(Item::String(s))),
            Tok::Num(n) => self.number(&n),
            Tok::Temporal(t) => Temporal::parse_literal(&t)
                .map(|t| Ast::Literal(Item::Temporal(t)))
                .ok_or_else(|| ParseError::new(format!("invalid date/time literal @{t}"))),
            Tok::Special(s) => match s.as_str() {
                "this" => Ok(Ast::This),
                "index" => Ok(Ast::IndexVar),
                "total" => Ok(Ast::Total),
                _ => Err(ParseError::new(format!("unknown special name ${s}"))),
            },
            Tok::Var(v) => Ok(Ast::Var(v)),
            Tok::Ident(s, delimited) => {
                if !delimited && (s == "true" || s == "false") {
                    return Ok(Ast::Literal(Item::Boolean(s == "true")));
                }
                if self.eat("(") {
                    let args = self.args()?;
                    return Ok(Ast::Call(None, s, args));
                }
                Ok(Ast::Ident(s))
            }
            t => Err(ParseError::new(format!("unexpected {t:?}"))),
        }
    }

    /// A number, or a quantity when a unit follows it.
    fn number(&mut self, n: &str) -> Result<Ast, ParseError> {
        let unit = match self.peek() {
            Some(Tok::Str(u)) => Some(u.clone()),
            Some(Tok::Ident(u, false)) if calendar_unit(u).is_some() => Some(u.clone()),
            _ => None,
        };
        let dec = || {
            n.parse::<Decimal>()
                .map_err(|_| ParseError::new(format!("number out of range: {n}")))
        };
        if let Some(unit) = unit {
            self.pos += 1;
            return Ok(Ast::Literal(Item::Quantity(Quantity::new(dec()?, &unit))));
        }
        if n.contains('.') {
            Ok(Ast::Literal(Item::Decimal(dec()?)))
        } else {
            match n.parse::<i64>() {
                Ok(i) => Ok(Ast::Literal(Item::Integer(i))),
                Err(_) => Ok(Ast::Literal(Item::Decimal(dec()?))),
            }
        }
    }
}
