//! Client-initiated bootstrap (LwM2M 1.0/1.1 TS 5.2.7) without I/O: Bootstrap-Request,
//! then the bootstrap server's Write, Delete, Discover, Read (1.1) and Finish on a
//! staged copy of the gateway's objects. Only a consistent configuration leaves at
//! Finish; until then, and on failure, the previous one stays in force.

use super::registration::Version;
use super::tree::{Tree, WriteMode};
use crate::coap::message::{self, codes};
use crate::coap::{Endpoint, Event, Incoming, TxParams};
use crate::codec::{self, link::Link, Format, LinkFormat};
use crate::model::{Path, Registry, Value};
use coap_lite::{MessageClass, Packet, RequestType};
use std::collections::BTreeSet;
use std::time::Instant;

#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// Finished with a consistent configuration: the new object instances.
    Done(Tree),
    Failed(String),
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum State {
    Requesting(u64),
    Serving,
    Over,
}

pub struct Bootstrapper {
    coap: Endpoint,
    reg: Registry,
    version: Version,
    staged: Tree,
    state: State,
    last_activity: Instant,
    /// How long the server may stay silent before Finish (EXCHANGE_LIFETIME by default).
    finish_timeout: std::time::Duration,
    outcome: Option<Outcome>,
    /// For a repeated Bootstrap-Request as 1.0 (without `pct`).
    endpoint: String,
}

fn is_bootstrap_account(t: &Tree, inst: u16) -> bool {
    matches!(t.get(0, inst, 1), Some(Value::Boolean(true)))
}

impl Bootstrapper {
    /// Sends the Bootstrap-Request at once. `current` is the configuration in force,
    /// which the server edits (its Delete "/" keeps the bootstrap-server account).
    pub fn start(
        now: Instant,
        tx: TxParams,
        seed: u64,
        endpoint: &str,
        version: Version,
        reg: Registry,
        current: Tree,
    ) -> Self {
        let mut b = Self::new(now, tx, seed, version, reg, current, State::Over);
        b.endpoint = endpoint.to_string();
        b.request(now);
        b
    }

    fn new(
        now: Instant,
        tx: TxParams,
        seed: u64,
        version: Version,
        reg: Registry,
        current: Tree,
        state: State,
    ) -> Self {
        let coap = Endpoint::new(tx, seed);
        let finish_timeout = coap.params().exchange_lifetime();
        Self {
            coap,
            reg,
            version,
            staged: current,
            state,
            last_activity: now,
            finish_timeout,
            outcome: None,
            endpoint: String::new(),
        }
    }

    fn request(&mut self, now: Instant) {
        let mut query = vec![format!("ep={}", self.endpoint)];
        if self.version == Version::V1_1 {
            query.push(format!("pct={}", Format::SenmlCbor.number()));
        }
        let h = self.coap.send_request(
            now,
            message::request(RequestType::Post, &["bs"], &query),
            true,
        );
        self.state = State::Requesting(h);
        self.last_activity = now;
        tracing::info!(
            "client-initiated bootstrap: Bootstrap-Request sent (LwM2M {})",
            self.version.as_str()
        );
    }

    /// Server-initiated bootstrap: the bootstrap server writes without being asked.
    pub fn server_initiated(
        now: Instant,
        tx: TxParams,
        seed: u64,
        version: Version,
        reg: Registry,
        current: Tree,
    ) -> Self {
        tracing::info!("server-initiated bootstrap");
        Self::new(now, tx, seed, version, reg, current, State::Serving)
    }

    /// Overrides how long the bootstrap server may stay silent before Finish.
    pub fn with_finish_timeout(mut self, t: std::time::Duration) -> Self {
        self.finish_timeout = t;
        self
    }

    pub fn outcome(&self) -> Option<&Outcome> {
        self.outcome.as_ref()
    }

    pub fn poll_transmit(&mut self) -> Option<Vec<u8>> {
        self.coap.poll_transmit()
    }

    /// The bootstrap server has EXCHANGE_LIFETIME after its last message to finish.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let idle = (self.state != State::Over).then(|| self.last_activity + self.finish_timeout);
        match (self.coap.poll_timeout(), idle) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    fn fail(&mut self, why: String) {
        tracing::warn!("bootstrap failed: {why}");
        self.state = State::Over;
        self.outcome = Some(Outcome::Failed(why));
    }

    pub fn handle_timeout(&mut self, now: Instant) {
        self.coap.handle_timeout(now);
        self.drain(now);
        if self.state != State::Over && now >= self.last_activity + self.finish_timeout {
            self.fail("no Bootstrap-Finish from the bootstrap server in time".into());
        }
    }

    pub fn handle_datagram(&mut self, now: Instant, bytes: &[u8]) {
        self.coap.handle_datagram(now, bytes);
        self.drain(now);
    }

