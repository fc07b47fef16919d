//! The `onggi-init` program: only the process entry point; everything else is in the
//! library.
//!
//! Built with `panic = "abort"` (the release profile) the program is freestanding: no
//! C library and no `std` (see `rt.rs`), as `onggi-monitor` is. Built with unwinding
//! panics (debug and test builds) it runs on glibc. Either way the C start-up file's
//! `_start` calls `__libc_start_main`, which calls this `main`.
#![cfg_attr(panic = "abort", no_std)]
#![no_main]
#![deny(unsafe_code)]

#[cfg(panic = "abort")]
mod rt;

/// The C entry point: `main(argc, argv, envp)`.
#[allow(unsafe_code)]
#[no_mangle]
extern "C" fn main(argc: i32, argv: *const *const u8, envp: *const *const u8) -> i32 {
    // SAFETY: `__libc_start_main` (glibc's, or rt.rs's) passes the vectors the kernel
    // put on the initial stack: argc valid strings and a NULL, the environment and a
    // NULL; they live, unmodified, as long as the process.
    let args = unsafe { onggi_init::sys::ProcessArgs::new(argc as usize, argv, envp) };
    onggi_init::init::main(&args)
}
