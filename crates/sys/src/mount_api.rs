//! The new mount API on descriptors (Linux 5.2+, `mount_setattr` 5.12+):
//! `open_tree(2)` to clone a mount into a detached one, `mount_setattr(2)` on it
//! (read-only, or idmapped with a user namespace), `move_mount(2)` to attach it, and
//! `execveat(2)` to run a program from such a descriptor.
//!
//! A detached mount is invisible in every mount table and goes away with its last
//! reference; nothing is left behind when the process that made it exits.

use std::ffi::CString;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::path::Path;

use nix::errno::Errno;

/// `OPEN_TREE_CLONE`: a detached copy of the mount (a bind mount not yet attached).
const OPEN_TREE_CLONE: libc::c_uint = 1;
/// `MOVE_MOUNT_F_EMPTY_PATH`: the source is the descriptor itself.
const MOVE_MOUNT_F_EMPTY_PATH: libc::c_uint = 0x0000_0004;
/// `MOVE_MOUNT_T_EMPTY_PATH`: the target is the descriptor itself.
const MOVE_MOUNT_T_EMPTY_PATH: libc::c_uint = 0x0000_0040;
/// `MOUNT_ATTR_IDMAP`: map the ids of the mount through `userns_fd`.
pub const MOUNT_ATTR_IDMAP: u64 = 0x0010_0000;

fn c_path(path: &Path) -> Result<CString, Errno> {
    CString::new(path.as_os_str().as_encoded_bytes()).map_err(|_| Errno::EINVAL)
}

/// `open_tree(AT_FDCWD, path, OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC [| AT_RECURSIVE])`:
/// a detached bind mount of `path` (a directory or a file), with its submounts
/// when `recursive`.
pub fn open_tree_clone(path: &Path, recursive: bool) -> Result<OwnedFd, Errno> {
    let cpath = c_path(path)?;
    let mut flags = OPEN_TREE_CLONE | libc::O_CLOEXEC as libc::c_uint;
    if recursive {
        flags |= libc::AT_RECURSIVE as libc::c_uint;
    }
    // SAFETY: the path is a NUL-terminated string the kernel only reads during the
    // call; on success it returns a new descriptor that nothing else owns.
    let ret = unsafe { libc::syscall(libc::SYS_open_tree, libc::AT_FDCWD, cpath.as_ptr(), flags) };
    let fd = Errno::result(ret)?;
    // SAFETY: `fd` was just returned by the kernel and is owned by no one else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as libc::c_int) })
}

#[repr(C)]
struct MountAttr {
    attr_set: u64,
    attr_clr: u64,
    propagation: u64,
    userns_fd: u64,
}

/// `mount_setattr(2)`: `dirfd` and `path` name the mount as in openat.
fn mount_setattr(
    dirfd: libc::c_int,
    path: &std::ffi::CStr,
    flags: libc::c_uint,
    attr: &MountAttr,
) -> Result<(), Errno> {
    // SAFETY: the path is a NUL-terminated string and `attr` a live, initialised
    // struct whose size is passed; the kernel only reads both during the call. A
    // descriptor in `dirfd` is borrowed by the caller for the call.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            dirfd,
            path.as_ptr(),
            flags,
            attr as *const MountAttr,
            std::mem::size_of::<MountAttr>(),
        )
    };
    Errno::result(ret).map(drop)
}

/// `mount_setattr(2)` with `AT_RECURSIVE` on the mount at `path`: set the `set`
/// attributes and clear the `clear` ones on the whole subtree (the `r*` mount options).
pub fn mount_setattr_recursive(path: &Path, set: u64, clear: u64) -> Result<(), Errno> {
    let attr = MountAttr {
        attr_set: set,
        attr_clr: clear,
        propagation: 0,
        userns_fd: 0,
    };
    let flags = libc::AT_RECURSIVE as libc::c_uint;
    mount_setattr(libc::AT_FDCWD, &c_path(path)?, flags, &attr)
}

/// `mount_setattr(2)` on the mount `mnt` refers to (`AT_EMPTY_PATH`): set and clear
/// `MOUNT_ATTR_*` bits, on its submounts too when `recursive`. With `userns`,
/// `MOUNT_ATTR_IDMAP` is set and the mount's ids are mapped through that user
/// namespace (the mount must be detached and not yet idmapped).
pub fn set_mount_attr(
    mnt: BorrowedFd<'_>,
    set: u64,
    clear: u64,
    userns: Option<BorrowedFd<'_>>,
    recursive: bool,
) -> Result<(), Errno> {
    let attr = MountAttr {
        attr_set: set
            | if userns.is_some() {
                MOUNT_ATTR_IDMAP
            } else {
                0
            },
        attr_clr: clear,
        propagation: 0,
        userns_fd: userns.map_or(0, |fd| fd.as_raw_fd() as u64),
    };
    let mut flags = libc::AT_EMPTY_PATH as libc::c_uint;
    if recursive {
        flags |= libc::AT_RECURSIVE as libc::c_uint;
    }
    mount_setattr(mnt.as_raw_fd(), c"", flags, &attr)
}

