//! End devices behind the gateway, addressed by prefix: reads from the last poll,
//! 5.03 while the device is down, writes and executes answered when the device has
//! carried them out.

use super::*;
use crate::lwm2m::gateway::{self, EndDevice};

/// The IPSO definitions of the shipped DDF files the tests use.
fn ipso(c: &mut Client) {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../objects");
    for id in [3303, 3311] {
        let xml = std::fs::read_to_string(dir.join(format!("{id}.xml"))).unwrap();
        for d in crate::model::ddf::parse("ddf", &xml).unwrap() {
            c.reg.insert(d);
        }
    }
}

/// A registered client with end device `m1` (a temperature sensor and a light
/// control, IPSO definitions from the shipped DDF files).
fn with_device() -> H {
    let mut h = H::start(&[account(101, 3000)], config(), Instant::now(), 1234, |c| {
        ipso(c);
        let dev = EndDevice {
            id: "meter-1".into(),
            prefix: "m1".into(),
            manufacturer: Some("ACME".into()),
            instances: vec![(3303, 0), (3311, 0)],
            ..Default::default()
        };
        let mut t = gateway::device_tree(&dev);
        t.set(3303, 0, 5700, Value::Float(21.5));
        t.set(3311, 0, 5850, Value::Boolean(false));
        let links = gateway::iot_device_objects(&c.reg, &t);
        gateway::set_gateway_instance(&mut c.trees.gateway, 0, &dev, links);
        c.trees.devices.insert("m1".into(), t);
    });
    h.register_all();
    h
}

fn text(p: &Packet) -> String {
    String::from_utf8_lossy(&p.payload).into_owned()
}

#[test]
fn the_register_payload_lists_25_not_the_end_devices_objects() {
    let mut h = H::start(&[account(101, 3000)], config(), Instant::now(), 1, |c| {
        let dev = EndDevice {
            id: "meter-1".into(),
            prefix: "m1".into(),
            instances: vec![(3303, 0)],
            ..Default::default()
        };
        gateway::set_gateway_instance(&mut c.trees.gateway, 0, &dev, "</3303/0>".into());
        c.trees
            .devices
            .insert("m1".into(), gateway::device_tree(&dev));
    });
    let out = h.take();
    let links = text(&out[0].1);
    assert!(links.contains("</25/0>"), "{links}");
    assert!(!links.contains("3303"), "{links}");
}

#[test]
fn reads_through_the_prefix_and_5_03_while_the_device_is_down() {
    let mut h = with_device();
    let r = h.req(101, RequestType::Get, "/m1/3303/0/5700", |_| {});
    assert_eq!((code(&r), text(&r)), (codes::CONTENT, "21.5".into()));
    let r = h.req(101, RequestType::Get, "/25/0/1", |_| {});
    assert_eq!(text(&r), "m1");
    h.c.trees
        .down
        .insert("m1".into(), "unit 1 did not answer within 500 ms".into());
    let r = h.req(101, RequestType::Get, "/m1/3303/0/5700", |_| {});
    assert_eq!(code(&r), codes::SERVICE_UNAVAILABLE);
    assert!(text(&r).contains("did not answer"), "{}", text(&r));
    // Its Device object is the gateway's to answer, down or not.
    let r = h.req(101, RequestType::Get, "/m1/3/0/0", |_| {});
    assert_eq!((code(&r), text(&r)), (codes::CONTENT, "ACME".into()));
    let r = h.req(101, RequestType::Get, "/nope/3303/0/5700", |_| {});
    assert_eq!(code(&r), codes::NOT_FOUND);
}

/// A request that gets no immediate answer: the ticket of the device action.
fn deferred(
    h: &mut H,
    method: RequestType,
    path: &str,
    build: impl FnOnce(&mut Packet),
) -> (u64, DeviceOp, Packet) {
    let segs: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let mut p = message::request(method, &segs, &[]);
    h.mid += 1;
    p.header.message_id = h.mid;
    p.set_token(vec![9, h.mid as u8]);
    build(&mut p);
    h.c.handle_datagram(h.now, 101, &p.to_bytes().unwrap());
    assert!(h.take().is_empty(), "no answer before the device has acted");
    let action = std::iter::from_fn(|| h.c.poll_action())
        .find_map(|a| match a {
            Action::Device { ticket, op } => Some((ticket, op)),
            _ => None,
        })
        .expect("a device action");
    (action.0, action.1, p)
}

