//! The Prometheus text exposition format (0.0.4), as the Pushgateway accepts it: what replicas
//! push to the embedded monitor's receiver.
//!
//! Hand-written because no maintained crate accepts what the Pushgateway accepts:
//! `prometheus-parse` splits label values at commas and never unescapes them, and
//! `openmetrics-parser` refuses `prometheus-client`'s own counters (`# TYPE x counter` followed
//! by `x_total`), which the Pushgateway takes as an untyped `x_total`. Every line is one sample;
//! label values are unescaped (`\\`, `\"`, `\n`); anything else is an error naming the line.

use super::rules::{Labels, Sample};

/// Samples of `body`, each with `group`'s labels added (they win, as the Pushgateway's
/// grouping labels do).
pub fn parse(body: &str, group: &Labels) -> Result<Vec<Sample>, String> {
    let mut out = Vec::new();
    for (n, line) in body.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let mut sample = parse_line(line).map_err(|e| {
            let shown: String = line.chars().take(80).collect();
            format!("line {}: {e} in {shown:?}", n + 1)
        })?;
        for (k, v) in group {
            sample.labels.insert(k.clone(), v.clone());
        }
        out.push(sample);
    }
    Ok(out)
}

fn is_name_start(c: char) -> bool {
    c.is_ascii_alphabetic() || c == '_' || c == ':'
}

fn is_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || c == ':'
}

/// A cursor over one line.
struct Line<'a> {
    rest: &'a str,
}

impl<'a> Line<'a> {
    fn peek(&self) -> Option<char> {
        self.rest.chars().next()
    }

    fn bump(&mut self) -> Option<char> {
        let c = self.peek()?;
        self.rest = &self.rest[c.len_utf8()..];
        Some(c)
    }

    fn skip_spaces(&mut self) {
        self.rest = self.rest.trim_start_matches([' ', '\t']);
    }

    fn expect(&mut self, want: char) -> Result<(), String> {
        match self.bump() {
            Some(c) if c == want => Ok(()),
            Some(c) => Err(format!("expected {want:?}, found {c:?}")),
            None => Err(format!("expected {want:?} at the end")),
        }
    }

    /// A metric name (`label: false`) or a label name (no `:`).
    fn name(&mut self, label: bool) -> Result<&'a str, String> {
        let ok = |c: char| is_name_char(c) && !(label && c == ':');
        match self.peek() {
            Some(c) if is_name_start(c) && !(label && c == ':') => {}
            Some(c) => return Err(format!("a name cannot start with {c:?}")),
            None => return Err("a name is missing".into()),
        }
        let end = self.rest.find(|c: char| !ok(c)).unwrap_or(self.rest.len());
        let (name, rest) = self.rest.split_at(end);
        self.rest = rest;
        Ok(name)
    }

    /// A double-quoted label value, unescaped.
    fn quoted(&mut self) -> Result<String, String> {
        self.expect('"')?;
        let mut value = String::new();
        loop {
            match self.bump() {
                None => return Err("unclosed label value".into()),
                Some('"') => return Ok(value),
                Some('\\') => match self.bump() {
                    Some('\\') => value.push('\\'),
                    Some('"') => value.push('"'),
                    Some('n') => value.push('\n'),
                    Some(c) => return Err(format!("invalid escape \\{c} in a label value")),
                    None => return Err("unclosed label value".into()),
                },
                Some(c) => value.push(c),
            }
        }
    }

    /// The next space-separated word.
    fn word(&mut self) -> &'a str {
        self.skip_spaces();
        let end = self.rest.find([' ', '\t']).unwrap_or(self.rest.len());
        let (w, rest) = self.rest.split_at(end);
        self.rest = rest;
        w
    }
}

