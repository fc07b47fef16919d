//! Which cgroup hierarchies are mounted where: detection from `/proc/self/mountinfo`.
//!
//! Only `cgroup` and `cgroup2` mounts whose mount point is the cgroup root or below it
//! count. The version follows from what is found (see [`Version`]). Detection reads no
//! file besides mountinfo itself; the symlinks a distribution puts beside combined
//! hierarchies (`cpu -> cpu,cpuacct`) are not needed because the mount options name
//! every controller of a hierarchy.
//!
//! Format of a mountinfo line (proc(5)):
//! `36 35 98:0 /mnt1 /mnt2 rw,noatime master:1 - ext3 /dev/root rw,errors=continue`
//! (id, parent, dev, root in the filesystem, mount point, options, optional fields,
//! `-`, fstype, source, super options).

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::fs;

/// The cgroup layout of a host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    /// Only v1 hierarchies (one mount per controller or group of controllers).
    V1,
    /// Only the v2 unified hierarchy, mounted at the cgroup root.
    V2,
    /// v1 hierarchies for the controllers, plus a cgroup2 mount below the root
    /// (normally `<root>/unified`) that owns the controllers v1 does not.
    Hybrid,
}

/// One mounted hierarchy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    name: String,
    dir: PathBuf,
    root: String,
    controllers: Vec<String>,
}

impl Mount {
    /// The mount directory's path relative to the cgroup root, e.g. `cpu,cpuacct`,
    /// `systemd`, `unified`; empty for a v2 hierarchy mounted at the root itself.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The mount point, e.g. `/sys/fs/cgroup/cpu,cpuacct`.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The cgroup shown at the mount point, relative to the hierarchy's real root
    /// (mountinfo field 4): `/` on a host, e.g. `/docker/<id>` inside a container
    /// without a cgroup namespace.
    pub fn root(&self) -> &str {
        &self.root
    }

    /// v1: the controllers of the hierarchy, e.g. `["cpu", "cpuacct"]`, or
    /// `["name=systemd"]` for a named hierarchy. v2: empty (the available controllers
    /// are in `cgroup.controllers`).
    pub fn controllers(&self) -> &[String] {
        &self.controllers
    }

    /// Does this v1 hierarchy hold `controller`?
    pub fn has(&self, controller: &str) -> bool {
        self.controllers.iter().any(|c| c == controller)
    }
}

/// The hierarchies mounted under a cgroup root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hierarchies {
    root: PathBuf,
    version: Version,
    v1: Vec<Mount>,
    unified: Option<Mount>,
}

/// Options of a v1 mount that are flags, not controllers.
const NOT_CONTROLLERS: &[&str] = &[
    "rw",
    "ro",
    "none",
    "noprefix",
    "xattr",
    "clone_children",
    "cpuset_v2_mode",
    "favordynmods",
    "nofavordynmods",
];

