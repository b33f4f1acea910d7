//! The IPSO object definitions shipped in objects/ (installed to
//! /usr/share/lwgate/objects) load with lwgate's DDF parser, completely, and say
//! what the OMA LwM2M registry says.

use lwgate::model::ddf::{load_dirs, parse};
use lwgate::model::{DataType, ObjectDef, Operations, ResourceDef};
use std::collections::BTreeMap;
use std::path::PathBuf;

const IDS: [u16; 18] = [
    6, 3200, 3201, 3202, 3203, 3300, 3301, 3303, 3304, 3306, 3311, 3316, 3317, 3323, 3328, 3331,
    3342, 3347,
];

fn objects_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../objects")
}

fn load() -> BTreeMap<u16, ObjectDef> {
    let (defs, errors) = load_dirs(&[objects_dir()]);
    let errors: Vec<String> = errors.iter().map(ToString::to_string).collect();
    assert!(errors.is_empty(), "DDF errors: {errors:#?}");
    let mut by_id = BTreeMap::new();
    for d in defs {
        let id = d.id;
        assert!(by_id.insert(id, d).is_none(), "object {id} defined twice");
    }
    by_id
}

fn res(objs: &BTreeMap<u16, ObjectDef>, oid: u16, rid: u16) -> &ResourceDef {
    objs.get(&oid)
        .unwrap_or_else(|| panic!("object {oid} missing"))
        .resource(rid)
        .unwrap_or_else(|| panic!("/{oid}/{rid} missing"))
}

/// Checks name, type, operations and mandatory/optional of one resource.
fn check(
    objs: &BTreeMap<u16, ObjectDef>,
    oid: u16,
    rid: u16,
    name: &str,
    ty: DataType,
    ops: Operations,
    mandatory: bool,
) {
    let r = res(objs, oid, rid);
    assert_eq!(
        (r.name.as_str(), r.data_type, r.ops, r.mandatory, r.multiple),
        (name, ty, ops, mandatory, false),
        "/{oid}/{rid}"
    );
}

#[test]
fn every_object_is_there_once_and_loads_without_errors() {
    let objs = load();
    let ids: Vec<u16> = objs.keys().copied().collect();
    assert_eq!(
        ids, IDS,
        "the objects directory holds exactly these objects"
    );
    for id in IDS {
        let d = &objs[&id];
        assert!(!d.mandatory, "{id} is Optional");
        // Location is the gateway's own, one instance; the sensors are many.
        assert_eq!(d.multiple, id != 6, "{id} is Multiple unless Location");
        assert_eq!(d.version, if id == 6 { "1.1" } else { "1.0" }, "{id}");
        assert!(!d.name.is_empty(), "{id} has a name");
    }
    check(
        &objs,
        6,
        0,
        "Latitude",
        DataType::Float,
        Operations::RW,
        true,
    );
    check(
        &objs,
        6,
        5,
        "Timestamp",
        DataType::Time,
        Operations::R,
        true,
    );
    check(&objs, 6, 6, "Speed", DataType::Float, Operations::R, false);
}

#[test]
fn files_are_named_by_object_id() {
    for id in IDS {
        let path = objects_dir().join(format!("{id}.xml"));
        let xml = std::fs::read_to_string(&path).unwrap();
        let defs = parse(&path.display().to_string(), &xml).unwrap();
        assert_eq!(defs.len(), 1, "{id}.xml holds one object");
        assert_eq!(defs[0].id, id);
    }
}

/// The parser keeps every <Item> and every field it models: compare with a plain
/// reading of the XML.
#[test]
fn nothing_the_parser_models_is_lost() {
    let objs = load();
    for id in IDS {
        let xml = std::fs::read_to_string(objects_dir().join(format!("{id}.xml"))).unwrap();
        let doc = roxmltree::Document::parse(&xml).unwrap();
        let text = |n: roxmltree::Node, tag: &str| -> String {
            let c = n.children().find(|c| c.has_tag_name(tag));
            let c = c.unwrap_or_else(|| panic!("{id}: <{tag}> missing"));
            c.text().unwrap_or("").trim().to_string()
        };
        let items: Vec<_> = doc
            .descendants()
            .filter(|n| n.has_tag_name("Item"))
            .collect();
        let d = &objs[&id];
        assert_eq!(d.resources.len(), items.len(), "{id}: every Item is kept");
        for item in items {
            let rid: u16 = item.attribute("ID").unwrap().parse().unwrap();
            let r = d.resource(rid).unwrap();
            assert_eq!(r.name, text(item, "Name"), "/{id}/{rid}");
            let ops = text(item, "Operations");
            assert!(
                matches!(ops.as_str(), "R" | "W" | "RW" | "E"),
                "/{id}/{rid}"
            );
            assert_eq!(Some(r.ops), Operations::parse(&ops), "/{id}/{rid}");
            let ty = text(item, "Type");
            if r.ops.execute {
                assert_eq!(
                    (ty.as_str(), r.data_type),
                    ("", DataType::None),
                    "/{id}/{rid}"
                );
            } else {
                assert_ne!(r.data_type, DataType::None, "/{id}/{rid}: typed");
                assert_eq!(Some(r.data_type), DataType::parse(&ty), "/{id}/{rid}");
            }
            let opt = |s: String| Some(s).filter(|s| !s.is_empty());
            assert_eq!(r.range, opt(text(item, "RangeEnumeration")), "/{id}/{rid}");
            assert_eq!(r.units, opt(text(item, "Units")), "/{id}/{rid}");
            assert_eq!(r.multiple, text(item, "MultipleInstances") == "Multiple");
            assert_eq!(r.mandatory, text(item, "Mandatory") == "Mandatory");
            assert!(!text(item, "Description").is_empty(), "/{id}/{rid}");
        }
    }
}

