//! Registration lifecycle per server: Register, Update, De-register, back-off,
//! and what the answers to them mean.

use super::*;

impl Client {
    pub(super) fn register(&mut self, now: Instant, idx: usize) {
        self.reg_activity.push(self.sessions[idx].ssid);
        self.sessions[idx].asleep = false;
        // A new registration is a new session for the server: its observations, and
        // the notifications stored for them, are gone.
        self.forget_observations(idx, "the server registration was renewed");
        let params = self.params(idx);
        let objects = self.objects(params.version);
        let mut p = message::request(RequestType::Post, &["rd"], &params.register_query());
        message::set_content_format(&mut p, Format::Link.number());
        p.payload = objects.clone().into_bytes();
        self.sessions[idx].coap.cancel_all();
        self.send_registration(now, idx, p, Pending::Register, params, objects);
        let s = &self.sessions[idx];
        tracing::info!(ssid = s.ssid, server = %s.uri, "registering (LwM2M {})", s.version.as_str());
    }

    /// Sends a Register or Update and records what it said, so the next Update
    /// carries only what changed since.
    fn send_registration(
        &mut self,
        now: Instant,
        idx: usize,
        p: Packet,
        what: Pending,
        params: RegParams,
        objects: String,
    ) {
        let s = &mut self.sessions[idx];
        let h = s.coap.send_request(now, p, true);
        s.state = match what {
            Pending::Register => RegState::Registering,
            _ => RegState::Updating,
        };
        s.pending = Some((h, what));
        s.sent = Some(params);
        s.sent_objects = objects;
        s.update_wanted = false;
    }

    pub(super) fn request_update(&mut self, now: Instant, idx: usize) {
        let s = &mut self.sessions[idx];
        match s.state {
            RegState::Registered if s.pending.is_none() => self.update(now, idx),
            RegState::Registered | RegState::Updating | RegState::Registering => {
                s.update_wanted = true
            }
            _ => {}
        }
    }

    pub(super) fn update(&mut self, now: Instant, idx: usize) {
        self.reg_activity.push(self.sessions[idx].ssid);
        self.sessions[idx].asleep = false;
        let params = self.params(idx);
        let objects = self.objects(params.version);
        let s = &mut self.sessions[idx];
        let query = match &s.sent {
            Some(before) => params.update_query(before),
            None => params.register_query(),
        };
        let path: Vec<&str> = s.location.iter().map(String::as_str).collect();
        let mut p = message::request(RequestType::Post, &path, &query);
        if objects != s.sent_objects {
            message::set_content_format(&mut p, Format::Link.number());
            p.payload = objects.clone().into_bytes();
        }
        self.send_registration(now, idx, p, Pending::Update, params, objects);
        tracing::debug!(ssid = self.sessions[idx].ssid, "registration update");
    }

    pub(super) fn deregister(&mut self, now: Instant, idx: usize, then_disable: bool) {
        let s = &mut self.sessions[idx];
        let path: Vec<&str> = s.location.iter().map(String::as_str).collect();
        let p = message::request(RequestType::Delete, &path, &[]);
        let h = s.coap.send_request(now, p, true);
        s.pending = Some((h, Pending::Deregister { then_disable }));
        s.state = RegState::Deregistering;
        tracing::info!(ssid = s.ssid, server = %s.uri, location = %format!("/{}", s.location.join("/")), "de-registering");
    }

    pub(super) fn schedule_retry(&mut self, now: Instant, idx: usize, error: String) {
        let policy = RetryPolicy::from_server(&self.trees.gateway, self.sessions[idx].server_inst);
        let s = &mut self.sessions[idx];
        s.failures += 1;
        s.update_at = None;
        // The location is kept: while the registration has not expired, the next
        // attempt is an Update and the observations carry on.
        match policy.delay(s.failures) {
            Some(d) => {
                tracing::warn!(ssid = s.ssid, server = %s.uri, "registration failed: {error}; retrying in {}s", d.as_secs());
                s.state = RegState::Waiting { at: now + d };
            }
            None => {
                tracing::error!(ssid = s.ssid, server = %s.uri, "registration failed: {error}; giving up after {} attempts", s.failures);
                s.state = RegState::Stopped;
            }
        }
        s.last_error = Some(error);
    }

