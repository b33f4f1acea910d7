//! /9/0 through the client: a URI pull to DELIVERED, Install, activation,
//! Uninstall with its argument and the uninstaller's name, a push, the
//! refusals, the Registration Update, the snapshot persisted and restored.

use super::*;
use crate::coap::block::BlockOpt;
use crate::lwm2m::firmware::software::{SwBoot, SwConfig, SwSnapshot};
use crate::lwm2m::firmware::{PackageInfo, SwEvent, SwState};

fn sw_config(can_uninstall: bool, installed: bool) -> ClientConfig {
    ClientConfig {
        software: Some(SoftwareSetup {
            config: SwConfig::default(),
            boots: [(
                0,
                SwBoot {
                    package_present: false,
                    installed,
                },
            )]
            .into(),
            can_uninstall,
            max_instances: 3,
        }),
        ..config()
    }
}

fn started(can_uninstall: bool) -> H {
    let mut h = H::start(
        &[account(101, 300)],
        sw_config(can_uninstall, false),
        Instant::now(),
        7,
        |_| {},
    );
    h.register_all();
    h
}

/// The tasks for /9/0 (and none for another instance).
fn tasks(h: &mut H) -> Vec<SoftwareTask> {
    tasks_of(h)
        .into_iter()
        .map(|(i, t)| {
            assert_eq!(i, 0, "{t:?}");
            t
        })
        .collect()
}

fn tasks_of(h: &mut H) -> Vec<(u16, SoftwareTask)> {
    std::iter::from_fn(|| h.c.poll_action())
        .filter_map(|a| match a {
            Action::Software(i, t) => Some((i, t)),
            _ => None,
        })
        .collect()
}

fn text(h: &mut H, path: &str) -> String {
    String::from_utf8(h.get(101, path, Some(0)).payload).unwrap()
}

fn exec(h: &mut H, path: &str, arg: &str) -> u8 {
    let arg = arg.as_bytes().to_vec();
    code(&h.req(101, RequestType::Post, path, |p| p.payload = arg))
}

fn write_uri(h: &mut H, uri: &str) -> u8 {
    let uri = uri.as_bytes().to_vec();
    code(&h.req(101, RequestType::Put, "/9/0/3", |p| {
        message::set_content_format(p, 0);
        p.payload = uri;
    }))
}

/// A pull of `pkg` to DELIVERED.
fn delivered(h: &mut H) {
    assert_eq!(write_uri(h, "http://repo.example/pkg.tar"), codes::CHANGED);
    let t = tasks(h);
    let [SoftwareTask::Download {
        id,
        uri,
        resume: false,
    }] = &t[..]
    else {
        panic!("{t:?}");
    };
    assert_eq!(uri, "http://repo.example/pkg.tar");
    let id = *id;
    assert_eq!(text(h, "/9/0/7"), "1");
    h.c.software_event(h.now, 0, SwEvent::DownloadFinished { id, bytes: 10 });
    assert_eq!(tasks(h), [SoftwareTask::Verify { id }]);
    let info = PackageInfo {
        name: Some("app".into()),
        version: Some("1.2".into()),
        expected_version: None,
    };
    h.c.software_event(h.now, 0, SwEvent::VerificationOk { id, info });
    assert_eq!(text(h, "/9/0/7"), "3");
    assert_eq!(text(h, "/9/0/9"), "3");
    assert_eq!(text(h, "/9/0/0"), "app");
    assert_eq!(text(h, "/9/0/1"), "1.2");
}

fn run(command: SwCommand) -> SoftwareTask {
    SoftwareTask::Run {
        command,
        name: "app".into(),
    }
}

#[test]
fn starts_initial_and_refuses_what_the_state_does_not_allow() {
    let mut h = started(true);
    assert_eq!(text(&mut h, "/9/0/7"), "0");
    assert_eq!(text(&mut h, "/9/0/12"), "0");
    // 4.05 outside DELIVERED / INSTALLED.
    assert_eq!(exec(&mut h, "/9/0/4", ""), codes::METHOD_NOT_ALLOWED);
    assert_eq!(exec(&mut h, "/9/0/10", ""), codes::METHOD_NOT_ALLOWED);
}

