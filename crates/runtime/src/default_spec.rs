//! The bundle configuration that `onggi-runtime spec` writes.
//!
//! [`default_spec`] is, value for value, what `runc spec` (runc 1.1.5) writes to
//! `config.json`; [`default_spec_rootless`] is what `runc spec --rootless` writes. Both are
//! pure: the rootless variant takes the caller's effective uid and gid as arguments instead of
//! asking the kernel, so the command layer decides whose ids go into the mappings.
//!
//! The rootless variant is derived from the default one by `to_rootless`, the same steps as
//! runc's `specconv.ToRootless`, rather than written out twice, so the two cannot drift apart.

use serde_json::{json, Value};

/// The `ociVersion` runc 1.1.5 writes; kept identical so generated bundles compare equal.
pub const OCI_VERSION: &str = "1.0.2-dev";

/// Returns the configuration `runc spec` writes: `sh` on a terminal as root, a read-only
/// `rootfs`, the standard `/proc`, `/dev`, `/sys` and cgroup mounts, new pid, network, ipc, uts
/// and mount namespaces, all devices denied, and runc's masked and read-only paths.
#[must_use]
pub fn default_spec() -> Value {
    json!({
        "ociVersion": OCI_VERSION,
        "process": {
            "terminal": true,
            "user": { "uid": 0, "gid": 0 },
            "args": ["sh"],
            "env": [
                "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                "TERM=xterm"
            ],
            "cwd": "/",
            "capabilities": {
                "bounding": default_capabilities(),
                "effective": default_capabilities(),
                "permitted": default_capabilities(),
                "ambient": default_capabilities()
            },
            "rlimits": [
                { "type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024 }
            ],
            "noNewPrivileges": true
        },
        "root": { "path": "rootfs", "readonly": true },
        "hostname": "runc",
        "mounts": default_mounts(),
        "linux": {
            "resources": {
                "devices": [ { "allow": false, "access": "rwm" } ]
            },
            "namespaces": [
                { "type": "pid" },
                { "type": "network" },
                { "type": "ipc" },
                { "type": "uts" },
                { "type": "mount" }
            ],
            "maskedPaths": [
                "/proc/acpi",
                "/proc/asound",
                "/proc/kcore",
                "/proc/keys",
                "/proc/latency_stats",
                "/proc/timer_list",
                "/proc/timer_stats",
                "/proc/sched_debug",
                "/sys/firmware",
                "/proc/scsi"
            ],
            "readonlyPaths": [
                "/proc/bus",
                "/proc/fs",
                "/proc/irq",
                "/proc/sys",
                "/proc/sysrq-trigger"
            ]
        }
    })
}

/// Returns the configuration `runc spec --rootless` writes for a caller whose effective uid is
/// `uid` and effective gid is `gid`: [`default_spec`] with a user namespace that maps container
/// root to that one uid and gid, no network namespace, `/sys` bind-mounted instead of a new
/// sysfs, no `uid=`/`gid=` mount options, and no cgroup resources.
#[must_use]
pub fn default_spec_rootless(uid: u32, gid: u32) -> Value {
    let mut spec = default_spec();
    to_rootless(&mut spec, uid, gid);
    spec
}

/// The capabilities runc grants by default, in every set.
fn default_capabilities() -> Value {
    json!(["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"])
}

/// The mounts of runc's default spec, in runc's order.
fn default_mounts() -> Value {
    json!([
        {
            "destination": "/proc",
            "type": "proc",
            "source": "proc"
        },
        {
            "destination": "/dev",
            "type": "tmpfs",
            "source": "tmpfs",
            "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]
        },
        {
            "destination": "/dev/pts",
            "type": "devpts",
            "source": "devpts",
            "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]
        },
        {
            "destination": "/dev/shm",
            "type": "tmpfs",
            "source": "shm",
            "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]
        },
        {
            "destination": "/dev/mqueue",
            "type": "mqueue",
            "source": "mqueue",
            "options": ["nosuid", "noexec", "nodev"]
        },
        {
            "destination": "/sys",
            "type": "sysfs",
            "source": "sysfs",
            "options": ["nosuid", "noexec", "nodev", "ro"]
        },
        {
            "destination": "/sys/fs/cgroup",
            "type": "cgroup",
            "source": "cgroup",
            "options": ["nosuid", "noexec", "nodev", "relatime", "ro"]
        }
    ])
}

/// Rewrites a default spec for an unprivileged caller, step for step as runc's
/// `specconv.ToRootless` does.
fn to_rootless(spec: &mut Value, uid: u32, gid: u32) {
    let linux = &mut spec["linux"];

    // An unprivileged user cannot configure a network namespace's links, so runc leaves the
    // container in the caller's; the user namespace goes last so it is listed once.
    if let Some(namespaces) = linux.get_mut("namespaces").and_then(Value::as_array_mut) {
        namespaces.retain(|ns| !matches!(ns["type"].as_str(), Some("network" | "user")));
        namespaces.push(json!({ "type": "user" }));
    }

    // Only the caller's own ids can be mapped without newuidmap/newgidmap (user_namespaces(7)).
    linux["uidMappings"] = json!([{ "containerID": 0, "hostID": uid, "size": 1 }]);
    linux["gidMappings"] = json!([{ "containerID": 0, "hostID": gid, "size": 1 }]);

    // Without cgroup delegation there is nowhere to write resource limits.
    if let Some(linux) = linux.as_object_mut() {
        linux.remove("resources");
    }

    if let Some(mounts) = spec.get_mut("mounts").and_then(Value::as_array_mut) {
        for mount in mounts.iter_mut() {
            rootless_mount(mount);
        }
    }
}

/// Adjusts one mount for a user namespace: sysfs cannot be mounted fresh without owning the
/// network namespace, so `/sys` becomes a recursive bind of the host's; `uid=`/`gid=` options
/// name ids that are not mapped, so they are dropped.
fn rootless_mount(mount: &mut Value) {
    if mount["destination"].as_str().map(clean_path).as_deref() == Some("/sys") {
        *mount = json!({
            "destination": "/sys",
            "type": "none",
            "source": "/sys",
            "options": ["rbind", "nosuid", "noexec", "nodev", "ro"]
        });
        return;
    }
    // `get_mut`, not `mount["options"]`: indexing an object mutably inserts a null.
    if let Some(options) = mount.get_mut("options").and_then(Value::as_array_mut) {
        options.retain(|option| {
            let option = option.as_str().unwrap_or_default();
            !option.starts_with("uid=") && !option.starts_with("gid=")
        });
    }
}

/// A lexical `filepath.Clean`: drops empty and `.` components and resolves `..`, so `/sys/` and
/// `/sys/.` both compare equal to `/sys` while a relative `sys` does not.
fn clean_path(path: &str) -> String {
    let absolute = path.starts_with('/');
    let mut parts: Vec<&str> = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            // `..` above the root is the root; above a relative start it is kept.
            ".." if parts.last().is_some_and(|last| *last != "..") => {
                parts.pop();
            }
            ".." if absolute => {}
            part => parts.push(part),
        }
    }
    let joined = parts.join("/");
    match (absolute, joined.is_empty()) {
        (true, _) => format!("/{joined}"),
        (false, true) => ".".to_owned(),
        (false, false) => joined,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use oci_spec::runtime::Spec;

    /// `runc spec` output from runc 1.1.5 (Debian 1.1.5+ds1-1+deb12u1), verbatim.
    const RUNC_SPEC: &str = r#"{
	"ociVersion": "1.0.2-dev",
	"process": {
		"terminal": true,
		"user": {
			"uid": 0,
			"gid": 0
		},
		"args": [
			"sh"
		],
		"env": [
			"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
			"TERM=xterm"
		],
		"cwd": "/",
		"capabilities": {
			"bounding": [
				"CAP_AUDIT_WRITE",
				"CAP_KILL",
				"CAP_NET_BIND_SERVICE"
			],
			"effective": [
				"CAP_AUDIT_WRITE",
				"CAP_KILL",
				"CAP_NET_BIND_SERVICE"
			],
			"permitted": [
				"CAP_AUDIT_WRITE",
				"CAP_KILL",
				"CAP_NET_BIND_SERVICE"
			],
			"ambient": [
				"CAP_AUDIT_WRITE",
				"CAP_KILL",
				"CAP_NET_BIND_SERVICE"
			]
		},
		"rlimits": [
			{
				"type": "RLIMIT_NOFILE",
				"hard": 1024,
				"soft": 1024
			}
		],
		"noNewPrivileges": true
	},
	"root": {
		"path": "rootfs",
		"readonly": true
	},
	"hostname": "runc",
	"mounts": [
		{
			"destination": "/proc",
			"type": "proc",
			"source": "proc"
		},
		{
			"destination": "/dev",
			"type": "tmpfs",
			"source": "tmpfs",
			"options": [
				"nosuid",
				"strictatime",
				"mode=755",
				"size=65536k"
			]
		},
		{
			"destination": "/dev/pts",
			"type": "devpts",
			"source": "devpts",
			"options": [
				"nosuid",
				"noexec",
				"newinstance",
				"ptmxmode=0666",
				"mode=0620",
				"gid=5"
			]
		},
		{
			"destination": "/dev/shm",
			"type": "tmpfs",
			"source": "shm",
			"options": [
				"nosuid",
				"noexec",
				"nodev",
				"mode=1777",
				"size=65536k"
			]
		},
		{
			"destination": "/dev/mqueue",
			"type": "mqueue",
			"source": "mqueue",
			"options": [
				"nosuid",
				"noexec",
				"nodev"
			]
		},
		{
			"destination": "/sys",
			"type": "sysfs",
			"source": "sysfs",
			"options": [
				"nosuid",
				"noexec",
				"nodev",
				"ro"
			]
		},
		{
			"destination": "/sys/fs/cgroup",
			"type": "cgroup",
			"source": "cgroup",
			"options": [
				"nosuid",
				"noexec",
				"nodev",
				"relatime",
				"ro"
			]
		}
	],
	"linux": {
		"resources": {
			"devices": [
				{
					"allow": false,
					"access": "rwm"
				}
			]
		},
		"namespaces": [
			{
				"type": "pid"
			},
			{
				"type": "network"
			},
			{
				"type": "ipc"
			},
			{
				"type": "uts"
			},
			{
				"type": "mount"
			}
		],
		"maskedPaths": [
			"/proc/acpi",
			"/proc/asound",
			"/proc/kcore",
			"/proc/keys",
			"/proc/latency_stats",
			"/proc/timer_list",
			"/proc/timer_stats",
			"/proc/sched_debug",
			"/sys/firmware",
			"/proc/scsi"
		],
		"readonlyPaths": [
			"/proc/bus",
			"/proc/fs",
			"/proc/irq",
			"/proc/sys",
			"/proc/sysrq-trigger"
		]
	}
}"#;

    /// `runc spec --rootless` output from the same runc, run as uid 0 / gid 0, verbatim.
    const RUNC_SPEC_ROOTLESS_AS_ROOT: &str = r#"{
	"ociVersion": "1.0.2-dev",
	"process": {
		"terminal": true,
		"user": {
			"uid": 0,
			"gid": 0
		},
		"args": [
			"sh"
		],
		"env": [
			"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
			"TERM=xterm"
		],
		"cwd": "/",
		"capabilities": {
			"bounding": [
				"CAP_AUDIT_WRITE",
				"CAP_KILL",
				"CAP_NET_BIND_SERVICE"
			],
			"effective": [
				"CAP_AUDIT_WRITE",
				"CAP_KILL",
				"CAP_NET_BIND_SERVICE"
			],
			"permitted": [
				"CAP_AUDIT_WRITE",
				"CAP_KILL",
				"CAP_NET_BIND_SERVICE"
			],
			"ambient": [
				"CAP_AUDIT_WRITE",
				"CAP_KILL",
				"CAP_NET_BIND_SERVICE"
			]
		},
		"rlimits": [
			{
				"type": "RLIMIT_NOFILE",
				"hard": 1024,
				"soft": 1024
			}
		],
		"noNewPrivileges": true
	},
	"root": {
		"path": "rootfs",
		"readonly": true
	},
	"hostname": "runc",
	"mounts": [
		{
			"destination": "/proc",
			"type": "proc",
			"source": "proc"
		},
		{
			"destination": "/dev",
			"type": "tmpfs",
			"source": "tmpfs",
			"options": [
				"nosuid",
				"strictatime",
				"mode=755",
				"size=65536k"
			]
		},
		{
			"destination": "/dev/pts",
			"type": "devpts",
			"source": "devpts",
			"options": [
				"nosuid",
				"noexec",
				"newinstance",
				"ptmxmode=0666",
				"mode=0620"
			]
		},
		{
			"destination": "/dev/shm",
			"type": "tmpfs",
			"source": "shm",
			"options": [
				"nosuid",
				"noexec",
				"nodev",
				"mode=1777",
				"size=65536k"
			]
		},
		{
			"destination": "/dev/mqueue",
			"type": "mqueue",
			"source": "mqueue",
			"options": [
				"nosuid",
				"noexec",
				"nodev"
			]
		},
		{
			"destination": "/sys",
			"type": "none",
			"source": "/sys",
			"options": [
				"rbind",
				"nosuid",
				"noexec",
				"nodev",
				"ro"
			]
		},
		{
			"destination": "/sys/fs/cgroup",
			"type": "cgroup",
			"source": "cgroup",
			"options": [
				"nosuid",
				"noexec",
				"nodev",
				"relatime",
				"ro"
			]
		}
	],
	"linux": {
		"uidMappings": [
			{
				"containerID": 0,
				"hostID": 0,
				"size": 1
			}
		],
		"gidMappings": [
			{
				"containerID": 0,
				"hostID": 0,
				"size": 1
			}
		],
		"namespaces": [
			{
				"type": "pid"
			},
			{
				"type": "ipc"
			},
			{
				"type": "uts"
			},
			{
				"type": "mount"
			},
			{
				"type": "user"
			}
		],
		"maskedPaths": [
			"/proc/acpi",
			"/proc/asound",
			"/proc/kcore",
			"/proc/keys",
			"/proc/latency_stats",
			"/proc/timer_list",
			"/proc/timer_stats",
			"/proc/sched_debug",
			"/sys/firmware",
			"/proc/scsi"
		],
		"readonlyPaths": [
			"/proc/bus",
			"/proc/fs",
			"/proc/irq",
			"/proc/sys",
			"/proc/sysrq-trigger"
		]
	}
}"#;

    fn parse(text: &str) -> Value {
        serde_json::from_str(text).expect("fixture is valid JSON")
    }

    #[test]
    fn default_spec_equals_runc_spec() {
        assert_eq!(default_spec(), parse(RUNC_SPEC));
    }

    #[test]
    fn rootless_spec_equals_runc_spec_rootless() {
        assert_eq!(
            default_spec_rootless(0, 0),
            parse(RUNC_SPEC_ROOTLESS_AS_ROOT)
        );
    }

    #[test]
    fn rootless_spec_maps_the_given_ids() {
        let spec = default_spec_rootless(1000, 1001);
        assert_eq!(
            spec["linux"]["uidMappings"],
            json!([{ "containerID": 0, "hostID": 1000, "size": 1 }])
        );
        assert_eq!(
            spec["linux"]["gidMappings"],
            json!([{ "containerID": 0, "hostID": 1001, "size": 1 }])
        );
    }

    #[test]
    fn default_spec_deserializes_into_oci_spec() {
        let spec: Spec = serde_json::from_value(default_spec()).expect("valid runtime spec");
        assert_eq!(spec.version(), OCI_VERSION);
        assert_eq!(spec.hostname().as_deref(), Some("runc"));
        assert_eq!(spec.mounts().as_ref().map(Vec::len), Some(7));
    }

    #[test]
    fn rootless_spec_deserializes_into_oci_spec() {
        let spec: Spec =
            serde_json::from_value(default_spec_rootless(1000, 1000)).expect("valid runtime spec");
        let linux = spec.linux().as_ref().expect("linux section");
        assert!(linux.resources().is_none());
        assert_eq!(linux.uid_mappings().as_ref().map(Vec::len), Some(1));
    }

    #[test]
    fn rootless_keeps_one_user_namespace_when_one_is_already_listed() {
        let mut spec = default_spec();
        spec["linux"]["namespaces"]
            .as_array_mut()
            .expect("namespaces")
            .insert(0, json!({ "type": "user" }));
        to_rootless(&mut spec, 0, 0);
        assert_eq!(
            spec["linux"]["namespaces"],
            parse(RUNC_SPEC_ROOTLESS_AS_ROOT)["linux"]["namespaces"]
        );
    }

    #[test]
    fn clean_path_matches_go_filepath_clean() {
        assert_eq!(clean_path("/sys"), "/sys");
        assert_eq!(clean_path("/sys/"), "/sys");
        assert_eq!(clean_path("//sys/./"), "/sys");
        assert_eq!(clean_path("/sys/fs/.."), "/sys");
        assert_eq!(clean_path("/sys/fs/cgroup"), "/sys/fs/cgroup");
        assert_eq!(clean_path("/"), "/");
        assert_eq!(clean_path("sys"), "sys");
        assert_eq!(clean_path(""), ".");
        assert_eq!(clean_path("/../sys"), "/sys");
        assert_eq!(clean_path("../a/../.."), "../..");
    }
}
