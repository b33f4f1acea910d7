//! Access control (spec 7.3, object /2): enforced only when more than one server
//! account exists; with one server it has full access.

use super::error::{OpError, OpResult};
use super::tree::{Res, Tree};
use crate::model::Value;

pub const READ: i64 = 1;
pub const WRITE: i64 = 2;
pub const EXECUTE: i64 = 4;
pub const DELETE: i64 = 8;
pub const CREATE: i64 = 16;
pub const ALL: i64 = READ | WRITE | EXECUTE | DELETE;

/// The ACL instance governing (object, instance); instance 65535 governs Create.
pub fn find(tree: &Tree, obj: u16, inst: u16) -> Option<u16> {
    let acls = tree.objects.get(&2)?;
    acls.iter()
        .find(|(_, i)| {
            matches!(i.get(&0), Some(Res::Single(Value::Integer(o))) if *o == i64::from(obj))
                && matches!(i.get(&1), Some(Res::Single(Value::Integer(x))) if *x == i64::from(inst))
        })
        .map(|(id, _)| *id)
}

fn owner(tree: &Tree, acl: u16) -> Option<i64> {
    tree.get_i64(2, acl, 3)
}

/// Rights of `ssid` on (obj, inst); None when no ACL instance exists.
pub fn rights(tree: &Tree, obj: u16, inst: u16, ssid: u16) -> Option<i64> {
    let acl = find(tree, obj, inst)?;
    let entries = match tree.instance(2, acl)?.get(&2) {
        Some(Res::Multi(m)) => m.clone(),
        _ => Default::default(),
    };
    if let Some(v) = entries.get(&ssid).and_then(Value::as_i64) {
        return Some(v);
    }
    if owner(tree, acl) == Some(i64::from(ssid)) {
        return Some(ALL | CREATE);
    }
    Some(entries.get(&0).and_then(Value::as_i64).unwrap_or(0))
}

/// Checks `right` for an operation on an existing instance (or Create with inst None).
pub fn check(
    tree: &Tree,
    servers: usize,
    ssid: u16,
    obj: u16,
    inst: Option<u16>,
    right: i64,
) -> OpResult<()> {
    if obj == 0 {
        return Err(OpError::Unauthorized);
    }
    if servers <= 1 {
        return Ok(());
    }
    if obj == 2 {
        // An ACL instance is managed by its owner only.
        return match inst {
            Some(i) if owner(tree, i) == Some(i64::from(ssid)) => Ok(()),
            Some(_) if right == READ => Ok(()),
            _ => Err(OpError::Unauthorized),
        };
    }
    let r = rights(tree, obj, inst.unwrap_or(u16::MAX), ssid).ok_or(OpError::Unauthorized)?;
    if r & right == right {
        Ok(())
    } else {
        Err(OpError::Unauthorized)
    }
}

/// After a server creates an instance: an ACL instance owned by it (spec 7.3.2).
pub fn on_create(tree: &mut Tree, servers: usize, ssid: u16, obj: u16, inst: u16) {
    if servers <= 1 || obj == 2 || find(tree, obj, inst).is_some() {
        return;
    }
    let Some(id) = tree.free_instance_id(2) else {
        return;
    };
    tree.set(2, id, 0, Value::Integer(i64::from(obj)));
    tree.set(2, id, 1, Value::Integer(i64::from(inst)));
    tree.set_multi(2, id, 2, [(ssid, Value::Integer(ALL))].into());
    tree.set(2, id, 3, Value::Integer(i64::from(ssid)));
}

/// After an instance is deleted: its ACL instance goes too.
pub fn on_delete(tree: &mut Tree, obj: u16, inst: u16) {
    if let Some(acl) = find(tree, obj, inst) {
        let _ = tree.delete_instance(2, acl);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree() -> Tree {
        let mut t = Tree::default();
        t.set(3, 0, 0, Value::String("x".into()));
        // /3/0: owner 101; 102 may read; others nothing.
        t.set(2, 0, 0, Value::Integer(3));
        t.set(2, 0, 1, Value::Integer(0));
        t.set_multi(2, 0, 2, [(102, Value::Integer(READ))].into());
        t.set(2, 0, 3, Value::Integer(101));
        // Create on /3303 for everybody (default entry 0).
        t.set(2, 1, 0, Value::Integer(3303));
        t.set(2, 1, 1, Value::Integer(65535));
        t.set_multi(2, 1, 2, [(0, Value::Integer(CREATE))].into());
        t.set(2, 1, 3, Value::Integer(101));
        t
    }

    #[test]
    fn single_server_has_full_access_but_never_security() {
        let t = Tree::default();
        assert!(check(&t, 1, 7, 3, Some(0), WRITE).is_ok());
        assert_eq!(
            check(&t, 1, 7, 0, Some(0), READ),
            Err(OpError::Unauthorized)
        );
    }

    #[test]
    fn owner_entry_and_default() {
        let t = tree();
        assert!(
            check(&t, 2, 101, 3, Some(0), WRITE | EXECUTE).is_ok(),
            "owner without an entry has all"
        );
        assert!(check(&t, 2, 102, 3, Some(0), READ).is_ok());
        assert_eq!(
            check(&t, 2, 102, 3, Some(0), WRITE),
            Err(OpError::Unauthorized)
        );
        assert_eq!(
            check(&t, 2, 103, 3, Some(0), READ),
            Err(OpError::Unauthorized)
        );
        assert_eq!(
            check(&t, 2, 101, 4, Some(0), READ),
            Err(OpError::Unauthorized),
            "no ACL instance"
        );
        assert!(check(&t, 2, 103, 3303, None, CREATE).is_ok());
    }

    #[test]
    fn create_and_delete_manage_acl_instances() {
        let mut t = tree();
        on_create(&mut t, 2, 102, 3303, 0);
        assert!(check(&t, 2, 102, 3303, Some(0), WRITE | DELETE).is_ok());
        assert_eq!(
            check(&t, 2, 101, 3303, Some(0), READ),
            Err(OpError::Unauthorized)
        );
        on_delete(&mut t, 3303, 0);
        assert!(find(&t, 3303, 0).is_none());
    }
}