#[test]
fn pull_install_activate_deactivate_uninstall() {
    let mut h = started(true);
    delivered(&mut h);
    // A new URI outside INITIAL is refused before the tree takes it.
    assert_eq!(
        write_uri(&mut h, "http://repo.example/other.tar"),
        codes::METHOD_NOT_ALLOWED
    );
    assert_eq!(exec(&mut h, "/9/0/4", ""), codes::CHANGED);
    assert_eq!(tasks(&mut h), [run(SwCommand::Install)]);
    // Busy: a second Install is refused.
    assert_eq!(exec(&mut h, "/9/0/4", ""), codes::METHOD_NOT_ALLOWED);
    h.c.software_event(
        h.now,
        0,
        SwEvent::InstallExited {
            success: true,
            detail: String::new(),
        },
    );
    assert_eq!(text(&mut h, "/9/0/7"), "4");
    assert_eq!(text(&mut h, "/9/0/9"), "2");
    assert_eq!(tasks(&mut h), [SoftwareTask::DeletePackage]);

    assert_eq!(exec(&mut h, "/9/0/10", ""), codes::CHANGED);
    assert_eq!(tasks(&mut h), [run(SwCommand::Activate)]);
    h.c.software_event(
        h.now,
        0,
        SwEvent::ActivationExited {
            success: true,
            detail: String::new(),
        },
    );
    assert_eq!(text(&mut h, "/9/0/12"), "1");
    assert_eq!(exec(&mut h, "/9/0/11", ""), codes::CHANGED);
    assert_eq!(tasks(&mut h), [run(SwCommand::Deactivate)]);
    h.c.software_event(
        h.now,
        0,
        SwEvent::ActivationExited {
            success: true,
            detail: String::new(),
        },
    );
    assert_eq!(text(&mut h, "/9/0/12"), "0");

    // Uninstall's argument: 2 is not one.
    assert_eq!(exec(&mut h, "/9/0/6", "2"), codes::BAD_REQUEST);
    assert_eq!(exec(&mut h, "/9/0/6", "0"), codes::CHANGED);
    assert_eq!(tasks(&mut h), [run(SwCommand::Uninstall)]);
    h.c.software_event(
        h.now,
        0,
        SwEvent::UninstallExited {
            success: true,
            detail: String::new(),
        },
    );
    assert_eq!(text(&mut h, "/9/0/7"), "0");
    assert_eq!(text(&mut h, "/9/0/0"), "");
    let saved = std::iter::from_fn(|| h.c.poll_persist())
        .filter(|p| matches!(p, Persist::Software(_)))
        .count();
    assert!(saved >= 5, "{saved}");
}

#[test]
fn installer_failure_stays_delivered_with_58() {
    let mut h = started(true);
    delivered(&mut h);
    assert_eq!(exec(&mut h, "/9/0/4", ""), codes::CHANGED);
    h.c.software_event(
        h.now,
        0,
        SwEvent::InstallExited {
            success: false,
            detail: "exit 3".into(),
        },
    );
    assert_eq!(text(&mut h, "/9/0/7"), "3");
    assert_eq!(text(&mut h, "/9/0/9"), "58");
    let (_, st) = h.c.software_status().pop().unwrap();
    assert!(st.detail.unwrap().contains("exit 3"));
}

#[test]
fn a_bad_uri_is_56_and_stays_initial() {
    let mut h = started(true);
    assert_eq!(write_uri(&mut h, "ftp://repo.example/x"), codes::CHANGED);
    assert_eq!(text(&mut h, "/9/0/7"), "0");
    assert_eq!(text(&mut h, "/9/0/9"), "56");
    assert!(tasks(&mut h).is_empty());
}

