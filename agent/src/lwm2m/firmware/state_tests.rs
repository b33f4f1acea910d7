use super::*;
use proptest::prelude::*;

const URI: &str = "coaps://fw.example.org/fw/1.2.3";
const URI2: &str = "https://fw.example.org/fw/1.2.4";

fn cfg() -> Config {
    Config {
        max_package_bytes: Some(1000),
        restart_timeout_ms: 60_000,
        ..Config::default()
    }
}

fn fresh() -> Firmware {
    Firmware::new(cfg(), "1.0.0")
}

fn ok(fw: &mut Firmware, ev: Event) -> Vec<Action> {
    fw.handle(ev).unwrap()
}

/// The actions without Persist's payload, which the tests check apart.
fn kinds(acts: &[Action]) -> Vec<String> {
    acts.iter()
        .map(|a| match a {
            Action::Persist(_) => "Persist".to_string(),
            other => format!("{other:?}"),
        })
        .collect()
}

fn persisted(acts: &[Action]) -> Option<Snapshot> {
    acts.iter().find_map(|a| match a {
        Action::Persist(s) => Some((**s).clone()),
        _ => None,
    })
}

fn info(version: &str) -> PackageInfo {
    PackageInfo {
        name: Some("lwgate".into()),
        version: Some(version.into()),
        expected_version: None,
    }
}

fn downloading_pull() -> Firmware {
    let mut fw = fresh();
    ok(&mut fw, Event::PackageUriWritten(URI.into()));
    fw
}

fn downloading_push() -> Firmware {
    let mut fw = fresh();
    ok(&mut fw, Event::PushStarted { size: None });
    fw
}

fn verifying() -> Firmware {
    let mut fw = downloading_pull();
    ok(&mut fw, Event::DownloadFinished { id: 1, bytes: 10 });
    fw
}

fn downloaded() -> Firmware {
    let mut fw = verifying();
    ok(
        &mut fw,
        Event::VerificationOk {
            id: 1,
            info: info("1.2.3"),
        },
    );
    fw
}

fn updating() -> Firmware {
    let mut fw = downloaded();
    ok(&mut fw, Event::ExecuteUpdate);
    fw
}

fn idle_failed() -> Firmware {
    let mut fw = fresh();
    ok(&mut fw, Event::PackageUriWritten("nonsense".into()));
    fw
}

fn boot(version: &str, present: bool) -> Boot {
    Boot {
        running_version: version.into(),
        package_present: present,
    }
}

// --- Package URI check -------------------------------------------------------

fn all() -> Vec<Protocol> {
    vec![
        Protocol::Coap,
        Protocol::Coaps,
        Protocol::Http,
        Protocol::Https,
        Protocol::CoapTcp,
        Protocol::CoapsTcp,
    ]
}

#[test]
fn uri_accepts_the_schemes_and_forms_it_should() {
    let u = check_package_uri("coaps://[2001:db8::1]:5684/fw?v=1#frag", &all()).unwrap();
    assert_eq!(u.protocol, Protocol::Coaps);
    assert_eq!(u.host, "2001:db8::1");
    assert_eq!(u.port, Some(5684));
    assert_eq!(u.path_and_query, "/fw?v=1");
    let u = check_package_uri("HTTPS://Example.org", &all()).unwrap();
    assert_eq!(
        (u.protocol, u.port, u.path_and_query.as_str()),
        (Protocol::Https, None, "")
    );
    let u = check_package_uri("coap://h:/x", &all()).unwrap();
    assert_eq!(u.port, None);
    let u = check_package_uri("http://10.0.0.1:8080/a%20b/c;d=e", &all()).unwrap();
    assert_eq!((u.host.as_str(), u.port), ("10.0.0.1", Some(8080)));
    assert_eq!(
        check_package_uri("coap+tcp://h/x", &all())
            .unwrap()
            .protocol,
        Protocol::CoapTcp
    );
    let long = format!("coap://h/{}", "a".repeat(255 - 9));
    assert_eq!(long.len(), 255);
    assert!(check_package_uri(&long, &all()).is_ok());
    // A digest for the check (digest.rs); the fragment is never fetched.
    let sum = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
    let u = check_package_uri(&format!("http://h/fw.bin?t=1#sha256={sum}"), &all()).unwrap();
    assert_eq!(u.path_and_query, "/fw.bin?t=1");
}

#[test]
fn hopeless_uris_are_invalid_not_unsupported() {
    let long = format!("coap://h/{}", "a".repeat(256 - 9));
    for bad in [
        "",
        "not a uri",
        "nonsense",
        "coap://",
        "coap:///fw",
        "coap:fw",
        "coap:/fw",
        "coap://h:0/",
        "coap://h:99999/",
        "coap://h:8a/",
        "coap://h:-1/",
        "coap://h /x",
        "coap://h/x y",
        "coap://h/x\n",
        "coap://user:pw@h/fw",
        "coap://[::1/fw",
        "coap://[zz]/fw",
        "coap://[::1]x/fw",
        "coap://h/%zz",
        "coap://h/%4",
        "coap://h/a[b]",
        "coap://h/é",
        "coap://h/a\"b",
        "coap://h/a#b#c",
        "coap://h:1:2/",
        "1coap://h/x",
        "://h/x",
        long.as_str(),
        "http://h/fw.bin#sha256=e3b0c442",
        "http://h/fw.bin?sha256=e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855#sha256=0542235c83e32274635ce957a37f15c884a9c25a269aad4838f4b06cd70ce8bd",
    ] {
        match check_package_uri(bad, &all()) {
            Err(e @ UriError::Invalid(_)) => assert_eq!(e.result(), UpdateResult::InvalidUri),
            other => panic!("{bad:?}: {other:?}"),
        }
    }
}

