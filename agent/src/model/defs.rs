//! Object and resource definitions as data: built in for the objects lwgate
//! implements, loaded from OMA DDF XML for anything else.

use super::value::DataType;
use std::collections::BTreeMap;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Operations {
    pub read: bool,
    pub write: bool,
    pub execute: bool,
}

impl Operations {
    pub const NONE: Self = Self::new(false, false, false);
    pub const R: Self = Self::new(true, false, false);
    pub const W: Self = Self::new(false, true, false);
    pub const RW: Self = Self::new(true, true, false);
    pub const E: Self = Self::new(false, false, true);

    pub const fn new(read: bool, write: bool, execute: bool) -> Self {
        Self {
            read,
            write,
            execute,
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        let s = s.trim().to_ascii_uppercase();
        if s.is_empty() || s == "NONE" {
            return Some(Self::NONE);
        }
        let mut o = Self::NONE;
        for c in s.chars() {
            match c {
                'R' => o.read = true,
                'W' => o.write = true,
                'E' => o.execute = true,
                _ => return None,
            }
        }
        Some(o)
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct ResourceDef {
    pub id: u16,
    pub name: String,
    pub ops: Operations,
    pub multiple: bool,
    pub mandatory: bool,
    pub data_type: DataType,
    pub range: Option<String>,
    pub units: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ObjectDef {
    pub id: u16,
    pub name: String,
    /// "1.0" unless the definition says otherwise; sent as `ver=` when not 1.0.
    pub version: String,
    pub multiple: bool,
    pub mandatory: bool,
    pub resources: BTreeMap<u16, ResourceDef>,
}

impl ObjectDef {
    pub fn resource(&self, id: u16) -> Option<&ResourceDef> {
        self.resources.get(&id)
    }
}

/// All object definitions known to this agent, by object id.
#[derive(Debug, Clone, Default)]
pub struct Registry {
    objects: BTreeMap<u16, ObjectDef>,
}

impl Registry {
    pub fn builtin() -> Self {
        let mut r = Self::default();
        for def in super::builtin::definitions() {
            r.insert(def);
        }
        r
    }

    /// Adds or replaces a definition; returns the one it replaced.
    pub fn insert(&mut self, def: ObjectDef) -> Option<ObjectDef> {
        self.objects.insert(def.id, def)
    }

    pub fn get(&self, id: u16) -> Option<&ObjectDef> {
        self.objects.get(&id)
    }

    pub fn len(&self) -> usize {
        self.objects.len()
    }

    pub fn is_empty(&self) -> bool {
        self.objects.is_empty()
    }
}
