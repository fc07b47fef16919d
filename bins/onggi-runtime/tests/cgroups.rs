//! Privileged integration tests of cgroup ENFORCEMENT: real containers with
//! `linux.resources` set, checked by what the kernel does to them (a busy loop gets
//! its quota, an allocation is OOM-killed, forks fail at the pids limit, the freezer
//! stops a program) and by the cgroup files the runtime wrote.
//!
//! These tests are for a cgroup v1 (or hybrid) host, where the controllers live at
//! `/sys/fs/cgroup/<controller>`; on a cgroup v2-only host they skip with a note, and
//! `tests/v2-enforce.sh` makes the same checks in the v2 guest of `vm-run`.
//!
//! The harness is that of `runtime.rs`, in `common/mod.rs`: every test needs root and
//! skips itself otherwise, and has its own `--root`, bundles, ids and cgroup parent,
//! removed by its [`Fixture`] when the test ends, passed or failed.
//!
//! Tests run in parallel with each other and with `runtime.rs` on a small machine, so
//! CPU use is measured from the container's own cgroup (`cpuacct.usage`), never from
//! the host's view, and lower bounds allow for other tests taking the CPUs.

mod common;

use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;
use serde_json::{json, Value};

/// A program that allocates and touches 100 MiB: busybox dd's buffer, filled from
/// /dev/zero by one read(2). (A shell holding a growing string, `x=$(yes | head -c
/// 100000000)`, can instead thrash for minutes at the limit, reclaiming and
/// refaulting its own text pages, before the OOM killer comes: seen on cgroup v2
/// with the rootfs on 9p.)
const ALLOCATE_100MIB: [&str; 5] = ["dd", "if=/dev/zero", "of=/dev/null", "bs=100M", "count=1"];

/// A [`Fixture`] for a test of this file: `None` (after a note on stderr) when not
/// root or not on a cgroup v1 host; the test then returns early.
fn v1_fixture(test: &'static str) -> Option<Fixture> {
    let fx = Fixture::new(test)?;
    if !Path::new(CGROUP_FS).join("pids").is_dir() {
        eprintln!(
            "skipping {test}: not a cgroup v1 host (no {CGROUP_FS}/pids); \
             tests/v2-enforce.sh checks cgroup v2 in vm-run's guest"
        );
        return None;
    }
    Some(fx)
}

// ---------------------------------------------------------------------------------
// CPU
// ---------------------------------------------------------------------------------

/// Percent of one CPU that container `id` used over `window`, from `cpuacct.usage`.
fn cpu_percent(fx: &Fixture, id: &str, window: Duration) -> f64 {
    let usage = || -> u64 {
        fx.cgroup_read(id, "cpuacct", "cpuacct.usage")
            .parse()
            .unwrap()
    };
    let (u0, t0) = (usage(), Instant::now());
    std::thread::sleep(window);
    let (u1, t1) = (usage(), Instant::now());
    (u1 - u0) as f64 * 100.0 / (t1 - t0).as_nanos() as f64
}

/// cpu quota 50000 / period 100000 holds a busy loop to half a CPU. The quota is a
/// ceiling, so no window may go above 60 %; the other tests may take the CPUs from
/// it, so a window below 40 % is measured again, up to six times.
#[test]
fn cpu_quota_holds_a_busy_loop_to_half_a_cpu() {
    let Some(fx) = v1_fixture("cpuquota") else {
        return;
    };
    let b = fx.bundle(&sh("while :; do :; done"), |c| {
        set_resources(c, "cpu", json!({"quota": 50000, "period": 100000}))
    });
    let id = fx.id("c");
    fx.run_detached(&id, &b);
    assert_eq!(fx.cgroup_read(&id, "cpu", "cpu.cfs_quota_us"), "50000");
    assert_eq!(fx.cgroup_read(&id, "cpu", "cpu.cfs_period_us"), "100000");
    std::thread::sleep(Duration::from_secs(1));
    let mut seen = Vec::new();
    for _ in 0..6 {
        let pct = cpu_percent(&fx, &id, Duration::from_millis(1500));
        seen.push(pct);
        assert!(
            pct <= 60.0,
            "a busy loop under a 50 % quota used {pct:.1} % ({seen:.1?})"
        );
        if pct >= 40.0 {
            break;
        }
    }
    eprintln!("cpu quota 50 %: measured {seen:.1?} % of one CPU");
    assert!(
        seen.last().is_some_and(|&p| p >= 40.0),
        "the busy loop never got 40 % of a CPU: {seen:.1?}"
    );
    let stat = fx.cgroup_read(&id, "cpu", "cpu.stat");
    assert!(keyed(&stat, "nr_throttled") > 0, "never throttled: {stat}");
    fx.rt(&["delete", "--force", &id]).ok();
    fx.assert_gone(&id);
}

