//! Search requests (search.html): parsing a query string into what the store
//! executes. This issue's subset is `_id` and `_lastUpdated` with the result
//! parameters `_count`, `_offset`, `_sort`, `_total`, `_summary` and
//! `_elements`; everything else is reported as unsupported.

use crate::outcome::{IssueType, OperationOutcome};
use crate::view::{Summary, View};
use crate::{DateRange, Id, Instant};

/// The number of results on a page when the client does not say.
pub const DEFAULT_COUNT: usize = 50;
/// The most results a page may hold, whatever the client asks.
pub const MAX_COUNT: usize = 1000;

/// A search prefix (search.html#prefix).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Prefix {
    Eq,
    Ne,
    Gt,
    Lt,
    Ge,
    Le,
    Sa,
    Eb,
    Ap,
}

/// A date criterion: a prefix and the range the value's precision implies.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DateCriterion {
    pub prefix: Prefix,
    pub range: DateRange,
}

impl DateCriterion {
    /// Whether a point in time (such as `meta.lastUpdated`) matches.
    /// A point is the range `[t, t+1ms)`, and the prefix semantics of
    /// search.html#prefix reduce to these comparisons.
    pub fn matches(&self, t: Instant) -> bool {
        let (low, high) = (self.range.low, self.range.high);
        match self.prefix {
            Prefix::Eq | Prefix::Ap => t >= low && t < high,
            Prefix::Ne => t < low || t >= high,
            Prefix::Gt | Prefix::Sa => t >= high,
            Prefix::Lt | Prefix::Eb => t < low,
            Prefix::Ge => t >= low,
            Prefix::Le => t < high,
        }
    }
}

/// One search criterion; the values inside are ORed. More kinds arrive
/// with the full search engine, so backends must refuse what they do not
/// know (`non_exhaustive`).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Criterion {
    Id(Vec<Id>),
    LastUpdated(Vec<DateCriterion>),
}

/// A sort key (search.html#sort).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SortField {
    Id,
    LastUpdated,
}

/// `_total` (search.html#total).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Total {
    None,
    Estimate,
    #[default]
    Accurate,
}

/// A parsed search: criteria are ANDed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SearchQuery {
    pub criteria: Vec<Criterion>,
    pub sort: Vec<(SortField, bool)>,
    pub count: usize,
    pub offset: usize,
    pub total: Total,
    pub view: View,
    /// The parameters that were used, in canonical form, for the self link.
    pub used: Vec<(String, String)>,
    /// Parameters ignored because they are unknown or unsupported.
    pub ignored: Vec<String>,
}

impl Default for SearchQuery {
    fn default() -> Self {
        SearchQuery {
            criteria: Vec::new(),
            sort: Vec::new(),
            count: DEFAULT_COUNT,
            offset: 0,
            total: Total::default(),
            view: View::default(),
            used: Vec::new(),
            ignored: Vec::new(),
        }
    }
}

/// Decodes a query string (`a=1&b=x%2Cy`, `+` for space) into pairs, in
/// order, keeping repeats (search.html#combining: repeats are ANDed).
pub fn parse_query_string(query: &str) -> Vec<(String, String)> {
    let decode = |s: &str| {
        let s = s.replace('+', " ");
        percent_encoding::percent_decode_str(&s)
            .decode_utf8_lossy()
            .into_owned()
    };
    query
        .split('&')
        .filter(|kv| !kv.is_empty())
        .map(|kv| {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            (decode(k), decode(v))
        })
        .collect()
}

/// Parameters the HTTP layer handles, which search neither uses nor reports.
const TRANSPORT_PARAMS: [&str; 2] = ["_format", "_pretty"];

