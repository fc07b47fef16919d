//! Spec → plan: turn a bundle's `config.json` into a [`Plan`], the exact list of
//! kernel steps the container's init will take. This module is pure (it reads no
//! host state beyond the file itself), so every rule here is unit-tested without root.
//!
//! Validation happens here, before anything is created, so bad input leaves nothing
//! behind. Every error names the JSON field (`mounts[2].destination`).

use std::collections::HashMap;
use std::path::{Component, Path, PathBuf};

use nix::mount::MsFlags;
use nix::sched::CloneFlags;
use nix::sys::resource::Resource;
use oci_spec::runtime::{
    Capability, Hook, Hooks, LinuxDeviceType, LinuxIdMapping, LinuxNamespaceType, LinuxResources,
    PosixRlimitType, Process, Spec,
};

use crate::error::{invalid, Error, Result};

/// What kind of special handling a mount needs beyond `mount(2)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MountKind {
    /// A bind or rbind mount of a host path.
    Bind,
    /// `type: cgroup`: the container's own cgroup, in the form the host's version needs.
    Cgroup,
    /// `sysfs`: falls back to an rbind of /sys without a new network namespace.
    Sysfs,
    /// `mqueue`: falls back to a bind of /dev/mqueue without a new IPC namespace.
    Mqueue,
    /// Anything else, passed to mount(2) as given.
    Plain,
}

/// One entry of `mounts`, with its options parsed the way runc parses them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountStep {
    /// Index in `mounts`, for error messages.
    pub index: usize,
    /// Source (a host path for binds).
    pub source: Option<PathBuf>,
    /// Destination inside the container (absolute, normalised).
    pub destination: PathBuf,
    /// Filesystem type (`bind` for bind mounts, like runc).
    pub fstype: String,
    /// Flags for mount(2).
    pub flags: MsFlags,
    /// Filesystem-specific option string (the words that are not flags).
    pub data: String,
    /// Propagation changes applied after the mount, in order.
    pub propagation: Vec<MsFlags>,
    /// Recursive attributes to set with mount_setattr (`rro`, `rnosuid`...).
    pub rec_set: u64,
    /// Recursive attributes to clear (`rrw`, `rsuid`...).
    pub rec_clear: u64,
    /// `tmpcopyup`: copy what the image has at the destination into the new tmpfs.
    pub tmpcopyup: bool,
    /// Special handling.
    pub kind: MountKind,
    /// An idmapped bind mount (`idmap`, `ridmap`, or the mount's own mappings).
    pub idmap: Option<Idmap>,
}

/// How a bind mount is idmapped: the ids of its files are shown through a user
/// namespace with these mappings (mount_setattr(2), `MOUNT_ATTR_IDMAP`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Idmap {
    /// `ridmap`: the submounts of an `rbind` are idmapped too.
    pub recursive: bool,
    /// The mount's `uidMappings`; empty: the container's user namespace.
    pub uid_mappings: Vec<LinuxIdMapping>,
    /// The mount's `gidMappings`; empty with `uid_mappings`.
    pub gid_mappings: Vec<LinuxIdMapping>,
}

impl MountStep {
    /// A bind mount needs a remount to apply flags other than bind/rec.
    pub fn needs_bind_remount(&self) -> bool {
        self.kind == MountKind::Bind
            && !(self.flags - (MsFlags::MS_BIND | MsFlags::MS_REC | MsFlags::MS_REMOUNT)).is_empty()
    }
}

/// A device node to create under /dev.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceNode {
    /// Path inside the container (absolute).
    pub path: PathBuf,
    /// `S_IFCHR`, `S_IFBLK` or `S_IFIFO`.
    pub kind: nix::sys::stat::SFlag,
    /// Major number.
    pub major: u64,
    /// Minor number.
    pub minor: u64,
    /// Permission bits.
    pub mode: u32,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
}

/// Capabilities per set; `None` sets are left as the kernel gives them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CapsPlan {
    /// Bounding set.
    pub bounding: Option<Vec<Capability>>,
    /// Effective set.
    pub effective: Option<Vec<Capability>>,
    /// Permitted set.
    pub permitted: Option<Vec<Capability>>,
    /// Inheritable set.
    pub inheritable: Option<Vec<Capability>>,
    /// Ambient set.
    pub ambient: Option<Vec<Capability>>,
}

/// The user's process, resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcessPlan {
    /// argv; `args[0]` is resolved against the container's PATH at setup.
    pub args: Vec<String>,
    /// Environment, `KEY=value`.
    pub env: Vec<String>,
    /// Working directory (absolute).
    pub cwd: PathBuf,
    /// uid.
    pub uid: u32,
    /// gid.
    pub gid: u32,
    /// Supplementary groups.
    pub additional_gids: Vec<u32>,
    /// umask, if set.
    pub umask: Option<u32>,
    /// (resource, soft, hard).
    pub rlimits: Vec<(Resource, u64, u64)>,
    /// Give the process a pty.
    pub terminal: bool,
    /// Initial pty size (rows, cols).
    pub console_size: Option<(u16, u16)>,
    /// PR_SET_NO_NEW_PRIVS.
    pub no_new_privileges: bool,
    /// Capabilities.
    pub caps: Option<CapsPlan>,
    /// /proc/self/oom_score_adj.
    pub oom_score_adj: Option<i32>,
    /// AppArmor profile to switch to at execve.
    pub apparmor_profile: Option<String>,
    /// SELinux process label to switch to at execve.
    pub selinux_label: Option<String>,
}

