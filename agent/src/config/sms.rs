//! The `[sms]` table: LwM2M over SMS as lwgate does it — a wake-up. An SMS may
//! trigger a Registration Update (and, where allowed, a bootstrap); the work goes
//! over UDP/DTLS (see `lwm2m::sms` for the rules). The modem that receives the SMS
//! is the `[modem]` table.

use super::error::ConfigError;
use crate::lwm2m::sms::SmsPolicy;
use serde::Deserialize;
use std::path::Path;

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SmsSection {
    /// The gateway's own number (MSISDN), sent as `sms=` in the Register; default:
    /// what the modem says (AT+CNUM), if it says.
    pub own_number: Option<String>,
    /// Numbers that may trigger any server, beside each server's `sms_number`.
    #[serde(default)]
    pub allow: Vec<String>,
    /// Whether an SMS may trigger a bootstrap (/1/x/9).
    #[serde(default)]
    pub bootstrap_trigger: bool,
    /// Triggers accepted per minute, all senders together.
    #[serde(default = "per_minute")]
    pub per_minute: u32,
}

fn per_minute() -> u32 {
    SmsPolicy::default().per_minute
}

impl SmsSection {
    pub fn policy(&self) -> SmsPolicy {
        SmsPolicy {
            allow: self.allow.clone(),
            bootstrap_trigger: self.bootstrap_trigger,
            per_minute: self.per_minute,
        }
    }

    pub(super) fn validate(&self, path: &Path) -> Vec<ConfigError> {
        let mut errors = Vec::new();
        if let Some(n) = &self.own_number {
            if let Err(e) = check_number(n) {
                errors.push(ConfigError::new(path, "sms.own_number", e));
            }
        }
        for (i, n) in self.allow.iter().enumerate() {
            if let Err(e) = check_number(n) {
                errors.push(ConfigError::new(path, format!("sms.allow[{i}]"), e));
            }
        }
        if self.per_minute == 0 || self.per_minute > 600 {
            errors.push(ConfigError::new(
                path,
                "sms.per_minute",
                format!(
                    "expected 1 to 600 triggers a minute, got {}",
                    self.per_minute
                ),
            ));
        }
        errors
    }
}

/// A phone number as servers and modems write it: `+` and 3 to 20 digits, spaces
/// and dashes allowed between them.
pub fn check_number(n: &str) -> Result<(), String> {
    let body = n.strip_prefix('+').unwrap_or(n);
    let digits = body.chars().filter(char::is_ascii_digit).count();
    let ok = (3..=20).contains(&digits)
        && body
            .chars()
            .all(|c| c.is_ascii_digit() || c == ' ' || c == '-');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "expected a phone number such as \"+447700900123\" (3 to 20 digits, an optional leading +), got {n:?}"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_checked() {
        for good in ["+447700900123", "07700 900123", "+1-555-0100", "112"] {
            assert!(check_number(good).is_ok(), "{good}");
        }
        for bad in ["", "+", "12", "+44abc", "44 77 ++", "123456789012345678901"] {
            assert!(check_number(bad).is_err(), "{bad}");
        }
    }
}
