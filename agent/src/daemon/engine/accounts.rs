//! Where the server accounts come from while running: the smartcard (re-checked at
//! every Register/Update, re-provisioned when removed or changed) and the bootstrap
//! server (client-initiated when needed or triggered, server-initiated on the kept
//! socket, the result applied after Finish, the account purged after its timeout).

use super::*;

impl Engine {
    /// At every Register and Update towards a server the card provisioned, the card
    /// is read again: removed → its accounts go; changed → the new content replaces
    /// them once the old registrations are gone (LwM2M 1.0 TS 5.2.3.2). The read
    /// runs on a blocking thread (PC/SC calls can take hundreds of milliseconds, a
    /// wedged reader much longer); `card_checked` takes the result.
    pub(super) fn check_card(&mut self) {
        let activity = self.client.take_registration_activity();
        let Some((_, ssids)) = &self.card else {
            return;
        };
        if self.card_checking || !activity.iter().any(|s| ssids.contains(s)) {
            return;
        }
        let Some(sc) = self.smartcard.clone() else {
            return;
        };
        let rejected = self
            .store
            .get_meta(bootstrap::REJECTED_PIN_META)
            .ok()
            .flatten();
        let (reg, info, tx) = (self.reg.clone(), self.info.clone(), self.card_tx.clone());
        self.card_checking = true;
        tokio::task::spawn_blocking(move || {
            let read = bootstrap::read_card(&sc, &reg, &info, rejected.as_deref());
            let _ = tx.blocking_send(read);
        });
    }

    /// The result of a card check started by `check_card`.
    pub fn card_checked(&mut self, now: Instant, read: CardRead) {
        self.card_checking = false;
        let Some((identity, ssids)) = self.card.clone() else {
            return; // the accounts changed meanwhile; the next check will see
        };
        match read {
            Ok((_, id, _)) if id.iccid == identity.iccid && id.hash == identity.hash => {}
            Ok((trees, id, new_ssids)) => {
                tracing::warn!(iccid = %id.iccid, "smartcard content changed: replacing its server accounts");
                self.client.retire(now, &ssids);
                let label = format!("smartcard ({}, ICCID {})", id.reader, id.iccid);
                self.reprovision = Some((trees, Some((id, new_ssids)), label));
                self.card = None;
            }
            Err(f) if f.absent => {
                tracing::warn!(
                    "smartcard removed: deleting its server accounts and de-registering"
                );
                self.client.retire(now, &ssids);
                self.card = None;
                self.bootstrap = "smartcard removed: no server account".into();
                self.card_error = Some(f.message);
            }
            Err(f) => {
                tracing::warn!(
                    "smartcard check failed, keeping the current accounts: {}",
                    f.message
                );
                self.card_error = Some(f.message);
            }
        }
    }

    /// Applies new card content once the old accounts have de-registered.
    pub(super) fn finish_reprovision(&mut self, now: Instant) {
        if self.reprovision.is_none() || !self.client.is_stopped() {
            return;
        }
        let Some((mut trees, card, label)) = self.reprovision.take() else {
            return;
        };
        // Keep what the old client has not yet made durable.
        let ops: Vec<_> = std::iter::from_fn(|| self.client.poll_persist()).collect();
        self.batch.push(ops, now);
        if let Some(ops) = self.batch.take() {
            self.commit(&ops);
        }
        system::apply(&mut trees.gateway, &system::sample(&self.storage_dir));
        // The end devices are the gateway's, whatever its server accounts.
        let old = std::mem::take(&mut self.client.trees);
        trees.devices = old.devices;
        trees.down = old.down;
        if let Some(gw) = old.gateway.objects.get(&25) {
            trees.gateway.objects.insert(25, gw.clone());
        }
        self.client = Client::new(
            self.client_cfg.clone(),
            self.reg.clone(),
            trees,
            now,
            seed(),
        );
        self.client.set_wall_clock(unix_now());
        // The bootstrap server's socket stays (it may bootstrap us again on it).
        let bs_peer = self.peers.take(BS_PEER).filter(|_| self.keep_bs_peer);
        let peers = self.server_peers();
        self.peers.reset(peers);
        if let Some(p) = bs_peer {
            self.peers.put(BS_PEER, p);
        }
        tracing::info!("new server accounts in force: {label}");
        self.bootstrap = label;
        self.card = card;
    }