/// Hooks by kind, in the order the spec defines.
#[derive(Debug, Clone, Default)]
pub struct HooksPlan {
    /// Deprecated; run with createRuntime, before it.
    pub prestart: Vec<Hook>,
    /// Runtime namespace, after the environment is made, before pivot_root.
    pub create_runtime: Vec<Hook>,
    /// Container namespace, before pivot_root.
    pub create_container: Vec<Hook>,
    /// Container namespace, just before the user's process is executed.
    pub start_container: Vec<Hook>,
    /// Runtime namespace, after start.
    pub poststart: Vec<Hook>,
    /// Runtime namespace, after delete.
    pub poststop: Vec<Hook>,
}

/// Everything the init and the parent do to build the container, in order.
#[derive(Debug, Clone)]
pub struct Plan {
    /// The bundle directory (absolute).
    pub bundle: PathBuf,
    /// The root filesystem (absolute host path).
    pub rootfs: PathBuf,
    /// Remount the root read-only at the end.
    pub readonly_root: bool,
    /// Namespaces to create (`CLONE_NEW*` for clone).
    pub new_namespaces: CloneFlags,
    /// Namespaces to join, in join order (user first, mount last).
    pub join_namespaces: Vec<(CloneFlags, PathBuf)>,
    /// uid mappings for a new user namespace.
    pub uid_mappings: Vec<LinuxIdMapping>,
    /// gid mappings for a new user namespace.
    pub gid_mappings: Vec<LinuxIdMapping>,
    /// Hostname, if set.
    pub hostname: Option<String>,
    /// Domain name, if set.
    pub domainname: Option<String>,
    /// Propagation of the container's mount tree (default rslave).
    pub rootfs_propagation: MsFlags,
    /// Mounts, in order.
    pub mounts: Vec<MountStep>,
    /// Whether /dev is ours to fill (not a bind of the host's /dev).
    pub setup_dev: bool,
    /// Device nodes (defaults, then linux.devices).
    pub devices: Vec<DeviceNode>,
    /// Paths hidden from the container.
    pub masked_paths: Vec<PathBuf>,
    /// Paths made read-only.
    pub readonly_paths: Vec<PathBuf>,
    /// Sorted sysctl key/values.
    pub sysctl: Vec<(String, String)>,
    /// The user's process, if the spec has one.
    pub process: Option<ProcessPlan>,
    /// The raw process, kept as the defaults for `exec`.
    pub raw_process: Option<Process>,
    /// Hooks.
    pub hooks: HooksPlan,
    /// linux.cgroupsPath, or `/onggi/<id>`.
    pub cgroups_path: String,
    /// linux.resources.
    pub resources: Option<LinuxResources>,
    /// linux.seccomp.
    pub seccomp: Option<oci_spec::runtime::LinuxSeccomp>,
    /// linux.mountLabel: the SELinux context of the filesystems the runtime mounts,
    /// already added to their option strings.
    pub mount_label: Option<String>,
    /// Annotations.
    pub annotations: HashMap<String, String>,
}

/// The cgroup of a container whose spec has no `linux.cgroupsPath`.
pub fn default_cgroups_path(id: &str) -> String {
    format!("/onggi/{id}")
}

/// Load `bundle/config.json`.
pub fn load_spec(bundle: &Path) -> Result<Spec> {
    let path = bundle.join("config.json");
    let data = std::fs::read(&path).map_err(|source| Error::ReadConfig {
        path: path.clone(),
        source,
    })?;
    serde_json::from_slice(&data).map_err(|source| {
        // oci-spec's typed seccomp enums only say "unknown variant" with a line and
        // column: when parsing fails, a seccomp object that explains why is named by
        // its field instead. Only on this failure path: create never pays for it.
        let v: Option<serde_json::Value> = serde_json::from_slice(&data).ok();
        let seccomp = v
            .as_ref()
            .map(|v| &v["linux"]["seccomp"])
            .filter(|s| !s.is_null());
        match seccomp.map(onggi_seccomp::check_json) {
            Some(Err(e)) => Error::Seccomp(e),
            _ => Error::ParseConfig { path, source },
        }
    })
}

/// The runc default devices: null, zero, full, random, urandom, tty.
pub fn default_devices() -> Vec<DeviceNode> {
    [
        ("null", 1, 3),
        ("zero", 1, 5),
        ("full", 1, 7),
        ("random", 1, 8),
        ("urandom", 1, 9),
        ("tty", 5, 0),
    ]
    .into_iter()
    .map(|(name, major, minor)| DeviceNode {
        path: PathBuf::from("/dev").join(name),
        kind: nix::sys::stat::SFlag::S_IFCHR,
        major,
        minor,
        mode: 0o666,
        uid: 0,
        gid: 0,
    })
    .collect()
}