fn answer_of(h: &mut H, req: &Packet) -> Packet {
    let out = h.take();
    out.into_iter()
        .map(|(_, p)| p)
        .find(|p| p.header.message_id == req.header.message_id)
        .expect("the deferred answer")
}

#[test]
fn a_write_is_answered_when_the_device_took_it() {
    let mut h = with_device();
    let (ticket, op, req) = deferred(&mut h, RequestType::Put, "/m1/3311/0/5850", |p| {
        message::set_content_format(p, 0);
        p.payload = b"1".to_vec();
    });
    match &op {
        DeviceOp::Write {
            prefix,
            path,
            records,
        } => {
            assert_eq!(prefix, "m1");
            assert_eq!(path, &Path::new(&[3311, 0, 5850]));
            assert_eq!(
                records,
                &vec![(Path::new(&[3311, 0, 5850]), Value::Boolean(true))]
            );
        }
        other => panic!("{other:?}"),
    }
    // Until the device answers, the tree keeps the polled value.
    assert_eq!(
        h.c.trees.devices["m1"].get(3311, 0, 5850),
        Some(&Value::Boolean(false))
    );
    h.c.device_done(h.now, ticket, Ok(()));
    let r = answer_of(&mut h, &req);
    assert_eq!(code(&r), codes::CHANGED);
    assert_eq!(r.header.get_type(), MessageType::Acknowledgement);
    assert_eq!(
        h.c.trees.devices["m1"].get(3311, 0, 5850),
        Some(&Value::Boolean(true))
    );
}

#[test]
fn a_write_the_device_refuses_gets_its_code_and_changes_nothing() {
    let mut h = with_device();
    let (ticket, _, req) = deferred(&mut h, RequestType::Put, "/m1/3311/0/5850", |p| {
        message::set_content_format(p, 0);
        p.payload = b"1".to_vec();
    });
    h.c.device_done(
        h.now,
        ticket,
        Err(OpError::Unavailable(
            "connection refused by 127.0.0.1:5020".into(),
        )),
    );
    let r = answer_of(&mut h, &req);
    assert_eq!(code(&r), codes::SERVICE_UNAVAILABLE);
    assert!(text(&r).contains("connection refused"));
    assert_eq!(
        h.c.trees.devices["m1"].get(3311, 0, 5850),
        Some(&Value::Boolean(false))
    );
    // A second answer to the same ticket is ignored.
    h.c.device_done(h.now, ticket, Ok(()));
    assert!(h.take().is_empty());
}

#[test]
fn bad_writes_never_reach_the_device() {
    let mut h = with_device();
    // Sensor Value is read-only; a string is no boolean; no such instance.
    for (path, payload, want) in [
        ("/m1/3303/0/5700", &b"3"[..], codes::METHOD_NOT_ALLOWED),
        ("/m1/3311/0/5850", &b"maybe"[..], codes::BAD_REQUEST),
        ("/m1/3311/7/5850", &b"1"[..], codes::NOT_FOUND),
    ] {
        let r = h.req(101, RequestType::Put, path, |p| {
            message::set_content_format(p, 0);
            p.payload = payload.to_vec();
        });
        assert_eq!(code(&r), want, "{path}: {}", text(&r));
    }
    assert!(std::iter::from_fn(|| h.c.poll_action()).all(|a| !matches!(a, Action::Device { .. })));
}

#[test]
fn a_device_that_never_answers_gets_5_03_in_bounded_time() {
    let mut h = with_device();
    let (_, _, req) = deferred(&mut h, RequestType::Put, "/m1/3311/0/5850", |p| {
        message::set_content_format(p, 0);
        p.payload = b"1".to_vec();
    });
    h.advance(DEVICE_ANSWER - Duration::from_secs(1));
    assert!(h
        .take()
        .iter()
        .all(|(_, p)| p.header.message_id != req.header.message_id));
    h.advance(Duration::from_secs(2));
    let r = answer_of(&mut h, &req);
    assert_eq!(code(&r), codes::SERVICE_UNAVAILABLE);
}

