//! The freestanding runtime of the release binary: `__libc_start_main` (what `crt1.o`'s
//! `_start` calls, glibc's entry ABI), the panic handler, and the one memory function
//! the compiler asks for. The binary links no C library (rustc links with
//! `-nodefaultlibs`), is static and not position-independent (the workspace's
//! `.cargo/config.toml`); `onggi-monitor`'s `rt.rs` says more.
#![allow(unsafe_code)]

use onggi_init::sys;

/// The C `main` this program defines.
type Main = extern "C" fn(i32, *const *const u8, *const *const u8) -> i32;

/// Called by `crt1.o`'s `_start` (the other arguments are unused in a static program
/// without constructors).
#[no_mangle]
unsafe extern "C" fn __libc_start_main(main: Main, argc: i32, argv: *const *const u8) -> ! {
    // SAFETY: argv is the kernel's argument vector on the initial stack: argc pointers
    // then a NULL, directly followed by the environment vector (System V x86-64 ABI,
    // §3.4.1), so argv + argc + 1 is envp.
    let envp = unsafe { argv.add(argc as usize + 1) };
    sys::exit(main(argc, argv, envp))
}

#[panic_handler]
fn panic(_: &core::panic::PanicInfo) -> ! {
    let _ = sys::write_all(2, b"onggi-init: internal error (panic)\n");
    sys::exit(101)
}

// The memory functions the compiler and `core` call. Volatile accesses keep each loop
// from being recognised as the very function it implements and compiled into a call
// to itself; the init copies a few paths at most, so bytewise is fast enough.

/// `memcpy`.
#[no_mangle]
unsafe extern "C" fn memcpy(dest: *mut u8, src: *const u8, n: usize) -> *mut u8 {
    for i in 0..n {
        // SAFETY: the caller guarantees dest and src valid for n bytes, not overlapping.
        unsafe { dest.add(i).write_volatile(src.add(i).read_volatile()) };
    }
    dest
}

/// `memset`.
#[no_mangle]
unsafe extern "C" fn memset(dest: *mut u8, c: i32, n: usize) -> *mut u8 {
    for i in 0..n {
        // SAFETY: the caller guarantees dest valid for n bytes.
        unsafe { dest.add(i).write_volatile(c as u8) };
    }
    dest
}

/// `bcmp`: zero if the `n` bytes at `a` and `b` are equal.
#[no_mangle]
unsafe extern "C" fn bcmp(a: *const u8, b: *const u8, n: usize) -> i32 {
    // SAFETY: the caller guarantees a and b valid for n bytes.
    let differ = (0..n).any(|i| unsafe { a.add(i).read_volatile() != b.add(i).read_volatile() });
    i32::from(differ)
}

/// `strlen` (for `CStr::from_ptr`).
#[no_mangle]
unsafe extern "C" fn strlen(s: *const u8) -> usize {
    // SAFETY: the caller guarantees a NUL-terminated string: every byte up to the NUL
    // is readable, and the search stops there.
    (0..)
        .take_while(|&i| unsafe { s.add(i).read_volatile() } != 0)
        .count()
}
