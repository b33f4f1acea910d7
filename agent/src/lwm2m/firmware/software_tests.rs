use super::*;
use proptest::prelude::*;

const URI: &str = "coap://repo.example.org/pkg/app-2.0";

fn cfg() -> SwConfig {
    SwConfig {
        max_package_bytes: Some(1000),
        ..SwConfig::default()
    }
}

fn fresh() -> Software {
    Software::new(cfg())
}

fn ok(sw: &mut Software, ev: SwEvent) -> Vec<SwAction> {
    sw.handle(ev).unwrap()
}

fn kinds(acts: &[SwAction]) -> Vec<String> {
    acts.iter()
        .map(|a| match a {
            SwAction::Persist(_) => "Persist".to_string(),
            other => format!("{other:?}"),
        })
        .collect()
}

fn persisted(acts: &[SwAction]) -> Option<SwSnapshot> {
    acts.iter().find_map(|a| match a {
        SwAction::Persist(s) => Some((**s).clone()),
        _ => None,
    })
}

fn info() -> PackageInfo {
    PackageInfo {
        name: Some("app".into()),
        version: Some("2.0".into()),
        expected_version: None,
    }
}

fn pulling() -> Software {
    let mut sw = fresh();
    ok(&mut sw, SwEvent::PackageUriWritten(URI.into()));
    sw
}

fn pushing() -> Software {
    let mut sw = fresh();
    ok(&mut sw, SwEvent::PushStarted { size: None });
    sw
}

fn downloaded() -> Software {
    let mut sw = pulling();
    ok(&mut sw, SwEvent::DownloadFinished { id: 1, bytes: 10 });
    sw
}

fn delivered() -> Software {
    let mut sw = downloaded();
    ok(
        &mut sw,
        SwEvent::VerificationOk {
            id: 1,
            info: info(),
        },
    );
    sw
}

fn installing() -> Software {
    let mut sw = delivered();
    ok(&mut sw, SwEvent::Install);
    sw
}

fn installed() -> Software {
    let mut sw = installing();
    ok(
        &mut sw,
        SwEvent::InstallExited {
            success: true,
            detail: String::new(),
        },
    );
    sw
}

fn active() -> Software {
    let mut sw = installed();
    ok(&mut sw, SwEvent::Activate);
    ok(
        &mut sw,
        SwEvent::ActivationExited {
            success: true,
            detail: String::new(),
        },
    );
    sw
}

fn uninstalling() -> Software {
    let mut sw = installed();
    ok(&mut sw, SwEvent::Uninstall { for_update: false });
    sw
}

fn failed() -> Software {
    let mut sw = fresh();
    ok(&mut sw, SwEvent::PackageUriWritten("nonsense".into()));
    sw
}

type Make = fn() -> Software;