#[test]
fn unknown_or_unoffered_schemes_are_unsupported() {
    let coap_only = [Protocol::Coap, Protocol::Coaps];
    for (uri, set) in [
        ("ftp://h/x", &all()[..]),
        ("mailto:a@b", &all()[..]),
        ("https://h/x", &coap_only[..]),
        ("http://h:99999/", &coap_only[..]),
        ("coap+tcp://h/x", &coap_only[..]),
        ("coap://h/x", &[][..]),
    ] {
        let e = check_package_uri(uri, set).unwrap_err();
        assert!(matches!(e, UriError::Unsupported(_)), "{uri}: {e:?}");
        assert_eq!(e.result(), UpdateResult::UnsupportedProtocol);
    }
}

#[test]
fn empty_package_is_zero_bytes_or_one_nul() {
    assert!(is_empty_package(b""));
    assert!(is_empty_package(b"\0"));
    assert!(!is_empty_package(b"\0\0"));
    assert!(!is_empty_package(b"x"));
}

// --- Figure 29: Idle -> Downloading ------------------------------------------

#[test]
fn valid_uri_starts_a_download() {
    let mut fw = fresh();
    let acts = ok(&mut fw, Event::PackageUriWritten(URI.into()));
    assert_eq!(
        kinds(&acts),
        [
            "Persist".to_string(),
            format!(
                "{:?}",
                Action::StartDownload {
                    id: 1,
                    uri: URI.into(),
                    resume: false
                }
            ),
            format!("{:?}", Action::ValuesChanged(vec![1, 3])),
        ]
    );
    assert_eq!(persisted(&acts), Some(fw.snapshot()));
    assert_eq!(fw.state(), State::Downloading);
    assert_eq!(fw.result(), UpdateResult::Initial);
}

#[test]
fn bad_uri_write_succeeds_and_reports_7() {
    let mut fw = fresh();
    let acts = ok(&mut fw, Event::PackageUriWritten("coap://h:99999/".into()));
    assert_eq!(fw.state(), State::Idle);
    assert_eq!(fw.result(), UpdateResult::InvalidUri);
    assert!(fw.detail().unwrap().contains("bad port"));
    assert_eq!(kinds(&acts), ["Persist", "ValuesChanged([1, 5])"]);
    // Readable back as written.
    assert_eq!(
        fw.values()[0],
        (1, ResourceValue::Str("coap://h:99999/".into()))
    );
}

#[test]
fn unsupported_scheme_reports_9() {
    let mut fw = Firmware::new(
        Config {
            protocols: vec![Protocol::Coap],
            ..cfg()
        },
        "1.0.0",
    );
    ok(&mut fw, Event::PackageUriWritten(URI.into()));
    assert_eq!(
        (fw.state(), fw.result()),
        (State::Idle, UpdateResult::UnsupportedProtocol)
    );
}

#[test]
fn overlong_uri_reports_7_and_is_not_kept() {
    let mut fw = fresh();
    ok(
        &mut fw,
        Event::PackageUriWritten(format!("coap://h/{}", "a".repeat(300))),
    );
    assert_eq!(fw.result(), UpdateResult::InvalidUri);
    assert_eq!(fw.snapshot().package_uri, "");
}

#[test]
fn new_download_resets_an_earlier_failure() {
    let mut fw = idle_failed();
    assert_eq!(fw.result(), UpdateResult::InvalidUri);
    let acts = ok(&mut fw, Event::PackageUriWritten(URI.into()));
    assert_eq!(fw.result(), UpdateResult::Initial);
    assert!(kinds(&acts).contains(&"ValuesChanged([1, 3, 5])".to_string()));
}

#[test]
fn push_starts_a_download() {
    let mut fw = fresh();
    let acts = ok(&mut fw, Event::PushStarted { size: Some(10) });
    assert_eq!(fw.state(), State::Downloading);
    assert_eq!(fw.snapshot().source, Some(Source::Push));
    assert_eq!(fw.progress(), (0, Some(10)));
    assert_eq!(kinds(&acts), ["Persist", "ValuesChanged([3])"]);
}

// --- Downloading -> Downloaded -------------------------------------------------

#[test]
fn pull_progress_finish_and_check() {
    let mut fw = downloading_pull();
    let acts = ok(
        &mut fw,
        Event::DownloadProgress {
            id: 1,
            bytes: 5,
            total: Some(10),
        },
    );
    assert!(acts.is_empty(), "progress alone is not persisted: {acts:?}");
    assert_eq!(fw.progress(), (5, Some(10)));
    let acts = ok(&mut fw, Event::DownloadFinished { id: 1, bytes: 10 });
    assert_eq!(kinds(&acts), ["Persist", "Verify { id: 1 }"]);
    assert!(persisted(&acts).unwrap().verifying);
    assert_eq!(
        fw.state(),
        State::Downloading,
        "still Downloading while checking"
    );
    let acts = ok(
        &mut fw,
        Event::VerificationOk {
            id: 1,
            info: info("1.2.3"),
        },
    );
    assert_eq!(fw.state(), State::Downloaded);
    assert_eq!(kinds(&acts), ["Persist", "ValuesChanged([3, 6, 7])"]);
    let v = fw.values();
    assert_eq!(v[3], (6, ResourceValue::Str("lwgate".into())));
    assert_eq!(v[4], (7, ResourceValue::Str("1.2.3".into())));
    assert_eq!(fw.snapshot().expected_version.as_deref(), Some("1.2.3"));
    // The URI stays readable after the download.
    assert_eq!(v[0], (1, ResourceValue::Str(URI.into())));
}

#[test]
fn push_progress_complete_and_check() {
    let mut fw = downloading_push();
    assert!(ok(&mut fw, Event::PushProgress { bytes: 64 }).is_empty());
    let acts = ok(&mut fw, Event::PushCompleted { bytes: 100 });
    assert_eq!(kinds(&acts), ["Persist", "Verify { id: 1 }"]);
    ok(
        &mut fw,
        Event::VerificationOk {
            id: 1,
            info: PackageInfo::default(),
        },
    );
    assert_eq!(fw.state(), State::Downloaded);
    assert_eq!(fw.values()[4], (7, ResourceValue::Str(String::new())));
}