    pub(super) fn registered(&mut self, now: Instant, idx: usize) {
        let lifetime =
            Duration::from_secs(u64::from(self.lifetime(self.sessions[idx].server_inst)));
        let wait = self.sessions[idx].coap.params().max_transmit_wait();
        let margin = registration::update_margin(lifetime, wait);
        let wall = self.wall;
        let s = &mut self.sessions[idx];
        s.state = RegState::Registered;
        s.failures = 0;
        s.last_error = None;
        s.update_at = Some(now + lifetime - margin);
        s.expires = Some(wall + lifetime.as_secs_f64());
        if let Some(sent) = &s.sent {
            self.persist
                .push_back(Persist::Registration(StoredRegistration {
                    ssid: s.ssid,
                    location: s.location.clone(),
                    version: s.version,
                    lifetime: sent.lifetime,
                    binding: sent.binding.clone(),
                    objects: s.sent_objects.clone(),
                    expires: (wall + lifetime.as_secs_f64()) as i64,
                }));
        }
        if s.update_wanted {
            self.update(now, idx);
        } else {
            self.replay_next(now, idx);
        }
    }

    pub(super) fn on_response(&mut self, now: Instant, idx: usize, handle: Handle, packet: Packet) {
        if self.send_answered(now, idx, handle, message::code_byte(&packet)) {
            return;
        }
        let s = &mut self.sessions[idx];
        let Some((h, what)) = s.pending else {
            return;
        };
        if h != handle {
            return;
        }
        s.pending = None;
        let code = message::code_byte(&packet);
        match what {
            Pending::Register => {
                if code == codes::CREATED {
                    s.location = message::location_path(&packet).unwrap_or_default();
                    tracing::info!(ssid = s.ssid, location = %format!("/{}", s.location.join("/")), "registered");
                    if self.shutting_down {
                        // Accepted while we were stopping: the server must not be
                        // left with a registration nobody will update.
                        self.deregister(now, idx, false);
                    } else {
                        self.registered(now, idx);
                    }
                } else if self.shutting_down {
                    s.state = RegState::Stopped;
                } else if code == codes::PRECONDITION_FAILED
                    && s.version == Version::V1_1
                    && !s.downgraded
                {
                    // A 1.0 server rejects lwm2m=1.1: speak 1.0 to it.
                    tracing::info!(
                        ssid = s.ssid,
                        "server refused LwM2M 1.1 (4.12); registering as 1.0"
                    );
                    s.version = Version::V1_0;
                    s.downgraded = true;
                    self.register(now, idx);
                } else {
                    self.schedule_retry(
                        now,
                        idx,
                        format!("server answered {} to Register", message::code_text(code)),
                    );
                }
            }
            Pending::Update => {
                if codes::is_success(code) {
                    self.registered(now, idx);
                } else if code == codes::NOT_FOUND {
                    tracing::info!(
                        ssid = s.ssid,
                        "server forgot the registration (4.04 to Update); registering again"
                    );
                    self.register(now, idx);
                } else {
                    // An error answer (not silence) means the registration is not
                    // usable: register anew, but after the back-off, so a server
                    // failing every Update is not hammered.
                    let e = format!("server answered {} to Update", message::code_text(code));
                    s.location.clear();
                    s.expires = None;
                    self.schedule_retry(now, idx, e);
                }
            }
            Pending::Deregister { then_disable } => self.after_deregister(now, idx, then_disable),
        }
    }

    /// The De-register went unanswered: said, since the server keeps the registration
    /// (and may keep sending requests) until its lifetime ends.
    fn deregister_unanswered(&self, idx: usize, why: &str) {
        let s = &self.sessions[idx];
        tracing::warn!(
            ssid = s.ssid,
            server = %s.uri,
            "De-register of /{} not answered ({why}); the server keeps the registration until its lifetime ({} s) ends",
            s.location.join("/"),
            self.lifetime(s.server_inst)
        );
    }