#[test]
fn resources_match_the_registry() {
    use DataType::{Boolean, Float, Integer, String, Time};
    let o = load();
    let (r, rw, e) = (Operations::R, Operations::RW, Operations::E);
    let none = DataType::None;

    check(&o, 3200, 5500, "Digital Input State", Boolean, r, true);
    check(&o, 3200, 5501, "Digital Input Counter", Integer, r, false);
    check(
        &o,
        3200,
        5505,
        "Digital Input Counter Reset",
        none,
        e,
        false,
    );
    assert_eq!(res(&o, 3200, 5503).units.as_deref(), Some("ms"));
    assert_eq!(res(&o, 3200, 5504).range.as_deref(), Some("1..3"));
    check(&o, 3200, 5518, "Timestamp", Time, r, false);

    check(&o, 3201, 5550, "Digital Output State", Boolean, rw, true);
    check(
        &o,
        3201,
        5551,
        "Digital Output Polarity",
        Boolean,
        rw,
        false,
    );

    check(&o, 3202, 5600, "Analog Input Current Value", Float, r, true);
    check(&o, 3202, 5751, "Sensor Type", String, r, false);

    check(
        &o,
        3203,
        5650,
        "Analog Output Current Value",
        Float,
        rw,
        true,
    );
    assert_eq!(res(&o, 3203, 5650).range.as_deref(), Some("0..1"));

    check(&o, 3300, 5700, "Sensor Value", Float, r, true);
    check(&o, 3300, 5701, "Sensor Units", String, r, false);
    check(&o, 3300, 5750, "Application Type", String, rw, false);

    check(&o, 3301, 5700, "Sensor Value", Float, r, true);
    check(
        &o,
        3301,
        5605,
        "Reset Min and Max Measured Values",
        none,
        e,
        false,
    );

    check(&o, 3303, 5700, "Sensor Value", Float, r, true);
    check(&o, 3303, 5601, "Min Measured Value", Float, r, false);
    check(
        &o,
        3303,
        5605,
        "Reset Min and Max Measured Values",
        none,
        e,
        false,
    );
    check(
        &o,
        3303,
        6042,
        "Measurement Quality Indicator",
        Integer,
        r,
        false,
    );
    assert_eq!(res(&o, 3303, 6042).range.as_deref(), Some("0..23"));
    assert_eq!(res(&o, 3303, 6050).units.as_deref(), Some("s"));

    check(&o, 3304, 5700, "Sensor Value", Float, r, true);
    check(&o, 3304, 5602, "Max Measured Value", Float, r, false);

    check(&o, 3306, 5850, "On/Off", Boolean, rw, true);
    check(&o, 3306, 5851, "Dimmer", Integer, rw, false);
    assert_eq!(res(&o, 3306, 5851).range.as_deref(), Some("0..100"));
    assert_eq!(res(&o, 3306, 5851).units.as_deref(), Some("/100"));
    check(&o, 3306, 5853, "Muti-state Output", String, rw, false);

    check(&o, 3311, 5850, "On/Off", Boolean, rw, true);
    check(&o, 3311, 5851, "Dimmer", Integer, rw, false);
    // This registry version spells the range "0-100" and the unit "%".
    assert_eq!(res(&o, 3311, 5851).range.as_deref(), Some("0-100"));
    assert_eq!(res(&o, 3311, 5851).units.as_deref(), Some("%"));
    check(&o, 3311, 5706, "Colour", String, rw, false);
    assert_eq!(res(&o, 3311, 5805).units.as_deref(), Some("Wh"));

    for id in [3316, 3317, 3323, 3328] {
        check(&o, id, 5700, "Sensor Value", Float, r, true);
        check(&o, id, 5821, "Current Calibration", Float, rw, false);
    }

    check(&o, 3331, 5700, "Sensor Value", Float, r, true);
    check(&o, 3331, 5822, "Reset Cumulative energy", none, e, false);

    check(&o, 3342, 5500, "Digital Input State", Boolean, r, true);
    check(&o, 3342, 5854, "Off Time", Integer, rw, false);
    assert_eq!(res(&o, 3342, 5852).units.as_deref(), Some("s"));

    check(&o, 3347, 5500, "Digital Input State", Boolean, r, true);
    check(&o, 3347, 5501, "Digital Input Counter", Integer, r, false);
}

#[test]
fn object_names_match_the_registry() {
    let o = load();
    let names = [
        (3200, "Digital Input"),
        (3201, "Digital Output"),
        (3202, "Analog Input"),
        (3203, "Analog Output"),
        (3300, "Generic Sensor"),
        (3301, "Illuminance"),
        (3303, "Temperature"),
        (3304, "Humidity"),
        (3306, "Actuation"),
        (3311, "Light Control"),
        (3316, "Voltage"),
        (3317, "Current"),
        (3323, "Pressure"),
        (3328, "Power"),
        (3331, "Energy"),
        (3342, "On/Off switch"),
        (3347, "Push button"),
    ];
    for (id, name) in names {
        assert_eq!(o[&id].name, name, "{id}");
    }
}
