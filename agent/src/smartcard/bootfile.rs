//! EF LwM2M_Bootstrap (LwM2M 1.0 TS Appendix G.3.3): object count, size, then per
//! object its id, version, length and the LwM2M TLV of its instances.

use crate::codec::{self, Format, Record};
use crate::model::{Path, Registry};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BootObject {
    pub id: u16,
    /// "1.0" for the implicit version byte 00, else "major.minor".
    pub version: String,
    pub tlv: Vec<u8>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BootFileError {
    #[error("bootstrap file: {0}")]
    Invalid(String),
}

fn bad<T>(msg: impl Into<String>) -> Result<T, BootFileError> {
    Err(BootFileError::Invalid(msg.into()))
}

fn u16_at(b: &[u8], i: usize) -> Result<u16, BootFileError> {
    match b.get(i..i + 2) {
        Some(x) => Ok(u16::from_be_bytes([x[0], x[1]])),
        None => bad(format!("truncated at byte {i}")),
    }
}

/// Parses the file; trailing padding after the declared size is ignored.
pub fn parse(data: &[u8]) -> Result<Vec<BootObject>, BootFileError> {
    let count = u16_at(data, 0)?;
    let size = usize::from(u16_at(data, 2)?);
    let Some(body) = data.get(4..4 + size) else {
        return bad(format!(
            "declares {size} bytes but holds {}",
            data.len().saturating_sub(4)
        ));
    };
    let mut out = Vec::new();
    let mut i = 0;
    for n in 0..count {
        let id = u16_at(body, i)?;
        i += 2;
        let Some(&v) = body.get(i) else {
            return bad(format!("object {n}: truncated version"));
        };
        let version = if v == 0 {
            i += 1;
            "1.0".to_string()
        } else {
            let Some(&minor) = body.get(i + 1) else {
                return bad(format!("object {n}: truncated version"));
            };
            i += 2;
            format!("{v}.{minor}")
        };
        let len = usize::from(u16_at(body, i)?);
        i += 2;
        let Some(tlv) = body.get(i..i + len) else {
            return bad(format!(
                "object {id}: {len} bytes declared, {} left",
                body.len() - i
            ));
        };
        i += len;
        out.push(BootObject {
            id,
            version,
            tlv: tlv.to_vec(),
        });
    }
    if i != body.len() {
        return bad(format!(
            "{count} objects take {i} bytes but the size says {size}"
        ));
    }
    Ok(out)
}

/// The objects' resources as records, typed by the registry.
pub fn records(objects: &[BootObject], reg: &Registry) -> Result<Vec<Record>, BootFileError> {
    let types = |p: &Path| crate::lwm2m::dm::type_of(reg, p);
    let mut out = Vec::new();
    for o in objects {
        if reg.get(o.id).is_none() {
            return bad(format!("object {} is not known to this agent", o.id));
        }
        let recs = codec::decode(Format::Tlv, &Path::new(&[o.id]), &o.tlv, &types)
            .map_err(|e| BootFileError::Invalid(format!("object {}: {e}", o.id)))?;
        out.extend(recs);
    }
    Ok(out)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::model::Value;

    /// The fixture card's default file (tests/fixtures/uicc/uicc_card.py `bootstrap_file`).
    pub fn fixture_file(lifetime: i64, big: usize) -> Vec<u8> {
        let s = |v: &str| Value::String(v.into());
        let sec = vec![
            (Path::new(&[0, 0, 0]), s("coap://127.0.0.1:5683")),
            (Path::new(&[0, 0, 1]), Value::Boolean(false)),
            (Path::new(&[0, 0, 2]), Value::Integer(3)),
            (Path::new(&[0, 0, 3]), Value::Opaque(vec![])),
            (Path::new(&[0, 0, 4]), Value::Opaque(vec![])),
            (Path::new(&[0, 0, 5]), Value::Opaque(vec![])),
            (Path::new(&[0, 0, 10]), Value::Integer(101)),
        ];
        let srv = vec![
            (Path::new(&[1, 0, 0]), Value::Integer(101)),
            (Path::new(&[1, 0, 1]), Value::Integer(lifetime)),
            (Path::new(&[1, 0, 6]), Value::Boolean(false)),
            (Path::new(&[1, 0, 7]), s("U")),
        ];
        let mut objs = vec![
            (
                0u16,
                vec![0u8],
                codec::encode(Format::Tlv, &Path::new(&[0]), &sec).unwrap(),
            ),
            (
                1,
                vec![0],
                codec::encode(Format::Tlv, &Path::new(&[1]), &srv).unwrap(),
            ),
        ];
        if big > 0 {
            let text: String = (0..big / 6 + 1)
                .map(|i| format!("{i:05}|"))
                .collect::<String>()[..big]
                .to_string();
            objs.push((
                3,
                vec![1, 1],
                codec::encode(
                    Format::Tlv,
                    &Path::new(&[3]),
                    &[(Path::new(&[3, 0, 0]), s(&text))],
                )
                .unwrap(),
            ));
        }
        let mut body = Vec::new();
        for (id, ver, t) in &objs {
            body.extend(id.to_be_bytes());
            body.extend(ver);
            body.extend((t.len() as u16).to_be_bytes());
            body.extend(t);
        }
        let mut data = (objs.len() as u16).to_be_bytes().to_vec();
        data.extend((body.len() as u16).to_be_bytes());
        data.extend(body);
        data
    }

    #[test]
    fn parses_the_fixture_file() {
        let objs = parse(&fixture_file(300, 0)).unwrap();
        assert_eq!(
            objs.iter()
                .map(|o| (o.id, o.version.as_str()))
                .collect::<Vec<_>>(),
            vec![(0, "1.0"), (1, "1.0")]
        );
        let recs = records(&objs, &Registry::builtin()).unwrap();
        assert!(recs.contains(&(
            Path::new(&[0, 0, 0]),
            Value::String("coap://127.0.0.1:5683".into())
        )));
        assert!(recs.contains(&(Path::new(&[1, 0, 1]), Value::Integer(300))));
        let big = parse(&fixture_file(300, 3000)).unwrap();
        assert_eq!((big[2].id, big[2].version.as_str()), (3, "1.1"));
    }

    #[test]
    fn padding_is_ignored_inconsistent_sizes_are_not() {
        let mut f = fixture_file(300, 0);
        f.extend([0xFF; 40]);
        assert_eq!(parse(&f).unwrap().len(), 2);
        let mut wrong_count = fixture_file(300, 0);
        wrong_count[1] = 3;
        assert!(parse(&wrong_count).is_err());
        let mut wrong_size = fixture_file(300, 0);
        wrong_size[3] = wrong_size[3].wrapping_sub(1);
        assert!(parse(&wrong_size).is_err());
        assert!(parse(&[0, 1]).is_err());
        assert!(parse(&[0, 1, 0, 3, 0, 0, 0]).is_err());
    }

    proptest::proptest! {
        #[test]
        fn never_panics(b in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..300)) {
            if let Ok(objs) = parse(&b) {
                let _ = records(&objs, &Registry::builtin());
            }
        }
    }
}