#[test]
fn without_an_uninstaller_uninstall_of_installed_software_is_4_05() {
    let mut h = started(false);
    delivered(&mut h);
    // Dropping a package that is not installed needs no uninstaller.
    assert_eq!(exec(&mut h, "/9/0/6", ""), codes::CHANGED);
    assert_eq!(text(&mut h, "/9/0/7"), "0");
    assert_eq!(tasks(&mut h), [SoftwareTask::DeletePackage]);
    delivered(&mut h);
    assert_eq!(exec(&mut h, "/9/0/4", ""), codes::CHANGED);
    h.c.software_event(
        h.now,
        0,
        SwEvent::InstallExited {
            success: true,
            detail: String::new(),
        },
    );
    assert_eq!(exec(&mut h, "/9/0/6", ""), codes::METHOD_NOT_ALLOWED);
    // "ForUpdate" keeps the software: allowed.
    assert_eq!(exec(&mut h, "/9/0/6", "1"), codes::CHANGED);
    assert_eq!(text(&mut h, "/9/0/7"), "0");
}

#[test]
fn a_push_to_9_0_2_goes_to_the_driver() {
    let mut h = started(true);
    let r = h.req(101, RequestType::Put, "/9/0/2", |p| {
        message::set_block(
            p,
            CoapOption::Block1,
            BlockOpt {
                num: 0,
                more: true,
                szx: 2,
            },
        );
        message::set_content_format(p, 42);
        p.payload = vec![1; 64];
    });
    assert_eq!(code(&r), codes::CONTINUE);
    let r = h.req(101, RequestType::Put, "/9/0/2", |p| {
        message::set_block(
            p,
            CoapOption::Block1,
            BlockOpt {
                num: 1,
                more: false,
                szx: 2,
            },
        );
        message::set_content_format(p, 42);
        p.payload = vec![2; 3];
    });
    assert_eq!(code(&r), codes::CHANGED);
    let t = tasks(&mut h);
    assert_eq!(
        t,
        [
            SoftwareTask::PushBlock {
                offset: 0,
                data: vec![1; 64]
            },
            SoftwareTask::PushBlock {
                offset: 64,
                data: vec![2; 3]
            },
            SoftwareTask::Verify { id: 1 },
        ]
    );
    assert_eq!(text(&mut h, "/9/0/7"), "2");
}

#[test]
fn update_supported_objects_sends_an_update_after_install() {
    let mut h = started(true);
    let r = h.req(101, RequestType::Put, "/9/0/8", |p| {
        message::set_content_format(p, 0);
        p.payload = b"1".to_vec();
    });
    assert_eq!(code(&r), codes::CHANGED);
    assert_eq!(text(&mut h, "/9/0/8"), "1");
    delivered(&mut h);
    assert_eq!(exec(&mut h, "/9/0/4", ""), codes::CHANGED);
    let _ = h.take();
    h.c.software_event(
        h.now,
        0,
        SwEvent::InstallExited {
            success: true,
            detail: String::new(),
        },
    );
    let out = h.take();
    assert!(
        out.iter().any(|(_, p)| p.header.code
            == coap_lite::MessageClass::Request(RequestType::Post)
            && message::uri_path(p).is_some_and(|s| s.first().map(String::as_str) == Some("rd"))),
        "an Update: {out:?}"
    );
}

#[test]
fn installed_stays_installed_across_a_restart() {
    let snap = SwSnapshot {
        state: SwState::Installed,
        result: crate::lwm2m::firmware::SwUpdateResult::Installed,
        pkg_name: "app".into(),
        pkg_version: "1.2".into(),
        ..Default::default()
    };
    let json = serde_json::to_string(&snap).unwrap();
    let mut h = H::start(
        &[account(101, 300)],
        sw_config(true, true),
        Instant::now(),
        7,
        |c| {
            c.restore(Restored {
                software: Some(json),
                ..Default::default()
            })
        },
    );
    h.register_all();
    assert_eq!(text(&mut h, "/9/0/7"), "4");
    assert_eq!(text(&mut h, "/9/0/9"), "2");
    assert_eq!(text(&mut h, "/9/0/0"), "app");
}

/// A Create on /9 (SenML JSON), with the resources in `records`.
fn create(h: &mut H, records: &str) -> Packet {
    let body = records.as_bytes().to_vec();
    h.req(101, RequestType::Post, "/9", |p| {
        message::set_content_format(p, 110);
        p.payload = body;
    })
}

fn location(p: &Packet) -> Vec<String> {
    p.get_option(CoapOption::LocationPath)
        .map(|l| {
            l.iter()
                .map(|s| String::from_utf8_lossy(s).into_owned())
                .collect()
        })
        .unwrap_or_default()
}

