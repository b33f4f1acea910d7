//! The LwM2M Gateway object (/25 v2.0) and the end devices' object trees, without
//! I/O: one /25 instance per end device (0 Device ID, 1 Prefix, 3 IoT Device
//! Objects), and under its prefix a tree with its own Device object and the
//! instances its bridge exposes. Values from the bridge are converted here to the
//! types the object definitions give.

use super::tree::Tree;
use crate::codec::link::{Link, LinkFormat};
use crate::model::{DataType, Registry, Value};

/// What the agent knows of an end device from its devices.d file and its bridge.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct EndDevice {
    pub id: String,
    pub prefix: String,
    pub manufacturer: Option<String>,
    pub model: Option<String>,
    pub serial: Option<String>,
    pub firmware_version: Option<String>,
    /// (object, instance) of every instance the bridge exposes resources in.
    pub instances: Vec<(u16, u16)>,
}

/// Device (/3/0) Error Code values (LwM2M 1.0 E.4) used for end devices.
pub const ERROR_NONE: i64 = 0;
/// "Peripheral malfunction": the gateway cannot reach the device.
pub const ERROR_UNREACHABLE: i64 = 8;

/// The end device's tree: its /3/0 and the exposed instances, without values until
/// the first poll brings them.
pub fn device_tree(dev: &EndDevice) -> Tree {
    let mut t = Tree::default();
    for (rid, v) in [
        (0, &dev.manufacturer),
        (1, &dev.model),
        (2, &dev.serial),
        (3, &dev.firmware_version),
    ] {
        if let Some(v) = v.as_ref().filter(|v| !v.is_empty()) {
            t.set(3, 0, rid, Value::String(v.clone()));
        }
    }
    t.set_multi(3, 0, 11, [(0, Value::Integer(ERROR_NONE))].into());
    t.set(3, 0, 16, Value::String("U".into()));
    for (obj, inst) in &dev.instances {
        t.objects.entry(*obj).or_default().entry(*inst).or_default();
    }
    t
}

/// /25/x/3: the end device's objects and instances in registration link format,
/// e.g. `</3>;ver=1.1,</3/0>,</3303/0>`.
pub fn iot_device_objects(reg: &Registry, tree: &Tree) -> String {
    let mut lf = LinkFormat::default();
    for (obj, insts) in &tree.objects {
        let ver = reg.get(*obj).map(|d| d.version.as_str()).unwrap_or("1.0");
        if insts.is_empty() || ver != "1.0" {
            let mut l = Link::new(format!("/{obj}"));
            if ver != "1.0" {
                l = l.attr("ver", ver);
            }
            lf.push(l);
        }
        for i in insts.keys() {
            lf.push(Link::new(format!("/{obj}/{i}")));
        }
    }
    lf.render()
}

/// Writes the /25 instance of an end device into the gateway's tree.
pub fn set_gateway_instance(gw: &mut Tree, inst: u16, dev: &EndDevice, links: String) {
    gw.set(25, inst, 0, Value::String(dev.id.clone()));
    gw.set(25, inst, 1, Value::String(dev.prefix.clone()));
    gw.set(25, inst, 3, Value::CoreLnk(links));
}

/// Where access control is in force (several servers), an end device starts with
/// the rights the gateway's own Device object has (its /25 instance's ACL instance
/// governs all of the end device, see `Dm::allowed`); a server that owns it may
/// change them. No ACL of /3/0: nothing is added (one server: full access).
pub fn grant_like_device(gw: &mut Tree, inst: u16) {
    let Some(device_acl) = super::acl::find(gw, 3, 0) else {
        return;
    };
    if super::acl::find(gw, 25, inst).is_some() {
        return;
    }
    let Some(slot) = gw.free_instance_id(2) else {
        return;
    };
    let entries = gw.instance(2, device_acl).and_then(|i| i.get(&2)).cloned();
    let owner = gw.get_i64(2, device_acl, 3);
    gw.set(2, slot, 0, Value::Integer(25));
    gw.set(2, slot, 1, Value::Integer(i64::from(inst)));
    if let Some(super::tree::Res::Multi(m)) = entries {
        gw.set_multi(2, slot, 2, m);
    }
    if let Some(o) = owner {
        gw.set(2, slot, 3, Value::Integer(o));
    }
}

