//! The container's root filesystem: mounts, /dev, pivot_root, read-only and masked
//! paths. Runs in the container's init, inside its new mount namespace.
//!
//! Every destination is resolved by [`resolve`], component by component from an
//! `O_PATH` descriptor of the root, so a symlink in the image can never make the
//! runtime mount, create or write anything outside the root filesystem. Mounts then
//! target `/proc/self/fd/N` of the resolved descriptor, as runc does.

use std::ffi::OsString;
use std::fs;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::{Component, Path, PathBuf};

use crate::explain::mount;
use nix::errno::Errno;
use nix::fcntl::{open, openat, readlinkat, OFlag};
use nix::mount::{umount2, MntFlags, MsFlags};
use nix::sched::CloneFlags;
use nix::sys::stat::{fstat, makedev, mkdirat, mknodat, Mode, SFlag};
use nix::unistd::{chdir, chroot, fchownat, pivot_root, symlinkat, Gid, Uid};

use crate::error::{Context, Error, Result};
use crate::plan::{DeviceNode, MountKind, MountStep, Plan};

/// What to create when a path component is missing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Create {
    /// Nothing: a missing component is ENOENT.
    Nothing,
    /// Directories all the way.
    Dir,
    /// Directories, and an empty regular file as the last component.
    File,
}

/// How the container's cgroup looks from the host, for `type: cgroup` mounts.
#[derive(Debug, Clone, Default)]
pub struct CgroupMounts {
    /// Pure cgroup v2 (else v1 or hybrid).
    pub v2: bool,
    /// v2: the container's cgroup directory on the host.
    pub v2_dir: Option<PathBuf>,
    /// v1: (hierarchy directory name such as `cpu,cpuacct`, the container's cgroup
    /// directory in it, the controllers' option string for a cgroup-namespace mount).
    pub v1: Vec<(String, PathBuf, String)>,
}

const SYMLINK_LIMIT: u32 = 40;

fn o_path() -> OFlag {
    OFlag::O_PATH | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC
}

/// The magic-link path of a descriptor, usable as a mount source or target.
pub fn fd_path(fd: &impl AsRawFd) -> String {
    format!("/proc/self/fd/{}", fd.as_raw_fd())
}

/// Resolve `path` (absolute, as seen inside the container) under `root`, creating
/// missing components as `create` says. Absolute symlinks restart from the root; a
/// `..` (literal or from a symlink) that would climb above the root is an error.
/// Returns an `O_PATH` descriptor of the final component.
pub fn resolve(root: &OwnedFd, path: &Path, create: Create) -> Result<OwnedFd, ResolveError> {
    let mut pending: Vec<OsString> = components(path);
    // The directories walked so far; [0] is the root itself.
    let mut walk: Vec<OwnedFd> = vec![root.try_clone().map_err(|e| ResolveError::Sys(errno(e)))?];
    let mut links = 0;
    while let Some(name) = pending.pop() {
        if name == ".." {
            if walk.len() == 1 {
                return Err(ResolveError::Escapes);
            }
            walk.pop();
            continue;
        }
        let last = pending.is_empty();
        let dir = walk.last().expect("walk always holds the root");
        let fd = match openat(dir, name.as_os_str(), o_path(), Mode::empty()) {
            Ok(fd) => fd,
            Err(Errno::ENOENT) if create != Create::Nothing => {
                if last && create == Create::File {
                    let f = openat(
                        dir,
                        name.as_os_str(),
                        OFlag::O_CREAT
                            | OFlag::O_EXCL
                            | OFlag::O_WRONLY
                            | OFlag::O_NOFOLLOW
                            | OFlag::O_CLOEXEC,
                        Mode::from_bits_truncate(0o644),
                    );
                    match f {
                        Ok(_) | Err(Errno::EEXIST) => {}
                        Err(e) => return Err(ResolveError::Sys(e)),
                    }
                } else {
                    match mkdirat(dir, name.as_os_str(), Mode::from_bits_truncate(0o755)) {
                        Ok(()) | Err(Errno::EEXIST) => {}
                        Err(e) => return Err(ResolveError::Sys(e)),
                    }
                }
                openat(dir, name.as_os_str(), o_path(), Mode::empty()).map_err(ResolveError::Sys)?
            }
            Err(e) => return Err(ResolveError::Sys(e)),
        };
        let st = fstat(&fd).map_err(ResolveError::Sys)?;
        let kind = SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT;
        if kind == SFlag::S_IFLNK {
            links += 1;
            if links > SYMLINK_LIMIT {
                return Err(ResolveError::Sys(Errno::ELOOP));
            }
            let target = readlinkat(dir, name.as_os_str()).map_err(ResolveError::Sys)?;
            let target = PathBuf::from(target);
            if target.is_absolute() {
                walk.truncate(1);
            }
            pending.extend(components(&target));
            continue;
        }
        if !last && kind != SFlag::S_IFDIR {
            return Err(ResolveError::Sys(Errno::ENOTDIR));
        }
        walk.push(fd);
    }
    Ok(walk.pop().expect("walk always holds the root"))
}

