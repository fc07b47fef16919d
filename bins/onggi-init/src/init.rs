//! The init: start the program, then wait for signals. Every signal it can catch
//! is forwarded to the program; SIGCHLD reaps every child that ended, and when the
//! program is one of them the init exits as it did.

use core::ffi::CStr;

use crate::sys::{self, Errno, Forked, ProcessArgs, SigSet};

/// The usage line.
pub const USAGE: &[u8] = b"usage: onggi-init [--] PROGRAM [ARG...]\n";

/// Signals the init does not collect: those the kernel raises for a fault of the
/// init itself (they must kill it, not wait in a queue), the two it cannot catch,
/// and the terminal's stop signals (tini's list).
const NOT_FORWARDED: [i32; 11] = [
    4,  // SIGILL
    5,  // SIGTRAP
    6,  // SIGABRT
    7,  // SIGBUS
    8,  // SIGFPE
    9,  // SIGKILL
    11, // SIGSEGV
    19, // SIGSTOP
    31, // SIGSYS
    sys::SIGTTIN,
    sys::SIGTTOU,
];

/// Where programs are looked for when the environment has no `PATH` (Docker's).
const DEFAULT_PATH: &[u8] = b"/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Exit codes of a program that could not be run, as a shell's: not found, and
/// found but not executable.
const EXIT_NOT_FOUND: i32 = 127;
const EXIT_CANNOT_EXECUTE: i32 = 126;
/// Exit code for a refused command line.
const EXIT_USAGE: i32 = 2;
/// Exit code when the program could not even be forked.
const EXIT_FAILED: i32 = 1;

/// The index in argv of the program: after an optional `--`.
pub fn program_index(args: &ProcessArgs) -> Option<usize> {
    let first = match args.arg(1)?.to_bytes() {
        b"--" => 2,
        _ => 1,
    };
    args.arg(first).map(|_| first)
}

/// The exit code of a child with raw wait status `status`: its own, or 128 + the
/// signal that killed it.
pub fn exit_code(status: i32) -> i32 {
    match status & 0x7f {
        0 => (status >> 8) & 0xff,
        sig => 128 + sig,
    }
}

/// Run the init with the process's arguments; never returns.
pub fn main(args: &ProcessArgs) -> ! {
    let Some(first) = program_index(args) else {
        let _ = sys::write_all(2, USAGE);
        sys::exit(EXIT_USAGE)
    };
    // Outside a PID namespace of its own the init is not PID 1: orphans go to the
    // nearest subreaper, so be one.
    if sys::getpid() != 1 {
        let _ = sys::set_child_subreaper();
    }
    // Collect signals by waiting for them, blocked: a signal to PID 1 that has no
    // handler is dropped by the kernel, a blocked one is queued.
    let forwarded = SigSet::all_but(&NOT_FORWARDED);
    let before = sys::set_blocked(forwarded).unwrap_or(SigSet(0));
    match sys::fork() {
        Ok(Forked::Child) => {
            // Its own process group, in the terminal's foreground if there is one (so
            // Ctrl-C reaches it): from the background that takes SIGTTOU blocked (or
            // the kernel stops the caller). Then the signal mask the init started with.
            let _ = sys::set_blocked(SigSet::all_but(&[]));
            let _ = sys::setpgid_self();
            let _ = sys::set_foreground(0);
            let _ = sys::set_blocked(before);
            exec_program(args, first)
        }
        Ok(Forked::Parent(child)) => supervise(child, forwarded),
        Err(e) => fail(&[b"fork"], e, EXIT_FAILED),
    }
}

/// Forward signals to `child` and reap until it has ended; exit with its code.
fn supervise(child: i32, forwarded: SigSet) -> ! {
    loop {
        match sys::wait_signal(forwarded) {
            Ok(sys::SIGCHLD) => {
                if let Some(code) = reap(child) {
                    sys::exit(code)
                }
            }
            // The program may be gone already (ESRCH): its SIGCHLD is on its way.
            Ok(sig) => drop(sys::kill(child, sig)),
            Err(_) => {} // EINTR: a stop and continue of the init itself
        }
    }
}

/// Reap every child that has ended; the exit code of `child` if it was one of them.
fn reap(child: i32) -> Option<i32> {
    let mut code = None;
    while let Ok(Some((pid, status))) = sys::reap_any() {
        if pid == child {
            code = Some(exit_code(status));
        }
    }
    code
}