/// A bridge's value as the resource's type, or None when it cannot be one (the
/// value is then left out rather than sent wrong).
pub fn convert(v: &lwgate_bridges::device::Value, ty: DataType) -> Option<Value> {
    use lwgate_bridges::device::Value as B;
    Some(match (ty, v) {
        (DataType::Boolean, B::Bool(b)) => Value::Boolean(*b),
        (DataType::Boolean, B::Int(i)) => Value::Boolean(*i != 0),
        (DataType::Integer, B::Int(i)) => Value::Integer(*i),
        (DataType::Integer, B::Bool(b)) => Value::Integer(i64::from(*b)),
        (DataType::Integer, B::Float(f)) if f.is_finite() => Value::Integer(f.round() as i64),
        (DataType::UnsignedInteger, B::Int(i)) if *i >= 0 => Value::Unsigned(*i as u64),
        (DataType::UnsignedInteger, B::Bool(b)) => Value::Unsigned(u64::from(*b)),
        (DataType::UnsignedInteger, B::Float(f)) if f.is_finite() && *f >= 0.0 => {
            Value::Unsigned(f.round() as u64)
        }
        (DataType::Float, B::Float(f)) if f.is_finite() => Value::Float(*f),
        (DataType::Float, B::Int(i)) => Value::Float(*i as f64),
        (DataType::Time, B::Int(i)) => Value::Time(*i),
        (DataType::Time, B::Float(f)) if f.is_finite() => Value::Time(f.floor() as i64),
        (DataType::String, B::Text(s)) => Value::String(s.clone()),
        (DataType::String, B::Int(i)) => Value::String(i.to_string()),
        (DataType::String, B::Float(f)) => Value::String(f.to_string()),
        (DataType::String, B::Bool(b)) => Value::String(b.to_string()),
        (DataType::Opaque, B::Opaque(b)) => Value::Opaque(b.clone()),
        (DataType::Opaque, B::Text(s)) => Value::Opaque(s.clone().into_bytes()),
        _ => return None,
    })
}

/// The other way, for writes: what the bridge is given for a written value.
pub fn to_bridge(v: &Value) -> Option<lwgate_bridges::device::Value> {
    use lwgate_bridges::device::Value as B;
    Some(match v {
        Value::Boolean(b) => B::Bool(*b),
        Value::Integer(i) | Value::Time(i) => B::Int(*i),
        Value::Unsigned(u) => B::Int(i64::try_from(*u).ok()?),
        Value::Float(f) => B::Float(*f),
        Value::String(s) => B::Text(s.clone()),
        Value::Opaque(b) => B::Opaque(b.clone()),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use lwgate_bridges::device::Value as B;

    fn meter() -> EndDevice {
        EndDevice {
            id: "meter-1".into(),
            prefix: "m1".into(),
            manufacturer: Some("ACME".into()),
            model: None,
            serial: Some("".into()),
            firmware_version: None,
            instances: vec![(3303, 0), (3303, 1), (3311, 0)],
        }
    }

    #[test]
    fn an_end_device_tree_has_its_device_object_and_exposed_instances() {
        let t = device_tree(&meter());
        assert_eq!(t.get(3, 0, 0), Some(&Value::String("ACME".into())));
        assert_eq!(t.get(3, 0, 2), None, "empty values are left out");
        assert_eq!(t.instance_ids(3303), vec![0, 1]);
        assert!(t.instance(3311, 0).is_some_and(|i| i.is_empty()));
        // The built-in Device object is 1.0: no ver=.
        let reg = Registry::builtin();
        assert_eq!(
            iot_device_objects(&reg, &t),
            "</3/0>,</3303/0>,</3303/1>,</3311/0>"
        );
    }

    #[test]
    fn the_gateway_instance_names_the_device() {
        let mut gw = Tree::default();
        set_gateway_instance(&mut gw, 4, &meter(), "</3303/0>".into());
        assert_eq!(gw.get(25, 4, 0), Some(&Value::String("meter-1".into())));
        assert_eq!(gw.get(25, 4, 1), Some(&Value::String("m1".into())));
        assert_eq!(gw.get(25, 4, 3), Some(&Value::CoreLnk("</3303/0>".into())));
    }

    #[test]
    fn values_take_the_resource_type_or_are_left_out() {
        assert_eq!(
            convert(&B::Float(21.5), DataType::Float),
            Some(Value::Float(21.5))
        );
        assert_eq!(
            convert(&B::Int(3), DataType::Float),
            Some(Value::Float(3.0))
        );
        assert_eq!(
            convert(&B::Int(1), DataType::Boolean),
            Some(Value::Boolean(true))
        );
        assert_eq!(
            convert(&B::Float(2.6), DataType::Integer),
            Some(Value::Integer(3))
        );
        assert_eq!(convert(&B::Int(-1), DataType::UnsignedInteger), None);
        assert_eq!(convert(&B::Float(f64::NAN), DataType::Float), None);
        assert_eq!(convert(&B::Text("x".into()), DataType::Float), None);
        assert_eq!(
            convert(&B::Text("on".into()), DataType::String),
            Some(Value::String("on".into()))
        );
        assert_eq!(to_bridge(&Value::Unsigned(u64::MAX)), None);
        assert_eq!(to_bridge(&Value::Float(1.5)), Some(B::Float(1.5)));
    }
}