/// Why [`resolve`] failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ResolveError {
    /// A `..` would leave the root filesystem.
    #[error("the path escapes the root filesystem through '..' or a symlink")]
    Escapes,
    /// A system call failed.
    #[error("{0}")]
    Sys(Errno),
}

fn errno(e: std::io::Error) -> Errno {
    Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO))
}

/// The components of `path` in reverse order (a stack), `.` dropped, `..` kept.
fn components(path: &Path) -> Vec<OsString> {
    let mut v: Vec<OsString> = path
        .components()
        .filter_map(|c| match c {
            Component::Normal(n) => Some(n.to_os_string()),
            Component::ParentDir => Some(OsString::from("..")),
            _ => None,
        })
        .collect();
    v.reverse();
    v
}

/// Context for setting up one container's root filesystem.
pub struct Rootfs<'a> {
    /// The plan.
    pub plan: &'a Plan,
    /// `O_PATH` descriptor of the root, opened after the rootfs bind mount.
    pub root: OwnedFd,
    /// The container's cgroup, for cgroup mounts.
    pub cgroup: &'a CgroupMounts,
}

/// What the mounts need from the runtime's side of the bootstrap.
pub trait Parent {
    /// Wait for the parent's `Go`: the init is in its cgroup, and every idmapped
    /// mount has been sent.
    fn wait(&self) -> Result<()>;
    /// The detached idmapped mount the parent made for `mounts[index]`.
    fn idmapped_mount(&self, index: usize) -> Result<OwnedFd>;
}

