//! `onggi-init`: a tiny init for containers run with `--init` (what Docker users know
//! as tini at `/sbin/docker-init`), for programs that were not written to be PID 1.
//!
//! ```text
//! onggi-init [--] PROGRAM [ARG...]
//! ```
//!
//! - It forks and executes `PROGRAM` (looked up in `PATH` unless it has a slash) in a
//!   process group of its own, made the terminal's foreground group when there is a
//!   terminal, with the signal mask and dispositions the init was started with.
//! - Every signal it can catch is forwarded to the program (not to its group). A
//!   container's PID 1 would otherwise drop every signal it has no handler for, so
//!   `docker stop`'s SIGTERM would do nothing to a program that never expected to be
//!   PID 1.
//! - It reaps every child that ends: the orphans the kernel hands to PID 1 (or, when
//!   it is not PID 1, to it as a child subreaper) do not stay zombies.
//! - When the program ends, the init exits with its exit code, or 128 + the signal
//!   that killed it; the kernel then ends whatever else ran in the PID namespace.
//! - It could not run the program: 127 if it was not found, 126 if it could not be
//!   executed (as a shell), with a message on stderr; 2 for a usage error.
//!
//! # Memory
//! One per container that asks for it, for the container's whole life: like
//! `onggi-monitor`, the release binary links no C library and no `std` and calls the
//! kernel directly ([`sys`]); it allocates nothing and its stack is a few KiB.
#![cfg_attr(not(test), no_std)]
#![deny(unsafe_code)]
#![deny(missing_docs)]

pub mod init;
pub mod sys;
