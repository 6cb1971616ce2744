//! Units in the configuration: durations (`250ms`, `15s`, `10m`, `2h`, `1d`), byte
//! sizes (`65536`, `512B`, `64KiB`, `1MiB`, `1GiB`, `1KB`, `1MB`), rates (`20/s`,
//! `60/m`, `5/10s`) and the token buckets made of a rate and a burst (`RateLimit`). A duration always needs its unit: a bare `15` is refused rather
//! than guessed. Error messages quote the offending text with `{:?}` so that a value
//! that came from the environment can be recognised and hidden by the caller.

use serde::Deserialize;
use serde::de::{self, Deserializer, Visitor};
use std::fmt;
use std::num::NonZeroU32;
use std::time::Duration;

const DURATION_HINT: &str = "a number followed by ms, s, m, h or d, e.g. \"15s\"";

/// The longest duration any key takes: ten years. Timers add durations to
/// the clock, and one near `u64::MAX` seconds would overflow it.
pub const MAX_DURATION: Duration = Duration::from_secs(3650 * 24 * 3600);

/// Parses `250ms`, `15s`, `10m`, `2h`, `1d`.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let digits = text.bytes().take_while(u8::is_ascii_digit).count();
    let (number, unit) = text.split_at(digits);
    if number.is_empty() {
        return Err(format!(
            "invalid duration {text:?}: expected {DURATION_HINT}"
        ));
    }
    let Ok(n) = number.parse::<u64>() else {
        return Err(format!("duration {text:?} is too large"));
    };
    let unit = unit.trim();
    if unit.is_empty() {
        return Err(format!(
            "duration {text:?} has no unit: write {DURATION_HINT} (a bare number is not accepted)"
        ));
    }
    let Some(scale) = unit_seconds(unit) else {
        if unit == "ms" {
            return at_most_max(Duration::from_millis(n), text);
        }
        return Err(format!(
            "invalid duration {text:?}: unknown unit {unit:?}, expected {DURATION_HINT}"
        ));
    };
    n.checked_mul(scale)
        .map(Duration::from_secs)
        .ok_or_else(|| format!("duration {text:?} is too large"))
        .and_then(|d| at_most_max(d, text))
}

fn at_most_max(d: Duration, text: &str) -> Result<Duration, String> {
    if d > MAX_DURATION {
        return Err(format!("duration {text:?} is too large (at most 3650d)"));
    }
    Ok(d)
}

/// Seconds in one `s`, `m`, `h` or `d` (with a few spelled-out aliases).
fn unit_seconds(unit: &str) -> Option<u64> {
    match unit {
        "s" | "sec" | "second" | "seconds" => Some(1),
        "m" | "min" | "minute" | "minutes" => Some(60),
        "h" | "hour" | "hours" => Some(3600),
        "d" | "day" | "days" => Some(86_400),
        _ => None,
    }
}

/// Renders a duration the way it would be written in the file (`15s`, `10m`, `250ms`).
pub fn format_duration(d: Duration) -> String {
    let ms = d.as_millis();
    if ms % 1000 != 0 || ms == 0 {
        return format!("{ms}ms");
    }
    let s = d.as_secs();
    match s {
        _ if s % 86_400 == 0 => format!("{}d", s / 86_400),
        _ if s % 3600 == 0 => format!("{}h", s / 3600),
        _ if s % 60 == 0 => format!("{}m", s / 60),
        _ => format!("{s}s"),
    }
}

/// Parses a byte size: plain digits are bytes; `B`, `KiB`/`MiB`/`GiB` (1024-based),
/// `KB`/`MB`/`GB` (1000-based). Unit letters are case-insensitive.
pub fn parse_size(text: &str) -> Result<usize, String> {
    let text = text.trim();
    let digits = text.bytes().take_while(u8::is_ascii_digit).count();
    let (number, unit) = text.split_at(digits);
    let hint = "expected bytes or a number with B, KiB, MiB, GiB, KB, MB or GB, e.g. \"64KiB\"";
    if number.is_empty() {
        return Err(format!("invalid size {text:?}: {hint}"));
    }
    let scale: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "kib" | "k" => 1 << 10,
        "mib" | "m" => 1 << 20,
        "gib" | "g" => 1 << 30,
        "kb" => 1_000,
        "mb" => 1_000_000,
        "gb" => 1_000_000_000,
        _ => return Err(format!("invalid size {text:?}: {hint}")),
    };
    number
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(scale))
        .and_then(|n| usize::try_from(n).ok())
        .ok_or_else(|| format!("size {text:?} is too large"))
}

/// A number of events per period, written `20/s`, `60/m`, `100/h` or `5/10s`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Rate {
    pub count: NonZeroU32,
    pub per: Duration,
}

impl Rate {
    /// The steady-state interval between two events (`per / count`).
    pub fn period(&self) -> Duration {
        self.per / self.count.get()
    }
}

