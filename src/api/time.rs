//! Saturating instant arithmetic. Every timestamp the API server accepts (years 1970–9999) and
//! every duration it accepts (up to `MAX_DURATION`) must be representable by the controller, and
//! no sum of the two may panic: jiff's `Timestamp + SignedDuration` panics on overflow, so all
//! time arithmetic in microseg goes through these functions. Results clamp to jiff's range,
//! which only ever moves an instant *later* for a later bound (never pulls anything earlier).

use k8s_openapi::jiff::{SignedDuration, Timestamp};

/// Earliest timestamp a manifest may hold (the CRD schema refuses earlier ones).
pub const EARLIEST: &str = "1970-01-01T00:00:00Z";
/// Latest timestamp a manifest may hold: `Timestamp::MAX` to the second. jiff (and so the
/// controller) cannot represent 9999-12-31, which the API server's `date-time` format accepts.
pub const LATEST: &str = "9999-12-30T22:00:00Z";

/// `t + d`, clamped to `[Timestamp::MIN, Timestamp::MAX]`.
pub fn plus(t: Timestamp, d: SignedDuration) -> Timestamp {
    match t.checked_add(d) {
        Ok(v) => v,
        Err(_) if d.is_negative() => Timestamp::MIN,
        Err(_) => Timestamp::MAX,
    }
}

/// `t - d`, clamped to `[Timestamp::MIN, Timestamp::MAX]`.
pub fn minus(t: Timestamp, d: SignedDuration) -> Timestamp {
    match t.checked_sub(d) {
        Ok(v) => v,
        Err(_) if d.is_negative() => Timestamp::MAX,
        Err(_) => Timestamp::MIN,
    }
}

/// `b - a` as a duration (jiff's span of two timestamps always fits a `SignedDuration`).
pub fn between(a: Timestamp, b: Timestamp) -> SignedDuration {
    b.duration_since(a)
}

/// `t + d` for a std duration (e.g. a controller flag), clamped.
pub fn plus_std(t: Timestamp, d: std::time::Duration) -> Timestamp {
    plus(
        t,
        SignedDuration::try_from(d).unwrap_or(SignedDuration::MAX),
    )
}

/// `t - d` for a std duration, clamped.
pub fn minus_std(t: Timestamp, d: std::time::Duration) -> Timestamp {
    minus(
        t,
        SignedDuration::try_from(d).unwrap_or(SignedDuration::MAX),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_schema_bounds_are_the_representable_range() {
        let earliest: Timestamp = EARLIEST.parse().unwrap();
        let latest: Timestamp = LATEST.parse().unwrap();
        assert_eq!(earliest, Timestamp::UNIX_EPOCH);
        assert_eq!(
            latest,
            Timestamp::from_second(Timestamp::MAX.as_second()).unwrap()
        );
        // One second later no longer parses: the bound is tight.
        assert!("9999-12-30T22:00:01Z".parse::<Timestamp>().is_err());
        assert!("9999-12-31T23:59:59Z".parse::<Timestamp>().is_err());
    }

    #[test]
    fn sums_clamp_at_both_ends_instead_of_panicking() {
        let max = SignedDuration::MAX;
        assert_eq!(
            plus(Timestamp::MAX, SignedDuration::from_secs(1)),
            Timestamp::MAX
        );
        assert_eq!(plus(Timestamp::UNIX_EPOCH, max), Timestamp::MAX);
        assert_eq!(
            plus(Timestamp::UNIX_EPOCH, SignedDuration::MIN),
            Timestamp::MIN
        );
        assert_eq!(
            minus(Timestamp::MIN, SignedDuration::from_secs(1)),
            Timestamp::MIN
        );
        assert_eq!(
            minus(Timestamp::UNIX_EPOCH, SignedDuration::MIN),
            Timestamp::MAX
        );
        assert_eq!(
            plus_std(Timestamp::MAX, std::time::Duration::MAX),
            Timestamp::MAX
        );
        assert_eq!(
            minus_std(Timestamp::MIN, std::time::Duration::MAX),
            Timestamp::MIN
        );
        let t: Timestamp = "2027-02-01T09:00:00Z"
            .parse()
            .unwrap_or(Timestamp::UNIX_EPOCH);
        assert_eq!(
            plus(t, SignedDuration::from_hours(1)).to_string(),
            "2027-02-01T10:00:00Z"
        );
        assert_eq!(
            between(t, plus(t, SignedDuration::from_hours(1))).as_secs(),
            3600
        );
        assert!(between(Timestamp::MIN, Timestamp::MAX) > SignedDuration::ZERO);
    }
}
