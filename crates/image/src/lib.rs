//! onggi's images: a content-addressed store of blobs (sha256, checked on every
//! write), images and the names that point at them, layers unpacked once in
//! overlayfs form, and container root filesystems made from them by an overlay
//! mount.
//!
//! Layers, top to bottom: [`import`] (tarballs in), [`rootfs`] and [`bundle`]
//! (images out, as a container's root filesystem and config.json) → [`store`]
//! (blobs, layers, index) → [`layer`] (tar → directory) → [`digest`], [`reference`].
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod archive;
pub mod auth;
pub mod bundle;
pub mod digest;
pub mod error;
pub mod gc;
pub mod import;
pub mod layer;
pub mod progress;
pub mod pull;
pub mod reference;
pub mod registry;
pub mod rootfs;
pub mod store;

pub use digest::Digest;
pub use error::{Error, Result};
pub use reference::Reference;
pub use store::{Image, Layer, Listed, Store};
