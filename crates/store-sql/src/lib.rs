//! Search as SQL (search.html), written once for both relational stores.
//! Each criterion becomes a condition on the current-version row `c`, mostly
//! `EXISTS` over an index table; chains and `_has` nest the same conditions
//! on other rows. Every statement binds the practice as the first argument
//! and every table it reads, index subqueries included, is filtered by it.
//! Index rows are keyed by their resource's `rid` (`resource_current.rid`,
//! given once, never another resource's in any practice): they are read
//! by owner (`i.rid = c.rid`, from a current row of the practice) or by
//! value and then joined to a current row of the practice by `rid`.
//!
//! The two stores share the schema of the search tables (`resource_current`,
//! `idx_*`, with the same index names); a [`Dialect`] covers the rest:
//! placeholders, SQLite's index hints, and how a current row finds its body.

pub mod body;

use gp_fhir::ResourceType;
use gp_fhir::search::{
    Criterion, Modifier, ParamKind, ParamValue, Prefix, SearchQuery, SortField, Total, registry,
};
use gp_store::StoreError;
use gp_store::access::Sees;

/// The SQL engine a statement is written for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dialect {
    Sqlite,
    Postgres,
}

impl Dialect {
    fn placeholder(self, n: usize) -> String {
        match self {
            Dialect::Sqlite => format!("?{n}"),
            Dialect::Postgres => format!("${n}"),
        }
    }

    /// Forces an index where SQLite's planner would pick a worse one;
    /// PostgreSQL's planner has the statistics to choose for itself.
    fn hint(self, index: &str) -> String {
        match self {
            Dialect::Sqlite => format!("INDEXED BY {index}"),
            Dialect::Postgres => String::new(),
        }
    }

    /// Makes SQLite find current rows by `rid` when a value index drives
    /// (`c.rid IN (SELECT d.rid ...)`): it would otherwise read every
    /// current row of the type and test each against the list.
    fn by_rid(self) -> &'static str {
        match self {
            Dialect::Sqlite => "INDEXED BY resource_current_rid",
            Dialect::Postgres => "",
        }
    }

    /// Reads index rows by their owner, the primary key `(rid, param, n)`
    /// of SQLite's `WITHOUT ROWID` index tables (a value index would
    /// otherwise often be chosen); PostgreSQL has `{table}_owner`.
    fn owner(self) -> &'static str {
        match self {
            Dialect::Sqlite => "NOT INDEXED",
            Dialect::Postgres => "",
        }
    }

    /// The join from the current row `c` to its version's body `v`.
    fn body_join(self) -> &'static str {
        match self {
            Dialect::Sqlite => "JOIN resource_version v ON v.rowid = c.vrow AND v.practice = ?1",
            Dialect::Postgres => {
                "JOIN resource_version v ON v.practice = $1 AND v.type = c.type AND v.id = c.id AND v.version = c.version"
            }
        }
    }

    /// The join from the current row `c` to the version `v` that was
    /// current at the instant placeholder `at` ([`SearchQuery::as_of`]):
    /// the current one if it was written by then, else the latest written
    /// by then (none for a resource created since). Versions of a
    /// resource are written in order, so the highest number is the latest.
    /// (`+w.last_updated`: SQLite would otherwise read the type's versions
    /// by time, all of them up to the instant, for each resource changed
    /// since, rather than the resource's few.)
    fn as_of_join(self, at: &str) -> String {
        match self {
            Dialect::Sqlite => format!(
                "JOIN resource_version v ON v.rowid = (CASE WHEN c.last_updated <= {at} THEN c.vrow ELSE
                   (SELECT w.rowid FROM resource_version w WHERE w.practice = ?1 AND w.type = c.type AND w.id = c.id AND +w.last_updated <= {at} ORDER BY w.version DESC LIMIT 1) END)
                 AND v.practice = ?1"
            ),
            Dialect::Postgres => format!(
                "JOIN resource_version v ON v.practice = $1 AND v.type = c.type AND v.id = c.id AND v.version = (CASE WHEN c.last_updated <= {at} THEN c.version ELSE
                   (SELECT max(w.version) FROM resource_version w WHERE w.practice = $1 AND w.type = c.type AND w.id = c.id AND w.last_updated <= {at}) END)"
            ),
        }
    }

    /// The column ordering current rows as they were written.
    fn write_order(self) -> &'static str {
        match self {
            Dialect::Sqlite => "c.vrow",
            Dialect::Postgres => "c.seq",
        }
    }
}

/// A value bound to a statement.
#[derive(Clone, Debug, PartialEq)]
pub enum Arg {
    Int(i64),
    Real(f64),
    Text(String),
}

impl From<i64> for Arg {
    fn from(v: i64) -> Self {
        Arg::Int(v)
    }
}

impl From<f64> for Arg {
    fn from(v: f64) -> Self {
        Arg::Real(v)
    }
}

impl From<String> for Arg {
    fn from(v: String) -> Self {
        Arg::Text(v)
    }
}

/// A statement's arguments; the first is always the practice.
struct Args<'s> {
    dialect: Dialect,
    values: Vec<Arg>,
    /// Which restricted entries the statement may reach.
    sees: &'s Sees,
}

impl<'s> Args<'s> {
    fn new(dialect: Dialect, practice: i64, sees: &'s Sees) -> Self {
        Args {
            dialect,
            values: vec![Arg::Int(practice)],
            sees,
        }
    }

