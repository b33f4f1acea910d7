//! Observations in motion: when to notify, sending live or storing while the
//! server is unreachable (spec 5.5, /1/x/6), and replaying stored notifications
//! in order, as SenML packs with their times where the format allows.

use super::{Client, RegState, CON_EVERY};
use crate::coap::message::{self, codes};
use crate::coap::{Failure, Handle};
use crate::codec::{self, Format, Record};
use crate::lwm2m::error::OpError;
use crate::lwm2m::observe::{self, Observation};
use crate::lwm2m::persist::{Persist, QueuedNote, StoredObservation};
use crate::model::{Path, Value};
use coap_lite::{CoapOption, Packet};
use std::time::Instant;

/// Objects the gateway serves itself: their values carry the gateway's clock.
const GATEWAY_OWN: [u16; 8] = [0, 1, 2, 3, 4, 5, 9, 25];

/// A replayed SenML pack stays within one CoAP block.
const PACK_BYTES: usize = 1000;

impl Client {
    pub(super) fn read_for(&self, path: &Path) -> Option<Vec<Record>> {
        let tree = self.trees.readable(path).ok()?;
        tree.read(&self.reg, path, false).ok()
    }

    /// What an observation sees: its path, or all its composite paths.
    pub(super) fn read_paths(&self, path: &Path, composite: &[Path]) -> Option<Vec<Record>> {
        if composite.is_empty() {
            return self.read_for(path);
        }
        let mut out = Vec::new();
        for p in composite {
            out.extend(self.read_for(p).unwrap_or_default());
        }
        Some(out)
    }

    pub(super) fn effective_attrs(&self, o: &Observation) -> crate::lwm2m::attrs::Attributes {
        if let Some((generation, a)) = o.attrs_cache.get() {
            if generation == self.attrs_generation {
                return a;
            }
        }
        let a = self.lookup_attrs(o);
        o.attrs_cache.set(Some((self.attrs_generation, a)));
        a
    }

    fn lookup_attrs(&self, o: &Observation) -> crate::lwm2m::attrs::Attributes {
        let inst = self
            .sessions
            .iter()
            .find(|s| s.ssid == o.ssid)
            .map(|s| s.server_inst);
        let get = |r| {
            inst.and_then(|i| self.trees.gateway.get_i64(1, i, r))
                .and_then(|v| u32::try_from(v).ok())
        };
        observe::effective(&self.attrs, o.ssid, &o.path, get(2), get(3))
    }

    /// Notification Storing When Disabled or Offline (/1/x/6).
    fn storing(&self, idx: usize) -> bool {
        !matches!(
            self.trees.gateway.get(1, self.sessions[idx].server_inst, 6),
            Some(Value::Boolean(false))
        )
    }

    fn count_dropped(&mut self, idx: usize, n: u64) {
        let s = &mut self.sessions[idx];
        s.dropped += n;
        self.persist.push_back(Persist::Counters {
            ssid: s.ssid,
            dropped: s.dropped,
            last_delivery: s.last_delivery,
        });
    }

    fn delivered_now(&mut self, idx: usize) {
        let s = &mut self.sessions[idx];
        s.last_delivery = Some(self.wall as i64);
        self.persist.push_back(Persist::Counters {
            ssid: s.ssid,
            dropped: s.dropped,
            last_delivery: s.last_delivery,
        });
    }

    /// Removes observations matching `pred` for this server (cancel by the server).
    pub(super) fn cancel_observations(&mut self, idx: usize, pred: impl Fn(&Observation) -> bool) {
        let ssid = self.sessions[idx].ssid;
        let mut gone = Vec::new();
        self.observations.retain(|o| {
            let cancel = o.ssid == ssid && pred(o);
            if cancel {
                gone.push(o.token.clone());
            }
            !cancel
        });
        for token in gone {
            self.persist
                .push_back(Persist::ForgetObservation { ssid, token });
        }
    }

    /// The server's registration is gone: observations and what was stored for them go too.
    pub(super) fn forget_observations(&mut self, idx: usize, why: &str) {
        let ssid = self.sessions[idx].ssid;
        let had = self.observations.iter().any(|o| o.ssid == ssid);
        self.observations.retain(|o| o.ssid != ssid);
        if had {
            self.persist.push_back(Persist::ForgetObservations { ssid });
        }
        // What was stored stays: once registered again it goes out with Send (1.1),
        // since its observations are gone.
        self.store_in_flight(idx);
        let queued = self.sessions[idx].queue.len();
        if queued > 0 {
            tracing::info!(
                ssid,
                "{queued} stored notification(s) will be sent with Send: {why}"
            );
        }
    }

