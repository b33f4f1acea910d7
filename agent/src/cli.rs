//! The `lwgate` command line.

use crate::config::{self, DEFAULT_CONFIG_PATH};
use crate::status::Status;
use clap::{Parser, Subcommand};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[derive(Parser, Debug)]
#[command(
    name = "lwgate",
    version = crate::VERSION,
    about = "LwM2M client and edge-gateway agent",
    long_about = "lwgate is the LwM2M client of a Linux gateway: it registers the gateway with \
                  LwM2M servers over CoAP/UDP or DTLS (coaps://, PSK or certificates) and \
                  lets them manage it (read, write, execute, \
                  observe, Send), keeps notifications while a server is unreachable, and \
                  bootstraps from its config, a UICC smartcard or a bootstrap server. Modbus \
                  RTU/TCP, serial-line and MQTT devices in devices.d appear to the servers as \
                  end devices behind the LwM2M Gateway object (/25); it updates its firmware \
                  (/5) and software (/9) from a Package URI. This version does not yet \
                  receive SMS triggers (the [sms] table is checked only). Normally run by systemd (lwgate.service)."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Parser, Debug, Clone)]
pub struct ConfigArg {
    /// Configuration file.
    #[arg(long, short = 'c', env = "LWGATE_CONFIG", default_value = DEFAULT_CONFIG_PATH)]
    pub config: PathBuf,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the agent in the foreground (systemd runs it as Type=notify).
    Run {
        #[command(flatten)]
        config: ConfigArg,
    },
    /// Validate the configuration and devices.d/, print a summary; exit 0 if valid, 1 if not.
    CheckConfig {
        #[command(flatten)]
        config: ConfigArg,
    },
    /// Show the running agent's state (servers, registration, devices).
    Status {
        #[command(flatten)]
        config: ConfigArg,
        /// Control socket; default: [control] socket of the configuration.
        #[arg(long)]
        socket: Option<PathBuf>,
        /// Print the raw JSON, for scripts.
        #[arg(long)]
        json: bool,
    },
    /// Send (LwM2M 1.1) the current values of resources to a server, e.g.
    /// `lwgate send /3/0/13 /4/0/4`. The server must allow it (Mute Send off).
    Send {
        #[command(flatten)]
        config: ConfigArg,
        /// Short Server ID (1-65534) of the server to send to; default: the first server.
        #[arg(long, value_name = "SSID", value_parser = clap::value_parser!(u16).range(1..=65534))]
        server: Option<u16>,
        /// Paths such as /3/0/13.
        #[arg(required = true)]
        paths: Vec<String>,
    },
    /// Smartcard (UICC) tools.
    Smartcard {
        #[command(subcommand)]
        command: SmartcardCommand,
    },
    /// Run the [firmware] installer on the downloaded, verified package (what
    /// lwgate-install.service does, as root, when a server executes /5/0/2).
    InstallPackage {
        #[command(flatten)]
        config: ConfigArg,
    },
    /// Run a [software] command of /9 Software Management (what
    /// lwgate-software@<command>.service does, as root): install (the verified
    /// package), uninstall, activate or deactivate (the PkgName lwgate left).
    SoftwareCommand {
        #[command(flatten)]
        config: ConfigArg,
        /// install, uninstall, activate or deactivate.
        #[arg(value_parser = ["install", "uninstall", "activate", "deactivate"])]
        command: String,
    },
    /// SMS tools.
    Sms {
        #[command(subcommand)]
        command: SmsCommand,
    },
    /// Print the version.
    Version,
}

#[derive(Subcommand, Debug)]
pub enum SmsCommand {
    /// Print what SMS PDUs (hex, as AT+CMGL/AT+CMGR or a modem log shows them, with
    /// their service-centre prefix) hold: sender, time, coding, header, user data
    /// and the CoAP message it carries; the parts of a concatenated message are
    /// joined.
    Decode {
        #[arg(required = true)]
        pdus: Vec<String>,
    },
}