    /// ` AND <condition>` hiding from the current row `alias` what the
    /// context may not see (access.rs): a restricted entry, unless the
    /// user holds an unexpired break-glass grant for its patient. Empty
    /// when the context sees everything. Online (a patient context): no
    /// restricted entry, and none tagged hidden from online access (its
    /// `_tag` index row).
    fn visible(&mut self, alias: &str) -> String {
        match self.sees {
            Sees::All => String::new(),
            Sees::Online => {
                let (pr, hint) = (self.practice(), self.dialect.owner());
                let (system, code) = (
                    self.bind(gp_store::access::ONLINE_ACCESS.to_owned()),
                    self.bind(gp_store::access::HIDDEN_ONLINE.to_owned()),
                );
                format!(
                    " AND {alias}.restricted IS NULL AND NOT EXISTS (SELECT 1 FROM idx_token o {hint} WHERE o.rid = {alias}.rid AND +o.practice = {pr} AND o.param = '_tag' AND o.system = {system} AND o.code = {code})"
                )
            }
            Sees::Unrestricted { holder: None, .. } => format!(" AND {alias}.restricted IS NULL"),
            Sees::Unrestricted {
                holder: Some(holder),
                now,
            } => {
                let (pr, user, session, now) = (
                    self.practice(),
                    self.bind(holder.user_id.clone()),
                    self.bind(holder.session.clone()),
                    self.bind(now.millis()),
                );
                format!(
                    " AND ({alias}.restricted IS NULL OR {alias}.restricted IN (SELECT g.patient FROM break_glass g WHERE g.practice = {pr} AND g.user_id = {user} AND g.session = {session} AND g.expires > {now}))"
                )
            }
        }
    }

    /// Binds a value and returns its placeholder.
    fn bind(&mut self, v: impl Into<Arg>) -> String {
        self.values.push(v.into());
        self.dialect.placeholder(self.values.len())
    }

    fn hint(&self, index: &str) -> String {
        self.dialect.hint(index)
    }

    /// The practice's placeholder.
    fn practice(&self) -> String {
        self.dialect.placeholder(1)
    }
}

fn table(kind: ParamKind) -> Option<&'static str> {
    Some(match kind {
        ParamKind::String => "idx_string",
        ParamKind::Token => "idx_token",
        ParamKind::Date => "idx_date",
        ParamKind::Number => "idx_number",
        ParamKind::Quantity => "idx_quantity",
        ParamKind::Reference => "idx_reference",
        ParamKind::Uri => "idx_uri",
        ParamKind::Composite | ParamKind::Special => return None,
    })
}

/// A statement with only the arguments it uses, renumbered in order. Both
/// engines want exactly the parameters a statement names (PostgreSQL also
/// needs each to appear, to know its type), while a builder binds values
/// some conditions then leave out, and the count leaves out the page's.
fn compact(sql: &str, args: &[Arg], dialect: Dialect) -> Statement {
    let sigil = match dialect {
        Dialect::Sqlite => '?',
        Dialect::Postgres => '$',
    };
    let mut out = String::with_capacity(sql.len());
    let mut kept: Vec<Arg> = Vec::new();
    let mut renumbered: Vec<Option<usize>> = vec![None; args.len() + 1];
    let mut rest = sql;
    while let Some(at) = rest.find(sigil) {
        out.push_str(&rest[..at]);
        let after = &rest[at + 1..];
        let digits = after.bytes().take_while(u8::is_ascii_digit).count();
        match after[..digits].parse::<usize>() {
            Ok(n) if (1..=args.len()).contains(&n) => {
                let new = match renumbered[n] {
                    Some(new) => new,
                    None => {
                        kept.push(args[n - 1].clone());
                        renumbered[n] = Some(kept.len());
                        kept.len()
                    }
                };
                out.push_str(&dialect.placeholder(new));
            }
            _ => {
                out.push(sigil);
                out.push_str(&after[..digits]);
            }
        }
        rest = &after[digits..];
    }
    out.push_str(rest);
    Statement {
        sql: out,
        args: kept,
    }
}

/// Escapes `%`, `_` and `\` for a `LIKE ... ESCAPE '\'` pattern.
fn like_escape(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('%', "\\%")
        .replace('_', "\\_")
}

fn unsupported(what: String) -> StoreError {
    StoreError::NotSupported(what)
}

