//! `seccomp(2)` with `SECCOMP_SET_MODE_FILTER`: install a classic-BPF program (an array
//! of `struct sock_filter`, as libseccomp's `seccomp_export_bpf` writes it) on the
//! calling thread.

use std::os::fd::{FromRawFd, OwnedFd, RawFd};

use nix::errno::Errno;

/// Synchronise all threads of the process to the new filter.
pub const FLAG_TSYNC: u32 = libc::SECCOMP_FILTER_FLAG_TSYNC as u32;
/// Log every action except `SECCOMP_RET_ALLOW` (Linux 4.14).
pub const FLAG_LOG: u32 = libc::SECCOMP_FILTER_FLAG_LOG as u32;
/// Leave Speculative Store Bypass mitigation off (Linux 4.17).
pub const FLAG_SPEC_ALLOW: u32 = libc::SECCOMP_FILTER_FLAG_SPEC_ALLOW as u32;
/// Return a user-notification listener fd (Linux 5.0).
pub const FLAG_NEW_LISTENER: u32 = libc::SECCOMP_FILTER_FLAG_NEW_LISTENER as u32;
/// With `TSYNC` and `NEW_LISTENER`: fail with `ESRCH` instead of a thread id (Linux 5.7).
pub const FLAG_TSYNC_ESRCH: u32 = libc::SECCOMP_FILTER_FLAG_TSYNC_ESRCH as u32;
/// Wait killably for the supervisor's answer to a notification (Linux 5.19).
pub const FLAG_WAIT_KILLABLE_RECV: u32 = libc::SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV as u32;

/// Size of one `struct sock_filter` instruction (`u16 code; u8 jt; u8 jf; u32 k`).
pub const INSN_LEN: usize = 8;
/// `BPF_MAXINSNS`: the kernel refuses longer programs.
pub const MAX_INSNS: usize = 4096;

/// Install the BPF program `prog` (native-endian `struct sock_filter` array) on the
/// calling thread with `seccomp(SECCOMP_SET_MODE_FILTER, flags, &sock_fprog)`.
///
/// The caller must have set `no_new_privs` or hold `CAP_SYS_ADMIN`. Returns the
/// listener fd when `flags` contains [`FLAG_NEW_LISTENER`]. A program whose length is
/// not a whole number of instructions, empty, or longer than [`MAX_INSNS`] is refused
/// with `EINVAL` before the call.
pub fn set_mode_filter(prog: &[u8], flags: u32) -> Result<Option<OwnedFd>, Errno> {
    if prog.is_empty() || !prog.len().is_multiple_of(INSN_LEN) || prog.len() / INSN_LEN > MAX_INSNS
    {
        return Err(Errno::EINVAL);
    }
    // Copied into a properly aligned array: `prog` is a byte slice with no alignment.
    let mut insns: Vec<libc::sock_filter> = prog
        .chunks_exact(INSN_LEN)
        .map(|b| libc::sock_filter {
            code: u16::from_ne_bytes([b[0], b[1]]),
            jt: b[2],
            jf: b[3],
            k: u32::from_ne_bytes([b[4], b[5], b[6], b[7]]),
        })
        .collect();
    let fprog = libc::sock_fprog {
        // At most MAX_INSNS (checked above), so it fits in the u16.
        len: insns.len() as libc::c_ushort,
        filter: insns.as_mut_ptr(),
    };
    // SAFETY: `fprog` points at `insns`, a live, initialised array of exactly `len`
    // sock_filter structs that outlives the call; the kernel only reads it (it copies
    // the program in). The third argument is the address of `fprog`, valid for the call.
    // No memory of ours is written by this syscall.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_seccomp,
            libc::SECCOMP_SET_MODE_FILTER as libc::c_ulong,
            flags as libc::c_ulong,
            &fprog as *const libc::sock_fprog,
        )
    };
    let ret = Errno::result(ret)?;
    if flags & FLAG_NEW_LISTENER == 0 {
        return Ok(None);
    }
    // SAFETY: with SECCOMP_FILTER_FLAG_NEW_LISTENER a successful call returns a new
    // file descriptor that nothing else in this process owns yet; we take ownership.
    Ok(Some(unsafe { OwnedFd::from_raw_fd(ret as RawFd) }))
}

/// One system call a filter handed to its supervisor (`SCMP_ACT_NOTIFY`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Notification {
    /// The notification's cookie, to answer it with [`notif_respond`].
    pub id: u64,
    /// The calling thread, in the supervisor's PID namespace.
    pub pid: u32,
    /// The system call number.
    pub nr: i32,
    /// Its arguments.
    pub args: [u64; 6],
}

/// `ioctl(SECCOMP_IOCTL_NOTIF_RECV)`: wait for the next notification on a listener.
pub fn notif_recv<F: std::os::fd::AsFd>(listener: F) -> Result<Notification, Errno> {
    use std::os::fd::AsRawFd;
    // SAFETY: seccomp_notif is plain old data; all zeroes is a valid value (and the
    // kernel requires the buffer zeroed).
    let mut n: libc::seccomp_notif = unsafe { std::mem::zeroed() };
    // SAFETY: the request's size matches `n`, a live struct the kernel fills in
    // during the call; the descriptor is borrowed for the call.
    let ret = unsafe {
        libc::ioctl(
            listener.as_fd().as_raw_fd(),
            libc::SECCOMP_IOCTL_NOTIF_RECV as _,
            &mut n as *mut libc::seccomp_notif,
        )
    };
    Errno::result(ret)?;
    Ok(Notification {
        id: n.id,
        pid: n.pid,
        nr: n.data.nr,
        args: n.data.args,
    })
}

/// `ioctl(SECCOMP_IOCTL_NOTIF_SEND)`: answer notification `id`; the system call
/// returns `val`, or fails with `errno` when it is non-zero.
pub fn notif_respond<F: std::os::fd::AsFd>(
    listener: F,
    id: u64,
    val: i64,
    errno: i32,
) -> Result<(), Errno> {
    use std::os::fd::AsRawFd;
    let resp = libc::seccomp_notif_resp {
        id,
        val,
        error: if errno == 0 { 0 } else { -errno },
        flags: 0,
    };
    // SAFETY: the request's size matches `resp`, a live, initialised struct the
    // kernel only reads during the call; the descriptor is borrowed for the call.
    let ret = unsafe {
        libc::ioctl(
            listener.as_fd().as_raw_fd(),
            libc::SECCOMP_IOCTL_NOTIF_SEND as _,
            &resp as *const libc::seccomp_notif_resp,
        )
    };
    Errno::result(ret).map(drop)
}
