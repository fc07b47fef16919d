//! `onggi`'s container commands through the binary (root only): a busybox image
//! imported into a store in a tempdir, containers run on it, checked from inside
//! and from the host, and nothing left behind.

mod harness;

use std::fs;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use harness::*;

impl T {
    fn wait_state(&self, name: &str, want: &str) {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let s = self.inspect(name)["State"]["Status"]
                .as_str()
                .unwrap_or("")
                .to_owned();
            if s == want {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{name}: state {s}, wanted {want}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// Nothing of a removed container stays: no mount, no cgroup, no directory.
fn assert_nothing_left(t: &T, id: &str) {
    let mounts = fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(!mounts.contains(id), "a mount of {id} is left");
    let cgroups = Command::new("find")
        .args(["/sys/fs/cgroup", "-maxdepth", "3", "-name", id])
        .output()
        .unwrap();
    assert!(
        cgroups.stdout.is_empty(),
        "cgroup left: {}",
        String::from_utf8_lossy(&cgroups.stdout)
    );
    assert!(
        !t.dir.path().join("data/containers").join(id).exists(),
        "directory left"
    );
}

#[test]
fn run_in_the_foreground_prints_output_and_returns_the_exit_code() {
    let Some(t) = T::new("fg") else {
        return;
    };
    let name = t.name("fg");
    let o = t.onggi(&[
        "run",
        "--rm",
        "--name",
        &name,
        "busybox",
        "sh",
        "-c",
        "echo out; echo err >&2; echo pid=$$; exit 3",
    ]);
    assert_eq!(o.code, 3, "{o:#?}");
    assert!(
        o.stdout.contains("out\n") && o.stdout.contains("pid=1"),
        "{o:#?}"
    );
    assert!(o.stderr.contains("err\n"), "{o:#?}");
    assert!(t.onggi(&["inspect", &name]).code != 0, "--rm removed it");
}

#[test]
fn detached_container_lives_logs_and_stops() {
    let Some(t) = T::new("detached") else {
        return;
    };
    let name = t.name("web");
    let o = t.ok(&[
        "run",
        "-d",
        "--name",
        &name,
        "busybox",
        "sh",
        "-c",
        "echo started; i=0; while true; do echo tick $i; i=$((i+1)); sleep 0.1; done",
    ]);
    let id = o.stdout.trim().to_owned();
    assert_eq!(id.len(), 64, "{o:#?}");
    let ps = t.ok(&["ps"]).stdout;
    assert!(
        ps.lines()
            .any(|l| l.starts_with(&id[..12]) && l.contains("Up") && l.ends_with(&name)),
        "{ps}"
    );
    std::thread::sleep(Duration::from_millis(400));
    let logs = t.ok(&["logs", &name]).stdout;
    assert!(logs.starts_with("started\ntick 0\n"), "{logs}");
    let tail = t.ok(&["logs", "--tail", "1", &id[..8]]).stdout;
    assert_eq!(tail.lines().count(), 1, "{tail}");
    let ts = t.ok(&["logs", "-t", "--tail", "1", &name]).stdout;
    assert!(ts.starts_with("20") && ts.contains("Z tick"), "{ts}");
    let pid = t.inspect(&name)["State"]["Pid"].as_i64().unwrap();
    assert!(fs::metadata(format!("/proc/{pid}")).is_ok());
    // sh as PID 1 ignores SIGTERM: stop kills it after the timeout.
    t.ok(&["stop", "-t", "1", &name]);
    let st = t.inspect(&name);
    assert_eq!(
        (
            st["State"]["Status"].as_str(),
            st["State"]["ExitCode"].as_i64()
        ),
        (Some("exited"), Some(137))
    );
    assert!(t.ok(&["ps"]).stdout.lines().count() == 1, "only the header");
    assert!(t.ok(&["ps", "-a"]).stdout.contains("Exited (137)"));
    // Started again: the same container, its output appended.
    t.ok(&["start", &name]);
    t.wait_state(&name, "running");
    t.ok(&["rm", "-f", &name]);
    assert_nothing_left(&t, &id);
}

#[test]
fn options_reach_the_container() {
    let Some(t) = T::new("options") else {
        return;
    };
    let host = t.dir.path().join("shared");
    fs::create_dir(&host).unwrap();
    fs::write(host.join("in"), "from the host\n").unwrap();
    let vol = format!("{}:/data:ro", host.display());
    let name = t.name("opts");
    let script = "echo A=$A B=$B; pwd; id -u; hostname; cat /data/in; touch /data/x 2>&1 | head -1; touch /x 2>&1 | head -1; \
                  cat /sys/fs/cgroup/memory/memory.limit_in_bytes 2>/dev/null || cat /sys/fs/cgroup/memory.max; mount | grep ' /scratch '";
    let o = t.onggi(&[
        "run",
        "--rm",
        "--name",
        &name,
        "-e",
        "A=1",
        "-e",
        "B=two words",
        "-w",
        "/tmp",
        "-u",
        "1000",
        "--hostname",
        "box",
        "-v",
        &vol,
        "--read-only",
        "--memory",
        "64m",
        "--tmpfs",
        "/scratch:size=1m",
        "busybox",
        "sh",
        "-c",
        script,
    ]);
    assert_eq!(o.code, 0, "{o:#?}");
    let lines: Vec<&str> = o.stdout.lines().collect();
    assert_eq!(
        lines[..5],
        ["A=1 B=two words", "/tmp", "1000", "box", "from the host"],
        "{o:#?}"
    );
    assert!(
        lines[5].contains("Read-only file system"),
        "the volume is ro: {o:#?}"
    );
    assert!(
        lines[6].contains("Read-only file system"),
        "the root is ro: {o:#?}"
    );
    assert_eq!(lines[7], "67108864", "{o:#?}");
    assert!(lines[8].contains("tmpfs"), "{o:#?}");
}

#[test]
fn bad_input_gets_the_right_exit_code_and_leaves_nothing() {
    let Some(t) = T::new("bad") else {
        return;
    };
    let cases: &[(&[&str], i32, &str)] = &[
        (&["run", "nosuchimage", "true"], 125, "no such image"),
        (
            &["run", "--memory", "-1", "busybox", "true"],
            125,
            "--memory",
        ),
        (
            &["run", "-v", "relative:/x", "busybox", "true"],
            125,
            "-v relative:/x",
        ),
        (
            &["run", "-v", "/nonexistent-host-dir:/x", "busybox", "true"],
            125,
            "does not exist",
        ),
        (
            &["run", "busybox", "/no/such/program"],
            127,
            "/no/such/program",
        ),
        (
            &["run", "--name", "bad name", "busybox", "true"],
            125,
            "--name",
        ),
    ];
    for (args, code, words) in cases {
        let o = t.onggi(args);
        assert_eq!(o.code, *code, "{args:?}: {o:#?}");
        assert!(
            o.stderr.starts_with("error:") && o.stderr.contains(words),
            "{args:?}: {o:#?}"
        );
    }
    let name = t.name("taken");
    t.ok(&["create", "--name", &name, "busybox", "true"]);
    let o = t.onggi(&["run", "--name", &name, "busybox", "true"]);
    assert!(
        o.code == 125 && o.stderr.contains("already in use"),
        "{o:#?}"
    );
    assert_eq!(
        t.ok(&["ps", "-a", "-q"]).stdout.lines().count(),
        1,
        "only the created one"
    );
    let containers = t.dir.path().join("data/containers");
    assert_eq!(
        fs::read_dir(&containers).unwrap().count(),
        1,
        "no half-made container directory"
    );
}

/// A monitor killed with SIGKILL: the next command finds the container stopped,
/// with the cause recorded, and nothing of it left running.
#[test]
fn a_killed_monitor_leaves_a_stopped_container_with_a_cause() {
    let Some(t) = T::new("monitor") else {
        return;
    };
    let name = t.name("m");
    t.ok(&["run", "-d", "--name", &name, "busybox", "sleep", "100"]);
    let st = t.inspect(&name);
    let (pid, monitor) = (
        st["State"]["Pid"].as_i64().unwrap(),
        st["State"]["MonitorPid"].as_i64().unwrap(),
    );
    assert!(monitor > 0 && pid > 0);
    nix_kill(monitor as i32);
    let st = t.inspect(&name);
    assert_eq!(st["State"]["Status"], "exited", "{st}");
    assert!(
        st["State"]["Error"].as_str().unwrap().contains("monitor"),
        "{st}"
    );
    let deadline = Instant::now() + Duration::from_secs(5);
    while fs::metadata(format!("/proc/{pid}")).is_ok() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    assert!(
        stat.is_empty() || stat.contains(") Z"),
        "the init is gone: {stat}"
    );
}

/// SIGKILL to a process we started (the monitor of our own container).
fn nix_kill(pid: i32) {
    assert!(Command::new("kill")
        .arg("-9")
        .arg(pid.to_string())
        .status()
        .unwrap()
        .success());
    let deadline = Instant::now() + Duration::from_secs(5);
    while fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| !s.contains(") Z"))
        && Instant::now() < deadline
    {
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// `-i` reads this command's stdin; `-it` gives the container a terminal (relayed
/// through script(1)'s pty here), and the exit code comes back in both.
#[test]
fn interactive_and_terminal_runs() {
    let Some(t) = T::new("it") else {
        return;
    };
    let base = format!(
        "{BIN} --root {} --run-root {}",
        t.dir.path().join("data").display(),
        t.dir.path().join("run").display()
    );
    let piped = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "echo 'echo piped-$((1+1)); exit 5' | {base} run --rm -i busybox sh"
        ))
        .output()
        .unwrap();
    assert_eq!(piped.status.code(), Some(5), "{piped:?}");
    assert_eq!(String::from_utf8_lossy(&piped.stdout), "piped-2\n");
    let tty = Command::new("script")
        .args([
            "-qec",
            &format!(
                "{base} run --rm -it busybox sh -c 'tty; echo in-$((6*7)); exit 4'; echo rc=$?"
            ),
            "/dev/null",
        ])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&tty.stdout).replace('\r', "");
    assert!(
        out.contains("/dev/pts/0\nin-42\n") && out.contains("rc=4"),
        "{out}"
    );
    assert_eq!(t.ok(&["ps", "-a", "-q"]).stdout, "", "--rm removed both");

    // Detached: -t gets a pty whose master the monitor logs and holds; -i a stdin
    // that stays open. A shell then waits for input instead of exiting (Docker's
    // `run -dit`), and exec works in it.
    let (dit, di, dt) = (t.name("dit"), t.name("di"), t.name("dt"));
    t.ok(&["run", "-dit", "--name", &dit, "busybox", "sh"]);
    t.ok(&["run", "-di", "--name", &di, "busybox", "sh"]);
    t.ok(&[
        "run",
        "-dt",
        "--name",
        &dt,
        "busybox",
        "sh",
        "-c",
        "tty; echo out-$((2*3))",
    ]);
    std::thread::sleep(std::time::Duration::from_millis(500));
    let running = t.ok(&["ps"]).stdout;
    assert!(running.contains(&dit) && running.contains(&di), "{running}");
    let stdin = |n: &str| t.ok(&["exec", n, "readlink", "/proc/1/fd/0"]).stdout;
    assert_eq!(stdin(&dit), "/dev/pts/0\n");
    assert!(stdin(&di).starts_with("pipe:"), "{}", stdin(&di));
    assert!(t.ok(&["logs", &dit]).stdout.contains("built-in shell"));
    let exited = t.ok(&["wait", &dt]).stdout;
    assert_eq!(exited, "0\n");
    assert_eq!(t.ok(&["logs", &dt]).stdout, "/dev/pts/0\r\nout-6\r\n");
    t.ok(&["rm", "-f", &dit, &di, &dt]);
    assert_eq!(t.ok(&["ps", "-a", "-q"]).stdout, "");
}

/// Containers get podman's default seccomp profile (resolved for their
/// capabilities) unless told otherwise; Docker's default capabilities.
#[test]
fn default_seccomp_profile_and_capabilities() {
    let Some(t) = T::new("seccomp") else {
        return;
    };
    let show = "grep -E '^(Seccomp|CapEff):' /proc/self/status | tr -s '\\t' ' '";
    let o = t.ok(&["run", "--rm", "busybox", "sh", "-c", show]);
    if std::path::Path::new("/usr/share/containers/seccomp.json").exists() {
        assert!(o.stdout.contains("Seccomp: 2"), "{o:#?}");
    }
    // Docker's 14 default capabilities (those this host's bounding set has).
    assert!(
        o.stdout.contains("CapEff: 00000000a80425fb")
            || o.stdout.contains("CapEff: 00000000a80405fb"),
        "{o:#?}"
    );
    let o = t.ok(&[
        "run",
        "--rm",
        "--security-opt",
        "seccomp=unconfined",
        "--cap-drop",
        "ALL",
        "busybox",
        "sh",
        "-c",
        show,
    ]);
    assert!(
        o.stdout.contains("Seccomp: 0") && o.stdout.contains("CapEff: 0000000000000000"),
        "{o:#?}"
    );
}
