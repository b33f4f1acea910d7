//! Requests from a server: Block1 reassembly, dispatch to the data model, the
//! response (Block2 when large) and the side effects of what was done.

use super::*;

impl Client {
    pub(super) fn on_request(&mut self, now: Instant, idx: usize, inc: Incoming) {
        let resp = self.process(now, idx, &inc);
        let ops = std::mem::take(&mut self.deferring);
        if ops.is_empty() {
            self.sessions[idx].coap.respond(&inc, resp);
        } else {
            // The answer is the end devices': the request waits (a retransmission
            // of it meanwhile is a duplicate the endpoint does not answer twice).
            self.defer(now, idx, inc, ops);
        }
    }

    fn defer(&mut self, now: Instant, idx: usize, inc: Incoming, ops: Vec<DeviceOp>) {
        let request = self.next_ticket;
        let mut waiting = HashMap::new();
        for op in ops {
            let ticket = self.next_ticket;
            self.next_ticket += 1;
            self.tickets.insert(ticket, request);
            waiting.insert(ticket, op.clone());
            self.actions.push_back(Action::Device { ticket, op });
        }
        self.deferred.insert(
            request,
            Deferred {
                ssid: self.sessions[idx].ssid,
                inc,
                waiting,
                failed: None,
                expires: now + DEVICE_ANSWER,
            },
        );
    }

    /// An end device's answer to a deferred write or execute: a write's values go
    /// into the device's tree (observers see them); the server gets its response
    /// once every device the request named has answered.
    pub fn device_done(&mut self, now: Instant, ticket: u64, result: Result<(), OpError>) {
        self.now = now;
        let Some(request) = self.tickets.remove(&ticket) else {
            return; // expired meanwhile, and answered then
        };
        let Some(d) = self.deferred.get_mut(&request) else {
            return;
        };
        let op = d.waiting.remove(&ticket);
        match result {
            Ok(()) => {
                if let Some(DeviceOp::Write {
                    prefix,
                    path,
                    records,
                }) = &op
                {
                    if let Ok(tree) = self.trees.get_mut(Some(prefix)) {
                        if let Err(e) = tree.write(&self.reg, path, records, WriteMode::Update) {
                            tracing::warn!(%prefix, %path, "written to the device but not to its tree: {e}");
                        }
                    }
                }
            }
            Err(e) => {
                if d.failed.is_none() {
                    d.failed = Some(e);
                }
            }
        }
        if d.waiting.is_empty() {
            self.answer_deferred(request);
        }
        self.check_observations(now);
    }

    fn answer_deferred(&mut self, request: u64) {
        let Some(d) = self.deferred.remove(&request) else {
            return;
        };
        for t in d.waiting.keys() {
            self.tickets.remove(t);
        }
        let Some(idx) = self.sessions.iter().position(|s| s.ssid == d.ssid) else {
            return;
        };
        let resp = match &d.failed {
            None => message::response(&d.inc.packet, codes::CHANGED),
            Some(e) => error_packet(&d.inc.packet, e),
        };
        self.sessions[idx].coap.respond(&d.inc, resp);
    }

    /// Deferred requests whose devices never answered get 5.03 rather than nothing
    /// (what the devices that did answer have taken stays taken).
    pub(super) fn expire_deferred(&mut self, now: Instant) {
        let late: Vec<u64> = self
            .deferred
            .iter()
            .filter(|(_, d)| d.expires <= now)
            .map(|(t, _)| *t)
            .collect();
        for request in late {
            if let Some(d) = self.deferred.get_mut(&request) {
                if d.failed.is_none() {
                    d.failed = Some(OpError::Unavailable(format!(
                        "the end device did not answer within {} s",
                        DEVICE_ANSWER.as_secs()
                    )));
                }
            }
            self.answer_deferred(request);
        }
    }

