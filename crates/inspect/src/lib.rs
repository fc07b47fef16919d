//! onggi's way of looking at containers, the seeds' way: processes and threads with
//! their PIDs inside and on the host (`ps afxuww`, `ps -eLf`, `pstree -p`), and the
//! namespaces a process is in (`ls -l /proc/PID/ns`).
//!
//! Everything is read from a procfs given as a parameter (`/proc` on a host), with
//! the `procfs` crate. Nothing here knows what a container is: the engine finds a
//! container's init and asks for the processes in its PID namespace.

mod ns;
mod process;
mod tree;

pub use ns::{namespaces, Namespace, NS_KINDS};
pub use process::{in_pid_namespace_of, seconds_running, threads_of, ProcessInfo};
pub use tree::{tree, TreeLine};

/// What went wrong, naming the file or process.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A procfs read failed.
    #[error("read {what}: {source}")]
    Proc {
        /// The file or process.
        what: String,
        /// procfs's error.
        source: procfs::ProcError,
    },
    /// A file read failed.
    #[error("read {what}: {source}")]
    Io {
        /// The file.
        what: String,
        /// The error.
        source: std::io::Error,
    },
}

/// This crate's results.
pub type Result<T> = std::result::Result<T, Error>;

fn proc_err(what: impl Into<String>) -> impl FnOnce(procfs::ProcError) -> Error {
    let what = what.into();
    move |source| Error::Proc { what, source }
}
