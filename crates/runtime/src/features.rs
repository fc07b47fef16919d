//! The runtime-spec "features" document that `onggi-runtime features` prints.
//!
//! The document tells a caller (containerd, CRI-O, podman) which parts of the runtime spec this
//! runtime implements, so it can refuse a configuration up front instead of failing mid-create.
//! Its shape is defined in the runtime-spec's `features.md`
//! (<https://github.com/opencontainers/runtime-spec/blob/main/features.md>); the values follow
//! `runc features` where onggi does the same thing and say `false` where it does not yet (no
//! seccomp, `AppArmor`, `SELinux`, Intel RDT, systemd cgroups or idmapped mounts).
//!
//! [`MOUNT_OPTIONS`] is the one list of mount option words onggi accepts: the document prints it
//! and the mount option parser checks against it, so the two cannot disagree.

use serde_json::{json, Value};

/// The oldest runtime-spec version whose configurations onggi accepts.
pub const OCI_VERSION_MIN: &str = "1.0.0";

/// The newest runtime-spec version whose configurations onggi accepts.
pub const OCI_VERSION_MAX: &str = "1.2.0";

/// Every mount option word onggi accepts in a `config.json` mount, sorted.
///
/// This is runc 1.1.5's list (`specconv.KnownMountOptions()`: the keys of `mountFlags`,
/// `mountPropagationMapping`, `recAttrFlags` and `extensionFlags`) plus runc 1.2's `idmap` and
/// `ridmap`. Options with a value (`mode=755`, `size=65536k`) are not listed: they go to the
/// filesystem as mount data.
pub const MOUNT_OPTIONS: &[&str] = &[
    "acl",
    "async",
    "atime",
    "bind",
    "defaults",
    "dev",
    "diratime",
    "dirsync",
    "exec",
    "idmap",
    "iversion",
    "lazytime",
    "loud",
    "mand",
    "noacl",
    "noatime",
    "nodev",
    "nodiratime",
    "noexec",
    "noiversion",
    "nolazytime",
    "nomand",
    "norelatime",
    "nostrictatime",
    "nosuid",
    "nosymfollow",
    "private",
    "ratime",
    "rbind",
    "rdev",
    "rdiratime",
    "relatime",
    "remount",
    "rexec",
    "ridmap",
    "rnoatime",
    "rnodev",
    "rnodiratime",
    "rnoexec",
    "rnorelatime",
    "rnostrictatime",
    "rnosuid",
    "rnosymfollow",
    "ro",
    "rprivate",
    "rrelatime",
    "rro",
    "rrw",
    "rshared",
    "rslave",
    "rstrictatime",
    "rsuid",
    "rsymfollow",
    "runbindable",
    "rw",
    "shared",
    "silent",
    "slave",
    "strictatime",
    "suid",
    "symfollow",
    "sync",
    "tmpcopyup",
    "unbindable",
];

/// The lifecycle hooks onggi runs, in the order the runtime spec runs them.
pub const HOOKS: &[&str] = &[
    "prestart",
    "createRuntime",
    "createContainer",
    "startContainer",
    "poststart",
    "poststop",
];

/// The namespace types a configuration may ask for, by their runtime-spec names, sorted.
pub const NAMESPACES: &[&str] = &[
    "cgroup", "ipc", "mount", "network", "pid", "time", "user", "uts",
];

/// Every capability Linux 6.x defines, in kernel number order (`CAP_CHOWN` is 0,
/// `CAP_CHECKPOINT_RESTORE` is 40; see capabilities(7)).
pub const CAPABILITIES: &[&str] = &[
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_DAC_READ_SEARCH",
    "CAP_FOWNER",
    "CAP_FSETID",
    "CAP_KILL",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETPCAP",
    "CAP_LINUX_IMMUTABLE",
    "CAP_NET_BIND_SERVICE",
    "CAP_NET_BROADCAST",
    "CAP_NET_ADMIN",
    "CAP_NET_RAW",
    "CAP_IPC_LOCK",
    "CAP_IPC_OWNER",
    "CAP_SYS_MODULE",
    "CAP_SYS_RAWIO",
    "CAP_SYS_CHROOT",
    "CAP_SYS_PTRACE",
    "CAP_SYS_PACCT",
    "CAP_SYS_ADMIN",
    "CAP_SYS_BOOT",
    "CAP_SYS_NICE",
    "CAP_SYS_RESOURCE",
    "CAP_SYS_TIME",
    "CAP_SYS_TTY_CONFIG",
    "CAP_MKNOD",
    "CAP_LEASE",
    "CAP_AUDIT_WRITE",
    "CAP_AUDIT_CONTROL",
    "CAP_SETFCAP",
    "CAP_MAC_OVERRIDE",
    "CAP_MAC_ADMIN",
    "CAP_SYSLOG",
    "CAP_WAKE_ALARM",
    "CAP_BLOCK_SUSPEND",
    "CAP_AUDIT_READ",
    "CAP_PERFMON",
    "CAP_BPF",
    "CAP_CHECKPOINT_RESTORE",
];

