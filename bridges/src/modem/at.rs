//! The AT command port of TS 27.007/27.005, without I/O: bytes from the modem in,
//! unsolicited result codes and command replies out, and the parsing of the
//! replies and decisions that the session needs.
//!
//! A modem sends unsolicited lines (`+CMTI`, `+CMT` with its PDU line, `+CREG`,
//! `RING`, vendor `^...` lines) whenever it likes, also in the middle of a command's
//! reply. A line is taken as the reply's only when it belongs to the command in
//! flight: a `+NAME:` line to `AT+NAME...`, other lines to whatever is in flight;
//! `+CMTI` and `+CMT` are always unsolicited.

use std::collections::VecDeque;

use super::config::Delivery;

/// A modem line longer than this is no line of ours (a PDU line is at most 352
/// hex digits); it is dropped up to its end.
pub const MAX_LINE: usize = 1024;

/// What the byte stream holds: lines, and the `> ` prompt of `AT+CMGS`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Piece {
    Line(String),
    Prompt,
}

#[derive(Debug, Default)]
pub struct LineReader {
    buf: Vec<u8>,
    /// Dropping an overlong line until its end.
    skipping: bool,
    /// Lines dropped for their length.
    pub overlong: u64,
}

impl LineReader {
    pub fn push(&mut self, bytes: &[u8]) {
        for &b in bytes {
            if self.skipping {
                if b == b'\r' || b == b'\n' {
                    self.skipping = false;
                }
                continue;
            }
            if self.buf.len() >= MAX_LINE && b != b'\r' && b != b'\n' {
                self.buf.clear();
                self.skipping = true;
                self.overlong += 1;
                continue;
            }
            self.buf.push(b);
        }
    }

    /// Bytes held that make no line yet.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// The next line or, when `prompt` is awaited, the prompt (which ends no line).
    pub fn next(&mut self, prompt: bool) -> Option<Piece> {
        loop {
            let start = self
                .buf
                .iter()
                .position(|b| *b != b'\r' && *b != b'\n')
                .unwrap_or(self.buf.len());
            self.buf.drain(..start);
            if self.buf.is_empty() {
                return None;
            }
            if prompt && self.buf[0] == b'>' {
                let n = if self.buf.get(1) == Some(&b' ') { 2 } else { 1 };
                self.buf.drain(..n);
                return Some(Piece::Prompt);
            }
            let end = self.buf.iter().position(|b| *b == b'\r' || *b == b'\n')?;
            let line: Vec<u8> = self.buf.drain(..end).collect();
            let line = String::from_utf8_lossy(&line).trim().to_string();
            if !line.is_empty() {
                return Some(Piece::Line(line));
            }
        }
    }
}

/// How a command ended when it did not end in `OK`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Final {
    Error,
    Cme(u16),
    Cms(u16),
    /// `NO CARRIER`, `BUSY`, `+CME ERROR: <text>` (verbose modems) and the like.
    Other(String),
}

impl std::fmt::Display for Final {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Final::Error => f.write_str("ERROR"),
            Final::Cme(n) => write!(f, "+CME ERROR: {n} ({})", cme_name(*n)),
            Final::Cms(n) => write!(f, "+CMS ERROR: {n} ({})", cms_name(*n)),
            Final::Other(s) => f.write_str(s),
        }
    }
}

/// 27.007 9.2.
pub fn cme_name(n: u16) -> &'static str {
    match n {
        0 => "phone failure",
        3 => "operation not allowed",
        4 => "operation not supported",
        10 => "SIM not inserted",
        11 => "SIM PIN required",
        12 => "SIM PUK required",
        13 => "SIM failure",
        14 => "SIM busy",
        15 => "SIM wrong",
        16 => "incorrect password",
        17 => "SIM PIN2 required",
        18 => "SIM PUK2 required",
        20 => "memory full",
        21 => "invalid index",
        30 => "no network service",
        31 => "network timeout",
        100 => "unknown",
        _ => "see 3GPP TS 27.007 9.2",
    }
}