#[test]
fn expected_version_may_differ_from_pkg_version() {
    let mut fw = verifying();
    ok(
        &mut fw,
        Event::VerificationOk {
            id: 1,
            info: PackageInfo {
                name: None,
                version: Some("fw-7".into()),
                expected_version: Some("1.2.3".into()),
            },
        },
    );
    assert_eq!(fw.snapshot().pkg_version, "fw-7");
    assert_eq!(fw.snapshot().expected_version.as_deref(), Some("1.2.3"));
}

#[test]
fn long_package_names_are_clipped_to_255_bytes() {
    let mut fw = verifying();
    let name = "é".repeat(200); // 400 bytes
    ok(
        &mut fw,
        Event::VerificationOk {
            id: 1,
            info: PackageInfo {
                name: Some(name),
                version: None,
                expected_version: None,
            },
        },
    );
    let s = fw.snapshot();
    assert_eq!(s.pkg_name.len(), 254);
    assert!(s.pkg_name.chars().all(|c| c == 'é'));
}

// --- Downloading -> Idle with an error -------------------------------------

#[test]
fn each_download_failure_maps_to_its_result() {
    for (f, code) in [
        (DownloadFailure::NotEnoughSpace, 2),
        (DownloadFailure::OutOfMemory, 3),
        (DownloadFailure::ConnectionLost, 4),
        (DownloadFailure::IntegrityFailure, 5),
        (DownloadFailure::UnsupportedPackageType, 6),
        (DownloadFailure::InvalidUri, 7),
        (DownloadFailure::UnsupportedProtocol, 9),
    ] {
        let mut fw = downloading_pull();
        let acts = ok(
            &mut fw,
            Event::DownloadFailed {
                id: 1,
                failure: f,
                detail: "boom".into(),
            },
        );
        assert_eq!(fw.state(), State::Idle);
        assert_eq!(fw.result().code(), code);
        assert_eq!(fw.detail(), Some("boom"));
        assert_eq!(
            kinds(&acts),
            ["DeletePackage", "Persist", "ValuesChanged([3, 5])"]
        );
    }
}

#[test]
fn each_verification_failure_maps_to_its_result() {
    for (f, code) in [
        (VerifyFailure::Integrity, 5),
        (VerifyFailure::UnsupportedPackageType, 6),
    ] {
        let mut fw = verifying();
        let acts = ok(
            &mut fw,
            Event::VerificationFailed {
                id: 1,
                failure: f,
                detail: "sha256 mismatch".into(),
            },
        );
        assert_eq!((fw.state(), fw.result().code()), (State::Idle, code));
        assert_eq!(
            kinds(&acts),
            ["DeletePackage", "Persist", "ValuesChanged([3, 5])"]
        );
    }
}

#[test]
fn aborted_push_is_connection_lost() {
    let mut fw = downloading_push();
    let acts = ok(&mut fw, Event::PushAborted);
    assert_eq!(
        (fw.state(), fw.result()),
        (State::Idle, UpdateResult::ConnectionLost)
    );
    assert_eq!(
        kinds(&acts),
        ["DeletePackage", "Persist", "ValuesChanged([3, 5])"]
    );
}

#[test]
fn too_large_packages_are_not_enough_space() {
    let mut fw = fresh();
    let acts = ok(&mut fw, Event::PushStarted { size: Some(1001) });
    assert_eq!(
        (fw.state(), fw.result()),
        (State::Idle, UpdateResult::NotEnoughSpace)
    );
    assert_eq!(kinds(&acts)[..2], ["CancelDownload", "DeletePackage"]);

    let mut fw = downloading_push();
    ok(&mut fw, Event::PushProgress { bytes: 1001 });
    assert_eq!(fw.result(), UpdateResult::NotEnoughSpace);

    let mut fw = downloading_push();
    ok(&mut fw, Event::PushCompleted { bytes: 1001 });
    assert_eq!(fw.result(), UpdateResult::NotEnoughSpace);

    let mut fw = downloading_pull();
    let acts = ok(
        &mut fw,
        Event::DownloadProgress {
            id: 1,
            bytes: 1,
            total: Some(5000),
        },
    );
    assert_eq!(fw.result(), UpdateResult::NotEnoughSpace);
    assert_eq!(kinds(&acts)[..2], ["CancelDownload", "DeletePackage"]);

    let mut fw = downloading_pull();
    let acts = ok(&mut fw, Event::DownloadFinished { id: 1, bytes: 1001 });
    assert_eq!(fw.result(), UpdateResult::NotEnoughSpace);
    assert_eq!(
        kinds(&acts)[0],
        "DeletePackage",
        "the download is over: nothing to cancel"
    );

    let mut fw = downloading_pull();
    ok(&mut fw, Event::DownloadFinished { id: 1, bytes: 1000 });
    assert!(fw.snapshot().verifying, "the limit itself is allowed");
}

// --- Downloaded -> Updating -> Idle/Downloaded ------------------------------

#[test]
fn execute_in_downloaded_runs_the_installer() {
    let mut fw = downloaded();
    let acts = ok(&mut fw, Event::ExecuteUpdate);
    assert_eq!(fw.state(), State::Updating);
    assert_eq!(
        kinds(&acts),
        ["Persist", "RunInstall", "ValuesChanged([3])"]
    );
    let s = persisted(&acts).unwrap();
    assert_eq!(
        s.state,
        State::Updating,
        "persisted before the installer runs"
    );
    assert_eq!(s.version_before.as_deref(), Some("1.0.0"));
    assert_eq!(fw.install_stage(), Some(InstallStage::Requested));
}

#[test]
fn execute_resets_an_earlier_update_failure() {
    let mut fw = updating();
    ok(
        &mut fw,
        Event::InstallExited {
            success: false,
            detail: "x".into(),
            now_ms: 0,
        },
    );
    assert_eq!(fw.result(), UpdateResult::UpdateFailed);
    let acts = ok(&mut fw, Event::ExecuteUpdate);
    assert_eq!(fw.result(), UpdateResult::Initial);
    assert!(kinds(&acts).contains(&"ValuesChanged([3, 5])".to_string()));
}

