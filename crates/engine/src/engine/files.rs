//! Files in and out of a container: `export` (its root filesystem as a tar, what
//! `docker export` writes) and `cp` (between it and the host, with Docker's rules;
//! `-` for a tar on standard input or output).
//!
//! The container's files are reached from a descriptor of its root filesystem: the
//! overlay `start` mounted on `DIR/rootfs` while the container runs, else the same
//! overlay mounted for this operation alone ([`Engine::container_root`]). Never
//! through the container's mount namespace: /proc, /sys, /dev and volumes are not
//! part of its root filesystem.
//!
//! No symlink in the container leads out of it. A path the user gives is resolved by
//! the kernel with `openat2(RESOLVE_IN_ROOT)`, as if the container's root were `/`
//! (`..` stops at the root, an absolute link starts again from it); trees are walked
//! and written from directory descriptors with `O_NOFOLLOW` at every step, so a
//! directory the container swaps for a symlink mid-copy makes that step fail
//! instead of escaping (CVE-2018-15664). Host paths are the user's own and are
//! opened as usual.
//!
//! ```text
//!   source ──Walker──► Sink ─┬─ TarSink  (export: a tar on a writer)
//!   (dir descriptors)        └─ DirSink  (cp: files made under a dir descriptor)
//! ```

use std::collections::HashMap;
use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{open, openat, openat2, readlinkat, AtFlags, OFlag, OpenHow, ResolveFlag};
use nix::sys::stat::{
    fchmod, fchmodat, fstat, fstatat, futimens, mkdirat, mknodat, utimensat, FchmodatFlags,
    FileStat, Mode, SFlag, UtimensatFlags,
};
use nix::sys::time::TimeSpec;
use nix::unistd::{fchown, fchownat, linkat, symlinkat, unlinkat, Gid, Uid, UnlinkatFlags};

use super::Engine;
use crate::db::Record;
use crate::error::{Context, Error, Result};

/// Where a `cp` argument points: a path on the host, or one in a container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CopyPath {
    /// A host path (relative to the working directory).
    Host(PathBuf),
    /// `CONTAINER:PATH`: a path in a container (relative to its root).
    Container {
        /// The container's name or id.
        container: String,
        /// The path inside it.
        path: PathBuf,
    },
}

impl CopyPath {
    /// Docker's reading of a `cp` argument: `NAME:PATH` is in a container, unless it
    /// starts with `/` or `.` or has a `/` before its first colon (`./a:b`, `/x:y`
    /// are host paths).
    pub fn parse(arg: &str) -> CopyPath {
        match arg.split_once(':') {
            Some((c, p)) if !c.is_empty() && !c.contains('/') && !arg.starts_with('.') => {
                CopyPath::Container {
                    container: c.to_owned(),
                    path: PathBuf::from(p),
                }
            }
            _ => CopyPath::Host(PathBuf::from(arg)),
        }
    }
}

impl Engine {
    /// A descriptor of `rec`'s root filesystem: the overlay mounted on `DIR/rootfs`
    /// while it runs, else the overlay mounted for us alone (see
    /// [`Engine::private_mount`]), which goes away with the descriptor.
    pub(super) fn container_root(&self, rec: &Record) -> Result<OwnedFd> {
        let dir = self.dir(&rec.id);
        match mounted_overlay(&dir)? {
            Some(fd) => Ok(fd),
            None => self.private_mount(rec, &dir),
        }
    }

