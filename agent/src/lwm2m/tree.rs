//! Object instances and their resource values: the data every operation works on.
//! One `Tree` per addressable device: the gateway's own, and (later) one per end
//! device behind it, selected by path prefix.

use super::error::{OpError, OpResult};
use crate::codec::Record;
use crate::model::{ObjectDef, Path, Registry, Value};
use std::collections::BTreeMap;

#[derive(Debug, Clone, PartialEq)]
pub enum Res {
    Single(Value),
    Multi(BTreeMap<u16, Value>),
}

pub type Instance = BTreeMap<u16, Res>;

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Tree {
    /// Object id → instances. An object present with no instances is still listed
    /// in the registration (it is supported).
    pub objects: BTreeMap<u16, BTreeMap<u16, Instance>>,
}

/// How a write treats resources that the payload does not mention.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteMode {
    /// PUT: the target is replaced.
    Replace,
    /// POST: only the given resources change.
    Update,
    /// Create / bootstrap: no operation checks on the resources.
    Provision,
}

impl Tree {
    pub fn instance(&self, obj: u16, inst: u16) -> Option<&Instance> {
        self.objects.get(&obj)?.get(&inst)
    }

    pub fn instance_mut(&mut self, obj: u16, inst: u16) -> Option<&mut Instance> {
        self.objects.get_mut(&obj)?.get_mut(&inst)
    }

    pub fn instance_ids(&self, obj: u16) -> Vec<u16> {
        self.objects
            .get(&obj)
            .map(|m| m.keys().copied().collect())
            .unwrap_or_default()
    }

    pub fn get(&self, obj: u16, inst: u16, res: u16) -> Option<&Value> {
        match self.instance(obj, inst)?.get(&res)? {
            Res::Single(v) => Some(v),
            Res::Multi(_) => None,
        }
    }

    pub fn set(&mut self, obj: u16, inst: u16, res: u16, v: Value) {
        self.objects
            .entry(obj)
            .or_default()
            .entry(inst)
            .or_default()
            .insert(res, Res::Single(v));
    }

    pub fn set_multi(&mut self, obj: u16, inst: u16, res: u16, vals: BTreeMap<u16, Value>) {
        self.objects
            .entry(obj)
            .or_default()
            .entry(inst)
            .or_default()
            .insert(res, Res::Multi(vals));
    }

    pub fn get_i64(&self, obj: u16, inst: u16, res: u16) -> Option<i64> {
        self.get(obj, inst, res)?.as_i64()
    }

    /// Reads everything readable at `path` (resource values only; executables skipped).
    /// `all` ignores the R flag (bootstrap and internal reads).
    pub fn read(&self, reg: &Registry, path: &Path, all: bool) -> OpResult<Vec<Record>> {
        let ids = path.ids();
        let obj = *ids.first().ok_or(OpError::MethodNotAllowed)?;
        let def = reg.get(obj).ok_or(OpError::NotFound)?;
        let insts = self.objects.get(&obj).ok_or(OpError::NotFound)?;
        let mut out = Vec::new();
        match ids.len() {
            1 => {
                for (i, inst) in insts {
                    push_instance(&mut out, def, &path.child(*i), inst, all);
                }
            }
            2 => {
                let inst = insts.get(&ids[1]).ok_or(OpError::NotFound)?;
                push_instance(&mut out, def, path, inst, all);
            }
            _ => {
                let inst = insts.get(&ids[1]).ok_or(OpError::NotFound)?;
                let rdef = def.resource(ids[2]).ok_or(OpError::NotFound)?;
                if !all && !rdef.ops.read {
                    return Err(OpError::MethodNotAllowed);
                }
                let res = inst.get(&ids[2]).ok_or(OpError::NotFound)?;
                match (res, ids.get(3)) {
                    (Res::Single(v), None) => out.push((path.clone(), v.clone())),
                    (Res::Multi(m), None) => {
                        out.extend(m.iter().map(|(ri, v)| (path.child(*ri), v.clone())))
                    }
                    (Res::Multi(m), Some(ri)) => {
                        out.push((path.clone(), m.get(ri).ok_or(OpError::NotFound)?.clone()))
                    }
                    (Res::Single(_), Some(_)) => return Err(OpError::NotFound),
                }
            }
        }
        Ok(out)
    }

