//! onggi-init on the host, where it is not PID 1 and so reaps as a child subreaper:
//! exit codes, signals forwarded, orphans reaped, programs not found. Each scenario
//! runs against the release binary (freestanding, what ships) and the debug binary
//! (the same code on glibc). No root needed; every process started is waited for.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// The release binary, built once per test run (a no-op when it is fresh).
fn release_bin() -> PathBuf {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT
        .get_or_init(|| {
            let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
            let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("Cargo.toml");
            let ok = Command::new(cargo)
                .args(["build", "--release", "--offline", "-p", "onggi-init"])
                .arg("--manifest-path")
                .arg(manifest)
                .status()
                .unwrap()
                .success();
            assert!(ok, "cargo build --release -p onggi-init");
            let debug = PathBuf::from(env!("CARGO_BIN_EXE_onggi-init"));
            // target/<triple>/debug/onggi-init -> target/<triple>/release/onggi-init
            debug
                .parent()
                .unwrap()
                .with_file_name("release")
                .join("onggi-init")
        })
        .clone()
}

fn binaries() -> [PathBuf; 2] {
    [
        PathBuf::from(env!("CARGO_BIN_EXE_onggi-init")),
        release_bin(),
    ]
}

fn init(bin: &Path, args: &[&str]) -> Child {
    Command::new(bin)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// Wait for the first line the program prints (it is ready then).
fn ready(child: &mut Child) -> String {
    let mut line = String::new();
    BufReader::new(child.stdout.as_mut().unwrap())
        .read_line(&mut line)
        .unwrap();
    line
}

fn signal(child: &Child, sig: i32) {
    let ok = Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(child.id().to_string())
        .status()
        .unwrap()
        .success();
    assert!(ok);
}

/// The children of `pid`, each with its state letter.
fn children(pid: u32) -> Vec<(u32, char)> {
    let list = std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")).unwrap();
    list.split_whitespace()
        .map(|c| {
            let stat = std::fs::read_to_string(format!("/proc/{c}/stat")).unwrap_or_default();
            let state = stat.rsplit(") ").next().and_then(|s| s.chars().next());
            (c.parse().unwrap(), state.unwrap_or('?'))
        })
        .collect()
}

#[test]
fn the_init_exits_as_its_program_did() {
    for bin in binaries() {
        for (args, code) in [
            (&["--", "sh", "-c", "exit 3"][..], 3),
            (&["true"][..], 0),
            (&["sh", "-c", "kill -9 $$"][..], 137),
        ] {
            let out = init(&bin, args).wait_with_output().unwrap();
            assert_eq!(out.status.code(), Some(code), "{bin:?} {args:?}: {out:?}");
        }
    }
}

#[test]
fn programs_that_cannot_run_get_a_shells_codes() {
    let dir = tempfile::tempdir().unwrap();
    let not_exec = dir.path().join("script");
    std::fs::write(&not_exec, "#!/bin/sh\n").unwrap();
    for bin in binaries() {
        for (args, code, says) in [
            (vec!["no-such-program"], 127, "not found in PATH"),
            (vec!["/no/such/program"], 127, "no such file or directory"),
            (vec![not_exec.to_str().unwrap()], 126, "permission denied"),
            (vec![], 2, "usage"),
            (vec!["--"], 2, "usage"),
        ] {
            let out = init(&bin, &args).wait_with_output().unwrap();
            let err = String::from_utf8_lossy(&out.stderr);
            assert_eq!(out.status.code(), Some(code), "{args:?}: {err}");
            assert!(err.contains(says), "{args:?}: {err}");
        }
    }
}

/// SIGTERM and SIGINT reach the program, which the init does not share its fate
/// with: the program's own handling decides the exit code.
#[test]
fn signals_are_forwarded_to_the_program() {
    for bin in binaries() {
        let script = "trap 'exit 42' TERM; echo ready; while :; do sleep 0.02; done";
        let mut c = init(&bin, &["sh", "-c", script]);
        ready(&mut c);
        signal(&c, 15);
        assert_eq!(c.wait().unwrap().code(), Some(42), "{bin:?}: TERM, trapped");
        let mut c = init(&bin, &["sh", "-c", "echo ready; exec sleep 10"]);
        ready(&mut c);
        let t = Instant::now();
        signal(&c, 2);
        assert_eq!(
            c.wait().unwrap().code(),
            Some(130),
            "{bin:?}: INT kills sleep"
        );
        assert!(t.elapsed() < Duration::from_secs(5));
    }
}

/// A program that leaves orphans and never waits (the sleep it execs): the orphans
/// come to the init, which reaps them; only the program stays its child.
#[test]
fn orphans_are_reaped() {
    for bin in binaries() {
        let mut c = init(
            &bin,
            &[
                "sh",
                "-c",
                "(sleep 0.1 &); (sleep 0.1 &); echo ready; exec sleep 10",
            ],
        );
        ready(&mut c);
        let deadline = Instant::now() + Duration::from_secs(5);
        let kids = loop {
            let kids = children(c.id());
            if kids.len() == 1 || Instant::now() > deadline {
                break kids;
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        assert_eq!(kids.len(), 1, "{bin:?}: the orphans were reaped: {kids:?}");
        assert_ne!(kids[0].1, 'Z', "{kids:?}");
        signal(&c, 15);
        assert_eq!(c.wait().unwrap().code(), Some(143));
    }
}