    /// Mount `rec`'s overlay in a mount namespace made for it, open its root, and
    /// come back. With nobody left in that namespace the kernel detaches the mount,
    /// which then lives only as long as the descriptor: no other process sees it,
    /// and nothing stays mounted even if this process is killed half-way. (A
    /// `start` meanwhile would mount a second overlay on the same upper directory,
    /// which overlayfs allows with a warning but does not define: what the
    /// container lock is for, once commands take it.)
    fn private_mount(&self, rec: &Record, dir: &Path) -> Result<OwnedFd> {
        use nix::mount::{mount, MsFlags};
        use nix::sched::{setns, unshare, CloneFlags};
        let image = self.store.resolve(&rec.image)?;
        let home = open(
            "/proc/self/ns/mnt",
            OFlag::O_RDONLY | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .step(|| "open /proc/self/ns/mnt")?;
        // setns(2) into a mount namespace also moves the working directory to its root.
        let cwd = open(
            ".",
            OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .step(|| "open the working directory")?;
        unshare(CloneFlags::CLONE_NEWNS).step(|| "unshare the mount namespace")?;
        let mounted = (|| {
            // What we mount here must not propagate to the host's namespace.
            mount(
                None::<&str>,
                "/",
                None::<&str>,
                MsFlags::MS_REC | MsFlags::MS_PRIVATE,
                None::<&str>,
            )
            .step(|| "make / private in our own mount namespace")?;
            let fs = onggi_image::rootfs::mount_image(&self.store, &image, dir)?;
            open(&fs.rootfs, dir_flags(), Mode::empty())
                .step(|| format!("open {}", fs.rootfs.display()))
        })();
        setns(&home, CloneFlags::CLONE_NEWNS).step(|| "return to our mount namespace")?;
        nix::unistd::fchdir(&cwd).step(|| "return to the working directory")?;
        mounted
    }

    /// `export`: write `what`'s root filesystem to `out` as a tar (the files as
    /// the container sees them, without /proc, /sys, /dev mounts or volumes).
    pub fn export(&self, what: &str, out: &mut dyn Write) -> Result<()> {
        let rec = self.find(what)?;
        let root = self.container_root(&rec)?;
        let mut sink = TarSink {
            tar: tar::Builder::new(out),
        };
        let label = format!("{}:/", rec.name);
        Walker::new(&mut sink, &label).children(&root, Path::new(""))?;
        sink.tar.finish().step(|| "finish the tar")
    }

    /// `cp`: copy `src` to `dst`, one of them in a container (running or not),
    /// with Docker's rules: a directory is copied into an existing directory, or
    /// becomes a new one; `SRC/.` copies a directory's contents; a file replaces a
    /// file. A symlink is copied as a symlink. Copied files belong to the
    /// container's root (into a container) or to the caller (out of one); with
    /// `archive`, they keep their owners.
    pub fn copy(&self, src: &CopyPath, dst: &CopyPath, archive: bool) -> Result<()> {
        match (src, dst) {
            (CopyPath::Container { container, path }, CopyPath::Host(to)) => {
                let rec = self.find(container)?;
                let root = self.container_root(&rec)?;
                let owner = (!archive).then(|| {
                    (
                        nix::unistd::geteuid().as_raw(),
                        nix::unistd::getegid().as_raw(),
                    )
                });
                let from = Place::container(&root, &rec.name);
                copy_between(&from, path, &Place::host(), to, owner)
            }
            (CopyPath::Host(from), CopyPath::Container { container, path }) => {
                let (rec, root) = self.writable_root(container)?;
                let to = Place::container(&root, &rec.name);
                copy_between(
                    &Place::host(),
                    from,
                    &to,
                    path,
                    (!archive).then_some((0, 0)),
                )
            }
            _ => Err(Error::BadOption {
                flag: "cp".into(),
                reason: "exactly one of SRC and DST must be CONTAINER:PATH".into(),
            }),
        }
    }

    /// `cp CONTAINER:SRC -`: write SRC to `out` as a tar, as Docker does: SRC under
    /// its own name (a directory's contents for `SRC/.`), owners and modes kept.
    pub fn copy_to_tar(&self, container: &str, path: &Path, out: &mut dyn Write) -> Result<()> {
        let rec = self.find(container)?;
        let root = self.container_root(&rec)?;
        let from = Place::container(&root, &rec.name);
        let src = source(&from, path)?;
        let label = from.show(path);
        let mut sink = TarSink {
            tar: tar::Builder::new(out),
        };
        let mut walker = Walker::new(&mut sink, &label);
        if src.contents || src.name == "." {
            let dir = openat(
                &src.parent,
                src.name.as_os_str(),
                dir_flags(),
                Mode::empty(),
            )
            .step(|| format!("open {label}"))?;
            walker.children(&dir, Path::new(""))?;
        } else {
            walker.entry(&src.parent, &src.name, Path::new(&src.name))?;
        }
        sink.tar.finish().step(|| "finish the tar")
    }

    /// `cp - CONTAINER:DEST`: unpack the tar `input` into the directory DEST, as
    /// Docker does (owners and modes from the tar). The tar is unpacked first into
    /// a directory of ours beside the data (the `tar` crate refuses entries that
    /// climb out of it), then copied in like a host directory's contents, so that
    /// nothing in the tar can lead the writes out of the container's root.
    pub fn copy_from_tar(&self, input: &mut dyn Read, container: &str, path: &Path) -> Result<()> {
        let (rec, root) = self.writable_root(container)?;
        let to = Place::container(&root, &rec.name);
        if to.open_dir(path).is_err() {
            return Err(Error::BadOption {
                flag: to.show(path),
                reason: "the destination of a tar stream must be an existing directory".into(),
            });
        }
        let scratch = tempfile::Builder::new()
            .prefix(".cp-")
            .tempdir_in(&self.roots.data)
            .step(|| {
                format!(
                    "make a temporary directory in {}",
                    self.roots.data.display()
                )
            })?;
        let mut archive = tar::Archive::new(input);
        archive.set_preserve_permissions(true);
        archive.set_preserve_ownerships(true);
        archive.set_overwrite(true);
        archive
            .unpack(scratch.path())
            .step(|| "unpack the tar from standard input")?;
        copy_between(&Place::host(), &scratch.path().join("."), &to, path, None)
    }

    /// The container `what` names and its root filesystem, to write into: refused
    /// when it was made `--read-only`.
    fn writable_root(&self, what: &str) -> Result<(Record, OwnedFd)> {
        let rec = self.find(what)?;
        if self.read_only_rootfs(&rec) {
            return Err(Error::WrongState {
                id: rec.name,
                reason: "its root filesystem is read-only".into(),
            });
        }
        let root = self.container_root(&rec)?;
        Ok((rec, root))
    }

    /// Whether `rec` was made with `--read-only` (`root.readonly` in its config).
    fn read_only_rootfs(&self, rec: &Record) -> bool {
        std::fs::read(self.dir(&rec.id).join("config.json"))
            .ok()
            .and_then(|d| serde_json::from_slice::<serde_json::Value>(&d).ok())
            .is_some_and(|spec| spec["root"]["readonly"] == true)
    }
}

/// Read the file `path` of a container's root (at most `limit` bytes), resolved
/// inside that root.
pub(super) fn read_in_root(root: &OwnedFd, path: &Path, limit: u64) -> Result<Vec<u8>> {
    let place = Place::container(root, "");
    // O_NONBLOCK: a FIFO put there must not make us wait.
    let fd = place
        .open(path, OFlag::O_RDONLY | OFlag::O_NONBLOCK)
        .step(|| format!("open {} in the container", path.display()))?;
    if kind(&fstat(&fd).step(|| format!("stat {}", path.display()))?) != SFlag::S_IFREG {
        return Err(Error::Sys {
            step: format!("read {} in the container", path.display()),
            source: Errno::EINVAL,
        });
    }
    let mut data = Vec::new();
    File::from(fd)
        .take(limit)
        .read_to_end(&mut data)
        .step(|| format!("read {} in the container", path.display()))?;
    Ok(data)
}

/// `DIR/rootfs` when an overlay is mounted there: the running container's root.
fn mounted_overlay(dir: &Path) -> Result<Option<OwnedFd>> {
    use nix::sys::statfs::{fstatfs, OVERLAYFS_SUPER_MAGIC};
    let rootfs = dir.join("rootfs");
    let fd = match open(&rootfs, dir_flags(), Mode::empty()) {
        Ok(fd) => fd,
        Err(Errno::ENOENT) => return Ok(None),
        Err(e) => return Err(e).step(|| format!("open {}", rootfs.display())),
    };
    let overlay = fstatfs(&fd)
        .step(|| format!("statfs {}", rootfs.display()))?
        .filesystem_type()
        == OVERLAYFS_SUPER_MAGIC;
    // A mount point of its own: not merely a directory of a host that runs on overlay.
    let parent = nix::sys::stat::stat(dir).step(|| format!("stat {}", dir.display()))?;
    let own = fstat(&fd)
        .step(|| format!("stat {}", rootfs.display()))?
        .st_dev
        != parent.st_dev;
    Ok((overlay && own).then_some(fd))
}

/// The extended attribute that holds a file's capabilities.
const CAPS: &str = "security.capability";

fn dir_flags() -> OFlag {
    OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC
}

fn kind(st: &FileStat) -> SFlag {
    SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT
}

/// Where paths of one side of `cp` are resolved: the host, or a container's root.
struct Place<'a> {
    root: Option<&'a OwnedFd>,
    /// `NAME:` for a container, for messages.
    label: String,
}

impl<'a> Place<'a> {
    fn host() -> Place<'a> {
        Place {
            root: None,
            label: String::new(),
        }
    }

