//! The Prometheus HTTP API `query_range` response (`resultType: matrix`), as the paper saved it
//! in `<Readable_Name>_export.json`, and helpers to read it.

use super::ResultsError;
use serde::de::{self, Deserializer, SeqAccess, Visitor};
use serde::ser::{SerializeTuple, Serializer};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;

/// A whole `query_range` response.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QueryRangeResponse {
    pub status: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<MatrixData>,
    #[serde(default, rename = "errorType", skip_serializing_if = "Option::is_none")]
    pub error_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
}

/// `data` of a matrix response.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MatrixData {
    #[serde(rename = "resultType")]
    pub result_type: String,
    #[serde(default)]
    pub result: Vec<Series>,
}

/// One series: its label set and its `[timestamp, "value"]` samples.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Series {
    #[serde(default)]
    pub metric: BTreeMap<String, String>,
    #[serde(default)]
    pub values: Vec<Sample>,
}

/// One `[unix_seconds, "value"]` pair. The value string is kept as sent, so re-serialising
/// loses nothing; `value` is its parse (Prometheus' `NaN`, `+Inf`, `-Inf` included).
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub ts: f64,
    pub value: f64,
    pub raw: String,
}

impl Sample {
    pub fn new(ts: f64, value: f64) -> Self {
        Sample {
            ts,
            value,
            raw: format!("{value}"),
        }
    }
}

/// Parse a Prometheus sample value string.
pub use crate::util::parse_prom_float;

impl<'de> Deserialize<'de> for Sample {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Sample;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a [timestamp, \"value\"] pair")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Sample, A::Error> {
                let ts: f64 = seq
                    .next_element()?
                    .ok_or_else(|| de::Error::invalid_length(0, &self))?;
                let raw: StrOrNum = seq
                    .next_element()?
                    .ok_or_else(|| de::Error::invalid_length(1, &self))?;
                if seq.next_element::<de::IgnoredAny>()?.is_some() {
                    return Err(de::Error::invalid_length(3, &self));
                }
                let raw = match raw {
                    StrOrNum::S(s) => s,
                    StrOrNum::N(n) => n.to_string(),
                };
                let value = parse_prom_float(&raw).ok_or_else(|| {
                    de::Error::custom(format!("sample value {raw:?} is not a number"))
                })?;
                Ok(Sample { ts, value, raw })
            }
        }
        d.deserialize_seq(V)
    }
}

#[derive(Deserialize)]
#[serde(untagged)]
enum StrOrNum {
    S(String),
    N(serde_json::Number),
}

impl Serialize for Sample {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut t = s.serialize_tuple(2)?;
        if self.ts.fract() == 0.0 && self.ts.abs() < 9.0e15 {
            t.serialize_element(&(self.ts as i64))?;
        } else {
            t.serialize_element(&self.ts)?;
        }
        t.serialize_element(&self.raw)?;
        t.end()
    }
}

impl QueryRangeResponse {
    /// The series of a successful matrix response; an error naming what is wrong otherwise.
    pub fn series(&self) -> Result<&[Series], String> {
        if self.status != "success" {
            return Err(format!(
                "status {:?}: {} {}",
                self.status,
                self.error_type.as_deref().unwrap_or(""),
                self.error.as_deref().unwrap_or("")
            ));
        }
        let data = self.data.as_ref().ok_or("no \"data\" field")?;
        if data.result_type != "matrix" {
            return Err(format!(
                "resultType is {:?}, expected \"matrix\" (a query_range response)",
                data.result_type
            ));
        }
        Ok(&data.result)
    }

    /// True when the response holds no sample at all.
    pub fn is_empty(&self) -> bool {
        self.series()
            .map(|s| s.iter().all(|s| s.values.is_empty()))
            .unwrap_or(true)
    }
}

/// Parse a `query_range` response body.
pub fn parse_response(bytes: &[u8]) -> Result<QueryRangeResponse, String> {
    let r: QueryRangeResponse = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
    r.series()?;
    Ok(r)
}

/// Read a saved `*_export.json` file.
pub fn read_export(path: &Path) -> Result<QueryRangeResponse, ResultsError> {
    let bytes = super::input::read_regular(path, super::input::EXPORT_MAX_BYTES)?;
    parse_response(&bytes).map_err(|message| ResultsError::BadJson {
        path: path.to_path_buf(),
        message,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_matrix_with_special_values() {
        let body = br#"{"status":"success","data":{"resultType":"matrix","result":[
            {"metric":{"__name__":"q","instance":"a"},"values":[[1711383348,"3"],[1711383353.5,"NaN"],[1711383358,"+Inf"]]}]}}"#;
        let r = parse_response(body).unwrap();
        let s = &r.series().unwrap()[0];
        assert_eq!(s.metric["instance"], "a");
        assert_eq!(s.values[0].ts, 1711383348.0);
        assert_eq!(s.values[0].value, 3.0);
        assert_eq!(s.values[1].ts, 1711383353.5);
        assert!(s.values[1].value.is_nan());
        assert_eq!(s.values[2].value, f64::INFINITY);
        // Round trip keeps the raw strings and integer timestamps.
        let again = serde_json::to_string(&r).unwrap();
        assert!(again.contains("[1711383348,\"3\"]"), "{again}");
        assert!(again.contains("\"+Inf\""));
        let twice = serde_json::to_string(&parse_response(again.as_bytes()).unwrap()).unwrap();
        assert_eq!(twice, again);
    }

    #[test]
    fn rejects_errors_and_non_matrix() {
        let err =
            parse_response(br#"{"status":"error","errorType":"bad_data","error":"parse error"}"#)
                .unwrap_err();
        assert!(
            err.contains("bad_data") && err.contains("parse error"),
            "{err}"
        );
        let err =
            parse_response(br#"{"status":"success","data":{"resultType":"vector","result":[]}}"#)
                .unwrap_err();
        assert!(err.contains("matrix"), "{err}");
        assert!(parse_response(b"not json").is_err());
    }

    #[test]
    fn empty_result_is_empty() {
        let r =
            parse_response(br#"{"status":"success","data":{"resultType":"matrix","result":[]}}"#)
                .unwrap();
        assert!(r.is_empty());
    }
}
