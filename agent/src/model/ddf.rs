//! OMA DDF XML object definitions (the LWM2M.xsd format every LwM2M server uses),
//! so an operator adds an object by dropping its XML into a directory.

use super::defs::{ObjectDef, Operations, ResourceDef};
use super::value::DataType;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum DdfError {
    #[error("{file}: not XML: {msg}")]
    Xml { file: String, msg: String },
    #[error("{file}: {what}")]
    Invalid { file: String, what: String },
}

fn child_text<'a>(node: roxmltree::Node<'a, '_>, name: &str) -> Option<&'a str> {
    node.children()
        .find(|c| c.has_tag_name(name))
        .map(|c| c.text().unwrap_or("").trim())
}

/// Parses every `<Object>` in one DDF document.
pub fn parse(file: &str, xml: &str) -> Result<Vec<ObjectDef>, DdfError> {
    let doc = roxmltree::Document::parse(xml).map_err(|e| DdfError::Xml {
        file: file.to_string(),
        msg: e.to_string(),
    })?;
    let invalid = |what: String| DdfError::Invalid {
        file: file.to_string(),
        what,
    };
    let mut out = Vec::new();
    for obj in doc.descendants().filter(|n| n.has_tag_name("Object")) {
        let id_text =
            child_text(obj, "ObjectID").ok_or_else(|| invalid("Object without ObjectID".into()))?;
        let id: u16 = id_text
            .parse()
            .map_err(|_| invalid(format!("ObjectID {id_text:?} is not a number 0..65534")))?;
        let name = child_text(obj, "Name").unwrap_or("").to_string();
        let version = child_text(obj, "ObjectVersion")
            .filter(|v| !v.is_empty())
            .unwrap_or("1.0")
            .to_string();
        let multiple = child_text(obj, "MultipleInstances")
            .is_some_and(|v| v.eq_ignore_ascii_case("multiple"));
        let mandatory =
            child_text(obj, "Mandatory").is_some_and(|v| v.eq_ignore_ascii_case("mandatory"));
        let mut resources = BTreeMap::new();
        let items = obj
            .children()
            .find(|c| c.has_tag_name("Resources"))
            .into_iter()
            .flat_map(|r| r.children().filter(|c| c.has_tag_name("Item")));
        for item in items {
            let rid_text = item.attribute("ID").unwrap_or("");
            let rid: u16 = rid_text.parse().map_err(|_| {
                invalid(format!(
                    "object {id}: resource ID {rid_text:?} is not a number"
                ))
            })?;
            let ops_text = child_text(item, "Operations").unwrap_or("");
            let ops = Operations::parse(ops_text).ok_or_else(|| {
                invalid(format!(
                    "/{id}/{rid}: Operations {ops_text:?} is not R, W, RW, E or empty"
                ))
            })?;
            let ty_text = child_text(item, "Type").unwrap_or("");
            let data_type = DataType::parse(ty_text)
                .ok_or_else(|| invalid(format!("/{id}/{rid}: unknown Type {ty_text:?}")))?;
            let nonempty = |s: Option<&str>| s.filter(|v| !v.is_empty()).map(str::to_string);
            resources.insert(
                rid,
                ResourceDef {
                    id: rid,
                    name: child_text(item, "Name").unwrap_or("").to_string(),
                    ops,
                    multiple: child_text(item, "MultipleInstances")
                        .is_some_and(|v| v.eq_ignore_ascii_case("multiple")),
                    mandatory: child_text(item, "Mandatory")
                        .is_some_and(|v| v.eq_ignore_ascii_case("mandatory")),
                    data_type: if ops.execute {
                        DataType::None
                    } else {
                        data_type
                    },
                    range: nonempty(child_text(item, "RangeEnumeration")),
                    units: nonempty(child_text(item, "Units")),
                },
            );
        }
        out.push(ObjectDef {
            id,
            name,
            version,
            multiple,
            mandatory,
            resources,
        });
    }
    if out.is_empty() {
        return Err(invalid("no <Object> element".into()));
    }
    Ok(out)
}

/// Loads `*.xml` from each directory in order (later directories override earlier
/// ones: /etc/lwgate/objects after /usr/share/lwgate/objects). Broken files are
/// returned as errors and skipped; they must not stop the agent.
pub fn load_dirs(dirs: &[PathBuf]) -> (Vec<ObjectDef>, Vec<DdfError>) {
    let mut defs = Vec::new();
    let mut errors = Vec::new();
    for dir in dirs {
        let Ok(entries) = std::fs::read_dir(dir) else {
            continue;
        };
        let mut files: Vec<PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x.eq_ignore_ascii_case("xml")))
            .collect();
        files.sort();
        for f in files {
            match load_file(&f) {
                Ok(mut d) => defs.append(&mut d),
                Err(e) => errors.push(e),
            }
        }
    }
    (defs, errors)
}