    fn container(root: &'a OwnedFd, name: &str) -> Place<'a> {
        Place {
            root: Some(root),
            label: format!("{name}:"),
        }
    }

    fn show(&self, p: &Path) -> String {
        format!("{}{}", self.label, p.display())
    }

    /// Open `path`, following symlinks; in a container, as if its root were `/`.
    fn open(&self, path: &Path, flags: OFlag) -> nix::Result<OwnedFd> {
        let path = if path.as_os_str().is_empty() {
            Path::new(".")
        } else {
            path
        };
        match self.root {
            None => open(path, flags | OFlag::O_CLOEXEC, Mode::empty()),
            Some(root) => {
                let how = OpenHow::new().flags(flags | OFlag::O_CLOEXEC).resolve(
                    ResolveFlag::RESOLVE_IN_ROOT
                        | ResolveFlag::RESOLVE_NO_MAGICLINKS
                        | ResolveFlag::RESOLVE_NO_XDEV,
                );
                openat2(root, path, how)
            }
        }
    }

    fn open_dir(&self, path: &Path) -> Result<OwnedFd> {
        self.open(path, OFlag::O_PATH | OFlag::O_DIRECTORY)
            .step(|| format!("open the directory {}", self.show(path)))
    }
}

/// A `cp` path taken apart: its directory, its last name (`None` when it ends in
/// `/`, `..` or is the root), and Docker's markers.
#[derive(Debug, PartialEq, Eq)]
struct Parts {
    dir: PathBuf,
    last: Option<OsString>,
    /// Ends with `/`: must be a directory.
    slash: bool,
    /// Ends with `/.`: a directory's contents, not the directory.
    dot: bool,
}

fn parts(p: &Path) -> Parts {
    let b = p.as_os_str().as_bytes();
    let dot = b == b"." || b.ends_with(b"/.");
    let slash = b.ends_with(b"/");
    let last_normal = matches!(p.components().next_back(), Some(Component::Normal(_)));
    match (last_normal, p.file_name()) {
        (true, Some(name)) if !dot => Parts {
            dir: p.parent().map(Path::to_path_buf).unwrap_or_default(),
            last: Some(name.to_owned()),
            slash,
            dot,
        },
        _ => Parts {
            dir: p.to_path_buf(),
            last: None,
            slash,
            dot,
        },
    }
}

/// What is copied: the entry `name` of `parent`, or with `contents` what is in the
/// directory `parent` (then `name` is `.`).
struct Source {
    parent: OwnedFd,
    name: OsString,
    contents: bool,
    dir: bool,
}

fn source(place: &Place, path: &Path) -> Result<Source> {
    let p = parts(path);
    let Some(name) = p.last else {
        let parent = place.open_dir(&p.dir)?;
        return Ok(Source {
            parent,
            name: ".".into(),
            contents: true,
            dir: true,
        });
    };
    let parent = place.open_dir(&p.dir)?;
    let st = fstatat(&parent, name.as_os_str(), AtFlags::AT_SYMLINK_NOFOLLOW)
        .step(|| format!("stat {}", place.show(path)))?;
    let dir = kind(&st) == SFlag::S_IFDIR;
    if p.slash && !dir {
        // `link/` names the directory a symlink points to.
        let target = place.open_dir(path).map_err(|_| not_a_dir(place, path))?;
        return Ok(Source {
            parent: target,
            name: ".".into(),
            contents: false,
            dir: true,
        });
    }
    Ok(Source {
        parent,
        name,
        contents: false,
        dir,
    })
}

fn not_a_dir(place: &Place, path: &Path) -> Error {
    Error::BadOption {
        flag: place.show(path),
        reason: "not a directory".into(),
    }
}

/// Where the copy goes: the entry `name` of `dir`, or with no name into `dir` itself.
struct Dest {
    dir: OwnedFd,
    name: Option<OsString>,
}

/// Docker's destination rules for `src` copied to `path`.
fn dest(place: &Place, path: &Path, src: &Source, src_path: &Path) -> Result<Dest> {
    let p = parts(path);
    let bad = |reason: &str| Error::BadOption {
        flag: place.show(path),
        reason: reason.into(),
    };
    let src_name = || parts(src_path).last.unwrap_or_else(|| src.name.clone());
    match place.open(path, OFlag::O_PATH) {
        Ok(fd) => {
            let st = fstat(&fd).step(|| format!("stat {}", place.show(path)))?;
            if kind(&st) == SFlag::S_IFDIR {
                return Ok(match src.contents {
                    true => Dest {
                        dir: fd,
                        name: None,
                    },
                    false => Dest {
                        dir: fd,
                        name: Some(src_name()),
                    },
                });
            }
            if src.dir {
                return Err(bad("cannot copy a directory to a file"));
            }
            if p.slash || p.last.is_none() {
                return Err(bad("not a directory"));
            }
            Ok(Dest {
                dir: place.open_dir(&p.dir)?,
                name: p.last,
            })
        }
        Err(Errno::ENOENT) => {
            if p.slash && !src.dir {
                return Err(bad(
                    "no such directory (a file is copied into an existing one)",
                ));
            }
            let Some(name) = p.last else {
                return Err(bad("no such directory"));
            };
            let dir = place
                .open_dir(&p.dir)
                .map_err(|_| bad("its parent directory does not exist"))?;
            Ok(Dest {
                dir,
                name: Some(name),
            })
        }
        Err(e) => Err(e).step(|| format!("open {}", place.show(path))),
    }
}

/// Copy `from_path` (in `from`) to `to_path` (in `to`); `owner` for what is made
/// (None: the source's).
fn copy_between(
    from: &Place,
    from_path: &Path,
    to: &Place,
    to_path: &Path,
    owner: Option<(u32, u32)>,
) -> Result<()> {
    let src = source(from, from_path)?;
    let dst = dest(to, to_path, &src, from_path)?;
    let label = to.show(to_path);
    let mut sink = DirSink {
        stack: vec![(dst.dir.try_clone().step(|| "dup a descriptor")?, false)],
        owner,
        label: &label,
    };
    let from_label = from.show(from_path);
    let mut walker = Walker::new(&mut sink, &from_label);
    match dst.name {
        Some(name) => walker.entry(&src.parent, &src.name, Path::new(&name)),
        None => {
            let dir = openat(
                &src.parent,
                src.name.as_os_str(),
                dir_flags(),
                Mode::empty(),
            )
            .step(|| format!("open {from_label}"))?;
            walker.children(&dir, Path::new(""))
        }
    }
}

/// Receives a tree, parents before children, in the order the walk finds it.
trait Sink {
    /// A directory: its entries follow, then [`Sink::leave_dir`].
    fn dir(&mut self, rel: &Path, st: &FileStat) -> Result<()>;
    /// The end of a directory's entries.
    fn leave_dir(&mut self, rel: &Path, st: &FileStat) -> Result<()>;
    /// A regular file, its data and its file capabilities (`security.capability`,
    /// the one extended attribute Docker's archives keep).
    fn file(
        &mut self,
        rel: &Path,
        st: &FileStat,
        data: &mut File,
        caps: Option<&[u8]>,
    ) -> Result<()>;
    /// A symbolic link.
    fn symlink(&mut self, rel: &Path, st: &FileStat, target: &OsStr) -> Result<()>;
    /// A FIFO or a device node.
    fn node(&mut self, rel: &Path, st: &FileStat) -> Result<()>;
    /// Another name of `first`, found earlier in this walk.
    fn hardlink(&mut self, rel: &Path, st: &FileStat, first: &Path) -> Result<()>;
}

/// Walks a tree from directory descriptors, never following a symlink.
struct Walker<'a> {
    sink: &'a mut dyn Sink,
    /// Files with several links: (device, inode) → the first path given to the sink.
    links: HashMap<(u64, u64), PathBuf>,
    /// The tree's name, for messages.
    label: &'a str,
}