#[test]
fn execute_outside_downloaded_is_method_not_allowed() {
    for mut fw in [
        fresh(),
        idle_failed(),
        downloading_pull(),
        downloading_push(),
        verifying(),
        updating(),
    ] {
        let before = fw.snapshot();
        assert_eq!(
            fw.handle(Event::ExecuteUpdate),
            Err(OpError::MethodNotAllowed)
        );
        assert_eq!(fw.snapshot(), before);
    }
}

#[test]
fn installer_failure_returns_to_downloaded_with_8() {
    let mut fw = updating();
    ok(&mut fw, Event::InstallStarted { now_ms: 5 });
    assert_eq!(
        fw.install_stage(),
        Some(InstallStage::Running { since_ms: 5 })
    );
    let acts = ok(
        &mut fw,
        Event::InstallExited {
            success: false,
            detail: "exit status 3".into(),
            now_ms: 9,
        },
    );
    assert_eq!(
        (fw.state(), fw.result()),
        (State::Downloaded, UpdateResult::UpdateFailed)
    );
    assert!(fw.detail().unwrap().contains("exit status 3"));
    assert_eq!(kinds(&acts), ["Persist", "ValuesChanged([3, 5])"]);
    assert_eq!(fw.install_stage(), None);
}

#[test]
fn installer_success_waits_for_the_restart() {
    let mut fw = updating();
    let acts = ok(
        &mut fw,
        Event::InstallExited {
            success: true,
            detail: String::new(),
            now_ms: 1000,
        },
    );
    assert!(acts.is_empty());
    assert_eq!(fw.state(), State::Updating);
    assert_eq!(
        fw.install_stage(),
        Some(InstallStage::AwaitingRestart {
            deadline_ms: 61_000
        })
    );
    assert!(ok(&mut fw, Event::Tick { now_ms: 60_999 }).is_empty());
    // A second exit report changes nothing.
    assert!(ok(
        &mut fw,
        Event::InstallExited {
            success: false,
            detail: String::new(),
            now_ms: 2
        }
    )
    .is_empty());
    let acts = ok(&mut fw, Event::Tick { now_ms: 61_000 });
    assert_eq!(
        (fw.state(), fw.result()),
        (State::Downloaded, UpdateResult::UpdateFailed)
    );
    assert!(fw.detail().unwrap().contains("not restarted within 60 s"));
    assert_eq!(kinds(&acts), ["Persist", "ValuesChanged([3, 5])"]);
}

fn device_cfg() -> Config {
    Config {
        verdict: Verdict::InstallerExit,
        ..cfg()
    }
}

/// An end device's machine in Updating: its verdict is the installer's exit.
fn device_updating() -> Firmware {
    let mut fw = Firmware::new(device_cfg(), "1.0.0");
    ok(&mut fw, Event::PackageUriWritten(URI.into()));
    ok(&mut fw, Event::DownloadFinished { id: 1, bytes: 10 });
    ok(
        &mut fw,
        Event::VerificationOk {
            id: 1,
            info: info("1.2.3"),
        },
    );
    ok(&mut fw, Event::ExecuteUpdate);
    assert_eq!(fw.state(), State::Updating);
    fw
}

#[test]
fn an_end_devices_installer_success_is_the_verdict() {
    let mut fw = device_updating();
    let acts = ok(
        &mut fw,
        Event::InstallExited {
            success: true,
            detail: String::new(),
            now_ms: 1000,
        },
    );
    assert_eq!(
        (fw.state(), fw.result()),
        (State::Idle, UpdateResult::Success)
    );
    assert_eq!(
        kinds(&acts),
        ["DeletePackage", "Persist", "ValuesChanged([3, 5])"]
    );
    assert_eq!(fw.install_stage(), None);
    let s = persisted(&acts).unwrap();
    assert_eq!((s.state, s.result), (State::Idle, UpdateResult::Success));
    assert_eq!(
        s.pkg_version, "1.2.3",
        "PkgVersion stays: the device runs it"
    );
    // No restart is waited for.
    assert!(ok(&mut fw, Event::Tick { now_ms: u64::MAX }).is_empty());
}

#[test]
fn an_end_devices_installer_failure_returns_to_downloaded_with_8() {
    let mut fw = device_updating();
    ok(
        &mut fw,
        Event::InstallExited {
            success: false,
            detail: "exit status 2: no answer from unit 7".into(),
            now_ms: 1,
        },
    );
    assert_eq!(
        (fw.state(), fw.result()),
        (State::Downloaded, UpdateResult::UpdateFailed)
    );
    assert!(fw.detail().unwrap().contains("unit 7"));
}

#[test]
fn an_end_device_restored_in_updating_is_failed_not_judged_by_a_version() {
    let snap = device_updating().snapshot();
    for (present, state) in [(true, State::Downloaded), (false, State::Idle)] {
        // Even a running version equal to the package's proves nothing here.
        let (fw, acts) = Firmware::restore(device_cfg(), snap.clone(), &boot("1.2.3", present));
        assert_eq!(
            (fw.state(), fw.result()),
            (state, UpdateResult::UpdateFailed)
        );
        assert!(fw.detail().unwrap().contains("outcome is unknown"));
        assert!(kinds(&acts).contains(&"Persist".to_string()));
    }
}

#[test]
fn ticks_do_nothing_elsewhere() {
    for mut fw in [
        fresh(),
        downloading_pull(),
        verifying(),
        downloaded(),
        updating(),
    ] {
        assert!(ok(&mut fw, Event::Tick { now_ms: u64::MAX }).is_empty());
    }
}

#[test]
fn install_reports_outside_updating_are_ignored() {
    for mut fw in [fresh(), downloading_pull(), downloaded()] {
        let before = fw.snapshot();
        assert!(ok(&mut fw, Event::InstallStarted { now_ms: 0 }).is_empty());
        assert!(ok(
            &mut fw,
            Event::InstallExited {
                success: false,
                detail: String::new(),
                now_ms: 0
            }
        )
        .is_empty());
        assert_eq!(fw.snapshot(), before);
    }
}