#[test]
fn cpuset_cpus_pins_the_container() {
    let Some(fx) = v1_fixture("cpuset") else {
        return;
    };
    let b = fx.bundle(&sh("grep Cpus_allowed_list /proc/self/status"), |c| {
        set_resources(c, "cpu", json!({"cpus": "0"}))
    });
    let id = fx.id("c");
    // The init inherits create's stdout: read it once the container has stopped.
    let created = fx.create(&id, &b).ok();
    assert_eq!(fx.cgroup_read(&id, "cpuset", "cpuset.cpus"), "0");
    fx.rt(&["start", &id]).ok();
    fx.wait_status(&id, "stopped");
    let seen: String = created.stdout_now().split_whitespace().collect();
    assert_eq!(seen, "Cpus_allowed_list:0");
    fx.rt(&["delete", &id]).ok();
    fx.assert_gone(&id);
}

// ---------------------------------------------------------------------------------
// Memory
// ---------------------------------------------------------------------------------

/// A 32 MiB limit, with memory+swap the same (so no swap).
fn limit_32mib(c: &mut Value) {
    set_resources(c, "memory", json!({"limit": 32 * MIB, "swap": 32 * MIB}));
}

#[test]
fn memory_limit_oom_kills_an_allocation_of_100mib() {
    let Some(fx) = v1_fixture("oom") else {
        return;
    };
    let b = fx.bundle(&ALLOCATE_100MIB, limit_32mib);

    // run: the killed program's status is the runtime's.
    let id = fx.id("run");
    let out = fx.run(&id, &b);
    assert_eq!(
        out.code, 137,
        "expected SIGKILL by the OOM killer: {out:#?}"
    );
    fx.assert_gone(&id);

    // create + start: the cgroup outlives the program, and counts the kill.
    let id = fx.id("counted");
    fx.create(&id, &b).ok();
    assert_eq!(
        fx.cgroup_read(&id, "memory", "memory.limit_in_bytes"),
        (32 * MIB).to_string()
    );
    assert_eq!(
        fx.cgroup_read(&id, "memory", "memory.memsw.limit_in_bytes"),
        (32 * MIB).to_string()
    );
    fx.rt(&["start", &id]).ok();
    fx.wait_status(&id, "stopped");
    let oom = fx.cgroup_read(&id, "memory", "memory.oom_control");
    assert!(keyed(&oom, "oom_kill") > 0, "memory.oom_control: {oom}");
    let peak: i64 = fx
        .cgroup_read(&id, "memory", "memory.max_usage_in_bytes")
        .parse()
        .unwrap();
    assert!(
        peak <= 32 * MIB,
        "max_usage_in_bytes {peak} is above the limit"
    );
    fx.rt(&["delete", &id]).ok();
    fx.assert_gone(&id);
}