impl<'a> Walker<'a> {
    fn new(sink: &'a mut dyn Sink, label: &'a str) -> Walker<'a> {
        Walker {
            sink,
            links: HashMap::new(),
            label,
        }
    }

    fn show(&self, rel: &Path) -> String {
        format!("{} in {}", rel.display(), self.label)
    }

    /// The entry `name` of `parent`, given to the sink as `rel`.
    fn entry(&mut self, parent: &OwnedFd, name: &OsStr, rel: &Path) -> Result<()> {
        let st = fstatat(parent, name, AtFlags::AT_SYMLINK_NOFOLLOW)
            .step(|| format!("stat {}", self.show(rel)))?;
        let k = kind(&st);
        if k == SFlag::S_IFDIR {
            let dir = openat(parent, name, dir_flags(), Mode::empty())
                .step(|| format!("open {}", self.show(rel)))?;
            let st = fstat(&dir).step(|| format!("stat {}", self.show(rel)))?;
            self.sink.dir(rel, &st)?;
            self.children(&dir, rel)?;
            return self.sink.leave_dir(rel, &st);
        }
        if k == SFlag::S_IFSOCK {
            return Ok(()); // a tar cannot hold one; docker skips them too
        }
        if st.st_nlink > 1 {
            let key = (st.st_dev, st.st_ino);
            if let Some(first) = self.links.get(&key) {
                return self.sink.hardlink(rel, &st, first);
            }
            self.links.insert(key, rel.to_path_buf());
        }
        match k {
            SFlag::S_IFREG => {
                let mut f = self.open_file(parent, name, rel)?;
                let st = fstat(&f).step(|| format!("stat {}", self.show(rel)))?;
                let caps = xattr::FileExt::get_xattr(&f, CAPS).ok().flatten();
                self.sink.file(rel, &st, &mut f, caps.as_deref())
            }
            SFlag::S_IFLNK => {
                let target =
                    readlinkat(parent, name).step(|| format!("readlink {}", self.show(rel)))?;
                self.sink.symlink(rel, &st, &target)
            }
            _ => self.sink.node(rel, &st),
        }
    }

    /// Open a regular file for reading without following a symlink and without
    /// opening anything else swapped in its place (a FIFO would block, a device
    /// act): an `O_PATH` descriptor is checked, then reopened through /proc.
    fn open_file(&self, parent: &OwnedFd, name: &OsStr, rel: &Path) -> Result<File> {
        let path = openat(
            parent,
            name,
            OFlag::O_PATH | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .step(|| format!("open {}", self.show(rel)))?;
        let st = fstat(&path).step(|| format!("stat {}", self.show(rel)))?;
        if kind(&st) != SFlag::S_IFREG {
            return Err(Error::Sys {
                step: format!("{} changed while it was copied", self.show(rel)),
                source: Errno::EAGAIN,
            });
        }
        let fd = open(
            format!("/proc/self/fd/{}", path.as_raw_fd()).as_str(),
            OFlag::O_RDONLY | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .step(|| format!("open {}", self.show(rel)))?;
        Ok(File::from(fd))
    }

    /// Every entry of `dir` (sorted by name, for a stable archive), as `rel/NAME`.
    fn children(&mut self, dir: &OwnedFd, rel: &Path) -> Result<()> {
        let listing = dir.try_clone().step(|| "dup a directory descriptor")?;
        let mut d = nix::dir::Dir::from_fd(listing).step(|| format!("read {}", self.show(rel)))?;
        let mut names: Vec<OsString> = Vec::new();
        for e in d.iter() {
            let e = e.step(|| format!("read {}", self.show(rel)))?;
            let n = OsStr::from_bytes(e.file_name().to_bytes());
            if n != "." && n != ".." {
                names.push(n.to_owned());
            }
        }
        drop(d);
        names.sort();
        for n in names {
            self.entry(dir, &n, &rel.join(&n))?;
        }
        Ok(())
    }
}

/// Writes the tree as a tar (GNU headers: long names, any size).
struct TarSink<'w> {
    tar: tar::Builder<&'w mut dyn Write>,
}

