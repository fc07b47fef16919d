//! The only crate in onggi that contains `unsafe` code.
//!
//! Everything here is a raw system call that `nix` does not wrap (or does not wrap
//! safely for our use). Each wrapper is a safe function whose `// SAFETY:` comment
//! states why the call cannot violate memory or I/O safety. Every other onggi crate is
//! `#![forbid(unsafe_code)]` and calls these.
#![deny(missing_docs)]

use std::ffi::CString;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd, RawFd};

use nix::errno::Errno;
use nix::unistd::Pid;

/// Result of [`clone_fork`]: which side of the fork we are on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Forked {
    /// In the parent; the child's PID (as seen from the parent's PID namespace).
    Parent(Pid),
    /// In the child.
    Child,
}

/// Number of threads in the calling process, read from the link count of
/// `/proc/self/task` (2 + one subdirectory per thread): a single `stat`.
fn thread_count() -> Result<u64, Errno> {
    let st = nix::sys::stat::stat("/proc/self/task")?;
    Ok((st.st_nlink as u64).saturating_sub(2))
}

/// `clone(2)` with fork semantics (no new stack, `SIGCHLD` on exit) plus the given
/// namespace flags (`CLONE_NEW*`), so the child starts inside the new namespaces, and is
/// PID 1 of a new PID namespace when `CLONE_NEWPID` is set.
///
/// Refuses with `EDEADLK` when the calling process has more than one thread: after a
/// fork of a multi-threaded process only async-signal-safe functions may be called,
/// and the container setup allocates and takes locks freely.
pub fn clone_fork(namespace_flags: libc::c_int) -> Result<Forked, Errno> {
    if thread_count()? != 1 {
        return Err(Errno::EDEADLK);
    }
    let flags = (namespace_flags as libc::c_ulong) | libc::SIGCHLD as libc::c_ulong;
    // SAFETY: with a NULL stack pointer clone behaves like fork(2): the child gets a
    // copy-on-write copy of the parent's address space, so every Rust invariant that
    // held in the parent holds in the child. The process was checked above to be
    // single-threaded, so no lock (allocator, stdio) can be held by a thread that does
    // not exist in the child. The pointer arguments (parent_tid, child_tid, tls) are
    // NULL and unused with these flags.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_clone,
            flags,
            std::ptr::null_mut::<libc::c_void>(),
            std::ptr::null_mut::<libc::c_int>(),
            std::ptr::null_mut::<libc::c_int>(),
            0 as libc::c_ulong,
        )
    };
    match Errno::result(ret)? {
        0 => Ok(Forked::Child),
        pid => Ok(Forked::Parent(Pid::from_raw(pid as libc::pid_t))),
    }
}

/// Make the terminal `fd` the controlling terminal of the calling process
/// (`ioctl(TIOCSCTTY)`); the caller must be a session leader (call `setsid` first).
pub fn set_controlling_terminal<F: AsFd>(fd: F) -> Result<(), Errno> {
    // SAFETY: TIOCSCTTY takes an integer argument (0: do not steal); the fd is borrowed
    // for the duration of the call, so it is open.
    let ret = unsafe { libc::ioctl(fd.as_fd().as_raw_fd(), libc::TIOCSCTTY, 0) };
    Errno::result(ret).map(drop)
}

