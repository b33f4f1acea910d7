//! `lwgate run`: the tokio driver that owns the sockets, the store, the timers and
//! the systemd integration.

mod systemd;

use crate::config::{self, Loaded};
use crate::control::{self, SharedStatus};
use crate::status::{DeviceStatus, ServerStatus, Status, StoreStatus};
use crate::store::Store;
use anyhow::Context;
use std::sync::{Arc, RwLock};
use std::time::{Instant, SystemTime, UNIX_EPOCH};
use tokio::signal::unix::{signal, SignalKind};

pub fn run(loaded: Loaded) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    rt.block_on(run_async(loaded))
}

fn server_rows(loaded: &Loaded) -> Vec<ServerStatus> {
    loaded
        .config
        .servers
        .iter()
        .map(|s| ServerStatus {
            ssid: s.ssid,
            uri: s.uri.clone(),
            binding: s.binding.clone(),
            lifetime_s: s.lifetime.0,
            state: "configured".into(),
            last_error: None,
        })
        .collect()
}

fn device_rows(devices: &[config::LoadedDevice]) -> Vec<DeviceStatus> {
    devices
        .iter()
        .map(|d| DeviceStatus {
            id: d.spec.device.id.clone(),
            prefix: d.spec.device.prefix().to_string(),
            protocol: d.spec.device.protocol.as_str().to_string(),
            enabled: d.spec.device.enabled,
            file: d.file.display().to_string(),
            state: "configured".into(),
        })
        .collect()
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

async fn run_async(loaded: Loaded) -> anyhow::Result<()> {
    let started = Instant::now();
    for w in &loaded.warnings {
        tracing::warn!("{w}");
    }
    let store = Store::open(&loaded.config.store.path)?;
    let starts = store.record_start()?;
    let schema_version = store.schema_version()?;

    let status: SharedStatus = Arc::new(RwLock::new(Status {
        version: crate::VERSION.to_string(),
        pid: std::process::id(),
        endpoint: loaded.endpoint.clone(),
        config: loaded.path.display().to_string(),
        started_at: unix_now(),
        uptime_s: 0,
        starts,
        store: StoreStatus {
            path: store.path().display().to_string(),
            schema_version,
        },
        servers: server_rows(&loaded),
        devices: device_rows(&loaded.devices),
        warnings: loaded.warnings.clone(),
    }));

    let socket_path = loaded.config.control.socket.clone();
    let listener = control::bind(&socket_path).await?;
    let control_task = tokio::spawn(control::serve(listener, status.clone()));

    let mut sigterm = signal(SignalKind::terminate()).context("cannot handle SIGTERM")?;
    let mut sigint = signal(SignalKind::interrupt()).context("cannot handle SIGINT")?;
    let mut sighup = signal(SignalKind::hangup()).context("cannot handle SIGHUP")?;
    let watchdog = systemd::watchdog_interval();
    let one_second = std::time::Duration::from_secs(1);
    let mut tick = tokio::time::interval(watchdog.map_or(one_second, |w| w.min(one_second)));

    let summary = format!(
        "endpoint {}, {} server(s), {} device(s)",
        loaded.endpoint,
        loaded.config.servers.len(),
        loaded.devices.len()
    );
    tracing::info!(
        endpoint = %loaded.endpoint,
        config = %loaded.path.display(),
        store = %store.path().display(),
        "lwgate {} started: {summary}",
        crate::VERSION
    );
    systemd::ready(&summary);

    let mut last_ping = Instant::now();
    loop {
        tokio::select! {
            _ = sigterm.recv() => { tracing::info!("SIGTERM: shutting down"); break; }
            _ = sigint.recv() => { tracing::info!("SIGINT: shutting down"); break; }
            _ = sighup.recv() => reload_devices(&loaded, &status),
            _ = tick.tick() => {
                if let Ok(mut s) = status.write() {
                    s.uptime_s = started.elapsed().as_secs();
                }
                if let Some(period) = watchdog {
                    if last_ping.elapsed() >= period {
                        systemd::watchdog();
                        last_ping = Instant::now();
                    }
                }
            }
        }
    }

    systemd::stopping();
    control_task.abort();
    let _ = std::fs::remove_file(&socket_path);
    drop(store);
    tracing::info!("stopped");
    Ok(())
}

/// SIGHUP: re-read devices.d. A broken file keeps the previous set running.
fn reload_devices(loaded: &Loaded, status: &SharedStatus) {
    systemd::reloading();
    match config::load_devices(&loaded.devices_dir) {
        Ok(devices) => {
            tracing::info!(
                dir = %loaded.devices_dir.display(),
                "reloaded devices.d: {} device(s)",
                devices.len()
            );
            if let Ok(mut s) = status.write() {
                s.devices = device_rows(&devices);
            }
        }
        Err(e) => {
            for err in &e.0 {
                tracing::error!(
                    "reload of devices.d rejected, keeping the previous devices: {err}"
                );
            }
        }
    }
    let n = status.read().map(|s| s.devices.len()).unwrap_or(0);
    systemd::reloaded(&format!("{n} device(s)"));
}