fn header(st: &FileStat, entry: tar::EntryType, size: u64) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(entry);
    h.set_mode(st.st_mode & 0o7777);
    h.set_uid(st.st_uid.into());
    h.set_gid(st.st_gid.into());
    h.set_mtime(st.st_mtime.max(0) as u64);
    h.set_size(size);
    h
}

impl TarSink<'_> {
    /// A PAX extended header giving the next entry the extended attribute `name`
    /// (`SCHILY.xattr.NAME`, as GNU tar and Docker write it).
    fn pax_xattr(&mut self, rel: &Path, name: &str, value: &[u8]) -> Result<()> {
        let record = pax_record(&format!("SCHILY.xattr.{name}"), value);
        let mut h = tar::Header::new_ustar();
        h.set_entry_type(tar::EntryType::XHeader);
        h.set_mode(0o644);
        h.set_size(record.len() as u64);
        // The name of an extended header is informative only; it must just fit.
        let short: String = rel.to_string_lossy().chars().rev().take(80).collect();
        let name: String = short.chars().rev().collect();
        let path = format!("PaxHeaders.0/{}", name.trim_start_matches('/'));
        self.write(Path::new(&path), &mut h, &record[..])
    }

    fn write(&mut self, rel: &Path, h: &mut tar::Header, data: impl Read) -> Result<()> {
        self.tar
            .append_data(h, rel, data)
            .step(|| format!("write {} to the tar", rel.display()))
    }
}