/// `events` reports the OOM kill: a line `{"type":"oom"}` while streaming, and
/// `events --stats` counts it. The init survives (its child dd is the one killed),
/// so the container is still running when `events --stats` asks.
#[test]
fn events_report_the_oom_kill() {
    let Some(fx) = v1_fixture("oomevents") else {
        return;
    };
    let shared = fx.host_dir("shared");
    let script = format!(
        "while [ ! -e /shared/go ]; do sleep 0.05; done; {}; echo inner=$?; exec sleep 30",
        ALLOCATE_100MIB.join(" ")
    );
    let b = fx.bundle(&sh(&script), |c| {
        limit_32mib(c);
        add_mount(c, bind(&shared, "/shared", &[]));
    });
    let id = fx.id("c");
    let created = fx.create(&id, &b).ok();
    fx.rt(&["start", &id]).ok();
    let before: Value = serde_json::from_str(&fx.rt(&["events", "--stats", &id]).ok().stdout)
        .expect("events --stats prints one JSON object");
    assert_eq!(before["type"], "stats", "{before}");
    assert_eq!(before["id"], id.as_str(), "{before}");
    assert_eq!(before["data"]["memory"]["oom_events"], 0, "{before}");
    assert_eq!(before["data"]["memory"]["limit"], 32 * MIB, "{before}");

    let events = fx.spawn(&["events", "--interval", "1s", &id]);
    // events prints its first stats line right after reading the OOM baseline: an OOM
    // before that is not one it saw happen.
    wait_until("events to print its first line", || {
        events.stdout_now().contains("\"type\":\"stats\"")
    });
    fs::write(shared.join("go"), "").unwrap();
    wait_until("the inner shell to be OOM-killed", || {
        created.stdout_now().contains("inner=")
    });
    assert_eq!(created.stdout_now().trim(), "inner=137");
    let oom_line = || {
        events.stdout_now().lines().find_map(|l| {
            let v: Value = serde_json::from_str(l).ok()?;
            (v["type"] == "oom").then_some(v)
        })
    };
    wait_until("an oom event from `events`", || oom_line().is_some());
    assert_eq!(oom_line().unwrap()["id"], id.as_str());

    let after: Value = serde_json::from_str(&fx.rt(&["events", "--stats", &id]).ok().stdout)
        .expect("events --stats prints one JSON object");
    let n = after["data"]["memory"]["oom_events"].as_u64();
    assert!(n.is_some_and(|n| n > 0), "{after}");
    drop(events);
    fx.rt(&["delete", "--force", &id]).ok();
    fx.assert_gone(&id);
}

// ---------------------------------------------------------------------------------
// Pids
// ---------------------------------------------------------------------------------

/// pids.limit 20 against 100 background sleeps: the forks past the limit fail, the
/// count never passes 20, and the host still starts processes meanwhile. busybox sh
/// gives up at its first failed fork, so the loop runs in a child shell and the init
/// stays (as `sleep`, by exec, which needs no new PID).
#[test]
fn pids_limit_stops_a_fork_loop() {
    let Some(fx) = v1_fixture("pids") else {
        return;
    };
    let b = fx.bundle(
        &sh(
            "exec 2>&1; sh -c 'for i in $(seq 100); do sleep 30 & done; wait'; \
             echo loop exited $?; exec sleep 30",
        ),
        |c| set_resources(c, "pids", json!({"limit": 20})),
    );
    let id = fx.id("c");
    let created = fx.create(&id, &b).ok();
    assert_eq!(fx.cgroup_read(&id, "pids", "pids.max"), "20");
    fx.rt(&["start", &id]).ok();

    let (mut most, mut slowest_true) = (0u32, Duration::ZERO);
    let until = Instant::now() + Duration::from_millis(1500);
    while Instant::now() < until {
        let n: u32 = fx.cgroup_read(&id, "pids", "pids.current").parse().unwrap();
        most = most.max(n);
        let t = Instant::now();
        assert!(Command::new("true").status().unwrap().success());
        slowest_true = slowest_true.max(t.elapsed());
    }
    eprintln!("pids.limit 20: pids.current peaked at {most}; slowest host `true` {slowest_true:?}");
    assert!(most <= 20, "pids.current reached {most}");
    assert!(most >= 15, "the loop never got near the limit: {most}");
    assert!(
        slowest_true < Duration::from_secs(1),
        "host `true` took {slowest_true:?}"
    );

    let events = fx.cgroup_read(&id, "pids", "pids.events");
    assert!(keyed(&events, "max") > 0, "pids.events: {events}");
    let out = created.stdout_now();
    assert!(
        out.contains("can't fork"),
        "no fork failure reported: {out:?}"
    );
    assert!(out.contains("loop exited"), "{out:?}");
    assert_eq!(fx.status(&id), "running");

    let procs: Vec<i32> = fx
        .cgroup_read(&id, "pids", "cgroup.procs")
        .lines()
        .map(|l| l.parse().unwrap())
        .collect();
    assert!(procs.len() >= 15, "{procs:?}");
    fx.rt(&["delete", "--force", &id]).ok();
    fx.assert_gone(&id);
    let left: Vec<i32> = procs.into_iter().filter(|&p| alive(p)).collect();
    assert!(
        left.is_empty(),
        "processes survived delete --force: {left:?}"
    );
}

