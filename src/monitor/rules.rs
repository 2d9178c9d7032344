//! Alerting rules: the rule file (Prometheus' format), the PromQL subset the embedded monitor
//! evaluates, and a pure evaluator over one instant's samples.
//!
//! Supported: vector selectors with label matchers (`=`, `!=`, `=~`, `!~`), parentheses,
//! `sum`/`max`/`min`/`avg`/`count` with optional `by (...)`/`without (...)`, and a comparison
//! (`> < >= <= == !=`, filtering, no `bool`) of such a vector against a number. Anything else
//! is refused with an error that names `--monitor prometheus`.

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
         sum/max/min/avg/count by (...), and comparisons with a number; run with \
         `--monitor prometheus` for full PromQL"
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
        threshold: f64,
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

fn number(e: &Expr) -> Option<f64> {
    match e {
        Expr::NumberLiteral(n) => Some(n.val),
        Expr::Paren(p) => number(&p.expr),
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
            match (number(&b.lhs), number(&b.rhs)) {
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
                _ => Err("comparisons must be between a vector and a number".into()),
            }
        }
        Expr::Call(c) => Err(format!("function `{}` is not supported", c.func.name)),
        Expr::MatrixSelector(_) => Err("range vectors are not supported".into()),
        Expr::Subquery(_) => Err("subqueries are not supported".into()),
        other => Err(format!("`{other}` is not supported")),
    }
}

/// Evaluate `q` over one instant's samples. Like Prometheus, aggregations drop `__name__` and
/// keep only the grouping labels; a comparison keeps the samples for which it holds.
pub fn eval(q: &Query, samples: &[Sample]) -> Vec<Sample> {
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
            for s in eval(inner, samples) {
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
        } => eval(inner, samples)
            .into_iter()
            .filter(|s| op.holds(s.value, *threshold))
            .map(|mut s| {
                s.labels.remove("__name__");
                s
            })
            .collect(),
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
mod tests {
    use super::*;

    fn s(name: &str, instance: &str, service: &str, v: f64) -> Sample {
        let mut labels = Labels::new();
        labels.insert("__name__".into(), name.into());
        labels.insert("job".into(), "webserver".into());
        labels.insert("instance".into(), instance.into());
        labels.insert("service".into(), service.into());
        Sample { labels, value: v }
    }

    #[test]
    fn deploy_rules_parse() {
        let rules = parse_rules(DEFAULT_RULES).unwrap();
        let names: Vec<_> = rules.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(names, ["ThreadPoolSpike", "ThreadPoolStarvation"]);
        assert_eq!(rules[1].for_, Duration::from_secs(5));
        assert_eq!(rules[0].for_, Duration::ZERO);
    }

    #[test]
    fn sum_by_service_then_threshold() {
        let rules = parse_rules(DEFAULT_RULES).unwrap();
        let q = &rules[1].query;
        let samples = vec![
            s("system_runtime_threadpool_queue_length", "a-1", "a", 12.0),
            s("system_runtime_threadpool_queue_length", "a-2", "a", 10.0),
            s("system_runtime_threadpool_queue_length", "b-1", "b", 15.0),
            s("busy_worker_threads", "a-1", "a", 99.0),
        ];
        let out = eval(q, &samples);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].labels.get("service").unwrap(), "a");
        assert_eq!(out[0].labels.len(), 1);
        assert_eq!(out[0].value, 22.0);
        // The other job is ignored.
        let mut other = s("system_runtime_threadpool_queue_length", "x", "a", 100.0);
        other.labels.insert("job".into(), "other".into());
        assert_eq!(eval(q, &[other]).len(), 0);
    }

    #[test]
    fn every_operator_of_the_subset() {
        let samples = vec![
            s("q", "a-1", "a", 1.0),
            s("q", "a-2", "a", 3.0),
            s("q", "b-1", "b", 5.0),
        ];
        let v = |e: &str| {
            let mut r: Vec<f64> = eval(&compile_expr(e).unwrap(), &samples)
                .into_iter()
                .map(|s| s.value)
                .collect();
            r.sort_by(f64::total_cmp);
            r
        };
        assert_eq!(v("max by (service) (q)"), [3.0, 5.0]);
        assert_eq!(v("min by (service) (q)"), [1.0, 5.0]);
        assert_eq!(v("avg by (service) (q)"), [2.0, 5.0]);
        assert_eq!(v("count by (service) (q)"), [1.0, 2.0]);
        assert_eq!(v("sum(q)"), [9.0]);
        assert_eq!(v("sum without (instance) (q)"), [4.0, 5.0]);
        assert_eq!(v("q > 2"), [3.0, 5.0]);
        assert_eq!(v("q >= 3"), [3.0, 5.0]);
        assert_eq!(v("q < 3"), [1.0]);
        assert_eq!(v("q <= 3"), [1.0, 3.0]);
        assert_eq!(v("q == 5"), [5.0]);
        assert_eq!(v("q != 5"), [1.0, 3.0]);
        assert_eq!(v("2 < q"), [3.0, 5.0]);
        assert_eq!(v("q{service=~\"a|c\"}"), [1.0, 3.0]);
        assert_eq!(v("q{service!=\"a\"}"), [5.0]);
        assert_eq!(v("(sum by (service) (q)) >= 4"), [4.0, 5.0]);
        assert_eq!(v("(sum by (service) (q)) > 4"), [5.0]);
    }

    #[test]
    fn unsupported_is_refused_naming_the_prometheus_monitor() {
        for e in [
            "rate(x[1m]) > 1",
            "x > bool 1",
            "x + 1 > 2",
            "topk(1, x)",
            "x > y",
            "x offset 1m > 1",
        ] {
            let file =
                format!("groups:\n  - name: g\n    rules:\n      - alert: A\n        expr: {e}\n");
            let err = parse_rules(&file).unwrap_err().to_string();
            assert!(err.contains("--monitor prometheus"), "{e}: {err}");
        }
    }

    #[test]
    fn templates_render() {
        let mut l = Labels::new();
        l.insert("service".into(), "web".into());
        assert_eq!(
            render("queue of {{ $labels.service }} is {{ $value }}", &l, 42.0),
            "queue of web is 42"
        );
    }
}
