//! Raw Linux system calls for x86-64: the monitor's `unsafe` code. Elsewhere there are
//! only the binary's freestanding runtime (`src/rt.rs`, release builds) and two calls
//! of the unsafe constructors below, where the caller holds the invariant: wrapping
//! `argv` in the entry point, and adopting the pipes named on the command line.
//!
//! # Why not `onggi-sys`, `nix` or `libc`
//! Those need the C library and `std`, and the workspace links statically. Measured
//! here: a static glibc C program that only calls `pause()` has 696 KiB PSS, a static
//! Rust `std` program that only sleeps 972 KiB (its text is mapped nearly whole, as the
//! kernel maps the file pages around a fault, and whole large folios): three to four
//! times the monitor's budget of 231 KiB before any work, and `onggi-sys` adds `nix`.
//! So the release monitor links no C library at all and calls the kernel directly
//! through the twenty calls below; every number is checked against the `libc` crate
//! in the tests.
//!
//! Each wrapper is a safe function: its `// SAFETY:` comment says why the call cannot
//! touch memory it does not own. Errors come back as [`Errno`] (the kernel's negative
//! return value), never through a global `errno`.
#![allow(unsafe_code)]

use core::arch::asm;
use core::ffi::CStr;

#[cfg(not(target_arch = "x86_64"))]
compile_error!("onggi-monitor calls the kernel directly and knows only x86-64's system calls");

/// An error number returned by the kernel (e.g. 2 = ENOENT).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Errno(pub i32);

/// Interrupted system call.
pub const EINTR: Errno = Errno(4);
/// Bad file descriptor.
pub const EBADF: Errno = Errno(9);
/// No child processes.
pub const ECHILD: Errno = Errno(10);
/// Resource temporarily unavailable (a non-blocking read found nothing).
pub const EAGAIN: Errno = Errno(11);

/// Open for writing only.
pub const O_WRONLY: i32 = 0o1;
/// Open for reading and writing.
pub const O_RDWR: i32 = 0o2;
/// Create the file if it does not exist.
pub const O_CREAT: i32 = 0o100;
/// Truncate the file to length 0.
pub const O_TRUNC: i32 = 0o1000;
/// Every write goes to the end of the file.
pub const O_APPEND: i32 = 0o2000;
/// Non-blocking I/O.
pub const O_NONBLOCK: i32 = 0o4000;
/// Fail unless the path is a directory.
pub const O_DIRECTORY: i32 = 0o200000;
/// Close the descriptor on `execve`.
pub const O_CLOEXEC: i32 = 0o2000000;

/// Hangup (the terminal went away).
pub const SIGHUP: i32 = 1;
/// Interrupt from the keyboard (Ctrl-C).
pub const SIGINT: i32 = 2;
/// Write to a pipe with no reader.
pub const SIGPIPE: i32 = 13;
/// Polite termination request.
pub const SIGTERM: i32 = 15;
/// A child stopped or terminated.
pub const SIGCHLD: i32 = 17;
/// File size limit (`RLIMIT_FSIZE`) exceeded.
pub const SIGXFSZ: i32 = 25;

/// `poll` event: there is data to read.
pub const POLLIN: i16 = 0x1;

mod nr {
    pub const READ: usize = 0;
    pub const WRITE: usize = 1;
    pub const CLOSE: usize = 3;
    pub const POLL: usize = 7;
    pub const LSEEK: usize = 8;
    pub const MMAP: usize = 9;
    pub const RT_SIGACTION: usize = 13;
    pub const RT_SIGPROCMASK: usize = 14;
    pub const EXECVE: usize = 59;
    pub const WAIT4: usize = 61;
    pub const FCNTL: usize = 72;
    pub const FSYNC: usize = 74;
    pub const CHDIR: usize = 80;
    pub const RENAME: usize = 82;
    pub const CLOCK_GETTIME: usize = 228;
    pub const EXIT_GROUP: usize = 231;
    pub const WAITID: usize = 247;
    pub const OPENAT: usize = 257;
    pub const SIGNALFD4: usize = 289;
    pub const CLOSE_RANGE: usize = 436;
}