impl std::str::FromStr for Rate {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let text = text.trim();
        let hint = "expected a count per period like \"20/s\", \"60/m\", \"100/h\" or \"5/10s\"";
        let Some((count, per)) = text.split_once('/') else {
            return Err(format!("invalid rate {text:?}: {hint}"));
        };
        let count = match count.trim().parse::<u32>().map(NonZeroU32::new) {
            Ok(Some(n)) => n,
            Ok(None) => {
                return Err(format!(
                    "invalid rate {text:?}: the count must be at least 1"
                ));
            }
            Err(_) => return Err(format!("invalid rate {text:?}: {hint}")),
        };
        let per = per.trim();
        let per = match unit_seconds(per) {
            Some(secs) => Duration::from_secs(secs),
            None if per == "ms" => Duration::from_millis(1),
            None => parse_duration(per).map_err(|_| format!("invalid rate {text:?}: {hint}"))?,
        };
        if per.is_zero() {
            return Err(format!(
                "invalid rate {text:?}: the period must not be zero"
            ));
        }
        Ok(Rate { count, per })
    }
}

impl fmt::Display for Rate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let per = match self.per.as_millis() {
            1000 => "s".to_owned(),
            60_000 => "m".to_owned(),
            3_600_000 => "h".to_owned(),
            86_400_000 => "d".to_owned(),
            _ => format_duration(self.per),
        };
        write!(f, "{}/{}", self.count, per)
    }
}

impl<'de> Deserialize<'de> for Rate {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct RateVisitor;
        impl Visitor<'_> for RateVisitor {
            type Value = Rate;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a rate like \"20/s\"")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Rate, E> {
                v.parse().map_err(E::custom)
            }
        }
        d.deserialize_str(RateVisitor)
    }
}

struct DurationVisitor;

impl Visitor<'_> for DurationVisitor {
    type Value = Duration;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(DURATION_HINT)
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Duration, E> {
        parse_duration(v).map_err(E::custom)
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Duration, E> {
        Err(E::custom(format!(
            "duration {v} has no unit: write {DURATION_HINT} (a bare number is not accepted)"
        )))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Duration, E> {
        Err(E::custom(format!(
            "invalid duration {v}: expected {DURATION_HINT}"
        )))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Duration, E> {
        Err(E::custom(format!(
            "invalid duration {v}: expected {DURATION_HINT}"
        )))
    }
}

/// `deserialize_with` for a `Duration` field.
pub(crate) fn duration<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    d.deserialize_any(DurationVisitor)
}

/// `deserialize_with` for an `Option<Duration>` field (use with `#[serde(default)]`).
pub(crate) fn opt_duration<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
    struct Wrapped(Duration);
    impl<'de> Deserialize<'de> for Wrapped {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            duration(d).map(Wrapped)
        }
    }
    Ok(Option::<Wrapped>::deserialize(d)?.map(|w| w.0))
}

/// `deserialize_with` for a byte size held in a `usize`.
pub(crate) fn size<'de, D: Deserializer<'de>>(d: D) -> Result<usize, D::Error> {
    struct SizeVisitor;
    impl Visitor<'_> for SizeVisitor {
        type Value = usize;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a size in bytes or like \"64KiB\"")
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<usize, E> {
            parse_size(v).map_err(E::custom)
        }
        fn visit_u64<E: de::Error>(self, v: u64) -> Result<usize, E> {
            usize::try_from(v).map_err(|_| E::custom(format!("size {v} is too large")))
        }
        fn visit_i64<E: de::Error>(self, v: i64) -> Result<usize, E> {
            u64::try_from(v)
                .map_err(|_| E::custom(format!("invalid size {v}: must not be negative")))
                .and_then(|v| self.visit_u64(v))
        }
    }
    d.deserialize_any(SizeVisitor)
}

/// A token bucket: `rate` refill, up to `burst` at once. `burst` defaults to the
/// rate's count when omitted, so `{ rate: 20/s }` may be written `20/s`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct RateLimit {
    pub rate: Rate,
    pub burst: NonZeroU32,
}

impl RateLimit {
    /// A limit from plain numbers; zero counts are raised to 1.
    pub fn new(count: u32, per: Duration, burst: u32) -> Self {
        RateLimit {
            rate: Rate {
                count: nonzero(count),
                per,
            },
            burst: nonzero(burst),
        }
    }
}

