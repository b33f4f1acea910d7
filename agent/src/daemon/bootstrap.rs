//! The bootstrap sequence as far as this version goes (LwM2M 1.0 TS 5.2.4): the
//! smartcard when enabled, else the factory `[[server]]` tables. The card is
//! re-checked at every Register and Update towards a server it provisioned.

use crate::config::{Loaded, SmartcardSection};
use crate::lwm2m::factory::{self, Account, DeviceInfo};
use crate::lwm2m::tree::WriteMode;
use crate::lwm2m::Trees;
use crate::model::{Path, Registry};
use crate::smartcard::{bootfile, reader, SmartcardError};
use sha2::{Digest, Sha256};

/// What the card gave, and how to recognise it again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CardIdentity {
    pub reader: String,
    pub iccid: String,
    pub hash: [u8; 32],
}

pub struct Provisioned {
    pub trees: Trees,
    /// Some when the accounts came from a smartcard.
    pub card: Option<CardIdentity>,
    /// Short Server IDs of the accounts provisioned by the card.
    pub card_ssids: Vec<u16>,
    /// Why the card was not used, for `lwgate status` and the journal.
    pub card_error: Option<String>,
    /// Where the accounts came from, for `lwgate status`.
    pub source: String,
}

/// The store's copy of what a bootstrap server provisioned (SenML CBOR).
pub const SERVER_CONFIG_META: &str = "bootstrap.server_config";

/// Objects a bootstrap server's configuration is made of and kept with.
fn provisioned_object(obj: u16) -> bool {
    !matches!(obj, 3 | 4)
}

/// Serialises what a bootstrap server provisioned, for the store.
pub fn encode_config(t: &crate::lwm2m::Tree, reg: &Registry) -> Vec<u8> {
    let mut recs = Vec::new();
    for (obj, insts) in &t.objects {
        if !provisioned_object(*obj) {
            continue;
        }
        for inst in insts.keys() {
            recs.extend(
                t.read(reg, &Path::new(&[*obj, *inst]), true)
                    .unwrap_or_default(),
            );
        }
    }
    crate::codec::encode_absolute(crate::codec::Format::SenmlCbor, &recs, None).unwrap_or_default()
}

/// The device identity plus every instance the records name (bootstrap writes:
/// no operation checks), each written whole.
fn provisioned_trees(
    records: &[crate::codec::Record],
    reg: &Registry,
    info: &DeviceInfo,
) -> Result<Trees, String> {
    let mut trees = factory::trees(&[], info);
    let instances: std::collections::BTreeSet<(u16, u16)> = records
        .iter()
        .filter_map(|(p, _)| Some((p.object()?, p.instance()?)))
        .collect();
    for (o, i) in instances {
        let recs: Vec<_> = records
            .iter()
            .filter(|(p, _)| p.object() == Some(o) && p.instance() == Some(i))
            .cloned()
            .collect();
        trees
            .gateway
            .objects
            .entry(o)
            .or_default()
            .insert(i, Default::default());
        trees
            .gateway
            .write(reg, &Path::new(&[o, i]), &recs, WriteMode::Provision)
            .map_err(|e| format!("/{o}/{i}: {e}"))?;
    }
    Ok(trees)
}

/// Rebuilds trees from a stored bootstrap-server configuration, if it is still usable.
pub fn decode_config(bytes: &[u8], reg: &Registry, info: &DeviceInfo) -> Option<Trees> {
    let types = |p: &Path| crate::lwm2m::dm::type_of(reg, p);
    let recs =
        crate::codec::decode_composite(crate::codec::Format::SenmlCbor, bytes, &types).ok()?;
    let trees = provisioned_trees(&recs, reg, info).ok()?;
    crate::lwm2m::bootstrap::check(&trees.gateway).ok()?;
    Some(trees)
}

