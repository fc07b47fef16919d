//! The crate's error type: one variant per failed step, each naming the file or the
//! OCI field involved, with the underlying `io::Error` as its `#[source]`.
//!
//! `Display` does not repeat the source; print the chain (e.g. anyhow's `{:#}`) to see
//! `write "10" to /sys/fs/cgroup/pids/onggi/c1/pids.max: Permission denied`.

use std::io;
use std::path::PathBuf;

/// Result alias for this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Every way a cgroup operation can fail.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Reading a file (mountinfo, `cgroup.procs`, `freezer.state`, ...) failed.
    #[error("read {}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// Listing a cgroup directory (to find child cgroups before removal) failed.
    #[error("list directory {}", path.display())]
    ReadDir {
        /// The directory.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// Writing a value to a cgroup control file failed.
    #[error("write {value:?} to {}", path.display())]
    Write {
        /// The control file.
        path: PathBuf,
        /// What was written.
        value: String,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// Creating a cgroup directory failed.
    #[error("create cgroup directory {}", path.display())]
    Mkdir {
        /// The directory.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// Removing a cgroup directory failed (after retrying `EBUSY` briefly).
    #[error("remove cgroup directory {}", path.display())]
    Rmdir {
        /// The directory.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// A control file held something we could not parse.
    #[error("parse {}: {reason}", path.display())]
    Parse {
        /// The file.
        path: PathBuf,
        /// What was wrong.
        reason: String,
    },
    /// No cgroup or cgroup2 filesystem is mounted under the cgroup root.
    #[error("no cgroup hierarchy is mounted under {}", root.display())]
    NoHierarchy {
        /// The cgroup root that was searched (normally `/sys/fs/cgroup`).
        root: PathBuf,
    },
    /// A relative cgroups path needs the caller's own cgroup in a hierarchy, and
    /// `/proc/self/cgroup` did not give it.
    #[error("own cgroup for hierarchy {hierarchy:?}: {reason}")]
    OwnCgroup {
        /// The hierarchy (its controllers, or "unified").
        hierarchy: String,
        /// What was wrong.
        reason: &'static str,
    },
    /// `linux.cgroupsPath` is in the systemd `slice:prefix:name` form.
    #[error(
        "linux.cgroupsPath {path:?} is in the systemd form slice:prefix:name; \
         systemd-managed cgroups are not supported yet, use a path such as /onggi/<id>"
    )]
    SystemdPath {
        /// The path as given.
        path: String,
    },
    /// A field of the spec has a value out of range or malformed.
    #[error("invalid {field}: {reason}")]
    Invalid {
        /// The OCI field, e.g. `linux.resources.memory.swappiness`.
        field: &'static str,
        /// Why the value was refused.
        reason: String,
    },
    /// A field is set, but the controller that implements it is not available.
    #[error("{field} is set but the {controller} cgroup controller is not available")]
    MissingController {
        /// The controller, e.g. `memory`.
        controller: String,
        /// The OCI field, e.g. `linux.resources.memory.limit`.
        field: &'static str,
    },
    /// A field is set that this crate does not implement yet.
    #[error("{field} is not supported yet: {reason}")]
    Unsupported {
        /// The OCI field.
        field: &'static str,
        /// What is missing.
        reason: &'static str,
    },
    /// Sending a signal to a process of the cgroup failed (not `ESRCH`: a process that
    /// is gone is fine).
    #[error("send {signal} to process {pid}")]
    Signal {
        /// The process.
        pid: i32,
        /// The signal, e.g. `SIGKILL`.
        signal: &'static str,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// `kill_all(SIGKILL)` still found processes in the cgroup after its deadline.
    #[error("kill every process in {}: {} still there after {waited_ms} ms: {pids:?}", path.display(), pids.len())]
    KillTimeout {
        /// The cgroup directory (of the pids hierarchy, when there is one).
        path: PathBuf,
        /// The processes left.
        pids: Vec<i32>,
        /// How long we waited.
        waited_ms: u64,
    },
    /// The v1 freezer did not reach `FROZEN` in time.
    #[error("freeze {}: still {state:?} after {waited_ms} ms", path.display())]
    FreezeTimeout {
        /// The `freezer.state` (or `cgroup.events`) file.
        path: PathBuf,
        /// The last state read.
        state: String,
        /// How long we waited.
        waited_ms: u64,
    },
}

impl Error {
    /// The OS error number behind this error, if there is one.
    pub fn errno(&self) -> Option<i32> {
        match self {
            Error::Read { source, .. }
            | Error::ReadDir { source, .. }
            | Error::Write { source, .. }
            | Error::Mkdir { source, .. }
            | Error::Rmdir { source, .. }
            | Error::Signal { source, .. } => source.raw_os_error(),
            _ => None,
        }
    }
}