impl Hierarchies {
    /// Detect from a cgroup root dir and the contents of `/proc/self/mountinfo`.
    ///
    /// Touches no file: the mount points in `mountinfo` are taken as they are, so a
    /// fixture's mountinfo must name the fixture's directories.
    pub fn detect(cgroup_root: &Path, mountinfo: &str) -> Result<Self> {
        let mut v1: Vec<Mount> = Vec::new();
        let mut unified: Option<Mount> = None;
        for line in mountinfo.lines() {
            let Some(m) = parse_line(line) else { continue };
            let Ok(rel) = Path::new(&*m.mount_point).strip_prefix(cgroup_root) else {
                continue;
            };
            let name = rel.to_string_lossy().into_owned();
            let dir = cgroup_root.join(rel);
            match m.fstype {
                "cgroup2" => {
                    // The first cgroup2 mount wins; later ones are bind mounts.
                    if unified.is_none() {
                        unified = Some(Mount {
                            name,
                            dir,
                            root: m.root.into_owned(),
                            controllers: Vec::new(),
                        });
                    }
                }
                _ => {
                    let controllers: Vec<String> = m
                        .super_options
                        .split(',')
                        .filter(|o| !NOT_CONTROLLERS.contains(o))
                        .filter(|o| o.starts_with("name=") || !o.contains('='))
                        .map(str::to_owned)
                        .collect();
                    // The same hierarchy mounted twice (a bind mount): keep the first.
                    if controllers.is_empty() || v1.iter().any(|h| h.controllers == controllers) {
                        continue;
                    }
                    v1.push(Mount {
                        name,
                        dir,
                        root: m.root.into_owned(),
                        controllers,
                    });
                }
            }
        }
        let version = match (&unified, v1.is_empty()) {
            (None, true) => {
                return Err(Error::NoHierarchy {
                    root: cgroup_root.to_owned(),
                })
            }
            (None, false) => Version::V1,
            (Some(_), true) => Version::V2,
            (Some(_), false) => Version::Hybrid,
        };
        Ok(Hierarchies {
            root: cgroup_root.to_owned(),
            version,
            v1,
            unified,
        })
    }

    /// Shortcut for the host: `detect("/sys/fs/cgroup", <read /proc/self/mountinfo>)`.
    pub fn host() -> Result<Self> {
        let mountinfo = fs::read(Path::new("/proc/self/mountinfo"))?;
        Self::detect(Path::new("/sys/fs/cgroup"), &mountinfo)
    }

    /// [`Hierarchies::host`], with the cgroup lines of mountinfo kept in the file
    /// `cache` under a fingerprint of what is mounted at the cgroup root.
    ///
    /// The kernel writes all of mountinfo at every read, and on a host running
    /// containers that is one long overlay line per container: 0.7 ms for 100 of them
    /// here, at every create and delete. The fingerprint is cheap (one directory read
    /// and a stat per entry): the mount namespace, the root's device, and each entry's
    /// name, device and inode, which change when a hierarchy is mounted, unmounted or
    /// replaced under the root. A cache that is missing, unreadable or of another
    /// fingerprint is rewritten; failing to write it is no error.
    pub fn host_cached(cache: &Path) -> Result<Self> {
        let root = Path::new("/sys/fs/cgroup");
        let Some(print) = fingerprint(root) else {
            return Self::host();
        };
        if let Ok(text) = std::fs::read_to_string(cache) {
            if let Some(lines) = text.strip_prefix(&print) {
                return Self::detect(root, lines);
            }
        }
        let mountinfo = fs::read(Path::new("/proc/self/mountinfo"))?;
        let h = Self::detect(root, &mountinfo)?;
        let mut text = print;
        for line in mountinfo.lines().filter(|l| parse_line(l).is_some()) {
            text.push_str(line);
            text.push('\n');
        }
        let tmp = cache.with_extension(format!("tmp{}", std::process::id()));
        if std::fs::write(&tmp, text).is_ok() && std::fs::rename(&tmp, cache).is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        Ok(h)
    }

    /// V1, V2 or Hybrid.
    pub fn version(&self) -> Version {
        self.version
    }

    /// The cgroup root these were detected under.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The v1 hierarchies, in mountinfo order (empty on V2).
    pub fn v1_mounts(&self) -> &[Mount] {
        &self.v1
    }

    /// The v1 hierarchy that holds `controller` (e.g. `"memory"`, `"name=systemd"`).
    pub fn v1_mount(&self, controller: &str) -> Option<&Mount> {
        self.v1.iter().find(|m| m.has(controller))
    }

    /// The cgroup2 mount: the root on V2, e.g. `<root>/unified` on Hybrid, none on V1.
    pub fn unified(&self) -> Option<&Mount> {
        self.unified.as_ref()
    }
}