// --- Reset: empty URI / empty package in every state ------------------------

#[test]
fn reset_in_every_state() {
    type Make = fn() -> Firmware;
    let cases: [(Make, &[&str]); 6] = [
        (fresh, &[]),
        (idle_failed, &["Persist", "ValuesChanged([1, 5])"]),
        (
            downloading_pull,
            &[
                "CancelDownload",
                "DeletePackage",
                "Persist",
                "ValuesChanged([1, 3])",
            ],
        ),
        (
            downloading_push,
            &[
                "CancelDownload",
                "DeletePackage",
                "Persist",
                "ValuesChanged([3])",
            ],
        ),
        (
            verifying,
            &[
                "CancelDownload",
                "DeletePackage",
                "Persist",
                "ValuesChanged([1, 3])",
            ],
        ),
        (
            downloaded,
            &["DeletePackage", "Persist", "ValuesChanged([1, 3, 6, 7])"],
        ),
    ];
    for (make, want) in cases {
        for ev in [
            Event::PackageUriWritten(String::new()),
            Event::PackageCleared,
        ] {
            let mut fw = make();
            let acts = ok(&mut fw, ev.clone());
            assert_eq!(kinds(&acts), want, "{ev:?} from {:?}", make().snapshot());
            assert_eq!(
                (fw.state(), fw.result()),
                (State::Idle, UpdateResult::Initial)
            );
            let s = fw.snapshot();
            assert_eq!(
                (s.package_uri.as_str(), s.pkg_version.as_str(), s.source),
                ("", "", None)
            );
        }
    }
}

#[test]
fn writes_while_updating_are_method_not_allowed() {
    for ev in [
        Event::PackageUriWritten(String::new()),
        Event::PackageUriWritten(URI2.into()),
        Event::PackageCleared,
        Event::PushStarted { size: None },
    ] {
        let mut fw = updating();
        let before = fw.snapshot();
        assert_eq!(fw.handle(ev), Err(OpError::MethodNotAllowed));
        assert_eq!(fw.snapshot(), before);
        assert_eq!(fw.install_stage(), Some(InstallStage::Requested));
    }
}

// --- New package while one is under way ------------------------------------

#[test]
fn same_uri_while_downloading_it_is_a_no_op() {
    let mut fw = downloading_pull();
    assert!(ok(&mut fw, Event::PackageUriWritten(URI.into())).is_empty());
    assert_eq!(fw.snapshot().transfer_id, 1);
    let mut fw = verifying();
    assert!(ok(&mut fw, Event::PackageUriWritten(URI.into())).is_empty());
    assert!(fw.snapshot().verifying);
}

#[test]
fn another_uri_while_downloading_restarts() {
    let mut fw = downloading_pull();
    let acts = ok(&mut fw, Event::PackageUriWritten(URI2.into()));
    assert_eq!(
        kinds(&acts),
        [
            "CancelDownload".to_string(),
            "DeletePackage".into(),
            "Persist".into(),
            format!(
                "{:?}",
                Action::StartDownload {
                    id: 2,
                    uri: URI2.into(),
                    resume: false
                }
            ),
            "ValuesChanged([1])".into(),
        ]
    );
    // The old transfer's reports no longer count.
    assert!(ok(&mut fw, Event::DownloadFinished { id: 1, bytes: 1 }).is_empty());
    assert!(ok(
        &mut fw,
        Event::DownloadFailed {
            id: 1,
            failure: DownloadFailure::ConnectionLost,
            detail: String::new()
        }
    )
    .is_empty());
    assert!(ok(
        &mut fw,
        Event::DownloadProgress {
            id: 1,
            bytes: 9999,
            total: None
        }
    )
    .is_empty());
    assert_eq!(fw.state(), State::Downloading);
}

#[test]
fn a_uri_in_downloaded_replaces_the_package() {
    let mut fw = downloaded();
    let acts = ok(&mut fw, Event::PackageUriWritten(URI.into()));
    assert_eq!(kinds(&acts)[..2], ["DeletePackage", "Persist"]);
    assert_eq!(fw.state(), State::Downloading);
    assert_eq!(fw.snapshot().transfer_id, 2);
    assert_eq!(fw.snapshot().pkg_version, "");
}

#[test]
fn a_bad_uri_while_downloading_cancels_and_reports() {
    let mut fw = downloading_pull();
    let acts = ok(&mut fw, Event::PackageUriWritten("ftp://h/x".into()));
    assert_eq!(kinds(&acts)[..2], ["CancelDownload", "DeletePackage"]);
    assert_eq!(
        (fw.state(), fw.result()),
        (State::Idle, UpdateResult::UnsupportedProtocol)
    );
}

#[test]
fn a_push_replaces_a_pull_and_a_restarted_push() {
    let mut fw = downloading_pull();
    let acts = ok(&mut fw, Event::PushStarted { size: None });
    assert_eq!(kinds(&acts)[..2], ["CancelDownload", "DeletePackage"]);
    assert_eq!(fw.snapshot().source, Some(Source::Push));
    let acts = ok(&mut fw, Event::PushStarted { size: None });
    assert_eq!(kinds(&acts)[..2], ["CancelDownload", "DeletePackage"]);
    assert_eq!(fw.snapshot().transfer_id, 3);
    let mut fw = downloaded();
    ok(&mut fw, Event::PushStarted { size: None });
    assert_eq!(fw.state(), State::Downloading);
}