/// Step 1: make the mount tree private to the container (rootfsPropagation, default
/// rslave) and bind the rootfs onto itself so it is a mount point for pivot_root.
/// Returns the setup context with a descriptor of the root.
pub fn prepare<'a>(plan: &'a Plan, cgroup: &'a CgroupMounts) -> Result<Rootfs<'a>> {
    // Shared propagation would make pivot_root fail and leak our mounts to the host;
    // start slave and apply a shared propagation to the new root after the pivot.
    let initial = if plan.rootfs_propagation.contains(MsFlags::MS_SHARED) {
        MsFlags::MS_SLAVE | MsFlags::MS_REC
    } else {
        plan.rootfs_propagation
    };
    mount(None::<&str>, "/", None::<&str>, initial, None::<&str>)
        .step(|| "make / rslave in the container's mount namespace")?;
    let rootfs = &plan.rootfs;
    mount(
        Some(rootfs),
        rootfs,
        None::<&str>,
        MsFlags::MS_BIND | MsFlags::MS_REC,
        None::<&str>,
    )
    .step(|| format!("bind the root filesystem {} onto itself", rootfs.display()))?;
    let root = open(
        rootfs,
        OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .step(|| format!("open root filesystem {}", rootfs.display()))?;
    Ok(Rootfs { plan, root, cgroup })
}

impl Rootfs<'_> {
    fn resolve(&self, path: &Path, create: Create, what: &str) -> Result<OwnedFd> {
        resolve(&self.root, path, create).map_err(|e| match e {
            ResolveError::Escapes => Error::InvalidConfig {
                field: what.to_string(),
                reason: format!("{}: {e}", path.display()),
            },
            ResolveError::Sys(source) => Error::Sys {
                step: format!(
                    "{what}: resolve {} in {}",
                    path.display(),
                    self.plan.rootfs.display()
                ),
                source,
            },
        })
    }

    /// Step 2: every entry of `mounts`, in order. A cgroup mount waits for the
    /// parent first (the init must be in its cgroup); an idmapped one takes the
    /// detached mount the parent made.
    pub fn mount_all(&self, parent: &dyn Parent) -> Result<()> {
        for m in &self.plan.mounts {
            if m.kind == MountKind::Cgroup {
                parent.wait()?;
            }
            self.mount_one(m, parent)?;
        }
        Ok(())
    }

    fn mount_one(&self, m: &MountStep, parent: &dyn Parent) -> Result<()> {
        let field = format!("mounts[{}].destination", m.index);
        let create = match (&m.kind, &m.source) {
            (MountKind::Bind, Some(src))
                if !fs::metadata(src).map(|md| md.is_dir()).unwrap_or(true) =>
            {
                Create::File
            }
            _ => Create::Dir,
        };
        let target = self.resolve(&m.destination, create, &field)?;
        let tpath = fd_path(&target);
        let shown = || {
            format!(
                "{} on {}{}",
                m.fstype,
                self.plan.rootfs.display(),
                m.destination.display()
            )
        };
        let data = (!m.data.is_empty()).then_some(m.data.as_str());
        match m.kind {
            MountKind::Bind => {
                let src = m.source.as_ref().expect("plan checks bind sources");
                if m.idmap.is_some() {
                    let detached = parent.idmapped_mount(m.index)?;
                    onggi_sys::mount_api::move_mount_onto(detached.as_fd(), target.as_fd())
                        .step(|| format!("attach the idmapped {} ({})", shown(), src.display()))?;
                    crate::explain!("mount idmapped bind {} on {}", src.display(), shown());
                } else {
                    mount(
                        Some(src),
                        tpath.as_str(),
                        None::<&str>,
                        m.flags & (MsFlags::MS_BIND | MsFlags::MS_REC),
                        None::<&str>,
                    )
                    .step(|| format!("mount {} ({})", shown(), src.display()))?;
                }
                if m.needs_bind_remount() {
                    // The old descriptor names the directory under the new mount
                    // (magic links do not cross mounts): resolve again for the top.
                    let top = self.resolve(&m.destination, Create::Nothing, &field)?;
                    remount_bind(&fd_path(&top), m.flags, &shown)?;
                }
            }
            MountKind::Cgroup => self.mount_cgroup(m, &target)?,
            MountKind::Sysfs | MountKind::Mqueue => {
                let r = mount(
                    m.source.as_deref(),
                    tpath.as_str(),
                    Some(m.fstype.as_str()),
                    m.flags,
                    data,
                );
                let (ns, host) = if m.kind == MountKind::Sysfs {
                    (CloneFlags::CLONE_NEWNET, "/sys")
                } else {
                    (CloneFlags::CLONE_NEWIPC, "/dev/mqueue")
                };
                match r {
                    // Without a namespace of its own the kernel refuses a new instance;
                    // fall back to a bind of the host's, as runc does.
                    Err(Errno::EPERM) if !self.plan.new_namespaces.contains(ns) => {
                        mount(
                            Some(host),
                            tpath.as_str(),
                            None::<&str>,
                            MsFlags::MS_BIND | MsFlags::MS_REC,
                            None::<&str>,
                        )
                        .step(|| format!("bind {host} for {}", shown()))?;
                        if !(m.flags - MsFlags::MS_REC).is_empty() {
                            let top = self.resolve(&m.destination, Create::Nothing, &field)?;
                            remount_bind(&fd_path(&top), m.flags | MsFlags::MS_BIND, &shown)?;
                        }
                    }
                    r => r.step(|| format!("mount {}", shown()))?,
                }
            }
            MountKind::Plain => {
                let old = if m.tmpcopyup {
                    Some(
                        open(
                            tpath.as_str(),
                            OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
                            Mode::empty(),
                        )
                        .step(|| format!("open {} for tmpcopyup", shown()))?,
                    )
                } else {
                    None
                };
                mount(
                    m.source.as_deref(),
                    tpath.as_str(),
                    Some(m.fstype.as_str()),
                    m.flags,
                    data,
                )
                .step(|| format!("mount {}", shown()))?;
                if let Some(old) = old {
                    let new = self.resolve(&m.destination, Create::Nothing, &field)?;
                    copy_tree(Path::new(&fd_path(&old)), Path::new(&fd_path(&new)))
                        .step(|| format!("tmpcopyup into {}", shown()))?;
                }
            }
        }
        if !m.propagation.is_empty() || m.rec_set != 0 || m.rec_clear != 0 {
            // Reopen: after the mount the old descriptor points below the new mount.
            let top = self.resolve(&m.destination, Create::Nothing, &field)?;
            let tpath = fd_path(&top);
            for p in &m.propagation {
                mount(None::<&str>, tpath.as_str(), None::<&str>, *p, None::<&str>)
                    .step(|| format!("set propagation of {}", shown()))?;
            }
            if m.rec_set != 0 || m.rec_clear != 0 {
                onggi_sys::mount_setattr_recursive(Path::new(&tpath), m.rec_set, m.rec_clear)
                    .step(|| format!("mount_setattr on {}", shown()))?;
            }
        }
        Ok(())
    }

    fn mount_cgroup(&self, m: &MountStep, target: &OwnedFd) -> Result<()> {
        let tpath = fd_path(target);
        let cg = self.cgroup;
        let own_ns = self
            .plan
            .new_namespaces
            .contains(CloneFlags::CLONE_NEWCGROUP);
        let shown = || {
            format!(
                "cgroup on {}{}",
                self.plan.rootfs.display(),
                m.destination.display()
            )
        };
        if cg.v2 {
            if own_ns {
                return mount(
                    Some("cgroup2"),
                    tpath.as_str(),
                    Some("cgroup2"),
                    m.flags,
                    None::<&str>,
                )
                .step(|| format!("mount {}", shown()));
            }
            let dir = cg.v2_dir.as_ref().ok_or_else(|| {
                Error::Unsupported("cgroup mount: the container has no cgroup".into())
            })?;
            mount(
                Some(dir),
                tpath.as_str(),
                None::<&str>,
                MsFlags::MS_BIND | MsFlags::MS_REC,
                None::<&str>,
            )
            .step(|| format!("bind {} for {}", dir.display(), shown()))?;
            let top = self.resolve(&m.destination, Create::Nothing, "cgroup mount")?;
            return remount_bind(&fd_path(&top), m.flags | MsFlags::MS_BIND, &shown);
        }
        // v1 (and hybrid): a tmpfs holding one directory per hierarchy, as runc does.
        let base = MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
        mount(
            Some("tmpfs"),
            tpath.as_str(),
            Some("tmpfs"),
            base,
            Some("mode=755"),
        )
        .step(|| format!("mount tmpfs for {}", shown()))?;
        let top = self.resolve(&m.destination, Create::Nothing, "cgroup mount")?;
        let top_path = fd_path(&top);
        for (name, dir, opts) in &cg.v1 {
            mkdirat(&top, name.as_str(), Mode::from_bits_truncate(0o755))
                .step(|| format!("mkdir {name} in {}", shown()))?;
            // Our own tmpfs: a path through it cannot be redirected.
            let sub = format!("{top_path}/{name}");
            if own_ns {
                mount(
                    Some("cgroup"),
                    sub.as_str(),
                    Some("cgroup"),
                    base | (m.flags & MsFlags::MS_RDONLY),
                    Some(opts.as_str()),
                )
                .step(|| format!("mount cgroup {name} in {}", shown()))?;
            } else {
                mount(
                    Some(dir),
                    sub.as_str(),
                    None::<&str>,
                    MsFlags::MS_BIND,
                    None::<&str>,
                )
                .step(|| format!("bind {} in {}", dir.display(), shown()))?;
            }
            // cpu,cpuacct → cpu and cpuacct links, as the host has them.
            if name.contains(',') {
                for part in name.split(',') {
                    match symlinkat(name.as_str(), &top, part) {
                        Ok(()) | Err(Errno::EEXIST) => {}
                        Err(e) => return Err(e).step(|| format!("symlink {part} in {}", shown())),
                    }
                }
            }
        }
        // One call for the tmpfs and every bind under it, instead of a remount each.
        use onggi_sys::mount_attr as A;
        let mut attrs = A::NOSUID | A::NODEV | A::NOEXEC;
        if m.flags.contains(MsFlags::MS_RDONLY) {
            attrs |= A::RDONLY;
        }
        match onggi_sys::mount_setattr_recursive(Path::new(&top_path), attrs, 0) {
            Ok(()) => Ok(()),
            // Before Linux 5.12: remount each mount.
            Err(Errno::ENOSYS) => {
                for (name, _, _) in &cg.v1 {
                    remount_bind(
                        &format!("{top_path}/{name}"),
                        base | MsFlags::MS_BIND | (m.flags & MsFlags::MS_RDONLY),
                        &shown,
                    )?;
                }
                remount_bind(&top_path, base | (m.flags & MsFlags::MS_RDONLY), &shown)
            }
            Err(e) => Err(e).step(|| format!("make {} read-only", shown())),
        }
    }

    /// Step 3: device nodes, the /dev symlinks, and /dev/ptmx.
    pub fn setup_dev(&self, in_user_ns: bool) -> Result<()> {
        if !self.plan.setup_dev {
            return Ok(());
        }
        for d in &self.plan.devices {
            self.create_device(d, in_user_ns)?;
        }
        let dev = self.resolve(Path::new("/dev"), Create::Dir, "/dev")?;
        let links: [(&str, &str); 6] = [
            ("/proc/self/fd", "fd"),
            ("/proc/self/fd/0", "stdin"),
            ("/proc/self/fd/1", "stdout"),
            ("/proc/self/fd/2", "stderr"),
            ("pts/ptmx", "ptmx"),
            ("/proc/kcore", "core"),
        ];
        for (target, name) in links {
            if name == "ptmx" {
                // A plain /dev/ptmx would be the host's pty multiplexer.
                let _ = nix::unistd::unlinkat(&dev, name, nix::unistd::UnlinkatFlags::NoRemoveDir);
            }
            match symlinkat(target, &dev, name) {
                Ok(()) | Err(Errno::EEXIST) => {}
                Err(e) => return Err(e).step(|| format!("symlink /dev/{name} -> {target}")),
            }
        }
        Ok(())
    }

    fn create_device(&self, d: &DeviceNode, in_user_ns: bool) -> Result<()> {
        let field = format!("linux.devices {}", d.path.display());
        let parent = d.path.parent().unwrap_or(Path::new("/"));
        let name = d.path.file_name().ok_or_else(|| Error::InvalidConfig {
            field: field.clone(),
            reason: "no file name".into(),
        })?;
        let dir = self.resolve(parent, Create::Dir, &field)?;
        if in_user_ns {
            // mknod is not allowed in a user namespace: bind the host's node instead.
            let f = self.resolve(&d.path, Create::File, &field)?;
            return mount(
                Some(&d.path),
                fd_path(&f).as_str(),
                None::<&str>,
                MsFlags::MS_BIND,
                None::<&str>,
            )
            .step(|| format!("bind device {}", d.path.display()));
        }
        match mknodat(
            &dir,
            name,
            d.kind,
            Mode::from_bits_truncate(d.mode),
            makedev(d.major, d.minor),
        ) {
            Ok(()) => {}
            Err(Errno::EEXIST) => {
                // The image or an earlier mount has one: replace it with ours.
                nix::unistd::unlinkat(&dir, name, nix::unistd::UnlinkatFlags::NoRemoveDir)
                    .step(|| format!("replace device {}", d.path.display()))?;
                mknodat(
                    &dir,
                    name,
                    d.kind,
                    Mode::from_bits_truncate(d.mode),
                    makedev(d.major, d.minor),
                )
                .step(|| format!("mknod {}", d.path.display()))?;
            }
            Err(e) => return Err(e).step(|| format!("mknod {}", d.path.display())),
        }
        crate::explain!(
            "mknod {} {:?} {}:{} mode {:o}",
            d.path.display(),
            d.kind,
            d.major,
            d.minor,
            d.mode
        );
        if d.uid != 0 || d.gid != 0 {
            fchownat(
                &dir,
                name,
                Some(Uid::from_raw(d.uid)),
                Some(Gid::from_raw(d.gid)),
                nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW,
            )
            .step(|| format!("chown device {}", d.path.display()))?;
        }
        Ok(())
    }

    /// Step 4: switch the root: pivot_root, or with `no_pivot` MS_MOVE + chroot.
    pub fn switch_root(self, no_pivot: bool) -> Result<()> {
        let rootfs = &self.plan.rootfs;
        nix::unistd::fchdir(&self.root).step(|| format!("chdir to {}", rootfs.display()))?;
        if no_pivot {
            mount(
                Some(rootfs),
                "/",
                None::<&str>,
                MsFlags::MS_MOVE,
                None::<&str>,
            )
            .step(|| format!("move {} to /", rootfs.display()))?;
            chroot(".").step(|| format!("chroot to {}", rootfs.display()))?;
            crate::explain!("chroot to {} (--no-pivot)", rootfs.display());
        } else {
            // pivot_root(".", "."): the old root ends up stacked on the new one and is
            // detached right away (pivot_root(2), "NOTES"). Make it slave first so the
            // detach cannot propagate to the host.
            pivot_root(".", ".").step(|| format!("pivot_root to {}", rootfs.display()))?;
            crate::explain!("pivot_root to {}: it is / from here on", rootfs.display());
            mount(
                None::<&str>,
                ".",
                None::<&str>,
                MsFlags::MS_SLAVE | MsFlags::MS_REC,
                None::<&str>,
            )
            .step(|| "make the old root rslave")?;
            umount2(".", MntFlags::MNT_DETACH).step(|| "detach the old root")?;
            crate::explain!("umount the old root (detached)");
        }
        chdir("/").step(|| "chdir to the new root")?;
        if self.plan.rootfs_propagation.contains(MsFlags::MS_SHARED) {
            mount(
                None::<&str>,
                "/",
                None::<&str>,
                self.plan.rootfs_propagation,
                None::<&str>,
            )
            .step(|| "make the new root shared (rootfsPropagation)")?;
        }
        Ok(())
    }
}