    fn drain(&mut self, now: Instant) {
        while let Some(ev) = self.coap.poll_event() {
            match ev {
                Event::Response { handle, packet } if self.state == State::Requesting(handle) => {
                    let code = message::code_byte(&packet);
                    if codes::is_success(code) {
                        self.state = State::Serving;
                        self.last_activity = now;
                    } else if self.version == Version::V1_1
                        && matches!(code, codes::BAD_REQUEST | codes::PRECONDITION_FAILED)
                    {
                        // A 1.0 bootstrap server may refuse the 1.1 `pct` parameter:
                        // ask again as 1.0 (once: the version is 1.0 from here on).
                        tracing::info!(
                            "bootstrap server answered {} to a 1.1 Bootstrap-Request; asking as 1.0",
                            message::code_text(code)
                        );
                        self.version = Version::V1_0;
                        self.request(now);
                    } else {
                        self.fail(format!(
                            "bootstrap server answered {} to Bootstrap-Request",
                            message::code_text(code)
                        ));
                    }
                }
                Event::Failed { handle, .. } if self.state == State::Requesting(handle) => {
                    self.fail("no answer from the bootstrap server".into());
                }
                Event::Request(inc) => {
                    self.last_activity = now;
                    let resp = self.serve(&inc);
                    self.coap.respond(&inc, resp);
                }
                _ => {}
            }
        }
    }

    fn serve(&mut self, inc: &Incoming) -> Packet {
        let req = &inc.packet;
        let reply = |code: u8, what: &str| {
            let mut r = message::response(req, code);
            r.payload = what.as_bytes().to_vec();
            r
        };
        if self.state == State::Over {
            return reply(codes::SERVICE_UNAVAILABLE, "bootstrap is over");
        }
        let Some(segs) = message::uri_path(req) else {
            return reply(codes::BAD_REQUEST, "URI-Path is not UTF-8");
        };
        let MessageClass::Request(method) = req.header.code else {
            return reply(codes::METHOD_NOT_ALLOWED, "");
        };
        if method == RequestType::Post && segs == ["bs"] {
            return self.finish(req);
        }
        let path = match Path::from_segments(&segs) {
            Ok(p) if p.prefix.is_none() => p,
            _ => return reply(codes::BAD_REQUEST, "bad path"),
        };
        match method {
            RequestType::Put => self.write(req, &path),
            RequestType::Delete => self.delete(req, &path),
            RequestType::Get if message::accept(req) == Some(Format::Link.number()) => {
                self.discover(req, &path)
            }
            RequestType::Get => self.read(req, &path),
            _ => reply(codes::METHOD_NOT_ALLOWED, ""),
        }
    }

    fn write(&mut self, req: &Packet, path: &Path) -> Packet {
        let bad = |code: u8, msg: String| {
            let mut r = message::response(req, code);
            r.payload = msg.into_bytes();
            r
        };
        let Some(obj) = path.object() else {
            return bad(
                codes::METHOD_NOT_ALLOWED,
                "Bootstrap-Write needs an object".into(),
            );
        };
        if self.reg.get(obj).is_none() {
            return bad(codes::NOT_FOUND, format!("object {obj} is not supported"));
        }
        let cf = message::content_format(req).unwrap_or(Format::Text.number());
        let Some(format) = Format::from_number(cf) else {
            return bad(
                codes::UNSUPPORTED_CONTENT_FORMAT,
                format!("content-format {cf}"),
            );
        };
        let reg = &self.reg;
        let types = |p: &Path| super::dm::type_of(reg, p);
        let records = match codec::decode(format, path, &req.payload, &types) {
            Ok(r) => r,
            Err(e) => return bad(codes::BAD_REQUEST, e.to_string()),
        };
        // Writes ignore access rights and create the instances they name (5.2.7.4).
        let mut staged = self.staged.clone();
        let instances: BTreeSet<u16> = records.iter().filter_map(|(p, _)| p.instance()).collect();
        for inst in instances {
            let recs: Vec<_> = records
                .iter()
                .filter(|(p, _)| p.instance() == Some(inst))
                .cloned()
                .collect();
            staged
                .objects
                .entry(obj)
                .or_default()
                .entry(inst)
                .or_default();
            if let Err(e) = staged.write(
                &self.reg,
                &Path::new(&[obj, inst]),
                &recs,
                WriteMode::Provision,
            ) {
                return bad(e.code(), e.to_string());
            }
        }
        self.staged = staged;
        message::response(req, codes::CHANGED)
    }