    /// Send is allowed: LwM2M 1.1 and not muted (/1/x/23).
    pub(super) fn may_send(&self, idx: usize) -> bool {
        let s = &self.sessions[idx];
        s.version == crate::lwm2m::Version::V1_1
            && !matches!(
                self.trees.gateway.get(1, s.server_inst, 23),
                Some(Value::Boolean(true))
            )
    }

    /// Send (1.1, POST /dp): the current values of `paths` as SenML CBOR with their time.
    pub fn send(&mut self, now: Instant, ssid: u16, paths: &[Path]) -> Result<(), String> {
        let Some(idx) = self.sessions.iter().position(|s| s.ssid == ssid) else {
            let known: Vec<String> = self.sessions.iter().map(|s| s.ssid.to_string()).collect();
            return Err(format!(
                "no server with Short Server ID {ssid} (servers: {})",
                if known.is_empty() {
                    "none".into()
                } else {
                    known.join(", ")
                }
            ));
        };
        let name = format!("server {ssid} ({})", self.sessions[idx].uri);
        if !self.may_send(idx) {
            return Err(match self.sessions[idx].version {
                crate::lwm2m::Version::V1_0 => {
                    format!("{name} speaks LwM2M 1.0, which has no Send")
                }
                crate::lwm2m::Version::V1_1 => {
                    format!("{name} muted Send (/1/x/23 Mute Send is true)")
                }
            });
        }
        // Read first: a wrong path is said before a sleeping server is woken for it.
        let mut records = Vec::new();
        for p in paths {
            let tree = self.trees.readable(p).map_err(|e| format!("{p}: {e}"))?;
            if p.object() == Some(0) {
                return Err(format!("{p}: the Security object is never sent"));
            }
            let read = tree.read(&self.reg, p, false).map_err(|e| match e {
                OpError::NotFound => {
                    format!("{p}: no such object, instance or resource on this gateway")
                }
                other => format!("{p}: cannot be read: {other}"),
            })?;
            records.extend(read);
        }
        // Queue mode: something to send is a reason to wake (Update first, then this).
        self.wake(now, idx);
        if !self.online(idx) {
            let st = &self.status(now)[idx];
            let why = st
                .last_error
                .as_deref()
                .map(|e| format!("; last error: {e}"))
                .unwrap_or_default();
            return Err(format!("{name} is not registered ({}{why})", st.state));
        }
        let times = vec![self.wall; records.len()];
        let body = codec::encode_absolute(Format::SenmlCbor, &records, Some(&times))
            .map_err(|e| e.to_string())?;
        let mut req = message::request(coap_lite::RequestType::Post, &["dp"], &[]);
        message::set_content_format(&mut req, Format::SenmlCbor.number());
        req.payload = body;
        self.sessions[idx].coap.send_request(now, req, true);
        Ok(())
    }

    fn enqueue(&mut self, idx: usize, note: QueuedNote) {
        let cap = self.cfg.queue_cap.max(1);
        let s = &mut self.sessions[idx];
        let mut evicted = Vec::new();
        while s.queue.len() >= cap {
            // Never evict what is in flight in a replay pack.
            let in_flight = s
                .replay
                .as_ref()
                .map(|(_, ids)| ids.clone())
                .unwrap_or_default();
            match s.queue.iter().position(|n| !in_flight.contains(&n.id)) {
                Some(i) => {
                    if let Some(n) = s.queue.remove(i) {
                        evicted.push(n.id);
                    }
                }
                None => break,
            }
        }
        self.persist.push_back(Persist::Enqueue(note.clone()));
        s.queue.push_back(note);
        if !evicted.is_empty() {
            let n = evicted.len() as u64;
            self.persist.push_back(Persist::Dequeue { ids: evicted });
            self.count_dropped(idx, n);
        }
    }

    fn online(&self, idx: usize) -> bool {
        if self.sessions[idx].asleep {
            return false;
        }
        matches!(
            self.sessions[idx].state,
            RegState::Registered | RegState::Updating
        )
    }

