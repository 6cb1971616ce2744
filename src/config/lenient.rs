//! Scalar readers that also accept the value as a string. Environment interpolation
//! happens after YAML parsing, so `connections: ${MAX_CONN:-20}` reaches
//! deserialization as the string `"20"`; these helpers let numeric and boolean
//! fields take it. They also let an empty section (`realtime:` with every key
//! commented out) mean "all defaults" instead of a type error.

use serde::Deserialize;
use serde::de::{self, Deserializer, Visitor};
use std::fmt;
use std::num::NonZeroU32;

/// A `null` section reads as its default.
pub(crate) fn or_default<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de> + Default,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

/// Reads a non-negative integer from a YAML integer or a string of digits.
struct IntVisitor;

impl Visitor<'_> for IntVisitor {
    type Value = u64;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a non-negative integer")
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<u64, E> {
        Ok(v)
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<u64, E> {
        u64::try_from(v).map_err(|_| E::custom(format!("{v} must not be negative")))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<u64, E> {
        v.trim()
            .parse()
            .map_err(|_| E::custom(format!("expected a non-negative integer, found {v:?}")))
    }
}

fn int<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    d.deserialize_any(IntVisitor)
}

pub(crate) fn usize<'de, D: Deserializer<'de>>(d: D) -> Result<usize, D::Error> {
    let v = int(d)?;
    usize::try_from(v).map_err(|_| de::Error::custom(format!("{v} is too large")))
}

pub(crate) fn u32<'de, D: Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
    let v = int(d)?;
    u32::try_from(v).map_err(|_| de::Error::custom(format!("{v} is too large")))
}

pub(crate) fn nonzero_u32<'de, D: Deserializer<'de>>(d: D) -> Result<NonZeroU32, D::Error> {
    NonZeroU32::new(u32(d)?).ok_or_else(|| de::Error::custom("must be at least 1"))
}

/// `Option<usize>`; use with `#[serde(default)]`.
pub(crate) fn opt_usize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<usize>, D::Error> {
    struct Wrapped(usize);
    impl<'de> Deserialize<'de> for Wrapped {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            usize(d).map(Wrapped)
        }
    }
    Ok(Option::<Wrapped>::deserialize(d)?.map(|w| w.0))
}

/// `Option<NonZeroU32>`; use with `#[serde(default)]`.
pub(crate) fn opt_nonzero_u32<'de, D: Deserializer<'de>>(
    d: D,
) -> Result<Option<NonZeroU32>, D::Error> {
    struct Wrapped(NonZeroU32);
    impl<'de> Deserialize<'de> for Wrapped {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            nonzero_u32(d).map(Wrapped)
        }
    }
    Ok(Option::<Wrapped>::deserialize(d)?.map(|w| w.0))
}

pub(crate) fn bool<'de, D: Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    struct BoolVisitor;
    impl Visitor<'_> for BoolVisitor {
        type Value = bool;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("true or false")
        }
        fn visit_bool<E: de::Error>(self, v: bool) -> Result<bool, E> {
            Ok(v)
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<bool, E> {
            match v.trim() {
                "true" | "True" | "TRUE" => Ok(true),
                "false" | "False" | "FALSE" => Ok(false),
                _ => Err(E::custom(format!("expected true or false, found {v:?}"))),
            }
        }
    }
    d.deserialize_any(BoolVisitor)
}

/// An optional string that may be written as a bare integer (`status: 201`).
pub(crate) fn opt_string_or_int<'de, D: Deserializer<'de>>(
    d: D,
) -> Result<Option<String>, D::Error> {
    struct Wrapped(String);
    impl<'de> Deserialize<'de> for Wrapped {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            struct V;
            impl Visitor<'_> for V {
                type Value = String;
                fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                    f.write_str("a string or an integer")
                }
                fn visit_str<E: de::Error>(self, v: &str) -> Result<String, E> {
                    Ok(v.to_owned())
                }
                fn visit_u64<E: de::Error>(self, v: u64) -> Result<String, E> {
                    Ok(v.to_string())
                }
                fn visit_i64<E: de::Error>(self, v: i64) -> Result<String, E> {
                    Ok(v.to_string())
                }
            }
            d.deserialize_any(V).map(Wrapped)
        }
    }
    Ok(Option::<Wrapped>::deserialize(d)?.map(|w| w.0))
}

/// A list of URLs (`urls:`).
pub(crate) fn urls<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<url::Url>, D::Error> {
    let texts = Vec::<String>::deserialize(d)?;
    texts
        .iter()
        .map(|text| {
            url::Url::parse(text.trim())
                .map_err(|e| de::Error::custom(format!("invalid URL {text:?}: {e}")))
        })
        .collect()
}

/// A URL (the `url` crate is built without its serde feature).
pub(crate) fn url<'de, D: Deserializer<'de>>(d: D) -> Result<url::Url, D::Error> {
    let text = String::deserialize(d)?;
    url::Url::parse(text.trim())
        .map_err(|e| de::Error::custom(format!("invalid URL {text:?}: {e}")))
}
