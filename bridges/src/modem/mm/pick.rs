//! Which of ModemManager's objects is our modem, from `GetManagedObjects`.

use std::collections::HashMap;

use zbus::zvariant::OwnedObjectPath;

use super::values::{prop_str, Props};
use super::{MESSAGING, MODEM};
use crate::modem::ModemSelector;

/// `GetManagedObjects`' answer.
pub type Managed = HashMap<OwnedObjectPath, HashMap<String, Props>>;

/// A modem ModemManager exports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    pub path: String,
    pub equipment: Option<String>,
    pub messaging: bool,
}

pub fn candidates(managed: &Managed) -> Vec<Candidate> {
    let mut c: Vec<Candidate> = managed
        .iter()
        .filter_map(|(path, ifaces)| {
            let modem = ifaces.get(MODEM)?;
            Some(Candidate {
                path: path.as_str().to_string(),
                equipment: prop_str(modem, "EquipmentIdentifier"),
                messaging: ifaces.contains_key(MESSAGING),
            })
        })
        .collect();
    c.sort_by_key(|c| order(&c.path));
    c
}

/// `.../Modem/3` before `.../Modem/12`.
fn order(path: &str) -> (u64, String) {
    let n = path
        .rsplit('/')
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or(u64::MAX);
    (n, path.to_string())
}

/// Our modem, or why there is none (for Down's reason).
pub fn pick<'a>(selector: &ModemSelector, c: &'a [Candidate]) -> Result<&'a Candidate, String> {
    let found = match selector {
        ModemSelector::Any => c.first(),
        ModemSelector::Path(p) => c.iter().find(|c| &c.path == p),
        ModemSelector::Equipment(e) => c.iter().find(|c| {
            c.equipment
                .as_deref()
                .is_some_and(|x| x.eq_ignore_ascii_case(e))
        }),
    };
    found.ok_or_else(|| match (selector, c.len()) {
        (_, 0) => "ModemManager has no modem".to_string(),
        (s, n) => {
            let seen: Vec<String> = c
                .iter()
                .map(|c| match &c.equipment {
                    Some(e) => format!("{} ({e})", c.path),
                    None => c.path.clone(),
                })
                .collect();
            format!(
                "no modem is {s} (ModemManager has {n}: {})",
                seen.join(", ")
            )
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::modem::mm::values::test_values::*;
    use zbus::zvariant::Value;

    fn managed(modems: &[(&str, &str, bool)]) -> Managed {
        let mut m = Managed::new();
        for (path, imei, messaging) in modems {
            let mut ifaces = HashMap::new();
            ifaces.insert(
                MODEM.to_string(),
                props(vec![("EquipmentIdentifier", Value::from(imei.to_string()))]),
            );
            if *messaging {
                ifaces.insert(MESSAGING.to_string(), Props::new());
            }
            m.insert(OwnedObjectPath::try_from(*path).unwrap(), ifaces);
        }
        // Not a modem: ignored.
        let mut sim = HashMap::new();
        sim.insert(
            "org.freedesktop.ModemManager1.Sim".to_string(),
            Props::new(),
        );
        m.insert(
            OwnedObjectPath::try_from("/org/freedesktop/ModemManager1/SIM/0").unwrap(),
            sim,
        );
        m
    }

    const M: &str = "/org/freedesktop/ModemManager1/Modem/";

    #[test]
    fn picks() {
        let m = managed(&[
            (&format!("{M}12"), "111111111111111", true),
            (&format!("{M}3"), "490154203237518", false),
        ]);
        let c = candidates(&m);
        assert_eq!(c.len(), 2);
        assert_eq!(c[0].path, format!("{M}3"));
        assert!(!c[0].messaging && c[1].messaging);
        assert_eq!(pick(&ModemSelector::Any, &c).unwrap().path, format!("{M}3"));
        let by_imei = ModemSelector::Equipment("111111111111111".into());
        assert_eq!(pick(&by_imei, &c).unwrap().path, format!("{M}12"));
        let by_path = ModemSelector::Path(format!("{M}12"));
        assert_eq!(
            pick(&by_path, &c).unwrap().equipment.as_deref(),
            Some("111111111111111")
        );
        let why = pick(&ModemSelector::Equipment("2".into()), &c).unwrap_err();
        assert!(why.contains("no modem is 2 (ModemManager has 2:"), "{why}");
        assert!(why.contains("490154203237518"), "{why}");
        assert_eq!(
            pick(&ModemSelector::Any, &[]).unwrap_err(),
            "ModemManager has no modem"
        );
    }

    #[test]
    fn odd_paths_sort_last() {
        let m = managed(&[(&format!("{M}x"), "1", true), (&format!("{M}0"), "2", true)]);
        let c = candidates(&m);
        assert_eq!(c[0].path, format!("{M}0"));
    }
}