/// Build the plan for container `id` from `spec`, whose bundle is `bundle` (absolute).
pub fn plan(spec: &Spec, bundle: &Path, id: &str) -> Result<Plan> {
    let root = spec
        .root()
        .as_ref()
        .ok_or_else(|| invalid("root", "missing: the spec needs a root filesystem"))?;
    let rootfs = normalize(&bundle.join(root.path()));
    // An absent `linux` sets nothing (oci-spec's Default would add every namespace,
    // masked paths and device rules).
    let linux = match spec.linux() {
        Some(l) => l.clone(),
        None => serde_json::from_str("{}").expect("an empty linux object parses"),
    };

    let (new_namespaces, join_namespaces) = namespaces(&linux)?;
    let uid_mappings = linux.uid_mappings().clone().unwrap_or_default();
    let gid_mappings = linux.gid_mappings().clone().unwrap_or_default();
    if new_namespaces.contains(CloneFlags::CLONE_NEWUSER)
        && (uid_mappings.is_empty() || gid_mappings.is_empty())
    {
        return Err(invalid(
            "linux.uidMappings",
            "a new user namespace needs uidMappings and gidMappings",
        ));
    }
    if spec.hostname().is_some()
        && !new_namespaces.contains(CloneFlags::CLONE_NEWUTS)
        && !join_namespaces
            .iter()
            .any(|(f, _)| *f == CloneFlags::CLONE_NEWUTS)
    {
        return Err(invalid(
            "hostname",
            "setting a hostname needs a uts namespace of the container's own",
        ));
    }

    let rootfs_propagation = match linux.rootfs_propagation().as_deref() {
        None | Some("") => MsFlags::MS_SLAVE | MsFlags::MS_REC,
        Some(p) => propagation_flag(p).ok_or_else(|| {
            invalid(
                "linux.rootfsPropagation",
                format!("unknown propagation {p:?}"),
            )
        })?,
    };

    let mut mounts = Vec::new();
    let user_ns = new_namespaces.contains(CloneFlags::CLONE_NEWUSER)
        || join_namespaces
            .iter()
            .any(|(f, _)| *f == CloneFlags::CLONE_NEWUSER);
    for (i, m) in spec.mounts().iter().flatten().enumerate() {
        let mut step = mount_step(
            i,
            m.destination(),
            m.typ().as_deref(),
            m.source().as_deref(),
            m.options().as_deref().unwrap_or(&[]),
            bundle,
        )?;
        attach_mount_mappings(&mut step, m, user_ns)?;
        mounts.push(step);
    }
    let mount_label = linux.mount_label().clone().filter(|l| !l.is_empty());
    if let Some(label) = &mount_label {
        for m in &mut mounts {
            label_mount(m, label);
        }
    }
    let setup_dev = !mounts
        .iter()
        .any(|m| m.destination == Path::new("/dev") && m.kind == MountKind::Bind);

    let mut devices = if setup_dev {
        default_devices()
    } else {
        Vec::new()
    };
    for (i, d) in linux.devices().iter().flatten().enumerate() {
        let field = format!("linux.devices[{i}]");
        let path = absolute(d.path(), &format!("{field}.path"))?;
        use nix::sys::stat::SFlag;
        let kind = match d.typ() {
            LinuxDeviceType::C | LinuxDeviceType::U => SFlag::S_IFCHR,
            LinuxDeviceType::B => SFlag::S_IFBLK,
            LinuxDeviceType::P => SFlag::S_IFIFO,
            LinuxDeviceType::A => {
                return Err(invalid(
                    format!("{field}.type"),
                    "type \"a\" is only valid in cgroup device rules",
                ))
            }
        };
        if d.major() < 0 || d.minor() < 0 {
            return Err(invalid(
                format!("{field}.major"),
                "major and minor must not be negative",
            ));
        }
        let node = DeviceNode {
            path,
            kind,
            major: d.major() as u64,
            minor: d.minor() as u64,
            mode: d.file_mode().unwrap_or(0o666) & 0o7777,
            uid: d.uid().unwrap_or(0),
            gid: d.gid().unwrap_or(0),
        };
        devices.retain(|x| x.path != node.path);
        devices.push(node);
    }

    let masked_paths = paths_field(linux.masked_paths(), "linux.maskedPaths")?;
    let readonly_paths = paths_field(linux.readonly_paths(), "linux.readonlyPaths")?;
    let mut sysctl: Vec<(String, String)> = linux
        .sysctl()
        .clone()
        .unwrap_or_default()
        .into_iter()
        .collect();
    sysctl.sort();
    for (k, _) in &sysctl {
        if k.is_empty() || k.contains("..") || k.starts_with('/') {
            return Err(invalid(format!("linux.sysctl.{k}"), "not a sysctl key"));
        }
    }

    let process = spec.process().as_ref().map(process_plan).transpose()?;
    let resources = linux
        .resources()
        .clone()
        .map(|r| with_default_device_rules(r, &devices));
    let hooks = hooks_plan(spec.hooks().as_ref())?;
    let cgroups_path = match linux.cgroups_path() {
        Some(p) if !p.as_os_str().is_empty() => p.to_string_lossy().into_owned(),
        _ => default_cgroups_path(id),
    };

    Ok(Plan {
        bundle: bundle.to_path_buf(),
        rootfs,
        readonly_root: root.readonly().unwrap_or(false),
        new_namespaces,
        join_namespaces,
        uid_mappings,
        gid_mappings,
        hostname: spec.hostname().clone(),
        domainname: spec.domainname().clone(),
        rootfs_propagation,
        mounts,
        setup_dev,
        devices,
        masked_paths,
        readonly_paths,
        sysctl,
        process,
        raw_process: spec.process().clone(),
        hooks,
        cgroups_path,
        resources,
        seccomp: linux.seccomp().clone(),
        mount_label,
        annotations: spec.annotations().clone().unwrap_or_default(),
    })
}

/// runc's device cgroup policy: after the spec's own rules, allow mknod of any node,
/// the default devices, ptys and tun, and every device the spec creates (so that a
/// spec that denies all devices still gets a working /dev).
fn with_default_device_rules(mut r: LinuxResources, created: &[DeviceNode]) -> LinuxResources {
    use oci_spec::runtime::LinuxDeviceCgroup;
    let Some(mut rules) = r.devices().clone() else {
        return r;
    };
    let rule = |typ: LinuxDeviceType, major: Option<i64>, minor: Option<i64>, access: &str| {
        let mut d = LinuxDeviceCgroup::default();
        d.set_allow(true);
        d.set_typ(Some(typ));
        d.set_major(major);
        d.set_minor(minor);
        d.set_access(Some(access.to_string()));
        d
    };
    use LinuxDeviceType::{B, C};
    rules.push(rule(C, None, None, "m"));
    rules.push(rule(B, None, None, "m"));
    for (major, minor) in [
        (1, Some(3)),
        (1, Some(5)),
        (1, Some(7)),
        (1, Some(8)),
        (1, Some(9)),
        (5, Some(0)),
        (5, Some(1)),
        (5, Some(2)),
        (136, None),
        (10, Some(200)),
    ] {
        rules.push(rule(C, Some(major), minor, "rwm"));
    }
    for d in created {
        let typ = if d.kind == nix::sys::stat::SFlag::S_IFBLK {
            B
        } else {
            C
        };
        if d.kind != nix::sys::stat::SFlag::S_IFIFO {
            rules.push(rule(typ, Some(d.major as i64), Some(d.minor as i64), "rwm"));
        }
    }
    r.set_devices(Some(rules));
    r
}

