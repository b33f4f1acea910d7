//! An end device's /prefix/5: kept by the agent, not its bridge (writes do not
//! go to the device), its work out as `Action::DeviceFirmware`, the installer's
//! exit its verdict, its snapshot stored under its prefix, readable while the
//! device is down.

use super::*;
use crate::lwm2m::firmware as fw;
use crate::lwm2m::gateway::{self, EndDevice};

fn setup() -> FirmwareSetup {
    FirmwareSetup {
        config: fw::Config {
            verdict: fw::Verdict::InstallerExit,
            max_package_bytes: Some(100),
            ..Default::default()
        },
        running_version: "1.0".into(),
        package_present: false,
    }
}

/// A registered client with end device `m1` whose file has `[firmware]`.
fn with_device() -> H {
    let mut h = H::start(&[account(101, 3000)], config(), Instant::now(), 1234, |c| {
        let dev = EndDevice {
            id: "meter-1".into(),
            prefix: "m1".into(),
            instances: vec![(5, 0)],
            ..Default::default()
        };
        let t = gateway::device_tree(&dev);
        let links = gateway::iot_device_objects(&c.reg, &t);
        gateway::set_gateway_instance(&mut c.trees.gateway, 0, &dev, links);
        c.trees.devices.insert("m1".into(), t);
    });
    let now = h.now;
    h.c.set_device_firmware(now, "m1", Some(setup()), None);
    h.register_all();
    h
}

fn tasks(h: &mut H) -> Vec<(String, FirmwareTask)> {
    std::iter::from_fn(|| h.c.poll_action())
        .filter_map(|a| match a {
            Action::DeviceFirmware(p, t) => Some((p, t)),
            Action::Device { .. } => panic!("an end device's /5 reached its bridge"),
            _ => None,
        })
        .collect()
}

fn text(h: &mut H, path: &str) -> String {
    String::from_utf8(h.get(101, path, Some(0)).payload).unwrap()
}

fn write_uri(h: &mut H, uri: &str) -> Packet {
    h.req(101, RequestType::Put, "/m1/5/0/1", |p| {
        message::set_content_format(p, 0);
        p.payload = uri.as_bytes().to_vec();
    })
}

#[test]
fn an_end_devices_update_runs_through_its_own_machine() {
    let mut h = with_device();
    assert_eq!(text(&mut h, "/m1/5/0/3"), "0");
    assert!(
        h.c.trees.gateway.get(5, 0, 3).is_none(),
        "the gateway has no /5"
    );
    assert!(
        matches!(h.c.trees.gateway.get(25, 0, 3), Some(Value::CoreLnk(l)) if l.contains("</5/0>")),
        "/25/0/3 lists the device's /5/0"
    );
    let r = write_uri(&mut h, "http://repo.example/meter.bin");
    assert_eq!(code(&r), codes::CHANGED);
    let t = tasks(&mut h);
    assert!(
        matches!(&t[..], [(p, FirmwareTask::Download { id, uri, resume: false })] if p == "m1" && uri.ends_with("meter.bin") && *id == 1),
        "{t:?}"
    );
    assert_eq!(text(&mut h, "/m1/5/0/3"), "1");
    let p: Vec<_> = std::iter::from_fn(|| h.c.poll_persist()).collect();
    assert!(
        p.iter()
            .any(|x| matches!(x, Persist::DeviceFirmware { prefix, .. } if prefix == "m1")),
        "{p:?}"
    );
    let now = h.now;
    h.c.device_firmware_event(now, "m1", fw::Event::DownloadFinished { id: 1, bytes: 10 });
    h.c.device_firmware_event(
        now,
        "m1",
        fw::Event::VerificationOk {
            id: 1,
            info: fw::PackageInfo {
                name: Some("meter".into()),
                version: Some("2.0".into()),
                expected_version: None,
            },
        },
    );
    assert_eq!(text(&mut h, "/m1/5/0/3"), "2");
    assert_eq!(text(&mut h, "/m1/5/0/7"), "2.0");
    // The device's bridge is down: its /5 is the agent's and still answers.
    h.c.trees.down.insert("m1".into(), "no answer".into());
    let r = h.req(101, RequestType::Post, "/m1/5/0/2", |_| {});
    assert_eq!(code(&r), codes::CHANGED);
    let t = tasks(&mut h);
    assert!(t.iter().any(|(_, t)| *t == FirmwareTask::Install), "{t:?}");
    assert_eq!(text(&mut h, "/m1/5/0/3"), "3");
    h.c.device_firmware_event(
        now,
        "m1",
        fw::Event::InstallExited {
            success: true,
            detail: String::new(),
            now_ms: 0,
        },
    );
    assert_eq!(text(&mut h, "/m1/5/0/3"), "0");
    assert_eq!(text(&mut h, "/m1/5/0/5"), "1");
    let st = h.c.device_firmware_status();
    assert_eq!(st.len(), 1);
    assert_eq!(st[0].0, "m1");
    assert_eq!(st[0].1.result, fw::UpdateResult::Success);
}

#[test]
fn a_push_to_an_end_device_goes_to_its_package() {
    let mut h = with_device();
    let r = h.req(101, RequestType::Put, "/m1/5/0/0", |p| {
        message::set_content_format(p, 42);
        p.payload = vec![7; 20];
    });
    assert_eq!(code(&r), codes::CHANGED);
    let t = tasks(&mut h);
    assert!(
        t.contains(&(
            "m1".into(),
            FirmwareTask::PushBlock {
                offset: 0,
                data: vec![7; 20]
            }
        )),
        "{t:?}"
    );
    assert!(
        t.iter()
            .any(|(_, t)| matches!(t, FirmwareTask::Verify { .. })),
        "{t:?}"
    );
    // Over its limit (100): 4.13.
    let r = h.req(101, RequestType::Put, "/m1/5/0/0", |p| {
        message::set_content_format(p, 42);
        p.payload = vec![7; 101];
    });
    assert_eq!(code(&r), codes::REQUEST_ENTITY_TOO_LARGE);
}

#[test]
fn without_firmware_the_device_has_no_5_and_a_stored_update_is_restored() {
    let mut h = with_device();
    let now = h.now;
    h.c.set_device_firmware(now, "m1", None, None);
    let r = h.req(101, RequestType::Post, "/m1/5/0/2", |_| {});
    assert_eq!(code(&r), codes::NOT_FOUND);
    // Back, with a snapshot of an update the last run left Updating.
    let snap = fw::Snapshot {
        state: fw::State::Updating,
        ..Default::default()
    };
    if let Some(t) = h.c.trees.devices.get_mut("m1") {
        t.objects.entry(5).or_default().entry(0).or_default();
    }
    let json = serde_json::to_string(&snap).unwrap();
    h.c.set_device_firmware(now, "m1", Some(setup()), Some(&json));
    assert_eq!(text(&mut h, "/m1/5/0/5"), "8");
    assert_eq!(text(&mut h, "/m1/5/0/3"), "0");
}
