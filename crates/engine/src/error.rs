//! The engine's errors: each names the step and the object, and maps to the exit
//! code Docker uses for it ([`Error::exit_code`]).

/// Everything that can go wrong in the engine.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A flag's value that cannot be used (`--memory -1`, `-v a:b:c:d`).
    #[error("{flag}: {reason}")]
    BadOption {
        /// The flag, as typed.
        flag: String,
        /// Why it was refused.
        reason: String,
    },
    /// No container by that name or id.
    #[error("no such container: {0}")]
    NoSuchContainer(String),
    /// An id prefix that matches several containers.
    #[error("container id prefix {0:?} is ambiguous")]
    Ambiguous(String),
    /// `--name` of an existing container.
    #[error(
        "the container name {0:?} is already in use; remove that container or choose another name"
    )]
    NameInUse(String),
    /// An operation the container's state does not allow.
    #[error("container {id}: {reason}")]
    WrongState {
        /// The container's name.
        id: String,
        /// What is wrong.
        reason: String,
    },
    /// The image store.
    #[error(transparent)]
    Image(#[from] onggi_image::Error),
    /// The runtime.
    #[error(transparent)]
    Runtime(#[from] onggi_runtime::Error),
    /// Reading a container's cgroup for `stats`.
    #[error(transparent)]
    Cgroups(#[from] onggi_cgroups::Error),
    /// Reading /proc for `top`, `ns`, `tree`.
    #[error(transparent)]
    Inspect(#[from] onggi_inspect::Error),
    /// The container's program could not be run (Docker: 126 cannot execute, 127
    /// not found).
    #[error("{message}")]
    Exec {
        /// 126 or 127.
        code: u8,
        /// The runtime's message.
        message: String,
    },
    /// The metadata database.
    #[error("{step}: {source}")]
    Db {
        /// The step.
        step: String,
        /// SQLite's error.
        #[source]
        source: rusqlite::Error,
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
    /// A system call failed.
    #[error("{step}: {source}")]
    Sys {
        /// The step, with its object.
        step: String,
        /// The errno.
        #[source]
        source: nix::errno::Errno,
    },
}

impl Error {
    /// Docker's exit codes: 126 (cannot execute), 127 (not found), else 125 (an
    /// error of the engine itself).
    pub fn exit_code(&self) -> u8 {
        match self {
            Error::Exec { code, .. } => *code,
            _ => 125,
        }
    }
}

/// Shorthand for results in this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Attach a step description to an `io::Error` or `Errno` result.
pub(crate) trait Context<T> {
    /// Map the error into [`Error::Io`] or [`Error::Sys`], naming `step`.
    fn step<S: Into<String>>(self, step: impl FnOnce() -> S) -> Result<T>;
}

impl<T> Context<T> for std::result::Result<T, std::io::Error> {
    fn step<S: Into<String>>(self, step: impl FnOnce() -> S) -> Result<T> {
        self.map_err(|source| Error::Io {
            step: step().into(),
            source,
        })
    }
}

impl<T> Context<T> for std::result::Result<T, nix::errno::Errno> {
    fn step<S: Into<String>>(self, step: impl FnOnce() -> S) -> Result<T> {
        self.map_err(|source| Error::Sys {
            step: step().into(),
            source,
        })
    }
}
