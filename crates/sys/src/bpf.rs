//! `bpf(2)` for cgroup v2 device programs (`BPF_PROG_TYPE_CGROUP_DEVICE`): load one,
//! attach it to a cgroup directory, list and detach the programs attached there.
//!
//! Only the commands and attribute fields that device filtering needs are here. Each
//! attribute struct is the prefix of the kernel's `union bpf_attr` member for its
//! command (`include/uapi/linux/bpf.h`), with every padding byte spelled out as a field
//! so that all bytes handed to the kernel are initialised. The kernel accepts a prefix:
//! it zero-fills the fields past `size` (see `bpf_check_uarg_tail_zero`).

use std::ffi::CStr;
use std::fmt;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd, RawFd};

use nix::errno::Errno;

// Commands (`enum bpf_cmd`).
const BPF_PROG_LOAD: libc::c_int = 5;
const BPF_PROG_ATTACH: libc::c_int = 8;
const BPF_PROG_DETACH: libc::c_int = 9;
const BPF_PROG_GET_FD_BY_ID: libc::c_int = 13;
const BPF_OBJ_GET_INFO_BY_FD: libc::c_int = 15;
const BPF_PROG_QUERY: libc::c_int = 16;

/// `BPF_PROG_TYPE_CGROUP_DEVICE` (`enum bpf_prog_type`).
const BPF_PROG_TYPE_CGROUP_DEVICE: u32 = 15;
/// `BPF_CGROUP_DEVICE` (`enum bpf_attach_type`).
const BPF_CGROUP_DEVICE: u32 = 6;
/// Several programs may be attached to one cgroup; all of them must allow an access.
const BPF_F_ALLOW_MULTI: u32 = 1 << 1;
/// `BPF_OBJ_NAME_LEN`: a program name is at most 15 bytes and a NUL.
const BPF_OBJ_NAME_LEN: usize = 16;

/// The verifier log starts this large, and grows (on `ENOSPC`) up to the maximum that
/// kernels before 5.2 accept (`UINT_MAX >> 8`).
const LOG_SIZE_FIRST: usize = 64 << 10;
const LOG_SIZE_MAX: usize = 16 << 20;

/// The `BPF_PROG_LOAD` member of `union bpf_attr`, up to `expected_attach_type`.
#[repr(C)]
#[derive(Default)]
struct ProgLoadAttr {
    prog_type: u32,
    insn_cnt: u32,
    insns: u64,
    license: u64,
    log_level: u32,
    log_size: u32,
    log_buf: u64,
    kern_version: u32,
    prog_flags: u32,
    prog_name: [u8; BPF_OBJ_NAME_LEN],
    prog_ifindex: u32,
    expected_attach_type: u32,
}

/// The `BPF_PROG_ATTACH` / `BPF_PROG_DETACH` member.
#[repr(C)]
#[derive(Default)]
struct AttachAttr {
    target_fd: u32,
    attach_bpf_fd: u32,
    attach_type: u32,
    attach_flags: u32,
    replace_bpf_fd: u32,
}

/// The `BPF_PROG_QUERY` member, up to `prog_cnt` (and the padding after it).
#[repr(C)]
#[derive(Default)]
struct QueryAttr {
    target_fd: u32,
    attach_type: u32,
    query_flags: u32,
    attach_flags: u32,
    prog_ids: u64,
    prog_cnt: u32,
    _pad: u32,
}

/// The `BPF_*_GET_FD_BY_ID` member.
#[repr(C)]
#[derive(Default)]
struct GetIdAttr {
    prog_id: u32,
    next_id: u32,
    open_flags: u32,
}

/// The `BPF_OBJ_GET_INFO_BY_FD` member.
#[repr(C)]
#[derive(Default)]
struct InfoAttr {
    bpf_fd: u32,
    info_len: u32,
    info: u64,
}

/// `struct bpf_prog_info` up to `name`. The array fields are left at zero length, so
/// the kernel writes nothing through their (null) pointers.
#[repr(C)]
#[derive(Default)]
struct ProgInfo {
    typ: u32,
    id: u32,
    tag: [u8; 8],
    jited_prog_len: u32,
    xlated_prog_len: u32,
    jited_prog_insns: u64,
    xlated_prog_insns: u64,
    load_time: u64,
    created_by_uid: u32,
    nr_map_ids: u32,
    map_ids: u64,
    name: [u8; BPF_OBJ_NAME_LEN],
}

/// `bpf(cmd, attr, sizeof(*attr))`.
///
/// # Safety
///
/// `A` must be the attribute struct of `cmd` (a prefix of its `union bpf_attr` member,
/// no uninitialised bytes), and every pointer stored in `attr` must be valid for the
/// reads and writes the kernel makes through it for that command during the call.
unsafe fn bpf<A>(cmd: libc::c_int, attr: &mut A) -> Result<libc::c_long, Errno> {
    // SAFETY: `attr` is a live, exclusive reference, so the kernel may read and write
    // `size_of::<A>()` bytes there; the pointers inside are valid by this function's
    // contract.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd,
            attr as *mut A,
            std::mem::size_of::<A>() as libc::c_uint,
        )
    };
    Errno::result(ret)
}

