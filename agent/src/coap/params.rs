//! RFC 7252 section 4.8 transmission parameters, configurable per server.

use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TxParams {
    pub ack_timeout: Duration,
    pub ack_random_factor: f64,
    pub max_retransmit: u32,
}

impl Default for TxParams {
    fn default() -> Self {
        Self {
            ack_timeout: Duration::from_secs(2),
            ack_random_factor: 1.5,
            max_retransmit: 4,
        }
    }
}

/// RFC 7252 4.8.2 MAX_LATENCY.
const MAX_LATENCY: Duration = Duration::from_secs(100);

impl TxParams {
    /// ACK_TIMEOUT * (2^MAX_RETRANSMIT - 1) * ACK_RANDOM_FACTOR (45 s by default).
    pub fn max_transmit_span(&self) -> Duration {
        self.ack_timeout
            .mul_f64(((1u64 << self.max_retransmit) - 1) as f64 * self.ack_random_factor)
    }

    /// ACK_TIMEOUT * (2^(MAX_RETRANSMIT+1) - 1) * ACK_RANDOM_FACTOR (93 s by default).
    pub fn max_transmit_wait(&self) -> Duration {
        self.ack_timeout
            .mul_f64(((1u64 << (self.max_retransmit + 1)) - 1) as f64 * self.ack_random_factor)
    }

    /// MAX_TRANSMIT_SPAN + 2 * MAX_LATENCY + PROCESSING_DELAY (247 s by default).
    pub fn exchange_lifetime(&self) -> Duration {
        self.max_transmit_span() + 2 * MAX_LATENCY + self.ack_timeout
    }

    /// MAX_TRANSMIT_SPAN + MAX_LATENCY (145 s by default).
    pub fn non_lifetime(&self) -> Duration {
        self.max_transmit_span() + MAX_LATENCY
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc_7252_derived_values() {
        let p = TxParams::default();
        assert_eq!(p.max_transmit_span(), Duration::from_secs(45));
        assert_eq!(p.max_transmit_wait(), Duration::from_secs(93));
        assert_eq!(p.exchange_lifetime(), Duration::from_secs(247));
        assert_eq!(p.non_lifetime(), Duration::from_secs(145));
    }
}