impl Sink for TarSink<'_> {
    fn dir(&mut self, rel: &Path, st: &FileStat) -> Result<()> {
        let mut h = header(st, tar::EntryType::Directory, 0);
        self.write(&rel.join(""), &mut h, std::io::empty())
    }

    fn leave_dir(&mut self, _: &Path, _: &FileStat) -> Result<()> {
        Ok(())
    }

    fn file(
        &mut self,
        rel: &Path,
        st: &FileStat,
        data: &mut File,
        caps: Option<&[u8]>,
    ) -> Result<()> {
        if let Some(value) = caps {
            self.pax_xattr(rel, CAPS, value)?;
        }
        let size = st.st_size.max(0) as u64;
        let mut h = header(st, tar::EntryType::Regular, size);
        // Exactly `size` bytes, whatever the file does meanwhile: a tar entry's
        // length is fixed by its header.
        let exact = data.take(size).chain(std::io::repeat(0)).take(size);
        self.write(rel, &mut h, exact)
    }

    fn symlink(&mut self, rel: &Path, st: &FileStat, target: &OsStr) -> Result<()> {
        let mut h = header(st, tar::EntryType::Symlink, 0);
        self.tar
            .append_link(&mut h, rel, target)
            .step(|| format!("write {} to the tar", rel.display()))
    }

    fn node(&mut self, rel: &Path, st: &FileStat) -> Result<()> {
        use nix::sys::stat::{major, minor};
        let entry = match kind(st) {
            SFlag::S_IFCHR => tar::EntryType::Char,
            SFlag::S_IFBLK => tar::EntryType::Block,
            _ => tar::EntryType::Fifo,
        };
        let mut h = header(st, entry, 0);
        let step = || format!("write {} to the tar", rel.display());
        h.set_device_major(major(st.st_rdev) as u32).step(step)?;
        h.set_device_minor(minor(st.st_rdev) as u32).step(step)?;
        self.write(rel, &mut h, std::io::empty())
    }

    fn hardlink(&mut self, rel: &Path, st: &FileStat, first: &Path) -> Result<()> {
        let mut h = header(st, tar::EntryType::Link, 0);
        self.tar
            .append_link(&mut h, rel, first)
            .step(|| format!("write {} to the tar", rel.display()))
    }
}

/// One PAX record: `LENGTH KEY=VALUE\n`, LENGTH counting the whole record, itself
/// included.
fn pax_record(key: &str, value: &[u8]) -> Vec<u8> {
    let body = key.len() + value.len() + 3; // ' ', '=', '\n'
    let mut len = body + 1;
    while len != body + len.to_string().len() {
        len = body + len.to_string().len();
    }
    let mut r = format!("{len} {key}=").into_bytes();
    r.extend_from_slice(value);
    r.push(b'\n');
    r
}

/// Makes the tree under a directory descriptor, never following a symlink there.
struct DirSink<'a> {
    /// The directories entered: [0] is the destination, the last the current one;
    /// with whether we made it (then its metadata is set on leaving).
    stack: Vec<(OwnedFd, bool)>,
    /// The owner of what is made (None: the source's).
    owner: Option<(u32, u32)>,
    /// The destination as the user named it, for messages.
    label: &'a str,
}

fn name_of(rel: &Path) -> &OsStr {
    rel.file_name().unwrap_or(OsStr::new("."))
}

fn times(st: &FileStat) -> (TimeSpec, TimeSpec) {
    (
        TimeSpec::new(st.st_atime, st.st_atime_nsec),
        TimeSpec::new(st.st_mtime, st.st_mtime_nsec),
    )
}

impl DirSink<'_> {
    fn cur(&self) -> &OwnedFd {
        &self
            .stack
            .last()
            .expect("the stack holds the destination")
            .0
    }

    fn show(&self, rel: &Path) -> String {
        format!("{} in {}", rel.display(), self.label)
    }

    fn ids(&self, st: &FileStat) -> (Option<Uid>, Option<Gid>) {
        let (u, g) = self.owner.unwrap_or((st.st_uid, st.st_gid));
        (Some(Uid::from_raw(u)), Some(Gid::from_raw(g)))
    }

    /// Owner, mode and times of something we made, through its descriptor.
    fn finish(&self, fd: &impl AsFd, rel: &Path, st: &FileStat) -> Result<()> {
        let (u, g) = self.ids(st);
        fchown(fd, u, g).step(|| format!("chown {}", self.show(rel)))?;
        // After chown, which clears set-user-ID and set-group-ID.
        fchmod(fd, Mode::from_bits_truncate(st.st_mode & 0o7777))
            .step(|| format!("chmod {}", self.show(rel)))?;
        let (a, m) = times(st);
        futimens(fd, &a, &m).step(|| format!("set the times of {}", self.show(rel)))
    }

    /// Owner and times of a symlink or node we made, by name without following it.
    fn finish_at(&self, rel: &Path, st: &FileStat) -> Result<()> {
        let (u, g) = self.ids(st);
        let name = name_of(rel);
        fchownat(self.cur(), name, u, g, AtFlags::AT_SYMLINK_NOFOLLOW)
            .step(|| format!("chown {}", self.show(rel)))?;
        let (a, m) = times(st);
        utimensat(self.cur(), name, &a, &m, UtimensatFlags::NoFollowSymlink)
            .step(|| format!("set the times of {}", self.show(rel)))
    }

    /// Make room for a non-directory named `rel`: what is there goes, unless it is
    /// a directory.
    fn clear(&self, rel: &Path) -> Result<()> {
        let name = name_of(rel);
        match fstatat(self.cur(), name, AtFlags::AT_SYMLINK_NOFOLLOW) {
            Err(Errno::ENOENT) => Ok(()),
            Err(e) => Err(e).step(|| format!("stat {}", self.show(rel))),
            Ok(st) if kind(&st) == SFlag::S_IFDIR => Err(Error::BadOption {
                flag: self.show(rel),
                reason: "cannot overwrite a directory with a non-directory".into(),
            }),
            Ok(_) => unlinkat(self.cur(), name, UnlinkatFlags::NoRemoveDir)
                .step(|| format!("remove {}", self.show(rel))),
        }
    }
}