    /// Validates then applies records under `target` (an instance, resource or
    /// resource instance path, without prefix handling: the caller chose the tree).
    pub fn write(
        &mut self,
        reg: &Registry,
        target: &Path,
        records: &[Record],
        mode: WriteMode,
    ) -> OpResult<()> {
        let ids = target.ids();
        if ids.len() < 2 {
            return Err(OpError::MethodNotAllowed);
        }
        let (obj, inst) = (ids[0], ids[1]);
        let def = reg.get(obj).ok_or(OpError::NotFound)?;
        if mode != WriteMode::Provision && self.instance(obj, inst).is_none() {
            return Err(OpError::NotFound);
        }
        // Validate every record before touching anything: a write is all or nothing.
        for (p, v) in records {
            if !target.contains(p)
                || p.len() < 3
                || p.object() != Some(obj)
                || p.instance() != Some(inst)
            {
                return Err(OpError::BadRequest(format!("{p} is not under {target}")));
            }
            let rid = p.resource().unwrap_or_default();
            let rdef = def.resource(rid).ok_or(OpError::NotFound)?;
            if mode != WriteMode::Provision && !rdef.ops.write {
                return Err(OpError::MethodNotAllowed);
            }
            if p.len() == 4 && !rdef.multiple {
                return Err(OpError::BadRequest(format!(
                    "{p}: resource {rid} is single-instance"
                )));
            }
            if p.len() == 3 && rdef.multiple {
                return Err(OpError::BadRequest(format!(
                    "{p}: resource {rid} takes resource instances"
                )));
            }
            if v.data_type() != rdef.data_type {
                return Err(OpError::BadRequest(format!(
                    "{p}: expected {:?}, got {:?}",
                    rdef.data_type,
                    v.data_type()
                )));
            }
        }
        let instance = self
            .objects
            .entry(obj)
            .or_default()
            .entry(inst)
            .or_default();
        if mode == WriteMode::Replace {
            match ids.len() {
                2 => {
                    // Replace the instance: writable resources not in the payload go.
                    instance.retain(|rid, _| def.resource(*rid).is_some_and(|r| !r.ops.write));
                }
                3 => {
                    instance.remove(&ids[2]);
                }
                _ => {}
            }
        }
        for (p, v) in records {
            let rid = p.resource().unwrap_or_default();
            match p.resource_instance() {
                None => {
                    instance.insert(rid, Res::Single(v.clone()));
                }
                Some(ri) => {
                    let entry = instance
                        .entry(rid)
                        .or_insert_with(|| Res::Multi(BTreeMap::new()));
                    if let Res::Single(_) = entry {
                        *entry = Res::Multi(BTreeMap::new());
                    }
                    if let Res::Multi(m) = entry {
                        m.insert(ri, v.clone());
                    }
                }
            }
        }
        // An empty multiple resource written by replace still exists.
        if mode == WriteMode::Replace
            && ids.len() == 3
            && records.is_empty()
            && def.resource(ids[2]).is_some_and(|r| r.multiple)
        {
            instance.insert(ids[2], Res::Multi(BTreeMap::new()));
        }
        Ok(())
    }

    pub fn delete_instance(&mut self, obj: u16, inst: u16) -> OpResult<()> {
        self.objects
            .get_mut(&obj)
            .and_then(|m| m.remove(&inst))
            .map(|_| ())
            .ok_or(OpError::NotFound)
    }

    /// Lowest free instance id of an object.
    pub fn free_instance_id(&self, obj: u16) -> Option<u16> {
        let used = self.objects.get(&obj);
        (0..=crate::model::path::MAX_ID).find(|i| used.is_none_or(|m| !m.contains_key(i)))
    }
}

