//! What the client keeps across restarts: server-written instances, and the
//! state (registrations, observations, queues) it resumes from.

use super::*;

impl Client {
    /// Objects whose instances a server may change and that survive restarts; the
    /// Security object is the bootstrap's, Device and Connectivity are sampled.
    pub(super) fn persistent(obj: u16) -> bool {
        // 5, 9: the firmware and software machines keep their own snapshots.
        !matches!(obj, 0 | 3 | 4 | 5 | 9)
    }

    pub(super) fn instance_data(&self, obj: u16, inst: u16) -> Vec<u8> {
        let recs = self
            .trees
            .gateway
            .read(&self.reg, &Path::new(&[obj, inst]), true)
            .unwrap_or_default();
        crate::codec::encode_absolute(Format::SenmlCbor, &recs, None).unwrap_or_default()
    }

    pub(super) fn persist_instance(&mut self, path: &Path) {
        let (Some(obj), Some(inst)) = (path.object(), path.instance()) else {
            return;
        };
        if path.prefix.is_some() || !Self::persistent(obj) {
            return;
        }
        let data = self
            .trees
            .gateway
            .instance(obj, inst)
            .map(|_| self.instance_data(obj, inst));
        let factory = self.factory.get(&(obj, inst)).cloned().unwrap_or_default();
        self.persist.push_back(Persist::Instance {
            obj,
            inst,
            data,
            factory,
        });
    }

    /// State changes to make durable, in order (the driver commits them together).
    pub fn poll_persist(&mut self) -> Option<Persist> {
        self.persist.pop_front()
    }

    /// Resumes from stored state: registrations still valid are resumed with an Update
    /// on their location, observations carry on, stored notifications wait for replay.
    /// Call before the first `handle_timeout`, after `set_wall_clock`.
    pub fn restore(&mut self, r: Restored) {
        for (obj, inst, data, factory) in r.instances {
            let current = self.factory.get(&(obj, inst)).cloned().unwrap_or_default();
            if current != factory {
                // The operator changed lwgate.toml since: the new factory content wins.
                self.persist.push_back(Persist::Instance {
                    obj,
                    inst,
                    data: None,
                    factory: Vec::new(),
                });
                continue;
            }
            match data {
                None => {
                    let _ = self.trees.gateway.delete_instance(obj, inst);
                }
                Some(bytes) => {
                    let reg = &self.reg;
                    let types = |p: &Path| crate::lwm2m::dm::type_of(reg, p);
                    match crate::codec::decode_composite(Format::SenmlCbor, &bytes, &types) {
                        Ok(recs) => {
                            let ipath = Path::new(&[obj, inst]);
                            let insts = self.trees.gateway.objects.entry(obj).or_default();
                            insts.insert(inst, Default::default());
                            let _ = self.trees.gateway.write(
                                &self.reg,
                                &ipath,
                                &recs,
                                crate::lwm2m::tree::WriteMode::Provision,
                            );
                        }
                        Err(e) => tracing::warn!("stored /{obj}/{inst} skipped: {e}"),
                    }
                }
            }
        }
        for reg in r.registrations {
            let Some(idx) = self.sessions.iter().position(|s| s.ssid == reg.ssid) else {
                self.persist
                    .push_back(Persist::ForgetRegistration { ssid: reg.ssid });
                continue;
            };
            if (reg.expires as f64) <= self.wall {
                self.persist
                    .push_back(Persist::ForgetRegistration { ssid: reg.ssid });
                continue;
            }
            let params = RegParams {
                endpoint: self.cfg.endpoint.clone(),
                lifetime: reg.lifetime,
                version: reg.version,
                binding: reg.binding.clone(),
                sms: None,
            };
            let s = &mut self.sessions[idx];
            s.location = reg.location;
            s.version = reg.version;
            s.sent = Some(params);
            s.sent_objects = reg.objects;
            s.expires = Some(reg.expires as f64);
        }
        for o in r.observations {
            let resumed = self
                .sessions
                .iter()
                .any(|s| s.ssid == o.ssid && !s.location.is_empty());
            if !resumed {
                self.persist.push_back(Persist::ForgetObservation {
                    ssid: o.ssid,
                    token: o.token,
                });
                continue;
            }
            self.observations.push(Observation {
                ssid: o.ssid,
                token: o.token,
                path: o.path,
                composite: o.composite,
                accept: o.accept,
                format: Format::from_number(o.format).unwrap_or(Format::Text),
                // Sequence numbers are committed lazily (within 100 ms), so the last
                // ones sent before a crash may not be on disk. Jumping ahead keeps every
                // new notification "fresher" for the observer (RFC 7641 3.4: any step
                // below 2^23 is newer) instead of being dropped as reordered.
                seq: (o.seq + SEQ_RESTART_JUMP) & 0xFF_FFFF,
                last_sent_at: self.epoch,
                last_values: Vec::new(),
                last_con_at: self.epoch,
                handle: None,
                sampled_at: self.epoch,
                sample: Vec::new(),
                attrs_cache: Default::default(),
                held: false,
                value_time: None,
            });
        }
        for (ssid, path, attrs) in r.attributes {
            self.attrs.insert((ssid, path), attrs);
            self.attrs_generation += 1;
        }
        for (ssid, dropped, last) in r.counters {
            if let Some(s) = self.sessions.iter_mut().find(|s| s.ssid == ssid) {
                s.dropped = dropped;
                s.last_delivery = last;
            }
        }
        let mut queue = r.queue;
        queue.sort_by_key(|n| n.id);
        for n in queue {
            self.next_note_id = self.next_note_id.max(n.id + 1);
            match self
                .sessions
                .iter_mut()
                .find(|s| s.ssid == n.ssid && !s.location.is_empty())
            {
                Some(s) => s.queue.push_back(n),
                None => self.persist.push_back(Persist::Dequeue { ids: vec![n.id] }),
            }
        }
        let now = self.now;
        self.restore_firmware(now, r.firmware.as_deref());
        self.restore_software(now, r.software.as_deref());
    }
}