#[test]
fn a_write_composite_across_devices_is_answered_when_the_last_device_has() {
    let mut h = with_device();
    let m2 = h.c.trees.devices["m1"].clone();
    h.c.trees.devices.insert("m2".into(), m2);
    let body = br#"[{"n":"/1/0/1","v":120},{"n":"/m1/3311/0/5850","vb":true},{"n":"/m2/3311/0/5850","vb":true}]"#;
    let mut p = message::request(RequestType::IPatch, &[], &[]);
    h.mid += 1;
    p.header.message_id = h.mid;
    p.set_token(vec![7, h.mid as u8]);
    message::set_content_format(&mut p, 110);
    p.payload = body.to_vec();
    h.c.handle_datagram(h.now, 101, &p.to_bytes().unwrap());
    let out = h.take();
    assert!(
        out.iter()
            .all(|(_, r)| r.header.message_id != p.header.message_id),
        "no answer before the devices have acted"
    );
    // The gateway's own part is applied at once.
    assert_eq!(h.c.trees.gateway.get_i64(1, 0, 1), Some(120));
    let ops: Vec<(u64, DeviceOp)> = std::iter::from_fn(|| h.c.poll_action())
        .filter_map(|a| match a {
            Action::Device { ticket, op } => Some((ticket, op)),
            _ => None,
        })
        .collect();
    let prefixes: Vec<&str> = ops
        .iter()
        .map(|(_, op)| match op {
            DeviceOp::Write { prefix, .. } => prefix.as_str(),
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(prefixes, ["m1", "m2"]);
    h.c.device_done(h.now, ops[0].0, Ok(()));
    assert!(h
        .take()
        .iter()
        .all(|(_, r)| r.header.message_id != p.header.message_id));
    assert_eq!(
        h.c.trees.devices["m1"].get(3311, 0, 5850),
        Some(&Value::Boolean(true))
    );
    h.c.device_done(
        h.now,
        ops[1].0,
        Err(OpError::Unavailable("unit 2 did not answer".into())),
    );
    let r = answer_of(&mut h, &p);
    assert_eq!(code(&r), codes::SERVICE_UNAVAILABLE);
    assert!(text(&r).contains("unit 2"), "{}", text(&r));
    assert_eq!(
        h.c.trees.devices["m2"].get(3311, 0, 5850),
        Some(&Value::Boolean(false)),
        "what the device refused is not in its tree"
    );
}

#[test]
fn an_observed_end_device_value_notifies_from_polls() {
    let mut h = with_device();
    let r = h.req(101, RequestType::Get, "/m1/3303/0/5700", |p| {
        message::set_uint(p, CoapOption::Observe, 0);
        message::set_uint(p, CoapOption::Accept, 110);
    });
    assert_eq!(code(&r), codes::CONTENT);
    let j: serde_json::Value = serde_json::from_slice(&r.payload).unwrap();
    assert_eq!(
        j[0]["bn"], "/m1/3303/0/5700",
        "SenML names carry the prefix"
    );
    let token = r.get_token().to_vec();
    h.c.trees
        .devices
        .get_mut("m1")
        .unwrap()
        .set(3303, 0, 5700, Value::Float(22.0));
    h.c.values_changed(h.now);
    let n = h
        .take()
        .into_iter()
        .map(|(_, p)| p)
        .find(|p| p.get_token() == token)
        .expect("a notification");
    let j: serde_json::Value = serde_json::from_slice(&n.payload).unwrap();
    assert_eq!(
        (j[0]["bn"].as_str(), j[0]["v"].as_f64()),
        (Some("/m1/3303/0/5700"), Some(22.0))
    );
    // Down: no notification with a stale value; back up, it carries on.
    h.c.trees.down.insert("m1".into(), "gone".into());
    h.c.trees
        .devices
        .get_mut("m1")
        .unwrap()
        .set(3303, 0, 5700, Value::Float(23.0));
    h.c.values_changed(h.now);
    assert!(h.take().iter().all(|(_, p)| p.get_token() != token));
    assert_eq!(h.c.observation_count(), 1, "the observation stays");
}

#[test]
fn with_several_servers_the_25_instance_acl_governs_the_end_device() {
    let mut h = H::start(
        &[account(101, 3000), account(102, 3000)],
        config(),
        Instant::now(),
        7,
        |c| {
            ipso(c);
            let dev = EndDevice {
                id: "meter-1".into(),
                prefix: "m1".into(),
                instances: vec![(3303, 0)],
                ..Default::default()
            };
            let mut t = gateway::device_tree(&dev);
            t.set(3303, 0, 5700, Value::Float(21.5));
            // Server 102 may only read /3/0, and so the end device added now.
            let acl = crate::lwm2m::acl::find(&c.trees.gateway, 3, 0).unwrap();
            c.trees.gateway.set_multi(
                2,
                acl,
                2,
                [(102, Value::Integer(crate::lwm2m::acl::READ))].into(),
            );
            gateway::set_gateway_instance(&mut c.trees.gateway, 0, &dev, "</3303/0>".into());
            gateway::grant_like_device(&mut c.trees.gateway, 0);
            c.trees.devices.insert("m1".into(), t);
        },
    );
    h.register_all();
    let r = h.get(101, "/m1/3303/0/5700", None);
    assert_eq!(code(&r), codes::CONTENT);
    // 102: the rights /3/0 had when the device was added.
    let r = h.get(102, "/m1/3303/0/5700", None);
    assert_eq!(code(&r), codes::CONTENT);
    let r = h.req(102, RequestType::Post, "/m1/3/0/4", |_| {});
    assert_eq!(code(&r), codes::UNAUTHORIZED, "no Execute right for 102");
    // A device without an ACL instance is closed to every server but its owner's rights.
    h.c.trees.gateway.instance_ids(2).into_iter().for_each(|i| {
        if h.c.trees.gateway.get_i64(2, i, 0) == Some(25) {
            let _ = h.c.trees.gateway.delete_instance(2, i);
        }
    });
    let r = h.get(101, "/m1/3303/0/5700", None);
    assert_eq!(code(&r), codes::UNAUTHORIZED);
}

#[test]
fn observations_due_within_a_tick_notify_together_and_stay_on_the_grid() {
    let mut h = with_device();
    // Off the 100 ms grid, as a server's requests are.
    h.advance(Duration::from_millis(45));
    let mut tokens = Vec::new();
    for path in ["/m1/3303/0/5700", "/m1/3311/0/5850"] {
        let r = h.req(101, RequestType::Put, path, |p| {
            p.add_option(CoapOption::UriQuery, b"pmin=1".to_vec());
            p.add_option(CoapOption::UriQuery, b"pmax=1".to_vec());
        });
        assert_eq!(code(&r), codes::CHANGED);
        let r = h.req(101, RequestType::Get, path, |p| {
            message::set_uint(p, CoapOption::Observe, 0);
        });
        assert_eq!(message::observe(&r), Some(0));
        tokens.push(r.get_token().to_vec());
        // The second observation starts 30 ms after the first.
        h.advance(Duration::from_millis(30));
    }
    let start = h.now;
    let mut seen: Vec<(usize, Duration)> = Vec::new();
    for _ in 0..600 {
        h.advance(Duration::from_millis(10));
        for (_, p) in h.take() {
            if let Some(i) = tokens.iter().position(|t| t.as_slice() == p.get_token()) {
                seen.push((i, h.now - start));
                if p.header.get_type() == MessageType::Confirmable {
                    ack(&mut h, 101, &p);
                }
            }
        }
    }
    let times = |i: usize| -> Vec<Duration> {
        seen.iter()
            .filter(|(j, _)| *j == i)
            .map(|(_, t)| *t)
            .collect()
    };
    let (a, b) = (times(0), times(1));
    assert!(a.len() >= 5, "{seen:?}");
    // After the first period both are due in the same tick and notified together:
    // the second goes out as soon as the first is acknowledged (NSTART 1), one
    // 10 ms step later here, not the 30 ms they were apart.
    for (ta, tb) in a[1..].iter().zip(&b[1..]) {
        assert!(
            *tb >= *ta && *tb - *ta <= Duration::from_millis(10),
            "{seen:?}"
        );
    }
    // And once a second exactly, not a tick later each period.
    for w in a[1..].windows(2) {
        assert_eq!(w[1] - w[0], Duration::from_secs(1), "{seen:?}");
    }
}
