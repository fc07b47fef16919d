//! The runtime's error type: every variant names the step that failed and the object
//! (file, field, container) it failed on.

use std::path::PathBuf;

use nix::errno::Errno;

use crate::lifecycle::Status;

/// Everything that can go wrong in the runtime library.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The container id is not acceptable as a directory name.
    #[error("invalid container id {id:?}: {reason}")]
    InvalidId {
        /// The id given.
        id: String,
        /// Why it was refused.
        reason: &'static str,
    },
    /// `create` with an id that already has a state directory.
    #[error("container {0:?} already exists")]
    AlreadyExists(String),
    /// No state directory for this id.
    #[error("container {0:?} does not exist")]
    NotFound(String),
    /// The bundle's config.json could not be read.
    #[error("read {path}: {source}")]
    ReadConfig {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The bundle's config.json is not valid JSON or does not match the OCI schema.
    #[error("parse {path}: {source}")]
    ParseConfig {
        /// The file.
        path: PathBuf,
        /// The parser's error (line and column included).
        #[source]
        source: serde_json::Error,
    },
    /// A field of config.json has a value the runtime cannot use.
    #[error("config.json: {field}: {reason}")]
    InvalidConfig {
        /// The JSON path of the field, e.g. `mounts[3].destination`.
        field: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The operation is not allowed in the container's current state.
    #[error("cannot {op} container {id:?}: it is {status}")]
    WrongState {
        /// The operation refused.
        op: &'static str,
        /// The container.
        id: String,
        /// Its current status.
        status: Status,
    },
    /// A system call failed.
    #[error("{step}: {source}")]
    Sys {
        /// The step, with its object, e.g. `mount proc on /run/x/rootfs/proc`.
        step: String,
        /// The errno.
        #[source]
        source: Errno,
    },
    /// A file operation failed.
    #[error("{step}: {source}")]
    Io {
        /// The step, with its object.
        step: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The cgroup layer failed.
    #[error("cgroup: {0}")]
    Cgroup(#[from] onggi_cgroups::Error),
    /// The cgroup v2 device filter (an eBPF program) could not be set up.
    #[error("cgroup v2 device rules (linux.resources.devices): {0}")]
    Devices(#[from] onggi_cgroups::ebpf::EbpfError),
    /// The container's init process reported a failure during setup.
    #[error("{0}")]
    Init(String),
    /// A hook failed or timed out.
    #[error("{kind} hook {path}: {reason}")]
    Hook {
        /// Which hook list (createRuntime, poststart...).
        kind: &'static str,
        /// The hook's path.
        path: PathBuf,
        /// Exit status, timeout or spawn error.
        reason: String,
    },
    /// A state file is unreadable or corrupt.
    #[error("state of container {id:?}: {reason}")]
    State {
        /// The container.
        id: String,
        /// What is wrong.
        reason: String,
    },
    /// The seccomp profile could not be compiled or loaded.
    #[error("seccomp: {0}")]
    Seccomp(#[from] onggi_seccomp::Error),
    /// The runtime process that was setting the container up went away (it failed,
    /// and reports why itself).
    #[error("the runtime that was creating the container exited")]
    ParentGone,
    /// A request the runtime does not support (yet).
    #[error("{0}")]
    Unsupported(String),
}

/// Shorthand for results in this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Attach a step description to an `Errno` or `io::Error` result.
pub(crate) trait Context<T> {
    /// Map the error into [`Error::Sys`] or [`Error::Io`], naming `step`.
    fn step<S: Into<String>>(self, step: impl FnOnce() -> S) -> Result<T>;
}

impl<T> Context<T> for std::result::Result<T, Errno> {
    fn step<S: Into<String>>(self, step: impl FnOnce() -> S) -> Result<T> {
        self.map_err(|source| Error::Sys {
            step: step().into(),
            source,
        })
    }
}

impl<T> Context<T> for std::result::Result<T, std::io::Error> {
    fn step<S: Into<String>>(self, step: impl FnOnce() -> S) -> Result<T> {
        self.map_err(|source| Error::Io {
            step: step().into(),
            source,
        })
    }
}

/// Shorthand for [`Error::InvalidConfig`].
pub(crate) fn invalid(field: impl Into<String>, reason: impl Into<String>) -> Error {
    Error::InvalidConfig {
        field: field.into(),
        reason: reason.into(),
    }
}

/// An error and its causes on one line, each cause once: errors here already end
/// with their source's text, so a cause the message so far ends with is not
/// repeated. The binaries print their errors with it.
pub fn one_line(e: &(dyn std::error::Error + 'static)) -> String {
    let mut msg = String::new();
    let mut cause = Some(e);
    while let Some(c) = cause {
        let text = c.to_string();
        if !msg.ends_with(&text) {
            if !msg.is_empty() {
                msg.push_str(": ");
            }
            msg.push_str(&text);
        }
        cause = c.source();
    }
    msg
}