const AT_FDCWD: isize = -100;
const F_GETFD: usize = 1;
const F_SETFD: usize = 2;
const F_GETFL: usize = 3;
const F_SETFL: usize = 4;
const FD_CLOEXEC: usize = 1;
const SEEK_END: usize = 2;
const SIG_BLOCK: usize = 0;
const SIG_SETMASK: usize = 2;
const SIG_DFL: usize = 0;
const SIG_IGN: usize = 1;
const WNOHANG: usize = 1;
const WEXITED: usize = 4;
const WNOWAIT: usize = 0x0100_0000;
const P_PID: usize = 1;
const CLOCK_REALTIME: usize = 0;
const CLOCK_MONOTONIC: usize = 1;
const PROT_READ: usize = 1;
const PROT_WRITE: usize = 2;
const MAP_PRIVATE: usize = 0x02;
const MAP_ANONYMOUS: usize = 0x20;
/// Size of the kernel's signal set (`sigset_t` as the kernel sees it: 64 bits).
const KERNEL_SIGSET_SIZE: usize = 8;

/// The `syscall` instruction with six arguments (unused ones are ignored by the kernel).
///
/// # Safety
/// The caller must pass arguments that are valid for system call `n`: every pointer
/// must point to memory of the size and mutability that call reads or writes.
#[inline]
unsafe fn syscall(n: usize, a: [usize; 6]) -> isize {
    let ret: isize;
    // SAFETY: the x86-64 Linux system call ABI: number in rax, arguments in rdi, rsi,
    // rdx, r10, r8, r9, result in rax; the kernel clobbers only rcx and r11 and does not
    // touch the user stack. Memory safety of the arguments is the caller's contract.
    unsafe {
        asm!(
            "syscall",
            inlateout("rax") n as isize => ret,
            in("rdi") a[0], in("rsi") a[1], in("rdx") a[2],
            in("r10") a[3], in("r8") a[4], in("r9") a[5],
            lateout("rcx") _, lateout("r11") _,
            options(nostack),
        );
    }
    ret
}

/// Turn a raw system call return value into a result: -4095..-1 are error numbers.
fn check(ret: isize) -> Result<usize, Errno> {
    if (-4095..0).contains(&ret) {
        Err(Errno(-ret as i32))
    } else {
        Ok(ret as usize)
    }
}

/// An owned file descriptor, closed on drop.
#[derive(Debug)]
pub struct Fd(i32);

impl Fd {
    /// Take ownership of an inherited descriptor number.
    ///
    /// # Safety
    /// Nothing else in the process may use or close `fd` afterwards (the monitor adopts
    /// the pipes the engine named on its command line, once, at startup).
    pub unsafe fn adopt(fd: i32) -> Fd {
        Fd(fd)
    }

    /// The descriptor number.
    pub fn raw(&self) -> i32 {
        self.0
    }
}

impl Drop for Fd {
    fn drop(&mut self) {
        // SAFETY: close takes no pointer; this Fd owns the number (see `adopt`), so no
        // other owner can be surprised by it closing.
        unsafe { syscall(nr::CLOSE, [self.0 as usize, 0, 0, 0, 0, 0]) };
    }
}

/// `read(2)` into `buf`; `Ok(0)` is end of file.
pub fn read(fd: &Fd, buf: &mut [u8]) -> Result<usize, Errno> {
    // SAFETY: the kernel writes at most buf.len() bytes into buf, which we borrow
    // mutably for the duration of the call.
    check(unsafe {
        syscall(
            nr::READ,
            [fd.0 as usize, buf.as_mut_ptr() as usize, buf.len(), 0, 0, 0],
        )
    })
}

/// `write(2)` to a raw descriptor number (also for 0-2, which the monitor never owns).
pub fn write_raw(fd: i32, buf: &[u8]) -> Result<usize, Errno> {
    // SAFETY: the kernel reads at most buf.len() bytes from buf, borrowed for the call;
    // writing to a descriptor we do not own cannot affect memory.
    check(unsafe {
        syscall(
            nr::WRITE,
            [fd as usize, buf.as_ptr() as usize, buf.len(), 0, 0, 0],
        )
    })
}