    pub(super) fn check_observations(&mut self, now: Instant) {
        self.check_observations_where(now, |_, _| true);
    }

    /// At a deadline only the observations whose pmin, pmax or epmax has come can
    /// have something new to say (a value change is `values_changed`'s to see):
    /// with a hundred observations, evaluating each at every deadline was the
    /// client's busiest work.
    ///
    /// They are evaluated as of the tick they were due at (the last one before
    /// `now`; every due observation's own deadline lies at or before it), so the
    /// notifications sent now count their next pmin and pmax from the grid and
    /// stay on it, instead of drifting a tick later each period.
    pub(super) fn check_due_observations(&mut self, now: Instant) {
        let due: Vec<bool> = self
            .observations
            .iter()
            .map(|o| self.observation_deadline(o).is_some_and(|t| t <= now))
            .collect();
        if !due.contains(&true) {
            return;
        }
        let at = self.tick(self.ticks(now)).max(self.epoch);
        self.check_observations_where(at, |n, _| due.get(n).copied().unwrap_or(false));
    }

    /// Evaluates the observations `wanted` picks: a device's new values concern
    /// only observations under its prefix (and composite ones, which may span it).
    pub(super) fn check_observations_where(
        &mut self,
        now: Instant,
        wanted: impl Fn(usize, &Observation) -> bool,
    ) {
        let mut gone = Vec::new();
        for n in 0..self.observations.len() {
            let o = &self.observations[n];
            if !wanted(n, o) {
                continue;
            }
            let Some(idx) = self.sessions.iter().position(|s| s.ssid == o.ssid) else {
                continue;
            };
            let a = self.effective_attrs(o);
            let current = if observe::sample_due(o, &a, now) {
                let Some(current) = self.read_paths(&o.path, &o.composite) else {
                    if self.instance_gone(&o.path) {
                        gone.push(n);
                    } else {
                        // A resource without a value for now (a device not answering):
                        // the observation stays, its periods restart, so the loop is
                        // not woken again at once.
                        let o = &mut self.observations[n];
                        o.sampled_at = now;
                        o.last_sent_at = now;
                    }
                    continue;
                };
                let o = &mut self.observations[n];
                o.sampled_at = now;
                // A device's time for a device's values only: a gateway-target
                // device fills objects the gateway does not serve itself.
                let devices = o.path.prefix.is_some()
                    || o.path.object().is_some_and(|ob| !GATEWAY_OWN.contains(&ob));
                if let Some(t) = self.sample_time.filter(|_| devices) {
                    o.value_time = Some(t);
                }
                if a.epmin.is_some() {
                    // Kept only where epmin may hold it for later looks.
                    o.sample = current.clone();
                }
                current
            } else {
                o.sample.clone()
            };
            let o = &self.observations[n];
            if !observe::should_notify(o, &a, now, &current) {
                let held = observe::held_back(o, &a, now, &current);
                self.observations[n].held = held;
                continue;
            }
            let (ssid, token, path, format) = (o.ssid, o.token.clone(), o.path.clone(), o.format);
            let composite = !o.composite.is_empty();
            let o = &mut self.observations[n];
            o.last_sent_at = now;
            o.held = false;
            o.last_values = current.clone();
            let id = self.next_note_id;
            self.next_note_id += 1;
            let values =
                codec::encode_absolute(Format::SenmlCbor, &current, None).unwrap_or_default();
            let time = match self.observations[n].value_time {
                Some(t) if !composite => t,
                _ => self.wall,
            };
            let note = QueuedNote {
                id,
                ssid,
                token,
                path: path.clone(),
                time,
                values,
            };
            let storing = self.storing(idx);
            // Live only when registered and nothing older waits: order is kept.
            if self.online(idx) && self.sessions[idx].queue.is_empty() {
                let ssid = self.sessions[idx].ssid;
                let want_con = self
                    .cfg
                    .confirmable_notifications
                    .get(&ssid)
                    .copied()
                    .unwrap_or(storing);
                let con = want_con
                    || now.saturating_duration_since(self.observations[n].last_con_at) >= CON_EVERY;
                let encoded = if composite {
                    let times = vec![self.wall; current.len()];
                    codec::encode_absolute(format, &current, Some(&times))
                } else {
                    codec::encode_at(format, &path, &current, time)
                };
                let body = match encoded {
                    Ok(b) => b,
                    Err(e) => {
                        tracing::warn!(%path, "cannot encode notification: {e}");
                        continue;
                    }
                };
                if con && storing {
                    // Written ahead: the datagram goes out only after this commits
                    // (the driver commits before it transmits), so a crash while it
                    // is unacknowledged cannot lose it. The ACK deletes it.
                    self.persist.push_back(Persist::Enqueue(note.clone()));
                }
                let h = self.send_notification(now, idx, n, body, con);
                if con {
                    self.observations[n].last_con_at = now;
                    self.sessions[idx].live.insert(h, note);
                } else {
                    self.delivered_now(idx);
                }
            } else if storing {
                self.enqueue(idx, note);
                // Queue mode: something to say wakes the client (Update, then replay).
                self.wake(now, idx);
            } else {
                self.count_dropped(idx, 1);
            }
        }
        for n in gone.into_iter().rev() {
            self.end_observation(now, n);
        }
    }