fn namespace_flag(t: LinuxNamespaceType) -> CloneFlags {
    match t {
        LinuxNamespaceType::Mount => CloneFlags::CLONE_NEWNS,
        LinuxNamespaceType::Cgroup => CloneFlags::CLONE_NEWCGROUP,
        LinuxNamespaceType::Uts => CloneFlags::CLONE_NEWUTS,
        LinuxNamespaceType::Ipc => CloneFlags::CLONE_NEWIPC,
        LinuxNamespaceType::User => CloneFlags::CLONE_NEWUSER,
        LinuxNamespaceType::Pid => CloneFlags::CLONE_NEWPID,
        LinuxNamespaceType::Network => CloneFlags::CLONE_NEWNET,
        LinuxNamespaceType::Time => crate::init::CLONE_NEWTIME,
    }
}

/// The order in which namespaces are joined: user first (it grants the capabilities
/// for the others), mount last (it changes the root the other paths resolve in).
fn join_rank(f: CloneFlags) -> u8 {
    [
        CloneFlags::CLONE_NEWUSER,
        CloneFlags::CLONE_NEWIPC,
        CloneFlags::CLONE_NEWUTS,
        CloneFlags::CLONE_NEWNET,
        CloneFlags::CLONE_NEWPID,
        CloneFlags::CLONE_NEWCGROUP,
        crate::init::CLONE_NEWTIME,
        CloneFlags::CLONE_NEWNS,
    ]
    .iter()
    .position(|x| *x == f)
    .unwrap_or(0) as u8
}

fn namespaces(
    linux: &oci_spec::runtime::Linux,
) -> Result<(CloneFlags, Vec<(CloneFlags, PathBuf)>)> {
    let mut new = CloneFlags::empty();
    let mut join = Vec::new();
    let mut seen = CloneFlags::empty();
    for (i, ns) in linux.namespaces().iter().flatten().enumerate() {
        let flag = namespace_flag(ns.typ());
        if seen.contains(flag) {
            return Err(invalid(
                format!("linux.namespaces[{i}]"),
                format!("namespace {} is listed twice", ns.typ()),
            ));
        }
        seen |= flag;
        match ns.path() {
            Some(p) if !p.as_os_str().is_empty() => {
                join.push((flag, absolute(p, &format!("linux.namespaces[{i}].path"))?));
            }
            _ => new |= flag,
        }
    }
    join.sort_by_key(|(f, _)| join_rank(*f));
    Ok((new, join))
}

/// A propagation word as mount flags.
pub fn propagation_flag(word: &str) -> Option<MsFlags> {
    Some(match word {
        "private" => MsFlags::MS_PRIVATE,
        "rprivate" => MsFlags::MS_PRIVATE | MsFlags::MS_REC,
        "shared" => MsFlags::MS_SHARED,
        "rshared" => MsFlags::MS_SHARED | MsFlags::MS_REC,
        "slave" => MsFlags::MS_SLAVE,
        "rslave" => MsFlags::MS_SLAVE | MsFlags::MS_REC,
        "unbindable" => MsFlags::MS_UNBINDABLE,
        "runbindable" => MsFlags::MS_UNBINDABLE | MsFlags::MS_REC,
        _ => return None,
    })
}

/// MS_NOSYMFOLLOW (Linux 5.10), which nix does not name.
pub const MS_NOSYMFOLLOW: MsFlags = MsFlags::from_bits_retain(256);

/// A flag word: (clear?, flag), as runc's `mountFlags` table.
fn flag_word(word: &str) -> Option<(bool, MsFlags)> {
    use MsFlags as M;
    Some(match word {
        "acl" => (false, M::MS_POSIXACL),
        "noacl" => (true, M::MS_POSIXACL),
        "async" => (true, M::MS_SYNCHRONOUS),
        "atime" => (true, M::MS_NOATIME),
        "bind" => (false, M::MS_BIND),
        "defaults" => (false, M::empty()),
        "dev" => (true, M::MS_NODEV),
        "diratime" => (true, M::MS_NODIRATIME),
        "dirsync" => (false, M::MS_DIRSYNC),
        "exec" => (true, M::MS_NOEXEC),
        "iversion" => (false, M::MS_I_VERSION),
        "lazytime" => (false, M::MS_LAZYTIME),
        "loud" => (true, M::MS_SILENT),
        "mand" => (false, M::MS_MANDLOCK),
        "noatime" => (false, M::MS_NOATIME),
        "nodev" => (false, M::MS_NODEV),
        "nodiratime" => (false, M::MS_NODIRATIME),
        "noexec" => (false, M::MS_NOEXEC),
        "noiversion" => (true, M::MS_I_VERSION),
        "nolazytime" => (true, M::MS_LAZYTIME),
        "nomand" => (true, M::MS_MANDLOCK),
        "norelatime" => (true, M::MS_RELATIME),
        "nostrictatime" => (true, M::MS_STRICTATIME),
        "nosuid" => (false, M::MS_NOSUID),
        "nosymfollow" => (false, MS_NOSYMFOLLOW),
        "symfollow" => (true, MS_NOSYMFOLLOW),
        "rbind" => (false, M::MS_BIND | M::MS_REC),
        "relatime" => (false, M::MS_RELATIME),
        "remount" => (false, M::MS_REMOUNT),
        "ro" => (false, M::MS_RDONLY),
        "rw" => (true, M::MS_RDONLY),
        "silent" => (false, M::MS_SILENT),
        "strictatime" => (false, M::MS_STRICTATIME),
        "suid" => (true, M::MS_NOSUID),
        "sync" => (false, M::MS_SYNCHRONOUS),
        _ => return None,
    })
}