/// Rust ignores SIGPIPE, so `lwgate check-config | head` would panic on a closed
/// pipe. The one-shot commands take the default (die quietly); the daemon keeps
/// ignoring it, as a socket peer going away must not kill it.
fn default_sigpipe() {
    use nix::sys::signal::{signal, SigHandler, Signal};
    // SAFETY: called before any thread is spawned; SIG_DFL installs no handler code.
    unsafe {
        let _ = signal(Signal::SIGPIPE, SigHandler::SigDfl);
    }
}

#[derive(Subcommand, Debug)]
pub enum SmartcardCommand {
    /// Print what the card holds for LwM2M (applications, files, objects, resources;
    /// secrets masked). Reader and PIN default to [bootstrap.smartcard] in the config.
    Dump {
        #[command(flatten)]
        config: ConfigArg,
        /// Reader name; default: the first reader holding a card.
        #[arg(long)]
        reader: Option<String>,
        /// PIN for a protected bootstrap file (tried once; a wrong PIN is not retried).
        #[arg(long, conflicts_with = "pin_file")]
        pin: Option<String>,
        /// File holding the PIN, e.g. a systemd credential.
        #[arg(long)]
        pin_file: Option<PathBuf>,
        /// Also print the APDU exchange.
        #[arg(long)]
        trace: bool,
    },
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    if !matches!(cli.command, Command::Run { .. }) {
        default_sigpipe();
    }
    match cli.command {
        Command::Run { config } => run(&config.config),
        Command::CheckConfig { config } => check_config(&config.config),
        Command::Status {
            config,
            socket,
            json,
        } => status(&config.config, socket, json),
        Command::Send {
            config,
            server,
            paths,
        } => send(&config.config, server, &paths),
        Command::Smartcard {
            command:
                SmartcardCommand::Dump {
                    config,
                    reader,
                    pin,
                    pin_file,
                    trace,
                },
        } => smartcard_dump(&config.config, reader, pin, pin_file, trace),
        Command::InstallPackage { config } => install_package(&config.config),
        Command::SoftwareCommand { config, command } => software_command(&config.config, &command),
        Command::Sms {
            command: SmsCommand::Decode { pdus },
        } => sms_decode(&pdus),
        Command::Version => {
            println!("lwgate {}", crate::VERSION);
            ExitCode::SUCCESS
        }
    }
}

fn sms_decode(pdus: &[String]) -> ExitCode {
    let mut failed = false;
    let mut parts: Vec<(u8, Vec<u8>)> = Vec::new();
    for (i, hex) in pdus.iter().enumerate() {
        if pdus.len() > 1 {
            println!("PDU {}:", i + 1);
        }
        match crate::sms_decode::describe(hex) {
            Ok(d) => {
                print!("{}", d.text);
                if let Some(p) = d.part {
                    parts.push(p);
                }
            }
            Err(e) => {
                eprintln!("lwgate: {e}");
                failed = true;
            }
        }
    }
    if parts.len() > 1 {
        parts.sort_by_key(|(seq, _)| *seq);
        let whole: Vec<u8> = parts.into_iter().flat_map(|(_, d)| d).collect();
        println!("joined: {} octets", whole.len());
        println!("  coap: {}", crate::coap::trace::describe(&whole));
    }
    if failed {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}

fn run(path: &Path) -> ExitCode {
    let loaded = match config::load(path) {
        Ok(l) => l,
        Err(e) => {
            // Logging is not set up yet (its level is in the config): plain stderr,
            // which systemd sends to the journal anyway.
            eprintln!("lwgate: invalid configuration, not starting:\n{e}");
            return ExitCode::from(1);
        }
    };
    crate::logging::init(loaded.config.log.level);
    match crate::daemon::run(loaded) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // Once: the log is stderr by hand and the journal under systemd, which
            // also takes stderr.
            tracing::error!("fatal: {}", error_text(&e));
            ExitCode::from(1)
        }
    }
}

/// An error and its causes in one line, each said once: libraries often repeat
/// their cause in their own message, and `{:#}` would print it again.
pub fn error_text(e: &anyhow::Error) -> String {
    let mut out = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if out.contains(&text) {
            continue;
        }
        if !out.is_empty() {
            out.push_str(": ");
        }
        out.push_str(&text);
    }
    out
}

