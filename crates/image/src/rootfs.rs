//! A container's root filesystem from an image: an overlay mount whose lower
//! directories are the image's unpacked layers (top first) and whose upper and
//! work directories are the container's own, so nothing is copied.
//!
//! ```text
//! DIR/upper/    the container's changes
//! DIR/work/     overlayfs's work directory
//! DIR/rootfs/   the mount point: the bundle's root.path
//! ```
//!
//! The layers are added one by one with `fsconfig(FSCONFIG_SET_STRING, "lowerdir+")`
//! (Linux 6.8): a `lowerdir=a:b:c` option string is limited to a page, ~40 layers of
//! store paths; older kernels get that string, and a clear error beyond it.

use std::fs;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::mount::{mount, umount2, MntFlags, MsFlags};

use crate::error::{Context, Error, Result};
use crate::store::{Image, Store};

/// The longest option string mount(2) takes (one page, with its NUL).
const MAX_OPTIONS: usize = 4095;

/// The overlay's directories under `dir`.
#[derive(Debug, Clone)]
pub struct Rootfs {
    /// The mount point.
    pub rootfs: PathBuf,
    upper: PathBuf,
    work: PathBuf,
}

impl Rootfs {
    /// The layout under `dir` (nothing is made).
    pub fn at(dir: &Path) -> Rootfs {
        Rootfs {
            rootfs: dir.join("rootfs"),
            upper: dir.join("upper"),
            work: dir.join("work"),
        }
    }
}

/// Mount `image`'s root filesystem under `dir` (made if missing): unpacks any
/// layer not unpacked yet, then mounts the overlay on `dir/rootfs`.
pub fn mount_image(store: &Store, image: &Image, dir: &Path) -> Result<Rootfs> {
    let fs_dirs = Rootfs::at(dir);
    for d in [&fs_dirs.rootfs, &fs_dirs.upper, &fs_dirs.work] {
        fs::create_dir_all(d).step(|| format!("create {}", d.display()))?;
    }
    let mut lowers = Vec::with_capacity(image.layers.len());
    for layer in image.layers.iter().rev() {
        let path = store.layer_path(&layer.diff_id);
        if !path.exists() {
            store.unpack_layer(layer)?;
        }
        lowers.push(path);
    }
    if lowers.is_empty() {
        return Err(Error::Format {
            file: format!("image {}", image.id),
            reason: "it has no layers".into(),
        });
    }
    let shown = || {
        format!(
            "overlay of image {} on {}",
            image.id.short(),
            fs_dirs.rootfs.display()
        )
    };
    match mount_by_fsconfig(&lowers, &fs_dirs) {
        Err(Errno::EINVAL) | Err(Errno::ENOSYS) => mount_by_options(&lowers, &fs_dirs, &shown),
        r => r.step(|| format!("mount the {}", shown())),
    }?;
    Ok(fs_dirs)
}

/// The new mount API: one `lowerdir+` per layer, no length limit.
fn mount_by_fsconfig(lowers: &[PathBuf], d: &Rootfs) -> std::result::Result<(), Errno> {
    use onggi_sys::mount_api::{fsconfig_create, fsconfig_string, fsmount, fsopen, move_mount_to};
    let fs = fsopen("overlay")?;
    for l in lowers {
        fsconfig_string(fs.as_fd(), "lowerdir+", &path_str(l)?)?;
    }
    fsconfig_string(fs.as_fd(), "upperdir", &path_str(&d.upper)?)?;
    fsconfig_string(fs.as_fd(), "workdir", &path_str(&d.work)?)?;
    fsconfig_create(fs.as_fd())?;
    let mnt = fsmount(fs.as_fd(), 0)?;
    move_mount_to(mnt.as_fd(), &d.rootfs)
}

/// mount(2) with `lowerdir=top:...:bottom`, for kernels before 6.8.
fn mount_by_options(lowers: &[PathBuf], d: &Rootfs, shown: &dyn Fn() -> String) -> Result<()> {
    let escape = |p: &Path| {
        p.display()
            .to_string()
            .replace('\\', "\\\\")
            .replace(':', "\\:")
            .replace(',', "\\,")
    };
    let lower: Vec<String> = lowers.iter().map(|p| escape(p)).collect();
    let data = format!(
        "lowerdir={},upperdir={},workdir={}",
        lower.join(":"),
        escape(&d.upper),
        escape(&d.work)
    );
    if data.len() > MAX_OPTIONS {
        return Err(Error::Format {
            file: shown(),
            reason: format!(
                "{} layers do not fit in one mount option string on this kernel (Linux 6.8 takes any number)",
                lowers.len()
            ),
        });
    }
    mount(
        Some("overlay"),
        &d.rootfs,
        Some("overlay"),
        MsFlags::empty(),
        Some(data.as_str()),
    )
    .step(|| format!("mount the {}", shown()))
}

fn path_str(p: &Path) -> std::result::Result<String, Errno> {
    p.to_str().map(str::to_owned).ok_or(Errno::EINVAL)
}

/// Unmount the root filesystem under `dir`, if it is mounted; the container's
/// changes stay in `dir/upper` for the next mount.
pub fn unmount(dir: &Path) -> Result<()> {
    let d = Rootfs::at(dir);
    match umount2(&d.rootfs, MntFlags::empty()) {
        Ok(()) | Err(Errno::EINVAL) | Err(Errno::ENOENT) => Ok(()),
        // Still in use by a process that is on its way out: detach it.
        Err(Errno::EBUSY) => umount2(&d.rootfs, MntFlags::MNT_DETACH)
            .step(|| format!("unmount {}", d.rootfs.display())),
        Err(e) => Err(e).step(|| format!("unmount {}", d.rootfs.display())),
    }
}

/// Unmount the root filesystem under `dir` (if mounted) and remove the directory
/// with the container's changes.
pub fn remove(dir: &Path) -> Result<()> {
    unmount(dir)?;
    match fs::remove_dir_all(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e).step(|| format!("remove {}", dir.display())),
    }
}
