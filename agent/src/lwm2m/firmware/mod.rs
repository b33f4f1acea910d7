//! Firmware Update (/5) and Software Management (/9) without I/O, and the
//! check of a downloaded image.
//!
//! - [`state`]: the /5 machine of LwM2M 1.0 E.6 ([`Firmware`]), the Package
//!   URI check, and the types /9 shares.
//! - [`software`]: one /9 instance ([`Software`]).
//! - [`verify`]: SHA-256 and minisign checks, fed in chunks.
//! - [`digest`]: the SHA-256 a server gives with a package (in the Package
//!   URI, or in a `sha256sum` manifest beside it).
//!
//! # Driving /5
//!
//! Build the machine once at start-up: [`Firmware::restore`] with the stored
//! [`Snapshot`] (or [`Firmware::new`] when there is none) and a [`Boot`] saying
//! which version runs and whether the package file exists, and carry out the
//! actions it returns: that finishes a download, a check or an update the
//! last run left (an update is judged there, by the running version).
//!
//! Then, for each request of a server:
//!
//! | request | event | answer |
//! |---|---|---|
//! | Write string to /5/0/1 | `PackageUriWritten(s)` ("" resets) | 2.04, or the `Err`'s code |
//! | Write /5/0/0, first block (or single message) | `PushStarted { size: Size1 }` | 2.31 / 2.04 |
//! | each further block stored | `PushProgress { bytes }` | 2.31 |
//! | last block stored | `PushCompleted { bytes }` | 2.04 |
//! | Write of an empty /5/0/0 ([`state::is_empty_package`]) | `PackageCleared` | 2.04 |
//! | Execute /5/0/2 | `ExecuteUpdate` | 2.04, or 4.05 outside Downloaded |
//! | Read / Observe of /5/0/x | none: [`Firmware::values`] | 2.05 |
//!
//! Carry out the actions of a `PushStarted` before storing its block (they
//! may delete the old package file). A Block1 transfer that stops coming, or
//! comes out of order, is `PushAborted`. Write any block after a
//! `CancelDownload` is answered 4.08 Request Entity Incomplete.
//!
//! And for what the driver's own work reports: `DownloadProgress`,
//! `DownloadFinished`, `DownloadFailed` (with the id of its `StartDownload`),
//! `VerificationOk` / `VerificationFailed` (with the id of its `Verify`; run
//! [`verify::ImageVerifier`] over the file), `InstallStarted`,
//! `InstallExited`, and a `Tick` now and then while Updating (a few seconds
//! apart is plenty).
//!
//! The actions, in the order given: `CancelDownload`, `DeletePackage`,
//! `Persist(snapshot)` (store it, e.g. in the SQLite store, before the next
//! action), `StartDownload`, `Verify`, `RunInstall`, and `ValuesChanged(ids)`
//! (notify the observers of those /5/0/x: ThingsBoard observes 3, 5 and 7).
//! A successful installer is expected to restart the agent (or the gateway);
//! the verdict comes with the next start, and without a restart within
//! [`Config::restart_timeout_ms`] the update counts as failed. Update /3/0/3
//! from the running version as usual: the machine does not own it.
//!
//! # Driving /9
//!
//! The same, per instance, with [`Software`]: `PackageUriWritten` for
//! /9/x/3, `Push*` for /9/x/2, `Install` for Execute /9/x/4, `Uninstall`
//! for Execute /9/x/6 ([`software::parse_uninstall_arg`] reads its
//! argument), `Activate` / `Deactivate` for /9/x/10 and /9/x/11, and
//! `UpdateSupportedObjectsWritten` for a Write of /9/x/8. Its actions add
//! `RunUninstall`, `RunActivate`, `RunDeactivate` (report each with its
//! `*Exited` event) and `RegistrationUpdate` (send an Update with the object
//! list now).

pub mod digest;
pub mod software;
pub mod state;
pub mod verify;

pub use software::{Software, SwAction, SwEvent, SwSnapshot, SwState, SwUpdateResult};
pub use state::{
    check_package_uri, Action, Boot, Config, DownloadFailure, Event, Firmware, PackageInfo,
    PackageUri, Protocol, ResourceValue, Snapshot, State, UpdateResult, UriError, Verdict,
    VerifyFailure,
};
pub use verify::{ImageVerifier, Policy, VerifyError};