    pub(super) fn process(&mut self, now: Instant, idx: usize, inc: &Incoming) -> Packet {
        let req = &inc.packet;
        if let Some(opt) = message::unknown_critical_option(req) {
            return error_packet(req, &OpError::BadOption(opt));
        }
        if let Some(r) = self.firmware_request(now, idx, req) {
            return r;
        }
        if let Some(r) = self.software_request(now, idx, req) {
            return r;
        }
        let key = request::cache_key(req);
        // Block1: gather the body first.
        let mut body = req.payload.clone();
        let block1 = match message::block(req, CoapOption::Block1) {
            Some(None) => return error_packet(req, &OpError::BadOption(27)),
            Some(Some(b)) => Some(b),
            None => None,
        };
        if let Some(b) = block1 {
            let s = &mut self.sessions[idx];
            s.block1.retain(|_, r| r.expires > now);
            let rx = s.block1.entry(key.clone()).or_insert(Block1Rx {
                body: Vec::new(),
                expires: now,
            });
            if b.num == 0 {
                rx.body.clear();
            }
            if b.offset() != rx.body.len() {
                s.block1.remove(&key);
                return error_packet(req, &OpError::Incomplete);
            }
            if rx.body.len() + req.payload.len() > MAX_BLOCK1_BODY {
                s.block1.remove(&key);
                return error_packet(req, &OpError::TooLarge);
            }
            rx.body.extend_from_slice(&req.payload);
            rx.expires = now + self.cfg.tx.exchange_lifetime();
            if b.more {
                let mut r = message::response(req, codes::CONTINUE);
                message::set_block(&mut r, CoapOption::Block1, b);
                return r;
            }
            body = s.block1.remove(&key).map(|r| r.body).unwrap_or_default();
        }
        // Block2 follow-up: serve the cached body.
        let block2 = match message::block(req, CoapOption::Block2) {
            Some(None) => return error_packet(req, &OpError::BadOption(23)),
            other => other.flatten(),
        };
        if let Some(b) = block2.filter(|b| b.num > 0) {
            let s = &mut self.sessions[idx];
            s.block2.retain(|_, (t, _, _)| *t > now);
            if let Some((_, cached, format)) = s.block2.get(&key) {
                return match block::slice(cached, b) {
                    Some((chunk, more)) => {
                        let mut r = message::response(req, codes::CONTENT);
                        message::set_content_format(&mut r, format.number());
                        message::set_block(&mut r, CoapOption::Block2, BlockOpt { more, ..b });
                        r.payload = chunk.to_vec();
                        r
                    }
                    None => error_packet(req, &OpError::BadOption(23)),
                };
            }
        }

        let op = match request::classify(req, body, &self.reg) {
            Ok(op) => op,
            Err(e) => return error_packet(req, &e),
        };
        let observe_flag = message::observe(req);
        let ssid = self.sessions[idx].ssid;
        let version = self.sessions[idx].version;
        let servers = self.sessions.len();
        let default_format = self.format_for(version);
        let observe_target = match (&op, observe_flag) {
            (Op::Read { path, accept }, Some(0)) => Some((path.clone(), *accept, Vec::new())),
            // Observe-Composite: the observed paths are the FETCH body.
            (
                Op::ReadComposite {
                    format: Some(f),
                    accept,
                    payload,
                },
                Some(0),
            ) => {
                let paths = Format::from_number(*f)
                    .and_then(|f| crate::codec::decode_paths(f, payload).ok())
                    .unwrap_or_default();
                Some((Path::root(), *accept, paths))
            }
            _ => None,
        };
        if let (Op::ReadComposite { .. }, Some(1)) = (&op, observe_flag) {
            let token = req.get_token().to_vec();
            self.cancel_observations(idx, |o| o.token == token);
        }
        if let (Op::Read { path, .. }, Some(1)) = (&op, observe_flag) {
            let token = req.get_token().to_vec();
            let path = path.clone();
            self.cancel_observations(idx, |o| o.token == token || o.path == path);
        }
        let attr_target = match &op {
            Op::WriteAttributes { path, .. } => Some(path.clone()),
            _ => None,
        };
        let mut dm = Dm {
            reg: &self.reg,
            trees: &mut self.trees,
            attrs: &mut self.attrs,
            servers,
            ssid,
            default_format,
        };
        let mut reply = dm.handle(op);
        self.attrs_generation += 1;
        if !reply.devices.is_empty() {
            // Answered later, by `device_done` (see `on_request`); what the request
            // did to the gateway's own objects takes effect now.
            self.deferring = std::mem::take(&mut reply.devices);
            for e in std::mem::take(&mut reply.effects) {
                self.apply_effect(now, idx, e);
            }
            return message::response(req, codes::CHANGED);
        }
        if let Some(path) = attr_target.filter(|_| codes::is_success(reply.code)) {
            self.persist
                .push_back(match self.attrs.get(&(ssid, path.clone())) {
                    Some(a) => Persist::Attributes {
                        ssid,
                        path,
                        attrs: *a,
                    },
                    None => Persist::ForgetAttributes { ssid, path },
                });
        }
        let effects = reply.effects.clone();
        let mut resp = self.reply_packet(idx, req, &key, reply, block2, now);
        if let Some((path, accept, composite)) = observe_target {
            if codes::is_success(message::code_byte(&resp))
                && message::block(&resp, CoapOption::Block2).is_none()
            {
                let token = req.get_token().to_vec();
                let values = self.read_paths(&path, &composite).unwrap_or_default();
                self.observations
                    .retain(|o| !(o.ssid == ssid && o.token == token));
                let format = message::content_format(&resp)
                    .and_then(Format::from_number)
                    .unwrap_or(Format::Text);
                let seq = 0;
                message::set_uint(&mut resp, CoapOption::Observe, seq);
                tracing::debug!(ssid, path = %path, "observation registered");
                self.persist
                    .push_back(Persist::Observation(StoredObservation {
                        ssid,
                        token: token.clone(),
                        path: path.clone(),
                        composite: composite.clone(),
                        format: format.number(),
                        accept,
                        seq,
                    }));
                self.observations.push(Observation {
                    ssid,
                    token,
                    path,
                    composite,
                    accept,
                    format,
                    seq,
                    last_sent_at: now,
                    last_values: values.clone(),
                    last_con_at: now,
                    handle: None,
                    sampled_at: now,
                    sample: values,
                    attrs_cache: Default::default(),
                    held: false,
                    value_time: None,
                });
            }
        }
        for e in effects {
            self.apply_effect(now, idx, e);
        }
        resp
    }

