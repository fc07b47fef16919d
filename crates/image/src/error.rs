//! The image store's error type: every variant names the step and the object.

/// Everything that can go wrong in the image store.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Not `sha256:<64 hex digits>`.
    #[error("invalid digest {0:?}: expected sha256:<64 lowercase hex digits>")]
    BadDigest(String),
    /// An image reference that does not parse.
    #[error("invalid reference {reference:?}: {reason}")]
    BadReference {
        /// What was given.
        reference: String,
        /// Why it was refused.
        reason: String,
    },
    /// Content whose digest is not the one it was announced with.
    #[error("{what}: digest mismatch: expected {expected}, got {actual}")]
    DigestMismatch {
        /// The blob or layer.
        what: String,
        /// The digest it should have.
        expected: String,
        /// The digest it has.
        actual: String,
    },
    /// A layer entry that would land outside the layer, or that cannot be unpacked.
    #[error("{layer}: entry {path:?}: {reason}")]
    UnsafeEntry {
        /// The layer (its digest or file).
        layer: String,
        /// The entry's path in the tar.
        path: String,
        /// Why it was refused.
        reason: String,
    },
    /// A file that is not what it should be (not a tar, a manifest that does not parse).
    #[error("{file}: {reason}")]
    Format {
        /// The file, or what it is.
        file: String,
        /// What is wrong with it.
        reason: String,
    },
    /// No image by that name or id.
    #[error("no such image: {0}")]
    NotFound(String),
    /// An image a container uses.
    #[error("unable to remove {image}: it is used by container(s) {}; stop and remove them, or force", holders.join(", "))]
    InUse {
        /// The image as named.
        image: String,
        /// The containers using it.
        holders: Vec<String>,
    },
    /// A request that needs force, or that contradicts the store's state.
    #[error("conflict: {0}")]
    Conflict(String),
    /// A short id that matches more than one image.
    #[error("image id prefix {0:?} is ambiguous")]
    Ambiguous(String),
    /// A registry answered a request with an error status (401, 404, 5xx...).
    #[error("{registry}: {object}: HTTP {status}: {reason}")]
    Registry {
        /// The registry (`docker.io`, `127.0.0.1:5000`).
        registry: String,
        /// What was asked for: `manifest team/app:v1`, `blob team/app@sha256:...`.
        object: String,
        /// The HTTP status.
        status: u16,
        /// The registry's own message, or what the status means.
        reason: String,
    },
    /// A request to a registry did not complete (connect, TLS, protocol).
    #[error("{step}: {source}")]
    Http {
        /// The request, with its URL.
        step: String,
        /// The HTTP client's error.
        #[source]
        source: Box<ureq::Error>,
    },
    /// An image that has no manifest for the platform asked for.
    #[error("{reference}: no image for {wanted}; it has: {available}")]
    NoPlatform {
        /// The image reference.
        reference: String,
        /// The platform asked for (`linux/amd64`).
        wanted: String,
        /// The platforms it has, comma-separated.
        available: String,
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