/// Write all of `buf`, retrying short writes; on an error, how much was written with it.
pub fn write_all(fd: i32, mut buf: &[u8]) -> Result<(), (usize, Errno)> {
    let mut done = 0;
    while !buf.is_empty() {
        match write_raw(fd, buf) {
            Ok(0) => return Err((done, Errno(28))), // ENOSPC: a regular file that takes nothing
            Ok(n) => {
                done += n;
                buf = &buf[n..];
            }
            Err(EINTR) => {}
            Err(e) => return Err((done, e)),
        }
    }
    Ok(())
}

/// `openat(AT_FDCWD, path, flags, mode)`; the result is always close-on-exec.
pub fn open(path: &CStr, flags: i32, mode: u32) -> Result<Fd, Errno> {
    // SAFETY: path is a NUL-terminated string borrowed for the call.
    let fd = check(unsafe {
        syscall(
            nr::OPENAT,
            [
                AT_FDCWD as usize,
                path.as_ptr() as usize,
                (flags | O_CLOEXEC) as usize,
                mode as usize,
                0,
                0,
            ],
        )
    })?;
    Ok(Fd(fd as i32))
}

/// Whether descriptor `fd` is open (`fcntl(F_GETFD)` does not fail with `EBADF`).
pub fn is_open(fd: i32) -> bool {
    // SAFETY: F_GETFD takes no pointer.
    let ret = unsafe { syscall(nr::FCNTL, [fd as usize, F_GETFD, 0, 0, 0, 0]) };
    check(ret) != Err(EBADF)
}

/// Make `fd` non-blocking and close-on-exec.
pub fn set_nonblocking_cloexec(fd: &Fd) -> Result<(), Errno> {
    // SAFETY: F_GETFL, F_SETFL and F_SETFD take integer arguments only.
    unsafe {
        let fl = check(syscall(nr::FCNTL, [fd.0 as usize, F_GETFL, 0, 0, 0, 0]))?;
        let fl = fl | O_NONBLOCK as usize;
        check(syscall(nr::FCNTL, [fd.0 as usize, F_SETFL, fl, 0, 0, 0]))?;
        check(syscall(
            nr::FCNTL,
            [fd.0 as usize, F_SETFD, FD_CLOEXEC, 0, 0, 0],
        ))?;
    }
    Ok(())
}

/// `close_range(first, last, 0)`: close every descriptor in `first..=last`.
///
/// Only for descriptors nothing in this process owns: the monitor calls it once at
/// startup, before it opens or adopts any.
pub fn close_range(first: u32, last: u32) -> Result<(), Errno> {
    // SAFETY: takes no pointer; the caller closes only numbers no `Fd` owns.
    check(unsafe { syscall(nr::CLOSE_RANGE, [first as usize, last as usize, 0, 0, 0, 0]) })
        .map(drop)
}

/// The end offset of a file (its size): `lseek(fd, 0, SEEK_END)`.
pub fn seek_end(fd: &Fd) -> Result<u64, Errno> {
    // SAFETY: takes no pointer.
    check(unsafe { syscall(nr::LSEEK, [fd.0 as usize, 0, SEEK_END, 0, 0, 0]) }).map(|n| n as u64)
}

/// `fsync(2)`.
pub fn fsync(fd: &Fd) -> Result<(), Errno> {
    // SAFETY: takes no pointer.
    check(unsafe { syscall(nr::FSYNC, [fd.0 as usize, 0, 0, 0, 0, 0]) }).map(drop)
}

/// `rename(2)`.
pub fn rename(from: &CStr, to: &CStr) -> Result<(), Errno> {
    // SAFETY: both are NUL-terminated strings borrowed for the call.
    check(unsafe {
        syscall(
            nr::RENAME,
            [from.as_ptr() as usize, to.as_ptr() as usize, 0, 0, 0, 0],
        )
    })
    .map(drop)
}

/// `chdir(2)`.
pub fn chdir(path: &CStr) -> Result<(), Errno> {
    // SAFETY: path is a NUL-terminated string borrowed for the call.
    check(unsafe { syscall(nr::CHDIR, [path.as_ptr() as usize, 0, 0, 0, 0, 0]) }).map(drop)
}