fn every_state() -> [(&'static str, Make); 10] {
    [
        ("initial", fresh),
        ("initial after a failure", failed),
        ("pulling", pulling),
        ("pushing", pushing),
        ("downloaded", downloaded),
        ("delivered", delivered),
        ("installing", installing),
        ("installed", installed),
        ("active", active),
        ("uninstalling", uninstalling),
    ]
}

fn activation(sw: &Software) -> ResourceValue {
    sw.values()[5].1.clone()
}

#[test]
fn codes_are_those_of_the_registry() {
    let states = [
        SwState::Initial,
        SwState::DownloadStarted,
        SwState::Downloaded,
        SwState::Delivered,
        SwState::Installed,
    ];
    assert_eq!(states.map(SwState::code), [0, 1, 2, 3, 4]);
    let results = [
        SwUpdateResult::Initial,
        SwUpdateResult::Downloading,
        SwUpdateResult::Installed,
        SwUpdateResult::Delivered,
        SwUpdateResult::NotEnoughStorage,
        SwUpdateResult::OutOfMemory,
        SwUpdateResult::ConnectionLost,
        SwUpdateResult::IntegrityFailure,
        SwUpdateResult::UnsupportedPackageType,
        SwUpdateResult::InvalidUri,
        SwUpdateResult::DeviceError,
        SwUpdateResult::InstallFailed,
        SwUpdateResult::UninstallFailed,
    ];
    assert_eq!(
        results.map(SwUpdateResult::code),
        [0, 1, 2, 3, 50, 51, 52, 53, 54, 56, 57, 58, 59]
    );
}

// --- INITIAL -> DOWNLOAD STARTED -----------------------------------------------

#[test]
fn uri_starts_a_download() {
    let mut sw = fresh();
    let acts = ok(&mut sw, SwEvent::PackageUriWritten(URI.into()));
    assert_eq!(
        kinds(&acts),
        [
            "Persist".to_string(),
            format!(
                "{:?}",
                SwAction::StartDownload {
                    id: 1,
                    uri: URI.into(),
                    resume: false
                }
            ),
            "ValuesChanged([7, 9])".into(),
        ]
    );
    assert_eq!(
        (sw.state(), sw.result()),
        (SwState::DownloadStarted, SwUpdateResult::Downloading)
    );
}

#[test]
fn bad_and_unsupported_uris_are_56() {
    for uri in ["nonsense", "coap://h:99999/", "ftp://h/x", "https://h/x"] {
        let mut sw = Software::new(SwConfig {
            protocols: vec![Protocol::Coap],
            ..cfg()
        });
        let acts = ok(&mut sw, SwEvent::PackageUriWritten(uri.into()));
        assert_eq!(
            (sw.state(), sw.result()),
            (SwState::Initial, SwUpdateResult::InvalidUri),
            "{uri}"
        );
        assert_eq!(kinds(&acts), ["Persist", "ValuesChanged([9])"]);
        assert_eq!(sw.snapshot().package_uri, uri);
    }
    let mut sw = fresh();
    ok(
        &mut sw,
        SwEvent::PackageUriWritten(format!("coap://h/{}", "a".repeat(300))),
    );
    assert_eq!(sw.result(), SwUpdateResult::InvalidUri);
    assert_eq!(sw.snapshot().package_uri, "");
}

#[test]
fn empty_uri_in_initial_forgets_it() {
    let mut sw = failed();
    let acts = ok(&mut sw, SwEvent::PackageUriWritten(String::new()));
    assert_eq!(kinds(&acts), ["Persist"]);
    assert_eq!(sw.snapshot().package_uri, "");
    assert_eq!(
        sw.result(),
        SwUpdateResult::InvalidUri,
        "no download started: result kept"
    );
}

#[test]
fn a_new_download_resets_an_earlier_failure() {
    let mut sw = failed();
    ok(&mut sw, SwEvent::PackageUriWritten(URI.into()));
    assert_eq!(sw.result(), SwUpdateResult::Downloading);
    assert_eq!(sw.detail(), None);
}

#[test]
fn new_packages_outside_initial_are_method_not_allowed() {
    for (name, make) in every_state().into_iter().skip(2) {
        for ev in [
            SwEvent::PackageUriWritten(URI.into()),
            SwEvent::PackageUriWritten(String::new()),
        ] {
            let mut sw = make();
            let before = sw.snapshot();
            assert_eq!(sw.handle(ev), Err(OpError::MethodNotAllowed), "{name}");
            assert_eq!(sw.snapshot(), before);
        }
        if name != "pushing" {
            let mut sw = make();
            assert_eq!(
                sw.handle(SwEvent::PushStarted { size: None }),
                Err(OpError::MethodNotAllowed),
                "{name}"
            );
        }
    }
}

#[test]
fn push_starts_and_may_start_again() {
    let mut sw = fresh();
    let acts = ok(&mut sw, SwEvent::PushStarted { size: Some(10) });
    assert_eq!(kinds(&acts), ["Persist", "ValuesChanged([7, 9])"]);
    assert_eq!(sw.snapshot().source, Some(Source::Push));
    let acts = ok(&mut sw, SwEvent::PushStarted { size: None });
    assert_eq!(kinds(&acts), ["CancelDownload", "DeletePackage", "Persist"]);
    assert_eq!(sw.snapshot().transfer_id, 2);
}

// --- DOWNLOAD STARTED -> DOWNLOADED -> DELIVERED ---------------------------------

#[test]
fn pull_then_check_delivers() {
    let mut sw = pulling();
    assert!(ok(
        &mut sw,
        SwEvent::DownloadProgress {
            id: 1,
            bytes: 4,
            total: Some(10)
        }
    )
    .is_empty());
    let acts = ok(&mut sw, SwEvent::DownloadFinished { id: 1, bytes: 10 });
    assert_eq!(
        kinds(&acts),
        ["Persist", "Verify { id: 1 }", "ValuesChanged([7])"]
    );
    assert_eq!(
        (sw.state(), sw.result()),
        (SwState::Downloaded, SwUpdateResult::Downloading)
    );
    let acts = ok(
        &mut sw,
        SwEvent::VerificationOk {
            id: 1,
            info: info(),
        },
    );
    assert_eq!(
        (sw.state(), sw.result()),
        (SwState::Delivered, SwUpdateResult::Delivered)
    );
    assert_eq!(kinds(&acts), ["Persist", "ValuesChanged([0, 1, 7, 9])"]);
    assert_eq!(sw.values()[0], (0, ResourceValue::Str("app".into())));
    assert_eq!(sw.values()[1], (1, ResourceValue::Str("2.0".into())));
}

#[test]
fn push_then_check_delivers() {
    let mut sw = pushing();
    assert!(ok(&mut sw, SwEvent::PushProgress { bytes: 3 }).is_empty());
    let acts = ok(&mut sw, SwEvent::PushCompleted { bytes: 6 });
    assert_eq!(
        kinds(&acts),
        ["Persist", "Verify { id: 1 }", "ValuesChanged([7])"]
    );
    ok(
        &mut sw,
        SwEvent::VerificationOk {
            id: 1,
            info: info(),
        },
    );
    assert_eq!(sw.state(), SwState::Delivered);
}

#[test]
fn each_download_failure_maps_to_its_result() {
    for (f, code) in [
        (DownloadFailure::NotEnoughSpace, 50),
        (DownloadFailure::OutOfMemory, 51),
        (DownloadFailure::ConnectionLost, 52),
        (DownloadFailure::IntegrityFailure, 53),
        (DownloadFailure::UnsupportedPackageType, 54),
        (DownloadFailure::InvalidUri, 56),
        (DownloadFailure::UnsupportedProtocol, 56),
    ] {
        let mut sw = pulling();
        let acts = ok(
            &mut sw,
            SwEvent::DownloadFailed {
                id: 1,
                failure: f,
                detail: "d".into(),
            },
        );
        assert_eq!((sw.state(), sw.result().code()), (SwState::Initial, code));
        assert_eq!(
            kinds(&acts),
            ["DeletePackage", "Persist", "ValuesChanged([7, 9])"]
        );
    }
}

#[test]
fn each_check_failure_maps_to_its_result() {
    for (f, code) in [
        (VerifyFailure::Integrity, 53),
        (VerifyFailure::UnsupportedPackageType, 54),
    ] {
        let mut sw = downloaded();
        let acts = ok(
            &mut sw,
            SwEvent::VerificationFailed {
                id: 1,
                failure: f,
                detail: "d".into(),
            },
        );
        assert_eq!((sw.state(), sw.result().code()), (SwState::Initial, code));
        assert_eq!(
            kinds(&acts),
            ["DeletePackage", "Persist", "ValuesChanged([7, 9])"]
        );
    }
}

#[test]
fn aborted_push_is_52() {
    let mut sw = pushing();
    ok(&mut sw, SwEvent::PushAborted);
    assert_eq!((sw.state(), sw.result().code()), (SwState::Initial, 52));
}

#[test]
fn too_large_packages_are_50() {
    let mut sw = fresh();
    let acts = ok(&mut sw, SwEvent::PushStarted { size: Some(1001) });
    assert_eq!(sw.result().code(), 50);
    assert_eq!(kinds(&acts)[..2], ["CancelDownload", "DeletePackage"]);
    let mut sw = pushing();
    ok(&mut sw, SwEvent::PushProgress { bytes: 1001 });
    assert_eq!(sw.result().code(), 50);
    let mut sw = pushing();
    ok(&mut sw, SwEvent::PushCompleted { bytes: 1001 });
    assert_eq!(sw.result().code(), 50);
    let mut sw = pulling();
    ok(
        &mut sw,
        SwEvent::DownloadProgress {
            id: 1,
            bytes: 0,
            total: Some(1001),
        },
    );
    assert_eq!(sw.result().code(), 50);
    let mut sw = pulling();
    let acts = ok(&mut sw, SwEvent::DownloadFinished { id: 1, bytes: 1001 });
    assert_eq!((sw.state(), sw.result().code()), (SwState::Initial, 50));
    assert_eq!(kinds(&acts)[0], "DeletePackage");
}

// --- DELIVERED -> INSTALLED ------------------------------------------------------

#[test]
fn install_runs_the_installer_once() {
    let mut sw = delivered();
    let acts = ok(&mut sw, SwEvent::Install);
    assert_eq!(kinds(&acts), ["Persist", "RunInstall"]);
    assert_eq!(persisted(&acts).unwrap().busy, Some(Busy::Installing));
    assert_eq!(sw.handle(SwEvent::Install), Err(OpError::MethodNotAllowed));
    assert_eq!(
        sw.handle(SwEvent::Uninstall { for_update: false }),
        Err(OpError::MethodNotAllowed)
    );
}

#[test]
fn install_outside_delivered_is_method_not_allowed() {
    for (name, make) in every_state() {
        if name == "delivered" {
            continue;
        }
        let mut sw = make();
        let before = sw.snapshot();
        assert_eq!(
            sw.handle(SwEvent::Install),
            Err(OpError::MethodNotAllowed),
            "{name}"
        );
        assert_eq!(sw.snapshot(), before);
    }
}

#[test]
fn installer_success_installs_inactive() {
    let mut sw = installing();
    let acts = ok(
        &mut sw,
        SwEvent::InstallExited {
            success: true,
            detail: String::new(),
        },
    );
    assert_eq!(
        (sw.state(), sw.result()),
        (SwState::Installed, SwUpdateResult::Installed)
    );
    assert_eq!(
        kinds(&acts),
        ["DeletePackage", "Persist", "ValuesChanged([7, 9])"]
    );
    assert_eq!(activation(&sw), ResourceValue::Bool(false));
}

#[test]
fn installer_failure_stays_delivered_with_58() {
    let mut sw = installing();
    let acts = ok(
        &mut sw,
        SwEvent::InstallExited {
            success: false,
            detail: "dpkg: error".into(),
        },
    );
    assert_eq!((sw.state(), sw.result().code()), (SwState::Delivered, 58));
    assert!(sw.detail().unwrap().contains("dpkg: error"));
    assert_eq!(kinds(&acts), ["Persist", "ValuesChanged([9])"]);
    // And may be tried again.
    assert_eq!(
        kinds(&ok(&mut sw, SwEvent::Install)),
        ["Persist", "RunInstall"]
    );
}

#[test]
fn update_supported_objects_asks_for_a_registration_update() {
    let mut sw = delivered();
    let acts = ok(&mut sw, SwEvent::UpdateSupportedObjectsWritten(true));
    assert_eq!(kinds(&acts), ["Persist", "ValuesChanged([8])"]);
    ok(&mut sw, SwEvent::Install);
    let acts = ok(
        &mut sw,
        SwEvent::InstallExited {
            success: true,
            detail: String::new(),
        },
    );
    assert!(acts.contains(&SwAction::RegistrationUpdate));
    ok(&mut sw, SwEvent::Uninstall { for_update: false });
    let acts = ok(
        &mut sw,
        SwEvent::UninstallExited {
            success: true,
            detail: String::new(),
        },
    );
    assert!(acts.contains(&SwAction::RegistrationUpdate));
    // Without the flag, none.
    let mut sw = installing();
    let acts = ok(
        &mut sw,
        SwEvent::InstallExited {
            success: true,
            detail: String::new(),
        },
    );
    assert!(!acts.contains(&SwAction::RegistrationUpdate));
}

// --- Uninstall ---------------------------------------------------------------------

#[test]
fn uninstall_argument() {
    assert_eq!(parse_uninstall_arg(""), Ok(false));
    assert_eq!(parse_uninstall_arg("0"), Ok(false));
    assert_eq!(parse_uninstall_arg(" 1 "), Ok(true));
    for bad in ["2", "1,0", "x", "0='a'"] {
        assert!(
            matches!(parse_uninstall_arg(bad), Err(OpError::BadRequest(_))),
            "{bad}"
        );
    }
}

#[test]
fn uninstall_in_every_state() {
    let cases: [(Make, Result<&[&str], OpError>); 10] = [
        (fresh, Err(OpError::MethodNotAllowed)),
        (failed, Err(OpError::MethodNotAllowed)),
        (
            pulling,
            Ok(&[
                "CancelDownload",
                "DeletePackage",
                "Persist",
                "ValuesChanged([7, 9])",
            ]),
        ),
        (
            pushing,
            Ok(&[
                "CancelDownload",
                "DeletePackage",
                "Persist",
                "ValuesChanged([7, 9])",
            ]),
        ),
        (
            downloaded,
            Ok(&[
                "CancelDownload",
                "DeletePackage",
                "Persist",
                "ValuesChanged([7, 9])",
            ]),
        ),
        (
            delivered,
            Ok(&["DeletePackage", "Persist", "ValuesChanged([0, 1, 7, 9])"]),
        ),
        (installing, Err(OpError::MethodNotAllowed)),
        (installed, Ok(&["Persist", "RunUninstall"])),
        (active, Ok(&["Persist", "RunUninstall"])),
        (uninstalling, Err(OpError::MethodNotAllowed)),
    ];
    for (make, want) in cases {
        let mut sw = make();
        let before = sw.snapshot();
        let got = sw.handle(SwEvent::Uninstall { for_update: false });
        match want {
            Err(e) => {
                assert_eq!(got, Err(e), "{before:?}");
                assert_eq!(sw.snapshot(), before);
            }
            Ok(want) => {
                assert_eq!(kinds(&got.unwrap()), want, "{before:?}");
                if before.state != SwState::Installed {
                    assert_eq!(
                        (sw.state(), sw.result()),
                        (SwState::Initial, SwUpdateResult::Initial)
                    );
                }
            }
        }
    }
}

#[test]
fn uninstaller_success_and_failure() {
    let mut sw = uninstalling();
    let acts = ok(
        &mut sw,
        SwEvent::UninstallExited {
            success: true,
            detail: String::new(),
        },
    );
    assert_eq!(
        (sw.state(), sw.result()),
        (SwState::Initial, SwUpdateResult::Initial)
    );
    assert_eq!(kinds(&acts), ["Persist", "ValuesChanged([0, 1, 7, 9])"]);

    let mut sw = uninstalling();
    let acts = ok(
        &mut sw,
        SwEvent::UninstallExited {
            success: false,
            detail: "busy".into(),
        },
    );
    assert_eq!((sw.state(), sw.result().code()), (SwState::Installed, 59));
    assert_eq!(kinds(&acts), ["Persist", "ValuesChanged([9])"]);
}

#[test]
fn uninstall_for_update_keeps_the_software() {
    let mut sw = active();
    let acts = ok(&mut sw, SwEvent::Uninstall { for_update: true });
    assert_eq!(kinds(&acts), ["Persist", "ValuesChanged([7, 9, 12])"]);
    assert_eq!(
        (sw.state(), sw.result()),
        (SwState::Initial, SwUpdateResult::Initial)
    );
    assert_eq!(
        sw.snapshot().pkg_version,
        "2.0",
        "names what is still installed"
    );
    assert_eq!(
        activation(&sw),
        ResourceValue::Bool(false),
        "not alive outside INSTALLED"
    );
    // The upgrade package may now come.
    ok(&mut sw, SwEvent::PackageUriWritten(URI.into()));
    assert_eq!(sw.state(), SwState::DownloadStarted);
}

// --- Activation -----------------------------------------------------------------

#[test]
fn activate_and_deactivate() {
    let mut sw = installed();
    let acts = ok(&mut sw, SwEvent::Activate);
    assert_eq!(kinds(&acts), ["Persist", "RunActivate"]);
    assert_eq!(
        sw.handle(SwEvent::Deactivate),
        Err(OpError::MethodNotAllowed),
        "busy"
    );
    let acts = ok(
        &mut sw,
        SwEvent::ActivationExited {
            success: true,
            detail: String::new(),
        },
    );
    assert_eq!(kinds(&acts), ["Persist", "ValuesChanged([12])"]);
    assert_eq!(activation(&sw), ResourceValue::Bool(true));
    assert!(ok(&mut sw, SwEvent::Activate).is_empty(), "already active");
    assert_eq!(
        kinds(&ok(&mut sw, SwEvent::Deactivate)),
        ["Persist", "RunDeactivate"]
    );
    ok(
        &mut sw,
        SwEvent::ActivationExited {
            success: true,
            detail: String::new(),
        },
    );
    assert_eq!(activation(&sw), ResourceValue::Bool(false));
    assert!(
        ok(&mut sw, SwEvent::Deactivate).is_empty(),
        "already inactive"
    );
}

#[test]
fn failed_activation_leaves_the_state() {
    let mut sw = installed();
    ok(&mut sw, SwEvent::Activate);
    let acts = ok(
        &mut sw,
        SwEvent::ActivationExited {
            success: false,
            detail: "unit failed".into(),
        },
    );
    assert_eq!(kinds(&acts), ["Persist"]);
    assert_eq!(activation(&sw), ResourceValue::Bool(false));
    assert!(sw.detail().unwrap().contains("unit failed"));
    assert_eq!(sw.result(), SwUpdateResult::Installed);
}

#[test]
fn activation_outside_installed_is_method_not_allowed() {
    for (name, make) in every_state() {
        if matches!(name, "installed" | "active") {
            continue;
        }
        for ev in [SwEvent::Activate, SwEvent::Deactivate] {
            let mut sw = make();
            assert_eq!(sw.handle(ev), Err(OpError::MethodNotAllowed), "{name}");
        }
    }
}

#[test]
fn stray_reports_change_nothing() {
    let stray = [
        SwEvent::PushProgress { bytes: 1 },
        SwEvent::PushCompleted { bytes: 1 },
        SwEvent::PushAborted,
        SwEvent::DownloadProgress {
            id: 1,
            bytes: 1,
            total: None,
        },
        SwEvent::DownloadFinished { id: 1, bytes: 1 },
        SwEvent::DownloadFailed {
            id: 1,
            failure: DownloadFailure::ConnectionLost,
            detail: String::new(),
        },
        SwEvent::VerificationOk {
            id: 1,
            info: info(),
        },
        SwEvent::VerificationFailed {
            id: 1,
            failure: VerifyFailure::Integrity,
            detail: String::new(),
        },
        SwEvent::InstallExited {
            success: true,
            detail: String::new(),
        },
        SwEvent::UninstallExited {
            success: true,
            detail: String::new(),
        },
        SwEvent::ActivationExited {
            success: true,
            detail: String::new(),
        },
    ];
    let makers: [Make; 3] = [fresh, installed, active];
    for make in makers {
        for ev in stray.clone() {
            let mut sw = make();
            let before = sw.snapshot();
            assert!(ok(&mut sw, ev.clone()).is_empty(), "{ev:?}");
            assert_eq!(sw.snapshot(), before);
        }
    }
    let mut sw = pulling();
    assert!(ok(&mut sw, SwEvent::DownloadFinished { id: 9, bytes: 1 }).is_empty());
    assert!(ok(&mut sw, SwEvent::PushCompleted { bytes: 1 }).is_empty());
    let mut sw = downloaded();
    assert!(ok(
        &mut sw,
        SwEvent::VerificationOk {
            id: 9,
            info: info()
        }
    )
    .is_empty());
    let mut sw = pushing();
    assert!(ok(
        &mut sw,
        SwEvent::DownloadFailed {
            id: 1,
            failure: DownloadFailure::ConnectionLost,
            detail: String::new()
        }
    )
    .is_empty());
}

// --- Restart --------------------------------------------------------------------

fn restart(sw: &Software, present: bool, installed: bool) -> (Software, Vec<SwAction>) {
    Software::restore(
        cfg(),
        sw.snapshot(),
        SwBoot {
            package_present: present,
            installed,
        },
    )
}

#[test]
fn restart_in_initial() {
    let (sw, acts) = restart(&failed(), false, false);
    assert!(acts.is_empty());
    assert_eq!(sw.result(), SwUpdateResult::InvalidUri);
    let (_, acts) = restart(&fresh(), true, false);
    assert_eq!(kinds(&acts), ["DeletePackage"]);
}

#[test]
fn restart_while_downloading() {
    for present in [true, false] {
        let (sw, acts) = restart(&pulling(), present, false);
        assert_eq!(
            kinds(&acts),
            [format!(
                "{:?}",
                SwAction::StartDownload {
                    id: 1,
                    uri: URI.into(),
                    resume: present
                }
            )]
        );
        assert_eq!(sw.state(), SwState::DownloadStarted);
        let (sw, _) = restart(&pushing(), present, false);
        assert_eq!((sw.state(), sw.result().code()), (SwState::Initial, 52));
    }
    let (sw, _) = Software::restore(
        SwConfig {
            protocols: vec![Protocol::Http],
            ..cfg()
        },
        pulling().snapshot(),
        SwBoot {
            package_present: true,
            installed: false,
        },
    );
    assert_eq!((sw.state(), sw.result().code()), (SwState::Initial, 56));
}

#[test]
fn restart_in_downloaded_checks_again() {
    let (sw, acts) = restart(&downloaded(), true, false);
    assert_eq!(kinds(&acts), ["Verify { id: 1 }"]);
    assert_eq!(sw.state(), SwState::Downloaded);
    let (sw, _) = restart(&downloaded(), false, false);
    assert_eq!((sw.state(), sw.result().code()), (SwState::Initial, 53));
}

#[test]
fn restart_in_delivered() {
    let (sw, acts) = restart(&delivered(), true, false);
    assert!(acts.is_empty());
    assert_eq!(sw.state(), SwState::Delivered);
    let (sw, _) = restart(&delivered(), false, false);
    assert_eq!((sw.state(), sw.result().code()), (SwState::Initial, 53));
}

#[test]
fn restart_during_an_install_is_judged() {
    let (sw, acts) = restart(&installing(), true, true);
    assert_eq!(
        (sw.state(), sw.result()),
        (SwState::Installed, SwUpdateResult::Installed)
    );
    assert_eq!(
        kinds(&acts),
        ["DeletePackage", "Persist", "ValuesChanged([7, 9])"]
    );
    let (sw, _) = restart(&installing(), true, false);
    assert_eq!((sw.state(), sw.result().code()), (SwState::Delivered, 58));
    assert_eq!(sw.busy(), None);
    let (sw, _) = restart(&installing(), false, false);
    assert_eq!((sw.state(), sw.result().code()), (SwState::Initial, 58));
}

#[test]
fn restart_during_an_uninstall_is_judged() {
    let (sw, _) = restart(&uninstalling(), false, false);
    assert_eq!(
        (sw.state(), sw.result()),
        (SwState::Initial, SwUpdateResult::Initial)
    );
    let (sw, _) = restart(&uninstalling(), false, true);
    assert_eq!((sw.state(), sw.result().code()), (SwState::Installed, 59));
    assert_eq!(sw.busy(), None);
}

#[test]
fn restart_in_installed() {
    let (sw, acts) = restart(&active(), false, true);
    assert!(acts.is_empty());
    assert_eq!(activation(&sw), ResourceValue::Bool(true));
    let (sw, _) = restart(&active(), false, false);
    assert_eq!((sw.state(), sw.result().code()), (SwState::Initial, 57));
    let mut activating = installed();
    ok(&mut activating, SwEvent::Activate);
    let (sw, _) = restart(&activating, false, true);
    assert_eq!((sw.state(), sw.busy()), (SwState::Installed, None));
    assert_eq!(activation(&sw), ResourceValue::Bool(false));
}

#[test]
fn snapshot_round_trips() {
    let snap = installing().snapshot();
    let json = serde_json::to_string(&snap).unwrap();
    assert!(json.contains("\"busy\":\"installing\""), "{json}");
    assert_eq!(serde_json::from_str::<SwSnapshot>(&json).unwrap(), snap);
    let old: SwSnapshot = serde_json::from_str(r#"{"state":"installed"}"#).unwrap();
    assert_eq!(old.state, SwState::Installed);
}

// --- Properties ---------------------------------------------------------------------

fn event_strategy() -> impl Strategy<Value = SwEvent> {
    let id = 0u32..4;
    let small = 0u64..1500;
    let uri = prop_oneof![
        Just(String::new()),
        Just(URI.to_string()),
        Just("nonsense".to_string())
    ];
    let failure = prop_oneof![
        Just(DownloadFailure::NotEnoughSpace),
        Just(DownloadFailure::ConnectionLost),
        Just(DownloadFailure::UnsupportedProtocol),
    ];
    prop_oneof![
        uri.prop_map(SwEvent::PackageUriWritten),
        proptest::option::of(small.clone()).prop_map(|size| SwEvent::PushStarted { size }),
        small
            .clone()
            .prop_map(|bytes| SwEvent::PushProgress { bytes }),
        small
            .clone()
            .prop_map(|bytes| SwEvent::PushCompleted { bytes }),
        Just(SwEvent::PushAborted),
        (id.clone(), small.clone()).prop_map(|(id, bytes)| SwEvent::DownloadProgress {
            id,
            bytes,
            total: None
        }),
        (id.clone(), small).prop_map(|(id, bytes)| SwEvent::DownloadFinished { id, bytes }),
        (id.clone(), failure).prop_map(|(id, failure)| SwEvent::DownloadFailed {
            id,
            failure,
            detail: String::new()
        }),
        id.clone()
            .prop_map(|id| SwEvent::VerificationOk { id, info: info() }),
        id.prop_map(|id| SwEvent::VerificationFailed {
            id,
            failure: VerifyFailure::Integrity,
            detail: String::new()
        }),
        Just(SwEvent::Install),
        any::<bool>().prop_map(|success| SwEvent::InstallExited {
            success,
            detail: String::new()
        }),
        any::<bool>().prop_map(|for_update| SwEvent::Uninstall { for_update }),
        any::<bool>().prop_map(|success| SwEvent::UninstallExited {
            success,
            detail: String::new()
        }),
        Just(SwEvent::Activate),
        Just(SwEvent::Deactivate),
        any::<bool>().prop_map(|success| SwEvent::ActivationExited {
            success,
            detail: String::new()
        }),
        any::<bool>().prop_map(SwEvent::UpdateSupportedObjectsWritten),
    ]
}

fn check_restored(sw: &Software, acts: &[SwAction]) -> Result<(), TestCaseError> {
    prop_assert_eq!(sw.busy(), None, "no command survives a restart");
    match sw.state() {
        SwState::DownloadStarted => prop_assert!(
            acts.iter()
                .any(|a| matches!(a, SwAction::StartDownload { .. })),
            "{:?}",
            acts
        ),
        SwState::Downloaded => {
            prop_assert!(
                acts.iter().any(|a| matches!(a, SwAction::Verify { .. })),
                "{:?}",
                acts
            )
        }
        _ => {}
    }
    Ok(())
}

proptest! {
    #[test]
    fn any_event_sequence_keeps_the_invariants(events in proptest::collection::vec(event_strategy(), 0..40)) {
        let mut sw = fresh();
        for ev in events {
            let before = sw.snapshot();
            match sw.handle(ev) {
                Err(e) => {
                    prop_assert_eq!(e, OpError::MethodNotAllowed);
                    prop_assert_eq!(sw.snapshot(), before);
                }
                Ok(acts) => {
                    let strip = |s: SwSnapshot| SwSnapshot { bytes: 0, total: None, ..s };
                    if strip(before) != strip(sw.snapshot()) {
                        prop_assert_eq!(persisted(&acts), Some(sw.snapshot()));
                    }
                    if let Some(p) = acts.iter().position(|a| matches!(a, SwAction::Persist(_))) {
                        prop_assert!(acts[..p].iter().all(|a| matches!(a, SwAction::CancelDownload | SwAction::DeletePackage)));
                    }
                }
            }
            let s = sw.snapshot();
            prop_assert!(matches!(s.result.code(), 0..=3 | 50..=54 | 56..=59));
            prop_assert!(s.state == SwState::Installed || !matches!(s.busy, Some(Busy::Uninstalling | Busy::Activating | Busy::Deactivating)));
            prop_assert!(s.state == SwState::Delivered || s.busy != Some(Busy::Installing));
            prop_assert!(s.state != SwState::DownloadStarted || s.source.is_some());
            for present in [true, false] {
                for installed in [true, false] {
                    let (r, acts) = Software::restore(cfg(), s.clone(), SwBoot { package_present: present, installed });
                    check_restored(&r, &acts)?;
                }
            }
        }
    }

    #[test]
    fn restore_from_any_snapshot_never_hangs(
        state in prop_oneof![
            Just(SwState::Initial),
            Just(SwState::DownloadStarted),
            Just(SwState::Downloaded),
            Just(SwState::Delivered),
            Just(SwState::Installed)
        ],
        busy in proptest::option::of(prop_oneof![
            Just(Busy::Installing),
            Just(Busy::Uninstalling),
            Just(Busy::Activating),
            Just(Busy::Deactivating)
        ]),
        source in proptest::option::of(prop_oneof![Just(Source::Pull), Just(Source::Push)]),
        uri in prop_oneof![Just(String::new()), Just(URI.to_string()), Just("ftp://h/".to_string())],
        present in any::<bool>(),
        installed in any::<bool>(),
    ) {
        let snap = SwSnapshot { state, busy, source, package_uri: uri, ..SwSnapshot::default() };
        let (sw, acts) = Software::restore(cfg(), snap, SwBoot { package_present: present, installed });
        check_restored(&sw, &acts)?;
    }
}