/// 27.005 3.2.5.
pub fn cms_name(n: u16) -> &'static str {
    match n {
        0..=127 => "network cause, see 3GPP TS 24.011",
        300 => "ME failure",
        301 => "SMS service of ME reserved",
        302 => "operation not allowed",
        303 => "operation not supported",
        304 => "invalid PDU mode parameter",
        305 => "invalid text mode parameter",
        310 => "SIM not inserted",
        311 => "SIM PIN required",
        312 => "PH-SIM PIN required",
        313 => "SIM failure",
        314 => "SIM busy",
        315 => "SIM wrong",
        316 => "SIM PUK required",
        320 => "memory failure",
        321 => "invalid memory index",
        322 => "memory full",
        330 => "SMSC address unknown",
        331 => "no network service",
        332 => "network timeout",
        340 => "no +CNMA acknowledgement expected",
        500 => "unknown error",
        _ => "see 3GPP TS 27.005 3.2.5",
    }
}

fn final_code(line: &str) -> Option<Final> {
    let code = |rest: &str, make: fn(u16) -> Final| match rest.trim().parse() {
        Ok(n) => make(n),
        Err(_) => Final::Other(line.to_string()),
    };
    if let Some(rest) = line.strip_prefix("+CME ERROR:") {
        return Some(code(rest, Final::Cme));
    }
    if let Some(rest) = line.strip_prefix("+CMS ERROR:") {
        return Some(code(rest, Final::Cms));
    }
    match line {
        "ERROR" => Some(Final::Error),
        "NO CARRIER" | "BUSY" | "NO ANSWER" | "NO DIALTONE" | "COMMAND NOT SUPPORT" => {
            Some(Final::Other(line.to_string()))
        }
        _ => None,
    }
}

