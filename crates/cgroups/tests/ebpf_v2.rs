//! cgroup v2 device rules on a real kernel: the eBPF program that `ebpf::apply`
//! attaches must deny and allow device access for the processes in the cgroup.
//!
//! It needs root and cgroup2 mounted alone at `/sys/fs/cgroup`, so it is ignored on the
//! (hybrid) development hosts and runs in the pure cgroup v2 guest
//! (`../shared/tools/vm/README.md`):
//!
//! ```sh
//! cargo test -p onggi-cgroups --test ebpf_v2 --no-run    # prints the binary's path
//! ../shared/tools/vm/vm-run -- target/x86_64-unknown-linux-gnu/debug/deps/ebpf_v2-<hash> \
//!     --ignored --test-threads=1
//! ```
//!
//! It works in `/sys/fs/cgroup/onggi-ebpf-test`, which a guard removes even when an
//! assertion fails.

use std::path::{Path, PathBuf};
use std::process::Command;

use oci_spec::runtime::{LinuxDeviceCgroup, LinuxDeviceCgroupBuilder, LinuxDeviceType};
use onggi_cgroups::ebpf::{self, Attached, PROG_NAME};

const CGROUP: &str = "/sys/fs/cgroup/onggi-ebpf-test";

/// Creates the test cgroup; on drop kills whatever is left in it and removes it
/// (which also releases the programs attached to it).
struct Guard(PathBuf);

impl Guard {
    fn create(dir: &str) -> Guard {
        let g = Guard(PathBuf::from(dir));
        g.remove();
        std::fs::create_dir(&g.0).unwrap_or_else(|e| panic!("mkdir {dir}: {e}"));
        g
    }

    fn remove(&self) {
        let _ = std::fs::write(self.0.join("cgroup.kill"), "1");
        let _ = std::fs::remove_dir(&self.0);
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        self.remove();
    }
}

fn char_rule(
    allow: bool,
    major: Option<i64>,
    minor: Option<i64>,
    access: &str,
) -> LinuxDeviceCgroup {
    LinuxDeviceCgroupBuilder::default()
        .allow(allow)
        .typ(LinuxDeviceType::C)
        .major(major.unwrap_or(-1))
        .minor(minor.unwrap_or(-1))
        .access(access)
        .build()
        .unwrap()
}

fn deny_all() -> LinuxDeviceCgroup {
    LinuxDeviceCgroupBuilder::default()
        .allow(false)
        .access("rwm")
        .build()
        .unwrap()
}

/// Run `script` with busybox `sh` after the shell has moved itself into `cgroup`, so
/// every command in it runs there; one `name=<exit status>` line per step.
fn in_cgroup(cgroup: &Path, script: &str) -> (String, String) {
    let procs = cgroup.join("cgroup.procs");
    let out = Command::new("/bin/sh")
        .arg("-c")
        .arg(format!(
            "echo $$ > {} || exit 99\n{script}",
            procs.display()
        ))
        .output()
        .expect("run /bin/sh");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        out.status.success(),
        "sh: {:?}\n{stdout}{stderr}",
        out.status
    );
    (stdout, stderr)
}

/// The steps every check runs: read /dev/zero (c 1:5), write and read /dev/null
/// (c 1:3), mknod a node of /dev/null's numbers.
const STEPS: &str = "head -c1 /dev/zero >/dev/null; echo zero=$?
echo hello > /dev/null; echo null_write=$?
cat /dev/null; echo null_read=$?
rm -f /tmp/onggi-null; mknod /tmp/onggi-null c 1 3; echo mknod=$?; rm -f /tmp/onggi-null
";

fn status(stdout: &str, step: &str) -> i32 {
    let prefix = format!("{step}=");
    let line = stdout
        .lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .unwrap_or_else(|| panic!("no {step}= line in {stdout:?}"));
    line.trim().parse().unwrap()
}

fn ours(cgroup: &Path) -> Vec<Attached> {
    ebpf::attached(cgroup).expect("list attached programs")
}

#[test]
#[ignore = "needs a cgroup v2 host: run in vm-run"]
fn device_rules_are_enforced_and_replaced() {
    assert!(
        Path::new("/sys/fs/cgroup/cgroup.controllers").exists(),
        "cgroup2 is not mounted at /sys/fs/cgroup: run this in ../shared/tools/vm/vm-run"
    );
    assert!(nix::unistd::geteuid().is_root(), "needs root");
    let g = Guard::create(CGROUP);

    // Before any program: everything is allowed (we are root).
    let (out, err) = in_cgroup(&g.0, STEPS);
    for step in ["zero", "null_write", "null_read", "mknod"] {
        assert_eq!(
            status(&out, step),
            0,
            "{step} before the filter\n{out}{err}"
        );
    }
    assert_eq!(ours(&g.0), vec![]);

    // deny all, allow c 1:3 rw: /dev/null opens, /dev/zero and mknod do not.
    ebpf::apply(&g.0, &[deny_all(), char_rule(true, Some(1), Some(3), "rw")]).expect("apply");
    let (out, err) = in_cgroup(&g.0, STEPS);
    assert_eq!(status(&out, "zero"), 1, "{out}{err}");
    assert!(err.contains("/dev/zero: Operation not permitted"), "{err}");
    assert_eq!(status(&out, "null_write"), 0, "{out}{err}");
    assert_eq!(status(&out, "null_read"), 0, "{out}{err}");
    assert_ne!(status(&out, "mknod"), 0, "mknod needs m\n{out}{err}");
    let first = ours(&g.0);
    assert_eq!(first.len(), 1, "{first:?}");
    assert_eq!(first[0].name.as_deref(), Some(PROG_NAME));

    // An update (as `onggi update` would): add c 1:5 r. The new program replaces the
    // old one instead of joining it.
    let rules = [
        deny_all(),
        char_rule(true, Some(1), Some(3), "rw"),
        char_rule(true, Some(1), Some(5), "r"),
    ];
    ebpf::apply(&g.0, &rules).expect("apply the update");
    let (out, err) = in_cgroup(&g.0, STEPS);
    assert_eq!(status(&out, "zero"), 0, "{out}{err}");
    assert_eq!(status(&out, "null_write"), 0, "{out}{err}");
    assert_ne!(status(&out, "mknod"), 0, "{out}{err}");
    let second = ours(&g.0);
    assert_eq!(second.len(), 1, "{second:?}");
    assert_ne!(
        second[0].id, first[0].id,
        "the old program is still attached"
    );

    // A deny after a wider allow takes effect (v1 would ignore it).
    let rules = [
        deny_all(),
        char_rule(true, None, None, "rwm"),
        char_rule(false, Some(1), Some(5), "r"),
    ];
    ebpf::apply(&g.0, &rules).expect("apply the narrower deny");
    let (out, err) = in_cgroup(&g.0, STEPS);
    assert_eq!(status(&out, "zero"), 1, "{out}{err}");
    assert_eq!(status(&out, "null_write"), 0, "{out}{err}");
    assert_eq!(status(&out, "mknod"), 0, "{out}{err}");
    assert_eq!(ours(&g.0).len(), 1);
}