/// Returns the features document: the spec versions onggi accepts, its hooks, mount options,
/// namespaces and capabilities, which cgroup modes it drives, and which security modules and
/// extensions it does not implement yet.
#[must_use]
pub fn features() -> Value {
    json!({
        "ociVersionMin": OCI_VERSION_MIN,
        "ociVersionMax": OCI_VERSION_MAX,
        "hooks": HOOKS,
        "mountOptions": MOUNT_OPTIONS,
        "linux": {
            "namespaces": NAMESPACES,
            "capabilities": CAPABILITIES,
            "cgroup": {
                "v1": true,
                "v2": true,
                "systemd": false,
                "systemdUser": false,
                "rdma": false
            },
            "seccomp": { "enabled": false },
            "apparmor": { "enabled": false },
            "selinux": { "enabled": false },
            "intelRdt": { "enabled": false },
            "mountExtensions": {
                "idmap": { "enabled": false }
            }
        },
        "annotations": {
            "org.opencontainers.runc.checkpoint.enabled": "false",
            "io.github.onggi.version": env!("CARGO_PKG_VERSION")
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use oci_spec::runtime::{Capability, Features};

    /// `mountOptions` from `runc features` of runc 1.1.5 (Debian 1.1.5+ds1-1+deb12u1).
    const RUNC_1_1_5_MOUNT_OPTIONS: &[&str] = &[
        "acl",
        "async",
        "atime",
        "bind",
        "defaults",
        "dev",
        "diratime",
        "dirsync",
        "exec",
        "iversion",
        "lazytime",
        "loud",
        "mand",
        "noacl",
        "noatime",
        "nodev",
        "nodiratime",
        "noexec",
        "noiversion",
        "nolazytime",
        "nomand",
        "norelatime",
        "nostrictatime",
        "nosuid",
        "nosymfollow",
        "private",
        "ratime",
        "rbind",
        "rdev",
        "rdiratime",
        "relatime",
        "remount",
        "rexec",
        "rnoatime",
        "rnodev",
        "rnodiratime",
        "rnoexec",
        "rnorelatime",
        "rnostrictatime",
        "rnosuid",
        "rnosymfollow",
        "ro",
        "rprivate",
        "rrelatime",
        "rro",
        "rrw",
        "rshared",
        "rslave",
        "rstrictatime",
        "rsuid",
        "rsymfollow",
        "runbindable",
        "rw",
        "shared",
        "silent",
        "slave",
        "strictatime",
        "suid",
        "symfollow",
        "sync",
        "tmpcopyup",
        "unbindable",
    ];

    fn is_sorted_and_unique(words: &[&str]) -> bool {
        words.windows(2).all(|pair| pair[0] < pair[1])
    }

    #[test]
    fn document_has_every_top_level_and_linux_key() {
        let doc = features();
        for key in [
            "ociVersionMin",
            "ociVersionMax",
            "hooks",
            "mountOptions",
            "linux",
            "annotations",
        ] {
            assert!(doc.get(key).is_some(), "missing {key}");
        }
        for key in [
            "namespaces",
            "capabilities",
            "cgroup",
            "seccomp",
            "apparmor",
            "selinux",
            "intelRdt",
            "mountExtensions",
        ] {
            assert!(doc["linux"].get(key).is_some(), "missing linux.{key}");
        }
        assert_eq!(doc["linux"]["mountExtensions"]["idmap"]["enabled"], false);
        assert_eq!(
            doc["annotations"]["io.github.onggi.version"],
            env!("CARGO_PKG_VERSION")
        );
    }

    #[test]
    fn document_serializes_and_deserializes_into_oci_spec_features() {
        let text = serde_json::to_string_pretty(&features()).expect("serializes");
        let parsed: Features = serde_json::from_str(&text).expect("valid features document");
        assert_eq!(parsed.oci_version_min(), OCI_VERSION_MIN);
        assert_eq!(parsed.oci_version_max(), OCI_VERSION_MAX);
        assert_eq!(
            parsed.mount_options().as_deref().map(<[_]>::len),
            Some(MOUNT_OPTIONS.len())
        );
        let linux = parsed.linux().as_ref().expect("linux section");
        assert_eq!(
            linux.namespaces().as_deref().map(<[_]>::len),
            Some(NAMESPACES.len())
        );
        let cgroup = linux.cgroup().as_ref().expect("cgroup section");
        assert_eq!(*cgroup.v2(), Some(true));
        assert_eq!(*cgroup.systemd(), Some(false));
    }

    #[test]
    fn mount_options_are_sorted_unique_and_cover_runc() {
        assert!(is_sorted_and_unique(MOUNT_OPTIONS));
        for option in RUNC_1_1_5_MOUNT_OPTIONS {
            assert!(
                MOUNT_OPTIONS.contains(option),
                "runc accepts {option}, onggi does not"
            );
        }
        assert!(MOUNT_OPTIONS.contains(&"idmap") && MOUNT_OPTIONS.contains(&"ridmap"));
    }

    #[test]
    fn namespaces_are_sorted_unique() {
        assert!(is_sorted_and_unique(NAMESPACES));
    }

    #[test]
    fn capabilities_run_up_to_checkpoint_restore_without_duplicates() {
        assert_eq!(
            CAPABILITIES.len(),
            41,
            "CAP_CHOWN (0) ..= CAP_CHECKPOINT_RESTORE (40)"
        );
        assert_eq!(CAPABILITIES.last(), Some(&"CAP_CHECKPOINT_RESTORE"));
        let mut sorted = CAPABILITIES.to_vec();
        sorted.sort_unstable();
        assert!(is_sorted_and_unique(&sorted));
        for name in CAPABILITIES {
            let parsed: Result<Capability, _> = serde_json::from_value(json!(name));
            assert!(parsed.is_ok(), "oci-spec does not know {name}");
        }
    }
}
