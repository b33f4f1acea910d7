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
            boot: SwBoot {
                package_present: false,
                installed,
            },
            can_uninstall,
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

fn tasks(h: &mut H) -> Vec<SoftwareTask> {
    std::iter::from_fn(|| h.c.poll_action())
        .filter_map(|a| match a {
            Action::Software(t) => Some(t),
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
    h.c.software_event(h.now, SwEvent::DownloadFinished { id, bytes: 10 });
    assert_eq!(tasks(h), [SoftwareTask::Verify { id }]);
    let info = PackageInfo {
        name: Some("app".into()),
        version: Some("1.2".into()),
        expected_version: None,
    };
    h.c.software_event(h.now, SwEvent::VerificationOk { id, info });
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
        SwEvent::InstallExited {
            success: false,
            detail: "exit 3".into(),
        },
    );
    assert_eq!(text(&mut h, "/9/0/7"), "3");
    assert_eq!(text(&mut h, "/9/0/9"), "58");
    let st = h.c.software_status().unwrap();
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