#[test]
fn stray_reports_change_nothing() {
    let stray = [
        Event::PushProgress { bytes: 5 },
        Event::PushCompleted { bytes: 5 },
        Event::PushAborted,
        Event::DownloadProgress {
            id: 1,
            bytes: 5,
            total: None,
        },
        Event::DownloadFinished { id: 1, bytes: 5 },
        Event::DownloadFailed {
            id: 1,
            failure: DownloadFailure::ConnectionLost,
            detail: String::new(),
        },
        Event::VerificationOk {
            id: 1,
            info: info("9"),
        },
        Event::VerificationFailed {
            id: 1,
            failure: VerifyFailure::Integrity,
            detail: String::new(),
        },
    ];
    type Make = fn() -> Firmware;
    let makers: [Make; 3] = [fresh, downloaded, updating];
    for make in makers {
        for ev in stray.clone() {
            let mut fw = make();
            let before = fw.snapshot();
            assert!(ok(&mut fw, ev.clone()).is_empty(), "{ev:?}");
            assert_eq!(fw.snapshot(), before);
        }
    }
    // Pull reports during a push, push reports during a pull, checks before the end.
    let mut fw = downloading_push();
    assert!(ok(&mut fw, Event::DownloadFinished { id: 1, bytes: 1 }).is_empty());
    assert!(ok(
        &mut fw,
        Event::VerificationOk {
            id: 1,
            info: info("9")
        }
    )
    .is_empty());
    let mut fw = downloading_pull();
    assert!(ok(&mut fw, Event::PushCompleted { bytes: 1 }).is_empty());
    assert!(ok(&mut fw, Event::PushAborted).is_empty());
    // A report of the download while its package is being checked.
    let mut fw = verifying();
    assert!(ok(
        &mut fw,
        Event::DownloadFailed {
            id: 1,
            failure: DownloadFailure::ConnectionLost,
            detail: String::new()
        }
    )
    .is_empty());
    assert!(ok(
        &mut fw,
        Event::VerificationOk {
            id: 7,
            info: info("9")
        }
    )
    .is_empty());
}

// --- Restart -------------------------------------------------------------------

fn restart(fw: &Firmware, version: &str, present: bool) -> (Firmware, Vec<Action>) {
    Firmware::restore(cfg(), fw.snapshot(), &boot(version, present))
}

#[test]
fn restart_in_idle() {
    let (fw, acts) = restart(&idle_failed(), "1.0.0", false);
    assert!(acts.is_empty());
    assert_eq!(fw.result(), UpdateResult::InvalidUri, "the result survives");
    let (_, acts) = restart(&fresh(), "1.0.0", true);
    assert_eq!(kinds(&acts), ["DeletePackage"]);
}

#[test]
fn restart_while_pulling_resumes() {
    for present in [true, false] {
        let mut before = downloading_pull();
        ok(
            &mut before,
            Event::DownloadProgress {
                id: 1,
                bytes: 7,
                total: None,
            },
        );
        let (fw, acts) = restart(&before, "1.0.0", present);
        assert_eq!(
            kinds(&acts),
            [format!(
                "{:?}",
                Action::StartDownload {
                    id: 1,
                    uri: URI.into(),
                    resume: present
                }
            )]
        );
        assert_eq!(fw.state(), State::Downloading);
    }
}

#[test]
fn restart_while_pulling_a_scheme_no_longer_offered() {
    let before = downloading_pull();
    let (fw, acts) = Firmware::restore(
        Config {
            protocols: vec![Protocol::Coap],
            ..cfg()
        },
        before.snapshot(),
        &boot("1.0.0", true),
    );
    assert_eq!(
        (fw.state(), fw.result()),
        (State::Idle, UpdateResult::UnsupportedProtocol)
    );
    assert_eq!(
        kinds(&acts),
        ["DeletePackage", "Persist", "ValuesChanged([3, 5])"]
    );
}

#[test]
fn restart_while_checking_checks_again() {
    let (fw, acts) = restart(&verifying(), "1.0.0", true);
    assert_eq!(kinds(&acts), ["Verify { id: 1 }"]);
    assert!(fw.snapshot().verifying);
    // The file vanished: download it again.
    let (fw, acts) = restart(&verifying(), "1.0.0", false);
    assert_eq!(kinds(&acts)[0], "Persist");
    assert!(matches!(
        acts[1],
        Action::StartDownload { resume: false, .. }
    ));
    assert!(!fw.snapshot().verifying);
}

#[test]
fn restart_during_a_push_is_connection_lost() {
    for present in [true, false] {
        let (fw, acts) = restart(&downloading_push(), "1.0.0", present);
        assert_eq!(
            (fw.state(), fw.result()),
            (State::Idle, UpdateResult::ConnectionLost)
        );
        assert_eq!(
            kinds(&acts),
            ["DeletePackage", "Persist", "ValuesChanged([3, 5])"]
        );
    }
}

#[test]
fn restart_in_downloaded() {
    let (fw, acts) = restart(&downloaded(), "1.0.0", true);
    assert!(acts.is_empty());
    assert_eq!(fw.state(), State::Downloaded);
    let (fw, _) = restart(&downloaded(), "1.0.0", false);
    assert_eq!(
        (fw.state(), fw.result()),
        (State::Idle, UpdateResult::IntegrityFailure)
    );
}

#[test]
fn restart_on_the_expected_version_is_success() {
    for present in [true, false] {
        let (fw, acts) = restart(&updating(), "1.2.3", present);
        assert_eq!(
            (fw.state(), fw.result()),
            (State::Idle, UpdateResult::Success)
        );
        let want: &[&str] = if present {
            &["DeletePackage", "Persist", "ValuesChanged([3, 5])"]
        } else {
            &["Persist", "ValuesChanged([3, 5])"]
        };
        assert_eq!(kinds(&acts), want);
        // PkgName/PkgVersion keep naming what was installed.
        assert_eq!(fw.snapshot().pkg_version, "1.2.3");
        assert_eq!(fw.install_stage(), None);
    }
}

