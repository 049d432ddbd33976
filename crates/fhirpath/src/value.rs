//! The items a FHIRPath collection holds: System values (Boolean, String,
//! Integer, Decimal, Date/DateTime/Time, Quantity) and FHIR nodes pointing
//! into the resource's JSON with their FHIR type.

use rust_decimal::Decimal;
use serde_json::Value;

use crate::model::{self, TypeRef};
use crate::quantity::Quantity;
use crate::temporal::{Temporal, TemporalKind};

/// One item of a FHIRPath collection.
#[derive(Debug, Clone)]
pub enum Item<'a> {
    Boolean(bool),
    String(String),
    Integer(i64),
    Decimal(Decimal),
    /// A Date, DateTime or Time (see [`Temporal::kind`]).
    Temporal(Temporal),
    Quantity(Quantity),
    Node(Node<'a>),
    /// What `type()` returns: a namespace (`System` or `FHIR`) and a name.
    Type(TypeInfo),
}

#[derive(Debug, Clone, PartialEq)]
pub struct TypeInfo {
    pub namespace: &'static str,
    pub name: String,
}

/// A node of the resource: a JSON value, the `_name` sibling that carries
/// a primitive's id and extensions, and the FHIR type when it is known.
#[derive(Debug, Clone)]
pub struct Node<'a> {
    /// `Value::Null` for a primitive that has only extensions.
    pub(crate) value: &'a Value,
    pub(crate) extra: Option<&'a Value>,
    pub(crate) ty: Option<TypeRef>,
}

pub(crate) static NULL: Value = Value::Null;

impl<'a> Node<'a> {
    pub(crate) fn new(value: &'a Value, extra: Option<&'a Value>, ty: Option<TypeRef>) -> Self {
        Node { value, extra, ty }
    }

    /// A resource: its type from `resourceType`.
    pub(crate) fn resource(value: &'a Value) -> Self {
        let ty = value
            .get("resourceType")
            .and_then(Value::as_str)
            .and_then(TypeRef::named);
        Node::new(value, None, ty)
    }

    /// The JSON this node points at (`null` for an extension-only primitive).
    pub fn json(&self) -> &'a Value {
        self.value
    }

    /// The FHIR type code: `HumanName`, `Reference`, `dateTime`,
    /// `BackboneElement`, a resource type... `None` when not known.
    pub fn fhir_type(&self) -> Option<&'static str> {
        self.ty.map(|t| t.code)
    }

    pub(crate) fn type_ref(&self) -> Option<TypeRef> {
        self.ty
    }
}

impl Item<'_> {
    /// The type name FHIRPath reports: a FHIR type code for nodes, the
    /// System type name (`Integer`, `DateTime`, `Quantity`...) otherwise.
    pub fn type_name(&self) -> String {
        match self {
            Item::Node(n) => n
                .fhir_type()
                .map_or_else(|| json_kind_name(n.value).to_owned(), str::to_owned),
            other => other.system_type().to_owned(),
        }
    }

    pub(crate) fn system_type(&self) -> &'static str {
        match self {
            Item::Boolean(_) => "Boolean",
            Item::String(_) => "String",
            Item::Integer(_) => "Integer",
            Item::Decimal(_) => "Decimal",
            Item::Temporal(t) => match t.kind {
                TemporalKind::Date => "Date",
                TemporalKind::DateTime => "DateTime",
                TemporalKind::Time => "Time",
            },
            Item::Quantity(_) => "Quantity",
            Item::Type(_) => "TypeInfo",
            Item::Node(_) => "",
        }
    }

    /// The System value this item stands for: itself, or a FHIR primitive's
    /// value (a `Quantity`-like node gives its quantity). `None` for other
    /// complex nodes and for primitives that have only extensions.
    pub fn to_system(&self) -> Option<Item<'static>> {
        let Item::Node(n) = self else {
            return Some(match self {
                Item::Boolean(b) => Item::Boolean(*b),
                Item::String(s) => Item::String(s.clone()),
                Item::Integer(i) => Item::Integer(*i),
                Item::Decimal(d) => Item::Decimal(*d),
                Item::Temporal(t) => Item::Temporal(t.clone()),
                Item::Quantity(q) => Item::Quantity(q.clone()),
                Item::Type(t) => Item::Type(t.clone()),
                Item::Node(_) => return None,
            });
        };
        let code = n.fhir_type().unwrap_or("");
        match n.value {
            Value::Null | Value::Array(_) => None,
            Value::Object(o) => {
                if !code.is_empty() && !model::derives_from(code, "Quantity") {
                    return None;
                }
                let value = number(o.get("value")?)?;
                let unit = o
                    .get("code")
                    .or_else(|| o.get("unit"))
                    .and_then(Value::as_str)
                    .unwrap_or("1");
                Some(Item::Quantity(Quantity::new(value, unit)))
            }
            Value::Bool(b) => Some(Item::Boolean(*b)),
            Value::Number(_) => {
                let d = number(n.value)?;
                let integral = matches!(code, "integer" | "positiveInt" | "unsignedInt")
                    || (code.is_empty() && d.scale() == 0);
                if integral {
                    i64::try_from(d).ok().map(Item::Integer)
                } else {
                    Some(Item::Decimal(d))
                }
            }
            Value::String(s) => Some(match code {
                "date" => Item::Temporal(Temporal::parse_fhir(s, TemporalKind::Date)?),
                "dateTime" | "instant" => {
                    Item::Temporal(Temporal::parse_fhir(s, TemporalKind::DateTime)?)
                }
                "time" => Item::Temporal(Temporal::parse_time(s)?),
                "integer" | "positiveInt" | "unsignedInt" => Item::Integer(s.parse().ok()?),
                "decimal" => Item::Decimal(s.parse().ok()?),
                "boolean" => Item::Boolean(s.parse().ok()?),
                _ => Item::String(s.clone()),
            }),
        }
    }
}

/// A JSON number as an exact decimal (through its shortest text form).
pub(crate) fn number(v: &Value) -> Option<Decimal> {
    match v {
        Value::Number(n) => {
            let s = n.to_string();
            s.parse::<Decimal>()
                .ok()
                .or_else(|| Decimal::from_scientific(&s).ok())
        }
        _ => None,
    }
}

fn json_kind_name(v: &Value) -> &'static str {
    match v {
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_i64() => "integer",
        Value::Number(_) => "decimal",
        Value::String(_) => "string",
        _ => "Element",
    }
}
