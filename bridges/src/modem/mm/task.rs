//! The ModemManager task: one D-Bus connection, ModemManager's signals followed,
//! our modem found (again) by the `modem` setting, its messages handed over and
//! deleted, sends answered; the bus reconnected with back-off when it goes.

use crate::modem::unix_now;
use std::collections::{HashMap, HashSet};
use std::time::Duration;

use futures_util::StreamExt;
use tokio::sync::mpsc::{self, error::TrySendError};
use tokio::time::Instant;
use zbus::zvariant::OwnedObjectPath;
use zbus::Message;

use super::bus::{self, Mm};
use super::pick::{candidates, pick};
use super::sms::{judge, Judged};
use super::status::{self, ModemInfo, Network, Verdict};
use super::values::prop_str;
use super::{MESSAGING, MODEM, MODEM_3GPP, SIGNAL, SMS};
use crate::modem::config::ModemConfig;
use crate::modem::{Link, ModemEvent, ModemState, Request, SendError, Sent};

const NOT_RUNNING: &str = "ModemManager is not running";

/// Our modem, as last read.
struct Open {
    path: String,
    messaging: bool,
    /// Said Ready, and its stored messages listed.
    ready: bool,
    /// When we last asked ModemManager to enable it.
    enabled_at: Option<Instant>,
}

enum End {
    /// Nobody listens any more.
    Quit,
    /// The bus connection is gone.
    Lost(String),
}

/// Work a signal or a round left for the loop.
#[derive(Default)]
struct Todo {
    scan: bool,
    refresh: bool,
    /// SMS objects to look at.
    sms: Vec<String>,
    /// List the messages again (with the refresh).
    list: bool,
}

struct Task {
    config: ModemConfig,
    requests: mpsc::Receiver<Request>,
    events: mpsc::Sender<ModemEvent>,
    state: ModemState,
    said: Option<ModemState>,
    modem: Option<Open>,
    /// Received messages not complete yet, since when we know of them.
    pending: HashMap<String, Instant>,
    /// Handed over, not deleted yet (the delete failed): deleted, not handed over
    /// again.
    delivered: HashSet<String>,
}

pub(crate) async fn run(
    config: ModemConfig,
    requests: mpsc::Receiver<Request>,
    events: mpsc::Sender<ModemEvent>,
) {
    let state = ModemState {
        link: Link::Opening,
        port: config.modem.to_string(),
        own_number: config.own_number.clone(),
        operator: None,
        signal_dbm: None,
        registration: None,
        dropped_events: 0,
        signal_percent: None,
        cell_id: None,
        lac: None,
        mcc: None,
        mnc: None,
    };
    let mut task = Task {
        config,
        requests,
        events,
        state,
        said: None,
        modem: None,
        pending: HashMap::new(),
        delivered: HashSet::new(),
    };
    task.run().await;
}

impl Task {
    async fn run(&mut self) {
        self.say_state();
        let mut backoff = Duration::from_secs(1);
        let max = Duration::from_secs(u64::from(self.config.reconnect_max));
        loop {
            let reason = match bus::connect(self.config.bus).await {
                Err(e) => e,
                Ok(mm) => {
                    backoff = Duration::from_secs(1);
                    match self.session(&mm).await {
                        End::Quit => return,
                        End::Lost(reason) => reason,
                    }
                }
            };
            self.forget_modem();
            self.set_link(Link::Down { reason });
            if !self.pause(backoff).await {
                return;
            }
            backoff = (backoff * 2).min(max);
        }
    }

    /// Waits `d`, answering sends and saying the state meanwhile; false when
    /// nobody listens any more.
    async fn pause(&mut self, d: Duration) -> bool {
        let until = Instant::now() + d;
        let events = self.events.clone();
        loop {
            tokio::select! {
                _ = tokio::time::sleep_until(until) => return true,
                r = self.requests.recv() => match r {
                    None => return false,
                    Some(Request::Send { reply, .. }) => {
                        let _ = reply.send(Err(SendError::Unavailable(self.why_not())));
                    }
                },
                p = events.reserve(), if self.unsaid() => match p {
                    Err(_) => return false,
                    Ok(p) => {
                        self.said = Some(self.state.clone());
                        p.send(ModemEvent::State(self.state.clone()));
                    }
                },
            }
        }
    }

    fn why_not(&self) -> String {
        match &self.state.link {
            Link::Down { reason } => reason.clone(),
            Link::Opening => "the modem is not ready yet".into(),
            Link::Ready => "the modem is not ready".into(),
        }
    }

    fn unsaid(&self) -> bool {
        self.said.as_ref() != Some(&self.state)
    }

