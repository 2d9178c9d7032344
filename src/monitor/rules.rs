//! Alerting rules: the rule file (Prometheus' format), the PromQL subset the embedded monitor
//! evaluates, and a pure evaluator over one instant's samples.
//!
//! Supported: vector selectors with label matchers (`=`, `!=`, `=~`, `!~`), parentheses,
//! `sum`/`max`/`min`/`avg`/`count` with optional `by (...)`/`without (...)`, a comparison
//! (`> < >= <= == !=`, filtering, no `bool`) of such a vector against a number or `time()` plus
//! or minus a number, and `and` with optional `on (...)`/`ignoring (...)` (the rules' staleness
//! filter: `... and on (instance, service) (push_time_seconds > time() - 5)`). Anything else is
//! refused with an error that names `--monitor prometheus`.

use promql_parser::label::Matcher;
use promql_parser::parser::{self, Expr, LabelModifier, token};
use std::collections::BTreeMap;
use std::time::Duration;

/// The rule file shipped in `deploy/`, embedded so the binary works anywhere.
pub const DEFAULT_RULES: &str = include_str!("../../deploy/prometheus/alert_rules.yml");

/// One label set.
pub type Labels = BTreeMap<String, String>;

/// One sample of an instant vector: labels (with `__name__` for raw series) and a value.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub labels: Labels,
    pub value: f64,
}

#[derive(Debug, thiserror::Error)]
pub enum RuleError {
    #[error("rule file: {0}")]
    Yaml(String),
    #[error(
        "rule {rule:?}: `{expr}`: {reason}; the embedded monitor evaluates only selectors, \
         sum/max/min/avg/count by (...), `and on (...)`, and comparisons with a number or \
         `time()` ± a number; run with `--monitor prometheus` for full PromQL"
    )]
    Unsupported {
        rule: String,
        expr: String,
        reason: String,
    },
    #[error("rule {rule:?}: `for: {value}` is not a duration ({reason})")]
    For {
        rule: String,
        value: String,
        reason: String,
    },
}

#[derive(Debug, serde::Deserialize)]
struct RuleFile {
    groups: Vec<GroupDef>,
}

#[derive(Debug, serde::Deserialize)]
struct GroupDef {
    name: String,
    #[serde(default)]
    #[allow(dead_code)]
    interval: Option<String>,
    #[serde(default)]
    rules: Vec<RuleDef>,
}

#[derive(Debug, serde::Deserialize)]
struct RuleDef {
    #[serde(default)]
    alert: Option<String>,
    #[serde(default)]
    record: Option<String>,
    expr: String,
    #[serde(default, rename = "for")]
    for_: Option<String>,
    #[serde(default)]
    labels: Labels,
    #[serde(default)]
    annotations: Labels,
}

/// Aggregation operators of the subset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AggOp {
    Sum,
    Max,
    Min,
    Avg,
    Count,
}

/// Comparison operators of the subset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CmpOp {
    Gt,
    Lt,
    Ge,
    Le,
    Eq,
    Ne,
}

impl CmpOp {
    fn holds(self, a: f64, b: f64) -> bool {
        match self {
            CmpOp::Gt => a > b,
            CmpOp::Lt => a < b,
            CmpOp::Ge => a >= b,
            CmpOp::Le => a <= b,
            CmpOp::Eq => a == b,
            CmpOp::Ne => a != b,
        }
    }
    /// The operator with its operands swapped (`5 < x` is `x > 5`).
    fn flipped(self) -> CmpOp {
        match self {
            CmpOp::Gt => CmpOp::Lt,
            CmpOp::Lt => CmpOp::Gt,
            CmpOp::Ge => CmpOp::Le,
            CmpOp::Le => CmpOp::Ge,
            o => o,
        }
    }
}

/// A scalar of the subset: a number, or the evaluation time plus a number (`time() - 5`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Scalar {
    Number(f64),
    TimePlus(f64),
}

