//! `--init` through the binary (root only): onggi-init is the container's PID 1,
//! reaps the orphans an application leaves, and passes signals on to it.

mod common;

use std::time::{Duration, Instant};

use common::Onggi;

/// The container's processes after the orphans had time to end: (pid, state).
fn settled_tree(o: &Onggi, name: &str) -> Vec<(i64, char)> {
    std::thread::sleep(Duration::from_millis(500));
    common::tree(o.inspect(name)["State"]["Pid"].as_i64().unwrap())
}

/// `sleep` exec'd by a shell that left orphans: as PID 1 it never reaps them; under
/// onggi-init they are reaped.
#[test]
fn init_reaps_what_the_application_does_not() {
    let Some(o) = Onggi::new("init-reaps") else {
        return;
    };
    let app = [
        "busybox",
        "sh",
        "-c",
        "(sleep 0.1 &); (sleep 0.1 &); exec sleep 100",
    ];
    o.ok(&[&["run", "-d", "--name", "plain"][..], &app].concat());
    o.ok(&[&["run", "-d", "--init", "--name", "init"][..], &app].concat());
    let plain = settled_tree(&o, "plain");
    assert_eq!(
        plain.iter().filter(|p| p.1 == 'Z').count(),
        2,
        "without --init the orphans stay zombies: {plain:?}"
    );
    let init = settled_tree(&o, "init");
    assert_eq!(
        init.len(),
        2,
        "onggi-init and sleep, nothing else: {init:?}"
    );
    assert!(init.iter().all(|p| p.1 != 'Z'), "{init:?}");
    let cmdline = std::fs::read(format!("/proc/{}/cmdline", init[0].0)).unwrap();
    assert!(
        cmdline.starts_with(b"/sbin/onggi-init\0--\0sh\0"),
        "{}",
        String::from_utf8_lossy(&cmdline)
    );
    o.remove_all_and_check(&[]);
}

/// `stop` sends SIGTERM to PID 1: a bare `sleep` as PID 1 ignores it (the kernel
/// drops signals PID 1 has no handler for) and is killed after the timeout; under
/// onggi-init the signal reaches `sleep`, which dies of it at once.
#[test]
fn init_passes_signals_on() {
    let Some(o) = Onggi::new("init-signals") else {
        return;
    };
    o.ok(&[
        "run", "-d", "--init", "--name", "sig", "busybox", "sleep", "100",
    ]);
    let t = Instant::now();
    o.ok(&["stop", "-t", "10", "sig"]);
    assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
    assert_eq!(
        o.inspect("sig")["State"]["ExitCode"],
        143,
        "SIGTERM, forwarded"
    );
    // The program's own exit code comes through; one not found is 127.
    let r = o.onggi(&[
        "run",
        "--rm",
        "--init",
        "busybox",
        "sh",
        "-c",
        "echo $$; exit 7",
    ]);
    assert_eq!((r.code, r.stdout.as_str()), (7, "2\n"), "{r:#?}");
    let r = o.onggi(&[
        "run",
        "--rm",
        "--init",
        "--read-only",
        "busybox",
        "no-such-program",
    ]);
    assert!(r.code == 127 && r.stderr.contains("not found"), "{r:#?}");
    o.remove_all_and_check(&[]);
}