    pub(super) fn after_deregister(&mut self, now: Instant, idx: usize, then_disable: bool) {
        let timeout = self
            .trees
            .gateway
            .get_i64(1, self.sessions[idx].server_inst, 5)
            .and_then(|v| u64::try_from(v).ok())
            .map(Duration::from_secs)
            .unwrap_or(DEFAULT_DISABLE);
        if then_disable {
            self.forget_observations(idx, "the server was disabled");
        }
        let s = &mut self.sessions[idx];
        s.location.clear();
        s.update_at = None;
        s.expires = None;
        self.persist
            .push_back(Persist::ForgetRegistration { ssid: s.ssid });
        if then_disable && !self.shutting_down {
            tracing::info!(ssid = s.ssid, "disabled for {}s", timeout.as_secs());
            s.state = RegState::Disabled {
                until: now + timeout,
            };
        } else {
            s.state = RegState::Stopped;
        }
    }

    pub(super) fn on_failure(&mut self, now: Instant, idx: usize, handle: Handle, reason: Failure) {
        let s = &mut self.sessions[idx];
        if let Some((h, what)) = s.pending {
            if h == handle {
                s.pending = None;
                let why = match (&reason, &s.net_hint) {
                    (Failure::Timeout, Some(hint)) => format!("no answer from the server: {hint}"),
                    (Failure::Timeout, None) => "no answer from the server".to_string(),
                    (Failure::Reset, _) => "the server reset the exchange".to_string(),
                    (Failure::Invalid(e), _) => e.clone(),
                };
                self.exchange_failed(now, idx, what, why);
                return;
            }
        }
        self.notification_failed(now, idx, handle, reason);
    }

    /// The server's address did not resolve (or no socket could be opened): what
    /// is pending fails now, with that reason, instead of timing out as "no answer"
    /// after 93 s; the next attempt (and the next look-up) follows the back-off.
    pub fn unreachable(&mut self, now: Instant, ssid: u16, why: &str) {
        self.now = now;
        let Some(idx) = self.sessions.iter().position(|s| s.ssid == ssid) else {
            return;
        };
        let s = &mut self.sessions[idx];
        if let Some((h, what)) = s.pending.take() {
            s.coap.cancel(h);
            self.exchange_failed(now, idx, what, why.to_string());
        }
    }

    /// A DTLS handshake with server `ssid` ended with fatal alert `code`: kept in
    /// its Server instance's TLS-DTLS Alert Code (/1/x/11), where a server that
    /// reaches us later (or an operator reading the object) sees why it failed.
    pub fn tls_alert(&mut self, now: Instant, ssid: u16, code: u8) {
        let tree = &mut self.trees.gateway;
        let inst = tree
            .instance_ids(1)
            .into_iter()
            .find(|&i| tree.get_i64(1, i, 0) == Some(i64::from(ssid)));
        if let Some(i) = inst {
            tree.set(1, i, 11, Value::Integer(i64::from(code)));
            self.values_changed(now);
        }
    }

    /// The server's host said nothing listens on its port. Retransmissions go on
    /// (a server may be restarting); if they stay unanswered, this is the reason.
    /// While stopping there is no time to wait for a restart: what is pending fails.
    pub fn refused(&mut self, now: Instant, ssid: u16, why: &str) {
        if self.shutting_down {
            self.unreachable(now, ssid, why);
        } else if let Some(s) = self.sessions.iter_mut().find(|s| s.ssid == ssid) {
            s.net_hint = Some(why.to_string());
        }
    }

    fn exchange_failed(&mut self, now: Instant, idx: usize, what: Pending, why: String) {
        match what {
            Pending::Register if self.shutting_down => {
                self.sessions[idx].state = RegState::Stopped;
            }
            Pending::Register => self.schedule_retry(now, idx, why),
            Pending::Update => {
                // The registration may be gone: start over (with back-off).
                self.schedule_retry(now, idx, format!("Update failed: {why}"))
            }
            Pending::Deregister { then_disable } => {
                self.deregister_unanswered(idx, &why);
                self.after_deregister(now, idx, then_disable)
            }
        }
    }
}