/// A line of a reply; `+CMGL`/`+CMGR` lines carry the PDU line that followed them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplyLine {
    pub text: String,
    pub pdu: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Urc {
    /// A message stored at `index` in `mem`.
    Cmti {
        mem: String,
        index: u32,
    },
    /// A message routed straight to us; `pdu` is `None` when no PDU line came.
    Cmt {
        header: String,
        pdu: Option<String>,
    },
    Other(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AtEvent {
    Urc(Urc),
    /// `> `: the PDU may be written.
    Prompt,
    /// The command in flight ended: `OK` with its lines, or how it failed.
    Done(Result<Vec<ReplyLine>, Final>),
}

struct InFlight {
    command: String,
    /// `+NAME` of `AT+NAME...`, whose lines are the reply's.
    name: Option<String>,
    lines: Vec<ReplyLine>,
    prompt: bool,
}

enum PduFor {
    Urc(String),
    Reply,
}

/// The command in flight and the lines coming back.
#[derive(Default)]
pub struct At {
    pub reader: LineReader,
    inflight: Option<InFlight>,
    pdu_for: Option<PduFor>,
    out: VecDeque<AtEvent>,
}

fn is_hex(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_hexdigit())
}

impl At {
    /// Starts `command`; returns what to write. `prompt`: the modem answers with
    /// `> ` first (`AT+CMGS`).
    pub fn start(&mut self, command: &str, prompt: bool) -> Vec<u8> {
        let upper = command.to_ascii_uppercase();
        let name = upper.strip_prefix("AT+").map(|rest| {
            let end = rest
                .find(|c: char| !c.is_ascii_alphanumeric())
                .unwrap_or(rest.len());
            format!("+{}", &rest[..end])
        });
        self.inflight = Some(InFlight {
            command: upper,
            name,
            lines: Vec::new(),
            prompt,
        });
        format!("{command}\r").into_bytes()
    }

    /// The command in flight was given up on (no answer in time).
    pub fn abandon(&mut self) {
        self.inflight = None;
    }

    pub fn busy(&self) -> bool {
        self.inflight.is_some()
    }

    pub fn push(&mut self, bytes: &[u8]) {
        self.reader.push(bytes);
    }

    pub fn poll(&mut self) -> Option<AtEvent> {
        loop {
            if let Some(e) = self.out.pop_front() {
                return Some(e);
            }
            let prompt = self.inflight.as_ref().is_some_and(|c| c.prompt);
            match self.reader.next(prompt)? {
                Piece::Prompt => {
                    if let Some(c) = self.inflight.as_mut() {
                        c.prompt = false;
                    }
                    return Some(AtEvent::Prompt);
                }
                Piece::Line(line) => self.line(line),
            }
        }
    }

    fn line(&mut self, line: String) {
        if let Some(pdu_for) = self.pdu_for.take() {
            let hex = is_hex(&line);
            match pdu_for {
                PduFor::Urc(header) => {
                    self.out.push_back(AtEvent::Urc(Urc::Cmt {
                        header,
                        pdu: hex.then(|| line.clone()),
                    }));
                }
                PduFor::Reply if hex => {
                    if let Some(last) = self.inflight.as_mut().and_then(|c| c.lines.last_mut()) {
                        last.pdu = Some(line);
                        return;
                    }
                }
                PduFor::Reply => {}
            }
            if hex {
                return;
            }
        }
        if let Some(c) = &self.inflight {
            if line.eq_ignore_ascii_case(&c.command) {
                return; // echo, before ATE0 took
            }
        }
        if line.starts_with("+CMTI:") {
            self.out
                .push_back(AtEvent::Urc(parse_cmti(&line).unwrap_or(Urc::Other(line))));
            return;
        }
        if line.starts_with("+CMT:") {
            self.pdu_for = Some(PduFor::Urc(line));
            return;
        }
        if line == "OK" {
            if let Some(c) = self.inflight.take() {
                self.out.push_back(AtEvent::Done(Ok(c.lines)));
            }
            return;
        }
        if let Some(f) = final_code(&line) {
            if self.inflight.take().is_some() {
                self.out.push_back(AtEvent::Done(Err(f)));
            } else {
                self.out.push_back(AtEvent::Urc(Urc::Other(line)));
            }
            return;
        }
        let named = (line.starts_with('+') || line.starts_with('^'))
            .then(|| line.split(':').next())
            .flatten()
            .filter(|n| line.len() > n.len());
        let Some(c) = self.inflight.as_mut() else {
            self.out.push_back(AtEvent::Urc(Urc::Other(line)));
            return;
        };
        let mine = match named {
            Some(n) => c.name.as_deref().is_some_and(|m| m.eq_ignore_ascii_case(n)),
            None => line != "RING",
        };
        if !mine {
            self.out.push_back(AtEvent::Urc(Urc::Other(line)));
            return;
        }
        if matches!(named, Some("+CMGL" | "+CMGR")) {
            self.pdu_for = Some(PduFor::Reply);
        }
        c.lines.push(ReplyLine {
            text: line,
            pdu: None,
        });
    }
}

/// The comma-separated values after `+NAME:`, quotes removed.
pub fn fields(line: &str) -> Vec<String> {
    let rest = line.split_once(':').map_or("", |(_, r)| r);
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    for c in rest.chars() {
        match c {
            '"' => quoted = !quoted,
            ',' if !quoted => out.push(std::mem::take(&mut cur).trim().to_string()),
            _ => cur.push(c),
        }
    }
    out.push(cur.trim().to_string());
    out
}

fn number<T: std::str::FromStr>(f: &[String], i: usize) -> Option<T> {
    f.get(i)?.parse().ok()
}

pub fn parse_cmti(line: &str) -> Option<Urc> {
    let f = fields(line);
    Some(Urc::Cmti {
        mem: f.first()?.clone(),
        index: number(&f, 1)?,
    })
}

/// `+CMGL: <index>,<stat>,[<alpha>],<length>`: the index.
pub fn cmgl_index(line: &str) -> Option<u32> {
    number(&fields(line), 0)
}

/// `+CMGS: <mr>`.
pub fn cmgs_reference(lines: &[ReplyLine]) -> Option<u8> {
    lines
        .iter()
        .find(|l| l.text.starts_with("+CMGS:"))
        .and_then(|l| number(&fields(&l.text), 0))
}

/// What `AT+CPIN?` says the SIM waits for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SimState {
    Ready,
    Pin,
    Puk,
    /// Another code (`PH-SIM PIN`, `SIM PIN2`, ...), as the modem names it.
    Other(String),
}

pub fn parse_cpin(lines: &[ReplyLine]) -> Option<SimState> {
    let line = lines.iter().find(|l| l.text.starts_with("+CPIN:"))?;
    let code = fields(&line.text).into_iter().next()?;
    Some(match code.as_str() {
        "READY" => SimState::Ready,
        "SIM PIN" => SimState::Pin,
        "SIM PUK" => SimState::Puk,
        _ => SimState::Other(code),
    })
}

/// What to do about the SIM's lock.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PinStep {
    Proceed,
    Enter,
    /// Leave the SIM alone, for this reason.
    Stop(String),
}