/// A descriptor the kernel just returned from `bpf(2)`.
fn owned(ret: libc::c_long) -> OwnedFd {
    // SAFETY: the commands that return a descriptor install a fresh one in this
    // process's table for this call alone; nothing else owns it.
    unsafe { OwnedFd::from_raw_fd(ret as RawFd) }
}

fn raw(fd: impl AsFd) -> u32 {
    fd.as_fd().as_raw_fd() as u32
}

/// `BPF_PROG_LOAD` failed: the errno, and what the verifier said (empty when the
/// failure came before verification, e.g. `EPERM` without `CAP_SYS_ADMIN`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadError {
    /// The error of the last attempt.
    pub errno: Errno,
    /// The verifier log of that attempt, trimmed.
    pub log: String,
}

impl fmt::Display for LoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.log.is_empty() {
            write!(f, "{}", self.errno)
        } else {
            write!(f, "{}; verifier log:\n{}", self.errno, self.log)
        }
    }
}

impl std::error::Error for LoadError {}

/// Load a `BPF_PROG_TYPE_CGROUP_DEVICE` program (`bpf(BPF_PROG_LOAD)`).
///
/// `insns` are encoded `struct bpf_insn`s (8 bytes each, in memory order), `license`
/// the program's license (`"Apache"`, `"GPL"`: only GPL-compatible programs may call
/// GPL-only helpers, which a device filter does not), and `name` at most 15 of
/// `[A-Za-z0-9_.]`, shown by `bpftool prog` and readable back with [`prog_name`].
///
/// The first attempt runs without a verifier log; when it fails, the load is repeated
/// with one, so that the error says why the program was refused.
pub fn prog_load_cgroup_device(
    insns: &[u64],
    license: &CStr,
    name: &str,
) -> Result<OwnedFd, LoadError> {
    let fail = |errno| LoadError {
        errno,
        log: String::new(),
    };
    let mut prog_name = [0u8; BPF_OBJ_NAME_LEN];
    if name.len() >= BPF_OBJ_NAME_LEN {
        return Err(fail(Errno::EINVAL));
    }
    prog_name[..name.len()].copy_from_slice(name.as_bytes());
    let mut attr = ProgLoadAttr {
        prog_type: BPF_PROG_TYPE_CGROUP_DEVICE,
        insn_cnt: u32::try_from(insns.len()).map_err(|_| fail(Errno::E2BIG))?,
        insns: insns.as_ptr() as u64,
        license: license.as_ptr() as u64,
        prog_name,
        ..ProgLoadAttr::default()
    };
    // SAFETY: `insns` points to `insn_cnt` live u64s (8 bytes each, the size of a
    // `struct bpf_insn`) and `license` to a NUL-terminated string, both borrowed for
    // the call; the kernel only reads them (a malformed program is refused by the
    // verifier, it cannot touch this process's memory). No log buffer is given.
    if let Ok(fd) = unsafe { bpf(BPF_PROG_LOAD, &mut attr) } {
        return Ok(owned(fd));
    }
    let mut size = LOG_SIZE_FIRST;
    loop {
        let mut log = vec![0u8; size];
        attr.log_level = 1;
        attr.log_size = size as u32;
        attr.log_buf = log.as_mut_ptr() as u64;
        // SAFETY: as above; in addition `log_buf` points to `log_size` writable bytes
        // of `log`, which lives until after the call, and the kernel writes at most
        // `log_size` bytes there.
        match unsafe { bpf(BPF_PROG_LOAD, &mut attr) } {
            Ok(fd) => return Ok(owned(fd)),
            Err(Errno::ENOSPC) if size < LOG_SIZE_MAX => size *= 4,
            Err(errno) => {
                let end = log.iter().position(|&b| b == 0).unwrap_or(log.len());
                let log = String::from_utf8_lossy(&log[..end]).trim_end().to_owned();
                return Err(LoadError { errno, log });
            }
        }
    }
}

/// Attach a device program to a cgroup v2 directory (`bpf(BPF_PROG_ATTACH)`, attach
/// type `BPF_CGROUP_DEVICE`) with `BPF_F_ALLOW_MULTI`: the programs already attached
/// there stay, and an access is allowed only when every one of them allows it.
pub fn attach_cgroup_device(cgroup: impl AsFd, prog: impl AsFd) -> Result<(), Errno> {
    let mut attr = AttachAttr {
        target_fd: raw(cgroup),
        attach_bpf_fd: raw(prog),
        attach_type: BPF_CGROUP_DEVICE,
        attach_flags: BPF_F_ALLOW_MULTI,
        ..AttachAttr::default()
    };
    // SAFETY: the attribute holds no pointers; both descriptors are borrowed for the
    // call, so they are open. The cgroup takes its own reference to the program.
    unsafe { bpf(BPF_PROG_ATTACH, &mut attr) }.map(drop)
}