fn stored(h: &mut H) -> Option<serde_json::Value> {
    std::iter::from_fn(|| h.c.poll_persist())
        .filter_map(|p| match p {
            Persist::Software(json) => Some(serde_json::from_str(&json).unwrap()),
            _ => None,
        })
        .last()
}

#[test]
fn a_created_instance_has_a_machine_of_its_own() {
    let mut h = started(true);
    let _ = h.take();
    let r = create(
        &mut h,
        r#"[{"bn":"/9/1/","n":"3","vs":"http://repo.example/b.tar"}]"#,
    );
    assert_eq!(code(&r), codes::CREATED);
    assert_eq!(location(&r), ["9", "1"]);
    let t = tasks_of(&mut h);
    let [(1, SoftwareTask::Download { id, uri, .. })] = &t[..] else {
        panic!("{t:?}");
    };
    assert_eq!(uri, "http://repo.example/b.tar");
    let id = *id;
    assert_eq!(text(&mut h, "/9/1/7"), "1");
    assert_eq!(text(&mut h, "/9/0/7"), "0");
    // The object list changed: a Registration Update.
    let out = h.take();
    assert!(
        out.iter().any(|(_, p)| p.header.code
            == coap_lite::MessageClass::Request(RequestType::Post)
            && message::uri_path(p).is_some_and(|s| s.first().map(String::as_str) == Some("rd"))),
        "an Update: {out:?}"
    );
    // Both instances are stored, each with its state.
    let s = stored(&mut h).unwrap();
    assert_eq!(s["instances"]["0"]["state"], "initial");
    assert_eq!(s["instances"]["1"]["state"], "download_started");

    // /9/1's reports reach /9/1 only; its commands name it.
    h.c.software_event(h.now, 1, SwEvent::DownloadFinished { id, bytes: 10 });
    assert_eq!(tasks_of(&mut h), [(1, SoftwareTask::Verify { id })]);
    h.c.software_event(
        h.now,
        1,
        SwEvent::VerificationOk {
            id,
            info: PackageInfo {
                name: Some("b".into()),
                ..Default::default()
            },
        },
    );
    assert_eq!(text(&mut h, "/9/1/7"), "3");
    assert_eq!(exec(&mut h, "/9/1/4", ""), codes::CHANGED);
    assert_eq!(
        tasks_of(&mut h),
        [(
            1,
            SoftwareTask::Run {
                command: SwCommand::Install,
                name: "b".into()
            }
        )]
    );
    // /9/0 goes its own way meanwhile.
    delivered(&mut h);
    assert_eq!(text(&mut h, "/9/1/7"), "3");
    let st = h.c.software_status();
    assert_eq!(
        st.iter().map(|(i, s)| (*i, s.state)).collect::<Vec<_>>(),
        [(0, SwState::Delivered), (1, SwState::Delivered)]
    );
}

#[test]
fn delete_drops_an_instance_unless_its_software_is_installed() {
    let mut h = started(true);
    assert_eq!(code(&create(&mut h, "[]")), codes::CREATED);
    assert_eq!(text(&mut h, "/9/1/7"), "0");
    // A push to the new instance.
    let r = h.req(101, RequestType::Put, "/9/1/2", |p| {
        message::set_content_format(p, 42);
        p.payload = vec![7; 20];
    });
    assert_eq!(code(&r), codes::CHANGED);
    let t = tasks_of(&mut h);
    assert_eq!(
        t[0],
        (
            1,
            SoftwareTask::PushBlock {
                offset: 0,
                data: vec![7; 20]
            }
        )
    );
    let [.., (1, SoftwareTask::Verify { id })] = t[..] else {
        panic!("{t:?}");
    };
    h.c.software_event(
        h.now,
        1,
        SwEvent::VerificationOk {
            id,
            info: PackageInfo::default(),
        },
    );
    assert_eq!(exec(&mut h, "/9/1/4", ""), codes::CHANGED);
    // Busy, then installed: not deleted.
    assert_eq!(
        code(&h.req(101, RequestType::Delete, "/9/1", |_| {})),
        codes::METHOD_NOT_ALLOWED
    );
    h.c.software_event(
        h.now,
        1,
        SwEvent::InstallExited {
            success: true,
            detail: String::new(),
        },
    );
    let _ = tasks_of(&mut h);
    assert_eq!(
        code(&h.req(101, RequestType::Delete, "/9/1", |_| {})),
        codes::METHOD_NOT_ALLOWED
    );
    // Uninstalled: deleted, with its files.
    assert_eq!(exec(&mut h, "/9/1/6", ""), codes::CHANGED);
    h.c.software_event(
        h.now,
        1,
        SwEvent::UninstallExited {
            success: true,
            detail: String::new(),
        },
    );
    let _ = tasks_of(&mut h);
    assert_eq!(
        code(&h.req(101, RequestType::Delete, "/9/1", |_| {})),
        codes::DELETED
    );
    assert_eq!(tasks_of(&mut h), [(1, SoftwareTask::Forget)]);
    assert_eq!(code(&h.get(101, "/9/1/7", Some(0))), codes::NOT_FOUND);
    let s = stored(&mut h).unwrap();
    assert!(s["instances"].get("1").is_none(), "{s}");
    assert!(s["instances"].get("0").is_some(), "{s}");
}