// ---------------------------------------------------------------------------------
// update
// ---------------------------------------------------------------------------------

#[test]
fn update_changes_the_limits_of_a_running_container() {
    let Some(fx) = v1_fixture("update") else {
        return;
    };
    let b = fx.bundle(&["sleep", "30"], |c| {
        set_resources(c, "pids", json!({"limit": 100}))
    });
    let id = fx.id("c");
    fx.run_detached(&id, &b);
    fx.rt(&[
        "update",
        "--memory",
        "40m",
        "--pids-limit",
        "7",
        "--cpu-quota",
        "25000",
        "--cpu-period",
        "100000",
        &id,
    ])
    .ok();
    assert_eq!(
        fx.cgroup_read(&id, "memory", "memory.limit_in_bytes"),
        (40 * MIB).to_string()
    );
    assert_eq!(fx.cgroup_read(&id, "pids", "pids.max"), "7");
    assert_eq!(fx.cgroup_read(&id, "cpu", "cpu.cfs_quota_us"), "25000");
    assert_eq!(fx.cgroup_read(&id, "cpu", "cpu.cfs_period_us"), "100000");

    // --resources - : linux.resources as JSON on stdin; only what it names changes.
    let json_file = fx.path("resources.json");
    fs::write(&json_file, r#"{"pids": {"limit": 9}}"#).unwrap();
    fx.spawn_with(
        &["update", "-r", "-", &id],
        File::open(&json_file).unwrap().into(),
    )
    .wait()
    .ok();
    assert_eq!(fx.cgroup_read(&id, "pids", "pids.max"), "9");
    assert_eq!(
        fx.cgroup_read(&id, "memory", "memory.limit_in_bytes"),
        (40 * MIB).to_string()
    );
    assert_eq!(fx.cgroup_read(&id, "cpu", "cpu.cfs_quota_us"), "25000");
    assert_eq!(fx.status(&id), "running");
    fx.rt(&["delete", "--force", &id]).ok();
    fx.assert_gone(&id);
}

// ---------------------------------------------------------------------------------
// pause / resume
// ---------------------------------------------------------------------------------

/// The counter the container writes into the shared directory (0 before the first
/// write; a read between the shell's truncate and its write is retried).
fn counter(shared: &Path) -> u64 {
    let mut value = None;
    wait_until("a readable counter", || {
        value = match fs::read_to_string(shared.join("n")) {
            Err(_) => Some(0),
            Ok(s) => s.trim().parse().ok(),
        };
        value.is_some()
    });
    value.unwrap()
}

#[test]
fn pause_freezes_the_container_and_resume_thaws_it() {
    let Some(fx) = v1_fixture("pause") else {
        return;
    };
    let shared = fx.host_dir("shared");
    let b = fx.bundle(
        &sh("i=0; while :; do i=$((i + 1)); echo $i >/shared/n; sleep 0.05; done"),
        |c| add_mount(c, bind(&shared, "/shared", &[])),
    );
    let id = fx.id("c");
    fx.run_detached(&id, &b);
    wait_until("the counter to start", || counter(&shared) >= 3);

    fx.rt(&["pause", &id]).ok();
    assert_eq!(fx.status(&id), "paused");
    assert_eq!(fx.cgroup_read(&id, "freezer", "freezer.state"), "FROZEN");
    let frozen_at = counter(&shared);
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(
        counter(&shared),
        frozen_at,
        "the counter moved while paused"
    );

    fx.rt(&["resume", &id]).ok();
    assert_eq!(fx.status(&id), "running");
    wait_until("the counter to move again", || {
        counter(&shared) >= frozen_at + 2
    });

    // delete --force of a paused container: it must thaw to let SIGKILL work.
    fx.rt(&["pause", &id]).ok();
    assert_eq!(fx.status(&id), "paused");
    fx.rt(&["delete", "--force", &id]).ok();
    fx.assert_gone(&id);
}

// ---------------------------------------------------------------------------------
// Bad input
// ---------------------------------------------------------------------------------

/// `create` must fail naming `words`, and leave no container, no cgroup of it and
/// no cgroup parent behind.
#[track_caller]
fn create_fails(fx: &Fixture, name: &str, bundle: &Path, words: &[&str]) {
    let id = fx.id(name);
    fx.create(&id, bundle).fails_with(words);
    fx.assert_gone(&id);
    assert_eq!(
        cgroup_dirs_of(&fx.cgroup_parent),
        Vec::<PathBuf>::new(),
        "the failed create left its cgroup parent"
    );
}

#[test]
fn bad_resources_fail_with_the_field_named_and_leave_no_cgroup() {
    let Some(fx) = v1_fixture("badres") else {
        return;
    };
    // cgroup v1 takes cpu.shares from 2 up.
    let shares = fx.bundle(&["true"], |c| set_resources(c, "cpu", json!({"shares": 1})));
    create_fails(&fx, "shares", &shares, &["linux.resources.cpu.shares"]);

    // memory.swap is memory+swap: it cannot be below the memory limit.
    let swap = fx.bundle(&["true"], |c| {
        set_resources(c, "memory", json!({"limit": 32 * MIB, "swap": 16 * MIB}))
    });
    create_fails(&fx, "swap", &swap, &["linux.resources.memory.swap"]);

    // A device rule whose access is not made of r, w, m.
    let device = fx.bundle(&["true"], |c| {
        c["linux"]["resources"]["devices"]
            .as_array_mut()
            .unwrap()
            .push(json!({"allow": true, "type": "c", "major": 1, "minor": 3, "access": "rwz"}))
    });
    create_fails(&fx, "device", &device, &["linux.resources.devices", "rwz"]);

    // A controller this host does not have mounted (rdma is not, here).
    if !Path::new("/sys/fs/cgroup/rdma").exists() {
        let rdma = fx.bundle(&["true"], |c| {
            set_resources(
                c,
                "rdma",
                json!({"mlx5_0": {"hcaHandles": 3, "hcaObjects": 10}}),
            )
        });
        create_fails(
            &fx,
            "rdma",
            &rdma,
            &["linux.resources.rdma", "rdma cgroup controller"],
        );
    }
}

/// `ps`: the processes in the container's cgroup, as PIDs (json) or as the host's `ps`
/// table limited to them.
#[test]
fn ps_lists_the_containers_processes() {
    let Some(fx) = v1_fixture("ps") else {
        return;
    };
    let b = fx.bundle(&sh("sleep 30 & exec sleep 31"), |_| {});
    let id = fx.id("c");
    let init = fx.run_detached(&id, &b);
    wait_until("the background sleep", || {
        !processes_naming("30").is_empty()
    });
    let json = fx.rt(&["ps", "--format", "json", &id]).ok();
    let pids: Vec<i32> = serde_json::from_str(&json.stdout).unwrap();
    assert_eq!(pids.len(), 2, "{json:?}");
    assert!(pids.contains(&init), "{pids:?} lacks the init {init}");
    let table = fx.rt(&["ps", &id]).ok();
    let lines = table.lines();
    assert!(
        lines[0].contains("PID") && lines[0].contains("CMD"),
        "{table:?}"
    );
    assert_eq!(lines.len(), 3, "a header and two processes: {table:?}");
    assert!(lines.iter().any(|l| l.contains("sleep 31")), "{table:?}");
    // With ps options after the id, as runc passes them.
    let custom = fx.rt(&["ps", &id, "-o", "pid,comm"]).ok();
    assert!(
        custom.lines()[0].split_whitespace().eq(["PID", "COMMAND"]),
        "{custom:?}"
    );
    assert_eq!(custom.lines().len(), 3, "{custom:?}");
}