fn parse_line(line: &str) -> Result<Sample, String> {
    let mut cur = Line { rest: line };
    let name = cur.name(false)?;
    let mut labels = Labels::new();
    cur.skip_spaces();
    if cur.peek() == Some('{') {
        cur.bump();
        loop {
            cur.skip_spaces();
            if cur.peek() == Some('}') {
                cur.bump();
                break;
            }
            let key = cur.name(true)?;
            cur.skip_spaces();
            cur.expect('=')?;
            cur.skip_spaces();
            let value = cur.quoted()?;
            if key == "__name__" || labels.insert(key.to_owned(), value).is_some() {
                return Err(format!("label {key:?} given twice"));
            }
            cur.skip_spaces();
            match cur.bump() {
                Some(',') => {}
                Some('}') => break,
                Some(c) => return Err(format!("expected ',' or '}}', found {c:?}")),
                None => return Err("unclosed '{'".into()),
            }
        }
    }
    let raw = cur.word();
    if raw.is_empty() {
        return Err("no value".into());
    }
    let value = crate::results::promjson::parse_prom_float(raw)
        .ok_or_else(|| format!("value {raw:?} is not a number"))?;
    let timestamp = cur.word();
    if !timestamp.is_empty() && timestamp.parse::<i64>().is_err() {
        return Err(format!("timestamp {timestamp:?} is not an integer"));
    }
    if !cur.word().is_empty() {
        return Err("unexpected text after the value and timestamp".into());
    }
    labels.insert("__name__".into(), name.to_owned());
    Ok(Sample { labels, value })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn one(line: &str) -> Result<Sample, String> {
        parse(line, &Labels::new()).map(|mut v| v.remove(0))
    }

    #[test]
    fn parses_names_labels_escapes_values_and_timestamps() {
        let s = one(r#"m:x_1{a="b,c}",b="q\"uo\\te\nnl" , } 2.5e3 1700000000000"#).unwrap();
        assert_eq!(s.labels["__name__"], "m:x_1");
        assert_eq!(s.labels["a"], "b,c}");
        assert_eq!(s.labels["b"], "q\"uo\\te\nnl");
        assert_eq!(s.value, 2500.0);
        assert!(one("up NaN").unwrap().value.is_nan());
        assert_eq!(one("up -Inf").unwrap().value, f64::NEG_INFINITY);
        assert_eq!(one("up{} 1").unwrap().labels.len(), 1);
    }

    #[test]
    fn malformed_lines_say_what_and_where() {
        for (line, what) in [
            ("x{", "a name is missing"),
            (r#"x{a="1"} "#, "no value"),
            (r#"x{a="1} 1"#, "unclosed label value"),
            (r#"x{a="\q"} 1"#, "invalid escape"),
            (r#"x{a="1",a="2"} 1"#, "given twice"),
            ("x 1 soon", "timestamp"),
            ("x 1 2 3", "unexpected text"),
            ("x one", "not a number"),
            ("1x 1", "cannot start"),
            (r#"x{a:b="1"} 1"#, "expected '='"),
        ] {
            let e = parse(&format!("ok 1\n{line}\n"), &Labels::new()).unwrap_err();
            assert!(
                e.starts_with("line 2: ") && e.contains(what),
                "{line:?}: {e}"
            );
        }
    }

    fn escape(v: &str) -> String {
        v.replace('\\', r"\\")
            .replace('"', "\\\"")
            .replace('\n', "\\n")
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

        /// Any bytes: an answer, never a panic.
        #[test]
        fn arbitrary_input_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = parse(&String::from_utf8_lossy(&bytes), &Labels::new());
        }

        /// Near-valid input (mutated exposition lines) never panics either.
        #[test]
        fn mutated_lines_never_panic(
            line in r#"[a-z_:]{1,6}(\{([a-z_]{1,4}="([^"\\]|\\["\\n])*",?)*\})? -?[0-9.eInfa+]{1,6}( [0-9]{1,4})?"#,
            cut in 0usize..60,
        ) {
            let _ = parse(&line, &Labels::new());
            let cut = line.char_indices().nth(cut).map(|(i, _)| i).unwrap_or(line.len());
            let _ = parse(&line[..cut], &Labels::new());
        }

        /// Any label value survives escaping and parsing unchanged.
        #[test]
        fn label_values_round_trip(value in any::<String>(), v in -1e9f64..1e9) {
            let line = format!("m{{l=\"{}\"}} {v}", escape(&value));
            let s = one(&line).unwrap();
            prop_assert_eq!(&s.labels["l"], &value);
            prop_assert_eq!(s.value, v);
        }
    }
}