    pub(super) fn reply_packet(
        &mut self,
        idx: usize,
        req: &Packet,
        key: &str,
        reply: Reply,
        block2: Option<BlockOpt>,
        now: Instant,
    ) -> Packet {
        let mut r = message::response(req, reply.code);
        if let Some(f) = reply.format {
            message::set_content_format(&mut r, f.number());
        }
        for seg in &reply.location {
            r.add_option(CoapOption::LocationPath, seg.as_bytes().to_vec());
        }
        if let Some(Some(b1)) = message::block(req, CoapOption::Block1) {
            message::set_block(&mut r, CoapOption::Block1, b1);
        }
        let szx = block2
            .map(|b| b.szx)
            .unwrap_or_else(|| BlockOpt::szx_for(self.cfg.block_size));
        let size = 1usize << (szx + 4);
        if reply.payload.len() > size && codes::is_success(reply.code) {
            // The block asked for (a follow-up whose cached body expired is served
            // from the freshly built one), or the first.
            let first = BlockOpt {
                num: block2.map(|b| b.num).unwrap_or(0),
                more: true,
                szx,
            };
            let Some((chunk, more)) = block::slice(&reply.payload, first) else {
                return error_packet(req, &OpError::BadOption(23));
            };
            r.payload = chunk.to_vec();
            message::set_block(&mut r, CoapOption::Block2, BlockOpt { more, ..first });
            let format = reply.format.unwrap_or(Format::Opaque);
            self.sessions[idx]
                .block2
                .insert(key.to_string(), (now + BLOCK2_CACHE, reply.payload, format));
        } else {
            r.payload = reply.payload;
        }
        r
    }

    pub(super) fn apply_effect(&mut self, now: Instant, idx: usize, e: Effect) {
        match e {
            Effect::Execute { path, args } => self.execute(now, idx, path, args),
            Effect::Written(path) => {
                self.persist_instance(&path);
                if path.prefix.is_none() && path.object() == Some(1) {
                    // Lifetime or binding may have changed: tell that server.
                    if let Some(i) = self
                        .sessions
                        .iter()
                        .position(|s| Some(s.server_inst) == path.instance())
                    {
                        let changed = self.sessions[i]
                            .sent
                            .as_ref()
                            .is_some_and(|sent| !self.params(i).update_query(sent).is_empty());
                        if changed {
                            self.request_update(now, i);
                        }
                    }
                }
                self.firmware_written(now, &path);
                self.software_written(now, &path);
                self.actions.push_back(Action::Written(path));
                self.check_observations(now);
            }
            Effect::Created(path) | Effect::Deleted(path) => {
                self.persist_instance(&path);
                self.software_instances_changed(now, &path);
                self.objects_changed(now);
                self.check_observations(now);
            }
        }
    }

    pub(super) fn execute(
        &mut self,
        now: Instant,
        idx: usize,
        path: Path,
        args: Vec<(u8, Option<String>)>,
    ) {
        if path.prefix.is_some() {
            self.actions.push_back(Action::Execute { path, args });
            return;
        }
        match (path.object(), path.resource()) {
            (Some(1), Some(8)) => {
                let target = self
                    .sessions
                    .iter()
                    .position(|s| Some(s.server_inst) == path.instance())
                    .unwrap_or(idx);
                match self.sessions[target].state {
                    RegState::Registered | RegState::Updating => {
                        self.sessions[target].update_wanted = true;
                        if self.sessions[target].pending.is_none() {
                            self.update(now, target);
                        }
                    }
                    _ => self.register(now, target),
                }
            }
            (Some(1), Some(4)) => {
                if let Some(target) = self
                    .sessions
                    .iter()
                    .position(|s| Some(s.server_inst) == path.instance())
                {
                    if let Some((h, _)) = self.sessions[target].pending.take() {
                        self.sessions[target].coap.cancel(h);
                    }
                    self.deregister(now, target, true);
                }
            }
            (Some(3), Some(4)) => self.actions.push_back(Action::Reboot),
            (Some(3), Some(5)) => self.actions.push_back(Action::FactoryReset),
            (Some(3), Some(12)) => {
                self.trees
                    .gateway
                    .set_multi(3, 0, 11, [(0, Value::Integer(0))].into());
                self.check_observations(now);
            }
            _ => self.actions.push_back(Action::Execute { path, args }),
        }
    }
}

pub(super) fn error_packet(req: &Packet, e: &OpError) -> Packet {
    let mut r = message::response(req, e.code());
    r.payload = e.to_string().into_bytes();
    r
}
