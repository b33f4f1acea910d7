//! Small value types whose deserializers say in words what they expect.

use serde::de::{self, Deserializer, Visitor};
use serde::Deserialize;
use std::fmt;
use std::marker::PhantomData;
use std::time::Duration;

/// A strictly positive number of seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Seconds(pub u32);

impl Seconds {
    pub fn as_duration(self) -> Duration {
        Duration::from_secs(u64::from(self.0))
    }
}

impl<'de> Deserialize<'de> for Seconds {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Seconds;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a positive number of seconds")
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Seconds, E> {
                match u32::try_from(v) {
                    Ok(n) if n > 0 => Ok(Seconds(n)),
                    _ => Err(E::invalid_value(de::Unexpected::Signed(v), &self)),
                }
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Seconds, E> {
                match u32::try_from(v) {
                    Ok(n) if n > 0 => Ok(Seconds(n)),
                    _ => Err(E::invalid_value(de::Unexpected::Unsigned(v), &self)),
                }
            }
        }
        d.deserialize_u32(V)
    }
}

/// What `server[].ssid` takes; the range itself is checked with the other values.
pub(super) const SSID_EXPECTED: &str = "a Short Server ID, a whole number from 1 to 65534";
pub(super) const MAX_RETRANSMIT_EXPECTED: &str = "a whole number from 0 to 20";
pub(super) const QUEUE_CAP_EXPECTED: &str = "a whole number, 1 or more";

/// An integer field whose parse error says the key's own range instead of the
/// Rust type's ("expected u16"). The parser takes everything the type holds and
/// leaves the narrower range to `validate`, which reports all such errors at once.
struct Whole<T> {
    expecting: &'static str,
    ty: PhantomData<T>,
}

impl<T: TryFrom<u64>> Visitor<'_> for Whole<T> {
    type Value = T;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(self.expecting)
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<T, E> {
        match u64::try_from(v) {
            Ok(n) => self.visit_u64(n),
            Err(_) => Err(E::invalid_value(de::Unexpected::Signed(v), &self)),
        }
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<T, E> {
        T::try_from(v).map_err(|_| E::invalid_value(de::Unexpected::Unsigned(v), &self))
    }
}

fn whole<'de, D: Deserializer<'de>, T: TryFrom<u64>>(
    d: D,
    expecting: &'static str,
) -> Result<T, D::Error> {
    d.deserialize_u64(Whole {
        expecting,
        ty: PhantomData,
    })
}

pub(super) fn ssid<'de, D: Deserializer<'de>>(d: D) -> Result<u16, D::Error> {
    whole(d, SSID_EXPECTED)
}

pub(super) fn max_retransmit<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u32>, D::Error> {
    whole(d, MAX_RETRANSMIT_EXPECTED).map(Some)
}

pub(crate) const CERTIFICATE_USAGE_EXPECTED: &str =
    "a Certificate Usage, a whole number from 0 to 3";

pub(crate) fn certificate_usage<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u8>, D::Error> {
    whole(d, CERTIFICATE_USAGE_EXPECTED).map(Some)
}

pub(super) fn queue_cap<'de, D: Deserializer<'de>>(d: D) -> Result<usize, D::Error> {
    whole(d, QUEUE_CAP_EXPECTED)
}

/// Log level names accepted in `[log] level`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum LogLevel {
    Error,
    Warn,
    #[default]
    Info,
    Debug,
    Trace,
}

impl LogLevel {
    pub fn as_str(self) -> &'static str {
        match self {
            LogLevel::Error => "error",
            LogLevel::Warn => "warn",
            LogLevel::Info => "info",
            LogLevel::Debug => "debug",
            LogLevel::Trace => "trace",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Deserialize, Debug)]
    struct T {
        s: Seconds,
    }

    #[test]
    fn seconds_accepts_positive() {
        let t: T = toml::from_str("s = 30").unwrap();
        assert_eq!(t.s, Seconds(30));
    }

    #[test]
    fn seconds_rejects_zero_negative_and_text() {
        for bad in [
            "s = 0",
            "s = -5",
            "s = \"fast\"",
            "s = 1.5",
            "s = 99999999999",
        ] {
            let err = toml::from_str::<T>(bad).unwrap_err().to_string();
            assert!(err.contains("a positive number of seconds"), "{bad}: {err}");
        }
    }
}
