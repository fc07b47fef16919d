//! Privileged tests on the real host's cgroups (v1 or hybrid).
//!
//! They return early with a message when not root or when `/sys/fs/cgroup/pids` does not
//! exist. They only create cgroups under `/onggi-cgtest-<pid>-<test>`, and a guard
//! removes them (and kills the child) even when an assertion fails.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use nix::sys::signal::Signal;
use oci_spec::runtime::{
    LinuxDeviceCgroupBuilder, LinuxDeviceType, LinuxMemoryBuilder, LinuxPidsBuilder,
    LinuxResources, LinuxResourcesBuilder,
};
use onggi_cgroups::{Cgroup, Hierarchies, Version};

/// Why the host cannot run these tests, if it cannot.
fn skip_reason() -> Option<&'static str> {
    if !nix::unistd::geteuid().is_root() {
        return Some("not root");
    }
    if !Path::new("/sys/fs/cgroup/pids").is_dir() {
        return Some("no v1 pids hierarchy at /sys/fs/cgroup/pids");
    }
    None
}

/// Owns the test cgroup and the child in it; on drop, thaws, kills, destroys, and then
/// removes by hand whatever is left of `/<top>` in every hierarchy.
struct Guard {
    h: Hierarchies,
    cg: Cgroup,
    top: String,
    child: Option<Child>,
}

impl Guard {
    fn new(test: &str) -> Guard {
        let h = Hierarchies::host().expect("detect host cgroups");
        let top = format!("onggi-cgtest-{}-{test}", std::process::id());
        let cg = Cgroup::for_self(&h, &format!("/{top}/c")).expect("resolve cgroup");
        Guard {
            h,
            cg,
            top,
            child: None,
        }
    }

    /// Every directory the test may have made: the leaf and `/<top>`, per hierarchy.
    fn all_dirs(&self) -> Vec<PathBuf> {
        let mounts = self.h.v1_mounts().iter().chain(self.h.unified());
        mounts
            .flat_map(|m| [m.dir().join(&self.top).join("c"), m.dir().join(&self.top)])
            .collect()
    }

    fn kill_child(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        // A frozen task cannot die: thaw first.
        let _ = self.cg.thaw();
        self.kill_child();
        let _ = self.cg.destroy();
        for d in self.all_dirs() {
            let _ = std::fs::remove_dir(&d);
        }
    }
}

fn resources() -> LinuxResources {
    let memory = LinuxMemoryBuilder::default()
        .limit(64i64 << 20)
        .build()
        .unwrap();
    let devices = vec![
        LinuxDeviceCgroupBuilder::default()
            .allow(false)
            .access("rwm")
            .build()
            .unwrap(),
        LinuxDeviceCgroupBuilder::default()
            .allow(true)
            .typ(LinuxDeviceType::C)
            .major(1)
            .minor(3)
            .access("rwm")
            .build()
            .unwrap(),
    ];
    LinuxResourcesBuilder::default()
        .pids(LinuxPidsBuilder::default().limit(10).build().unwrap())
        .memory(memory)
        .devices(devices)
        .build()
        .unwrap()
}

fn read(p: impl AsRef<Path>) -> String {
    let p = p.as_ref();
    std::fs::read_to_string(p).unwrap_or_else(|e| panic!("read {}: {e}", p.display()))
}

#[test]
fn create_apply_add_freeze_destroy_on_the_host() {
    if let Some(why) = skip_reason() {
        eprintln!("skipping host cgroup test: {why}");
        return;
    }
    let mut g = Guard::new("life");
    assert!(matches!(g.h.version(), Version::V1 | Version::Hybrid));

    g.cg.create().expect("create");
    for (name, p) in g.cg.paths() {
        assert!(p.is_dir(), "{name}: {} not created", p.display());
    }
    assert_eq!(g.cg.owned_parents(), 1);

    g.cg.apply(&resources()).expect("apply");
    assert_eq!(
        read(g.cg.path("pids").unwrap().join("pids.max")).trim(),
        "10"
    );
    let mem = g.cg.path("memory").unwrap();
    assert_eq!(
        read(mem.join("memory.limit_in_bytes")).trim(),
        (64u64 << 20).to_string()
    );
    if let Some(dev) = g.cg.path("devices") {
        assert_eq!(read(dev.join("devices.list")).trim(), "c 1:3 rwm");
    }

    let child = Command::new("sleep")
        .arg("100")
        .spawn()
        .expect("spawn sleep");
    let pid = child.id() as i32;
    g.child = Some(child);
    g.cg.add_pid(pid).expect("add_pid");
    assert_eq!(g.cg.pids().expect("pids"), [pid]);
    if let Some(u) = g.cg.unified_path() {
        assert_eq!(read(u.join("cgroup.procs")).trim(), pid.to_string());
    }

    g.cg.freeze().expect("freeze");
    assert!(g.cg.is_frozen().unwrap());
    g.cg.thaw().expect("thaw");
    assert!(!g.cg.is_frozen().unwrap());

    g.kill_child();
    g.cg.destroy().expect("destroy");
    for d in g.all_dirs() {
        assert!(!d.exists(), "{} left behind", d.display());
    }
}

