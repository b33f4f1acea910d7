//! Device management and service enablement (spec 5.4; 1.1 composite operations):
//! turns a classified request into a reply, against the object trees, with access
//! control and content negotiation. Side effects that need the rest of the client
//! (Execute, registration updates) come back as `Effect`s.

use super::acl;
use super::attrs::Attributes;
use super::error::{OpError, OpResult};
use super::tree::{Tree, WriteMode};
use crate::coap::message::codes;
use crate::codec::{self, link::Link, Format, LinkFormat, Record};
use crate::model::{DataType, Path, Registry};
use std::collections::BTreeMap;

/// Objects of an end device's tree that the agent keeps, not its bridge: its
/// /5 Firmware Update (the download and the installer are the agent's).
pub fn agents_object(obj: u16) -> bool {
    obj == 5
}

/// The gateway's own tree and one per end device, chosen by path prefix.
#[derive(Debug, Clone, Default)]
pub struct Trees {
    pub gateway: Tree,
    pub devices: BTreeMap<String, Tree>,
    /// End devices that cannot be reached now (prefix → why): their values are
    /// not served (5.03) rather than served stale.
    pub down: BTreeMap<String, String>,
}

impl Trees {
    pub fn get(&self, prefix: Option<&str>) -> OpResult<&Tree> {
        match prefix {
            None => Ok(&self.gateway),
            Some(p) => self.devices.get(p).ok_or(OpError::NotFound),
        }
    }

    /// The tree to read `path`'s values from: an end device that is down has none
    /// to give, except its Device object, which is the agent's (and says it is down).
    pub fn readable(&self, path: &Path) -> OpResult<&Tree> {
        let prefix = path.prefix.as_deref();
        let tree = self.get(prefix)?;
        match prefix.and_then(|p| self.down.get(p)) {
            Some(why) if !path.object().is_some_and(|o| o == 3 || agents_object(o)) => {
                Err(OpError::Unavailable(why.clone()))
            }
            _ => Ok(tree),
        }
    }

    pub fn get_mut(&mut self, prefix: Option<&str>) -> OpResult<&mut Tree> {
        match prefix {
            None => Ok(&mut self.gateway),
            Some(p) => self.devices.get_mut(p).ok_or(OpError::NotFound),
        }
    }
}

/// Notification attributes per (server, path).
pub type AttrStore = BTreeMap<(u16, Path), Attributes>;

#[derive(Debug, Clone, PartialEq)]
pub enum Effect {
    Execute {
        path: Path,
        args: Vec<(u8, Option<String>)>,
    },
    Written(Path),
    Created(Path),
    Deleted(Path),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Reply {
    pub code: u8,
    pub format: Option<Format>,
    pub payload: Vec<u8>,
    pub location: Vec<String>,
    pub effects: Vec<Effect>,
    /// Set when end devices must act first: the answer waits for their bridges
    /// (one op per end-device instance a request writes; a Write-Composite may
    /// name several).
    pub devices: Vec<DeviceOp>,
}

/// What an end device must carry out before the server is answered.
#[derive(Debug, Clone, PartialEq)]
pub enum DeviceOp {
    /// Values validated against the definitions, to be written to the device and
    /// then into its tree (paths without the prefix).
    Write {
        prefix: String,
        /// The written path without the prefix (the records lie under it).
        path: Path,
        records: Vec<Record>,
    },
    Execute {
        prefix: String,
        path: Path,
        args: String,
    },
}

impl Reply {
    pub fn code(code: u8) -> Self {
        Self {
            code,
            format: None,
            payload: Vec::new(),
            location: Vec::new(),
            effects: Vec::new(),
            devices: Vec::new(),
        }
    }

    fn deferred(op: DeviceOp) -> Self {
        Self {
            devices: vec![op],
            ..Self::code(codes::CHANGED)
        }
    }

    pub fn error(e: &OpError) -> Self {
        let mut r = Self::code(e.code());
        // A diagnostic payload helps whoever reads the server's logs (RFC 7252 5.5.2).
        r.payload = e.to_string().into_bytes();
        r
    }