/// The condition one value puts on index row `i` (search.html#prefix for
/// ranges: the row's range against the value's).
fn value_sql(
    a: &mut Args<'_>,
    i: &str,
    kind: ParamKind,
    modifier: Modifier,
    v: &ParamValue,
) -> Result<String, StoreError> {
    Ok(match (kind, v) {
        (ParamKind::String, ParamValue::String(s)) => match modifier {
            Modifier::Exact => format!("{i}.exact = {}", a.bind(s.clone())),
            Modifier::Contains => format!(
                "{i}.norm LIKE {} ESCAPE '\\'",
                a.bind(format!("%{}%", like_escape(s)))
            ),
            _ => format!(
                "({i}.norm >= {} AND {i}.norm < {})",
                a.bind(s.clone()),
                a.bind(format!("{s}\u{10FFFF}"))
            ),
        },
        (ParamKind::Token, ParamValue::String(text)) => {
            // `:text`: the display or text, by word prefix.
            let (start, inner) = (
                a.bind(format!("{}%", like_escape(text))),
                a.bind(format!("% {}%", like_escape(text))),
            );
            format!("({i}.text LIKE {start} ESCAPE '\\' OR {i}.text LIKE {inner} ESCAPE '\\')")
        }
        (ParamKind::Token, _)
            if matches!(
                modifier,
                Modifier::Above | Modifier::Below | Modifier::In | Modifier::NotIn
            ) =>
        {
            // The engine expands these into `Codes` before a statement is
            // built; one that reaches here was not (a search where no
            // terminology is at hand).
            return Err(unsupported(format!(
                "the token modifier {modifier:?} where no terminology is at hand"
            )));
        }
        (ParamKind::Token, ParamValue::Codes { system, codes }) => {
            if codes.is_empty() {
                "FALSE".to_owned()
            } else {
                let list: Vec<String> = codes.iter().map(|c| a.bind(c.clone())).collect();
                format!(
                    "({i}.system = {} AND {i}.code IN ({}))",
                    a.bind(system.clone()),
                    list.join(", ")
                )
            }
        }
        (ParamKind::Token, ParamValue::Token { system, code }) => {
            let mut parts = Vec::new();
            if let Some(code) = code {
                parts.push(format!("{i}.code = {}", a.bind(code.clone())));
            }
            match system.as_deref() {
                None => {}
                Some("") => parts.push(format!("{i}.system IS NULL")),
                Some(s) => parts.push(format!("{i}.system = {}", a.bind(s.to_owned()))),
            }
            if parts.is_empty() {
                "TRUE".to_owned()
            } else {
                parts.join(" AND ")
            }
        }
        (ParamKind::Date, ParamValue::Date(d)) => {
            let (pl, ph) = (a.bind(d.range.low.millis()), a.bind(d.range.high.millis()));
            let (vl, vh) = (format!("{i}.low"), format!("{i}.high"));
            // `low <= ph` follows from `high <= ph` (a range's low is never
            // above its high) but bounds the index range on low, which
            // otherwise runs to the end (birthdate=X read every later birth).
            let bound = a.bind(d.range.high.millis());
            let within = format!("({vl} >= {pl} AND {vl} <= {bound} AND {vh} <= {ph})");
            match d.prefix {
                Prefix::Eq => within,
                Prefix::Ne => format!("NOT {within}"),
                Prefix::Gt => format!("{vh} > {ph}"),
                Prefix::Lt => format!("{vl} < {pl}"),
                Prefix::Ge => format!("({vh} > {ph} OR {within})"),
                Prefix::Le => format!("({vl} < {pl} OR {within})"),
                Prefix::Sa => format!("{vl} >= {ph}"),
                Prefix::Eb => format!("{vh} <= {pl}"),
                Prefix::Ap => format!("({vl} < {ph} AND {vh} > {pl})"),
            }
        }
        (ParamKind::Number, ParamValue::Number(n)) => {
            number_sql(a, &format!("{i}.value"), n, &|v| v)
        }
        (
            ParamKind::Quantity,
            ParamValue::Quantity {
                number,
                system,
                code,
            },
        ) => {
            // search.html#quantity: a UCUM value is compared in canonical
            // units, with every UCUM quantity OpenGP reduces ("the server
            // may also apply canonical units"): 5.4 mg finds 5400 ug, 37 Cel
            // finds 98.6 [degF]. The bounds (the implicit range, the value,
            // `ap`'s 10% of the value as written) are converted one by one,
            // which holds for the offset of degrees Celsius and Fahrenheit.
            if system.as_deref() == Some(gp_fhir::ucum::SYSTEM)
                && let Some(code) = code
                && let Some(conv) = gp_fhir::ucum::conversion(code)
                && conv.factor > 0.0
            {
                let code = a.bind(conv.code.clone());
                let value = number_sql(a, &format!("{i}.canonical_value"), number, &|v| {
                    conv.apply(v)
                });
                return Ok(format!("{i}.canonical_code = {code} AND {value}"));
            }
            let mut parts = vec![number_sql(a, &format!("{i}.value"), number, &|v| v)];
            if let Some(code) = code {
                parts.push(format!("{i}.code = {}", a.bind(code.clone())));
            }
            if let Some(system) = system {
                parts.push(format!("{i}.system = {}", a.bind(system.clone())));
            }
            parts.join(" AND ")
        }
        (ParamKind::Reference, ParamValue::Reference { ty, id, url }) => {
            let mut parts = Vec::new();
            if let Some(t) = ty {
                parts.push(format!(
                    "{i}.target_type = {}",
                    a.bind(t.as_str().to_owned())
                ));
            }
            if let Some(id) = id {
                parts.push(format!("{i}.target_id = {}", a.bind(id.clone())));
            }
            if let Some(u) = url {
                parts.push(format!("{i}.url = {}", a.bind(u.clone())));
            }
            if parts.is_empty() {
                "FALSE".to_owned()
            } else {
                parts.join(" AND ")
            }
        }
        (ParamKind::Uri, ParamValue::Uri(u)) => match modifier {
            Modifier::Below => format!(
                "{i}.uri LIKE {} ESCAPE '\\'",
                a.bind(format!("{}%", like_escape(u)))
            ),
            Modifier::Above => format!(
                "{} LIKE replace(replace({i}.uri, '%', '\\%'), '_', '\\_') || '%' ESCAPE '\\'",
                a.bind(u.clone())
            ),
            _ => format!("{i}.uri = {}", a.bind(u.clone())),
        },
        (kind, v) => return Err(unsupported(format!("a {kind:?} search with {v:?}"))),
    })
}

/// search.html#number: the value's implicit range for `eq`/`ne`, the exact
/// value for the ordering prefixes, ±10% for `ap`; each bound passed
/// through `to`, the conversion to the column's units (increasing).
fn number_sql(
    a: &mut Args<'_>,
    col: &str,
    n: &gp_fhir::search::NumberCriterion,
    to: &dyn Fn(f64) -> f64,
) -> String {
    match n.prefix {
        Prefix::Eq => format!(
            "({col} >= {} AND {col} < {})",
            a.bind(to(n.low)),
            a.bind(to(n.high))
        ),
        Prefix::Ne => format!(
            "({col} < {} OR {col} >= {})",
            a.bind(to(n.low)),
            a.bind(to(n.high))
        ),
        Prefix::Gt | Prefix::Sa => format!("{col} > {}", a.bind(to(n.value))),
        Prefix::Lt | Prefix::Eb => format!("{col} < {}", a.bind(to(n.value))),
        Prefix::Ge => format!("{col} >= {}", a.bind(to(n.value))),
        Prefix::Le => format!("{col} <= {}", a.bind(to(n.value))),
        Prefix::Ap => {
            let margin = (n.value * 0.1).abs();
            format!(
                "({col} >= {} AND {col} <= {})",
                a.bind(to(n.value - margin)),
                a.bind(to(n.value + margin))
            )
        }
    }
}

