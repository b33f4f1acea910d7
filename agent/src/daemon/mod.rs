//! `lwgate run`: the tokio driver that owns the sockets, the store, the timers and
//! the systemd integration.

pub(crate) mod bootstrap;
mod device_firmware;
mod devices;
mod engine;
mod firmware;
pub use firmware::package_path as firmware_package;
mod package;
mod sms;
mod software;
pub use software::command_dir as software_command_dir;
pub use software::package_dir as software_dir;
pub use software::{command_argv as software_argv, command_name as software_name};
mod peers;
mod secure_link;
mod security;
pub mod system;
mod systemd;

pub use engine::registry;

use crate::config::{self, Loaded};
use crate::control::{self, SharedStatus};
use crate::status::{ServerStatus, Status, StoreStatus};
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
    let result = rt.block_on(run_async(loaded));
    // A card read stuck in a wedged reader must not hold the exit up.
    rt.shutdown_timeout(std::time::Duration::from_secs(1));
    result
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
            state: "starting".into(),
            last_error: None,
            security: None,
            location: None,
            lwm2m_version: None,
            queued: 0,
            dropped: 0,
            last_delivery: None,
        })
        .collect()
}

/// Copies the client's view of each server into the status snapshot.
fn update_servers(status: &SharedStatus, engine: &mut engine::Engine, now: std::time::Instant) {
    let Ok(mut st) = status.write() else {
        return;
    };
    // The accounts may come from a smartcard, not the config: the rows follow the client.
    st.servers = engine
        .status(now)
        .into_iter()
        .map(|(s, net_error, security)| ServerStatus {
            ssid: s.ssid,
            uri: s.uri,
            binding: s.binding,
            lifetime_s: s.lifetime,
            state: s.state,
            last_error: net_error.or(s.last_error),
            security,
            location: s.location,
            lwm2m_version: Some(s.version.to_string()),
            queued: s.queued,
            dropped: s.dropped,
            last_delivery: s.last_delivery,
        })
        .collect();
    st.observations = engine.observation_count();
    // Availability at once; the counters follow on the 1 s tick.
    if engine.devices.take_changed() {
        st.devices = engine.devices.status();
    }
    st.bootstrap = engine.bootstrap.clone();
    st.smartcard_error = engine.card_error.clone();
    st.bootstrap_error = engine.bs_error.clone();
    st.firmware = engine.firmware_status();
    st.software = engine.software_status();
    st.device_firmware = engine.device_firmware_status();
    st.modem = engine.sms.as_ref().map(|s| s.describe());
    st.sms = engine.sms.as_ref().map(|s| s.recent()).unwrap_or_default();
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
    // The control socket first: a second daemon is told that one is already
    // running, before it meets the first one's lock on the state database.
    let socket_path = loaded.config.control.socket.clone();
    let listener = control::bind(&socket_path).await?;
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
        observations: 0,
        bootstrap: String::new(),
        smartcard_error: None,
        bootstrap_error: None,
        firmware: None,
        software: None,
        device_firmware: Vec::new(),
        modem: None,
        sms: Vec::new(),
        devices: Vec::new(),
        warnings: loaded.warnings.clone(),
    }));
    let store_path = store.path().display().to_string();
    let mut engine = engine::Engine::new(&loaded, Instant::now(), store);
    if let Ok(mut s) = status.write() {
        s.devices = engine.devices.status();
    }

    let (cmd_tx, mut cmd_rx) = tokio::sync::mpsc::channel(16);
    let control_task = tokio::spawn(control::serve(listener, status.clone(), cmd_tx));

    let mut sigterm = signal(SignalKind::terminate()).context("cannot handle SIGTERM")?;
    let mut sigint = signal(SignalKind::interrupt()).context("cannot handle SIGINT")?;
    let mut sighup = signal(SignalKind::hangup()).context("cannot handle SIGHUP")?;
    let watchdog = systemd::watchdog_interval();
    let one_second = std::time::Duration::from_secs(1);
    // The 1 s tick (devices' status counters, system values for observers of the
    // gateway's objects, an update's restart timeout) runs only while it has work;
    // the watchdog is pinged at its own interval. Idle, nothing else wakes us.
    let mut next_tick = Instant::now() + one_second;
    let mut next_ping = watchdog.map(|w| Instant::now() + w);
    // What start-up used and no longer needs goes back once it is over (off the
    // way to the first Register), and again after each reload.
    let mut release_at = Some(Instant::now() + RELEASE_AFTER);

    let summary = format!(
        "endpoint {}, {} server(s), {} device(s)",
        loaded.endpoint,
        loaded.config.servers.len(),
        loaded.devices.len()
    );
    tracing::info!(
        endpoint = %loaded.endpoint,
        config = %loaded.path.display(),
        store = %store_path,
        "lwgate {} started: {summary}",
        crate::VERSION
    );
    systemd::ready(&summary);

    let mut stop_by: Option<Instant> = None;
    loop {
        let now = Instant::now();
        engine.flush();
        update_servers(&status, &mut engine, now);
        if let Some(t) = stop_by {
            if engine.stopped() {
                break;
            }
            if now >= t {
                engine.report_unfinished_shutdown();
                break;
            }
        }
        let wake = engine
            .deadline()
            .unwrap_or(now + std::time::Duration::from_secs(3600));
        let ticking = engine.wants_ticks() || status.read().is_ok_and(|s| !s.devices.is_empty());
        let tick_at = [ticking.then_some(next_tick), next_ping, release_at]
            .into_iter()
            .flatten()
            .min()
            .unwrap_or(now + std::time::Duration::from_secs(3600));
        tokio::select! {
            _ = sigterm.recv(), if stop_by.is_none() => {
                tracing::info!("SIGTERM: shutting down");
                stop_by = Some(begin_shutdown(&mut engine));
            }
            _ = sigint.recv(), if stop_by.is_none() => {
                tracing::info!("SIGINT: shutting down");
                stop_by = Some(begin_shutdown(&mut engine));
            }
            _ = sighup.recv() => {
                reload_devices(&loaded, &mut engine);
                if let Ok(mut s) = status.write() {
                    s.devices = engine.devices.status();
                }
                release_at = Some(Instant::now() + RELEASE_AFTER);
            }
            Some((id, ev)) = engine.devices.events.recv() => engine.device_event(Instant::now(), &id, ev),
            Some((ticket, result)) = engine.devices.done.recv() => engine.device_done(Instant::now(), ticket, result),
            Some(ev) = engine.peers.rx.recv() => engine.peer_event(Instant::now(), ev),
            Some(cmd) = cmd_rx.recv() => engine.command(Instant::now(), cmd),
            Some(read) = engine.card_rx.recv() => engine.card_checked(Instant::now(), read),
            Some(report) = firmware_report(&mut engine.firmware) => engine.firmware_report(Instant::now(), report),
            Some(report) = software_report(&mut engine.software) => engine.software_report(Instant::now(), report),
            Some((prefix, report)) = engine.device_firmware.recv() => engine.device_firmware_report(Instant::now(), &prefix, report),
            Some(ev) = modem_event(&mut engine.sms) => engine.modem_event(Instant::now(), ev),
            _ = tokio::time::sleep_until(tokio::time::Instant::from_std(wake)) => engine.timeout(Instant::now()),
            _ = tokio::time::sleep_until(tokio::time::Instant::from_std(tick_at)) => {
                let now = Instant::now();
                if ticking && now >= next_tick {
                    next_tick += one_second;
                    if next_tick <= now {
                        next_tick = now + one_second;
                    }
                    if let Ok(mut s) = status.write() {
                        s.uptime_s = started.elapsed().as_secs();
                        // Once a second, not after every event: a hundred devices polled
                        // at 1 Hz would otherwise rebuild these rows hundreds of times.
                        s.devices = engine.devices.status();
                    }
                    if engine.wants_ticks() {
                        engine.refresh(now);
                        engine.firmware_tick(now);
                    }
                }
                if release_at.is_some_and(|t| now >= t) {
                    release_at = None;
                    release_freed_memory();
                    release_startup_pages();
                }
                if let (Some(period), Some(at)) = (watchdog, next_ping) {
                    if now >= at {
                        systemd::watchdog();
                        next_ping = Some(now + period);
                    }
                }
            }
        }
        drain_ready(&mut engine).await;
    }

    control_task.abort();
    let _ = std::fs::remove_file(&socket_path);
    drop(engine);
    tracing::info!("stopped");
    Ok(())
}