impl Scalar {
    /// Its value at `now` (unix seconds, as PromQL's `time()`).
    pub fn at(self, now: f64) -> f64 {
        match self {
            Scalar::Number(n) => n,
            Scalar::TimePlus(d) => now + d,
        }
    }
}

/// A compiled expression of the subset.
#[derive(Debug, Clone)]
pub enum Query {
    Select {
        name: Option<String>,
        matchers: Vec<Matcher>,
    },
    Aggregate {
        op: AggOp,
        /// `Some((true, labels))` for `by`, `Some((false, labels))` for `without`.
        grouping: Option<(bool, Vec<String>)>,
        inner: Box<Query>,
    },
    Compare {
        inner: Box<Query>,
        op: CmpOp,
        threshold: Scalar,
    },
    /// `lhs and rhs`: the samples of `lhs` with a sample of `rhs` of the same label signature
    /// (`Some((true, labels))` for `on`, `Some((false, labels))` for `ignoring`, `None`: every
    /// label but the name).
    And {
        lhs: Box<Query>,
        rhs: Box<Query>,
        matching: Option<(bool, Vec<String>)>,
    },
}

/// One alerting rule.
#[derive(Debug, Clone)]
pub struct Rule {
    pub group: String,
    pub name: String,
    pub expr: String,
    pub query: Query,
    pub for_: Duration,
    pub labels: Labels,
    pub annotations: Labels,
}

/// Parse a rule file and compile every rule; refuses what the subset cannot evaluate.
pub fn parse_rules(text: &str) -> Result<Vec<Rule>, RuleError> {
    let file: RuleFile =
        serde_norway::from_str(text).map_err(|e| RuleError::Yaml(e.to_string()))?;
    let mut rules = Vec::new();
    for g in file.groups {
        for r in g.rules {
            let name = match (&r.alert, &r.record) {
                (Some(a), _) => a.clone(),
                (None, Some(rec)) => {
                    return Err(RuleError::Unsupported {
                        rule: rec.clone(),
                        expr: r.expr.clone(),
                        reason: "recording rules are not supported".into(),
                    });
                }
                (None, None) => return Err(RuleError::Yaml("a rule without `alert`".into())),
            };
            let query = compile_expr(&r.expr).map_err(|reason| RuleError::Unsupported {
                rule: name.clone(),
                expr: r.expr.trim().to_string(),
                reason,
            })?;
            let for_ = match &r.for_ {
                None => Duration::ZERO,
                Some(v) => humantime::parse_duration(v).map_err(|e| RuleError::For {
                    rule: name.clone(),
                    value: v.clone(),
                    reason: e.to_string(),
                })?,
            };
            rules.push(Rule {
                group: g.name.clone(),
                name,
                expr: r.expr.trim().to_string(),
                query,
                for_,
                labels: r.labels,
                annotations: r.annotations,
            });
        }
    }
    Ok(rules)
}

/// Compile one PromQL expression into the subset.
pub fn compile_expr(expr: &str) -> Result<Query, String> {
    // A bare vector (no comparison) fires for every series, as in Prometheus.
    compile(&parser::parse(expr)?)
}

/// `e` as a scalar of the subset; `None` when it is anything else (a vector, `time() * 2`).
fn scalar(e: &Expr) -> Option<Scalar> {
    match e {
        Expr::NumberLiteral(n) => Some(Scalar::Number(n.val)),
        Expr::Paren(p) => scalar(&p.expr),
        Expr::Call(c) if c.func.name == "time" && c.args.args.is_empty() => {
            Some(Scalar::TimePlus(0.0))
        }
        Expr::Binary(b) if matches!(b.op.id(), token::T_ADD | token::T_SUB) => {
            let sign = if b.op.id() == token::T_SUB { -1.0 } else { 1.0 };
            match (scalar(&b.lhs)?, scalar(&b.rhs)?) {
                (Scalar::Number(a), Scalar::Number(c)) => Some(Scalar::Number(a + sign * c)),
                (Scalar::TimePlus(a), Scalar::Number(c)) => Some(Scalar::TimePlus(a + sign * c)),
                // `5 + time()`; `5 - time()` and `time() - time()` are not of the subset.
                (Scalar::Number(a), Scalar::TimePlus(c)) if sign > 0.0 => {
                    Some(Scalar::TimePlus(a + c))
                }
                _ => None,
            }
        }
        _ => None,
    }
}