/// Detach one device program from a cgroup v2 directory (`bpf(BPF_PROG_DETACH)`);
/// `ENOENT` when it is not attached there.
pub fn detach_cgroup_device(cgroup: impl AsFd, prog: impl AsFd) -> Result<(), Errno> {
    let mut attr = AttachAttr {
        target_fd: raw(cgroup),
        attach_bpf_fd: raw(prog),
        attach_type: BPF_CGROUP_DEVICE,
        ..AttachAttr::default()
    };
    // SAFETY: the attribute holds no pointers; both descriptors are borrowed for the
    // call, so they are open.
    unsafe { bpf(BPF_PROG_DETACH, &mut attr) }.map(drop)
}

/// The ids of the device programs attached directly to a cgroup v2 directory
/// (`bpf(BPF_PROG_QUERY)`, not the ones inherited from its ancestors), in run order.
pub fn query_cgroup_device(cgroup: impl AsFd) -> Result<Vec<u32>, Errno> {
    let target_fd = raw(cgroup);
    // A cgroup holds at most 64 programs per attach type (BPF_CGROUP_MAX_PROGS) today;
    // on ENOSPC the kernel reports the real count, so a second round suffices unless
    // programs are being attached concurrently.
    let mut ids = vec![0u32; 64];
    for _ in 0..8 {
        let mut attr = QueryAttr {
            target_fd,
            attach_type: BPF_CGROUP_DEVICE,
            prog_ids: ids.as_mut_ptr() as u64,
            prog_cnt: ids.len() as u32,
            ..QueryAttr::default()
        };
        // SAFETY: `prog_ids` points to `prog_cnt` writable u32s of `ids`, which lives
        // until after the call; the kernel writes at most `prog_cnt` ids there. The
        // cgroup descriptor is borrowed for the call, so it is open.
        match unsafe { bpf(BPF_PROG_QUERY, &mut attr) } {
            Ok(_) => {
                ids.truncate(attr.prog_cnt as usize);
                return Ok(ids);
            }
            Err(Errno::ENOSPC) => ids.resize((attr.prog_cnt as usize).max(ids.len() * 2), 0),
            Err(e) => return Err(e),
        }
    }
    Err(Errno::ENOSPC)
}

/// A descriptor for the loaded program with this id (`bpf(BPF_PROG_GET_FD_BY_ID)`);
/// `ENOENT` when it no longer exists.
pub fn prog_fd_by_id(id: u32) -> Result<OwnedFd, Errno> {
    let mut attr = GetIdAttr {
        prog_id: id,
        ..GetIdAttr::default()
    };
    // SAFETY: the attribute holds no pointers.
    unsafe { bpf(BPF_PROG_GET_FD_BY_ID, &mut attr) }.map(owned)
}

/// The name a program was loaded with (`bpf(BPF_OBJ_GET_INFO_BY_FD)`); empty when it
/// was loaded without one.
pub fn prog_name(prog: impl AsFd) -> Result<String, Errno> {
    let mut info = ProgInfo::default();
    let mut attr = InfoAttr {
        bpf_fd: raw(prog),
        info_len: std::mem::size_of::<ProgInfo>() as u32,
        info: &mut info as *mut ProgInfo as u64,
    };
    // SAFETY: `info` points to `info_len` writable bytes of a live, initialised
    // `ProgInfo` (a prefix of `struct bpf_prog_info`); its array lengths are zero, so
    // the kernel follows none of its pointer fields. The descriptor is borrowed.
    unsafe { bpf(BPF_OBJ_GET_INFO_BY_FD, &mut attr) }?;
    let end = info
        .name
        .iter()
        .position(|&b| b == 0)
        .unwrap_or(BPF_OBJ_NAME_LEN);
    Ok(String::from_utf8_lossy(&info.name[..end]).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The attribute structs match the offsets of `union bpf_attr` and
    /// `struct bpf_prog_info` in `linux/bpf.h`.
    #[test]
    fn layouts_match_the_uapi_header() {
        use std::mem::{offset_of, size_of};
        assert_eq!(offset_of!(ProgLoadAttr, log_buf), 32);
        assert_eq!(offset_of!(ProgLoadAttr, prog_name), 48);
        assert_eq!(size_of::<ProgLoadAttr>(), 72);
        assert_eq!(size_of::<AttachAttr>(), 20);
        assert_eq!(offset_of!(QueryAttr, prog_ids), 16);
        assert_eq!(offset_of!(QueryAttr, prog_cnt), 24);
        assert_eq!(size_of::<QueryAttr>(), 32);
        assert_eq!(size_of::<InfoAttr>(), 16);
        assert_eq!(offset_of!(ProgInfo, name), 64);
    }

    #[test]
    fn load_refuses_a_long_name_before_the_syscall() {
        let e = prog_load_cgroup_device(&[], c"Apache", "onggi_0123456789").unwrap_err();
        assert_eq!(e.errno, Errno::EINVAL);
    }
}
