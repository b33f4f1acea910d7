//! /5 through the client: a push block by block to the driver, its limits and
//! order, Execute in the wrong state, the snapshot persisted and restored.

use super::*;
use crate::coap::block::BlockOpt;
use crate::lwm2m::firmware as fw;

fn fw_config(max: Option<u64>) -> ClientConfig {
    ClientConfig {
        firmware: Some(FirmwareSetup {
            config: fw::Config {
                max_package_bytes: max,
                ..Default::default()
            },
            running_version: "1.0".into(),
            package_present: false,
        }),
        ..config()
    }
}

fn started(max: Option<u64>) -> H {
    let mut h = H::start(
        &[account(101, 300)],
        fw_config(max),
        Instant::now(),
        7,
        |_| {},
    );
    h.register_all();
    h
}

fn block(h: &mut H, num: u32, more: bool, data: &[u8], size1: Option<u32>) -> Packet {
    h.req(101, RequestType::Put, "/5/0/0", |p| {
        message::set_block(p, CoapOption::Block1, BlockOpt { num, more, szx: 2 });
        message::set_content_format(p, 42);
        if let Some(s) = size1 {
            message::set_uint(p, CoapOption::Size1, s);
        }
        p.payload = data.to_vec();
    })
}

fn tasks(h: &mut H) -> Vec<FirmwareTask> {
    std::iter::from_fn(|| h.c.poll_action())
        .filter_map(|a| match a {
            Action::Firmware(t) => Some(t),
            _ => None,
        })
        .collect()
}

fn text(h: &mut H, path: &str) -> String {
    String::from_utf8(h.get(101, path, Some(0)).payload).unwrap()
}

#[test]
fn a_push_goes_to_the_driver_block_by_block_then_is_verified() {
    let mut h = started(None);
    assert_eq!(text(&mut h, "/5/0/3"), "0");
    let r = block(&mut h, 0, true, &[1; 64], None);
    assert_eq!(code(&r), codes::CONTINUE);
    assert_eq!(text(&mut h, "/5/0/3"), "1");
    let r = block(&mut h, 1, false, &[2; 10], None);
    assert_eq!(code(&r), codes::CHANGED);
    let t = tasks(&mut h);
    assert!(
        t.contains(&FirmwareTask::PushBlock {
            offset: 0,
            data: vec![1; 64]
        }),
        "{t:?}"
    );
    assert!(
        t.contains(&FirmwareTask::PushBlock {
            offset: 64,
            data: vec![2; 10]
        }),
        "{t:?}"
    );
    let Some(FirmwareTask::Verify { id }) = t.last().cloned() else {
        panic!("{t:?}");
    };
    h.c.firmware_event(
        h.now,
        fw::Event::VerificationOk {
            id,
            info: Default::default(),
        },
    );
    assert_eq!(text(&mut h, "/5/0/3"), "2");
    // The snapshot went to the store at each state change.
    let saved: Vec<_> = std::iter::from_fn(|| h.c.poll_persist())
        .filter(|p| matches!(p, Persist::Firmware(_)))
        .collect();
    assert!(saved.len() >= 2, "{saved:?}");
    let r = h.req(101, RequestType::Post, "/5/0/2", |_| {});
    assert_eq!(code(&r), codes::CHANGED);
    assert!(tasks(&mut h).contains(&FirmwareTask::Install));
    assert_eq!(text(&mut h, "/5/0/3"), "3");
    // While Updating a new package is refused.
    let r = block(&mut h, 0, true, &[3; 64], None);
    assert_eq!(code(&r), codes::METHOD_NOT_ALLOWED);
}

#[test]
fn out_of_order_blocks_abort_the_push_with_4_08() {
    let mut h = started(None);
    assert_eq!(
        code(&block(&mut h, 0, true, &[1; 64], None)),
        codes::CONTINUE
    );
    let r = block(&mut h, 2, true, &[1; 64], None);
    assert_eq!(code(&r), codes::REQUEST_ENTITY_INCOMPLETE);
    assert_eq!(text(&mut h, "/5/0/3"), "0");
    assert_eq!(text(&mut h, "/5/0/5"), "4", "connection lost");
}

#[test]
fn a_push_over_the_limit_gets_4_13_with_size1() {
    let mut h = started(Some(100));
    let r = block(&mut h, 0, true, &[1; 64], Some(5000));
    assert_eq!(code(&r), codes::REQUEST_ENTITY_TOO_LARGE);
    assert_eq!(message::get_uint(&r, CoapOption::Size1), Some(100));
    // Without Size1 the limit is found as the blocks come.
    assert_eq!(
        code(&block(&mut h, 0, true, &[1; 64], None)),
        codes::CONTINUE
    );
    let r = block(&mut h, 1, true, &[1; 64], None);
    assert_eq!(code(&r), codes::REQUEST_ENTITY_TOO_LARGE);
    assert_eq!(text(&mut h, "/5/0/5"), "2");
}

#[test]
fn a_push_that_stops_coming_is_given_up_after_exchange_lifetime() {
    let mut h = started(None);
    assert_eq!(
        code(&block(&mut h, 0, true, &[1; 64], None)),
        codes::CONTINUE
    );
    h.advance(Duration::from_secs(300));
    assert_eq!(text(&mut h, "/5/0/5"), "4");
}

#[test]
fn execute_outside_downloaded_is_4_05_and_a_uri_write_starts_a_download() {
    let mut h = started(None);
    let r = h.req(101, RequestType::Post, "/5/0/2", |_| {});
    assert_eq!(code(&r), codes::METHOD_NOT_ALLOWED);
    let r = h.req(101, RequestType::Put, "/5/0/1", |p| {
        message::set_content_format(p, 0);
        p.payload = b"https://repo.example/fw.bin".to_vec();
    });
    assert_eq!(code(&r), codes::CHANGED);
    let t = tasks(&mut h);
    assert!(
        matches!(&t[..], [FirmwareTask::Download { uri, resume: false, .. }] if uri == "https://repo.example/fw.bin"),
        "{t:?}"
    );
    assert_eq!(text(&mut h, "/5/0/1"), "https://repo.example/fw.bin");
    // A scheme this build cannot fetch: the write succeeds, the result says 9.
    let r = h.req(101, RequestType::Put, "/5/0/1", |p| {
        message::set_content_format(p, 0);
        p.payload = b"ftp://repo.example/fw.bin".to_vec();
    });
    assert_eq!(code(&r), codes::CHANGED);
    assert_eq!(text(&mut h, "/5/0/5"), "9");
}

#[test]
fn a_restart_while_updating_is_judged_by_the_running_version() {
    let snap = fw::Snapshot {
        state: fw::State::Updating,
        version_before: Some("1.0".into()),
        ..Default::default()
    };
    let json = serde_json::to_string(&snap).unwrap();
    let mut cfg = fw_config(None);
    if let Some(s) = cfg.firmware.as_mut() {
        s.running_version = "2.0".into();
        s.package_present = true;
    }
    let mut h = H::start(&[account(101, 300)], cfg, Instant::now(), 7, |c| {
        c.restore(Restored {
            firmware: Some(json),
            ..Default::default()
        })
    });
    h.register_all();
    assert_eq!(text(&mut h, "/5/0/3"), "0");
    assert_eq!(text(&mut h, "/5/0/5"), "1");
}
