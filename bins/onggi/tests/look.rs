//! top, ns, tree through the binary, checked against /proc and procps (ground
//! truth), not against onggi's own output.

mod harness;

use std::collections::BTreeSet;
use std::fs;
use std::process::Command;
use std::time::{Duration, Instant};

use harness::*;
use serde_json::Value;

fn json(o: &Out) -> Vec<Value> {
    serde_json::from_str::<Value>(&o.stdout)
        .unwrap()
        .as_array()
        .unwrap()
        .clone()
}

fn num(v: &Value, k: &str) -> i64 {
    v[k].as_i64().unwrap_or_else(|| panic!("{k} in {v}"))
}

/// The last field of `NSpid:` in /proc/PID/status (or of a task's).
fn nspid_of(path: &str) -> i64 {
    let s = fs::read_to_string(path).unwrap();
    let line = s.lines().find(|l| l.starts_with("NSpid:")).unwrap();
    line.split_whitespace().last().unwrap().parse().unwrap()
}

/// Wait (5 s at most) until `f` holds.
fn eventually(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while !f() {
        assert!(Instant::now() < deadline, "timed out: {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A container `name` of two processes: sh execs its last command, so the init is
/// a sleep and the other sleep its child.
fn two_sleeps(t: &T, name: &str) {
    let script = "sleep 1000 & sleep 1000";
    t.ok(&["run", "-d", "--name", name, "busybox", "sh", "-c", script]);
    eventually("two processes", || {
        json(&t.ok(&["top", "--format", "json", name])).len() == 2
    });
}

#[test]
fn top_shows_each_process_and_thread_with_both_pids() {
    let Some(t) = T::new("top") else {
        return;
    };
    let name = t.name("top");
    two_sleeps(&t, &name);
    let procs = json(&t.ok(&["top", "--format", "json", &name]));
    // Ground truth: every host process whose PID namespace is the init's.
    let init = procs
        .iter()
        .find(|p| num(p, "ns_pid") == 1)
        .expect("the init, PID 1 inside");
    let ns = |pid: i64| fs::read_link(format!("/proc/{pid}/ns/pid")).ok();
    let theirs = ns(num(init, "pid"));
    let truth: BTreeSet<i64> = fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .filter(|p| ns(*p).is_some() && ns(*p) == theirs)
        .collect();
    let seen: BTreeSet<i64> = procs.iter().map(|p| num(p, "pid")).collect();
    assert_eq!(seen, truth);
    for p in &procs {
        let pid = num(p, "pid");
        assert_eq!(
            num(p, "ns_pid"),
            nspid_of(&format!("/proc/{pid}/status")),
            "{p}"
        );
        assert!(p["command"].as_str().unwrap().starts_with("sleep") || num(p, "ns_pid") == 1);
    }
    let table = t.ok(&["top", &name]).stdout;
    assert!(
        table.starts_with("USER") && table.contains("CPID") && table.lines().count() == 3,
        "{table}"
    );

    // Threads, as ps -eLf counts them: python with four threads more, from the
    // host's root mounted read-only.
    let py = t.name("threads");
    let script = "import threading,time\n\
                  [threading.Thread(target=time.sleep,args=(1000,)).start() for _ in range(4)]\n\
                  time.sleep(1000)";
    t.ok(&[
        "run",
        "-d",
        "--name",
        &py,
        "-v",
        "/:/host:ro",
        "busybox",
        "chroot",
        "/host",
        "python3",
        "-c",
        script,
    ]);
    eventually("five threads", || {
        let o = t.onggi(&["top", "--threads", "--format", "json", &py]);
        o.code == 0 && json(&o).len() == 5
    });
    let threads = json(&t.ok(&["top", "--threads", "--format", "json", &py]));
    let pid = num(&threads[0], "pid");
    let ps = Command::new("ps")
        .args(["-L", "-o", "lwp=", "-p", &pid.to_string()])
        .output()
        .unwrap();
    let lwps: BTreeSet<i64> = String::from_utf8_lossy(&ps.stdout)
        .split_whitespace()
        .map(|w| w.parse().unwrap())
        .collect();
    let tids: BTreeSet<i64> = threads.iter().map(|t| num(t, "tid")).collect();
    assert_eq!(tids, lwps, "the threads ps -L lists");
    for th in &threads {
        assert_eq!(
            (num(th, "pid"), num(th, "ns_pid"), num(th, "threads")),
            (pid, 1, 5)
        );
        let tid = num(th, "tid");
        assert_eq!(
            num(th, "ns_tid"),
            nspid_of(&format!("/proc/{pid}/task/{tid}/status"))
        );
    }
    t.ok(&["rm", "-f", &name, &py]);
    let o = t.onggi(&["top", &name]);
    assert!(
        o.code == 125 && o.stderr.contains("no such container"),
        "{o:#?}"
    );
}

#[test]
fn ns_gives_the_inodes_readlink_gives_and_who_shares_them() {
    let Some(t) = T::new("ns") else {
        return;
    };
    let (own, host) = (t.name("own"), t.name("hostnet"));
    t.ok(&["run", "-d", "--name", &own, "busybox", "sleep", "1000"]);
    t.ok(&[
        "run",
        "-d",
        "--name",
        &host,
        "--network",
        "host",
        "busybox",
        "sleep",
        "1000",
    ]);
    let pid = num(&json(&t.ok(&["top", "--format", "json", &own]))[0], "pid");
    let ns = json(&t.ok(&["ns", "--format", "json", &own]));
    let kinds: Vec<&str> = ns.iter().map(|n| n["kind"].as_str().unwrap()).collect();
    for k in ["ipc", "mnt", "net", "pid", "user", "uts"] {
        assert!(kinds.contains(&k), "{kinds:?}");
    }
    let me = std::process::id();
    for n in &ns {
        let kind = n["kind"].as_str().unwrap();
        let link = fs::read_link(format!("/proc/{pid}/ns/{kind}")).unwrap();
        let inode = n["inode"].as_u64().unwrap();
        assert!(
            link.to_string_lossy().ends_with(&format!(":[{inode}]")),
            "{link:?} {n}"
        );
        let ours = fs::read_link(format!("/proc/{me}/ns/{kind}")).unwrap();
        let with: Vec<&str> = n["shared_with"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap())
            .collect();
        assert_eq!(with.contains(&"host"), ours == link, "{kind}: {with:?}");
    }
    let net = |c: &str| {
        json(&t.ok(&["ns", "--format", "json", c]))
            .into_iter()
            .find(|n| n["kind"] == "net")
            .unwrap()["shared_with"]
            .clone()
    };
    assert_eq!(net(&own), serde_json::json!([]));
    assert_eq!(net(&host), serde_json::json!(["host"]));
    t.ok(&["rm", "-f", &own, &host]);
}

#[test]
fn tree_puts_each_container_under_its_monitor() {
    let Some(t) = T::new("tree") else {
        return;
    };
    let name = t.name("tree");
    two_sleeps(&t, &name);
    let monitor = t.inspect(&name)["State"]["MonitorPid"].as_i64();
    let lines = json(&t.ok(&["tree", "--format", "json", &name]));
    assert_eq!(lines[0]["container"], serde_json::json!([name, "monitor"]));
    if let Some(m) = monitor {
        assert_eq!(num(&lines[0], "pid"), m);
    }
    assert_eq!(lines.len(), 3, "the monitor and two sleeps");
    for l in &lines[1..] {
        let pid = num(l, "pid");
        assert_eq!(l["container"], serde_json::json!([name, "container"]));
        // Each line's parent is the nearest line above it one level up.
        let stat = fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
        let ppid: i64 = stat
            .rsplit(')')
            .next()
            .unwrap()
            .split_whitespace()
            .nth(1)
            .unwrap()
            .parse()
            .unwrap();
        let depth = num(l, "depth");
        let at = lines.iter().position(|x| x == l).unwrap();
        let parent = lines[..at]
            .iter()
            .rev()
            .find(|x| num(x, "depth") == depth - 1)
            .unwrap();
        assert_eq!(num(parent, "pid"), ppid);
    }
    // The whole host's tree has them too, marked.
    let all = t.ok(&["tree"]).stdout;
    assert!(
        all.contains(&format!("{name} (monitor)")) && all.contains(&format!("{name} (1)")),
        "{all}"
    );
    t.ok(&["rm", "-f", &name]);
}

#[test]
fn stats_holds_a_busy_loop_to_its_cpus_and_reads_the_limits() {
    let Some(t) = T::new("stats") else {
        return;
    };
    let (busy, idle) = (t.name("busy"), t.name("idle"));
    t.ok(&[
        "run",
        "-d",
        "--name",
        &busy,
        "--cpus",
        "0.5",
        "busybox",
        "sh",
        "-c",
        "while :; do :; done",
    ]);
    t.ok(&[
        "run",
        "-d",
        "--name",
        &idle,
        "--memory",
        "64m",
        "--pids-limit",
        "10",
        "busybox",
        "sleep",
        "1000",
    ]);
    std::thread::sleep(Duration::from_millis(300));
    // The first look measures over 100 ms, the next ones since the last look.
    for wait in [0, 700, 700] {
        std::thread::sleep(Duration::from_millis(wait));
        let all = json(&t.ok(&["stats", "--no-stream", "--format", "json"]));
        let of = |n: &str| all.iter().find(|u| u["name"] == n).unwrap().clone();
        let cpu = of(&busy)["cpu_percent"].as_f64().unwrap();
        assert!((40.0..=60.0).contains(&cpu), "--cpus 0.5: {cpu} %");
        let idle_u = of(&idle);
        assert!(idle_u["cpu_percent"].as_f64().unwrap() < 5.0, "{idle_u}");
        assert_eq!(num(&idle_u, "memory_limit"), 64 << 20);
        assert_eq!(num(&idle_u, "pids"), 1);
    }
    let table = t.ok(&["stats", "--no-stream", &idle]).stdout;
    assert!(
        table.starts_with("CONTAINER ID") && table.contains("/ 64MiB"),
        "{table}"
    );
    t.ok(&["stop", "-t", "0", &idle]);
    let o = t.onggi(&["stats", "--no-stream", &idle]);
    assert!(o.code == 125 && o.stderr.contains("not running"), "{o:#?}");
    t.ok(&["rm", "-f", &busy, &idle]);
}

#[test]
fn run_explain_says_each_step_in_order() {
    let Some(t) = T::new("explain") else {
        return;
    };
    let o = t.ok(&["run", "--rm", "--explain", "busybox", "echo", "out"]);
    assert_eq!(o.stdout, "out\n", "the container's output is its own");
    let steps: Vec<&str> = o
        .stderr
        .lines()
        .filter_map(|l| l.strip_prefix("explain: "))
        .collect();
    let at = |prefix: &str| {
        steps
            .iter()
            .position(|l| l.starts_with(prefix))
            .unwrap_or_else(|| panic!("no {prefix:?} in {}", o.stderr))
    };
    // The parent makes the cgroup while the init mounts (the two run at once), and
    // the init waits for it before pivot_root: two chains, each in order.
    let init = [
        at("mount new overlay"),
        at("unshare "),
        at("mount new proc"),
        at("mknod /dev/null"),
        at("pivot_root"),
        at("seccomp: filter loaded"),
        at("user 0:0"),
        at("execve"),
    ];
    let parent = [
        at("mount new overlay"),
        at("clone "),
        at("cgroup: "),
        at("pivot_root"),
    ];
    assert!(
        [&init[..], &parent[..]]
            .iter()
            .all(|order| order.windows(2).all(|w| w[0] < w[1])),
        "{init:?} {parent:?}\n{}",
        o.stderr
    );
    // Without the flag: nothing said.
    let quiet = t.ok(&["run", "--rm", "busybox", "true"]);
    assert!(!quiet.stderr.contains("explain:"), "{}", quiet.stderr);
}