/// The next event of the modem; never, without `[modem]`.
async fn modem_event(s: &mut Option<sms::SmsDriver>) -> Option<lwgate_bridges::modem::ModemEvent> {
    match s {
        Some(s) => s.events.recv().await,
        None => std::future::pending().await,
    }
}

/// The next report of a firmware task; never, without `[firmware]`.
async fn firmware_report(f: &mut Option<firmware::FirmwareDriver>) -> Option<firmware::Report> {
    match f {
        Some(f) => f.recv().await,
        None => std::future::pending().await,
    }
}

/// The next report of a software task, with its /9 instance; never, without
/// `[software]`.
async fn software_report(
    s: &mut Option<software::SoftwareDriver>,
) -> Option<(u16, software::Report)> {
    match s {
        Some(s) => s.recv().await,
        None => std::future::pending().await,
    }
}

/// Gives the heap that start-up (config, object definitions, the database's
/// migrations) or a reload used and freed back to the system: glibc keeps freed
/// memory in its arenas otherwise, and it would count in the daemon's RSS for as
/// long as it runs.
fn release_freed_memory() {
    #[cfg(target_env = "gnu")]
    // SAFETY: malloc_trim only returns free memory of the allocator to the kernel;
    // it takes no pointers and is safe to call at any time.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// How long after start-up (or a reload) its memory is given back.
const RELEASE_AFTER: std::time::Duration = std::time::Duration::from_secs(5);

/// Drops from this process's page tables the pages of its program and libraries
/// that start-up touched: the configuration parser, the object definitions'
/// loader, the database's migrations and most of what the dynamic loader read
/// run once, yet every page they touched (and the kernel's fault-around with
/// it) would count in the daemon's RSS for as long as it runs. Only clean,
/// read-only, private file mappings without a private (copy-on-write) page are
/// dropped (code, constants, symbol tables; not relocated data): they stay in
/// the page cache, and a page used again comes back with a minor fault.
fn release_startup_pages() {
    let Ok(smaps) = std::fs::read_to_string("/proc/self/smaps") else {
        return;
    };
    let mut mapping: Option<(usize, usize)> = None;
    for line in smaps.lines() {
        let mut fields = line.split_whitespace();
        let first = fields.next().unwrap_or_default();
        if let Some((start, end)) = first.split_once('-') {
            // `start-end perms offset dev inode path`: a file mapping, read-only, private.
            let (Ok(start), Ok(end)) = (
                usize::from_str_radix(start, 16),
                usize::from_str_radix(end, 16),
            ) else {
                mapping = None;
                continue;
            };
            let perms = fields.next().unwrap_or_default();
            let path = fields.nth(3).unwrap_or_default();
            mapping = (perms.starts_with("r-") && perms.ends_with('p') && path.starts_with('/'))
                .then_some((start, end));
        } else if first == "Anonymous:" {
            if let Some((start, end)) = mapping.take() {
                if fields.next() == Some("0") {
                    // SAFETY: the range is a whole mapping of this process, read-only
                    // and without private pages: MADV_DONTNEED only unmaps its pages,
                    // which the file gives back unchanged on the next access.
                    unsafe {
                        libc::madvise(start as *mut libc::c_void, end - start, libc::MADV_DONTNEED);
                    }
                }
            }
        }
    }
}

/// Events taken in one go, at most, before the next flush.
const DRAIN_MAX: usize = 512;

/// Takes whatever else is ready (the other tasks run first) before the next flush:
/// a burst — a hundred devices polled together, the server's ACKs to their
/// notifications — then costs one commit and one round of sends, not one each.
async fn drain_ready(engine: &mut engine::Engine) {
    tokio::task::yield_now().await;
    for _ in 0..DRAIN_MAX {
        if let Ok((id, ev)) = engine.devices.events.try_recv() {
            engine.device_event(Instant::now(), &id, ev);
        } else if let Ok(ev) = engine.peers.rx.try_recv() {
            engine.peer_event(Instant::now(), ev);
        } else {
            break;
        }
    }
}

/// De-registration gets a few seconds; a dead server must not hold up a stop.
fn begin_shutdown(engine: &mut engine::Engine) -> Instant {
    systemd::stopping();
    engine.shutdown(Instant::now());
    Instant::now() + std::time::Duration::from_secs(5)
}

/// SIGHUP: re-read devices.d. A broken file keeps the previous set running.
fn reload_devices(loaded: &Loaded, engine: &mut engine::Engine) {
    systemd::reloading();
    match config::load_devices(&loaded.devices_dir) {
        Ok(devices) => {
            tracing::info!(
                dir = %loaded.devices_dir.display(),
                "reloaded devices.d: {} device(s)",
                devices.len()
            );
            engine.reload_devices(Instant::now(), &devices);
        }
        Err(e) => {
            for err in &e.0 {
                tracing::error!(
                    "reload of devices.d rejected, keeping the previous devices: {err}"
                );
            }
        }
    }
    let n = engine.devices.status().len();
    release_freed_memory();
    systemd::reloaded(&format!("{n} device(s)"));
}