/// What [`Hierarchies::host_cached`] keys its cache by: one line, `None` when the
/// root cannot be read.
fn fingerprint(root: &Path) -> Option<String> {
    use std::fmt::Write;
    use std::os::unix::fs::MetadataExt;
    let ns = std::fs::metadata("/proc/self/ns/mnt").ok()?;
    let top = std::fs::metadata(root).ok()?;
    let mut entries: Vec<(String, u64, u64)> = std::fs::read_dir(root)
        .ok()?
        .filter_map(|e| {
            let e = e.ok()?;
            // The entry itself (lstat; a mount point gives its mounted root). A
            // symlink such as `cpu -> cpu,cpuacct` needs no stat of its target: the
            // target is an entry of the same directory, and a re-pointed link is a
            // new inode.
            let m = e.metadata().ok()?;
            Some((
                e.file_name().to_string_lossy().into_owned(),
                m.dev(),
                m.ino(),
            ))
        })
        .collect();
    entries.sort();
    let mut out = format!(
        "onggi-cgroup-mounts 2 {} {} {}",
        ns.ino(),
        top.dev(),
        top.ino()
    );
    for (name, dev, ino) in entries {
        let _ = write!(out, " {name:?}:{dev}:{ino}");
    }
    out.push('\n');
    Some(out)
}

/// The fields of one mountinfo line that detection needs.
struct MountLine<'a> {
    root: std::borrow::Cow<'a, str>,
    mount_point: std::borrow::Cow<'a, str>,
    fstype: &'a str,
    super_options: &'a str,
}

/// Parse a mountinfo line if it is a cgroup or cgroup2 mount.
fn parse_line(line: &str) -> Option<MountLine<'_>> {
    let (pre, post) = line.split_once(" - ")?;
    let mut post = post.split(' ');
    let fstype = post.next()?;
    if fstype != "cgroup" && fstype != "cgroup2" {
        return None;
    }
    let _source = post.next()?;
    let super_options = post.next().unwrap_or("");
    let mut pre = pre.split(' ');
    let root = pre.nth(3)?;
    let mount_point = pre.next()?;
    Some(MountLine {
        root: unescape(root),
        mount_point: unescape(mount_point),
        fstype,
        super_options,
    })
}

