//! Raw Linux system calls for x86-64: all of onggi-init's `unsafe` code, besides the
//! release binary's start-up (`src/rt.rs`) and wrapping `argv` in the entry point.
//!
//! As in `onggi-monitor` (whose `sys` module says why at length): the C library and
//! `std` would cost several times the memory of the whole program, so the release
//! binary calls the kernel directly through the twelve calls below. Every number is
//! checked against the `libc` crate in the tests. Each wrapper is a safe function whose
//! `// SAFETY:` comment says why the call touches no memory it does not own; errors
//! come back as [`Errno`].
#![allow(unsafe_code)]

use core::arch::asm;
use core::ffi::CStr;

#[cfg(not(target_arch = "x86_64"))]
compile_error!("onggi-init calls the kernel directly and knows only x86-64's system calls");

/// An error number returned by the kernel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Errno(pub i32);

/// No such process.
pub const ESRCH: Errno = Errno(3);
/// No such file or directory.
pub const ENOENT: Errno = Errno(2);
/// Interrupted system call.
pub const EINTR: Errno = Errno(4);
/// Permission denied.
pub const EACCES: Errno = Errno(13);
/// A path component is not a directory.
pub const ENOTDIR: Errno = Errno(20);

/// A child stopped or terminated.
pub const SIGCHLD: i32 = 17;
/// Background read from the terminal.
pub const SIGTTIN: i32 = 21;
/// Background write to (or control of) the terminal.
pub const SIGTTOU: i32 = 22;

mod nr {
    pub const WRITE: usize = 1;
    pub const RT_SIGPROCMASK: usize = 14;
    pub const IOCTL: usize = 16;
    pub const GETPID: usize = 39;
    pub const FORK: usize = 57;
    pub const EXECVE: usize = 59;
    pub const WAIT4: usize = 61;
    pub const KILL: usize = 62;
    pub const SETPGID: usize = 109;
    pub const RT_SIGTIMEDWAIT: usize = 128;
    pub const PRCTL: usize = 157;
    pub const EXIT_GROUP: usize = 231;
}

const SIG_SETMASK: usize = 2;
const WNOHANG: usize = 1;
const TIOCSPGRP: usize = 0x5410;
const PR_SET_CHILD_SUBREAPER: usize = 36;
/// Size of the kernel's signal set: 64 bits.
const KERNEL_SIGSET_SIZE: usize = 8;

/// A set of signals as the kernel's 64-bit mask (signal n is bit n - 1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SigSet(pub u64);

impl SigSet {
    /// Every signal from 1 to 64 but `except`.
    pub fn all_but(except: &[i32]) -> SigSet {
        SigSet(
            except
                .iter()
                .fold(u64::MAX, |set, &s| set & !(1 << (s - 1))),
        )
    }
}

/// The `syscall` instruction.
///
/// # Safety
/// The arguments must be valid for system call `n`: every pointer must point to
/// memory of the size and mutability that call reads or writes.
#[inline]
unsafe fn syscall(n: usize, a: [usize; 4]) -> isize {
    let ret: isize;
    // SAFETY: the x86-64 Linux system call ABI: number in rax, arguments in rdi, rsi,
    // rdx, r10, result in rax; the kernel clobbers only rcx and r11 and leaves the
    // user stack alone. The arguments' validity is the caller's contract.
    unsafe {
        asm!(
            "syscall",
            inlateout("rax") n as isize => ret,
            in("rdi") a[0], in("rsi") a[1], in("rdx") a[2], in("r10") a[3],
            lateout("rcx") _, lateout("r11") _,
            options(nostack),
        );
    }
    ret
}

/// -4095..-1 are error numbers; anything else is a result.
fn check(ret: isize) -> Result<usize, Errno> {
    match ret {
        -4095..=-1 => Err(Errno(-ret as i32)),
        _ => Ok(ret as usize),
    }
}