/// Set a terminal's window size (`ioctl(TIOCSWINSZ)`).
pub fn set_window_size<F: AsFd>(fd: F, rows: u16, cols: u16) -> Result<(), Errno> {
    let ws = libc::winsize {
        ws_row: rows,
        ws_col: cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCSWINSZ reads a `struct winsize` through the pointer, which points to a
    // live, initialised local; the fd is borrowed, so it is open.
    let ret = unsafe { libc::ioctl(fd.as_fd().as_raw_fd(), libc::TIOCSWINSZ, &ws) };
    Errno::result(ret).map(drop)
}

/// Read a terminal's window size (`ioctl(TIOCGWINSZ)`) as (rows, cols).
pub fn window_size<F: AsFd>(fd: F) -> Result<(u16, u16), Errno> {
    let mut ws = libc::winsize {
        ws_row: 0,
        ws_col: 0,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCGWINSZ writes a `struct winsize` through the pointer, which points to a
    // live local of that type; the fd is borrowed, so it is open.
    let ret = unsafe { libc::ioctl(fd.as_fd().as_raw_fd(), libc::TIOCGWINSZ, &mut ws) };
    Errno::result(ret).map(|_| (ws.ws_row, ws.ws_col))
}

/// Set `FD_CLOEXEC` on every descriptor numbered `first` or higher
/// (`close_range(first, ~0, CLOSE_RANGE_CLOEXEC)`), so that exactly the descriptors
/// below `first` survive the coming `execve`.
pub fn set_cloexec_from(first: RawFd) -> Result<(), Errno> {
    // SAFETY: CLOSE_RANGE_CLOEXEC only sets a flag; no descriptor is closed, so no
    // `OwnedFd` anywhere in the process is invalidated.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_close_range,
            first as libc::c_uint,
            libc::c_uint::MAX,
            libc::CLOSE_RANGE_CLOEXEC as libc::c_uint,
        )
    };
    Errno::result(ret).map(drop)
}

/// `setdomainname(2)`: set the NIS domain name of the current UTS namespace.
pub fn set_domainname(name: &str) -> Result<(), Errno> {
    // SAFETY: the pointer and length describe the bytes of a live `&str`; the kernel
    // copies them and does not keep the pointer.
    let ret = unsafe { libc::setdomainname(name.as_ptr().cast(), name.len()) };
    Errno::result(ret).map(drop)
}

/// Join a new anonymous session keyring named `name`
/// (`keyctl(KEYCTL_JOIN_SESSION_KEYRING, name)`), so the container does not share the
/// caller's keys.
pub fn join_session_keyring(name: &str) -> Result<(), Errno> {
    let name = CString::new(name).map_err(|_| Errno::EINVAL)?;
    // SAFETY: the name is a NUL-terminated C string alive across the call; the kernel
    // copies it. KEYCTL_JOIN_SESSION_KEYRING takes no further pointer arguments.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_keyctl,
            libc::KEYCTL_JOIN_SESSION_KEYRING,
            name.as_ptr(),
        )
    };
    Errno::result(ret).map(drop)
}

/// `pidfd_open(2)`: a descriptor that refers to process `pid` itself, immune to PID
/// reuse; it becomes readable when the process exits.
pub fn pidfd_open(pid: Pid) -> Result<OwnedFd, Errno> {
    // SAFETY: pidfd_open takes plain integers and returns a new descriptor or -1.
    let ret = unsafe { libc::syscall(libc::SYS_pidfd_open, pid.as_raw(), 0) };
    let fd = Errno::result(ret)? as RawFd;
    // SAFETY: on success the kernel returned a fresh descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// `pidfd_send_signal(2)`: signal the process behind a pidfd (no PID-reuse race).
pub fn pidfd_send_signal<F: AsFd>(pidfd: F, signal: libc::c_int) -> Result<(), Errno> {
    // SAFETY: the info pointer is NULL (the kernel fills in a default siginfo) and the
    // pidfd is borrowed, so it is open.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            pidfd.as_fd().as_raw_fd(),
            signal,
            std::ptr::null::<libc::siginfo_t>(),
            0,
        )
    };
    Errno::result(ret).map(drop)
}

/// Give `signal` its default action (`SIG_DFL`). Rust's start-up code ignores
/// SIGPIPE, and an ignored signal stays ignored across `execve`: a container's
/// program would inherit that (`SigIgn` in /proc/PID/status), unlike under runc.
pub fn default_signal_action(signal: nix::sys::signal::Signal) -> Result<(), Errno> {
    use nix::sys::signal::{signal as set_handler, SigHandler};
    // SAFETY: SIG_DFL installs no handler: none of our code runs when the signal
    // comes, so no async-signal-safety question arises; the previous disposition
    // returned is dropped.
    unsafe { set_handler(signal, SigHandler::SigDfl) }.map(drop)
}