fn compile(e: &Expr) -> Result<Query, String> {
    match e {
        Expr::Paren(p) => compile(&p.expr),
        Expr::VectorSelector(v) => {
            if v.offset.is_some() || v.at.is_some() {
                return Err("`offset` and `@` are not supported".into());
            }
            if !v.matchers.or_matchers.is_empty() {
                return Err("`or` inside a selector is not supported".into());
            }
            let mut matchers = v.matchers.matchers.clone();
            // The parser may also carry the name as a `__name__` matcher; keep both (same test).
            matchers.retain(|m| !(m.name == "__name__" && Some(&m.value) == v.name.as_ref()));
            Ok(Query::Select {
                name: v.name.clone(),
                matchers,
            })
        }
        Expr::Aggregate(a) => {
            let op = match a.op.id() {
                token::T_SUM => AggOp::Sum,
                token::T_MAX => AggOp::Max,
                token::T_MIN => AggOp::Min,
                token::T_AVG => AggOp::Avg,
                token::T_COUNT => AggOp::Count,
                _ => return Err(format!("aggregation `{}` is not supported", a.op)),
            };
            if a.param.is_some() {
                return Err("aggregation parameters are not supported".into());
            }
            let grouping = a.modifier.as_ref().map(|m| match m {
                LabelModifier::Include(l) => (true, l.labels.clone()),
                LabelModifier::Exclude(l) => (false, l.labels.clone()),
            });
            Ok(Query::Aggregate {
                op,
                grouping,
                inner: Box::new(compile(&a.expr)?),
            })
        }
        Expr::Binary(b) if b.op.id() == token::T_LAND => {
            let matching = b
                .modifier
                .as_ref()
                .and_then(|m| m.matching.as_ref())
                .map(|m| match m {
                    LabelModifier::Include(l) => (true, l.labels.clone()),
                    LabelModifier::Exclude(l) => (false, l.labels.clone()),
                });
            Ok(Query::And {
                lhs: Box::new(compile(&b.lhs)?),
                rhs: Box::new(compile(&b.rhs)?),
                matching,
            })
        }
        Expr::Binary(b) => {
            let op = match b.op.id() {
                token::T_GTR => CmpOp::Gt,
                token::T_LSS => CmpOp::Lt,
                token::T_GTE => CmpOp::Ge,
                token::T_LTE => CmpOp::Le,
                token::T_EQLC => CmpOp::Eq,
                token::T_NEQ => CmpOp::Ne,
                _ => return Err(format!("operator `{}` is not supported", b.op)),
            };
            if b.modifier.as_ref().is_some_and(|m| m.return_bool) {
                return Err("the `bool` modifier is not supported".into());
            }
            match (scalar(&b.lhs), scalar(&b.rhs)) {
                (None, Some(t)) => Ok(Query::Compare {
                    inner: Box::new(compile(&b.lhs)?),
                    op,
                    threshold: t,
                }),
                (Some(t), None) => Ok(Query::Compare {
                    inner: Box::new(compile(&b.rhs)?),
                    op: op.flipped(),
                    threshold: t,
                }),
                _ => Err(
                    "comparisons must be between a vector and a number or `time()` ± a number"
                        .into(),
                ),
            }
        }
        Expr::Call(c) => Err(format!("function `{}` is not supported", c.func.name)),
        Expr::MatrixSelector(_) => Err("range vectors are not supported".into()),
        Expr::Subquery(_) => Err("subqueries are not supported".into()),
        other => Err(format!("`{other}` is not supported")),
    }
}