/// A recursive attribute word (`rro`, `rnosuid`...): (clear?, MOUNT_ATTR_*).
fn rec_word(word: &str) -> Option<(bool, u64)> {
    use onggi_sys::mount_attr as A;
    Some(match word {
        "rro" => (false, A::RDONLY),
        "rrw" => (true, A::RDONLY),
        "rnosuid" => (false, A::NOSUID),
        "rsuid" => (true, A::NOSUID),
        "rnodev" => (false, A::NODEV),
        "rdev" => (true, A::NODEV),
        "rnoexec" => (false, A::NOEXEC),
        "rexec" => (true, A::NOEXEC),
        "rnodiratime" => (false, A::NODIRATIME),
        "rdiratime" => (true, A::NODIRATIME),
        "rrelatime" => (false, A::RELATIME),
        "rnorelatime" => (true, A::RELATIME),
        "rnoatime" => (false, A::NOATIME),
        "ratime" => (true, A::NOATIME),
        "rstrictatime" => (false, A::STRICTATIME),
        "rnostrictatime" => (true, A::STRICTATIME),
        "rnosymfollow" => (false, A::NOSYMFOLLOW),
        "rsymfollow" => (true, A::NOSYMFOLLOW),
        _ => return None,
    })
}

/// Parse one `mounts[i]` entry.
pub fn mount_step(
    index: usize,
    destination: &Path,
    typ: Option<&str>,
    source: Option<&Path>,
    options: &[String],
    bundle: &Path,
) -> Result<MountStep> {
    let field = format!("mounts[{index}]");
    let destination = absolute(destination, &format!("{field}.destination"))?;
    let mut flags = MsFlags::empty();
    let mut data: Vec<&str> = Vec::new();
    let mut propagation = Vec::new();
    let (mut rec_set, mut rec_clear) = (0u64, 0u64);
    let mut tmpcopyup = false;
    let mut idmap = None;
    for word in options {
        if let Some((clear, f)) = flag_word(word) {
            if clear {
                flags.remove(f)
            } else {
                flags.insert(f)
            }
        } else if let Some(p) = propagation_flag(word) {
            propagation.push(p);
        } else if let Some((clear, attr)) = rec_word(word) {
            // The atime settings are one field: setting one clears the others.
            if attr & onggi_sys::mount_attr::ATIME_MASK != 0
                || attr == onggi_sys::mount_attr::RELATIME
            {
                rec_clear |= onggi_sys::mount_attr::ATIME_MASK;
            }
            if clear {
                rec_clear |= attr;
                rec_set &= !attr;
            } else {
                rec_set |= attr;
            }
        } else if word == "tmpcopyup" {
            tmpcopyup = true;
        } else if word == "idmap" || word == "ridmap" {
            idmap = Some(Idmap {
                recursive: word == "ridmap",
                uid_mappings: Vec::new(),
                gid_mappings: Vec::new(),
            });
        } else {
            data.push(word);
        }
    }
    let typ = typ.unwrap_or("");
    let is_bind = flags.contains(MsFlags::MS_BIND) || typ == "bind";
    if is_bind {
        flags.insert(MsFlags::MS_BIND);
    }
    let kind = if is_bind {
        MountKind::Bind
    } else {
        match typ {
            "cgroup" | "cgroup2" => MountKind::Cgroup,
            "sysfs" => MountKind::Sysfs,
            "mqueue" => MountKind::Mqueue,
            "" => {
                return Err(invalid(
                    format!("{field}.type"),
                    "missing: a mount that is not a bind needs a filesystem type",
                ))
            }
            _ => MountKind::Plain,
        }
    };
    let source = source.map(|s| {
        // A relative bind source is relative to the bundle, as runc does.
        if is_bind && s.is_relative() {
            bundle.join(s)
        } else {
            s.to_path_buf()
        }
    });
    if is_bind && source.as_ref().is_none_or(|s| s.as_os_str().is_empty()) {
        return Err(invalid(
            format!("{field}.source"),
            "missing: a bind mount needs a source",
        ));
    }
    if idmap.is_some() && !is_bind {
        return Err(invalid(
            format!("{field}.options"),
            "idmap and ridmap apply to bind mounts only",
        ));
    }
    if tmpcopyup && typ != "tmpfs" {
        return Err(invalid(
            format!("{field}.options"),
            "tmpcopyup applies to tmpfs mounts only",
        ));
    }
    Ok(MountStep {
        index,
        source,
        destination,
        fstype: if is_bind {
            "bind".to_string()
        } else {
            typ.to_string()
        },
        flags,
        data: data.join(","),
        propagation,
        rec_set,
        rec_clear,
        tmpcopyup,
        kind,
        idmap,
    })
}

/// The mount's own `uidMappings`/`gidMappings` for an idmapped bind mount (with or
/// without the `idmap` word, as runc); without them, the container's user namespace,
/// which it must then have.
fn attach_mount_mappings(
    step: &mut MountStep,
    m: &oci_spec::runtime::Mount,
    user_ns: bool,
) -> Result<()> {
    let field = format!("mounts[{}]", step.index);
    let uids = m.uid_mappings().clone().unwrap_or_default();
    let gids = m.gid_mappings().clone().unwrap_or_default();
    if uids.is_empty() != gids.is_empty() {
        return Err(invalid(
            format!("{field}.uidMappings"),
            "uidMappings and gidMappings go together: give both or neither",
        ));
    }
    if !uids.is_empty() {
        if step.kind != MountKind::Bind {
            return Err(invalid(
                format!("{field}.uidMappings"),
                "only bind mounts can be idmapped",
            ));
        }
        let idmap = step.idmap.get_or_insert(Idmap {
            recursive: false,
            uid_mappings: Vec::new(),
            gid_mappings: Vec::new(),
        });
        idmap.uid_mappings = uids;
        idmap.gid_mappings = gids;
    } else if step.idmap.is_some() && !user_ns {
        return Err(invalid(
            format!("{field}.options"),
            "idmap without the mount's own uidMappings/gidMappings maps through the \
             container's user namespace, and the container has none",
        ));
    }
    Ok(())
}