impl Sink for DirSink<'_> {
    fn dir(&mut self, rel: &Path, _: &FileStat) -> Result<()> {
        let name = name_of(rel);
        let made = match mkdirat(self.cur(), name, Mode::from_bits_truncate(0o700)) {
            Ok(()) => true,
            Err(Errno::EEXIST) => false,
            Err(e) => return Err(e).step(|| format!("mkdir {}", self.show(rel))),
        };
        let fd = match openat(self.cur(), name, dir_flags(), Mode::empty()) {
            Ok(fd) => fd,
            Err(Errno::ENOTDIR) | Err(Errno::ELOOP) => {
                return Err(Error::BadOption {
                    flag: self.show(rel),
                    reason: "cannot overwrite a non-directory with a directory".into(),
                })
            }
            Err(e) => return Err(e).step(|| format!("open {}", self.show(rel))),
        };
        self.stack.push((fd, made));
        Ok(())
    }

    fn leave_dir(&mut self, rel: &Path, st: &FileStat) -> Result<()> {
        let (fd, made) = self.stack.pop().expect("leave_dir after dir");
        // A directory that was there keeps its owner and mode.
        match made {
            true => self.finish(&fd, rel, st),
            false => Ok(()),
        }
    }

    fn file(
        &mut self,
        rel: &Path,
        st: &FileStat,
        data: &mut File,
        caps: Option<&[u8]>,
    ) -> Result<()> {
        self.clear(rel)?;
        let fd = openat(
            self.cur(),
            name_of(rel),
            OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            Mode::from_bits_truncate(0o600),
        )
        .step(|| format!("create {}", self.show(rel)))?;
        let mut out = File::from(fd);
        std::io::copy(data, &mut out).step(|| format!("write {}", self.show(rel)))?;
        self.finish(&out, rel, st)?;
        // After chown, which removes file capabilities.
        match caps {
            Some(value) => xattr::FileExt::set_xattr(&out, CAPS, value)
                .step(|| format!("set the capabilities of {}", self.show(rel))),
            None => Ok(()),
        }
    }

    fn symlink(&mut self, rel: &Path, st: &FileStat, target: &OsStr) -> Result<()> {
        self.clear(rel)?;
        symlinkat(target, self.cur(), name_of(rel))
            .step(|| format!("symlink {}", self.show(rel)))?;
        self.finish_at(rel, st)
    }

    fn node(&mut self, rel: &Path, st: &FileStat) -> Result<()> {
        self.clear(rel)?;
        let name = name_of(rel);
        let perm = Mode::from_bits_truncate(st.st_mode & 0o7777);
        mknodat(self.cur(), name, kind(st), perm, st.st_rdev)
            .step(|| format!("mknod {}", self.show(rel)))?;
        self.finish_at(rel, st)?;
        match fchmodat(self.cur(), name, perm, FchmodatFlags::NoFollowSymlink) {
            // Kernels before 6.6 cannot chmod without following; the node is new.
            Ok(()) | Err(Errno::EOPNOTSUPP) => Ok(()),
            Err(e) => Err(e).step(|| format!("chmod {}", self.show(rel))),
        }
    }

    fn hardlink(&mut self, rel: &Path, _: &FileStat, first: &Path) -> Result<()> {
        self.clear(rel)?;
        // `first` is relative to the destination: walk to its directory.
        let mut dir = self.stack[0].0.try_clone().step(|| "dup a descriptor")?;
        if let Some(parent) = first.parent() {
            for c in parent.components() {
                dir = openat(&dir, c.as_os_str(), dir_flags(), Mode::empty())
                    .step(|| format!("open {}", self.show(parent)))?;
            }
        }
        linkat(
            &dir,
            name_of(first),
            self.cur(),
            name_of(rel),
            AtFlags::empty(),
        )
        .step(|| format!("link {} to {}", self.show(rel), first.display()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cp_arguments_read_as_docker_reads_them() {
        let c = |n: &str, p: &str| CopyPath::Container {
            container: n.into(),
            path: p.into(),
        };
        assert_eq!(CopyPath::parse("web:/etc/hosts"), c("web", "/etc/hosts"));
        assert_eq!(CopyPath::parse("web:rel"), c("web", "rel"));
        assert_eq!(
            CopyPath::parse("/tmp/a:b"),
            CopyPath::Host("/tmp/a:b".into())
        );
        assert_eq!(CopyPath::parse("./a:b"), CopyPath::Host("./a:b".into()));
        assert_eq!(CopyPath::parse("dir/a:b"), CopyPath::Host("dir/a:b".into()));
        assert_eq!(CopyPath::parse("plain"), CopyPath::Host("plain".into()));
        assert_eq!(CopyPath::parse(":x"), CopyPath::Host(":x".into()));
    }

    #[test]
    fn pax_records_count_their_own_length() {
        assert_eq!(pax_record("k", b"v"), b"6 k=v\n");
        let long = vec![b'x'; 95];
        let r = pax_record("k", &long);
        assert_eq!(r.len(), 102);
        assert!(r.starts_with(b"102 k="));
        // Read back by the tar crate as an extended attribute.
        let mut buf = Vec::new();
        let mut sink = TarSink {
            tar: tar::Builder::new(&mut buf as &mut dyn Write),
        };
        sink.pax_xattr(Path::new("bin/ping"), CAPS, b"\x01\x00caps")
            .unwrap();
        let mut h = tar::Header::new_gnu();
        h.set_size(0);
        sink.write(Path::new("bin/ping"), &mut h, std::io::empty())
            .unwrap();
        sink.tar.finish().unwrap();
        drop(sink);
        let mut archive = tar::Archive::new(&buf[..]);
        let mut entries = archive.entries().unwrap();
        let mut e = entries.next().unwrap().unwrap();
        assert_eq!(e.path().unwrap(), Path::new("bin/ping"));
        let ext: Vec<(String, Vec<u8>)> = e
            .pax_extensions()
            .unwrap()
            .unwrap()
            .map(|x| {
                let x = x.unwrap();
                (x.key().unwrap().to_owned(), x.value_bytes().to_vec())
            })
            .collect();
        assert_eq!(
            ext,
            [(
                "SCHILY.xattr.security.capability".to_owned(),
                b"\x01\x00caps".to_vec()
            )]
        );
    }

    #[test]
    fn paths_split_with_docker_markers() {
        let p = |s: &str| parts(Path::new(s));
        let named = |dir: &str, last: &str, slash: bool| Parts {
            dir: dir.into(),
            last: Some(last.into()),
            slash,
            dot: false,
        };
        assert_eq!(p("/etc/hosts"), named("/etc", "hosts", false));
        assert_eq!(p("/etc/"), named("/", "etc", true));
        assert_eq!(p("file"), named("", "file", false));
        let whole = |dir: &str, slash: bool, dot: bool| Parts {
            dir: dir.into(),
            last: None,
            slash,
            dot,
        };
        assert_eq!(p("/etc/."), whole("/etc/.", false, true));
        assert_eq!(p("."), whole(".", false, true));
        assert_eq!(p("/"), whole("/", true, false));
        assert_eq!(p("/a/.."), whole("/a/..", false, false));
    }

    /// A tree copied by the walker into a DirSink and into a tar: contents,
    /// modes, symlinks (not followed), hard links.
    #[test]
    fn a_tree_is_copied_and_tarred_without_following_links() {
        let t = tempfile::tempdir().unwrap();
        let src = t.path().join("src");
        std::fs::create_dir_all(src.join("sub")).unwrap();
        std::fs::write(src.join("sub/f"), "data").unwrap();
        std::fs::hard_link(src.join("sub/f"), src.join("g")).unwrap();
        std::os::unix::fs::symlink("/etc/passwd", src.join("link")).unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(src.join("sub/f"), std::fs::Permissions::from_mode(0o751))
            .unwrap();
        std::fs::create_dir(t.path().join("dst")).unwrap();
        let host = Place::host();
        let me = (
            nix::unistd::geteuid().as_raw(),
            nix::unistd::getegid().as_raw(),
        );
        copy_between(&host, &src, &host, &t.path().join("dst"), Some(me)).unwrap();
        let out = t.path().join("dst/src");
        assert_eq!(std::fs::read_to_string(out.join("sub/f")).unwrap(), "data");
        let mode = std::fs::metadata(out.join("sub/f"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o7777, 0o751);
        assert_eq!(
            std::fs::read_link(out.join("link")).unwrap(),
            Path::new("/etc/passwd")
        );
        use std::os::unix::fs::MetadataExt;
        assert_eq!(
            std::fs::metadata(out.join("g")).unwrap().ino(),
            std::fs::metadata(out.join("sub/f")).unwrap().ino()
        );
        // Contents only (`src/.`) into a new directory.
        copy_between(
            &host,
            &src.join("."),
            &host,
            &t.path().join("flat"),
            Some(me),
        )
        .unwrap();
        assert!(t.path().join("flat/sub/f").exists());
        // A directory onto a file is refused.
        let e = copy_between(&host, &src, &host, &out.join("g"), Some(me)).unwrap_err();
        assert!(e.to_string().contains("directory to a file"), "{e}");

        let mut buf = Vec::new();
        let mut sink = TarSink {
            tar: tar::Builder::new(&mut buf as &mut dyn Write),
        };
        let root = open(&src, dir_flags(), Mode::empty()).unwrap();
        Walker::new(&mut sink, "src")
            .children(&root, Path::new(""))
            .unwrap();
        sink.tar.finish().unwrap();
        drop(sink);
        let mut names = Vec::new();
        for e in tar::Archive::new(&buf[..]).entries().unwrap() {
            let e = e.unwrap();
            names.push((
                e.path().unwrap().display().to_string(),
                e.header().entry_type(),
            ));
        }
        use tar::EntryType as E;
        assert_eq!(
            names,
            [
                ("g".to_string(), E::Regular),
                ("link".to_string(), E::Symlink),
                ("sub/".to_string(), E::Directory),
                ("sub/f".to_string(), E::Link),
            ]
        );
    }
}