    /// Said at once when the channel has room, else as soon as it has.
    fn say_state(&mut self) {
        if !self.unsaid() {
            return;
        }
        if self
            .events
            .try_send(ModemEvent::State(self.state.clone()))
            .is_ok()
        {
            self.said = Some(self.state.clone());
        }
    }

    fn set_link(&mut self, link: Link) {
        self.state.link = link;
        self.say_state();
    }

    fn clear_status(&mut self) {
        let s = &mut self.state;
        s.operator = None;
        s.signal_dbm = None;
        s.registration = None;
        s.signal_percent = None;
        s.cell_id = None;
        s.lac = None;
        s.mcc = None;
        s.mnc = None;
        s.own_number = self.config.own_number.clone();
    }

    fn forget_modem(&mut self) {
        self.modem = None;
        self.pending.clear();
        self.delivered.clear();
        self.state.port = self.config.modem.to_string();
        self.clear_status();
    }

    fn down(&mut self, reason: String) {
        if let Some(m) = &mut self.modem {
            m.ready = false;
        }
        self.clear_status();
        self.set_link(Link::Down { reason });
    }

    async fn session(&mut self, mm: &Mm) -> End {
        let mut signals = match mm.signals().await {
            Ok(s) => s,
            Err(e) => return End::Lost(e),
        };
        let mut owners = match mm.owner_changes().await {
            Ok(s) => s,
            Err(e) => return End::Lost(e),
        };
        let interval = Duration::from_secs(u64::from(self.config.status_interval));
        let mut next_round = Instant::now() + interval;
        let mut todo = Todo {
            scan: true,
            ..Todo::default()
        };
        let events = self.events.clone();
        loop {
            if let Err(end) = self.work(mm, &mut todo).await {
                return end;
            }
            tokio::select! {
                m = signals.next() => match m {
                    None => return End::Lost("the D-Bus connection was closed".into()),
                    Some(Ok(m)) => self.on_signal(&m, &mut todo),
                    Some(Err(_)) => {}
                },
                m = owners.next() => match m {
                    None => return End::Lost("the D-Bus connection was closed".into()),
                    Some(Ok(m)) => self.on_owner(&m, &mut todo),
                    Some(Err(_)) => {}
                },
                r = self.requests.recv() => match r {
                    None => return End::Quit,
                    Some(Request::Send { number, data, reply }) => {
                        let r = self.send(mm, &number, &data).await;
                        let _ = reply.send(r);
                    }
                },
                p = events.reserve(), if self.unsaid() => match p {
                    Err(_) => return End::Quit,
                    Ok(p) => {
                        self.said = Some(self.state.clone());
                        p.send(ModemEvent::State(self.state.clone()));
                    }
                },
                _ = tokio::time::sleep_until(next_round) => {
                    next_round = Instant::now() + interval;
                    // Also what makes up for a signal missed.
                    match &self.modem {
                        None => todo.scan = true,
                        // With the messages ModemManager still holds (left by a
                        // full channel, or announced by a signal we missed).
                        Some(_) => {
                            todo.refresh = true;
                            todo.list = true;
                        }
                    }
                }
            }
        }
    }

    async fn work(&mut self, mm: &Mm, todo: &mut Todo) -> Result<(), End> {
        // A step can ask for another (a modem gone while read: look again); a few
        // rounds, then the next signal or status round.
        for _ in 0..4 {
            if !(todo.scan || todo.refresh || !todo.sms.is_empty()) {
                break;
            }
            if std::mem::take(&mut todo.scan) {
                self.scan(mm, todo).await;
            }
            if std::mem::take(&mut todo.refresh) {
                self.refresh(mm, todo).await;
            }
            let mut seen = HashSet::new();
            for path in std::mem::take(&mut todo.sms) {
                if seen.insert(path.clone()) {
                    self.look_at(mm, &path).await?;
                }
            }
        }
        if self.events.is_closed() {
            return Err(End::Quit);
        }
        Ok(())
    }

    /// Finds our modem among ModemManager's.
    async fn scan(&mut self, mm: &Mm, todo: &mut Todo) {
        match mm.running().await {
            Ok(true) => {}
            Ok(false) => {
                self.forget_modem();
                return self.down(NOT_RUNNING.into());
            }
            Err(e) => {
                self.forget_modem();
                return self.down(format!("cannot ask the bus about ModemManager: {e}"));
            }
        }
        let managed = match mm.managed_objects().await {
            Ok(m) => m,
            Err(e) => {
                self.forget_modem();
                return self.down(format!("cannot list ModemManager's modems: {e}"));
            }
        };
        let all = candidates(&managed);
        match pick(&self.config.modem, &all) {
            Err(why) => {
                self.forget_modem();
                self.down(why);
            }
            Ok(c) => {
                match &mut self.modem {
                    Some(m) if m.path == c.path => m.messaging = c.messaging,
                    _ => {
                        self.forget_modem();
                        self.state.port = c.path.clone();
                        self.modem = Some(Open {
                            path: c.path.clone(),
                            messaging: c.messaging,
                            ready: false,
                            enabled_at: None,
                        });
                    }
                }
                todo.refresh = true;
            }
        }
    }

