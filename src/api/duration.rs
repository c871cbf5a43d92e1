//! Kubernetes duration strings ("336h", "90m", "1h30m") as used in the manifests.

use std::fmt;
use std::str::FromStr;

use k8s_openapi::jiff::SignedDuration;
use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The pattern the CRD schema enforces: Go's `time.ParseDuration` units, no sign, at most five
/// integer and nine fraction digits per number. With [`MAX_LENGTH`] no accepted string
/// overflows int64 nanoseconds (what CEL's `duration()` and Go hold), so the CEL rules can
/// always evaluate it.
pub const PATTERN: &str = r"^([0-9]{1,5}(\.[0-9]{1,9})?(ns|us|µs|ms|s|m|h))+$";
/// Longest duration string the CRD schema accepts.
pub const MAX_LENGTH: u32 = 24;
/// Longest duration a manifest may hold, as written in the CRD's CEL rule.
pub const MAX_TEXT: &str = "87600h";
/// Longest duration a manifest may hold: ten years.
pub const MAX: Duration = Duration::hours(87_600);

/// A non-negative duration written the Kubernetes way ("336h", "1h30m", "45s").
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Duration(SignedDuration);

impl Duration {
    /// A duration of whole hours.
    pub const fn hours(h: i64) -> Self {
        Duration(SignedDuration::from_hours(h))
    }
    /// A duration of whole seconds.
    pub const fn seconds(s: i64) -> Self {
        Duration(SignedDuration::from_secs(s))
    }
    /// The value as a signed duration for timestamp arithmetic.
    pub fn get(self) -> SignedDuration {
        self.0
    }
}

impl From<SignedDuration> for Duration {
    fn from(d: SignedDuration) -> Self {
        Duration(d)
    }
}

/// Why a duration string was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("invalid duration {input:?}: {reason}")]
pub struct ParseError {
    input: String,
    reason: &'static str,
}

impl FromStr for Duration {
    type Err = ParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = |reason| ParseError {
            input: s.to_string(),
            reason,
        };
        if s.is_empty() {
            return Err(err("empty; write for example \"336h\""));
        }
        if s == "0" {
            return Ok(Duration(SignedDuration::ZERO));
        }
        let mut total: i128 = 0;
        let mut rest = s;
        while !rest.is_empty() {
            let num_len = rest
                .find(|c: char| !(c.is_ascii_digit() || c == '.'))
                .ok_or_else(|| err("a number must be followed by a unit (ns, us, ms, s, m, h)"))?;
            if num_len == 0 {
                return Err(err("expected a number"));
            }
            let (num, after) = rest.split_at(num_len);
            let unit_len = after
                .find(|c: char| c.is_ascii_digit() || c == '.')
                .unwrap_or(after.len());
            let (unit, next) = after.split_at(unit_len);
            let nanos_per_unit: i128 = match unit {
                "ns" => 1,
                "us" | "µs" | "μs" => 1_000,
                "ms" => 1_000_000,
                "s" => 1_000_000_000,
                "m" => 60_000_000_000,
                "h" => 3_600_000_000_000,
                _ => return Err(err("unknown unit; use ns, us, ms, s, m or h (no d or w)")),
            };
            let (int_part, frac_part) = num.split_once('.').unwrap_or((num, ""));
            if int_part.is_empty() || frac_part.contains('.') {
                return Err(err("malformed number"));
            }
            let int: i128 = int_part.parse().map_err(|_| err("number too large"))?;
            let mut frac_nanos: i128 = 0;
            let mut scale = nanos_per_unit;
            for digit in frac_part.bytes() {
                scale /= 10;
                frac_nanos += i128::from(digit - b'0') * scale;
            }
            total = int
                .checked_mul(nanos_per_unit)
                .and_then(|v| v.checked_add(frac_nanos))
                .and_then(|v| total.checked_add(v))
                .ok_or_else(|| err("duration too large"))?;
            rest = next;
        }
        let secs = i64::try_from(total / 1_000_000_000).map_err(|_| err("duration too large"))?;
        let nanos = i32::try_from(total % 1_000_000_000).map_err(|_| err("duration too large"))?;
        Ok(Duration(SignedDuration::new(secs, nanos)))
    }
}