    /// Client-initiated bootstrap (5.2.4): when a bootstrap-server account exists and
    /// no server account does, or every registration failed a whole retry sequence,
    /// or a server executed Bootstrap-Request Trigger (/1/x/9).
    pub(super) fn maybe_bootstrap(&mut self, now: Instant, triggered: bool) {
        // Stopping: the accounts are being de-registered, not given up on.
        if self.bs.is_some() || self.reprovision.is_some() || self.stopping {
            return;
        }
        // A trigger waits while the bootstrap server's address is being resolved.
        let triggered = triggered || self.bs_triggered;
        let Some(uri) = bootstrap::bootstrap_uri(&self.client.trees.gateway) else {
            return;
        };
        let sessions = self.client.status(now);
        // Bootstrap on Registration Failure (/1/x/16, default true) lets a server opt out.
        let allowed = self.client.servers().iter().all(|(ssid, _)| {
            let g = &self.client.trees.gateway;
            let inst = g
                .instance_ids(1)
                .into_iter()
                .find(|i| g.get_i64(1, *i, 0) == Some(i64::from(*ssid)));
            !matches!(
                inst.and_then(|i| g.get(1, i, 16)),
                Some(crate::model::Value::Boolean(false))
            )
        });
        let hopeless = allowed
            && sessions
                .iter()
                .all(|s| s.state == "stopped" || s.failures >= 5);
        if !triggered && !hopeless {
            return;
        }
        if !triggered && self.bs_not_before.is_some_and(|t| now < t) {
            return;
        }
        if !triggered && self.bs_not_before.is_none() && self.bs_failures == 0 {
            // Client Hold Off Time (/0/x/11) before the first attempt.
            let hold = Duration::from_secs(bootstrap::hold_off(&self.client.trees.gateway));
            if !hold.is_zero() {
                tracing::info!("bootstrap in {}s (Client Hold Off Time)", hold.as_secs());
                self.bs_not_before = Some(now + hold);
                return;
            }
        }
        // The bootstrap server gets its peer on demand; once it is open, the next
        // flush starts the bootstrap.
        if !self.peers.contains(BS_PEER) {
            let security = self.bootstrap_peer_security();
            self.peers.insert(BS_PEER, uri.clone(), security);
        }
        if !self.peers.is_open(BS_PEER) {
            self.bs_triggered = triggered;
            self.peers.open(BS_PEER);
            return;
        }
        self.bs_triggered = false;
        tracing::info!(server = %uri, "starting client-initiated bootstrap");
        let version = self.client_cfg.version;
        let mut b = crate::lwm2m::bootstrap::Bootstrapper::start(
            now,
            TxParams::default(),
            seed(),
            &self.client_cfg.endpoint,
            version,
            self.reg.clone(),
            self.client.trees.gateway.clone(),
        );
        if let Some(t) = self.bs_finish_timeout {
            b = b.with_finish_timeout(t);
        }
        self.bs = Some(b);
    }

    /// Bootstrap-Server Account Timeout: the account is purged, here and in the store.
    pub(super) fn purge_bootstrap_account(&mut self, now: Instant) {
        if self.bs_purge_at.is_none_or(|t| now < t) || self.reprovision.is_some() {
            return;
        }
        self.bs_purge_at = None;
        let g = &mut self.client.trees.gateway;
        let accounts: Vec<u16> = g
            .instance_ids(0)
            .into_iter()
            .filter(|i| matches!(g.get(0, *i, 1), Some(crate::model::Value::Boolean(true))))
            .collect();
        for i in accounts {
            let _ = g.delete_instance(0, i);
        }
        let bytes = bootstrap::encode_config(&self.client.trees.gateway, &self.reg);
        if let Err(e) = self
            .store
            .set_meta(bootstrap::SERVER_CONFIG_META, &hex::encode(bytes))
        {
            tracing::error!("bootstrap configuration not saved: {e}");
        }
        self.peers.take(BS_PEER);
        self.keep_bs_peer = false;
        tracing::info!("bootstrap-server account purged (Bootstrap-Server Account Timeout)");
    }

    /// A failed attempt (the server's answer, silence, or an address that did not
    /// resolve), retried on the bootstrap back-off.
    pub(super) fn bootstrap_failed(&mut self, now: Instant, why: String) {
        self.bs_failures += 1;
        let delay =
            Duration::from_secs(10u64 << self.bs_failures.min(5)).min(Duration::from_secs(300));
        tracing::warn!(
            "bootstrap failed ({why}); next attempt in {}s",
            delay.as_secs()
        );
        self.bs_error = Some(why);
        self.bs_not_before = Some(now + delay);
    }

    /// A finished or failed bootstrap: new accounts in force, or a later retry.
    pub(super) fn after_bootstrap(&mut self, now: Instant) {
        use crate::lwm2m::bootstrap::Outcome;
        let Some(outcome) = self.bs.as_ref().and_then(|b| b.outcome()).cloned() else {
            return;
        };
        self.bs = None;
        match outcome {
            Outcome::Done(tree) => {
                // Committed atomically at Finish: one meta row with the whole configuration.
                let bytes = bootstrap::encode_config(&tree, &self.reg);
                if let Err(e) = self
                    .store
                    .set_meta(bootstrap::SERVER_CONFIG_META, &hex::encode(bytes))
                {
                    tracing::error!("bootstrap configuration not saved: {e}");
                }
                let mut trees = Trees {
                    gateway: tree,
                    ..Default::default()
                };
                // Device identity and system values are ours, not the bootstrap server's.
                let fresh = crate::lwm2m::factory::trees(&[], &self.info);
                if let Some(dev) = fresh.gateway.objects.get(&3) {
                    trees.gateway.objects.insert(3, dev.clone());
                }
                let timeout = trees.gateway.instance_ids(0).into_iter().find_map(|i| {
                    let bs = matches!(
                        trees.gateway.get(0, i, 1),
                        Some(crate::model::Value::Boolean(true))
                    );
                    bs.then(|| trees.gateway.get_i64(0, i, 12)).flatten()
                });
                self.bs_purge_at = timeout
                    .and_then(|t| u64::try_from(t).ok())
                    .filter(|t| *t > 0)
                    .map(|t| now + Duration::from_secs(t));
                let ssids: Vec<u16> = self.client.servers().into_iter().map(|s| s.0).collect();
                self.client.retire(now, &ssids);
                self.bs_failures = 0;
                self.bs_error = None;
                self.card = None;
                self.reprovision = Some((trees, None, "bootstrap server".to_string()));
                // Keep listening to the bootstrap server (server-initiated bootstrap)
                // for as long as its account exists.
                self.keep_bs_peer = true;
            }
            Outcome::Failed(why) => self.bootstrap_failed(now, why),
        }
    }
}