/// One entry of a `poll(2)` set.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct PollFd {
    /// Descriptor to watch; negative: ignored.
    pub fd: i32,
    /// Requested events.
    pub events: i16,
    /// Returned events (POLLIN, POLLHUP, POLLERR, POLLNVAL).
    pub revents: i16,
}

/// `poll(2)`: wait until one of `fds` is ready or `timeout_ms` passes (-1: forever).
pub fn poll(fds: &mut [PollFd], timeout_ms: i32) -> Result<usize, Errno> {
    // SAFETY: PollFd has the kernel's `struct pollfd` layout; the kernel writes only the
    // revents fields of fds.len() entries, which we borrow mutably for the call.
    check(unsafe {
        syscall(
            nr::POLL,
            [
                fds.as_mut_ptr() as usize,
                fds.len(),
                timeout_ms as isize as usize,
                0,
                0,
                0,
            ],
        )
    })
}

/// A clock reading: seconds and nanoseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Time {
    /// Seconds (since the Unix epoch for the real-time clock).
    pub secs: i64,
    /// Nanoseconds, 0..1_000_000_000.
    pub nanos: u32,
}

fn clock(id: usize) -> Time {
    let mut ts = [0i64; 2];
    // SAFETY: the kernel writes one `struct timespec` (two 64-bit words) into ts.
    let ret = unsafe {
        syscall(
            nr::CLOCK_GETTIME,
            [id, ts.as_mut_ptr() as usize, 0, 0, 0, 0],
        )
    };
    match check(ret) {
        Ok(_) => Time {
            secs: ts[0],
            nanos: ts[1] as u32,
        },
        Err(_) => Time { secs: 0, nanos: 0 }, // only for an invalid clock id
    }
}

/// The wall clock (`CLOCK_REALTIME`), for timestamps.
pub fn now() -> Time {
    clock(CLOCK_REALTIME)
}

/// Milliseconds on the monotonic clock, for timeouts.
pub fn monotonic_ms() -> i64 {
    let t = clock(CLOCK_MONOTONIC);
    t.secs * 1000 + i64::from(t.nanos / 1_000_000)
}

/// The kernel's `struct sigaction` on x86-64 (not glibc's, whose mask is 128 bytes).
#[repr(C)]
struct KernelSigaction {
    handler: usize,
    flags: u64,
    restorer: usize,
    mask: u64,
}

fn set_disposition(sig: i32, handler: usize) -> Result<(), Errno> {
    let act = KernelSigaction {
        handler,
        flags: 0,
        restorer: 0,
        mask: 0,
    };
    // SAFETY: act is a valid kernel sigaction borrowed for the call; the handler is
    // SIG_IGN or SIG_DFL, never code, so no restorer trampoline is needed; the old
    // action pointer is NULL.
    check(unsafe {
        syscall(
            nr::RT_SIGACTION,
            [
                sig as usize,
                &act as *const KernelSigaction as usize,
                0,
                KERNEL_SIGSET_SIZE,
                0,
                0,
            ],
        )
    })
    .map(drop)
}

/// Ignore signal `sig` (`SIG_IGN`; survives `execve`).
pub fn ignore_signal(sig: i32) -> Result<(), Errno> {
    set_disposition(sig, SIG_IGN)
}

/// Restore the default action of signal `sig` (`SIG_DFL`).
pub fn default_signal(sig: i32) -> Result<(), Errno> {
    set_disposition(sig, SIG_DFL)
}

/// A set of signals as the kernel's 64-bit mask.
fn sigset(signals: &[i32]) -> u64 {
    signals.iter().fold(0, |set, &s| set | 1 << (s - 1))
}

fn sigprocmask(how: usize, set: u64) -> Result<(), Errno> {
    // SAFETY: the kernel reads one 64-bit mask from &set; the old-mask pointer is NULL.
    check(unsafe {
        syscall(
            nr::RT_SIGPROCMASK,
            [
                how,
                &set as *const u64 as usize,
                0,
                KERNEL_SIGSET_SIZE,
                0,
                0,
            ],
        )
    })
    .map(drop)
}

/// Block exactly `signals` (replacing any mask inherited through `execve`).
pub fn set_blocked_signals(signals: &[i32]) -> Result<(), Errno> {
    sigprocmask(SIG_SETMASK, sigset(signals))
}