    fn delete(&mut self, req: &Packet, path: &Path) -> Packet {
        let keep =
            |t: &Tree, obj: u16, inst: u16| obj == 3 || (obj == 0 && is_bootstrap_account(t, inst));
        let targets: Vec<(u16, u16)> = match (path.object(), path.instance()) {
            (None, _) => self
                .staged
                .objects
                .iter()
                .flat_map(|(o, m)| m.keys().map(move |i| (*o, *i)))
                .collect(),
            (Some(o), None) => self
                .staged
                .instance_ids(o)
                .into_iter()
                .map(|i| (o, i))
                .collect(),
            (Some(o), Some(i)) => {
                if path.len() > 2 {
                    return message::response(req, codes::BAD_REQUEST);
                }
                vec![(o, i)]
            }
        };
        for (o, i) in targets {
            if !keep(&self.staged, o, i) {
                let _ = self.staged.delete_instance(o, i);
            }
        }
        message::response(req, codes::DELETED)
    }

    fn discover(&mut self, req: &Packet, path: &Path) -> Packet {
        let mut lf = LinkFormat::default();
        lf.push(Link::new("/").attr("lwm2m", self.version.as_str()));
        for (obj, insts) in &self.staged.objects {
            if path.object().is_some_and(|o| o != *obj) {
                continue;
            }
            if insts.is_empty() {
                lf.push(Link::new(format!("/{obj}")));
            }
            for i in insts.keys() {
                let mut l = Link::new(format!("/{obj}/{i}"));
                let ssid = match obj {
                    0 if !is_bootstrap_account(&self.staged, *i) => self.staged.get_i64(0, *i, 10),
                    1 => self.staged.get_i64(1, *i, 0),
                    _ => None,
                };
                if let Some(s) = ssid {
                    l = l.attr("ssid", s.to_string());
                }
                if *obj == 0 && self.version == Version::V1_1 {
                    if let Some(Value::String(u)) = self.staged.get(0, *i, 0) {
                        l = l.attr("uri", format!("\"{u}\""));
                    }
                }
                lf.push(l);
            }
        }
        let mut r = message::response(req, codes::CONTENT);
        message::set_content_format(&mut r, Format::Link.number());
        r.payload = lf.render().into_bytes();
        r
    }

    /// Bootstrap-Read (1.1): the Server and Access Control objects only.
    fn read(&mut self, req: &Packet, path: &Path) -> Packet {
        if !matches!(path.object(), Some(1 | 2)) || self.version == Version::V1_0 {
            return message::response(req, codes::METHOD_NOT_ALLOWED);
        }
        let records = match self.staged.read(&self.reg, path, true) {
            Ok(r) => r,
            Err(e) => return message::response(req, e.code()),
        };
        let format = message::accept(req)
            .and_then(Format::from_number)
            .unwrap_or(Format::SenmlCbor);
        match codec::encode(format, path, &records) {
            Ok(body) => {
                let mut r = message::response(req, codes::CONTENT);
                message::set_content_format(&mut r, format.number());
                r.payload = body;
                r
            }
            Err(_) => message::response(req, codes::NOT_ACCEPTABLE),
        }
    }

    /// Bootstrap-Finish: the consistency check (every Server instance has its Security
    /// instance with a usable URI, and there is at least one), then the result.
    fn finish(&mut self, req: &Packet) -> Packet {
        match check(&self.staged) {
            Ok(n) => {
                tracing::info!("bootstrap finished: {n} server account(s)");
                self.state = State::Over;
                self.outcome = Some(Outcome::Done(self.staged.clone()));
                message::response(req, codes::CHANGED)
            }
            Err(why) => {
                tracing::warn!("Bootstrap-Finish refused, configuration kept: {why}");
                let mut r = message::response(req, codes::NOT_ACCEPTABLE);
                r.payload = why.into_bytes();
                r
            }
        }
    }
}

/// The number of server accounts if the configuration can be used.
pub fn check(t: &Tree) -> Result<usize, String> {
    let servers = t.instance_ids(1);
    if servers.is_empty() {
        return Err("no LwM2M Server instance (/1)".into());
    }
    for inst in &servers {
        let ssid = t
            .get_i64(1, *inst, 0)
            .ok_or(format!("/1/{inst} has no Short Server ID"))?;
        let sec = t
            .instance_ids(0)
            .into_iter()
            .find(|i| !is_bootstrap_account(t, *i) && t.get_i64(0, *i, 10) == Some(ssid))
            .ok_or(format!("no Security instance for Short Server ID {ssid}"))?;
        let uri = match t.get(0, sec, 0) {
            Some(Value::String(u)) => u.clone(),
            _ => return Err(format!("/0/{sec} has no server URI")),
        };
        crate::config::parse_uri(&uri).map_err(|e| format!("/0/{sec}: {e}"))?;
        if let Some(inst) = t.instance(0, sec) {
            super::security_mode::check(inst, sec, false)?;
        }
        if t.get_i64(1, *inst, 1).is_none_or(|l| l <= 0) {
            return Err(format!("/1/{inst} has no positive lifetime"));
        }
    }
    Ok(servers.len())
}

#[cfg(test)]
mod tests;