/// Add the SELinux `context=` option for `linux.mountLabel` to a filesystem the
/// runtime makes (tmpfs, devpts, mqueue), as runc does; binds, proc, sysfs and
/// cgroup keep their own labels.
fn label_mount(m: &mut MountStep, label: &str) {
    if matches!(m.fstype.as_str(), "tmpfs" | "devpts" | "mqueue") {
        let context = format!("context=\"{label}\"");
        m.data = if m.data.is_empty() {
            context
        } else {
            format!("{},{context}", m.data)
        };
    }
}

fn rlimit_resource(t: PosixRlimitType) -> Resource {
    match t {
        PosixRlimitType::RlimitCpu => Resource::RLIMIT_CPU,
        PosixRlimitType::RlimitFsize => Resource::RLIMIT_FSIZE,
        PosixRlimitType::RlimitData => Resource::RLIMIT_DATA,
        PosixRlimitType::RlimitStack => Resource::RLIMIT_STACK,
        PosixRlimitType::RlimitCore => Resource::RLIMIT_CORE,
        PosixRlimitType::RlimitRss => Resource::RLIMIT_RSS,
        PosixRlimitType::RlimitNproc => Resource::RLIMIT_NPROC,
        PosixRlimitType::RlimitNofile => Resource::RLIMIT_NOFILE,
        PosixRlimitType::RlimitMemlock => Resource::RLIMIT_MEMLOCK,
        PosixRlimitType::RlimitAs => Resource::RLIMIT_AS,
        PosixRlimitType::RlimitLocks => Resource::RLIMIT_LOCKS,
        PosixRlimitType::RlimitSigpending => Resource::RLIMIT_SIGPENDING,
        PosixRlimitType::RlimitMsgqueue => Resource::RLIMIT_MSGQUEUE,
        PosixRlimitType::RlimitNice => Resource::RLIMIT_NICE,
        PosixRlimitType::RlimitRtprio => Resource::RLIMIT_RTPRIO,
        PosixRlimitType::RlimitRttime => Resource::RLIMIT_RTTIME,
    }
}

/// Resolve the `process` object (also used by `exec --process`).
pub fn process_plan(p: &Process) -> Result<ProcessPlan> {
    let args = p.args().clone().unwrap_or_default();
    if args.is_empty() || args[0].is_empty() {
        return Err(invalid(
            "process.args",
            "must have at least one element, the program to run",
        ));
    }
    let cwd = absolute(p.cwd(), "process.cwd")?;
    let mut rlimits = Vec::new();
    for (i, r) in p.rlimits().iter().flatten().enumerate() {
        if r.soft() > r.hard() {
            return Err(invalid(
                format!("process.rlimits[{i}]"),
                format!("soft limit {} is above hard limit {}", r.soft(), r.hard()),
            ));
        }
        rlimits.push((rlimit_resource(r.typ()), r.soft(), r.hard()));
    }
    if let Some(adj) = p.oom_score_adj() {
        if !(-1000..=1000).contains(&adj) {
            return Err(invalid(
                "process.oomScoreAdj",
                format!("{adj} is outside -1000..1000"),
            ));
        }
    }
    let caps = p.capabilities().as_ref().map(|c| {
        let v = |s: &Option<oci_spec::runtime::Capabilities>| {
            s.as_ref().map(|set| {
                let mut v: Vec<Capability> = set.iter().copied().collect();
                v.sort_by_key(|c| c.to_string());
                v
            })
        };
        CapsPlan {
            bounding: v(c.bounding()),
            effective: v(c.effective()),
            permitted: v(c.permitted()),
            inheritable: v(c.inheritable()),
            ambient: v(c.ambient()),
        }
    });
    Ok(ProcessPlan {
        args,
        env: p.env().clone().unwrap_or_default(),
        cwd,
        uid: p.user().uid(),
        gid: p.user().gid(),
        additional_gids: p.user().additional_gids().clone().unwrap_or_default(),
        umask: p.user().umask(),
        rlimits,
        terminal: p.terminal().unwrap_or(false),
        console_size: p
            .console_size()
            .map(|b| (b.height() as u16, b.width() as u16)),
        no_new_privileges: p.no_new_privileges().unwrap_or(false),
        caps,
        oom_score_adj: p.oom_score_adj(),
        apparmor_profile: p.apparmor_profile().clone().filter(|s| !s.is_empty()),
        selinux_label: p.selinux_label().clone().filter(|s| !s.is_empty()),
    })
}

fn hooks_plan(h: Option<&Hooks>) -> Result<HooksPlan> {
    let Some(h) = h else {
        return Ok(HooksPlan::default());
    };
    let list = |v: &Option<Vec<Hook>>, name: &str| -> Result<Vec<Hook>> {
        let v = v.clone().unwrap_or_default();
        for (i, hook) in v.iter().enumerate() {
            absolute(hook.path(), &format!("hooks.{name}[{i}].path"))?;
            if hook.timeout().is_some_and(|t| t <= 0) {
                return Err(invalid(
                    format!("hooks.{name}[{i}].timeout"),
                    "must be greater than zero",
                ));
            }
        }
        Ok(v)
    };
    #[allow(deprecated)]
    let prestart = list(h.prestart(), "prestart")?;
    Ok(HooksPlan {
        prestart,
        create_runtime: list(h.create_runtime(), "createRuntime")?,
        create_container: list(h.create_container(), "createContainer")?,
        start_container: list(h.start_container(), "startContainer")?,
        poststart: list(h.poststart(), "poststart")?,
        poststop: list(h.poststop(), "poststop")?,
    })
}