/// Adds the `[bootstrap.server]` account (a Security instance with Bootstrap-Server
/// true) unless the configuration already holds one.
pub fn add_bootstrap_account(trees: &mut Trees, loaded: &Loaded) {
    let Some(bs) = loaded
        .config
        .bootstrap
        .as_ref()
        .and_then(|b| b.server.as_ref())
    else {
        return;
    };
    let g = &mut trees.gateway;
    if g.instance_ids(0)
        .into_iter()
        .any(|i| matches!(g.get(0, i, 1), Some(crate::model::Value::Boolean(true))))
    {
        return;
    }
    let Some(i) = g.free_instance_id(0) else {
        return;
    };
    use crate::model::Value;
    g.set(0, i, 0, Value::String(bs.uri.clone()));
    g.set(0, i, 1, Value::Boolean(true));
    g.set(0, i, 2, Value::Integer(3));
    g.set(0, i, 3, Value::Opaque(Vec::new()));
    g.set(0, i, 4, Value::Opaque(Vec::new()));
    g.set(0, i, 5, Value::Opaque(Vec::new()));
    crate::lwm2m::factory::write_security(g, i, &bs.account_security());
    if let Some(h) = bs.hold_off {
        g.set(0, i, 11, Value::Integer(i64::from(h)));
    }
}

/// Client Hold Off Time of the bootstrap-server account (/0/x/11), seconds.
pub fn hold_off(t: &crate::lwm2m::Tree) -> u64 {
    use crate::model::Value;
    t.instance_ids(0)
        .into_iter()
        .find(|i| matches!(t.get(0, *i, 1), Some(Value::Boolean(true))))
        .and_then(|i| t.get_i64(0, i, 11))
        .and_then(|v| u64::try_from(v).ok())
        .unwrap_or(0)
}

/// The bootstrap-server URI of a configuration, if it has that account.
pub fn bootstrap_uri(t: &crate::lwm2m::Tree) -> Option<String> {
    use crate::model::Value;
    t.instance_ids(0)
        .into_iter()
        .find_map(|i| match (t.get(0, i, 1), t.get(0, i, 0)) {
            (Some(Value::Boolean(true)), Some(Value::String(u))) => Some(u.clone()),
            _ => None,
        })
}

/// The `[[server]]` accounts with the Security-object material `config::load`
/// read and checked (DER keys and certificates, SNI, cipher suites).
pub fn factory_accounts(loaded: &Loaded) -> Vec<factory::SecuredAccount> {
    loaded
        .config
        .servers
        .iter()
        .map(|s| factory::SecuredAccount {
            account: Account {
                uri: s.uri.clone(),
                ssid: s.ssid,
                lifetime: s.lifetime.0,
                binding: s.binding.clone(),
                notification_storing: s.notification_storing,
                sms_number: s.sms_number.clone(),
            },
            security: s.account_security(),
        })
        .collect()
}

pub fn pin(sc: &SmartcardSection) -> Result<Option<String>, String> {
    match (&sc.pin, &sc.pin_file) {
        (Some(p), _) => Ok(Some(p.clone())),
        (None, Some(f)) => std::fs::read_to_string(f)
            .map(|p| Some(p.trim().to_string()))
            .map_err(|e| format!("{}: cannot read the PIN file: {e}", f.display())),
        (None, None) => Ok(None),
    }
}

/// Reads the card; the accounts it holds as object instances, and its identity.
/// Why a card could not be used: `absent` when there is no card (removed);
/// `rejected_pin` (a key for `pin_key`) when the card refused the configured PIN.
#[derive(Debug, Clone)]
pub struct CardFailure {
    pub absent: bool,
    pub message: String,
    pub rejected_pin: Option<String>,
}

impl From<String> for CardFailure {
    fn from(message: String) -> Self {
        Self {
            absent: false,
            message,
            rejected_pin: None,
        }
    }
}

/// The store's record of a PIN a card rejected: a hash of card and PIN, never the PIN.
pub fn pin_key(iccid: &str, pin: &str) -> String {
    hex::encode(
        Sha256::new()
            .chain_update(iccid)
            .chain_update([0u8])
            .chain_update(pin)
            .finalize(),
    )
}

pub const REJECTED_PIN_META: &str = "smartcard.rejected_pin";

