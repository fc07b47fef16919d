//! Restart policies, `restart` and `start -a` through the binary (root only), each
//! test on its own store, leaving nothing behind.

mod common;

use std::time::{Duration, Instant};

use common::{kill9, Onggi};
use serde_json::Value;

fn status(v: &Value) -> &str {
    v["State"]["Status"].as_str().unwrap_or("")
}

fn count(v: &Value) -> i64 {
    v["RestartCount"].as_i64().unwrap_or(-1)
}

/// `on-failure:3`: a failing container runs four times (three restarts), then stays
/// down; one that succeeds is not restarted at all.
#[test]
fn on_failure_restarts_exactly_n_times() {
    let Some(o) = Onggi::new("on-failure") else {
        return;
    };
    let t = Instant::now();
    o.ok(&[
        "run",
        "-d",
        "--name",
        "fails",
        "--restart",
        "on-failure:3",
        "busybox",
        "sh",
        "-c",
        "echo ran; exit 3",
    ]);
    o.ok(&[
        "run",
        "-d",
        "--name",
        "works",
        "--restart",
        "on-failure:3",
        "busybox",
        "sh",
        "-c",
        "echo ran",
    ]);
    let v = o.until("fails", 20, |v| count(v) == 3 && status(v) == "exited");
    assert_eq!(v["State"]["ExitCode"], 3);
    // Back-off 100 + 200 + 400 ms: not a spin, not much more either.
    assert!(
        t.elapsed() > Duration::from_millis(700),
        "{:?}",
        t.elapsed()
    );
    // The next wait would have been 800 ms: nothing comes after the third.
    std::thread::sleep(Duration::from_millis(1500));
    let v = o.inspect("fails");
    assert_eq!((status(&v), count(&v)), ("exited", 3), "{v:#}");
    assert_eq!(o.ok(&["logs", "fails"]), "ran\n".repeat(4));
    let w = o.inspect("works");
    assert_eq!(
        (status(&w), count(&w), w["State"]["ExitCode"].as_i64()),
        ("exited", 0, Some(0))
    );
    assert_eq!(o.ok(&["logs", "works"]), "ran\n");
    o.remove_all_and_check(&[]);
}

/// `always`: a killed monitor is noticed by the next command, which has the container
/// restarted; a container that keeps exiting keeps coming back; `stop` and `kill`
/// end that until the next `start`.
#[test]
fn always_survives_a_monitor_kill_but_not_a_stop() {
    let Some(o) = Onggi::new("always") else {
        return;
    };
    o.ok(&[
        "run",
        "-d",
        "--name",
        "always",
        "--restart",
        "always",
        "--init",
        "busybox",
        "sleep",
        "100",
    ]);
    let first = o.inspect("always");
    let (pid, monitor) = (
        first["State"]["Pid"].as_i64().unwrap(),
        first["State"]["MonitorPid"].as_i64().unwrap(),
    );
    kill9(monitor);
    // This inspect finds the monitor dead and runs the exit hook, which restarts it.
    let v = o.until("always", 10, |v| {
        status(v) == "running" && v["State"]["Pid"].as_i64() != Some(pid)
    });
    assert_eq!(count(&v), 1, "{v:#}");
    assert!(
        common::state(&pid.to_string()).is_none_or(|s| s == 'Z'),
        "the old init is gone"
    );

    // Ended by the user: not restarted (the back-off would be over long before).
    for end in [&["stop", "-t", "1", "always"][..], &["kill", "always"]] {
        o.ok(&["start", "always"]);
        o.ok(end);
        std::thread::sleep(Duration::from_millis(600));
        assert_eq!(status(&o.inspect("always")), "exited", "{end:?}");
    }
    // A signal that does not stop it is the container's business: SIGHUP, passed on
    // by onggi-init (PID 1 would ignore it), kills sleep, and the policy brings it back.
    o.ok(&["start", "always"]);
    let pid = o.inspect("always")["State"]["Pid"].as_i64();
    o.ok(&["kill", "-s", "HUP", "always"]);
    let v = o.until("always", 10, |v| {
        status(v) == "running" && v["State"]["Pid"].as_i64() != pid
    });
    assert_eq!(count(&v), 1, "counted from the user's start: {v:#}");

    o.ok(&[
        "run",
        "-d",
        "--name",
        "loop",
        "--restart",
        "unless-stopped",
        "busybox",
        "sh",
        "-c",
        "echo ran; sleep 0.2",
    ]);
    o.until("loop", 15, |v| count(v) >= 3);
    assert!(o.ok(&["logs", "loop"]).matches("ran\n").count() >= 4);
    o.remove_all_and_check(&[]);
}

/// `restart` stops and starts (a new init, the count back to 0); `start -a` prints
/// the new output and exits with the container's code.
#[test]
fn restart_and_start_attached() {
    let Some(o) = Onggi::new("restart") else {
        return;
    };
    o.ok(&["run", "-d", "--name", "sleeper", "busybox", "sleep", "100"]);
    let pid = o.inspect("sleeper")["State"]["Pid"].as_i64();
    let t = Instant::now();
    assert_eq!(o.ok(&["restart", "-t", "1", "sleeper"]), "sleeper\n");
    assert!(t.elapsed() < Duration::from_secs(5));
    let v = o.inspect("sleeper");
    assert_eq!(status(&v), "running");
    assert_ne!(v["State"]["Pid"].as_i64(), pid);

    o.ok(&[
        "create",
        "--name",
        "created",
        "busybox",
        "sh",
        "-c",
        "echo hello; echo oops >&2; exit 5",
    ]);
    let r = o.onggi(&["start", "-a", "created"]);
    assert_eq!(
        (r.code, r.stdout.as_str(), r.stderr.as_str()),
        (5, "hello\n", "oops\n"),
        "{r:#?}"
    );
    // Again: only this run's output.
    let r = o.onggi(&["start", "-a", "created"]);
    assert_eq!((r.code, r.stdout.as_str()), (5, "hello\n"), "{r:#?}");
    let r = o.onggi(&["start", "-a", "created", "sleeper"]);
    assert!(
        r.code == 125 && r.stderr.contains("one container"),
        "{r:#?}"
    );
    o.remove_all_and_check(&[]);
}

#[test]
fn bad_policies_are_refused() {
    let Some(o) = Onggi::new("bad-policy") else {
        return;
    };
    for (args, says) in [
        (
            &["run", "--restart", "sometimes", "busybox", "true"][..],
            "--restart sometimes",
        ),
        (
            &["run", "--restart", "always:2", "busybox", "true"][..],
            "only on-failure",
        ),
        (
            &["run", "--rm", "--restart", "always", "busybox", "true"][..],
            "--restart and --rm",
        ),
    ] {
        let r = o.onggi(args);
        assert!(r.code == 125 && r.stderr.contains(says), "{args:?}: {r:#?}");
    }
    assert!(o.ids().is_empty());
}