impl fmt::Display for Duration {
    /// Go's canonical form, e.g. "336h0m0s", "1m30s", "500ms".
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let total = self.0.as_nanos();
        if total == 0 {
            return f.write_str("0s");
        }
        if total < 1_000_000_000 {
            return if total % 1_000_000 == 0 {
                write!(f, "{}ms", total / 1_000_000)
            } else if total % 1_000 == 0 {
                write!(f, "{}us", total / 1_000)
            } else {
                write!(f, "{total}ns")
            };
        }
        let secs = total / 1_000_000_000;
        let frac = total % 1_000_000_000;
        let (h, m, s) = (secs / 3600, (secs / 60) % 60, secs % 60);
        if h > 0 {
            write!(f, "{h}h{m}m")?;
        } else if m > 0 {
            write!(f, "{m}m")?;
        }
        if frac == 0 {
            write!(f, "{s}s")
        } else {
            let digits = format!("{frac:09}");
            write!(f, "{s}.{}s", digits.trim_end_matches('0'))
        }
    }
}

impl fmt::Debug for Duration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Duration({self})")
    }
}

impl Serialize for Duration {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Duration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

impl JsonSchema for Duration {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Duration".into()
    }
    fn inline_schema() -> bool {
        true
    }
    /// Older objects may hold longer durations; parsing still reads anything that fits i64
    /// seconds, and the controller's time arithmetic saturates.
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "type": "string",
            "pattern": PATTERN,
            "maxLength": MAX_LENGTH,
            "x-kubernetes-validations": [{
                "rule": format!("duration(self) <= duration('{MAX_TEXT}')"),
                "message": format!("must be at most {MAX_TEXT} (10 years)"),
            }],
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_units_go_accepts() {
        let cases = [
            ("336h", 336 * 3600, 0),
            ("1h30m", 5400, 0),
            ("90s", 90, 0),
            ("1.5h", 5400, 0),
            ("500ms", 0, 500_000_000),
            ("0", 0, 0),
        ];
        for (input, secs, nanos) in cases {
            let d: Duration = input.parse().unwrap();
            assert_eq!(d.get(), SignedDuration::new(secs, nanos), "{input}");
        }
    }

    #[test]
    fn refuses_days_signs_and_missing_units() {
        for bad in ["14d", "-1h", "10", "", "h", "1.2.3s", "1hh"] {
            assert!(bad.parse::<Duration>().is_err(), "{bad} should be refused");
        }
    }

    #[test]
    fn the_schema_bound_is_max_and_fits_int64_nanoseconds() {
        assert_eq!(MAX_TEXT.parse::<Duration>().unwrap(), MAX);
        // The largest values the pattern and length allow.
        let pattern = regex::Regex::new(PATTERN).unwrap();
        for largest in ["99999h99999h99999h99999h", "99999.999999999h99999h9h"] {
            assert!(largest.len() <= MAX_LENGTH as usize);
            assert!(pattern.is_match(largest), "{largest}");
            let d: Duration = largest.parse().unwrap();
            assert!(d.get().as_nanos() < i128::from(i64::MAX) / 4, "{largest}");
        }
        assert!(!pattern.is_match("999999h"));
        assert!(!pattern.is_match("1.1234567890s"));
        // Rust still reads what an older, unbounded schema let in.
        assert!("99999999999h".parse::<Duration>().is_ok());
    }

    #[test]
    fn display_round_trips() {
        for input in ["336h", "1h30m", "45s", "500ms", "2.5s", "0s", "72h"] {
            let d: Duration = input.parse().unwrap();
            let again: Duration = d.to_string().parse().unwrap();
            assert_eq!(d, again, "{input} -> {d}");
        }
    }
}