#[test]
fn restart_on_another_version_is_failure() {
    let (fw, _) = restart(&updating(), "1.0.0", true);
    assert_eq!(
        (fw.state(), fw.result()),
        (State::Downloaded, UpdateResult::UpdateFailed)
    );
    let why = fw.detail().unwrap();
    assert!(why.contains("1.0.0") && why.contains("1.2.3"), "{why}");
    // Execute may be tried again.
    let mut fw = fw;
    assert!(ok(&mut fw, Event::ExecuteUpdate).contains(&Action::RunInstall));

    let (fw, _) = restart(&updating(), "1.0.0", false);
    assert_eq!(
        (fw.state(), fw.result()),
        (State::Idle, UpdateResult::UpdateFailed)
    );
    assert_eq!(fw.snapshot().pkg_version, "");
}

#[test]
fn restart_without_an_expected_version_compares_with_the_old_one() {
    let mut before = verifying();
    ok(
        &mut before,
        Event::VerificationOk {
            id: 1,
            info: PackageInfo::default(),
        },
    );
    ok(&mut before, Event::ExecuteUpdate);
    let (fw, _) = restart(&before, "1.0.1", true);
    assert_eq!(fw.result(), UpdateResult::Success);
    let (fw, _) = restart(&before, "1.0.0", true);
    assert_eq!(fw.result(), UpdateResult::UpdateFailed);
    assert!(fw.detail().unwrap().contains("still runs version 1.0.0"));
    let mut snap = before.snapshot();
    snap.version_before = None;
    let (fw, _) = Firmware::restore(cfg(), snap, &boot("2.0", true));
    assert_eq!(fw.result(), UpdateResult::UpdateFailed);
}

#[test]
fn snapshot_round_trips_and_old_rows_load() {
    let snap = updating().snapshot();
    let json = serde_json::to_string(&snap).unwrap();
    assert!(json.contains("\"state\":\"updating\""), "{json}");
    assert_eq!(serde_json::from_str::<Snapshot>(&json).unwrap(), snap);
    let old: Snapshot = serde_json::from_str(r#"{"state":"downloaded","future_field":1}"#).unwrap();
    assert_eq!(
        (old.state, old.result),
        (State::Downloaded, UpdateResult::Initial)
    );
}

#[test]
fn resource_values() {
    let fw = Firmware::new(
        Config {
            protocols: vec![Protocol::Https, Protocol::Coap, Protocol::Https],
            ..cfg()
        },
        "1",
    );
    assert_eq!(
        fw.values(),
        vec![
            (1, ResourceValue::Str(String::new())),
            (3, ResourceValue::Int(0)),
            (5, ResourceValue::Int(0)),
            (6, ResourceValue::Str(String::new())),
            (7, ResourceValue::Str(String::new())),
            (8, ResourceValue::Ints(vec![0, 3])),
            (9, ResourceValue::Int(2)),
        ]
    );
    let mut push_only = Firmware::new(
        Config {
            protocols: vec![],
            ..cfg()
        },
        "1",
    );
    assert_eq!(push_only.values()[6], (9, ResourceValue::Int(1)));
    ok(&mut push_only, Event::PackageUriWritten(URI.into()));
    assert_eq!(push_only.result(), UpdateResult::UnsupportedProtocol);
}

#[test]
fn codes_are_those_of_e6() {
    let states = [
        State::Idle,
        State::Downloading,
        State::Downloaded,
        State::Updating,
    ];
    assert_eq!(states.map(State::code), [0, 1, 2, 3]);
    let results = [
        UpdateResult::Initial,
        UpdateResult::Success,
        UpdateResult::NotEnoughSpace,
        UpdateResult::OutOfMemory,
        UpdateResult::ConnectionLost,
        UpdateResult::IntegrityFailure,
        UpdateResult::UnsupportedPackageType,
        UpdateResult::InvalidUri,
        UpdateResult::UpdateFailed,
        UpdateResult::UnsupportedProtocol,
    ];
    assert_eq!(
        results.map(UpdateResult::code),
        [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]
    );
    assert_eq!(
        all().into_iter().map(Protocol::code).collect::<Vec<_>>(),
        [0, 1, 2, 3, 4, 5]
    );
    for p in all() {
        assert_eq!(Protocol::from_scheme(&p.scheme().to_uppercase()), Some(p));
    }
}

// --- Properties ----------------------------------------------------------------

fn uri_strategy() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(String::new()),
        Just(URI.to_string()),
        Just(URI2.to_string()),
        Just("coap://h:99999/".to_string()),
        Just("ftp://h/x".to_string()),
        Just("coap+tcp://h/x".to_string()),
        "[a-z:/ ]{0,12}",
    ]
}

fn failure_strategy() -> impl Strategy<Value = DownloadFailure> {
    prop_oneof![
        Just(DownloadFailure::NotEnoughSpace),
        Just(DownloadFailure::OutOfMemory),
        Just(DownloadFailure::ConnectionLost),
        Just(DownloadFailure::IntegrityFailure),
        Just(DownloadFailure::UnsupportedPackageType),
        Just(DownloadFailure::InvalidUri),
        Just(DownloadFailure::UnsupportedProtocol),
    ]
}

fn event_strategy() -> impl Strategy<Value = Event> {
    let id = 0u32..4;
    let small = 0u64..1500;
    let ver = prop_oneof![
        Just(None),
        Just(Some("1.2.3".to_string())),
        Just(Some("1.0.0".to_string()))
    ];
    prop_oneof![
        uri_strategy().prop_map(Event::PackageUriWritten),
        proptest::option::of(small.clone()).prop_map(|size| Event::PushStarted { size }),
        small
            .clone()
            .prop_map(|bytes| Event::PushProgress { bytes }),
        small
            .clone()
            .prop_map(|bytes| Event::PushCompleted { bytes }),
        Just(Event::PushAborted),
        Just(Event::PackageCleared),
        (
            id.clone(),
            small.clone(),
            proptest::option::of(small.clone())
        )
            .prop_map(|(id, bytes, total)| Event::DownloadProgress { id, bytes, total }),
        (id.clone(), small.clone()).prop_map(|(id, bytes)| Event::DownloadFinished { id, bytes }),
        (id.clone(), failure_strategy()).prop_map(|(id, failure)| Event::DownloadFailed {
            id,
            failure,
            detail: "x".into()
        }),
        (id.clone(), ver).prop_map(|(id, version)| Event::VerificationOk {
            id,
            info: PackageInfo {
                name: None,
                version,
                expected_version: None
            }
        }),
        (id, any::<bool>()).prop_map(|(id, integrity)| Event::VerificationFailed {
            id,
            failure: if integrity {
                VerifyFailure::Integrity
            } else {
                VerifyFailure::UnsupportedPackageType
            },
            detail: "x".into()
        }),
        Just(Event::ExecuteUpdate),
        (0u64..200_000).prop_map(|now_ms| Event::InstallStarted { now_ms }),
        (any::<bool>(), 0u64..200_000).prop_map(|(success, now_ms)| Event::InstallExited {
            success,
            detail: "x".into(),
            now_ms
        }),
        (0u64..400_000).prop_map(|now_ms| Event::Tick { now_ms }),
    ]
}