/// Make `process.cwd` inside the root (after the pivot), resolving it the way mount
/// destinations are: a symlink, even a magic one like `/proc/self/fd/N`, is followed
/// as text from the root, so no directory is ever made outside it (runc's in-root
/// mkdir). Whether the cwd itself leads out is checked after the chdir.
pub fn create_cwd(cwd: &Path) -> Result<()> {
    let root = open("/", o_path() | OFlag::O_DIRECTORY, Mode::empty())
        .step(|| "open the container's root")?;
    resolve(&root, cwd, Create::Dir)
        .map(drop)
        .map_err(|e| Error::InvalidConfig {
            field: "process.cwd".into(),
            reason: format!("create {}: {e}", cwd.display()),
        })
}

/// Remount a bind mount with `flags`, keeping the flags the kernel locks in a user
/// namespace (nosuid, nodev, noexec, atime) from the mount as it is.
fn remount_bind(path: &str, flags: MsFlags, shown: &dyn Fn() -> String) -> Result<()> {
    let locked = nix::sys::statvfs::statvfs(path)
        .map(|s| locked_flags(s.flags()))
        .unwrap_or(MsFlags::empty());
    let flags = (flags & !(MsFlags::MS_REC)) | locked | MsFlags::MS_BIND | MsFlags::MS_REMOUNT;
    mount(None::<&str>, path, None::<&str>, flags, None::<&str>)
        .step(|| format!("remount {} with {flags:?}", shown()))
}