/// Undo mountinfo's octal escapes (`\040` for a space, `\011`, `\012`, `\134`).
fn unescape(s: &str) -> std::borrow::Cow<'_, str> {
    if !s.contains('\\') {
        return s.into();
    }
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let octal = b
            .get(i + 1..i + 4)
            .filter(|d| d.iter().all(|c| (b'0'..=b'7').contains(c)));
        match (b[i], octal) {
            (b'\\', Some(d)) => {
                out.push((d[0] - b'0') * 64 + (d[1] - b'0') * 8 + (d[2] - b'0'));
                i += 4;
            }
            (c, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned().into()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// The real cgroup lines of /proc/self/mountinfo on the development host (hybrid,
    /// one hierarchy per controller, cgroup2 at /sys/fs/cgroup/unified owning hugetlb).
    pub(crate) const HYBRID: &str = "\
27 1 254:0 / / rw,relatime - ext4 /dev/vda rw,discard
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
33 31 0:30 / /sys/fs/cgroup/cpuacct rw,relatime - cgroup cgroup rw,cpuacct
34 31 0:31 / /sys/fs/cgroup/cpuset rw,relatime - cgroup cgroup rw,cpuset
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
36 31 0:33 / /sys/fs/cgroup/devices rw,relatime - cgroup cgroup rw,devices
37 31 0:34 / /sys/fs/cgroup/freezer rw,relatime - cgroup cgroup rw,freezer
38 31 0:35 / /sys/fs/cgroup/blkio rw,relatime - cgroup cgroup rw,blkio
39 31 0:36 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
";

    /// A systemd-era pure v1 host (CentOS 7 style): combined hierarchies.
    pub(crate) const V1: &str = "\
24 18 0:20 / /sys/fs/cgroup ro,nosuid,nodev,noexec shared:9 - tmpfs tmpfs ro,mode=755
25 24 0:21 / /sys/fs/cgroup/systemd rw,nosuid,nodev,noexec,relatime shared:10 - cgroup cgroup rw,xattr,release_agent=/usr/lib/systemd/systemd-cgroups-agent,name=systemd
27 24 0:23 / /sys/fs/cgroup/cpu,cpuacct rw,nosuid,nodev,noexec,relatime shared:12 - cgroup cgroup rw,cpu,cpuacct
28 24 0:24 / /sys/fs/cgroup/net_cls,net_prio rw,nosuid,nodev,noexec,relatime shared:13 - cgroup cgroup rw,net_cls,net_prio
29 24 0:25 / /sys/fs/cgroup/memory rw,nosuid,nodev,noexec,relatime shared:14 - cgroup cgroup rw,memory
30 24 0:26 / /sys/fs/cgroup/pids rw,nosuid,nodev,noexec,relatime shared:15 - cgroup cgroup rw,pids
31 24 0:27 / /sys/fs/cgroup/devices rw,nosuid,nodev,noexec,relatime shared:16 - cgroup cgroup rw,devices
32 24 0:28 / /sys/fs/cgroup/freezer rw,nosuid,nodev,noexec,relatime shared:17 - cgroup cgroup rw,freezer
33 24 0:29 / /sys/fs/cgroup/blkio rw,nosuid,nodev,noexec,relatime shared:18 - cgroup cgroup rw,blkio
34 24 0:30 / /sys/fs/cgroup/cpuset rw,nosuid,nodev,noexec,relatime shared:19 - cgroup cgroup rw,cpuset,clone_children
35 24 0:31 / /sys/fs/cgroup/hugetlb rw,nosuid,nodev,noexec,relatime shared:20 - cgroup cgroup rw,hugetlb
36 24 0:32 / /sys/fs/cgroup/perf_event rw,nosuid,nodev,noexec,relatime shared:21 - cgroup cgroup rw,perf_event
";

    /// A pure v2 host (Fedora / Debian 11+ style).
    pub(crate) const V2: &str = "\
22 1 259:2 / / rw,relatime shared:1 - ext4 /dev/nvme0n1p2 rw
26 23 0:23 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:4 - cgroup2 cgroup2 rw,nsdelegate,memory_recursiveprot
";

    #[test]
    fn detects_the_hybrid_host() {
        let h = Hierarchies::detect(Path::new("/sys/fs/cgroup"), HYBRID).unwrap();
        assert_eq!(h.version(), Version::Hybrid);
        assert_eq!(h.v1_mounts().len(), 9);
        assert_eq!(
            h.v1_mount("cpuacct").unwrap().dir(),
            Path::new("/sys/fs/cgroup/cpuacct")
        );
        assert_eq!(h.v1_mount("name=systemd").unwrap().name(), "systemd");
        assert!(h.v1_mount("hugetlb").is_none());
        let u = h.unified().unwrap();
        assert_eq!(u.dir(), Path::new("/sys/fs/cgroup/unified"));
        assert_eq!(u.name(), "unified");
    }

    #[test]
    fn detects_v1_with_combined_hierarchies() {
        let h = Hierarchies::detect(Path::new("/sys/fs/cgroup"), V1).unwrap();
        assert_eq!(h.version(), Version::V1);
        let cpu = h.v1_mount("cpu").unwrap();
        assert_eq!(cpu, h.v1_mount("cpuacct").unwrap());
        assert_eq!(cpu.name(), "cpu,cpuacct");
        assert_eq!(cpu.controllers(), ["cpu", "cpuacct"]);
        // Flags and key=value options are not controllers; name= is.
        assert_eq!(h.v1_mount("cpuset").unwrap().controllers(), ["cpuset"]);
        assert_eq!(
            h.v1_mount("name=systemd").unwrap().controllers(),
            ["name=systemd"]
        );
        assert!(h.unified().is_none());
    }

    #[test]
    fn detects_v2() {
        let h = Hierarchies::detect(Path::new("/sys/fs/cgroup"), V2).unwrap();
        assert_eq!(h.version(), Version::V2);
        assert!(h.v1_mounts().is_empty());
        assert_eq!(h.unified().unwrap().dir(), Path::new("/sys/fs/cgroup"));
        assert_eq!(h.unified().unwrap().name(), "");
    }

    #[test]
    fn ignores_mounts_outside_the_root_and_duplicates() {
        let mi = format!(
            "{V2}90 22 0:23 / /var/lib/other/cgroup rw - cgroup2 cgroup2 rw\n\
             91 22 0:40 / /elsewhere/memory rw - cgroup cgroup rw,memory\n"
        );
        let h = Hierarchies::detect(Path::new("/sys/fs/cgroup"), &mi).unwrap();
        assert_eq!(h.version(), Version::V2);
        let dup = format!("{V1}99 24 0:25 / /sys/fs/cgroup/memory2 rw - cgroup cgroup rw,memory\n");
        let h = Hierarchies::detect(Path::new("/sys/fs/cgroup"), &dup).unwrap();
        assert_eq!(h.v1_mount("memory").unwrap().name(), "memory");
    }

    #[test]
    fn no_cgroup_mount_is_an_error() {
        let e = Hierarchies::detect(
            Path::new("/sys/fs/cgroup"),
            "1 0 1:1 / / rw - ext4 /dev/x rw",
        )
        .unwrap_err();
        assert!(matches!(e, Error::NoHierarchy { .. }), "{e}");
        assert!(e.to_string().contains("/sys/fs/cgroup"));
    }

    #[test]
    fn unescapes_mount_points_and_keeps_the_mount_root() {
        let mi = "5 1 0:5 /docker/abc /tmp/my\\040root/memory rw - cgroup cgroup rw,memory";
        let h = Hierarchies::detect(Path::new("/tmp/my root"), mi).unwrap();
        let m = h.v1_mount("memory").unwrap();
        assert_eq!(m.dir(), Path::new("/tmp/my root/memory"));
        assert_eq!(m.root(), "/docker/abc");
    }

    #[test]
    fn the_cached_detection_is_the_hosts_and_follows_its_fingerprint() {
        let root = Path::new("/sys/fs/cgroup");
        let (Ok(host), Some(print)) = (Hierarchies::host(), fingerprint(root)) else {
            return; // no cgroups here
        };
        let d = tempfile::tempdir().unwrap();
        let cache = d.path().join("cache");
        // Made, then read: the same as reading mountinfo.
        for _ in 0..2 {
            let h = Hierarchies::host_cached(&cache).unwrap();
            assert_eq!(h.version(), host.version());
            assert_eq!(h.v1_mounts().len(), host.v1_mounts().len());
        }
        assert!(std::fs::read_to_string(&cache).unwrap().starts_with(&print));
        // A cache of this fingerprint is believed (it is read, not mountinfo)...
        let fake = format!("{print}1 1 0:1 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n");
        std::fs::write(&cache, fake).unwrap();
        assert_eq!(
            Hierarchies::host_cached(&cache).unwrap().version(),
            Version::V2
        );
        // ...one of another is replaced.
        std::fs::write(
            &cache,
            "onggi-cgroup-mounts 2 0 0 0\n1 1 0:1 / /sys/fs/cgroup rw - cgroup2 c rw\n",
        )
        .unwrap();
        assert_eq!(
            Hierarchies::host_cached(&cache).unwrap().version(),
            host.version()
        );
        assert!(std::fs::read_to_string(&cache).unwrap().starts_with(&print));
    }

    #[test]
    fn detects_the_real_host_when_there_is_one() {
        if Path::new("/proc/self/mountinfo").exists() && Path::new("/sys/fs/cgroup").exists() {
            // Any layout will do; the point is that the real file parses.
            let _ = Hierarchies::host();
        }
    }
}