/// Evaluate `q` over one instant's samples at `now` (unix seconds, PromQL's `time()`). Like
/// Prometheus, aggregations drop `__name__` and keep only the grouping labels; a comparison
/// keeps the samples for which it holds; `and` keeps the left samples matched on the right.
pub fn eval(q: &Query, samples: &[Sample], now: f64) -> Vec<Sample> {
    match q {
        Query::Select { name, matchers } => samples
            .iter()
            .filter(|s| {
                name.as_ref()
                    .is_none_or(|n| s.labels.get("__name__") == Some(n))
                    && matchers.iter().all(|m| {
                        m.is_match(s.labels.get(&m.name).map(String::as_str).unwrap_or(""))
                    })
            })
            .cloned()
            .collect(),
        Query::Aggregate {
            op,
            grouping,
            inner,
        } => {
            let mut groups: BTreeMap<Labels, Vec<f64>> = BTreeMap::new();
            for s in eval(inner, samples, now) {
                let key: Labels = s
                    .labels
                    .iter()
                    .filter(|(k, _)| match grouping {
                        None => false,
                        Some((true, by)) => by.contains(k),
                        Some((false, without)) => *k != "__name__" && !without.contains(k),
                    })
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect();
                groups.entry(key).or_default().push(s.value);
            }
            groups
                .into_iter()
                .map(|(labels, vs)| {
                    let value = match op {
                        AggOp::Sum => vs.iter().sum(),
                        AggOp::Max => vs.iter().copied().fold(f64::NEG_INFINITY, f64::max),
                        AggOp::Min => vs.iter().copied().fold(f64::INFINITY, f64::min),
                        AggOp::Avg => vs.iter().sum::<f64>() / vs.len() as f64,
                        AggOp::Count => vs.len() as f64,
                    };
                    Sample { labels, value }
                })
                .collect()
        }
        Query::Compare {
            inner,
            op,
            threshold,
        } => eval(inner, samples, now)
            .into_iter()
            .filter(|s| op.holds(s.value, threshold.at(now)))
            .map(|mut s| {
                s.labels.remove("__name__");
                s
            })
            .collect(),
        Query::And { lhs, rhs, matching } => {
            let signature = |l: &Labels| -> Labels {
                l.iter()
                    .filter(|(k, _)| match matching {
                        None => *k != "__name__",
                        Some((true, on)) => on.contains(k),
                        Some((false, ignoring)) => *k != "__name__" && !ignoring.contains(k),
                    })
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect()
            };
            let right: std::collections::BTreeSet<Labels> = eval(rhs, samples, now)
                .iter()
                .map(|s| signature(&s.labels))
                .collect();
            eval(lhs, samples, now)
                .into_iter()
                .filter(|s| right.contains(&signature(&s.labels)))
                .collect()
        }
    }
}

/// Render `{{ $labels.x }}` and `{{ $value }}` in an annotation.
pub fn render(template: &str, labels: &Labels, value: f64) -> String {
    let mut out = String::new();
    let mut rest = template;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let Some(end) = rest[start..].find("}}") else {
            out.push_str(&rest[start..]);
            return out;
        };
        let inner = rest[start + 2..start + end].trim();
        if inner == "$value" || inner == ".Value" {
            out.push_str(&format!("{value}"));
        } else if let Some(l) = inner
            .strip_prefix("$labels.")
            .or_else(|| inner.strip_prefix(".Labels."))
        {
            out.push_str(labels.get(l).map(String::as_str).unwrap_or(""));
        } else {
            out.push_str(&rest[start..start + end + 2]);
        }
        rest = &rest[start + end + 2..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
#[path = "rules_tests.rs"]
mod tests;