fn locked_flags(f: nix::sys::statvfs::FsFlags) -> MsFlags {
    use nix::sys::statvfs::FsFlags as F;
    let mut m = MsFlags::empty();
    for (s, ms) in [
        (F::ST_NOSUID, MsFlags::MS_NOSUID),
        (F::ST_NODEV, MsFlags::MS_NODEV),
        (F::ST_NOEXEC, MsFlags::MS_NOEXEC),
        (F::ST_NOATIME, MsFlags::MS_NOATIME),
        (F::ST_NODIRATIME, MsFlags::MS_NODIRATIME),
        (F::ST_RELATIME, MsFlags::MS_RELATIME),
    ] {
        if f.contains(s) {
            m |= ms;
        }
    }
    m
}

/// After the pivot: hide `masked` paths (a read-only tmpfs over directories, /dev/null
/// over files) and make `readonly` paths read-only. Missing paths are skipped.
pub fn mask_and_protect(masked: &[PathBuf], readonly: &[PathBuf]) -> Result<()> {
    for p in readonly {
        match mount(
            Some(p),
            p,
            None::<&str>,
            MsFlags::MS_BIND | MsFlags::MS_REC,
            None::<&str>,
        ) {
            Err(Errno::ENOENT) => continue,
            r => r.step(|| format!("bind {} for readonlyPaths", p.display()))?,
        }
        let ps = p.to_string_lossy();
        remount_bind(
            &ps,
            MsFlags::MS_RDONLY | MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
            &|| format!("readonly path {}", p.display()),
        )?;
    }
    for p in masked {
        let md = match fs::symlink_metadata(p) {
            Ok(md) => md,
            Err(_) => continue,
        };
        let r = if md.is_dir() {
            mount(
                Some("tmpfs"),
                p,
                Some("tmpfs"),
                MsFlags::MS_RDONLY,
                Some("size=0k"),
            )
        } else {
            mount(
                Some("/dev/null"),
                p,
                None::<&str>,
                MsFlags::MS_BIND,
                None::<&str>,
            )
        };
        r.step(|| format!("mask {}", p.display()))?;
    }
    Ok(())
}