fn paths_field(v: &Option<Vec<String>>, field: &str) -> Result<Vec<PathBuf>> {
    v.iter()
        .flatten()
        .enumerate()
        .map(|(i, p)| absolute(Path::new(p), &format!("{field}[{i}]")))
        .collect()
}

/// Require an absolute path and normalise it lexically (`.` and `..` removed, `..`
/// never climbing above `/`).
fn absolute(p: &Path, field: &str) -> Result<PathBuf> {
    if !p.is_absolute() {
        return Err(invalid(
            field,
            format!("{} is relative; an absolute path is required", p.display()),
        ));
    }
    Ok(normalize(p))
}

/// Lexical normalisation of an absolute path.
pub fn normalize(p: &Path) -> PathBuf {
    let mut out = PathBuf::from("/");
    for c in p.components() {
        match c {
            Component::Normal(n) => out.push(n),
            Component::ParentDir => {
                out.pop();
            }
            _ => {}
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(json: &str) -> Spec {
        serde_json::from_str(json).unwrap()
    }

    const BASE: &str = r#"{"ociVersion":"1.0.2","root":{"path":"rootfs","readonly":true},
        "process":{"args":["sh"],"cwd":"/","user":{"uid":1,"gid":2,"additionalGids":[3]},
          "rlimits":[{"type":"RLIMIT_NOFILE","hard":1024,"soft":512}],"env":["A=b"]},
        "hostname":"h",
        "mounts":[{"destination":"/proc","type":"proc","source":"proc"},
                  {"destination":"/dev","type":"tmpfs","source":"tmpfs","options":["nosuid","strictatime","mode=755","size=65536k"]},
                  {"destination":"/data","type":"bind","source":"data","options":["rbind","ro","rprivate","nosymfollow"]}],
        "linux":{"namespaces":[{"type":"pid"},{"type":"mount"},{"type":"uts"},{"type":"network","path":"/proc/1/ns/net"},{"type":"user","path":"/proc/1/ns/user"}],
                 "devices":[{"path":"/dev/fuse","type":"c","major":10,"minor":229}],
                 "sysctl":{"net.ipv4.ip_forward":"1"}}}"#;

    #[test]
    fn mount_label_goes_to_the_filesystems_the_runtime_makes() {
        let mut v: serde_json::Value = serde_json::from_str(BASE).unwrap();
        v["linux"]["mountLabel"] = "system_u:object_r:container_file_t:s0".into();
        let p = plan(&serde_json::from_value(v).unwrap(), Path::new("/b"), "c1").unwrap();
        assert_eq!(
            p.mount_label.as_deref(),
            Some("system_u:object_r:container_file_t:s0")
        );
        assert_eq!(p.mounts[0].data, "", "proc keeps its own label");
        assert_eq!(
            p.mounts[1].data,
            "mode=755,size=65536k,context=\"system_u:object_r:container_file_t:s0\""
        );
        assert_eq!(p.mounts[2].data, "", "a bind keeps its source's label");
        let p = plan(&spec(BASE), Path::new("/b"), "c1").unwrap();
        assert_eq!(p.mounts[1].data, "mode=755,size=65536k");
    }

    #[test]
    fn plan_of_a_typical_spec() {
        let p = plan(&spec(BASE), Path::new("/b"), "c1").unwrap();
        assert_eq!(p.rootfs, PathBuf::from("/b/rootfs"));
        assert!(p.readonly_root);
        assert_eq!(
            p.new_namespaces,
            CloneFlags::CLONE_NEWPID | CloneFlags::CLONE_NEWNS | CloneFlags::CLONE_NEWUTS
        );
        // user is joined before net.
        assert_eq!(p.join_namespaces[0].0, CloneFlags::CLONE_NEWUSER);
        assert_eq!(p.join_namespaces[1].0, CloneFlags::CLONE_NEWNET);
        assert_eq!(p.cgroups_path, "/onggi/c1");
        assert_eq!(p.rootfs_propagation, MsFlags::MS_SLAVE | MsFlags::MS_REC);
        let dev = &p.mounts[1];
        assert_eq!(dev.flags, MsFlags::MS_NOSUID | MsFlags::MS_STRICTATIME);
        assert_eq!(dev.data, "mode=755,size=65536k");
        let data = &p.mounts[2];
        assert_eq!(data.kind, MountKind::Bind);
        assert_eq!(data.source.as_deref(), Some(Path::new("/b/data")));
        assert!(data
            .flags
            .contains(MsFlags::MS_BIND | MsFlags::MS_REC | MsFlags::MS_RDONLY | MS_NOSYMFOLLOW));
        assert_eq!(
            data.propagation,
            vec![MsFlags::MS_PRIVATE | MsFlags::MS_REC]
        );
        assert!(data.needs_bind_remount());
        assert!(p.setup_dev);
        assert_eq!(p.devices.len(), 7);
        assert_eq!(p.devices[6].path, PathBuf::from("/dev/fuse"));
        let proc_ = p.process.unwrap();
        assert_eq!(
            (proc_.uid, proc_.gid, proc_.additional_gids.clone()),
            (1, 2, vec![3])
        );
        assert_eq!(proc_.rlimits, vec![(Resource::RLIMIT_NOFILE, 512, 1024)]);
        assert_eq!(p.sysctl, vec![("net.ipv4.ip_forward".into(), "1".into())]);
    }

    #[test]
    fn every_option_word_class() {
        let opts: Vec<String> = [
            "rro",
            "rnoatime",
            "rnosuid",
            "tmpcopyup",
            "size=1m",
            "shared",
            "rw",
            "noexec",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let m = mount_step(
            0,
            Path::new("/t"),
            Some("tmpfs"),
            Some(Path::new("tmpfs")),
            &opts,
            Path::new("/b"),
        )
        .unwrap();
        use onggi_sys::mount_attr as A;
        assert_eq!(m.rec_set, A::RDONLY | A::NOATIME | A::NOSUID);
        assert_eq!(m.rec_clear, A::ATIME_MASK);
        assert!(m.tmpcopyup);
        assert_eq!(m.data, "size=1m");
        assert_eq!(m.flags, MsFlags::MS_NOEXEC);
        assert_eq!(m.propagation, vec![MsFlags::MS_SHARED]);
        // Every word the features document advertises is understood (not passed as data);
        // the idmap words apply to bind mounts only.
        for w in crate::features::MOUNT_OPTIONS {
            let r = mount_step(
                0,
                Path::new("/t"),
                Some("tmpfs"),
                Some(Path::new("/src")),
                &[w.to_string()],
                Path::new("/b"),
            );
            match *w {
                "idmap" | "ridmap" => assert!(r.unwrap_err().to_string().contains("bind")),
                _ => assert_eq!(r.unwrap().data, "", "{w} fell through to data"),
            }
        }
    }

    #[test]
    fn bad_input_names_the_field() {
        let cases = [
            (
                r#"{"ociVersion":"1","process":{"user":{"uid":0,"gid":0},"args":["sh"],"cwd":"/"}}"#,
                "root",
            ),
            (
                r#"{"ociVersion":"1","root":{"path":"r"},"mounts":[{"destination":"rel","type":"tmpfs"}]}"#,
                "mounts[0].destination",
            ),
            (
                r#"{"ociVersion":"1","root":{"path":"r"},"mounts":[{"destination":"/x","type":"bind"}]}"#,
                "mounts[0].source",
            ),
            (
                r#"{"ociVersion":"1","root":{"path":"r"},"process":{"user":{"uid":0,"gid":0},"args":["sh"],"cwd":"rel"}}"#,
                "process.cwd",
            ),
            (
                r#"{"ociVersion":"1","root":{"path":"r"},"process":{"user":{"uid":0,"gid":0},"args":[],"cwd":"/"}}"#,
                "process.args",
            ),
            (
                r#"{"ociVersion":"1","root":{"path":"r"},"linux":{"namespaces":[{"type":"pid"},{"type":"pid"}]}}"#,
                "linux.namespaces[1]",
            ),
            (
                r#"{"ociVersion":"1","root":{"path":"r"},"linux":{"namespaces":[{"type":"network","path":"rel/ns"}]}}"#,
                "linux.namespaces[0].path",
            ),
            (
                r#"{"ociVersion":"1","root":{"path":"r"},"linux":{"namespaces":[{"type":"user"}]}}"#,
                "linux.uidMappings",
            ),
            (
                r#"{"ociVersion":"1","root":{"path":"r"},"hostname":"x"}"#,
                "hostname",
            ),
            (
                r#"{"ociVersion":"1","root":{"path":"r"},"linux":{"rootfsPropagation":"sideways"}}"#,
                "linux.rootfsPropagation",
            ),
            (
                r#"{"ociVersion":"1","root":{"path":"r"},"hooks":{"poststart":[{"path":"rel"}]}}"#,
                "hooks.poststart[0].path",
            ),
            (
                r#"{"ociVersion":"1","root":{"path":"r"},"process":{"user":{"uid":0,"gid":0},"args":["x"],"cwd":"/","rlimits":[{"type":"RLIMIT_NOFILE","soft":2,"hard":1}]}}"#,
                "process.rlimits[0]",
            ),
            (
                r#"{"ociVersion":"1","root":{"path":"r"},"linux":{"maskedPaths":["proc/kcore"]}}"#,
                "linux.maskedPaths[0]",
            ),
        ];
        for (json, field) in cases {
            let err = plan(&spec(json), Path::new("/b"), "c")
                .unwrap_err()
                .to_string();
            assert!(err.contains(field), "{field}: {err}");
        }
    }

    #[test]
    fn unknown_namespace_type_is_a_parse_error_naming_it() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::write(
            tmp.path().join("config.json"),
            r#"{"ociVersion":"1","root":{"path":"r"},"linux":{"namespaces":[{"type":"bogus"}]}}"#,
        )
        .unwrap();
        let err = load_spec(tmp.path()).unwrap_err().to_string();
        assert!(
            err.contains("config.json") && err.contains("bogus"),
            "{err}"
        );
        std::fs::write(tmp.path().join("config.json"), "not json").unwrap();
        assert!(load_spec(tmp.path())
            .unwrap_err()
            .to_string()
            .contains("config.json"));
        let missing = load_spec(&tmp.path().join("nope")).unwrap_err().to_string();
        assert!(missing.contains("nope/config.json"), "{missing}");
    }

    #[test]
    fn an_unknown_seccomp_action_is_named_by_its_field() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::write(
            tmp.path().join("config.json"),
            r#"{"ociVersion":"1","root":{"path":"r"},"linux":{"seccomp":{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":["mkdir"],"action":"SCMP_ACT_BOGUS"}]}}}"#,
        )
        .unwrap();
        let err = load_spec(tmp.path()).unwrap_err().to_string();
        assert!(
            err.contains("linux.seccomp.syscalls[0].action") && err.contains("SCMP_ACT_BOGUS"),
            "{err}"
        );
    }

    #[test]
    fn normalize_never_climbs_above_root() {
        assert_eq!(
            normalize(Path::new("/a/../../b/./c")),
            PathBuf::from("/b/c")
        );
    }
}