/// Recursive mount attributes for [`mount_setattr`] (`MOUNT_ATTR_*`).
pub mod mount_attr {
    /// Read-only.
    pub const RDONLY: u64 = 0x0000_0001;
    /// Ignore suid and sgid bits.
    pub const NOSUID: u64 = 0x0000_0002;
    /// Disallow access to device special files.
    pub const NODEV: u64 = 0x0000_0004;
    /// Disallow program execution.
    pub const NOEXEC: u64 = 0x0000_0008;
    /// Mask of the atime setting.
    pub const ATIME_MASK: u64 = 0x0000_0070;
    /// Update atime relative to mtime/ctime.
    pub const RELATIME: u64 = 0x0000_0000;
    /// Do not update access times.
    pub const NOATIME: u64 = 0x0000_0010;
    /// Always update atime.
    pub const STRICTATIME: u64 = 0x0000_0020;
    /// Do not update directory access times.
    pub const NODIRATIME: u64 = 0x0000_0080;
    /// Do not follow symlinks.
    pub const NOSYMFOLLOW: u64 = 0x0020_0000;
}

pub use mount_api::mount_setattr_recursive;

/// Receive one descriptor sent with SCM_RIGHTS on a connected Unix socket; `None`
/// when the message carried none (or the peer closed). Close-on-exec is set on it.
pub fn recv_fd<F: AsFd>(sock: F) -> Result<Option<OwnedFd>, Errno> {
    let mut buf = [0u8; 256];
    recv_with_fd(sock, &mut buf).map(|(_, fd)| fd)
}

/// Receive one message into `buf` and the descriptor sent with it (SCM_RIGHTS), if
/// any, close-on-exec: the message's length (0 when the peer closed) and the fd.
pub fn recv_with_fd<F: AsFd>(sock: F, buf: &mut [u8]) -> Result<(usize, Option<OwnedFd>), Errno> {
    use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags, UnixAddr};
    let mut iov = [std::io::IoSliceMut::new(buf)];
    let mut space = nix::cmsg_space!([RawFd; 1]);
    let msg = recvmsg::<UnixAddr>(
        sock.as_fd().as_raw_fd(),
        &mut iov,
        Some(&mut space),
        MsgFlags::MSG_CMSG_CLOEXEC,
    )?;
    let mut received = None;
    for c in msg.cmsgs()? {
        if let ControlMessageOwned::ScmRights(fds) = c {
            for fd in fds {
                // SAFETY: SCM_RIGHTS installed `fd` as a new descriptor in this process's
                // table for this call alone; nothing else refers to it, so taking
                // ownership (and closing any extra ones) is sound.
                let owned = unsafe { OwnedFd::from_raw_fd(fd) };
                if received.is_none() {
                    received = Some(owned);
                }
            }
        }
    }
    Ok((msg.bytes, received))
}

pub mod bpf;
pub mod mount_api;
pub mod seccomp;

#[cfg(test)]
mod tests {
    use super::*;

    /// One test, not two: the harness runs tests on parallel threads of one process,
    /// and each of these counts the process's threads.
    #[test]
    fn thread_count_and_clone_fork_refusal() {
        let (tx, rx) = std::sync::mpsc::channel::<()>();
        let t = std::thread::spawn(move || rx.recv().ok());
        // This thread, the spawned one, and the harness's main thread at least.
        assert!(thread_count().unwrap() >= 2);
        // A fork now would leave locks held by threads that do not exist in the child.
        assert_eq!(clone_fork(0), Err(Errno::EDEADLK));
        tx.send(()).unwrap();
        t.join().unwrap();
    }
}
