//! onggi's OCI runtime as a library: a bundle's `config.json` becomes a [`plan::Plan`],
//! the plan becomes a process in its own namespaces on its own root filesystem, and
//! [`container::Runtime`] drives the lifecycle (create, start, run, state, kill,
//! delete, list, exec) with runc's semantics. The `onggi-runtime` binary is a thin
//! command line over this crate; the engine calls it directly.
//!
//! Layers, top to bottom: [`container`] (operations, parent side) → [`init`] (the
//! container's init, child side) → [`rootfs`], [`console`], [`hooks`] → [`plan`]
//! (pure) and [`state`] → `onggi-cgroups` → `onggi-sys` (the only `unsafe`).
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod console;
pub mod container;
pub mod default_spec;
pub mod error;
pub mod exe;
pub mod explain;
pub mod features;
pub mod hooks;
pub mod idmap;
pub mod init;
pub mod lifecycle;
pub mod lsm;
pub mod plan;
pub mod rootfs;
pub mod state;
pub mod sync;

pub use container::{CreateOpts, ExecOpts, Runtime};
pub use error::{Error, Result};