/// `move_mount(2)` of the detached mount `mnt` onto the directory or file that
/// `target` refers to (both by descriptor: `MOVE_MOUNT_F_EMPTY_PATH |
/// MOVE_MOUNT_T_EMPTY_PATH`).
pub fn move_mount_onto(mnt: BorrowedFd<'_>, target: BorrowedFd<'_>) -> Result<(), Errno> {
    // SAFETY: both paths are the empty C string (the descriptors themselves), which
    // the kernel only reads during the call; the descriptors are borrowed for it.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_move_mount,
            mnt.as_raw_fd(),
            c"".as_ptr(),
            target.as_raw_fd(),
            c"".as_ptr(),
            MOVE_MOUNT_F_EMPTY_PATH | MOVE_MOUNT_T_EMPTY_PATH,
        )
    };
    Errno::result(ret).map(drop)
}

/// `fsopen(2)`: a filesystem context for `fstype` (close-on-exec), to be configured
/// with [`fsconfig_string`] and made with [`fsconfig_create`] and [`fsmount`].
pub fn fsopen(fstype: &str) -> Result<OwnedFd, Errno> {
    let name = CString::new(fstype).map_err(|_| Errno::EINVAL)?;
    const FSOPEN_CLOEXEC: libc::c_uint = 1;
    // SAFETY: the name is a NUL-terminated string the kernel only reads during the
    // call; on success the returned descriptor is new and owned by no one else.
    let ret = unsafe { libc::syscall(libc::SYS_fsopen, name.as_ptr(), FSOPEN_CLOEXEC) };
    let fd = Errno::result(ret)?;
    // SAFETY: `fd` was just returned by the kernel and is owned by no one else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as libc::c_int) })
}

/// `fsconfig(fd, FSCONFIG_SET_STRING, key, value, 0)`: one mount option.
pub fn fsconfig_string(fs: BorrowedFd<'_>, key: &str, value: &str) -> Result<(), Errno> {
    const FSCONFIG_SET_STRING: libc::c_uint = 1;
    let k = CString::new(key).map_err(|_| Errno::EINVAL)?;
    let v = CString::new(value).map_err(|_| Errno::EINVAL)?;
    // SAFETY: key and value are NUL-terminated strings the kernel only reads during
    // the call; the descriptor is borrowed for the call.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_fsconfig,
            fs.as_raw_fd(),
            FSCONFIG_SET_STRING,
            k.as_ptr(),
            v.as_ptr(),
            0,
        )
    };
    Errno::result(ret).map(drop)
}

/// `fsconfig(fd, FSCONFIG_CMD_CREATE, NULL, NULL, 0)`: make the superblock.
pub fn fsconfig_create(fs: BorrowedFd<'_>) -> Result<(), Errno> {
    const FSCONFIG_CMD_CREATE: libc::c_uint = 6;
    // SAFETY: no pointers are passed (NULL key and value, as the command requires);
    // the descriptor is borrowed for the call.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_fsconfig,
            fs.as_raw_fd(),
            FSCONFIG_CMD_CREATE,
            std::ptr::null::<libc::c_char>(),
            std::ptr::null::<libc::c_void>(),
            0,
        )
    };
    Errno::result(ret).map(drop)
}

/// `fsmount(fd, FSMOUNT_CLOEXEC, attrs)`: a detached mount of the created
/// filesystem, with `MOUNT_ATTR_*` bits.
pub fn fsmount(fs: BorrowedFd<'_>, attrs: u64) -> Result<OwnedFd, Errno> {
    const FSMOUNT_CLOEXEC: libc::c_uint = 1;
    // SAFETY: only integers are passed; the descriptor is borrowed for the call; on
    // success the returned descriptor is new and owned by no one else.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_fsmount,
            fs.as_raw_fd(),
            FSMOUNT_CLOEXEC,
            attrs as libc::c_uint,
        )
    };
    let fd = Errno::result(ret)?;
    // SAFETY: `fd` was just returned by the kernel and is owned by no one else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as libc::c_int) })
}

/// `move_mount(2)` of the detached mount `mnt` onto the path `target`.
pub fn move_mount_to(mnt: BorrowedFd<'_>, target: &Path) -> Result<(), Errno> {
    let to = c_path(target)?;
    // SAFETY: both paths are NUL-terminated strings the kernel only reads during the
    // call; the descriptor is borrowed for the call.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_move_mount,
            mnt.as_raw_fd(),
            c"".as_ptr(),
            libc::AT_FDCWD,
            to.as_ptr(),
            MOVE_MOUNT_F_EMPTY_PATH,
        )
    };
    Errno::result(ret).map(drop)
}

/// `execveat(fd, "", argv, envp, AT_EMPTY_PATH)`: replace this process with the
/// program `fd` refers to. Returns only on failure.
pub fn execveat_fd(fd: BorrowedFd<'_>, argv: &[CString], envp: &[CString]) -> Errno {
    let mut args: Vec<*mut libc::c_char> = argv.iter().map(|a| a.as_ptr().cast_mut()).collect();
    args.push(std::ptr::null_mut());
    let mut env: Vec<*mut libc::c_char> = envp.iter().map(|e| e.as_ptr().cast_mut()).collect();
    env.push(std::ptr::null_mut());
    // SAFETY: `args` and `env` are NULL-terminated arrays of pointers to
    // NUL-terminated strings, all kept alive by `argv`/`envp` for the call (the
    // kernel only reads them; the `*mut` is libc's signature); the path is the
    // empty C string. On success the call does not return.
    unsafe {
        libc::execveat(
            fd.as_raw_fd(),
            c"".as_ptr(),
            args.as_ptr(),
            env.as_ptr(),
            libc::AT_EMPTY_PATH,
        )
    };
    Errno::last()
}