    /// Reads our modem's state and status; lists its messages when it became ready.
    async fn refresh(&mut self, mm: &Mm, todo: &mut Todo) {
        let Some(path) = self.modem.as_ref().map(|m| m.path.clone()) else {
            return;
        };
        let props = match mm.get_all(&path, MODEM).await {
            Ok(p) => p,
            Err(e) => {
                // Gone between the signal and now: look again.
                todo.scan = true;
                if mm.running().await == Ok(false) {
                    self.forget_modem();
                    return self.down(NOT_RUNNING.into());
                }
                return self.down(format!("cannot read the modem {path}: {e}"));
            }
        };
        let info = ModemInfo::from_props(&props);
        let messaging = self.modem.as_ref().is_some_and(|m| m.messaging);
        match info.verdict(self.config.enable, messaging) {
            Verdict::Ready => {
                let was_ready = self.modem.as_ref().is_some_and(|m| m.ready);
                // Ready only once its messages can be read (a polkit refusal says
                // so here, not as silence).
                if !was_ready || std::mem::take(&mut todo.list) {
                    match mm.list(&path).await {
                        Ok(paths) => todo
                            .sms
                            .extend(paths.into_iter().map(|p| p.as_str().to_string())),
                        Err(e) => {
                            return self.down(format!("cannot list the modem's messages: {e}"))
                        }
                    }
                }
                self.status(mm, &path, &info).await;
                if let Some(m) = &mut self.modem {
                    m.ready = true;
                }
                self.set_link(Link::Ready);
            }
            Verdict::Wait => {
                if let Some(m) = &mut self.modem {
                    m.ready = false;
                }
                // Down stays down (said once) until the modem is ready.
                if !matches!(self.state.link, Link::Down { .. }) {
                    self.set_link(Link::Opening);
                }
            }
            Verdict::Enable => {
                let due = self.modem.as_ref().is_some_and(|m| {
                    m.enabled_at.is_none_or(|t| {
                        t.elapsed() >= Duration::from_secs(u64::from(self.config.status_interval))
                    })
                });
                if !due {
                    return;
                }
                if let Some(m) = &mut self.modem {
                    m.enabled_at = Some(Instant::now());
                    m.ready = false;
                }
                if !matches!(self.state.link, Link::Down { .. }) {
                    self.set_link(Link::Opening);
                }
                match mm.enable(&path).await {
                    // Its state changes say the rest.
                    Ok(()) => todo.refresh = true,
                    Err(e) => self.down(format!("modem disabled, and enabling it failed: {e}")),
                }
            }
            Verdict::Down(why) => self.down(why),
        }
    }

    /// Signal, numbers, network and cell; what is not there stays unknown.
    async fn status(&mut self, mm: &Mm, path: &str, info: &ModemInfo) {
        self.state.signal_percent = info.signal_percent;
        self.state.own_number = self
            .config
            .own_number
            .clone()
            .or_else(|| info.own_numbers.first().cloned());
        let net = match mm.get_all(path, MODEM_3GPP).await {
            Ok(p) => Network::from_props(&p),
            Err(_) => Network::default(),
        };
        self.state.operator = net.operator;
        self.state.registration = net.registration;
        let cell = match mm.location(path).await {
            Ok(l) => status::cell(&l).unwrap_or_default(),
            Err(_) => status::Cell::default(),
        };
        self.state.cell_id = cell.cell_id;
        self.state.lac = cell.lac;
        self.state.mcc = cell.mcc;
        self.state.mnc = cell.mnc;
        self.state.signal_dbm = match mm.get_all(path, SIGNAL).await {
            Ok(p) => status::signal_dbm(&p),
            Err(_) => None,
        };
    }