fn software_command(path: &Path, command: &str) -> ExitCode {
    let loaded = match config::load(path) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    let Some(sw) = loaded.config.software.as_ref() else {
        eprintln!("{}: no [software] table", path.display());
        return ExitCode::from(2);
    };
    let Some(cmd) = crate::lwm2m::SwCommand::parse(command) else {
        eprintln!("unknown command {command:?}");
        return ExitCode::from(2);
    };
    let dir = crate::daemon::software_command_dir(sw, &loaded.config.store.path);
    let name = crate::daemon::software_name(&dir);
    if cmd == crate::lwm2m::SwCommand::Install && !dir.join("package").is_file() {
        eprintln!(
            "no package in {} (no download or push has completed)",
            dir.display()
        );
        return ExitCode::from(2);
    }
    let Some(argv) = crate::daemon::software_argv(sw, &dir, cmd, &name) else {
        // Activate and Deactivate without a command have nothing to do.
        println!("[software] has no {command} command: nothing to run");
        return ExitCode::SUCCESS;
    };
    run_argv(&argv)
}

/// Runs a command for a oneshot unit: its status is ours.
fn run_argv(argv: &[String]) -> ExitCode {
    let Some((prog, args)) = argv.split_first() else {
        return ExitCode::from(2);
    };
    println!("running {}", argv.join(" "));
    match std::process::Command::new(prog).args(args).status() {
        Ok(st) if st.success() => ExitCode::SUCCESS,
        Ok(st) => {
            eprintln!("{prog} failed: {st}");
            ExitCode::from(u8::try_from(st.code().unwrap_or(1)).unwrap_or(1).max(1))
        }
        Err(e) => {
            eprintln!("cannot run {prog}: {e}");
            ExitCode::from(127)
        }
    }
}

fn install_package(path: &Path) -> ExitCode {
    let loaded = match config::load(path) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    let Some(fw) = loaded.config.firmware.as_ref() else {
        eprintln!(
            "{}: no [firmware] table: nothing to install with",
            path.display()
        );
        return ExitCode::from(2);
    };
    let package = crate::daemon::firmware_package(fw, &loaded.config.store.path);
    if !package.is_file() {
        eprintln!(
            "no package at {} (no download or push has completed)",
            package.display()
        );
        return ExitCode::from(2);
    }
    let argv: Vec<String> = fw
        .install
        .iter()
        .map(|a| a.replace("{file}", &package.display().to_string()))
        .collect();
    run_argv(&argv)
}