/// Block `signals` in addition to those already blocked.
pub fn block_signals(signals: &[i32]) -> Result<(), Errno> {
    sigprocmask(SIG_BLOCK, sigset(signals))
}

/// A non-blocking, close-on-exec `signalfd` for `signals` (which must be blocked).
pub fn signalfd(signals: &[i32]) -> Result<Fd, Errno> {
    let set = sigset(signals);
    // SAFETY: the kernel reads one 64-bit mask from &set.
    let fd = check(unsafe {
        syscall(
            nr::SIGNALFD4,
            [
                usize::MAX, // -1: a new descriptor
                &set as *const u64 as usize,
                KERNEL_SIGSET_SIZE,
                (O_NONBLOCK | O_CLOEXEC) as usize,
                0,
                0,
            ],
        )
    })?;
    Ok(Fd(fd as i32))
}

/// Read and discard every pending `signalfd_siginfo` (the monitor only needs to know
/// that a signal came; it then asks `wait4` what happened).
pub fn drain_signalfd(fd: &Fd) {
    let mut info = [0u8; 128]; // one signalfd_siginfo
    loop {
        match read(fd, &mut info) {
            Ok(n) if n > 0 => continue,
            Err(EINTR) => continue,
            _ => return,
        }
    }
}

/// `wait4(-1, WNOHANG)`: a child that changed state, with its raw wait status, or
/// `None` if children exist but none has exited. `Err(ECHILD)`: no children at all.
pub fn reap_any() -> Result<Option<(i32, i32)>, Errno> {
    let mut status = 0i32;
    // SAFETY: the kernel writes one int into status; the rusage pointer is NULL.
    let ret = unsafe {
        syscall(
            nr::WAIT4,
            [
                usize::MAX, // pid -1: any child
                &mut status as *mut i32 as usize,
                WNOHANG,
                0,
                0,
                0,
            ],
        )
    };
    match check(ret)? {
        0 => Ok(None),
        pid => Ok(Some((pid as i32, status))),
    }
}

/// `wait4(pid, 0)`: block until child `pid` exits; its raw wait status.
pub fn wait_for(pid: i32) -> Result<i32, Errno> {
    let mut status = 0i32;
    loop {
        // SAFETY: as in `reap_any`.
        let ret = unsafe {
            syscall(
                nr::WAIT4,
                [pid as usize, &mut status as *mut i32 as usize, 0, 0, 0, 0],
            )
        };
        match check(ret) {
            Err(EINTR) => continue,
            Err(e) => return Err(e),
            Ok(_) => return Ok(status),
        }
    }
}

/// Whether `pid` is a child of this process (alive or a zombie), without reaping it:
/// `waitid(P_PID, pid, WEXITED | WNOHANG | WNOWAIT)` fails with `ECHILD` otherwise.
pub fn is_child(pid: i32) -> Result<bool, Errno> {
    let mut info = [0u64; 16]; // one 128-byte siginfo_t
                               // SAFETY: the kernel writes at most one siginfo_t (128 bytes) into info; the rusage
                               // pointer is NULL. WNOWAIT leaves a zombie child in place for the real wait.
    let ret = unsafe {
        syscall(
            nr::WAITID,
            [
                P_PID,
                pid as usize,
                info.as_mut_ptr() as usize,
                WEXITED | WNOHANG | WNOWAIT,
                0,
                0,
            ],
        )
    };
    match check(ret) {
        Ok(_) => Ok(true),
        Err(ECHILD) => Ok(false),
        Err(e) => Err(e),
    }
}

/// A fresh private anonymous mapping of `len` zero bytes, never unmapped. Pages cost
/// memory only once touched, unlike a zero-initialised array on the stack.
pub fn anonymous_memory(len: usize) -> Result<&'static mut [u8], Errno> {
    // SAFETY: a NULL hint lets the kernel choose an unused range, so no existing memory
    // is replaced; no fd is involved.
    let addr = check(unsafe {
        syscall(
            nr::MMAP,
            [
                0,
                len,
                PROT_READ | PROT_WRITE,
                MAP_PRIVATE | MAP_ANONYMOUS,
                usize::MAX,
                0,
            ],
        )
    })?;
    // SAFETY: the kernel returned a new readable, writable mapping of len bytes at addr,
    // initialised to zero; it is never unmapped, and this slice is its only reference.
    Ok(unsafe { core::slice::from_raw_parts_mut(addr as *mut u8, len) })
}

