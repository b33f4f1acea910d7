//! Logs go to the journal (with structured fields) when systemd connected our stderr
//! to it, to stderr otherwise. RUST_LOG overrides the configured level.

use crate::config::LogLevel;
use std::io::IsTerminal;
use std::os::fd::AsFd;
use tracing_subscriber::filter::Targets;
use tracing_subscriber::{layer::SubscriberExt, util::SubscriberInitExt, Layer};

/// True when stderr is the journal stream systemd gave us (sd_journal_stream_fd(3)).
fn stderr_is_journal() -> bool {
    let Ok(v) = std::env::var("JOURNAL_STREAM") else {
        return false;
    };
    let Some((dev, ino)) = v.split_once(':') else {
        return false;
    };
    let (Ok(dev), Ok(ino)) = (dev.parse::<u64>(), ino.parse::<u64>()) else {
        return false;
    };
    // st_dev/st_ino widths differ between targets (armv7 gateways), hence the casts.
    #[allow(clippy::unnecessary_cast)]
    match nix::sys::stat::fstat(std::io::stderr().as_fd()) {
        Ok(st) => st.st_dev as u64 == dev && st.st_ino as u64 == ino,
        Err(_) => false,
    }
}

pub fn init(level: LogLevel) {
    // Other crates stay at warn so `info` shows our story, not the dependencies'.
    // `target=level` directives, as RUST_LOG is documented (targets, not spans or
    // fields: EnvFilter's regex engine would cost 0.3 MiB of the binary).
    let filter = std::env::var("RUST_LOG")
        .ok()
        .and_then(|v| v.parse::<Targets>().ok())
        .unwrap_or_else(|| {
            format!("warn,lwgate={0},lwgate_bridges={0}", level.as_str())
                .parse()
                .unwrap_or_default()
        });
    if stderr_is_journal() {
        if let Ok(journald) = tracing_journald::layer() {
            let _ = tracing_subscriber::registry()
                .with(
                    journald
                        .with_syslog_identifier("lwgate".into())
                        .with_filter(filter),
                )
                .try_init();
            return;
        }
    }
    let _ = tracing_subscriber::registry()
        .with(
            tracing_subscriber::fmt::layer()
                .with_writer(std::io::stderr)
                .with_target(false)
                .with_ansi(std::io::stderr().is_terminal())
                .with_filter(filter),
        )
        .try_init();
}
