//! onggi's engine: Docker-style containers from images, daemonless, each watched
//! by a tiny monitor (`onggi-monitor`), with metadata in SQLite.
//!
//! Layers: [`engine`] (operations) → [`spec`] (run options → config.json),
//! [`db`] (metadata), [`names`] → `onggi-image`, `onggi-runtime`.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod db;
pub mod engine;
pub mod error;
pub mod names;
pub mod spec;

pub use db::{Record, State};
pub use engine::{Engine, Roots};
pub use error::{Error, Result};
pub use spec::RunOptions;