    /// Whether the object instance (or the end device) an observed path lies in
    /// no longer exists.
    fn instance_gone(&self, path: &Path) -> bool {
        let Ok(tree) = self.trees.get(path.prefix.as_deref()) else {
            return true;
        };
        match (path.object(), path.instance()) {
            (Some(obj), Some(inst)) => !tree
                .objects
                .get(&obj)
                .is_some_and(|insts| insts.contains_key(&inst)),
            _ => false,
        }
    }

    /// The instance under an observation is gone (deleted, its end device removed):
    /// a 4.04 ends the observation (RFC 7641 3.2, 4.2), rather than it lingering
    /// with deadlines that can never be met.
    fn end_observation(&mut self, now: Instant, n: usize) {
        let (ssid, token, path) = {
            let o = &self.observations[n];
            (o.ssid, o.token.clone(), o.path.clone())
        };
        tracing::info!(ssid, %path, "observed instance gone: ending the observation with 4.04");
        let Some(idx) = self.sessions.iter().position(|s| s.ssid == ssid) else {
            return;
        };
        if self.online(idx) {
            let mut p = Packet::new();
            p.header.code = message::code(codes::NOT_FOUND);
            p.set_token(token.clone());
            self.sessions[idx].coap.send_notification(now, p, false);
        }
        self.cancel_observations(idx, |o| o.token == token);
    }

    /// Sends one notification on observation `n` with the next sequence number.
    fn send_notification(
        &mut self,
        now: Instant,
        idx: usize,
        n: usize,
        body: Vec<u8>,
        con: bool,
    ) -> Handle {
        let o = &mut self.observations[n];
        o.seq = (o.seq + 1) & 0xFF_FFFF;
        let mut p = Packet::new();
        p.header.code = message::code(codes::CONTENT);
        p.set_token(o.token.clone());
        message::set_uint(&mut p, CoapOption::Observe, o.seq);
        message::set_content_format(&mut p, o.format.number());
        p.payload = body;
        let stored = StoredObservation {
            ssid: o.ssid,
            token: o.token.clone(),
            path: o.path.clone(),
            composite: o.composite.clone(),
            format: o.format.number(),
            accept: o.accept,
            seq: o.seq,
        };
        let h = self.sessions[idx].coap.send_notification(now, p, con);
        self.observations[n].handle = Some(h);
        // The sequence number survives restarts, so a resumed observation keeps
        // counting up (RFC 7641 4.4).
        self.persist.push_back(Persist::Observation(stored));
        h
    }

    pub(super) fn notification_delivered(&mut self, now: Instant, idx: usize, handle: Handle) {
        if let Some(note) = self.sessions[idx].live.remove(&handle) {
            self.persist
                .push_back(Persist::Dequeue { ids: vec![note.id] });
            self.delivered_now(idx);
            return;
        }
        let s = &mut self.sessions[idx];
        if let Some((h, ids)) = s.replay.take() {
            if h == handle {
                s.queue.retain(|n| !ids.contains(&n.id));
                self.persist.push_back(Persist::Dequeue { ids });
                self.delivered_now(idx);
                self.replay_next(now, idx);
            } else {
                s.replay = Some((h, ids));
            }
        }
    }