/// Terminate the process (all threads) with `code`.
pub fn exit(code: i32) -> ! {
    // SAFETY: exit_group takes no pointer and does not return.
    unsafe {
        asm!(
            "syscall",
            in("rax") nr::EXIT_GROUP,
            in("rdi") code as isize as usize,
            options(noreturn, nostack),
        )
    }
}

/// The process's argument and environment vectors, as the kernel laid them out.
#[derive(Debug)]
pub struct ProcessArgs {
    argc: usize,
    argv: *const *const u8,
    envp: *const *const u8,
}

impl ProcessArgs {
    /// Wrap the vectors handed to the process entry point.
    ///
    /// # Safety
    /// `argv` must point to `argc` pointers to NUL-terminated strings followed by a NULL
    /// pointer, and `envp` to a NULL-terminated array of such pointers; all must stay
    /// valid and unmodified for the rest of the process. That holds for the arrays the
    /// kernel places on the initial stack and for the `argv`/`envp` glibc gives `main`.
    pub unsafe fn new(argc: usize, argv: *const *const u8, envp: *const *const u8) -> Self {
        ProcessArgs { argc, argv, envp }
    }

    /// The arguments, `argv[0]` first.
    pub fn iter(&self) -> impl Iterator<Item = &'static CStr> + '_ {
        (0..self.argc).map(|i| {
            // SAFETY: i < argc, and `new`'s contract makes argv[i] a valid string that
            // lives (unmodified) as long as the process.
            unsafe { CStr::from_ptr((*self.argv.add(i)).cast()) }
        })
    }