fn push_instance(out: &mut Vec<Record>, def: &ObjectDef, ipath: &Path, inst: &Instance, all: bool) {
    for (rid, res) in inst {
        if !all && !def.resource(*rid).is_some_and(|r| r.ops.read) {
            continue;
        }
        let rp = ipath.child(*rid);
        match res {
            Res::Single(v) => out.push((rp, v.clone())),
            Res::Multi(m) => out.extend(m.iter().map(|(ri, v)| (rp.child(*ri), v.clone()))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Path {
        Path::parse(s).unwrap()
    }

    fn device() -> (Registry, Tree) {
        let reg = Registry::builtin();
        let mut t = Tree::default();
        t.set(3, 0, 0, Value::String("ACME".into()));
        t.set(3, 0, 13, Value::Time(100));
        t.set_multi(3, 0, 11, [(0, Value::Integer(0))].into());
        t.set(1, 0, 0, Value::Integer(101));
        t.set(1, 0, 1, Value::Integer(300));
        (reg, t)
    }

    #[test]
    fn reads_each_level() {
        let (reg, t) = device();
        assert_eq!(
            t.read(&reg, &p("/3/0/0"), false).unwrap(),
            vec![(p("/3/0/0"), Value::String("ACME".into()))]
        );
        assert_eq!(t.read(&reg, &p("/3/0"), false).unwrap().len(), 3);
        assert_eq!(t.read(&reg, &p("/3"), false).unwrap().len(), 3);
        assert_eq!(
            t.read(&reg, &p("/3/0/11"), false).unwrap(),
            vec![(p("/3/0/11/0"), Value::Integer(0))]
        );
        assert_eq!(t.read(&reg, &p("/3/0/11/0"), false).unwrap().len(), 1);
        assert_eq!(t.read(&reg, &p("/3/0/11/5"), false), Err(OpError::NotFound));
        assert_eq!(t.read(&reg, &p("/3/1"), false), Err(OpError::NotFound));
        assert_eq!(t.read(&reg, &p("/3/0/1"), false), Err(OpError::NotFound));
        assert_eq!(
            t.read(&reg, &p("/3/0/4"), false),
            Err(OpError::MethodNotAllowed)
        );
        assert_eq!(t.read(&reg, &p("/9999"), false), Err(OpError::NotFound));
    }

    #[test]
    fn writes_are_validated_and_atomic() {
        let (reg, mut t) = device();
        let before = t.clone();
        let recs = vec![
            (p("/1/0/1"), Value::Integer(60)),
            (p("/1/0/0"), Value::Integer(5)),
        ];
        assert_eq!(
            t.write(&reg, &p("/1/0"), &recs, WriteMode::Update),
            Err(OpError::MethodNotAllowed)
        );
        assert_eq!(t, before, "nothing applied");
        let recs = vec![(p("/1/0/1"), Value::String("x".into()))];
        assert!(matches!(
            t.write(&reg, &p("/1/0"), &recs, WriteMode::Update),
            Err(OpError::BadRequest(_))
        ));
        let recs = vec![(p("/1/0/1"), Value::Integer(60))];
        t.write(&reg, &p("/1/0"), &recs, WriteMode::Update).unwrap();
        assert_eq!(t.get_i64(1, 0, 1), Some(60));
        assert_eq!(
            t.write(&reg, &p("/1/5"), &recs, WriteMode::Update),
            Err(OpError::NotFound)
        );
    }

    #[test]
    fn replace_drops_unmentioned_writable_resources() {
        let (reg, mut t) = device();
        t.set(1, 0, 2, Value::Integer(10));
        t.write(
            &reg,
            &p("/1/0"),
            &[(p("/1/0/1"), Value::Integer(70))],
            WriteMode::Replace,
        )
        .unwrap();
        assert_eq!(t.get_i64(1, 0, 2), None, "pmin removed");
        assert_eq!(t.get_i64(1, 0, 0), Some(101), "read-only ssid kept");
    }

    #[test]
    fn multi_resource_replace_and_update() {
        let reg = Registry::builtin();
        let mut t = Tree::default();
        t.set(2, 0, 0, Value::Integer(3));
        t.set_multi(
            2,
            0,
            2,
            [(101, Value::Integer(1)), (102, Value::Integer(1))].into(),
        );
        t.write(
            &reg,
            &p("/2/0/2"),
            &[(p("/2/0/2/103"), Value::Integer(15))],
            WriteMode::Update,
        )
        .unwrap();
        assert_eq!(t.read(&reg, &p("/2/0/2"), false).unwrap().len(), 3);
        t.write(
            &reg,
            &p("/2/0/2"),
            &[(p("/2/0/2/104"), Value::Integer(15))],
            WriteMode::Replace,
        )
        .unwrap();
        assert_eq!(
            t.read(&reg, &p("/2/0/2"), false).unwrap(),
            vec![(p("/2/0/2/104"), Value::Integer(15))]
        );
    }
}