#[test]
fn destroy_removes_child_cgroups_and_keeps_a_busy_parent() {
    if let Some(why) = skip_reason() {
        eprintln!("skipping host cgroup test: {why}");
        return;
    }
    let g = Guard::new("tree");
    g.cg.create().expect("create");
    // A cgroup made inside the container (a nested runtime, systemd in the container).
    let nested = g.cg.path("pids").unwrap().join("inner/deeper");
    std::fs::create_dir_all(&nested).expect("nested mkdir");
    // A sibling keeps /<top> busy in the pids hierarchy only.
    let sibling = g.cg.path("pids").unwrap().parent().unwrap().join("sibling");
    std::fs::create_dir(&sibling).expect("sibling mkdir");

    g.cg.destroy().expect("destroy");
    assert!(!nested.exists());
    for (name, p) in g.cg.paths() {
        assert!(!p.exists(), "{name}: {} left", p.display());
        assert_eq!(
            p.parent().unwrap().exists(),
            name == "pids",
            "{name}: parent"
        );
    }
    std::fs::remove_dir(&sibling).expect("remove sibling");
}

#[test]
fn stats_then_kill_all_on_the_host() {
    if let Some(why) = skip_reason() {
        eprintln!("skipping host cgroup test: {why}");
        return;
    }
    let mut g = Guard::new("stats");
    g.cg.create().expect("create");
    // The shell waits for a line, so that it execs the busy loop (and faults in its
    // memory) only once it is in the cgroup.
    let mut child = Command::new("sh")
        .args(["-c", "read _; exec sh -c 'while :; do :; done'"])
        .stdin(Stdio::piped())
        .spawn()
        .expect("spawn sh");
    let mut stdin = child.stdin.take().unwrap();
    let pid = child.id() as i32;
    g.child = Some(child);
    g.cg.add_pid(pid).expect("add_pid");
    stdin.write_all(b"go\n").expect("start the loop");
    std::thread::sleep(Duration::from_millis(300));

    let s = g.cg.stats().expect("stats");
    assert!(s.cpu.usage_ns > 0, "{s:?}");
    assert!(s.cpu.user_ns + s.cpu.system_ns > 0, "{s:?}");
    assert!(s.memory.usage > 0, "{s:?}");
    assert_eq!(s.memory.limit, u64::MAX, "{s:?}");
    assert!(s.pids.current >= 1, "{s:?}");
    assert_eq!(s.pids.limit, 0, "{s:?}");
    assert_eq!(g.cg.oom_kill_count().expect("oom_kill_count"), 0);

    g.cg.kill_all(Signal::SIGKILL).expect("kill_all");
    // The killed child is a zombie until waited for, and no longer listed.
    assert_eq!(g.cg.pids().expect("pids"), Vec::<i32>::new());
    let status = g.child.take().unwrap().wait().expect("wait");
    assert!(!status.success());
    g.cg.destroy().expect("destroy");
    for d in g.all_dirs() {
        assert!(!d.exists(), "{} left behind", d.display());
    }
}

#[test]
fn update_raises_and_lowers_memory_and_swap_on_the_host() {
    if let Some(why) = skip_reason() {
        eprintln!("skipping host cgroup test: {why}");
        return;
    }
    let g = Guard::new("update");
    g.cg.create().expect("create");
    let mem = g.cg.path("memory").expect("memory hierarchy").to_owned();
    if !mem.join("memory.memsw.limit_in_bytes").exists() {
        eprintln!("skipping: no swap accounting (memory.memsw.*)");
        return;
    }
    let r = |limit: i64, swap: i64| {
        let m = LinuxMemoryBuilder::default()
            .limit(limit)
            .swap(swap)
            .check_before_update(true)
            .build()
            .unwrap();
        LinuxResourcesBuilder::default().memory(m).build().unwrap()
    };
    let limits = || {
        (
            read(mem.join("memory.limit_in_bytes")).trim().to_owned(),
            read(mem.join("memory.memsw.limit_in_bytes"))
                .trim()
                .to_owned(),
        )
    };
    let mib = |n: i64| (n << 20).to_string();
    g.cg.apply(&r(64 << 20, 128 << 20)).expect("apply");
    assert_eq!(limits(), (mib(64), mib(128)));
    // Raising: the kernel refuses the new limit above the old memsw (EINVAL), so
    // memsw goes first.
    g.cg.update(&r(256 << 20, 512 << 20)).expect("raise");
    assert_eq!(limits(), (mib(256), mib(512)));
    // Lowering: the limit goes first.
    g.cg.update(&r(32 << 20, 48 << 20)).expect("lower");
    assert_eq!(limits(), (mib(32), mib(48)));
    // Unlimited memory lifts memsw too.
    let m = LinuxMemoryBuilder::default().limit(-1i64).build().unwrap();
    let unlimited = LinuxResourcesBuilder::default().memory(m).build().unwrap();
    g.cg.update(&unlimited).expect("unlimited");
    let (l, s) = limits();
    assert!(l.parse::<u64>().unwrap() > 1 << 62 && s == l, "{l} {s}");
}