#[test]
fn create_beyond_the_limit_is_4_00() {
    let mut h = started(true);
    assert_eq!(code(&create(&mut h, "[]")), codes::CREATED);
    assert_eq!(code(&create(&mut h, "[]")), codes::CREATED);
    let r = create(&mut h, "[]");
    assert_eq!(
        code(&r),
        codes::BAD_REQUEST,
        "{:?}",
        String::from_utf8_lossy(&r.payload)
    );
    assert_eq!(h.c.software_status().len(), 3);
}

#[test]
fn every_stored_instance_is_restored_and_an_unknown_directory_forgotten() {
    let snap = |state, name: &str| SwSnapshot {
        state,
        result: crate::lwm2m::firmware::SwUpdateResult::Installed,
        pkg_name: name.into(),
        ..Default::default()
    };
    let json = serde_json::json!({
        "instances": {
            "1": snap(SwState::Installed, "a"),
            "4": snap(SwState::Delivered, "b"),
        }
    })
    .to_string();
    let mut cfg = sw_config(true, false);
    let setup = cfg.software.as_mut().unwrap();
    for (inst, package_present, installed) in [
        (0, false, false),
        (1, false, true),
        (4, true, false),
        (6, true, false),
    ] {
        setup.boots.insert(
            inst,
            SwBoot {
                package_present,
                installed,
            },
        );
    }
    let mut h = H::start(&[account(101, 300)], cfg, Instant::now(), 7, |c| {
        c.restore(Restored {
            software: Some(json),
            ..Default::default()
        })
    });
    let forgotten: Vec<u16> = tasks_of(&mut h)
        .into_iter()
        .filter(|(_, t)| *t == SoftwareTask::Forget)
        .map(|(i, _)| i)
        .collect();
    assert_eq!(forgotten, [0, 6], "/9/0 was deleted before the restart");
    h.register_all();
    assert_eq!(code(&h.get(101, "/9/0/7", Some(0))), codes::NOT_FOUND);
    assert_eq!(text(&mut h, "/9/1/7"), "4");
    assert_eq!(text(&mut h, "/9/1/0"), "a");
    assert_eq!(text(&mut h, "/9/4/7"), "3");
    assert_eq!(text(&mut h, "/9/4/0"), "b");
}

#[test]
fn a_row_of_the_one_instance_versions_is_9_0() {
    let snap = SwSnapshot {
        state: SwState::Installed,
        pkg_name: "old".into(),
        ..Default::default()
    };
    let json = serde_json::to_string(&snap).unwrap();
    let mut h = H::start(
        &[account(101, 300)],
        sw_config(true, true),
        Instant::now(),
        7,
        |c| {
            c.restore(Restored {
                software: Some(json),
                ..Default::default()
            })
        },
    );
    h.register_all();
    assert_eq!(text(&mut h, "/9/0/7"), "4");
    assert_eq!(text(&mut h, "/9/0/0"), "old");
    assert_eq!(h.c.software_status().len(), 1);
}