/// `execvp`: run argv[first], looked up in `PATH` unless it has a slash; never
/// returns.
fn exec_program(args: &ProcessArgs, first: usize) -> ! {
    let name = args.arg(first).expect("program_index checked it");
    if name.to_bytes().contains(&b'/') {
        let e = args.exec(name, first);
        let code = if e == sys::ENOENT {
            EXIT_NOT_FOUND
        } else {
            EXIT_CANNOT_EXECUTE
        };
        fail(&[b"exec ", name.to_bytes()], e, code)
    }
    let mut buf = [0u8; 4096];
    let mut denied = None;
    for dir in args
        .env(b"PATH=")
        .unwrap_or(DEFAULT_PATH)
        .split(|&b| b == b':')
    {
        let Some(path) = candidate(dir, name.to_bytes(), &mut buf) else {
            continue; // longer than a path can be
        };
        match args.exec(path, first) {
            sys::ENOENT | sys::ENOTDIR => {}
            e @ sys::EACCES => denied = Some(e),
            e => fail(&[b"exec ", path.to_bytes()], e, EXIT_CANNOT_EXECUTE),
        }
    }
    match denied {
        Some(e) => fail(&[b"exec ", name.to_bytes()], e, EXIT_CANNOT_EXECUTE),
        None => fail(
            &[b"exec ", name.to_bytes(), b": not found in PATH"],
            Errno(0),
            EXIT_NOT_FOUND,
        ),
    }
}

/// `DIR/NAME` (`NAME` for an empty `DIR`, the working directory) as a C string in
/// `buf`; `None` if it does not fit.
pub fn candidate<'b>(dir: &[u8], name: &[u8], buf: &'b mut [u8]) -> Option<&'b CStr> {
    let slash = usize::from(!dir.is_empty());
    let len = dir.len() + slash + name.len();
    if len + 1 > buf.len() {
        return None;
    }
    buf[..dir.len()].copy_from_slice(dir);
    if slash == 1 {
        buf[dir.len()] = b'/';
    }
    buf[dir.len() + slash..len].copy_from_slice(name);
    buf[len] = 0;
    CStr::from_bytes_with_nul(&buf[..=len]).ok()
}

/// Say `onggi-init: WHAT: ERROR` on stderr and exit with `code`.
fn fail(what: &[&[u8]], e: Errno, code: i32) -> ! {
    let _ = sys::write_all(2, b"onggi-init: ");
    for w in what {
        let _ = sys::write_all(2, w);
    }
    if e != Errno(0) {
        let _ = sys::write_all(2, b": ");
        let _ = sys::write_all(2, describe(e));
    }
    let _ = sys::write_all(2, b"\n");
    sys::exit(code)
}

fn describe(e: Errno) -> &'static [u8] {
    match e {
        sys::ENOENT => b"no such file or directory",
        sys::EACCES => b"permission denied",
        sys::ENOTDIR => b"not a directory",
        Errno(8) => b"exec format error",
        Errno(11) => b"resource temporarily unavailable",
        Errno(12) => b"out of memory",
        _ => b"error",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wait_statuses_become_shell_exit_codes() {
        for code in [0, 1, 42, 255] {
            assert_eq!(exit_code(code << 8), code);
        }
        // What the kernel reports for a child killed by SIGKILL (9), with a core (0x80).
        assert_eq!(exit_code(9), 137);
        assert_eq!(exit_code(0x80 | 11), 139);
        assert_eq!(exit_code(15), 143);
    }

    #[test]
    fn candidates_join_dir_and_name_or_do_not_fit() {
        let mut buf = [0u8; 17];
        assert_eq!(
            candidate(b"/bin", b"sh", &mut buf).unwrap().to_bytes(),
            b"/bin/sh"
        );
        assert_eq!(candidate(b"", b"sh", &mut buf).unwrap().to_bytes(), b"sh");
        assert_eq!(
            candidate(b"/usr/local/bin", b"x", &mut buf)
                .unwrap()
                .to_bytes(),
            b"/usr/local/bin/x"
        );
        assert!(candidate(b"/usr/local/bin", b"xy", &mut buf).is_none());
    }

    #[test]
    fn the_init_collects_what_it_can_forward() {
        let s = SigSet::all_but(&NOT_FORWARDED);
        for sig in [1, 2, 3, 10, 12, 15, sys::SIGCHLD, 34, 64] {
            assert_ne!(s.0 & (1 << (sig - 1)), 0, "signal {sig}");
        }
        for sig in NOT_FORWARDED {
            assert_eq!(s.0 & (1 << (sig - 1)), 0, "signal {sig}");
        }
        assert_eq!(
            NOT_FORWARDED[..9],
            [
                libc::SIGILL,
                libc::SIGTRAP,
                libc::SIGABRT,
                libc::SIGBUS,
                libc::SIGFPE,
                libc::SIGKILL,
                libc::SIGSEGV,
                libc::SIGSTOP,
                libc::SIGSYS
            ]
        );
    }
}