fn check_config(path: &Path) -> ExitCode {
    match config::load(path) {
        Ok(l) => {
            println!("{}: OK", l.path.display());
            println!("  endpoint: {}", l.endpoint);
            println!("  store:    {}", l.config.store.path.display());
            println!("  control:  {}", l.config.control.socket.display());
            println!("  log:      {}", l.config.log.level.as_str());
            println!("  servers:  {}", l.config.servers.len());
            for s in &l.config.servers {
                println!(
                    "    [{}] {} binding={} lifetime={}s security={} storing={}",
                    s.ssid,
                    s.uri,
                    s.binding,
                    s.lifetime.0,
                    s.security.as_str(),
                    s.notification_storing
                );
            }
            println!(
                "  devices:  {} in {}",
                l.devices.len(),
                l.devices_dir.display()
            );
            for d in &l.devices {
                println!(
                    "    {} prefix=/{} {}{}",
                    d.spec.device.id,
                    d.spec.device.prefix(),
                    d.spec.device.protocol.as_str(),
                    if d.spec.device.enabled {
                        ""
                    } else {
                        " (disabled)"
                    }
                );
            }
            let store = &l.config.store.path;
            if let Some(fw) = &l.config.firmware {
                let package = crate::daemon::firmware_package(fw, store);
                println!(
                    "  firmware: /5 installs with {} (package in {}{})",
                    fw.install.join(" "),
                    package.parent().unwrap_or(&package).display(),
                    if fw.public_key.is_some() {
                        ", signatures required"
                    } else {
                        ""
                    }
                );
            }
            if let Some(sw) = &l.config.software {
                println!(
                    "  software: /9 installs with {} (packages in {})",
                    sw.install.join(" "),
                    crate::daemon::software_dir(sw, store).display()
                );
            }
            for w in &l.warnings {
                println!("  warning: {w}");
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{e}");
            eprintln!("{}: configuration is NOT valid", path.display());
            ExitCode::from(1)
        }
    }
}

/// The socket comes from --socket, else from the config; a config that does not
/// parse still lets status reach a daemon on the default socket.
fn socket_path(path: &Path, socket: Option<PathBuf>) -> PathBuf {
    if let Some(s) = socket {
        return s;
    }
    match std::fs::read_to_string(path)
        .ok()
        .and_then(|t| config::parse(path, &t).ok())
    {
        Some(c) => c.control.socket,
        None => config::Config::default().control.socket,
    }
}

fn send(path: &Path, ssid: Option<u16>, paths: &[String]) -> ExitCode {
    let sock = socket_path(path, None);
    let ssid = ssid.map_or("-".to_string(), |s| s.to_string());
    let request = format!("send {ssid} {}", paths.join(" "));
    let answer = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())
        .and_then(|rt| {
            rt.block_on(crate::control::request(&sock, &request))
                .map_err(|e| e.to_string())
        });
    match answer.map(|l| serde_json::from_str::<serde_json::Value>(&l)) {
        Ok(Ok(v)) if v["ok"] == true => {
            println!("sent");
            ExitCode::SUCCESS
        }
        Ok(Ok(v)) => {
            eprintln!(
                "lwgate: send failed: {}",
                v["error"].as_str().unwrap_or("unknown error")
            );
            ExitCode::from(1)
        }
        Ok(Err(e)) => {
            eprintln!("lwgate: unreadable answer: {e}");
            ExitCode::from(1)
        }
        Err(e) => {
            eprintln!("lwgate: {e}");
            ExitCode::from(1)
        }
    }
}

fn smartcard_dump(
    path: &Path,
    reader: Option<String>,
    pin: Option<String>,
    pin_file: Option<PathBuf>,
    trace: bool,
) -> ExitCode {
    // Defaults from the config when it parses; the tool must work without one too.
    let sc = std::fs::read_to_string(path)
        .ok()
        .and_then(|t| config::parse(path, &t).ok())
        .and_then(|c| c.bootstrap)
        .and_then(|b| b.smartcard);
    let reader = reader.or_else(|| sc.as_ref().and_then(|s| s.reader.clone()));
    let pin_file = pin_file.or_else(|| sc.as_ref().and_then(|s| s.pin_file.clone()));
    let pin = match (
        pin.or_else(|| sc.as_ref().and_then(|s| s.pin.clone())),
        pin_file,
    ) {
        (Some(p), _) => Some(p),
        (None, Some(f)) => match std::fs::read_to_string(&f) {
            Ok(p) => Some(p.trim().to_string()),
            Err(e) => {
                eprintln!("lwgate: {}: cannot read the PIN file: {e}", f.display());
                return ExitCode::from(1);
            }
        },
        (None, None) => None,
    };
    let reg = crate::daemon::registry(&[]);
    let (result, log) = crate::smartcard::reader::read(reader.as_deref(), pin.as_deref());
    if trace {
        for l in &log {
            println!("{l}");
        }
    }
    match result {
        Ok((name, data)) => {
            print!("{}", crate::smartcard::dump::render(&name, &data, &reg));
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("lwgate: smartcard: {e}");
            ExitCode::from(1)
        }
    }
}

fn status(path: &Path, socket: Option<PathBuf>, json: bool) -> ExitCode {
    let sock = socket_path(path, socket);
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("lwgate: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let line = match rt.block_on(crate::control::request(&sock, "status")) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("lwgate: {e}");
            return ExitCode::from(1);
        }
    };
    if json {
        println!("{line}");
        return ExitCode::SUCCESS;
    }
    match serde_json::from_str::<Status>(&line) {
        Ok(s) => {
            print!("{}", s.render());
            ExitCode::SUCCESS
        }
        Err(_) => {
            // An error object or a newer daemon's format: show it as it came.
            println!("{line}");
            ExitCode::from(1)
        }
    }
}