/// Parses query parameters. With `strict` (`Prefer: handling=strict`), an
/// unknown or unsupported parameter is an error; otherwise it is ignored and
/// listed in [`SearchQuery::ignored`] (search.html#errors).
pub fn parse(params: &[(String, String)], strict: bool) -> Result<SearchQuery, OperationOutcome> {
    let mut q = SearchQuery::default();
    for (name, value) in params {
        let bad = |why: String| OperationOutcome::error(IssueType::Invalid, why);
        match name.as_str() {
            n if TRANSPORT_PARAMS.contains(&n) => continue,
            "_id" => {
                let ids = value
                    .split(',')
                    .map(|s| Id::parse(s).map_err(|e| bad(format!("_id: {e}"))))
                    .collect::<Result<Vec<_>, _>>()?;
                q.criteria.push(Criterion::Id(ids));
            }
            "_lastUpdated" => {
                let dates = value
                    .split(',')
                    .map(|s| date_criterion(s).map_err(|e| bad(format!("_lastUpdated: {e}"))))
                    .collect::<Result<Vec<_>, _>>()?;
                q.criteria.push(Criterion::LastUpdated(dates));
            }
            "_count" => {
                let n: usize = value
                    .parse()
                    .map_err(|_| bad(format!("_count must be a whole number, not '{value}'")))?;
                q.count = n.min(MAX_COUNT);
            }
            "_offset" => {
                q.offset = value
                    .parse()
                    .map_err(|_| bad(format!("_offset must be a whole number, not '{value}'")))?;
                continue;
            }
            "_sort" => {
                for key in value.split(',') {
                    let (desc, field) = match key.strip_prefix('-') {
                        Some(f) => (true, f),
                        None => (false, key),
                    };
                    let field = match field {
                        "_id" => SortField::Id,
                        "_lastUpdated" => SortField::LastUpdated,
                        other => {
                            if strict {
                                return Err(bad(format!("sorting by '{other}' is not supported")));
                            }
                            q.ignored.push(format!("_sort={other}"));
                            continue;
                        }
                    };
                    q.sort.push((field, desc));
                }
            }
            "_total" => {
                q.total = match value.as_str() {
                    "none" => Total::None,
                    "estimate" => Total::Estimate,
                    "accurate" => Total::Accurate,
                    other => {
                        return Err(bad(format!(
                            "_total must be none, estimate or accurate, not '{other}'"
                        )));
                    }
                };
            }
            "_summary" => {
                q.view.summary = Some(
                    Summary::parse(value)
                        .ok_or_else(|| bad(format!("_summary cannot be '{value}'")))?,
                );
            }
            "_elements" => {
                q.view.elements = Some(value.split(',').map(|s| s.trim().to_owned()).collect());
            }
            other => {
                if strict {
                    return Err(OperationOutcome::error(
                        IssueType::NotSupported,
                        format!("the search parameter '{other}' is not supported"),
                    ));
                }
                q.ignored.push(other.to_owned());
                continue;
            }
        }
        q.used.push((name.clone(), value.clone()));
    }
    Ok(q)
}

fn date_criterion(s: &str) -> Result<DateCriterion, String> {
    let prefixes = [
        ("eq", Prefix::Eq),
        ("ne", Prefix::Ne),
        ("gt", Prefix::Gt),
        ("lt", Prefix::Lt),
        ("ge", Prefix::Ge),
        ("le", Prefix::Le),
        ("sa", Prefix::Sa),
        ("eb", Prefix::Eb),
        ("ap", Prefix::Ap),
    ];
    let (prefix, rest) = prefixes
        .iter()
        .find_map(|(p, v)| s.strip_prefix(p).map(|r| (*v, r)))
        .unwrap_or((Prefix::Eq, s));
    let range = DateRange::parse(rest).map_err(|e| e.to_string())?;
    Ok(DateCriterion { prefix, range })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(q: &str) -> Result<SearchQuery, OperationOutcome> {
        let params: Vec<(String, String)> = q
            .split('&')
            .filter(|s| !s.is_empty())
            .map(|kv| {
                let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
                (k.to_owned(), v.to_owned())
            })
            .collect();
        parse(&params, false)
    }

    #[test]
    fn prefixes_on_last_updated() {
        // search.html#prefix, on a point in time.
        let t = Instant::from_millis(
            DateRange::parse("2020-06-15T12:00:00Z")
                .map(|r| r.low.millis())
                .unwrap_or(0),
        );
        let cases = [
            ("2020-06", true),
            ("eq2020-06-15", true),
            ("ne2020-06-15", false),
            ("gt2020-06-14", true),
            ("gt2020-06", false),
            ("lt2020-07", true),
            ("le2020-06", true),
            ("ge2020-06-16", false),
            ("sa2020-05", true),
            ("eb2020", false),
        ];
        for (value, want) in cases {
            let q = p(&format!("_lastUpdated={value}")).unwrap_or_default();
            let Some(Criterion::LastUpdated(c)) = q.criteria.first() else {
                panic!("{value}")
            };
            assert_eq!(c[0].matches(t), want, "{value}");
        }
    }

    #[test]
    fn unknown_parameters_are_ignored_or_refused() {
        let q = p("_id=a,b&name=smith&_count=5000").unwrap_or_default();
        assert_eq!(q.ignored, vec!["name".to_owned()]);
        assert_eq!(q.count, MAX_COUNT);
        assert!(parse(&[("name".into(), "x".into())], true).is_err());
        assert!(p("_id=a%20b").is_err());
        assert!(p("_count=x").is_err());
        assert!(p("_lastUpdated=2020-13").is_err());
    }
}
