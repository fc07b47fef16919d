//! The freestanding runtime of the release binary: what the C library would otherwise
//! provide. `__libc_start_main`, the panic handler, and the memory functions the
//! compiler and `core` call (`memcpy`, `memmove`, `memset`, `memcmp`/`bcmp`,
//! `strlen`).
//!
//! The C start-up file `crt1.o` is still linked (the compiler driver adds it): its
//! `_start` takes argc and argv from the initial stack and calls
//! `__libc_start_main(main, argc, argv, …)` — glibc's stable entry ABI, which this
//! module implements by calling `main` with the environment that follows argv. No C
//! library is linked (rustc links with `-nodefaultlibs` and nothing asks for `libc`),
//! the binary is static and not position-independent (the workspace's
//! `.cargo/config.toml`): there is nothing to relocate, and no thread-local storage to
//! set up, which nothing in the monitor uses.
#![allow(unsafe_code)]

use core::arch::asm;

use onggi_monitor::sys;

/// The C `main` this program defines.
type Main = extern "C" fn(i32, *const *const u8, *const *const u8) -> i32;

/// Called by `crt1.o`'s `_start` (the remaining arguments — init, fini, rtld_fini,
/// stack_end — are NULL or unused in a static program without constructors).
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
    // No formatting machinery in the binary: a fixed message is enough to notice.
    let _ = sys::write_all(2, b"onggi-monitor: internal error (panic)\n");
    sys::exit(101)
}

/// `memcpy`: `rep movsb`, fast on every x86-64 with ERMSB, and no loop the compiler
/// could turn back into a call to `memcpy`.
#[no_mangle]
unsafe extern "C" fn memcpy(dest: *mut u8, src: *const u8, n: usize) -> *mut u8 {
    // SAFETY: the caller (compiler-generated code) guarantees dest and src are valid
    // for n bytes and do not overlap; rep movsb copies exactly n bytes forward. The
    // direction flag is clear, as the ABI requires at every call.
    unsafe {
        asm!("rep movsb", inout("rcx") n => _, inout("rdi") dest => _, inout("rsi") src => _,
             options(nostack, preserves_flags));
    }
    dest
}

/// `memmove`: forward when that cannot overwrite unread source bytes, else backward.
#[no_mangle]
unsafe extern "C" fn memmove(dest: *mut u8, src: *const u8, n: usize) -> *mut u8 {
    if (dest as usize).wrapping_sub(src as usize) >= n {
        // dest is before src, or after the end of it: a forward copy is safe.
        // SAFETY: as for memcpy; the caller guarantees validity for n bytes.
        return unsafe { memcpy(dest, src, n) };
    }
    // SAFETY: dest lies inside [src, src + n): copy from the last byte down, with the
    // direction flag set for the copy and cleared again, as the ABI requires.
    unsafe {
        asm!("std", "rep movsb", "cld",
             inout("rcx") n => _, inout("rdi") dest.add(n - 1) => _,
             inout("rsi") src.add(n - 1) => _, options(nostack));
    }
    dest
}

/// `memset`: `rep stosb`.
#[no_mangle]
unsafe extern "C" fn memset(dest: *mut u8, c: i32, n: usize) -> *mut u8 {
    // SAFETY: the caller guarantees dest is valid for n bytes; rep stosb writes exactly
    // n bytes of al forward (direction flag clear per the ABI).
    unsafe {
        asm!("rep stosb", inout("rcx") n => _, inout("rdi") dest => _, in("al") c as u8,
             options(nostack, preserves_flags));
    }
    dest
}

/// `memcmp`: byte by byte, with volatile reads so that the loop cannot be recognised
/// as a `memcmp` idiom and compiled into a call to itself.
#[no_mangle]
unsafe extern "C" fn memcmp(a: *const u8, b: *const u8, n: usize) -> i32 {
    for i in 0..n {
        // SAFETY: the caller guarantees a and b are valid for n bytes; i < n.
        let (x, y) = unsafe { (a.add(i).read_volatile(), b.add(i).read_volatile()) };
        if x != y {
            return i32::from(x) - i32::from(y);
        }
    }
    0
}

/// `bcmp`: equality only, which `memcmp` answers.
#[no_mangle]
unsafe extern "C" fn bcmp(a: *const u8, b: *const u8, n: usize) -> i32 {
    // SAFETY: same contract as memcmp.
    unsafe { memcmp(a, b, n) }
}

/// `strlen` (for `CStr::from_ptr`), with volatile reads for the same reason as `memcmp`.
#[no_mangle]
unsafe extern "C" fn strlen(s: *const u8) -> usize {
    let mut n = 0;
    // SAFETY: the caller guarantees s is a NUL-terminated string: every byte up to and
    // including the NUL is readable.
    while unsafe { s.add(n).read_volatile() } != 0 {
        n += 1;
    }
    n
}
