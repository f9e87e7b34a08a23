//! Durations (`90s`, `1h30m`) and local clock times (`07:00`) as a spec writes them.

use std::time::Duration;

use serde::Deserialize;

use super::locate::yaml_short;

/// `90s`, `30m`, `8h`, `1h30m`, `250ms`, or a bare number of seconds.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct HumanDuration(pub Duration);

impl<'de> Deserialize<'de> for HumanDuration {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let value = serde_yaml::Value::deserialize(d)?;
        let parsed = match &value {
            serde_yaml::Value::Number(n) => n.as_f64().and_then(seconds),
            serde_yaml::Value::String(s) => parse_duration(s),
            _ => None,
        };
        parsed.map(HumanDuration).ok_or_else(|| {
            serde::de::Error::custom(format!(
                "invalid duration {}: use a number with a unit, e.g. 90s, 30m, 8h, 1h30m or 500ms (at most 100 years)",
                yaml_short(&value)
            ))
        })
    }
}

/// The longest duration a spec may give: far beyond any sweep, yet small enough that what is computed from it
/// (`Instant + timeout`, `2 × heartbeat.interval`) cannot overflow and panic.
pub const MAX_DURATION: Duration = Duration::from_secs(100 * 365 * 86_400);

/// A non-negative number of seconds up to [`MAX_DURATION`] (`Duration::from_secs_f64` panics beyond `u64` seconds).
fn seconds(secs: f64) -> Option<Duration> {
    Duration::try_from_secs_f64(secs).ok().filter(|d| *d <= MAX_DURATION)
}

/// Parses `90s`, `30m`, `8h`, `2d`, `1h30m`, `250ms`, `1.5h` or a bare number of seconds, up to [`MAX_DURATION`].
pub fn parse_duration(text: &str) -> Option<Duration> {
    let text = text.trim();
    if text.is_empty() {
        return None;
    }
    if let Ok(secs) = text.parse::<f64>() {
        return seconds(secs);
    }
    let mut total = 0.0;
    let mut rest = text;
    while !rest.is_empty() {
        let num_len = rest.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(rest.len());
        if num_len == 0 {
            return None;
        }
        let number: f64 = rest[..num_len].parse().ok()?;
        rest = &rest[num_len..];
        let unit_len = rest.find(|c: char| c.is_ascii_digit() || c == '.').unwrap_or(rest.len());
        let factor = match rest[..unit_len].trim() {
            "ms" => 0.001,
            "s" | "sec" | "secs" => 1.0,
            "m" | "min" | "mins" => 60.0,
            "h" | "hr" | "hrs" => 3600.0,
            "d" => 86400.0,
            _ => return None,
        };
        total += number * factor;
        rest = &rest[unit_len..];
    }
    seconds(total)
}

/// Parses a local clock time `HH:MM` (24-hour).
pub fn parse_clock(text: &str) -> Option<(u32, u32)> {
    let (h, m) = text.trim().split_once(':')?;
    let (h, m): (u32, u32) = (h.parse().ok()?, m.parse().ok()?);
    (h < 24 && m < 60 && text.trim().len() <= 5).then_some((h, m))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_and_clock_times() {
        assert_eq!(parse_duration("8h"), Some(Duration::from_secs(8 * 3600)));
        assert_eq!(parse_duration("30m"), Some(Duration::from_secs(1800)));
        assert_eq!(parse_duration("90s"), Some(Duration::from_secs(90)));
        assert_eq!(parse_duration("1h30m"), Some(Duration::from_secs(5400)));
        assert_eq!(parse_duration("250ms"), Some(Duration::from_millis(250)));
        assert_eq!(parse_duration("12"), Some(Duration::from_secs(12)));
        assert_eq!(parse_duration("8x"), None);
        assert_eq!(parse_duration("h"), None);
        // Found with the `spec` fuzz target's harness: these panicked in `Duration::from_secs_f64`.
        assert_eq!(parse_duration("1e300"), None);
        assert_eq!(parse_duration("99999999999999999999d"), None);
        assert_eq!(parse_duration("-1"), None);
        assert_eq!(parse_duration("NaN"), None);
        assert_eq!(parse_duration("36500d"), Some(MAX_DURATION.min(Duration::from_secs(36_500 * 86_400))));
        assert_eq!(parse_duration("36600d"), None);
        assert_eq!(parse_clock("07:00"), Some((7, 0)));
        assert_eq!(parse_clock("23:59"), Some((23, 59)));
        assert_eq!(parse_clock("24:00"), None);
        assert_eq!(parse_clock("7am"), None);
    }
}