pub fn read_card(
    sc: &SmartcardSection,
    reg: &Registry,
    info: &DeviceInfo,
    rejected_before: Option<&str>,
) -> Result<(Trees, CardIdentity, Vec<u16>), CardFailure> {
    let pin = pin(sc)?;
    let may_verify = |iccid: &str, pin: &str| rejected_before != Some(pin_key(iccid, pin).as_str());
    let iccid_seen = std::cell::RefCell::new(String::new());
    let record = |iccid: &str, pin: &str| {
        *iccid_seen.borrow_mut() = iccid.to_string();
        may_verify(iccid, pin)
    };
    let (result, _log) = reader::read_checked(sc.reader.as_deref(), pin.as_deref(), &record);
    let (reader_name, data) = result.map_err(|e: SmartcardError| CardFailure {
        absent: matches!(e, SmartcardError::NoCard(_) | SmartcardError::Removed),
        rejected_pin: match (&e, &pin) {
            (SmartcardError::WrongPin { .. }, Some(p)) => Some(pin_key(&iccid_seen.borrow(), p)),
            _ => None,
        },
        message: e.to_string(),
    })?;
    let objects = bootfile::parse(&data.file).map_err(|e| e.to_string())?;
    let records = bootfile::records(&objects, reg).map_err(|e| e.to_string())?;
    // Start from the device identity alone, then write what the card provisions.
    let trees =
        provisioned_trees(&records, reg, info).map_err(|e| format!("from the card: {e}"))?;
    let ssids: Vec<u16> = trees
        .gateway
        .instance_ids(1)
        .into_iter()
        .filter_map(|i| {
            trees
                .gateway
                .get_i64(1, i, 0)
                .and_then(|v| u16::try_from(v).ok())
        })
        .collect();
    if ssids.is_empty() {
        return Err(String::from("the card's bootstrap file holds no LwM2M server account").into());
    }
    let hash: [u8; 32] = Sha256::digest(&data.file).into();
    Ok((
        trees,
        CardIdentity {
            reader: reader_name,
            iccid: data.iccid,
            hash,
        },
        ssids,
    ))
}

/// Smartcard first when enabled, the factory tables otherwise or when it fails.
pub fn provision(
    loaded: &Loaded,
    reg: &Registry,
    info: &DeviceInfo,
    store: &crate::store::Store,
) -> Provisioned {
    let rejected = store.get_meta(REJECTED_PIN_META).ok().flatten();
    let sc = loaded
        .config
        .bootstrap
        .as_ref()
        .and_then(|b| b.smartcard.as_ref())
        .filter(|s| s.enabled);
    let mut card_error = None;
    if let Some(sc) = sc {
        match read_card(sc, reg, info, rejected.as_deref()) {
            Ok((trees, card, card_ssids)) => {
                tracing::info!(
                    reader = %card.reader,
                    iccid = %card.iccid,
                    "bootstrapped from the smartcard: {} server account(s)",
                    card_ssids.len()
                );
                let source = format!("smartcard ({}, ICCID {})", card.reader, card.iccid);
                return Provisioned {
                    trees,
                    card: Some(card),
                    card_ssids,
                    card_error: None,
                    source,
                };
            }
            Err(e) => {
                tracing::warn!(
                    "smartcard bootstrap failed, using the [[server]] tables: {}",
                    e.message
                );
                if let Some(key) = &e.rejected_pin {
                    if let Err(err) = store.set_meta(REJECTED_PIN_META, key) {
                        tracing::error!("cannot remember the rejected PIN: {err}");
                    }
                }
                card_error = Some(e.message);
            }
        }
    }
    // What a bootstrap server provisioned earlier beats the factory tables.
    let stored = store
        .get_meta(SERVER_CONFIG_META)
        .ok()
        .flatten()
        .and_then(|h| hex::decode(h).ok())
        .and_then(|b| decode_config(&b, reg, info));
    // A stored configuration holds the bootstrap-server account as the bootstrap
    // server left it: purged after its Account Timeout, it must stay purged.
    let (trees, source) = match stored {
        Some(t) => (t, "bootstrap server (stored configuration)".to_string()),
        None => {
            let mut t = factory::trees(&factory_accounts(loaded), info);
            add_bootstrap_account(&mut t, loaded);
            (t, "factory ([[server]] tables)".to_string())
        }
    };
    Provisioned {
        trees,
        card: None,
        card_ssids: Vec::new(),
        card_error,
        source,
    }
}