/// A PIN is entered at most once per SIM request, and never again once the SIM
/// refused it: each wrong try counts towards the PUK lock, which only the operator
/// can lift.
pub fn pin_step(state: &SimState, configured: bool, rejected: bool, entered: bool) -> PinStep {
    match state {
        SimState::Ready => PinStep::Proceed,
        SimState::Pin if rejected => PinStep::Stop(
            "the SIM refused the configured PIN; it is not tried again (that would lock the SIM to its PUK): correct modem.pin and restart lwgate".into(),
        ),
        SimState::Pin if entered => PinStep::Stop(
            "the SIM still asks for its PIN after the configured one was accepted".into(),
        ),
        SimState::Pin if configured => PinStep::Enter,
        SimState::Pin => {
            PinStep::Stop("the SIM asks for its PIN: set modem.pin or modem.pin_file".into())
        }
        SimState::Puk => PinStep::Stop(
            "the SIM is locked and asks for its PUK: unlock it with a phone; lwgate leaves it alone"
                .into(),
        ),
        SimState::Other(code) => PinStep::Stop(format!(
            "the SIM asks for {code}, which lwgate does not enter"
        )),
    }
}

/// `+CNUM: [<alpha>],<number>,<type>`: the first number.
pub fn parse_cnum(lines: &[ReplyLine]) -> Option<String> {
    lines
        .iter()
        .filter(|l| l.text.starts_with("+CNUM:"))
        .find_map(|l| fields(&l.text).get(1).filter(|n| !n.is_empty()).cloned())
}

/// `+COPS: <mode>[,<format>,<oper>[,<AcT>]]`: the operator's name.
pub fn parse_cops(lines: &[ReplyLine]) -> Option<String> {
    let l = lines.iter().find(|l| l.text.starts_with("+COPS:"))?;
    fields(&l.text).get(2).filter(|n| !n.is_empty()).cloned()
}

/// `+CSQ: <rssi>,<ber>`: dBm, when known.
pub fn parse_csq(lines: &[ReplyLine]) -> Option<i32> {
    let l = lines.iter().find(|l| l.text.starts_with("+CSQ:"))?;
    let rssi: i32 = number(&fields(&l.text), 0)?;
    (0..=31).contains(&rssi).then_some(-113 + 2 * rssi)
}

/// Network registration (27.007 7.2 `<stat>`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Registration {
    Home,
    Roaming,
    Searching,
    Denied,
    NotRegistered,
    Unknown,
}

impl std::fmt::Display for Registration {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Registration::Home => "registered (home network)",
            Registration::Roaming => "registered (roaming)",
            Registration::Searching => "searching",
            Registration::Denied => "registration denied",
            Registration::NotRegistered => "not registered",
            Registration::Unknown => "unknown",
        })
    }
}

/// `+CREG: <n>,<stat>[,...]` (the read form).
pub fn parse_creg(lines: &[ReplyLine]) -> Option<Registration> {
    let l = lines.iter().find(|l| l.text.starts_with("+CREG:"))?;
    let stat: u8 = number(&fields(&l.text), 1)?;
    Some(match stat {
        0 => Registration::NotRegistered,
        1 | 6 => Registration::Home,
        2 => Registration::Searching,
        3 => Registration::Denied,
        5 | 7 => Registration::Roaming,
        _ => Registration::Unknown,
    })
}

/// A command of the set-up, and whether the modem must accept it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    pub command: String,
    pub required: bool,
}

/// What follows the SIM check: PDU mode, phase 2+ (so that `+CMT` is ours to
/// acknowledge), one storage for reading, writing and receiving, and how new
/// messages are announced.
pub fn setup_steps(storage: &str, delivery: Delivery) -> Vec<Step> {
    let step = |c: String, required| Step {
        command: c,
        required,
    };
    let mt = match delivery {
        Delivery::Stored => 1,
        Delivery::Direct => 2,
    };
    vec![
        step("AT+CMGF=0".into(), true),
        step("AT+CSMS=1".into(), false),
        step(
            format!("AT+CPMS=\"{storage}\",\"{storage}\",\"{storage}\""),
            true,
        ),
        step(format!("AT+CNMI=2,{mt},0,0,0"), true),
    ]
}

#[cfg(test)]
#[path = "at_tests.rs"]
mod tests;