/// Write all of `buf` to descriptor `fd` (which this program never owns: 0-2).
pub fn write_all(fd: i32, mut buf: &[u8]) -> Result<(), Errno> {
    while !buf.is_empty() {
        // SAFETY: the kernel reads at most buf.len() bytes of buf, borrowed for the call.
        let r = check(unsafe {
            syscall(
                nr::WRITE,
                [fd as usize, buf.as_ptr() as usize, buf.len(), 0],
            )
        });
        match r {
            Ok(0) => return Err(Errno(28)), // ENOSPC: a file that takes nothing
            Ok(n) => buf = &buf[n..],
            Err(EINTR) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Terminate the process with `code`.
pub fn exit(code: i32) -> ! {
    // SAFETY: exit_group takes no pointer and does not return.
    unsafe {
        asm!("syscall", in("rax") nr::EXIT_GROUP, in("rdi") code as isize as usize,
             options(noreturn, nostack))
    }
}

/// This process's PID (in its PID namespace).
pub fn getpid() -> i32 {
    // SAFETY: takes no argument.
    unsafe { syscall(nr::GETPID, [0; 4]) as i32 }
}

/// Become a child subreaper: orphaned descendants are reparented here, not to PID 1.
pub fn set_child_subreaper() -> Result<(), Errno> {
    // SAFETY: PR_SET_CHILD_SUBREAPER takes an integer.
    check(unsafe { syscall(nr::PRCTL, [PR_SET_CHILD_SUBREAPER, 1, 0, 0]) }).map(drop)
}

/// The two sides of a `fork`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Forked {
    /// In the new process.
    Child,
    /// In this one: the child's PID.
    Parent(i32),
}

/// `fork(2)`. The program is single-threaded and holds no locks, so the child may
/// do anything the parent could.
pub fn fork() -> Result<Forked, Errno> {
    // SAFETY: fork takes no argument; the child gets a copy of this address space.
    match check(unsafe { syscall(nr::FORK, [0; 4]) })? {
        0 => Ok(Forked::Child),
        pid => Ok(Forked::Parent(pid as i32)),
    }
}

/// Put this process in a process group of its own.
pub fn setpgid_self() -> Result<(), Errno> {
    // SAFETY: integers only.
    check(unsafe { syscall(nr::SETPGID, [0; 4]) }).map(drop)
}

/// Make this process's group the foreground group of the terminal on `fd`
/// (`tcsetpgrp`); fails with ENOTTY when `fd` is not a terminal.
pub fn set_foreground(fd: i32) -> Result<(), Errno> {
    let pgrp: i32 = getpid();
    // SAFETY: TIOCSPGRP reads one int, which we borrow for the call.
    check(unsafe {
        syscall(
            nr::IOCTL,
            [fd as usize, TIOCSPGRP, &pgrp as *const i32 as usize, 0],
        )
    })
    .map(drop)
}

/// Set the blocked signals to `set`; the mask before.
pub fn set_blocked(set: SigSet) -> Result<SigSet, Errno> {
    let mut old = 0u64;
    // SAFETY: the kernel reads one 64-bit mask from &set.0 and writes one into old.
    check(unsafe {
        syscall(
            nr::RT_SIGPROCMASK,
            [
                SIG_SETMASK,
                &set.0 as *const u64 as usize,
                &mut old as *mut u64 as usize,
                KERNEL_SIGSET_SIZE,
            ],
        )
    })?;
    Ok(SigSet(old))
}

/// Wait for one of the (blocked) signals in `set`; its number.
pub fn wait_signal(set: SigSet) -> Result<i32, Errno> {
    // SAFETY: the kernel reads one 64-bit mask from &set.0; the siginfo and timeout
    // pointers are NULL (no information wanted, no timeout).
    check(unsafe {
        syscall(
            nr::RT_SIGTIMEDWAIT,
            [&set.0 as *const u64 as usize, 0, 0, KERNEL_SIGSET_SIZE],
        )
    })
    .map(|s| s as i32)
}

/// Send signal `sig` to process `pid`.
pub fn kill(pid: i32, sig: i32) -> Result<(), Errno> {
    // SAFETY: integers only.
    check(unsafe { syscall(nr::KILL, [pid as usize, sig as usize, 0, 0]) }).map(drop)
}

/// `wait4(-1, WNOHANG)`: a child that ended and its raw wait status; `None` if
/// children exist but none has ended; `Err(ECHILD)` if there are none.
pub fn reap_any() -> Result<Option<(i32, i32)>, Errno> {
    let mut status = 0i32;
    // SAFETY: the kernel writes one int into status; the rusage pointer is NULL.
    let pid = check(unsafe {
        syscall(
            nr::WAIT4,
            [usize::MAX, &mut status as *mut i32 as usize, WNOHANG, 0],
        )
    })?;
    Ok((pid != 0).then_some((pid as i32, status)))
}

/// The process's argument and environment vectors, as the kernel laid them out.
#[derive(Debug)]
pub struct ProcessArgs {
    argc: usize,
    argv: *const *const u8,
    envp: *const *const u8,
}

impl ProcessArgs {
    /// Wrap the vectors handed to the entry point.
    ///
    /// # Safety
    /// `argv` must point to `argc` pointers to NUL-terminated strings and a NULL, `envp`
    /// to a NULL-terminated array of such pointers; all valid and unmodified for the
    /// rest of the process (true of what the kernel and glibc hand to `main`).
    pub unsafe fn new(argc: usize, argv: *const *const u8, envp: *const *const u8) -> Self {
        ProcessArgs { argc, argv, envp }
    }

    /// Argument `i` (`argv[0]` is the program's own name), if there is one.
    pub fn arg(&self, i: usize) -> Option<&'static CStr> {
        // SAFETY: i < argc, so argv[i] is a valid string for the life of the process.
        (i < self.argc).then(|| unsafe { CStr::from_ptr((*self.argv.add(i)).cast()) })
    }

    /// The value of environment variable `name` (given with its `=`, e.g. `b"PATH="`).
    pub fn env(&self, name: &[u8]) -> Option<&'static [u8]> {
        let mut i = 0;
        loop {
            // SAFETY: envp is NULL-terminated (`new`'s contract) and we stop at the NULL.
            let p = unsafe { *self.envp.add(i) };
            if p.is_null() {
                return None;
            }
            // SAFETY: p is a valid NUL-terminated string that lives as long as the process.
            let var = unsafe { CStr::from_ptr(p.cast()) }.to_bytes();
            if let Some(value) = var.strip_prefix(name) {
                return Some(value);
            }
            i += 1;
        }
    }

    /// `execve(path, &argv[first..], envp)`: run `path` with the arguments from
    /// `first` on and this process's environment. Returns only on failure.
    pub fn exec(&self, path: &CStr, first: usize) -> Errno {
        if first >= self.argc {
            return Errno(14); // EFAULT: there is no such argument
        }
        // SAFETY: first < argc, so &argv[first] starts a NULL-terminated array of valid
        // strings (the tail of argv); envp and path are valid. On success execve does
        // not return; on failure it changes nothing.
        let ret = unsafe {
            syscall(
                nr::EXECVE,
                [
                    path.as_ptr() as usize,
                    self.argv.add(first) as usize,
                    self.envp as usize,
                    0,
                ],
            )
        };
        check(ret).err().unwrap_or(Errno(0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_match_libc() {
        assert_eq!(
            [ESRCH, ENOENT, EINTR, EACCES, ENOTDIR].map(|e| e.0),
            [
                libc::ESRCH,
                libc::ENOENT,
                libc::EINTR,
                libc::EACCES,
                libc::ENOTDIR
            ]
        );
        assert_eq!(
            [SIGCHLD, SIGTTIN, SIGTTOU],
            [libc::SIGCHLD, libc::SIGTTIN, libc::SIGTTOU]
        );
        assert_eq!(
            [SIG_SETMASK, WNOHANG],
            [libc::SIG_SETMASK as usize, libc::WNOHANG as usize]
        );
        assert_eq!(TIOCSPGRP, libc::TIOCSPGRP as usize);
        assert_eq!(
            PR_SET_CHILD_SUBREAPER,
            libc::PR_SET_CHILD_SUBREAPER as usize
        );
        assert_eq!(
            [
                nr::WRITE,
                nr::RT_SIGPROCMASK,
                nr::IOCTL,
                nr::GETPID,
                nr::FORK,
                nr::EXECVE,
                nr::WAIT4,
                nr::KILL,
                nr::SETPGID,
                nr::RT_SIGTIMEDWAIT,
                nr::PRCTL,
                nr::EXIT_GROUP
            ],
            [
                libc::SYS_write,
                libc::SYS_rt_sigprocmask,
                libc::SYS_ioctl,
                libc::SYS_getpid,
                libc::SYS_fork,
                libc::SYS_execve,
                libc::SYS_wait4,
                libc::SYS_kill,
                libc::SYS_setpgid,
                libc::SYS_rt_sigtimedwait,
                libc::SYS_prctl,
                libc::SYS_exit_group
            ]
            .map(|n| n as usize)
        );
    }

    #[test]
    fn signal_sets_are_the_kernels_bits() {
        assert_eq!(SigSet::all_but(&[]).0, u64::MAX);
        let s = SigSet::all_but(&[1, 17, 64]);
        assert_eq!(s.0 & 1, 0);
        assert_eq!(s.0 & (1 << 16), 0);
        assert_eq!(s.0 >> 63, 0);
        assert_eq!(s.0.count_ones(), 61);
        assert_eq!(getpid() as u32, std::process::id());
    }
}
