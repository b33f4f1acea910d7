//! The PKCS#15 structures on the path to the LwM2M bootstrap file (LwM2M 1.0 TS
//! Appendix G): EF DIR application template, ODF, DODF-bootstrap in both forms
//! seen in the field (opaqueDO with applicationOID, and oidDO).

use super::ber::{self, BerError};

/// RID + "PKCS-15": the prefix of the PKCS#15 application identifier.
pub const PKCS15_AID_PREFIX: [u8; 12] = [
    0xA0, 0x00, 0x00, 0x00, 0x63, 0x50, 0x4B, 0x43, 0x53, 0x2D, 0x31, 0x35,
];
/// DER content of OID 2.23.43.9.1 (LwM2M bootstrap).
pub const OID_LWM2M_BOOTSTRAP: [u8; 4] = [0x67, 0x2B, 0x09, 0x01];

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Application {
    pub aid: Vec<u8>,
    pub label: String,
    pub path: Vec<u8>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BootstrapObject {
    pub label: String,
    /// PKCS#15 private flag: a PIN must be verified before reading.
    pub private: bool,
    pub auth_id: Option<u8>,
    /// File path; the last two bytes are the file id under the application.
    pub path: Vec<u8>,
    /// "opaqueDO" or "oidDO".
    pub form: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Pkcs15Error {
    #[error("{0}")]
    Ber(#[from] BerError),
    #[error("{0}")]
    Invalid(String),
}

/// An EF DIR record: the PKCS#15 application template (tag 61), if that is what it holds.
pub fn application(record: &[u8]) -> Option<Application> {
    let tmpl = ber::get(record, 0x61).ok()?;
    let aid = ber::get(tmpl, 0x4F).ok()?;
    if !aid.starts_with(&PKCS15_AID_PREFIX) {
        return None;
    }
    Some(Application {
        aid: aid.to_vec(),
        label: ber::get(tmpl, 0x50)
            .map(|l| String::from_utf8_lossy(l).into_owned())
            .unwrap_or_default(),
        path: ber::get(tmpl, 0x51).map(<[u8]>::to_vec).unwrap_or_default(),
    })
}

/// EF ODF: the path of the DODF (tag A7, Path).
pub fn dodf_path(odf: &[u8]) -> Result<Vec<u8>, Pkcs15Error> {
    let p = ber::find(odf, &[0xA7, 0x30, 0x04])?;
    if p.len() < 2 {
        return Err(Pkcs15Error::Invalid(
            "ODF: DODF path shorter than a file id".into(),
        ));
    }
    Ok(p.to_vec())
}

fn label_in(b: &[u8]) -> Option<String> {
    ber::get(b, 0x0C)
        .ok()
        .map(|l| String::from_utf8_lossy(l).into_owned())
}

/// EF DODF: the LwM2M bootstrap data object, in either form.
pub fn bootstrap_object(dodf: &[u8]) -> Result<BootstrapObject, Pkcs15Error> {
    for entry in ber::parse(dodf)? {
        let items = ber::parse(entry.value)?;
        match entry.tag {
            // opaqueDO: CommonObjectAttributes, CommonDataObjectAttributes (applicationOID), [1] path
            0x30 if items.len() >= 3 => {
                let common = items[0].value;
                let is_lwm2m =
                    ber::get(items[1].value, 0x06).is_ok_and(|o| o == OID_LWM2M_BOOTSTRAP);
                if !is_lwm2m {
                    continue;
                }
                let flags = ber::get(common, 0x03).unwrap_or(&[]);
                // BIT STRING: first byte counts unused bits; private is bit 0 (MSB).
                let private = flags.get(1).is_some_and(|b| b & 0x80 != 0);
                let auth_id = ber::get(common, 0x04).ok().and_then(|a| a.first().copied());
                let path = ber::find(items[2].value, &[0x30, 0x04])?;
                return Ok(BootstrapObject {
                    label: label_in(common).unwrap_or_default(),
                    private,
                    auth_id,
                    path: path.to_vec(),
                    form: "opaqueDO",
                });
            }
            // oidDO: [1] { ..., [1] { SEQUENCE { OID, Path } } }
            0xA1 => {
                let Some(typed) = items.iter().rev().find(|t| t.tag == 0xA1) else {
                    continue;
                };
                let seq = ber::get(typed.value, 0x30)?;
                // Some cards (Nordic's nRF SDK tests among them) wrap the DER OID once more.
                let oid = ber::get(seq, 0x06).unwrap_or(&[]);
                let wrapped = ber::get(oid, 0x06).unwrap_or(&[]);
                if oid != OID_LWM2M_BOOTSTRAP && wrapped != OID_LWM2M_BOOTSTRAP {
                    continue;
                }
                let path = ber::find(seq, &[0x30, 0x04])?;
                let label = items
                    .iter()
                    .find_map(|t| label_in(t.value))
                    .unwrap_or_default();
                let flags = items
                    .first()
                    .and_then(|c| ber::get(c.value, 0x03).ok())
                    .unwrap_or(&[]);
                return Ok(BootstrapObject {
                    label,
                    private: flags.get(1).is_some_and(|b| b & 0x80 != 0),
                    auth_id: items
                        .first()
                        .and_then(|c| ber::get(c.value, 0x04).ok())
                        .and_then(|a| a.first().copied()),
                    path: path.to_vec(),
                    form: "oidDO",
                });
            }
            _ => {}
        }
    }
    Err(Pkcs15Error::Invalid(
        "DODF holds no LwM2M bootstrap object (applicationOID 2.23.43.9.1)".into(),
    ))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub fn tlv(tag: u8, v: &[u8]) -> Vec<u8> {
        let mut out = vec![tag];
        match v.len() {
            n if n < 0x80 => out.push(n as u8),
            n if n < 0x100 => out.extend([0x81, n as u8]),
            n => out.extend([0x82, (n >> 8) as u8, n as u8]),
        }
        out.extend_from_slice(v);
        out
    }

    /// The fixture card's DODF (tests/fixtures/uicc/uicc_card.py `dodf`).
    pub fn fixture_dodf(form: &str, pin: bool) -> Vec<u8> {
        let oid = [&[0x06, 0x04][..], &OID_LWM2M_BOOTSTRAP].concat();
        let path = tlv(0x30, &tlv(0x04, &[0x64, 0x31]));
        if form == "oid" {
            // As the fixture builds it: the DER OID wrapped in another OID tag.
            let wrapped = tlv(0x06, &oid);
            let inner = [
                tlv(0x30, &[]),
                tlv(0x30, &tlv(0x0C, b"LwM2M Bootstrap")),
                tlv(0xA1, &tlv(0x30, &[wrapped, path].concat())),
            ]
            .concat();
            return tlv(0xA1, &inner);
        }
        let flags = if pin {
            [tlv(0x03, &[0x07, 0x80]), tlv(0x04, &[0x01])].concat()
        } else {
            tlv(0x03, &[0x00])
        };
        let common = tlv(0x30, &[tlv(0x0C, b"LwM2M Bootstrap"), flags].concat());
        tlv(0x30, &[common, tlv(0x30, &oid), tlv(0xA1, &path)].concat())
    }

    #[test]
    fn ef_dir_record_of_the_fixture() {
        let rec = [
            &tlv(
                0x61,
                &[
                    tlv(0x4F, &[&PKCS15_AID_PREFIX[..]].concat()),
                    tlv(0x50, b"LwM2M PKCS15"),
                    tlv(0x51, &[0x3F, 0x00, 0x50, 0x15]),
                ]
                .concat(),
            )[..],
            &[0xFF; 8],
        ]
        .concat();
        let app = application(&rec).unwrap();
        assert_eq!(app.label, "LwM2M PKCS15");
        assert_eq!(app.path, vec![0x3F, 0x00, 0x50, 0x15]);
        let usim = tlv(0x61, &tlv(0x4F, &[0xA0, 0, 0, 0, 0x87, 0x10, 0x02]));
        assert_eq!(application(&usim), None);
    }

    #[test]
    fn odf_points_to_the_dodf() {
        assert_eq!(
            dodf_path(&[0xA7, 0x06, 0x30, 0x04, 0x04, 0x02, 0x64, 0x30]).unwrap(),
            vec![0x64, 0x30]
        );
        assert!(dodf_path(&[0xA8, 0x00]).is_err());
    }

    #[test]
    fn both_dodf_forms_and_the_private_flag() {
        let o = bootstrap_object(&fixture_dodf("opaque", false)).unwrap();
        assert_eq!(
            (o.form, o.label.as_str(), o.private, o.path.clone()),
            ("opaqueDO", "LwM2M Bootstrap", false, vec![0x64, 0x31])
        );
        let o = bootstrap_object(&fixture_dodf("opaque", true)).unwrap();
        assert!(o.private);
        assert_eq!(o.auth_id, Some(1));
        let o = bootstrap_object(&fixture_dodf("oid", false)).unwrap();
        assert_eq!(
            (o.form, o.label.as_str(), o.path.clone()),
            ("oidDO", "LwM2M Bootstrap", vec![0x64, 0x31])
        );
        // Another application's data object is not ours.
        let other = fixture_dodf("opaque", false)
            .iter()
            .map(|b| if *b == 0x67 { 0x68 } else { *b })
            .collect::<Vec<_>>();
        assert!(bootstrap_object(&other).is_err());
    }
}