    /// A confirmable notification was not acknowledged: the server is unreachable.
    pub(super) fn notification_failed(
        &mut self,
        now: Instant,
        idx: usize,
        handle: Handle,
        reason: Failure,
    ) {
        let ssid = self.sessions[idx].ssid;
        if reason == Failure::Reset {
            // A Reset cancels the observation (RFC 7641 3.6); what it carried is unwanted.
            if let Some(note) = self.sessions[idx].live.remove(&handle) {
                self.persist
                    .push_back(Persist::Dequeue { ids: vec![note.id] });
            }
            let was_replay = self.sessions[idx]
                .replay
                .as_ref()
                .is_some_and(|(h, _)| *h == handle);
            if was_replay {
                if let Some((_, ids)) = self.sessions[idx].replay.take() {
                    let tokens: Vec<Vec<u8>> = self.sessions[idx]
                        .queue
                        .iter()
                        .filter(|n| ids.contains(&n.id))
                        .map(|n| n.token.clone())
                        .collect();
                    self.drop_stored_for_tokens(idx, &tokens);
                }
            }
            self.cancel_observations(idx, |o| o.handle == Some(handle));
            if was_replay {
                self.replay_next(now, idx);
            }
            return;
        }
        let was_live = self.sessions[idx].live.contains_key(&handle);
        let was_replay = self.sessions[idx]
            .replay
            .as_ref()
            .is_some_and(|(h, _)| *h == handle);
        if !was_live && !was_replay {
            return;
        }
        // Everything live still queued behind it in the CoAP layer goes to the store, in order.
        self.store_in_flight(idx);
        tracing::warn!(
            ssid,
            "server unreachable (notification not acknowledged); storing notifications"
        );
        if let Some((h, _)) = self.sessions[idx].pending.take() {
            self.sessions[idx].coap.cancel(h);
        }
        self.schedule_retry(now, idx, "notification not acknowledged".into());
    }

    /// Takes live notifications out of the CoAP layer into the store (or counts them
    /// dropped when storing is off), oldest first, ahead of what is already stored.
    pub(super) fn store_in_flight(&mut self, idx: usize) {
        let s = &mut self.sessions[idx];
        if let Some((h, _)) = s.replay.take() {
            s.coap.cancel(h);
        }
        let mut moved: Vec<QueuedNote> = Vec::new();
        for (h, note) in s.live.drain() {
            s.coap.cancel(h);
            moved.push(note);
        }
        if moved.is_empty() {
            return;
        }
        moved.sort_by_key(|n| n.id);
        if self.storing(idx) {
            // Usually on disk already (written ahead when sent); rewriting is
            // idempotent and covers storing switched on since.
            for note in moved.into_iter().rev() {
                self.persist.push_back(Persist::Enqueue(note.clone()));
                self.sessions[idx].queue.push_front(note);
            }
        } else {
            // Storing was switched off since they were written ahead.
            let ids: Vec<u64> = moved.iter().map(|n| n.id).collect();
            let n = ids.len() as u64;
            self.persist.push_back(Persist::Dequeue { ids });
            self.count_dropped(idx, n);
        }
    }

    fn drop_stored_for_tokens(&mut self, idx: usize, tokens: &[Vec<u8>]) {
        let s = &mut self.sessions[idx];
        let ids: Vec<u64> = s
            .queue
            .iter()
            .filter(|n| tokens.contains(&n.token))
            .map(|n| n.id)
            .collect();
        s.queue.retain(|n| !tokens.contains(&n.token));
        if !ids.is_empty() {
            let n = ids.len() as u64;
            self.persist.push_back(Persist::Dequeue { ids });
            self.count_dropped(idx, n);
        }
    }