    fn effect(mut self, e: Effect) -> Self {
        self.effects.push(e);
        self
    }
}

/// What a request asks for, after classification by method, options and path.
#[derive(Debug, Clone, PartialEq)]
pub enum Op {
    Read {
        path: Path,
        accept: Option<u16>,
    },
    Discover {
        path: Path,
    },
    Write {
        path: Path,
        format: Option<u16>,
        payload: Vec<u8>,
        replace: bool,
    },
    WriteAttributes {
        path: Path,
        queries: Vec<String>,
    },
    Execute {
        path: Path,
        payload: Vec<u8>,
    },
    Create {
        path: Path,
        format: Option<u16>,
        payload: Vec<u8>,
    },
    Delete {
        path: Path,
    },
    ReadComposite {
        format: Option<u16>,
        accept: Option<u16>,
        payload: Vec<u8>,
    },
    WriteComposite {
        format: Option<u16>,
        payload: Vec<u8>,
    },
}

pub struct Dm<'a> {
    pub reg: &'a Registry,
    pub trees: &'a mut Trees,
    pub attrs: &'a mut AttrStore,
    /// Number of server accounts: access control applies above one.
    pub servers: usize,
    pub ssid: u16,
    /// Format for multi-resource content when the server sends no Accept.
    pub default_format: Format,
}

pub fn type_of(reg: &Registry, p: &Path) -> Option<DataType> {
    reg.get(p.object()?)?
        .resource(p.resource()?)
        .map(|r| r.data_type)
}

fn format_of(n: Option<u16>, path: &Path) -> OpResult<Format> {
    match n {
        Some(n) => Format::from_number(n).ok_or(OpError::UnsupportedFormat(n)),
        // No Content-Format: plain text is the only sensible reading of a single value.
        None if path.len() >= 3 => Ok(Format::Text),
        None => Err(OpError::BadRequest("payload without Content-Format".into())),
    }
}

/// Parses Execute arguments: `0='abc',1` (spec 5.4.5).
pub fn parse_exec_args(payload: &[u8]) -> OpResult<Vec<(u8, Option<String>)>> {
    let s = std::str::from_utf8(payload)
        .map_err(|_| OpError::BadRequest("Execute arguments are not UTF-8".into()))?;
    let bad = || {
        OpError::BadRequest(format!(
            "Execute arguments {s:?} are not digit['=' \"'\" text \"'\"] separated by ','"
        ))
    };
    let mut out = Vec::new();
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        let d = b[i];
        if !d.is_ascii_digit() {
            return Err(bad());
        }
        i += 1;
        let mut val = None;
        if i < b.len() && b[i] == b'=' {
            if b.get(i + 1) != Some(&b'\'') {
                return Err(bad());
            }
            let start = i + 2;
            let end = s[start..].find('\'').ok_or_else(bad)? + start;
            val = Some(s[start..end].to_string());
            i = end + 1;
        }
        out.push((d - b'0', val));
        if i < b.len() {
            if b[i] != b',' || i + 1 == b.len() {
                return Err(bad());
            }
            i += 1;
        }
    }
    Ok(out)
}