fn state_strategy() -> impl Strategy<Value = State> {
    prop_oneof![
        Just(State::Idle),
        Just(State::Downloading),
        Just(State::Downloaded),
        Just(State::Updating)
    ]
}

fn snapshot_strategy() -> impl Strategy<Value = Snapshot> {
    let ver = || {
        proptest::option::of(prop_oneof![
            Just("1.0.0".to_string()),
            Just("1.2.3".to_string())
        ])
    };
    (
        state_strategy(),
        uri_strategy(),
        proptest::option::of(prop_oneof![Just(Source::Pull), Just(Source::Push)]),
        any::<bool>(),
        0u32..4,
        ver(),
        ver(),
    )
        .prop_map(
            |(
                state,
                package_uri,
                source,
                verifying,
                transfer_id,
                expected_version,
                version_before,
            )| {
                Snapshot {
                    state,
                    package_uri,
                    source,
                    verifying,
                    transfer_id,
                    expected_version,
                    version_before,
                    ..Snapshot::default()
                }
            },
        )
}

/// What must hold after any restore: nothing left Updating, and Downloading
/// only with the work that finishes it.
fn check_restored(fw: &Firmware, acts: &[Action]) -> Result<(), TestCaseError> {
    prop_assert_ne!(fw.state(), State::Updating);
    if fw.state() == State::Downloading {
        prop_assert!(
            acts.iter().any(|a| matches!(
                a,
                Action::StartDownload { resume: _, .. } | Action::Verify { .. }
            )),
            "Downloading after restore without resuming: {:?}",
            acts
        );
    }
    Ok(())
}

proptest! {
    #[test]
    fn any_event_sequence_keeps_the_invariants(events in proptest::collection::vec(event_strategy(), 0..40)) {
        let mut fw = fresh();
        for ev in events {
            let before = fw.snapshot();
            let was_updating = fw.state() == State::Updating;
            match fw.handle(ev.clone()) {
                Err(e) => {
                    prop_assert_eq!(e, OpError::MethodNotAllowed);
                    prop_assert_eq!(fw.snapshot(), before);
                }
                Ok(acts) => {
                    if fw.state() == State::Updating && !was_updating {
                        prop_assert_eq!(&ev, &Event::ExecuteUpdate);
                        prop_assert!(acts.contains(&Action::RunInstall));
                    }
                    let strip = |s: Snapshot| Snapshot { bytes: 0, total: None, ..s };
                    if strip(before) != strip(fw.snapshot()) {
                        prop_assert_eq!(persisted(&acts), Some(fw.snapshot()));
                    }
                    // Persist comes after every undo and before any new work.
                    if let Some(p) = acts.iter().position(|a| matches!(a, Action::Persist(_))) {
                        prop_assert!(acts[..p].iter().all(|a| matches!(a, Action::CancelDownload | Action::DeletePackage)));
                        prop_assert!(acts[p..].iter().all(|a| !matches!(a, Action::CancelDownload | Action::DeletePackage)));
                    }
                }
            }
            let v = fw.values();
            prop_assert!(matches!(v[1].1, ResourceValue::Int(0..=3)));
            prop_assert!(matches!(v[2].1, ResourceValue::Int(0..=9)));
            let s = fw.snapshot();
            prop_assert!(s.state != State::Downloading || s.source.is_some());
            prop_assert!(s.state != State::Idle || s.source.is_none());
            prop_assert_eq!(fw.state() == State::Updating, fw.install_stage().is_some());
            prop_assert!(!s.verifying || s.state == State::Downloading);
            // And a crash right now restores to something that finishes.
            for present in [true, false] {
                let (r, acts) = Firmware::restore(cfg(), s.clone(), &boot("1.2.3", present));
                check_restored(&r, &acts)?;
                let (r, acts) = Firmware::restore(device_cfg(), s.clone(), &boot("1.2.3", present));
                check_restored(&r, &acts)?;
            }
        }
    }

    #[test]
    fn restore_from_any_snapshot_never_hangs(snap in snapshot_strategy(), present in any::<bool>(), v in prop_oneof![Just("1.0.0"), Just("1.2.3"), Just("2")]) {
        let (fw, acts) = Firmware::restore(cfg(), snap, &boot(v, present));
        check_restored(&fw, &acts)?;
        // Restoring what was persisted again is stable: no more work for Idle/Downloaded.
        let (again, acts2) = Firmware::restore(cfg(), fw.snapshot(), &boot(v, present));
        prop_assert_eq!(again.state(), fw.state());
        if matches!(fw.state(), State::Idle | State::Downloaded) && !present {
            prop_assert!(acts2.is_empty(), "{:?}", acts2);
        }
    }

    #[test]
    fn uri_check_never_panics_and_classifies(s in "\\PC{0,300}") {
        match check_package_uri(&s, &all()) {
            Ok(u) => {
                prop_assert!(s.len() <= 255);
                prop_assert!(!u.host.is_empty());
            }
            Err(UriError::Invalid(_)) | Err(UriError::Unsupported(_)) => {}
        }
    }
}