    /// Sends the next pack of stored notifications, if registered and none is in flight.
    pub(super) fn replay_next(&mut self, now: Instant, idx: usize) {
        loop {
            let s = &self.sessions[idx];
            if s.replay.is_some() || !self.online(idx) || s.pending.is_some() {
                return;
            }
            let Some(first) = s.queue.front() else {
                return;
            };
            let token = first.token.clone();
            let Some(n) = self
                .observations
                .iter()
                .position(|o| o.ssid == first.ssid && o.token == token)
            else {
                if self.may_send(idx) {
                    self.replay_with_send(now, idx);
                    return;
                }
                // No observation and no Send: nobody can take these any more.
                self.drop_stored_for_tokens(idx, &[token]);
                continue;
            };
            let format = self.observations[n].format;
            let path = self.observations[n].path.clone();
            let (ids, body) = if matches!(format, Format::SenmlJson | Format::SenmlCbor) {
                // Consecutive notes of the same observation, as many as fit one pack.
                self.build_pack(idx, format, |n| n.token == token)
            } else {
                // No times in this format: one stored notification per message.
                let note = &self.sessions[idx].queue[0];
                let reg = &self.reg;
                let types = |p: &Path| crate::lwm2m::dm::type_of(reg, p);
                let recs = codec::decode_composite(Format::SenmlCbor, &note.values, &types)
                    .unwrap_or_default();
                (
                    vec![note.id],
                    codec::encode(format, &path, &recs).unwrap_or_default(),
                )
            };
            tracing::debug!(
                ssid = self.sessions[idx].ssid,
                "replaying {} stored notification(s)",
                ids.len()
            );
            let h = self.send_notification(now, idx, n, body, true);
            self.sessions[idx].replay = Some((h, ids));
            return;
        }
    }

    /// A SenML pack of the stored notes at the head of the queue for which `take`
    /// holds, each record with its time, as many as fit PACK_BYTES (at least one).
    fn build_pack(
        &self,
        idx: usize,
        format: Format,
        take: impl Fn(&QueuedNote) -> bool,
    ) -> (Vec<u64>, Vec<u8>) {
        let reg = &self.reg;
        let types = |p: &Path| crate::lwm2m::dm::type_of(reg, p);
        let mut ids = Vec::new();
        let mut records: Vec<Record> = Vec::new();
        let mut times: Vec<f64> = Vec::new();
        let mut body = Vec::new();
        for note in self.sessions[idx].queue.iter().take_while(|n| take(n)) {
            let recs = codec::decode_composite(Format::SenmlCbor, &note.values, &types)
                .unwrap_or_default();
            let before = records.len();
            times.extend(std::iter::repeat_n(note.time, recs.len()));
            records.extend(recs);
            let encoded =
                codec::encode_absolute(format, &records, Some(&times)).unwrap_or_default();
            if encoded.len() > PACK_BYTES && !ids.is_empty() {
                records.truncate(before);
                times.truncate(before);
                break;
            }
            body = encoded;
            ids.push(note.id);
        }
        (ids, body)
    }

    /// Stored notifications whose observation is gone, as one Send pack (oldest first).
    fn replay_with_send(&mut self, now: Instant, idx: usize) {
        let live: Vec<Vec<u8>> = self
            .observations
            .iter()
            .filter(|o| o.ssid == self.sessions[idx].ssid)
            .map(|o| o.token.clone())
            .collect();
        // Up to the first note whose observation exists: that one goes as a notification.
        let (ids, body) = self.build_pack(idx, Format::SenmlCbor, |n| !live.contains(&n.token));
        let mut req = message::request(coap_lite::RequestType::Post, &["dp"], &[]);
        message::set_content_format(&mut req, Format::SenmlCbor.number());
        req.payload = body;
        tracing::debug!(
            ssid = self.sessions[idx].ssid,
            "sending {} stored value(s) with Send",
            ids.len()
        );
        let h = self.sessions[idx].coap.send_request(now, req, true);
        self.sessions[idx].replay = Some((h, ids));
    }

    /// The answer to a Send carrying stored values.
    pub(super) fn send_answered(
        &mut self,
        now: Instant,
        idx: usize,
        handle: Handle,
        code: u8,
    ) -> bool {
        let s = &mut self.sessions[idx];
        let Some((h, ids)) = s.replay.take() else {
            return false;
        };
        if h != handle {
            s.replay = Some((h, ids));
            return false;
        }
        s.queue.retain(|n| !ids.contains(&n.id));
        let n = ids.len() as u64;
        self.persist.push_back(Persist::Dequeue { ids });
        if codes::is_success(code) {
            self.delivered_now(idx);
        } else {
            // The server refused them (e.g. 4.04 for an unknown path): not retried.
            tracing::warn!(
                ssid = self.sessions[idx].ssid,
                "server answered {} to Send; {n} stored value(s) dropped",
                message::code_text(code)
            );
            self.count_dropped(idx, n);
        }
        self.replay_next(now, idx);
        true
    }

    pub fn queued(&self) -> usize {
        self.sessions.iter().map(|s| s.queue.len()).sum()
    }
}