/// Remount the new root read-only (`root.readonly`).
pub fn readonly_root() -> Result<()> {
    remount_bind("/", MsFlags::MS_RDONLY, &|| "/".to_string())
}

/// Write `linux.sysctl` into /proc/sys.
pub fn write_sysctl(sysctl: &[(String, String)]) -> Result<()> {
    for (k, v) in sysctl {
        let path = PathBuf::from("/proc/sys").join(k.replace('.', "/"));
        fs::write(&path, v).step(|| format!("sysctl {k}={v} ({})", path.display()))?;
    }
    Ok(())
}

/// Copy a directory tree (files, directories, symlinks; modes and owners kept).
fn copy_tree(from: &Path, to: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    for entry in fs::read_dir(from)? {
        let entry = entry?;
        let md = entry.metadata()?;
        let dst = to.join(entry.file_name());
        if md.is_dir() {
            fs::create_dir(&dst)?;
            copy_tree(&entry.path(), &dst)?;
        } else if md.file_type().is_symlink() {
            std::os::unix::fs::symlink(fs::read_link(entry.path())?, &dst)?;
        } else if md.is_file() {
            fs::copy(entry.path(), &dst)?;
        } else {
            continue;
        }
        std::os::unix::fs::lchown(&dst, Some(md.uid()), Some(md.gid()))?;
        if !md.file_type().is_symlink() {
            fs::set_permissions(&dst, fs::Permissions::from_mode(md.mode() & 0o7777))?;
        }
    }
    let md = fs::metadata(from)?;
    fs::set_permissions(to, fs::Permissions::from_mode(md.mode() & 0o7777))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn root(dir: &Path) -> OwnedFd {
        open(
            dir,
            OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .unwrap()
    }

    fn real(fd: &OwnedFd) -> PathBuf {
        fs::read_link(fd_path(fd)).unwrap()
    }

    #[test]
    fn resolve_stays_inside_and_creates() {
        let t = tempfile::tempdir().unwrap();
        let r = t.path().canonicalize().unwrap();
        fs::create_dir_all(r.join("usr/lib")).unwrap();
        symlink("/usr/lib", r.join("lib")).unwrap(); // absolute: taken from the root
        symlink("usr/lib", r.join("lib2")).unwrap(); // relative
        let fd = root(&r);
        assert_eq!(
            real(&resolve(&fd, Path::new("/lib/x/y"), Create::Dir).unwrap()),
            r.join("usr/lib/x/y")
        );
        assert_eq!(
            real(&resolve(&fd, Path::new("/lib2/f"), Create::File).unwrap()),
            r.join("usr/lib/f")
        );
        assert!(r.join("usr/lib/f").is_file());
        assert_eq!(
            resolve(&fd, Path::new("/missing"), Create::Nothing).unwrap_err(),
            ResolveError::Sys(Errno::ENOENT)
        );
    }

    #[test]
    fn resolve_refuses_escapes() {
        let t = tempfile::tempdir().unwrap();
        let r = t.path().join("root");
        fs::create_dir_all(r.join("a")).unwrap();
        symlink("../../../../etc", r.join("a/evil")).unwrap();
        let fd = root(&r);
        assert_eq!(
            resolve(&fd, Path::new("/a/evil/passwd"), Create::Dir).unwrap_err(),
            ResolveError::Escapes
        );
        assert_eq!(
            resolve(&fd, Path::new("/../x"), Create::Dir).unwrap_err(),
            ResolveError::Escapes
        );
        assert!(!t.path().join("x").exists());
        // A loop is ELOOP, not a hang.
        symlink("loop", r.join("loop")).unwrap();
        assert_eq!(
            resolve(&fd, Path::new("/loop"), Create::Dir).unwrap_err(),
            ResolveError::Sys(Errno::ELOOP)
        );
    }

    #[test]
    fn copy_tree_keeps_modes_and_links() {
        use std::os::unix::fs::PermissionsExt;
        let t = tempfile::tempdir().unwrap();
        let (a, b) = (t.path().join("a"), t.path().join("b"));
        fs::create_dir_all(a.join("d")).unwrap();
        fs::write(a.join("d/f"), "x").unwrap();
        fs::set_permissions(a.join("d/f"), fs::Permissions::from_mode(0o600)).unwrap();
        symlink("d/f", a.join("l")).unwrap();
        fs::create_dir(&b).unwrap();
        copy_tree(&a, &b).unwrap();
        assert_eq!(fs::read_to_string(b.join("l")).unwrap(), "x");
        assert_eq!(
            fs::metadata(b.join("d/f")).unwrap().permissions().mode() & 0o777,
            0o600
        );
    }
}