fn load_file(path: &Path) -> Result<Vec<ObjectDef>, DdfError> {
    let name = path.display().to_string();
    let xml = std::fs::read_to_string(path).map_err(|e| DdfError::Invalid {
        file: name.clone(),
        what: format!("cannot read: {e}"),
    })?;
    parse(&name, &xml)
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEMPERATURE: &str = r#"<?xml version="1.0" encoding="utf-8"?>
<LWM2M xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" xsi:noNamespaceSchemaLocation="http://openmobilealliance.org/tech/profiles/LWM2M.xsd">
  <Object ObjectType="MODefinition">
    <Name>Temperature</Name>
    <Description1>Temperature sensor</Description1>
    <ObjectID>3303</ObjectID>
    <ObjectURN>urn:oma:lwm2m:ext:3303:1.1</ObjectURN>
    <LWM2MVersion>1.0</LWM2MVersion>
    <ObjectVersion>1.1</ObjectVersion>
    <MultipleInstances>Multiple</MultipleInstances>
    <Mandatory>Optional</Mandatory>
    <Resources>
      <Item ID="5700"><Name>Sensor Value</Name><Operations>R</Operations><MultipleInstances>Single</MultipleInstances><Mandatory>Mandatory</Mandatory><Type>Float</Type><RangeEnumeration></RangeEnumeration><Units>Cel</Units><Description></Description></Item>
      <Item ID="5605"><Name>Reset Min and Max Measured Values</Name><Operations>E</Operations><MultipleInstances>Single</MultipleInstances><Mandatory>Optional</Mandatory><Type></Type><RangeEnumeration></RangeEnumeration><Units></Units><Description></Description></Item>
      <Item ID="5750"><Name>Application Type</Name><Operations>RW</Operations><MultipleInstances>Single</MultipleInstances><Mandatory>Optional</Mandatory><Type>String</Type><RangeEnumeration></RangeEnumeration><Units></Units><Description></Description></Item>
    </Resources>
  </Object>
</LWM2M>"#;

    #[test]
    fn parses_an_omna_definition() {
        let defs = parse("3303.xml", TEMPERATURE).unwrap();
        let d = &defs[0];
        assert_eq!(
            (d.id, d.name.as_str(), d.version.as_str()),
            (3303, "Temperature", "1.1")
        );
        assert!(d.multiple && !d.mandatory);
        let v = d.resource(5700).unwrap();
        assert_eq!(v.data_type, DataType::Float);
        assert_eq!(v.units.as_deref(), Some("Cel"));
        assert!(v.ops.read && !v.ops.write);
        assert!(d.resource(5605).unwrap().ops.execute);
        assert!(d.resource(5750).unwrap().ops.write);
    }

    #[test]
    fn bad_documents_name_the_file() {
        let e = parse("x.xml", "<LWM2M><Object>").unwrap_err().to_string();
        assert!(e.starts_with("x.xml: not XML"), "{e}");
        let e = parse("y.xml", "<LWM2M/>").unwrap_err().to_string();
        assert!(e.contains("no <Object>"), "{e}");
        let bad_type = TEMPERATURE.replace("<Type>Float</Type>", "<Type>Quaternion</Type>");
        let e = parse("z.xml", &bad_type).unwrap_err().to_string();
        assert!(e.contains("/3303/5700: unknown Type"), "{e}");
    }

    #[test]
    fn later_directories_override() {
        let a = tempfile::tempdir().unwrap();
        let b = tempfile::tempdir().unwrap();
        std::fs::write(a.path().join("t.xml"), TEMPERATURE).unwrap();
        std::fs::write(
            b.path().join("t.xml"),
            TEMPERATURE.replace("<Name>Temperature</Name>", "<Name>Temp2</Name>"),
        )
        .unwrap();
        std::fs::write(b.path().join("broken.xml"), "<").unwrap();
        let (defs, errs) = load_dirs(&[a.path().into(), b.path().into()]);
        assert_eq!(errs.len(), 1);
        let mut reg = super::super::defs::Registry::default();
        for d in defs {
            reg.insert(d);
        }
        assert_eq!(reg.get(3303).unwrap().name, "Temp2");
    }
}