/// Index rows of parameter `code` belonging to the row `alias` (a current
/// row, or an index row: anything with the resource's `rid`), read by
/// owner: one seek to the resource's few rows of the parameter. The row
/// `alias` carries the practice; a `rid` is never another practice's.
fn owned(a: &mut Args<'_>, table: &str, i: &str, alias: &str, code: &str) -> String {
    let (pr, hint) = (a.practice(), a.dialect.owner());
    format!(
        "{table} {i} {hint} WHERE {i}.rid = {alias}.rid AND +{i}.practice = {pr} AND {i}.param = {}",
        a.bind(code.to_owned())
    )
}

/// The condition of one parameter's values on index row `i`.
fn param_ors(
    a: &mut Args<'_>,
    i: &str,
    kind: ParamKind,
    modifier: Modifier,
    values: &[ParamValue],
) -> Result<String, StoreError> {
    let (pr, hint) = (a.practice(), a.dialect.owner());
    let ors = values
        .iter()
        .map(|v| match v {
            ParamValue::Identifier { system, value } => {
                value_sql(a, i, ParamKind::Token, Modifier::None, &ParamValue::Token { system: system.clone(), code: value.clone() })
            }
            ParamValue::OfType { system, code, value } => {
                // search.html#modifiers: the identifier's type and value.
                let (s, c, v) = (a.bind(system.clone()), a.bind(code.clone()), a.bind(value.clone()));
                Ok(format!("({i}.code = {v} AND EXISTS (SELECT 1 FROM idx_token t2 {hint} WHERE t2.rid = {i}.rid AND +t2.practice = {pr} AND t2.param = {i}.param || ':type' AND t2.grp = {i}.grp AND t2.system = {s} AND t2.code = {c}))"))
            }
            other => value_sql(a, i, kind, modifier, other),
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(ors.join(" OR "))
}

/// How well a criterion can drive a search from its value index (higher is
/// more selective); 0 when it cannot.
fn driver_rank(c: &Criterion) -> u8 {
    match c {
        Criterion::Param {
            kind: ParamKind::Reference,
            modifier,
            ..
        } if *modifier != Modifier::Not => 5,
        Criterion::Compartment { .. } => 4,
        // A list holds few entries.
        Criterion::List(_) => 6,
        Criterion::Param {
            kind: ParamKind::Token,
            modifier: Modifier::None | Modifier::Identifier | Modifier::OfType,
            values,
            ..
        } if values
            .iter()
            .all(|v| !matches!(v, ParamValue::Token { code: None, .. })) =>
        {
            3
        }
        Criterion::Param {
            kind: ParamKind::String | ParamKind::Uri,
            modifier: Modifier::None | Modifier::Exact,
            ..
        } => 2,
        // A date within bounds (`birthdate=1952-03-14`): a range of the value
        // index, where scanning the type probes every resource's dates.
        Criterion::Param {
            kind: ParamKind::Date,
            modifier: Modifier::None,
            values,
            ..
        } if !values.is_empty()
            && values
                .iter()
                .all(|v| matches!(v, ParamValue::Date(d) if d.prefix == Prefix::Eq)) =>
        {
            1
        }
        _ => 0,
    }
}

/// Whether a criterion is one seek of a value index ending with the
/// resource id (a token's code, a reference's target id), depending on the
/// resource's type and id only.
fn is_seek(c: &Criterion) -> bool {
    match c {
        Criterion::Param {
            kind: ParamKind::Token,
            modifier: Modifier::None,
            values,
            ..
        } => values
            .iter()
            .all(|v| matches!(v, ParamValue::Token { code: Some(_), .. })),
        Criterion::Param {
            kind: ParamKind::Reference,
            modifier: Modifier::None,
            values,
            ..
        } => values
            .iter()
            .all(|v| matches!(v, ParamValue::Reference { id: Some(_), .. })),
        _ => false,
    }
}

/// `idx_reference d` rows of the entries (`item`) of the Lists `ids` that
/// the context may see, but for entries marked deleted (`item:deleted`),
/// open for more conditions on `d`.
fn list_items(a: &mut Args<'_>, ids: &[gp_fhir::Id]) -> String {
    let pr = a.practice();
    let owner = a.dialect.owner();
    let ids: Vec<String> = ids.iter().map(|id| a.bind(id.to_string())).collect();
    let visible = a.visible("l");
    format!(
        "resource_current l CROSS JOIN idx_reference d {owner}
         WHERE l.practice = {pr} AND l.type = 'List' AND l.id IN ({}) AND NOT l.deleted{visible}
           AND d.rid = l.rid AND +d.practice = {pr} AND d.param = 'item'
           AND NOT EXISTS (SELECT 1 FROM idx_reference x {owner} WHERE x.rid = d.rid AND +x.practice = {pr} AND x.param = 'item:deleted' AND x.target_type = d.target_type AND x.target_id = d.target_id)",
        ids.join(", ")
    )
}

/// The most selective criterion as `c.id IN (SELECT id FROM <value index>)`,
/// which SQLite runs first and then looks rows up by primary key.
///
/// `seeks` are conditions on the driver's row `d` (its type and id) that are
/// one index seek each: checking them inside the subquery means a candidate
/// that fails them is never looked up (a patient's thousands of observations,
/// of which a code keeps a few dozen).
fn driver_sql(
    a: &mut Args<'_>,
    ty: ResourceType,
    c: &Criterion,
    seeks: &[String],
) -> Result<Option<String>, StoreError> {
    let seeks: String = seeks.iter().map(|s| format!(" AND {s}")).collect();
    let tyarg = a.bind(ty.as_str().to_owned());
    let (pr, target) = (a.practice(), a.hint("idx_reference_value"));
    Ok(match c {
        Criterion::Param {
            code,
            kind,
            modifier,
            values,
        } => {
            let Some(t) = table(*kind) else {
                return Ok(None);
            };
            let (t, code, kind) = if *modifier == Modifier::Identifier {
                ("idx_token", format!("{code}:identifier"), ParamKind::Token)
            } else {
                (t, (*code).to_owned(), *kind)
            };
            let p = a.bind(code);
            let ors = param_ors(a, "d", kind, *modifier, values)?;
            Some(format!(
                "c.rid IN (SELECT d.rid FROM {t} d WHERE d.practice = {pr} AND d.type = {tyarg} AND d.param = {p} AND ({ors}){seeks})"
            ))
        }
        Criterion::List(lists) => {
            let rows = list_items(a, lists);
            Some(format!(
                "c.id IN (SELECT d.target_id FROM {rows} AND d.target_type = {tyarg})"
            ))
        }
        Criterion::Compartment {
            compartment,
            id,
            members,
        } if *compartment != ty => {
            let codes: Vec<String> = members
                .iter()
                .filter(|(t, _)| *t == ty)
                .flat_map(|(_, cs)| cs.iter())
                .map(|c| a.bind((*c).to_owned()))
                .collect();
            if codes.is_empty() {
                return Ok(Some("FALSE".into()));
            }
            let (ct, cid) = (a.bind(compartment.as_str().to_owned()), a.bind(id.clone()));
            Some(format!(
                "c.rid IN (SELECT d.rid FROM idx_reference d {target} WHERE d.practice = {pr} AND d.type = {tyarg} AND d.param IN ({}) AND d.target_id = {cid} AND d.target_type = {ct}{seeks})",
                codes.join(", ")
            ))
        }
        _ => None,
    })
}

/// The condition a criterion puts on the current-version row `alias` of a
/// resource of type `ty` (None for a whole-practice search).
pub(crate) fn criterion_sql(
    a: &mut Args<'_>,
    alias: &str,
    ty: Option<ResourceType>,
    c: &Criterion,
    depth: usize,
) -> Result<String, StoreError> {
    let i = format!("i{depth}");
    let pr = a.practice();
    Ok(match c {
        Criterion::Id(ids) => {
            let list: Vec<String> = ids.iter().map(|id| a.bind(id.to_string())).collect();
            format!("{alias}.id IN ({})", list.join(", "))
        }
        Criterion::LastUpdated(dates) => {
            let ors: Vec<String> = dates
                .iter()
                .map(|d| {
                    let (low, high) = (a.bind(d.range.low.millis()), a.bind(d.range.high.millis()));
                    let col = format!("{alias}.last_updated");
                    match d.prefix {
                        Prefix::Eq | Prefix::Ap => format!("({col} >= {low} AND {col} < {high})"),
                        Prefix::Ne => format!("({col} < {low} OR {col} >= {high})"),
                        Prefix::Gt | Prefix::Sa => format!("{col} >= {high}"),
                        Prefix::Lt | Prefix::Eb => format!("{col} < {low}"),
                        Prefix::Ge => format!("{col} >= {low}"),
                        Prefix::Le => format!("{col} < {high}"),
                    }
                })
                .collect();
            format!("({})", ors.join(" OR "))
        }
        Criterion::Text { code, values } => {
            let column = if *code == "_text" {
                "narrative"
            } else {
                "content"
            };
            // The matching resources, found once in the full-text index (not
            // per candidate), so the words can drive the search.
            match a.dialect {
                // FTS5 (`idx_text`, keyed by the current version's rowid):
                // every word of a value, as a word prefix, in the column.
                Dialect::Sqlite => {
                    let ors: Vec<String> = values
                        .iter()
                        .map(|words| {
                            let ands: Vec<String> = words
                                .iter()
                                .map(|w| format!("{column} : \"{w}\"*"))
                                .collect();
                            format!("({})", ands.join(" AND "))
                        })
                        .collect();
                    let q = a.bind(ors.join(" OR "));
                    format!(
                        "({alias}.type, {alias}.id) IN (SELECT v.type, v.id FROM idx_text JOIN resource_version v ON v.rowid = idx_text.rowid WHERE idx_text MATCH {q} AND v.practice = {pr})"
                    )
                }
                // A tsquery of word prefixes on the GIN-indexed tsvector.
                Dialect::Postgres => {
                    let ors: Vec<String> = values
                        .iter()
                        .map(|words| {
                            let ands: Vec<String> =
                                words.iter().map(|w| format!("{w}:*")).collect();
                            format!("({})", ands.join(" & "))
                        })
                        .collect();
                    let (q, p) = (a.bind(ors.join(" | ")), a.bind((*code).to_owned()));
                    format!(
                        "({alias}.type, {alias}.id) IN (SELECT {i}.type, {i}.id FROM idx_text {i} WHERE {i}.practice = {pr} AND {i}.param = {p} AND to_tsvector('simple', {i}.body) @@ to_tsquery('simple', {q}))"
                    )
                }
            }
        }
        Criterion::List(lists) => {
            let rows = list_items(a, lists);
            format!(
                "EXISTS (SELECT 1 FROM {rows} AND d.target_type = {alias}.type AND d.target_id = {alias}.id)"
            )
        }
        Criterion::Types(types) => {
            let list: Vec<String> = types
                .iter()
                .map(|t| a.bind(t.as_str().to_owned()))
                .collect();
            format!("{alias}.type IN ({})", list.join(", "))
        }
        Criterion::Missing {
            code,
            kind,
            missing,
        } => {
            let exists = match table(*kind) {
                Some(t) => format!("EXISTS (SELECT 1 FROM {})", owned(a, t, &i, alias, code)),
                None => {
                    // A composite is present when its first component is.
                    format!(
                        "EXISTS (SELECT 1 FROM idx_token {i} {} WHERE {i}.rid = {alias}.rid AND +{i}.practice = {pr} AND {i}.param LIKE {})",
                        a.dialect.owner(),
                        a.bind(format!("{code}$%"))
                    )
                }
            };
            if *missing {
                format!("NOT {exists}")
            } else {
                exists
            }
        }
        Criterion::Param {
            code,
            kind: ParamKind::Composite,
            values,
            ..
        } => {
            let Some(ty) = ty else {
                return Err(unsupported("a composite search across types".into()));
            };
            let ors = values
                .iter()
                .map(|v| composite_sql(a, alias, ty, code, v, depth))
                .collect::<Result<Vec<_>, _>>()?;
            format!("({})", ors.join(" OR "))
        }
        Criterion::Param {
            code,
            kind,
            modifier,
            values,
        } => {
            let t = table(*kind).ok_or_else(|| unsupported(format!("searching by '{code}'")))?;
            let (t, code) = if *modifier == Modifier::Identifier {
                ("idx_token", format!("{code}:identifier"))
            } else {
                (t, (*code).to_owned())
            };
            let kind = if *modifier == Modifier::Identifier {
                ParamKind::Token
            } else {
                *kind
            };
            let rows = owned(a, t, &i, alias, &code);
            let ors = param_ors(a, &i, kind, *modifier, values)?;
            let matching = format!("EXISTS (SELECT 1 FROM {rows} AND ({ors}))");
            // search.html#modifiers: `:not` matches resources with no such
            // code, including those with no value at all.
            if *modifier == Modifier::Not {
                format!("NOT {matching}")
            } else {
                matching
            }
        }
        Criterion::Chain {
            code,
            targets,
            inner,
        } => {
            let t = format!("t{depth}");
            let list: Vec<String> = targets
                .iter()
                .map(|t| a.bind(t.as_str().to_owned()))
                .collect();
            let inner_ty = if targets.len() == 1 {
                targets.first().copied()
            } else {
                None
            };
            let inner_sql = criterion_sql(a, &t, inner_ty, inner, depth + 1)?;
            let rows = owned(a, "idx_reference", &i, alias, code);
            let visible = a.visible(&t);
            format!(
                "EXISTS (SELECT 1 FROM {rows} AND {i}.target_type IN ({list}) AND EXISTS (SELECT 1 FROM resource_current {t} WHERE {t}.practice = {pr} AND {t}.type = {i}.target_type AND {t}.id = {i}.target_id AND NOT {t}.deleted{visible} AND {inner_sql}))",
                list = list.join(", ")
            )
        }
        Criterion::Has {
            source,
            code,
            inner,
        } => {
            let s = format!("s{depth}");
            let target = a.hint("idx_reference_value");
            let inner_sql = criterion_sql(a, &s, Some(*source), inner, depth + 1)?;
            let (src, code) = (
                a.bind(source.as_str().to_owned()),
                a.bind((*code).to_owned()),
            );
            let visible = a.visible(&s);
            format!(
                "EXISTS (SELECT 1 FROM idx_reference {i} {target} JOIN resource_current {s} ON {s}.practice = {pr} AND {s}.rid = {i}.rid AND NOT {s}.deleted{visible}
                 WHERE {i}.practice = {pr} AND {i}.type = {src} AND {i}.param = {code} AND {i}.target_type = {alias}.type AND {i}.target_id = {alias}.id AND {inner_sql})"
            )
        }
        Criterion::Compartment {
            compartment,
            id,
            members,
        } => {
            let (ct, cid) = (a.bind(compartment.as_str().to_owned()), a.bind(id.clone()));
            let owner = a.dialect.owner();
            // The compartment's own resource is in it.
            let mut ors = vec![format!("({alias}.type = {ct} AND {alias}.id = {cid})")];
            for (t, codes) in members.iter().filter(|(_, codes)| !codes.is_empty()) {
                let list: Vec<String> = codes.iter().map(|c| a.bind((*c).to_owned())).collect();
                ors.push(format!(
                    "({alias}.type = {} AND EXISTS (SELECT 1 FROM idx_reference {i} {owner} WHERE {i}.rid = {alias}.rid AND +{i}.practice = {pr} AND {i}.param IN ({}) AND {i}.target_type = {ct} AND {i}.target_id = {cid}))",
                    a.bind(t.as_str().to_owned()),
                    list.join(", ")
                ));
            }
            format!("({})", ors.join(" OR "))
        }
        Criterion::All(all) => {
            let ands = all
                .iter()
                .map(|c| criterion_sql(a, alias, ty, c, depth))
                .collect::<Result<Vec<_>, _>>()?;
            format!("({})", ands.join(" AND "))
        }
        other => return Err(unsupported(format!("the criterion {other:?}"))),
    })
}

/// A composite value: every component matched by rows of one group.
fn composite_sql(
    a: &mut Args<'_>,
    alias: &str,
    ty: ResourceType,
    code: &str,
    v: &ParamValue,
    depth: usize,
) -> Result<String, StoreError> {
    let ParamValue::Composite(parts) = v else {
        return Err(unsupported(format!("'{code}' needs composite values")));
    };
    let p = registry::param(ty, code).ok_or_else(|| unsupported(format!("'{code}'")))?;
    let mut joins = Vec::new();
    let (pr, owner) = (a.practice(), a.dialect.owner());
    for (n, (part, (url, _))) in parts.iter().zip(&p.components).enumerate() {
        let kind = registry::by_url(ty, url).map_or(ParamKind::Token, |c| c.kind);
        let t = table(kind).ok_or_else(|| unsupported(format!("the component {url}")))?;
        let i = format!("c{depth}_{n}");
        let cond = value_sql(a, &i, kind, Modifier::None, part)?;
        let param = a.bind(format!("{code}${n}"));
        let same_group = if n == 0 {
            String::new()
        } else {
            format!(" AND {i}.grp = c{depth}_0.grp")
        };
        joins.push((format!("{t} {i} {owner}"), format!("{i}.rid = {alias}.rid AND +{i}.practice = {pr} AND {i}.param = {param}{same_group} AND {cond}")));
    }
    let from: Vec<String> = joins.iter().map(|(f, _)| f.clone()).collect();
    let wh: Vec<String> = joins.iter().map(|(_, w)| w.clone()).collect();
    Ok(format!(
        "EXISTS (SELECT 1 FROM {} WHERE {})",
        from.join(", "),
        wh.join(" AND ")
    ))
}

/// What a resource sorts by for a parameter: its lowest value ascending,
/// highest descending (search.html#sort), each key with whether it
/// follows the direction asked for; resources without one sort last
/// either way. Quantities sort by their UCUM canonical value (5 g after
/// 900 mg, 98.6 [degF] beside 37 Cel), grouped by canonical unit so
/// that incommensurable values are not interleaved, those in no unit
/// OpenGP reduces after them as written.
fn sort_keys(a: &mut Args<'_>, code: &str, kind: ParamKind, desc: bool) -> Vec<(String, bool)> {
    let agg = if desc { "max" } else { "min" };
    let cols: &[(&str, &str, bool)] = match kind {
        ParamKind::String => &[("s.norm", agg, true)],
        ParamKind::Token => &[("s.code", agg, true)],
        ParamKind::Date if desc => &[("s.high", agg, true)],
        ParamKind::Date => &[("s.low", agg, true)],
        ParamKind::Number => &[("s.value", agg, true)],
        ParamKind::Quantity => &[
            ("s.canonical_code", "min", false),
            ("COALESCE(s.canonical_value, s.value)", agg, true),
        ],
        ParamKind::Reference => &[("s.target_id", agg, true)],
        ParamKind::Uri => &[("s.uri", agg, true)],
        _ => return Vec::new(),
    };
    let Some(t) = table(kind) else {
        return Vec::new();
    };
    let p = a.bind(code.to_owned());
    let (pr, hint) = (a.practice(), a.dialect.owner());
    cols.iter()
        .map(|(col, agg, follows)| {
            (
                format!(
                    "(SELECT {agg}({col}) FROM {t} s {hint} WHERE s.rid = c.rid AND +s.practice = {pr} AND s.param = {p})"
                ),
                *follows,
            )
        })
        .collect()
}

/// The condition that keeps the versions of resources `sees` may not see
/// out of a history statement on `resource_version` (unaliased): the
/// resource's current row must not be a restricted one it may not see.
/// The practice is placeholder 1, as in every statement; the condition's
/// own arguments are numbered from `next`. Restricted rows are few and
/// indexed apart (`resource_current_restricted`), so the set is cheap.
pub fn visible_history(dialect: Dialect, sees: &Sees, next: usize) -> Option<(String, Vec<Arg>)> {
    let mut a = Args::new(dialect, 0, sees);
    // Placeholders `next`, `next + 1`... for what `visible` binds.
    a.values.resize(next - 1, Arg::Int(0));
    let visible = a.visible("h");
    if visible.is_empty() {
        return None;
    }
    let pr = a.practice();
    // Hidden-from-online entries are not marked on the current row.
    let marked = if *sees == Sees::Online {
        ""
    } else {
        " AND h.restricted IS NOT NULL"
    };
    let sql = format!(
        "(type, id) NOT IN (SELECT h.type, h.id FROM resource_current h WHERE h.practice = {pr}{marked} AND NOT (TRUE{visible}))"
    );
    Some((sql, a.values.split_off(next - 1)))
}

/// One statement and the values of its placeholders, in order.
#[derive(Clone, Debug, PartialEq)]
pub struct Statement {
    pub sql: String,
    pub args: Vec<Arg>,
}

/// A search as statements: the count, when the query asks for a total, and
/// the page, unless it asks for no entries (`_count=0`).
#[derive(Debug)]
pub struct Built {
    pub total: Option<Statement>,
    pub page: Option<Statement>,
    /// The page's limit when it starts at the first match.
    first_page: Option<usize>,
}

impl Built {
    /// Whether the count must run once the page has returned `returned`
    /// rows: a first page shorter than its limit holds every match, so its
    /// length is the total (the count would scan the same rows again).
    pub fn needs_count(&self, returned: usize) -> bool {
        self.total.is_some() && self.first_page.is_none_or(|limit| returned >= limit)
    }
}

/// The statements searching the practice's current resources (or their
/// versions of an instant, [`SearchQuery::as_of`]). The page selects
/// `(type, id, version, last_updated, deleted, body)`.
pub fn search(
    dialect: Dialect,
    practice: i64,
    sees: &Sees,
    ty: Option<ResourceType>,
    q: &SearchQuery,
) -> Result<Built, StoreError> {
    let mut a = Args::new(dialect, practice, sees);
    let pr = a.practice();
    let visible = a.visible("c");
    // The version each page row serves: the current one, or the one of
    // `as_of`, which a resource deleted or changed since still has.
    let (join, mut wh) = match q.as_of {
        None => (
            dialect.body_join().to_owned(),
            vec![format!("NOT c.deleted{visible}")],
        ),
        Some(at) => {
            let at = a.bind(at.millis());
            (
                dialect.as_of_join(&at),
                vec![
                    format!("(NOT c.deleted OR c.last_updated > {at}){visible}"),
                    "NOT v.deleted".to_owned(),
                ],
            )
        }
    };
    wh.insert(0, format!("c.practice = {pr}"));
    match ty {
        Some(t) => wh.push(format!("c.type = {}", a.bind(t.as_str().to_owned()))),
        // A search across types covers the record, not its audit trail,
        // which is reached through AuditEvent's own URLs only.
        None => wh.push("c.type <> 'AuditEvent'".to_owned()),
    }
    // One criterion may drive the search from its value index; the others
    // are checked per candidate through the owner indexes.
    let driver = ty.and_then(|_| {
        q.criteria
            .iter()
            .enumerate()
            .filter(|(_, c)| driver_rank(c) > 0)
            .max_by_key(|(_, c)| driver_rank(c))
            .map(|(n, _)| n)
    });
    // The other criteria that are one seek per candidate go inside the
    // driver's subquery, before the candidate's row is read.
    let pushed: Vec<usize> = match driver.map(|n| &q.criteria[n]) {
        Some(Criterion::Param { .. } | Criterion::Compartment { .. }) => (0..q.criteria.len())
            .filter(|&n| Some(n) != driver && is_seek(&q.criteria[n]))
            .collect(),
        _ => Vec::new(),
    };
    // Whether a value index drives by `rid`.
    let mut by_rid = false;
    let seeks = pushed
        .iter()
        .map(|&n| criterion_sql(&mut a, "d", ty, &q.criteria[n], 0))
        .collect::<Result<Vec<_>, _>>()?;
    for (n, c) in q.criteria.iter().enumerate() {
        if pushed.contains(&n) {
            continue;
        }
        let sql = match (driver == Some(n), ty) {
            (true, Some(t)) => match driver_sql(&mut a, t, c, &seeks)? {
                Some(d) => {
                    by_rid = d.starts_with("c.rid IN");
                    d
                }
                None => {
                    // Not driving after all: the seeks stay outside.
                    wh.extend(seeks.iter().cloned());
                    criterion_sql(&mut a, "c", ty, c, 0)?
                }
            },
            _ => criterion_sql(&mut a, "c", ty, c, 0)?,
        };
        wh.push(sql);
    }
    let where_sql = wh.join(" AND ");
    let current = if by_rid {
        format!("resource_current c {}", dialect.by_rid())
    } else {
        "resource_current c".to_owned()
    };
    let counted = match q.as_of {
        None => current.clone(),
        Some(_) => format!("{current} {join}"),
    };
    let total = (q.total != Total::None).then(|| {
        let sql = format!("SELECT count(*) FROM {counted} WHERE {where_sql}");
        compact(&sql, &a.values, dialect)
    });
    if q.count == 0 {
        return Ok(Built {
            total,
            page: None,
            first_page: None,
        });
    }
    // The cursor narrows the page, not the total.
    let page_where = match (&q.after, q.sort.is_empty()) {
        (Some((t, id)), true) => format!(
            "{where_sql} AND (c.type, c.id) > ({}, {})",
            a.bind(t.as_str().to_owned()),
            a.bind(id.clone())
        ),
        _ => where_sql,
    };
    let mut order = Vec::new();
    for key in &q.sort {
        let dir = if key.desc { "DESC" } else { "ASC" };
        match key.field {
            SortField::Id => order.push(format!("c.id {dir}")),
            SortField::LastUpdated => order.push(format!("c.last_updated {dir}")),
            SortField::Param { code, kind } => {
                for (e, follows) in sort_keys(&mut a, code, kind, key.desc) {
                    order.push(format!("{e} IS NULL"));
                    order.push(format!("{e} {}", if follows { dir } else { "ASC" }));
                }
            }
        }
    }
    // Versions stamped in the same millisecond keep the order they were
    // written in, in the direction of the last sort key.
    if let Some(k) = q.sort.last()
        && k.field == SortField::LastUpdated
    {
        order.push(format!(
            "{} {}",
            dialect.write_order(),
            if k.desc { "DESC" } else { "ASC" }
        ));
    }
    order.extend(["c.type ASC".to_owned(), "c.id ASC".to_owned()]);
    let limit = a.bind(q.count as i64);
    let offset = a.bind(if q.after.is_some() {
        0
    } else {
        q.offset as i64
    });
    let sql = format!(
        "SELECT c.type, c.id, v.version, v.last_updated, v.deleted, v.body
         FROM {current} {join}
         WHERE {page_where} ORDER BY {} LIMIT {limit} OFFSET {offset}",
        order.join(", ")
    );
    let first_page = (q.after.is_none() && q.offset == 0).then_some(q.count);
    Ok(Built {
        total,
        page: Some(compact(&sql, &a.values, dialect)),
        first_page,
    })
}

/// Which of a practice's SMART tokens a revocation ends: those of one
/// grant, one approving user or one app (the `smart_token` column).
#[derive(Clone, Copy, Debug)]
pub enum Revoke {
    Grant,
    User,
    App,
}

impl Revoke {
    pub fn column(self) -> &'static str {
        match self {
            Revoke::Grant => "grant_id",
            Revoke::User => "user_id",
            Revoke::App => "client_id",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compact_keeps_used_arguments_in_order() {
        let args: Vec<Arg> = (1..=5).map(Arg::Int).collect();
        let s = compact(
            "a = $1 AND b < $4 AND c = $1 AND d = $2",
            &args,
            Dialect::Postgres,
        );
        assert_eq!(s.sql, "a = $1 AND b < $2 AND c = $1 AND d = $3");
        assert_eq!(s.args, [Arg::Int(1), Arg::Int(4), Arg::Int(2)]);
        let s = compact("x LIKE ?3 || '?' AND y = ?10", &args, Dialect::Sqlite);
        assert_eq!(s.sql, "x LIKE ?1 || '?' AND y = ?10");
        assert_eq!(s.args, [Arg::Int(3)]);
    }
}