impl Dm<'_> {
    pub fn handle(&mut self, op: Op) -> Reply {
        let r = match op {
            Op::Read { path, accept } => self.read(&path, accept),
            Op::Discover { path } => self.discover(&path),
            Op::Write {
                path,
                format,
                payload,
                replace,
            } => self.write(&path, format, &payload, replace),
            Op::WriteAttributes { path, queries } => self.write_attributes(&path, &queries),
            Op::Execute { path, payload } => self.execute(&path, &payload),
            Op::Create {
                path,
                format,
                payload,
            } => self.create(&path, format, &payload),
            Op::Delete { path } => self.delete(&path),
            Op::ReadComposite {
                format,
                accept,
                payload,
            } => self.read_composite(format, accept, &payload),
            Op::WriteComposite { format, payload } => self.write_composite(format, &payload),
        };
        r.unwrap_or_else(|e| Reply::error(&e))
    }

    fn check(&self, tree: &Tree, path: &Path, right: i64) -> OpResult<()> {
        let obj = path.object().ok_or(OpError::MethodNotAllowed)?;
        self.allowed(tree, path.prefix.as_deref(), obj, path.instance(), right)
    }

    /// Access control: the gateway's objects by their own ACL instances; an end
    /// device, all of it, by the ACL instance of its /25 instance (end devices carry
    /// no Access Control object of their own).
    fn allowed(
        &self,
        tree: &Tree,
        prefix: Option<&str>,
        obj: u16,
        inst: Option<u16>,
        right: i64,
    ) -> OpResult<()> {
        let Some(prefix) = prefix else {
            return acl::check(tree, self.servers, self.ssid, obj, inst, right);
        };
        if self.servers <= 1 {
            return Ok(());
        }
        let gw = &self.trees.gateway;
        let slot = gw
            .instance_ids(25)
            .into_iter()
            .find(|i| matches!(gw.get(25, *i, 1), Some(crate::model::Value::String(p)) if p == prefix))
            .ok_or(OpError::Unauthorized)?;
        acl::check(gw, self.servers, self.ssid, 25, Some(slot), right)
    }

    /// Reads `path` as this server may see it: object reads skip instances it has no right to.
    pub fn read_records(&self, path: &Path) -> OpResult<Vec<Record>> {
        let tree = self.trees.readable(path)?;
        let obj = path.object().ok_or(OpError::MethodNotAllowed)?;
        if obj == 0 {
            return Err(OpError::Unauthorized);
        }
        if path.len() == 1 {
            if self.reg.get(obj).is_none() || !tree.objects.contains_key(&obj) {
                return Err(OpError::NotFound);
            }
            let mut out = Vec::new();
            for i in tree.instance_ids(obj) {
                if self
                    .allowed(tree, path.prefix.as_deref(), obj, Some(i), acl::READ)
                    .is_ok()
                {
                    out.extend(tree.read(self.reg, &path.child(i), false)?);
                }
            }
            return Ok(out);
        }
        if tree
            .instance(obj, path.instance().unwrap_or_default())
            .is_none()
        {
            return Err(OpError::NotFound);
        }
        self.check(tree, path, acl::READ)?;
        tree.read(self.reg, path, false)
    }

    /// Encodes records for a read of `path`, honouring Accept (4.06 when impossible).
    pub fn encode_read(
        &self,
        path: &Path,
        accept: Option<u16>,
        records: &[Record],
    ) -> OpResult<(Format, Vec<u8>)> {
        let single = path.len() >= 3 && records.len() == 1 && records[0].0 == *path;
        let format = match accept {
            Some(n) => match Format::from_number(n) {
                Some(Format::Link) | None => {
                    return Err(OpError::NotAcceptable(format!("content-format {n}")))
                }
                Some(f) => f,
            },
            None if single => match records[0].1 {
                crate::model::Value::Opaque(_) => Format::Opaque,
                _ => Format::Text,
            },
            None => self.default_format,
        };
        if matches!(format, Format::Text | Format::Opaque) && !single {
            return Err(OpError::NotAcceptable(
                "plain text and opaque carry a single resource value".into(),
            ));
        }
        let body = codec::encode(format, &path_without_prefix_if_tlv(path, format), records)
            .map_err(OpError::from_encode)?;
        Ok((format, body))
    }

    fn read(&mut self, path: &Path, accept: Option<u16>) -> OpResult<Reply> {
        let records = self.read_records(path)?;
        let (format, payload) = self.encode_read(path, accept, &records)?;
        Ok(Reply {
            format: Some(format),
            payload,
            ..Reply::code(codes::CONTENT)
        })
    }

    fn discover(&mut self, path: &Path) -> OpResult<Reply> {
        let tree = self.trees.get(path.prefix.as_deref())?;
        let obj = path.object().ok_or(OpError::MethodNotAllowed)?;
        if obj == 0 {
            return Err(OpError::Unauthorized);
        }
        let def = self.reg.get(obj).ok_or(OpError::NotFound)?;
        let insts = tree.objects.get(&obj).ok_or(OpError::NotFound)?;
        let mut lf = LinkFormat::default();
        let attrs = |p: &Path| {
            self.attrs
                .get(&(self.ssid, p.clone()))
                .map(Attributes::link_params)
                .unwrap_or_default()
        };
        let with = |mut l: Link, p: &Path| {
            l.attrs.extend(attrs(p));
            l
        };
        let inst_ids: Vec<u16> = match path.instance() {
            Some(i) => {
                if !insts.contains_key(&i) {
                    return Err(OpError::NotFound);
                }
                self.check(tree, path, acl::READ)?;
                vec![i]
            }
            None => insts
                .keys()
                .copied()
                .filter(|i| {
                    self.allowed(tree, path.prefix.as_deref(), obj, Some(*i), acl::READ)
                        .is_ok()
                })
                .collect(),
        };
        let prefix = path.prefix.as_deref();
        if path.len() == 1 {
            let mut l = Link::new(Path::with_prefix(prefix, &[obj]).to_string());
            if def.version != "1.0" {
                l = l.attr("ver", def.version.clone());
            }
            lf.push(with(l, path));
        }
        for i in inst_ids {
            let ipath = Path::with_prefix(prefix, &[obj, i]);
            let inst = &insts[&i];
            if path.len() <= 2 {
                lf.push(with(Link::new(ipath.to_string()), &ipath));
            }
            for (rid, res) in inst {
                if let Some(r) = path.resource() {
                    if r != *rid {
                        continue;
                    }
                }
                let rpath = ipath.child(*rid);
                let mut l = Link::new(rpath.to_string());
                if let super::tree::Res::Multi(m) = res {
                    l = l.attr("dim", m.len().to_string());
                }
                lf.push(with(l, &rpath));
            }
            // Executable resources hold no value but are part of the instance.
            for (rid, rdef) in &def.resources {
                if rdef.ops.execute
                    && !inst.contains_key(rid)
                    && path.resource().is_none_or(|r| r == *rid)
                {
                    let rpath = ipath.child(*rid);
                    lf.push(with(Link::new(rpath.to_string()), &rpath));
                }
            }
        }
        if path.len() >= 3 && lf.links.is_empty() {
            return Err(OpError::NotFound);
        }
        Ok(Reply {
            format: Some(Format::Link),
            payload: lf.render().into_bytes(),
            ..Reply::code(codes::CONTENT)
        })
    }

    fn write(
        &mut self,
        path: &Path,
        format: Option<u16>,
        payload: &[u8],
        replace: bool,
    ) -> OpResult<Reply> {
        let obj = path.object().ok_or(OpError::MethodNotAllowed)?;
        if path.len() < 2 {
            return Err(OpError::MethodNotAllowed);
        }
        let f = format_of(format, path)?;
        let reg = self.reg;
        let types = |p: &Path| type_of(reg, p);
        let tree = self.trees.get(path.prefix.as_deref())?;
        if tree
            .instance(obj, path.instance().unwrap_or_default())
            .is_none()
        {
            return Err(OpError::NotFound);
        }
        self.check(tree, path, acl::WRITE)?;
        let records =
            codec::decode(f, &strip(path), payload, &types).map_err(OpError::from_decode)?;
        if records.is_empty() && path.len() != 3 {
            return Err(OpError::BadRequest("write without values".into()));
        }
        if path.prefix.is_none() && obj == 1 {
            check_server_values(&records)?;
        }
        let mode = if replace {
            WriteMode::Replace
        } else {
            WriteMode::Update
        };
        if let Some(prefix) = path.prefix.as_ref().filter(|_| !agents_object(obj)) {
            // An end device's values change when the device has taken them: checked
            // here on a copy (types, operations, existence), written by its bridge.
            tree.clone().write(reg, &strip(path), &records, mode)?;
            return Ok(Reply::deferred(DeviceOp::Write {
                prefix: prefix.clone(),
                path: strip(path),
                records,
            }));
        }
        let tree = self.trees.get_mut(path.prefix.as_deref())?;
        tree.write(reg, &strip(path), &records, mode)?;
        Ok(Reply::code(codes::CHANGED).effect(Effect::Written(path.clone())))
    }

    fn write_attributes(&mut self, path: &Path, queries: &[String]) -> OpResult<Reply> {
        let tree = self.trees.get(path.prefix.as_deref())?;
        let obj = path.object().ok_or(OpError::MethodNotAllowed)?;
        if obj == 0 {
            return Err(OpError::Unauthorized);
        }
        let def = self.reg.get(obj).ok_or(OpError::NotFound)?;
        if !tree.objects.contains_key(&obj) {
            return Err(OpError::NotFound);
        }
        let mut numeric = false;
        if let Some(i) = path.instance() {
            let Some(instance) = tree.instance(obj, i) else {
                return Err(OpError::NotFound);
            };
            // As for a Read: a resource this instance does not have is not found.
            // An end device's resources may lack a value for now (not polled yet,
            // or down): their definition is what counts.
            if path.prefix.is_none() && path.resource().is_some_and(|r| !instance.contains_key(&r))
            {
                return Err(OpError::NotFound);
            }
            self.check(tree, path, acl::READ)?;
        }
        if let Some(r) = path.resource() {
            let rdef = def.resource(r).ok_or(OpError::NotFound)?;
            numeric = matches!(
                rdef.data_type,
                DataType::Integer | DataType::UnsignedInteger | DataType::Float | DataType::Time
            );
        }
        let key = (self.ssid, path.clone());
        let current = self.attrs.get(&key).cloned().unwrap_or_default();
        let next = current.apply(queries, path.len(), numeric)?;
        if next.is_empty() {
            self.attrs.remove(&key);
        } else {
            self.attrs.insert(key, next);
        }
        Ok(Reply::code(codes::CHANGED))
    }

    fn execute(&mut self, path: &Path, payload: &[u8]) -> OpResult<Reply> {
        if path.len() != 3 {
            return Err(OpError::MethodNotAllowed);
        }
        let tree = self.trees.get(path.prefix.as_deref())?;
        let obj = path.object().unwrap_or_default();
        let def = self.reg.get(obj).ok_or(OpError::NotFound)?;
        let rdef = def
            .resource(path.resource().unwrap_or_default())
            .ok_or(OpError::NotFound)?;
        if tree
            .instance(obj, path.instance().unwrap_or_default())
            .is_none()
        {
            return Err(OpError::NotFound);
        }
        self.check(tree, path, acl::EXECUTE)?;
        if !rdef.ops.execute {
            return Err(OpError::MethodNotAllowed);
        }
        let args = parse_exec_args(payload)?;
        if let Some(prefix) = &path.prefix {
            return Ok(Reply::deferred(DeviceOp::Execute {
                prefix: prefix.clone(),
                path: strip(path),
                args: String::from_utf8_lossy(payload).into_owned(),
            }));
        }
        Ok(Reply::code(codes::CHANGED).effect(Effect::Execute {
            path: path.clone(),
            args,
        }))
    }

    fn create(&mut self, path: &Path, format: Option<u16>, payload: &[u8]) -> OpResult<Reply> {
        if path.len() != 1 {
            return Err(OpError::MethodNotAllowed);
        }
        let obj = path.object().unwrap_or_default();
        let def = self.reg.get(obj).ok_or(OpError::NotFound)?;
        if matches!(obj, 0 | 1) {
            // Server accounts come from bootstrap only.
            return Err(OpError::Unauthorized);
        }
        // Any object with a definition can be created, instances or not.
        let tree = self.trees.get(path.prefix.as_deref())?;
        self.check(tree, path, acl::CREATE)?;
        if !def.multiple && !tree.instance_ids(obj).is_empty() {
            return Err(OpError::BadRequest(format!(
                "object {obj} is single-instance"
            )));
        }
        let f = format_of(format, path)?;
        let reg = self.reg;
        let types = |p: &Path| type_of(reg, p);
        let base = strip(path);
        // With an instance id the payload names it; without, the client picks one.
        let records = match f {
            Format::Tlv if !codec::tlv_starts_with_instance(payload) => {
                let id = tree
                    .free_instance_id(obj)
                    .ok_or(OpError::Internal("no free instance id".into()))?;
                codec::decode(f, &base.child(id), payload, &types)
            }
            Format::Text | Format::Opaque => {
                return Err(OpError::BadRequest(
                    "Create needs TLV, SenML or JSON".into(),
                ))
            }
            _ => codec::decode(f, &base, payload, &types),
        }
        .map_err(OpError::from_decode)?;
        let ids: std::collections::BTreeSet<u16> =
            records.iter().filter_map(|(p, _)| p.instance()).collect();
        let inst = match ids.len() {
            1 => *ids.iter().next().unwrap_or(&0),
            0 => tree
                .free_instance_id(obj)
                .ok_or(OpError::Internal("no free instance id".into()))?,
            _ => {
                return Err(OpError::BadRequest(
                    "Create of more than one instance".into(),
                ))
            }
        };
        if tree.instance(obj, inst).is_some() {
            return Err(OpError::BadRequest(format!(
                "instance /{obj}/{inst} exists"
            )));
        }
        // Resources the server writes must be writable; mandatory writable ones must be present.
        for (p, _) in &records {
            let r = def
                .resource(p.resource().unwrap_or_default())
                .ok_or(OpError::NotFound)?;
            if !r.ops.write {
                return Err(OpError::BadRequest(format!("{p} is not writable")));
            }
        }
        for (rid, r) in &def.resources {
            if r.mandatory
                && r.ops.write
                && !records.iter().any(|(p, _)| p.resource() == Some(*rid))
            {
                return Err(OpError::BadRequest(format!(
                    "mandatory resource {rid} missing"
                )));
            }
        }
        let ipath = Path::new(&[obj, inst]);
        let servers = self.servers;
        let ssid = self.ssid;
        let tree = self.trees.get_mut(path.prefix.as_deref())?;
        tree.objects
            .entry(obj)
            .or_default()
            .insert(inst, Default::default());
        if let Err(e) = tree.write(reg, &ipath, &records, WriteMode::Provision) {
            let _ = tree.delete_instance(obj, inst);
            return Err(e);
        }
        acl::on_create(&mut self.trees.gateway, servers, ssid, obj, inst);
        let created = Path::with_prefix(path.prefix.as_deref(), &[obj, inst]);
        Ok(Reply {
            location: created.segments(),
            ..Reply::code(codes::CREATED).effect(Effect::Created(created))
        })
    }

    fn delete(&mut self, path: &Path) -> OpResult<Reply> {
        if path.len() != 2 {
            return Err(OpError::MethodNotAllowed);
        }
        let (obj, inst) = (
            path.object().unwrap_or_default(),
            path.instance().unwrap_or_default(),
        );
        if matches!(obj, 0 | 1) {
            return Err(OpError::Unauthorized);
        }
        let tree = self.trees.get(path.prefix.as_deref())?;
        if tree.instance(obj, inst).is_none() {
            return Err(OpError::NotFound);
        }
        self.check(tree, path, acl::DELETE)?;
        if obj == 3 || (obj == 25 && path.prefix.is_none()) {
            // The Device object and end-device registrations are the agent's own.
            return Err(OpError::MethodNotAllowed);
        }
        self.trees
            .get_mut(path.prefix.as_deref())?
            .delete_instance(obj, inst)?;
        acl::on_delete(&mut self.trees.gateway, obj, inst);
        self.attrs.retain(|(_, p), _| !path.contains(p));
        Ok(Reply::code(codes::DELETED).effect(Effect::Deleted(path.clone())))
    }

    fn read_composite(
        &mut self,
        format: Option<u16>,
        accept: Option<u16>,
        payload: &[u8],
    ) -> OpResult<Reply> {
        let f = Format::from_number(format.ok_or(OpError::BadRequest(
            "Read-Composite without Content-Format".into(),
        ))?)
        .ok_or(OpError::UnsupportedFormat(format.unwrap_or_default()))?;
        let paths = codec::decode_paths(f, payload).map_err(|e| match e {
            codec::CodecError::Unsupported(_) => OpError::UnsupportedFormat(f.number()),
            other => OpError::from_decode(other),
        })?;
        let out_format = match accept.map(Format::from_number) {
            None => f,
            Some(Some(a @ (Format::SenmlJson | Format::SenmlCbor))) => a,
            Some(_) => {
                return Err(OpError::NotAcceptable(
                    "Read-Composite answers in SenML".into(),
                ))
            }
        };
        let mut records = Vec::new();
        for p in &paths {
            match self.read_records(p) {
                Ok(mut r) => records.append(&mut r),
                Err(OpError::NotFound) => {}
                Err(e) => return Err(e),
            }
        }
        if records.is_empty() && !paths.is_empty() {
            return Err(OpError::NotFound);
        }
        let payload =
            codec::encode_absolute(out_format, &records, None).map_err(OpError::from_encode)?;
        Ok(Reply {
            format: Some(out_format),
            payload,
            ..Reply::code(codes::CONTENT)
        })
    }

    fn write_composite(&mut self, format: Option<u16>, payload: &[u8]) -> OpResult<Reply> {
        let f = Format::from_number(format.ok_or(OpError::BadRequest(
            "Write-Composite without Content-Format".into(),
        ))?)
        .ok_or(OpError::UnsupportedFormat(format.unwrap_or_default()))?;
        let reg = self.reg;
        let types = |p: &Path| type_of(reg, p);
        let records = codec::decode_composite(f, payload, &types).map_err(|e| match e {
            codec::CodecError::Unsupported(_) => OpError::UnsupportedFormat(f.number()),
            other => OpError::from_decode(other),
        })?;
        // Group by instance; apply to copies; commit only if every write succeeds.
        let mut groups: BTreeMap<Path, Vec<Record>> = BTreeMap::new();
        for (p, v) in records {
            if p.len() < 3 {
                return Err(OpError::BadRequest(format!("{p} is not a resource")));
            }
            let ipath = Path::with_prefix(p.prefix.as_deref(), &p.ids()[..2]);
            groups.entry(ipath).or_default().push((p, v));
        }
        // Every group is checked before anything is applied; the end devices' trees
        // change only once their devices have taken the values (see `DeviceOp`).
        let mut staged = self.trees.clone();
        let mut devices = Vec::new();
        for (ipath, recs) in &groups {
            let tree = staged.get(ipath.prefix.as_deref())?;
            if tree
                .instance(
                    ipath.object().unwrap_or_default(),
                    ipath.instance().unwrap_or_default(),
                )
                .is_none()
            {
                return Err(OpError::NotFound);
            }
            self.check(tree, ipath, acl::WRITE)?;
            let stripped: Vec<Record> = recs.iter().map(|(p, v)| (strip(p), v.clone())).collect();
            staged.get_mut(ipath.prefix.as_deref())?.write(
                reg,
                &strip(ipath),
                &stripped,
                WriteMode::Update,
            )?;
            if let Some(prefix) = &ipath.prefix {
                devices.push(DeviceOp::Write {
                    prefix: prefix.clone(),
                    path: strip(ipath),
                    records: stripped,
                });
            }
        }
        // The gateway's own part is committed now; the staged end-device trees were
        // only the check.
        self.trees.gateway = staged.gateway;
        let mut reply = Reply::code(codes::CHANGED);
        for ipath in groups.keys().filter(|p| p.prefix.is_none()) {
            reply.effects.push(Effect::Written(ipath.clone()));
        }
        reply.devices = devices;
        Ok(reply)
    }
}