    /// A message: handed over and deleted when complete and received.
    async fn look_at(&mut self, mm: &Mm, sms: &str) -> Result<(), End> {
        let Some(modem) = self
            .modem
            .as_ref()
            .filter(|m| m.ready)
            .map(|m| m.path.clone())
        else {
            return Ok(());
        };
        if self.delivered.contains(sms) {
            if mm.delete(&modem, sms).await.is_ok() {
                self.delivered.remove(sms);
            }
            return Ok(());
        }
        let props = match mm.get_all(sms, SMS).await {
            Ok(p) => p,
            // Deleted meanwhile.
            Err(_) => {
                self.pending.remove(sms);
                return Ok(());
            }
        };
        let event = match judge(&props, unix_now()) {
            Judged::Pending => {
                let since = *self
                    .pending
                    .entry(sms.to_string())
                    .or_insert_with(Instant::now);
                let limit = u64::from(self.config.concat_timeout);
                if since.elapsed() < Duration::from_secs(limit) {
                    return Ok(());
                }
                // ModemManager keeps the parts of an incomplete message for ever:
                // they would fill the modem's storage.
                ModemEvent::Discarded {
                    sender: prop_str(&props, "Number"),
                    reason: format!(
                        "concatenated SMS still incomplete after {limit} s (ModemManager had not all its parts): deleted"
                    ),
                }
            }
            Judged::Outgoing => {
                self.pending.remove(sms);
                return Ok(());
            }
            Judged::Deliver(s) => ModemEvent::Sms(s),
            Judged::Discard { sender, reason } => ModemEvent::Discarded { sender, reason },
        };
        self.pending.remove(sms);
        match self.events.try_send(event) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => {
                // Left in ModemManager: offered again at the next round.
                self.state.dropped_events += 1;
                return Ok(());
            }
            Err(TrySendError::Closed(_)) => return Err(End::Quit),
        }
        if mm.delete(&modem, sms).await.is_err() {
            self.delivered.insert(sms.to_string());
        }
        Ok(())
    }

    fn on_signal(&mut self, m: &Message, todo: &mut Todo) {
        let h = m.header();
        let (Some(path), Some(iface), Some(member)) = (h.path(), h.interface(), h.member()) else {
            return;
        };
        let ours = self.modem.as_ref().map(|o| o.path.as_str());
        let on_ours = ours == Some(path.as_str());
        match (iface.as_str(), member.as_str()) {
            ("org.freedesktop.DBus.ObjectManager", "InterfacesAdded") => {
                if let Ok((p, ifaces)) = m.body().deserialize::<(
                    OwnedObjectPath,
                    std::collections::HashMap<String, super::values::Props>,
                )>() {
                    if (ours.is_none() && ifaces.contains_key(MODEM)) || Some(p.as_str()) == ours {
                        todo.scan = true;
                    }
                }
            }
            ("org.freedesktop.DBus.ObjectManager", "InterfacesRemoved") => {
                if let Ok((p, ifaces)) = m.body().deserialize::<(OwnedObjectPath, Vec<String>)>() {
                    if Some(p.as_str()) == ours {
                        if ifaces.iter().any(|i| i == MODEM) {
                            self.forget_modem();
                            self.down("the modem was removed from ModemManager".into());
                        }
                        todo.scan = true;
                    }
                }
            }
            ("org.freedesktop.DBus.Properties", "PropertiesChanged") => {
                if on_ours {
                    todo.refresh = true;
                } else if self.pending.contains_key(path.as_str()) {
                    todo.sms.push(path.as_str().to_string());
                }
            }
            (MESSAGING, "Added") if on_ours => {
                if let Ok((sms, received)) = m.body().deserialize::<(OwnedObjectPath, bool)>() {
                    if received {
                        todo.sms.push(sms.as_str().to_string());
                    }
                }
            }
            (MESSAGING, "Deleted") if on_ours => {
                if let Ok(sms) = m.body().deserialize::<OwnedObjectPath>() {
                    self.pending.remove(sms.as_str());
                    self.delivered.remove(sms.as_str());
                }
            }
            _ => {}
        }
    }

    fn on_owner(&mut self, m: &Message, todo: &mut Todo) {
        let Ok((_, _, new)) = m.body().deserialize::<(String, String, String)>() else {
            return;
        };
        self.forget_modem();
        if new.is_empty() {
            self.down(NOT_RUNNING.into());
        } else {
            // It finds its modems in its own time; InterfacesAdded says when.
            todo.scan = true;
        }
    }

    async fn send(&mut self, mm: &Mm, number: &str, data: &[u8]) -> Result<Sent, SendError> {
        let Some(modem) = self
            .modem
            .as_ref()
            .filter(|m| m.ready)
            .map(|m| m.path.clone())
        else {
            return Err(SendError::Unavailable(self.why_not()));
        };
        match mm.send(&modem, number, data).await {
            Ok(reference) => Ok(Sent {
                references: vec![reference],
            }),
            Err(e) => Err(SendError::Failed(format!(
                "ModemManager did not send the SMS: {e}"
            ))),
        }
    }
}
