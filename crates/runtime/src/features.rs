//! The runtime-spec "features" document that `onggi-runtime features` prints.
//!
//! The document tells a caller (containerd, CRI-O, podman) which parts of the runtime spec this
//! runtime implements, so it can refuse a configuration up front instead of failing mid-create.
//! Its shape is defined in the runtime-spec's `features.md`
//! (<https://github.com/opencontainers/runtime-spec/blob/main/features.md>); the values follow
//! `runc features` where onggi does the same thing and say `false` where it does not yet (Intel
//! RDT, systemd cgroups). `AppArmor` and `SELinux` are `true` as in runc: the runtime applies
//! their labels where the host has the LSM (and refuses them where it does not).
//!
//! [`MOUNT_OPTIONS`] is the one list of mount option words onggi accepts: the document prints it
//! and the mount option parser checks against it, so the two cannot disagree.

use serde_json::{json, Value};

/// Seccomp actions onggi-seccomp compiles (runc's list).
const SECCOMP_ACTIONS: &[&str] = &[
    "SCMP_ACT_ALLOW",
    "SCMP_ACT_ERRNO",
    "SCMP_ACT_KILL",
    "SCMP_ACT_KILL_PROCESS",
    "SCMP_ACT_KILL_THREAD",
    "SCMP_ACT_LOG",
    "SCMP_ACT_NOTIFY",
    "SCMP_ACT_TRACE",
    "SCMP_ACT_TRAP",
];

/// Argument comparison operators.
const SECCOMP_OPERATORS: &[&str] = &[
    "SCMP_CMP_EQ",
    "SCMP_CMP_GE",
    "SCMP_CMP_GT",
    "SCMP_CMP_LE",
    "SCMP_CMP_LT",
    "SCMP_CMP_MASKED_EQ",
    "SCMP_CMP_NE",
];

/// Architectures libseccomp 2.5 knows by these names (runc's list).
const SECCOMP_ARCHS: &[&str] = &[
    "SCMP_ARCH_AARCH64",
    "SCMP_ARCH_ARM",
    "SCMP_ARCH_MIPS",
    "SCMP_ARCH_MIPS64",
    "SCMP_ARCH_MIPS64N32",
    "SCMP_ARCH_MIPSEL",
    "SCMP_ARCH_MIPSEL64",
    "SCMP_ARCH_MIPSEL64N32",
    "SCMP_ARCH_PPC",
    "SCMP_ARCH_PPC64",
    "SCMP_ARCH_PPC64LE",
    "SCMP_ARCH_S390",
    "SCMP_ARCH_S390X",
    "SCMP_ARCH_X32",
    "SCMP_ARCH_X86",
    "SCMP_ARCH_X86_64",
];

/// `linux.seccomp.flags` onggi passes to seccomp(2).
const SECCOMP_FLAGS: &[&str] = &[
    "SECCOMP_FILTER_FLAG_TSYNC",
    "SECCOMP_FILTER_FLAG_LOG",
    "SECCOMP_FILTER_FLAG_SPEC_ALLOW",
    "SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV",
];

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
            "seccomp": {
                "enabled": true,
                "actions": SECCOMP_ACTIONS,
                "operators": SECCOMP_OPERATORS,
                "archs": SECCOMP_ARCHS,
                "knownFlags": SECCOMP_FLAGS,
                "supportedFlags": SECCOMP_FLAGS
            },
            "apparmor": { "enabled": true },
            "selinux": { "enabled": true },
            "intelRdt": { "enabled": false },
            "mountExtensions": {
                "idmap": { "enabled": true }
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
        assert_eq!(doc["linux"]["mountExtensions"]["idmap"]["enabled"], true);
        assert_eq!(doc["linux"]["seccomp"]["enabled"], true);
        assert_eq!(
            doc["annotations"]["io.github.onggi.version"],
            env!("CARGO_PKG_VERSION")
        );
    }

    /// Every seccomp word the document lists compiles: the lists cannot promise more
    /// than onggi-seccomp does. Architectures are known by name; like runc, only
    /// those libseccomp can add to a filter for this machine compile here.
    #[test]
    fn every_listed_seccomp_word_compiles() {
        let try_compile = |v: &serde_json::Value| {
            let s: oci_spec::runtime::LinuxSeccomp = serde_json::from_value(v.clone()).unwrap();
            onggi_seccomp::compile(&s).map(drop)
        };
        let compile = |v: serde_json::Value| {
            try_compile(&v).unwrap_or_else(|e| panic!("{v}: {e}"));
        };
        for arch in SECCOMP_ARCHS {
            let v = json!({"defaultAction": "SCMP_ACT_ERRNO", "architectures": [arch]});
            if let Err(e) = try_compile(&v) {
                assert!(!e.to_string().contains("unknown"), "{arch}: {e}");
            }
        }
        compile(json!({"defaultAction": "SCMP_ACT_ERRNO",
            "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"]}));
        for action in SECCOMP_ACTIONS {
            compile(
                json!({"defaultAction": "SCMP_ACT_ERRNO", "listenerPath": "/a.sock",
                "syscalls": [{"names": ["getpid"], "action": action}]}),
            );
        }
        for op in SECCOMP_OPERATORS {
            compile(
                json!({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["personality"],
                "action": "SCMP_ACT_ERRNO", "args": [{"index": 0, "value": 8, "valueTwo": 8, "op": op}]}]}),
            );
        }
        for flag in SECCOMP_FLAGS {
            compile(json!({"defaultAction": "SCMP_ACT_ALLOW", "flags": [flag]}));
        }
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