/// Values a server may write into its Server object instance but that would break
/// the registration: a lifetime of 0, a negative period, a binding we cannot use.
fn check_server_values(records: &[Record]) -> OpResult<()> {
    use crate::model::Value;
    for (p, v) in records {
        let bad = |what: &str| Err(OpError::BadRequest(format!("{p}: {what}")));
        match (p.resource(), v) {
            (Some(1), Value::Integer(i)) if *i <= 0 || *i > i64::from(u32::MAX) => {
                return bad("lifetime must be a positive number of seconds")
            }
            (Some(2 | 3 | 5), Value::Integer(i)) if *i < 0 => return bad("must not be negative"),
            (Some(7), Value::String(b)) if !crate::config::BINDINGS.contains(&b.as_str()) => {
                return bad("binding must be one of U, UQ, S, SQ, US, UQS")
            }
            _ => {}
        }
    }
    Ok(())
}

/// Trees are addressed without the prefix once selected.
fn strip(p: &Path) -> Path {
    Path::new(p.ids())
}

/// Payload paths keep the prefix in SenML names (`"bn":"/dev1/3303/0/"`); TLV has no names.
fn path_without_prefix_if_tlv(p: &Path, f: Format) -> Path {
    match f {
        Format::Tlv | Format::Text | Format::Opaque => strip(p),
        _ => p.clone(),
    }
}

#[cfg(test)]
mod tests;