fn nonzero(n: u32) -> NonZeroU32 {
    NonZeroU32::new(n).unwrap_or(NonZeroU32::MIN)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRateLimit {
    rate: Rate,
    #[serde(default, deserialize_with = "super::lenient::opt_nonzero_u32")]
    burst: Option<NonZeroU32>,
}

impl From<RawRateLimit> for RateLimit {
    fn from(raw: RawRateLimit) -> Self {
        RateLimit {
            rate: raw.rate,
            burst: raw.burst.unwrap_or(raw.rate.count),
        }
    }
}

impl<'de> Deserialize<'de> for RateLimit {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct LimitVisitor;
        impl<'de> Visitor<'de> for LimitVisitor {
            type Value = RateLimit;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a rate limit like \"20/s\" or { rate: 20/s, burst: 40 }")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<RateLimit, E> {
                let rate: Rate = v.parse().map_err(E::custom)?;
                Ok(RateLimit {
                    rate,
                    burst: rate.count,
                })
            }
            fn visit_map<A: de::MapAccess<'de>>(self, map: A) -> Result<RateLimit, A::Error> {
                RawRateLimit::deserialize(de::value::MapAccessDeserializer::new(map))
                    .map(Into::into)
            }
        }
        d.deserialize_any(LimitVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rate_limit_is_a_map_or_its_rate_alone() {
        let full: RateLimit = serde_yaml::from_str("{ rate: 20/s, burst: 40 }").unwrap();
        assert_eq!((full.rate.count.get(), full.burst.get()), (20, 40));
        let short: RateLimit = serde_yaml::from_str("20/s").unwrap();
        assert_eq!(short, RateLimit::new(20, Duration::from_secs(1), 20));
        let bare = serde_yaml::from_str::<RateLimit>("5")
            .unwrap_err()
            .to_string();
        assert!(bare.contains("a rate limit like \"20/s\""), "{bare}");
        assert!(!bare.contains("Raw"), "no internal type is named: {bare}");
        let unknown = serde_yaml::from_str::<RateLimit>("{ rate: 1/s, bogus: 1 }").unwrap_err();
        assert!(
            unknown.to_string().contains("unknown field `bogus`"),
            "{unknown}"
        );
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("15s"), Ok(Duration::from_secs(15)));
        assert_eq!(parse_duration("10m"), Ok(Duration::from_secs(600)));
        assert_eq!(parse_duration("2h"), Ok(Duration::from_secs(7200)));
        assert_eq!(parse_duration("1d"), Ok(Duration::from_secs(86_400)));
        assert_eq!(parse_duration(" 0s "), Ok(Duration::ZERO));
        assert!(parse_duration("15").unwrap_err().contains("no unit"));
        assert!(parse_duration("15x").unwrap_err().contains("unknown unit"));
        assert!(parse_duration("s").is_err());
        assert!(parse_duration("-1s").is_err());
        assert!(parse_duration("1.5s").is_err());
        assert!(parse_duration("99999999999999999999d").is_err());
        assert!(parse_duration("999999999999999999d").is_err());
        // Below u64's range, but past what a clock can have added to it.
        assert!(
            parse_duration("18446744073709551615s")
                .unwrap_err()
                .contains("at most")
        );
        assert!(parse_duration("3651d").unwrap_err().contains("at most"));
        assert!(
            parse_duration("99999999999999999ms")
                .unwrap_err()
                .contains("at most")
        );
        assert_eq!(parse_duration("3650d"), Ok(MAX_DURATION));
    }

    #[test]
    fn durations_format_back() {
        for text in ["250ms", "15s", "10m", "2h", "1d", "90s", "0ms"] {
            assert_eq!(format_duration(parse_duration(text).unwrap()), text);
        }
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("512B"), Ok(512));
        assert_eq!(parse_size("65536"), Ok(65536));
        assert_eq!(parse_size("64KiB"), Ok(65536));
        assert_eq!(parse_size("1MiB"), Ok(1 << 20));
        assert_eq!(parse_size("1GiB"), Ok(1 << 30));
        assert_eq!(parse_size("2KB"), Ok(2000));
        assert_eq!(parse_size("3MB"), Ok(3_000_000));
        assert_eq!(parse_size("1 mib"), Ok(1 << 20));
        assert!(parse_size("KiB").is_err());
        assert!(parse_size("12 parsecs").is_err());
        assert!(parse_size("99999999999999999999GiB").is_err());
    }

    #[test]
    fn rates() {
        let r: Rate = "20/s".parse().unwrap();
        assert_eq!((r.count.get(), r.per), (20, Duration::from_secs(1)));
        let r: Rate = "60/m".parse().unwrap();
        assert_eq!((r.count.get(), r.per), (60, Duration::from_secs(60)));
        assert_eq!(r.period(), Duration::from_secs(1));
        let r: Rate = "100/h".parse().unwrap();
        assert_eq!(r.per, Duration::from_secs(3600));
        let r: Rate = "5/10s".parse().unwrap();
        assert_eq!((r.count.get(), r.per), (5, Duration::from_secs(10)));
        assert_eq!(r.to_string(), "5/10s");
        assert_eq!("20/s".parse::<Rate>().unwrap().to_string(), "20/s");
        assert!("0/s".parse::<Rate>().unwrap_err().contains("at least 1"));
        assert!("5/0s".parse::<Rate>().unwrap_err().contains("zero"));
        assert!("20".parse::<Rate>().is_err());
        assert!("x/s".parse::<Rate>().is_err());
        assert!("20/fortnight".parse::<Rate>().is_err());
    }
}