    /// `execve(argv[first], &argv[first..], envp)`: run the rest of the command line as
    /// a program, with this process's environment. Returns only on failure.
    pub fn exec_from(&self, first: usize) -> Errno {
        if first >= self.argc {
            return Errno(14); // EFAULT: there is no such argument
        }
        // SAFETY: first < argc, so argv[first] is a valid string and &argv[first] is the
        // start of a NULL-terminated pointer array (the tail of argv); envp is valid by
        // `new`'s contract. On success execve does not return; on failure it changes
        // nothing.
        let ret = unsafe {
            let tail = self.argv.add(first);
            syscall(
                nr::EXECVE,
                [*tail as usize, tail as usize, self.envp as usize, 0, 0, 0],
            )
        };
        match check(ret) {
            Err(e) => e,
            Ok(_) => Errno(0),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constants_match_libc() {
        assert_eq!(O_WRONLY, libc::O_WRONLY);
        assert_eq!(O_RDWR, libc::O_RDWR);
        assert_eq!(O_CREAT, libc::O_CREAT);
        assert_eq!(O_TRUNC, libc::O_TRUNC);
        assert_eq!(O_APPEND, libc::O_APPEND);
        assert_eq!(O_NONBLOCK, libc::O_NONBLOCK);
        assert_eq!(O_DIRECTORY, libc::O_DIRECTORY);
        assert_eq!(O_CLOEXEC, libc::O_CLOEXEC);
        assert_eq!(
            [SIGHUP, SIGINT, SIGPIPE, SIGTERM, SIGCHLD, SIGXFSZ],
            [
                libc::SIGHUP,
                libc::SIGINT,
                libc::SIGPIPE,
                libc::SIGTERM,
                libc::SIGCHLD,
                libc::SIGXFSZ
            ]
        );
        assert_eq!(POLLIN, libc::POLLIN);
        assert_eq!(
            [EINTR, EBADF, ECHILD, EAGAIN].map(|e| e.0),
            [libc::EINTR, libc::EBADF, libc::ECHILD, libc::EAGAIN]
        );
        assert_eq!(AT_FDCWD, libc::AT_FDCWD as isize);
        assert_eq!(
            [F_GETFD, F_SETFD, F_GETFL, F_SETFL, FD_CLOEXEC, SEEK_END],
            [
                libc::F_GETFD,
                libc::F_SETFD,
                libc::F_GETFL,
                libc::F_SETFL,
                libc::FD_CLOEXEC,
                libc::SEEK_END
            ]
            .map(|c| c as usize)
        );
        assert_eq!(
            [SIG_BLOCK, SIG_SETMASK, WNOHANG, WEXITED, WNOWAIT, P_PID],
            [
                libc::SIG_BLOCK,
                libc::SIG_SETMASK,
                libc::WNOHANG,
                libc::WEXITED,
                libc::WNOWAIT,
                libc::P_PID as i32
            ]
            .map(|c| c as usize)
        );
        assert_eq!(
            [CLOCK_REALTIME, CLOCK_MONOTONIC],
            [libc::CLOCK_REALTIME, libc::CLOCK_MONOTONIC].map(|c| c as usize)
        );
        assert_eq!(
            [PROT_READ, PROT_WRITE, MAP_PRIVATE, MAP_ANONYMOUS],
            [
                libc::PROT_READ,
                libc::PROT_WRITE,
                libc::MAP_PRIVATE,
                libc::MAP_ANONYMOUS
            ]
            .map(|c| c as usize)
        );
        assert_eq!(SIG_IGN, libc::SIG_IGN);
        assert_eq!(SIG_DFL, libc::SIG_DFL);
        assert_eq!(
            [
                nr::READ,
                nr::WRITE,
                nr::CLOSE,
                nr::POLL,
                nr::LSEEK,
                nr::MMAP,
                nr::RT_SIGACTION,
                nr::RT_SIGPROCMASK,
                nr::EXECVE,
                nr::WAIT4,
                nr::FCNTL,
                nr::FSYNC,
                nr::CHDIR,
                nr::RENAME,
                nr::CLOCK_GETTIME,
                nr::EXIT_GROUP,
                nr::WAITID,
                nr::OPENAT,
                nr::SIGNALFD4,
                nr::CLOSE_RANGE
            ],
            [
                libc::SYS_read,
                libc::SYS_write,
                libc::SYS_close,
                libc::SYS_poll,
                libc::SYS_lseek,
                libc::SYS_mmap,
                libc::SYS_rt_sigaction,
                libc::SYS_rt_sigprocmask,
                libc::SYS_execve,
                libc::SYS_wait4,
                libc::SYS_fcntl,
                libc::SYS_fsync,
                libc::SYS_chdir,
                libc::SYS_rename,
                libc::SYS_clock_gettime,
                libc::SYS_exit_group,
                libc::SYS_waitid,
                libc::SYS_openat,
                libc::SYS_signalfd4,
                libc::SYS_close_range
            ]
            .map(|c| c as usize)
        );
    }

    #[test]
    fn clocks_and_files_work_through_raw_calls() {
        let t = now();
        assert!(t.secs > 1_600_000_000 && t.nanos < 1_000_000_000);
        let m1 = monotonic_ms();
        assert!(monotonic_ms() >= m1);

        let dir = tempfile::tempdir().unwrap();
        let path =
            std::ffi::CString::new(dir.path().join("f").into_os_string().into_encoded_bytes())
                .unwrap();
        let fd = open(&path, O_WRONLY | O_CREAT | O_APPEND, 0o600).unwrap();
        write_all(fd.raw(), b"hello").unwrap();
        assert_eq!(seek_end(&fd).unwrap(), 5);
        fsync(&fd).unwrap();
        let raw = fd.raw();
        assert!(is_open(raw));
        drop(fd);
        assert!(!is_open(raw) || raw <= 2);
        let to = std::ffi::CString::new(dir.path().join("g").into_os_string().into_encoded_bytes())
            .unwrap();
        rename(&path, &to).unwrap();
        assert_eq!(std::fs::read(dir.path().join("g")).unwrap(), b"hello");

        let mem = anonymous_memory(8192).unwrap();
        assert!(mem.iter().all(|&b| b == 0));
        mem[8191] = 1;
    }

    #[test]
    fn no_children_means_echild() {
        // The unit-test process has no children of its own, unless another test spawned
        // one; a PID that is surely not ours answers "not a child".
        assert_eq!(is_child(1), Ok(false));
    }
}
