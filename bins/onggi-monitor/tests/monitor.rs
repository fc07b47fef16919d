//! The monitor in the engine's position: a shell starts the "container's init" in the
//! background with its stdout/stderr on pipes, then `exec`s onggi-monitor, which so
//! inherits the init as its child and the pipes' read ends as descriptors. The shell is
//! set up as the engine does it: its own session, a child subreaper, stdio on
//! /dev/null (and stderr on a file here, to show the monitor's messages).
//!
//! Every scenario runs against the release binary (freestanding, what ships) and the
//! debug binary (same code on glibc). No root needed; all files live in tempdirs, and
//! every process started is killed on drop.
#![allow(unsafe_code)] // pre_exec, kill: each with a SAFETY comment

use std::fs;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::Value;

// ---------------------------------------------------------------------------------
// Harness

/// The debug binary cargo built for these tests.
fn debug_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_onggi-monitor"))
}

/// The release binary, built once per test run (a no-op when it is fresh).
fn release_bin() -> PathBuf {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT
        .get_or_init(|| {
            let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
            let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("Cargo.toml");
            let status = Command::new(cargo)
                .args(["build", "--release", "--offline", "-p", "onggi-monitor"])
                .arg("--manifest-path")
                .arg(manifest)
                .status()
                .expect("run cargo build --release");
            assert!(status.success(), "cargo build --release failed");
            // target/<triple>/debug/onggi-monitor → target/<triple>/release/onggi-monitor
            let debug = debug_bin();
            let profile_dir = debug.parent().unwrap().parent().unwrap();
            let release = profile_dir.join("release").join("onggi-monitor");
            assert!(release.exists(), "{} not built", release.display());
            release
        })
        .clone()
}

fn binaries() -> [PathBuf; 2] {
    [release_bin(), debug_bin()]
}

/// One monitor run, described before it starts.
struct Scenario<'a> {
    bin: &'a Path,
    /// Shell commands of the container's init (run in a subshell).
    init: &'a str,
    /// Shell commands run just before `exec onggi-monitor` (e.g. `ulimit`).
    before_exec: &'a str,
    /// Extra monitor options (before `--on-exit`).
    args: Vec<String>,
    /// `--on-exit` and its command.
    on_exit: Vec<String>,
    /// The run's directory, if made beforehand (to name its files in `on_exit`).
    dir: Option<tempfile::TempDir>,
}

impl<'a> Scenario<'a> {
    fn new(bin: &'a Path, init: &'a str) -> Self {
        Scenario {
            bin,
            init,
            before_exec: "",
            args: Vec::new(),
            on_exit: Vec::new(),
            dir: None,
        }
    }

    /// Add a monitor option and its value.
    fn opt(mut self, name: &str, value: &str) -> Self {
        self.args.extend([name.to_owned(), value.to_owned()]);
        self
    }

    fn start(self) -> Run {
        self.start_with_extra_fd(None)
    }

    /// Start, also passing `extra` (not named on the command line) to the monitor.
    fn start_with_extra_fd(self, extra: Option<&OwnedFd>) -> Run {
        let dir = self.dir.unwrap_or_else(|| tempfile::tempdir().unwrap());
        let (out_r, out_w) = std::io::pipe().unwrap();
        let (err_r, err_w) = std::io::pipe().unwrap();
        let inherited = [
            Some(out_r.as_raw_fd()),
            Some(err_r.as_raw_fd()),
            extra.map(AsRawFd::as_raw_fd),
        ];
        let d = dir.path();
        // The init first waits for the monitor to have opened the log: exiting sooner,
        // it could be reaped by the shell before the shell becomes the monitor.
        let script = r#"( while [ ! -e "$DIR/log" ]; do sleep 0.01; done; eval "$INIT" ) &
echo $! > "$DIR/init.pid"
eval "$BEFORE"
mon=$1; shift
exec "$mon" --pid $! "$@" </dev/null >/dev/null 2>"$DIR/monitor.err""#;
        let mut cmd = Command::new("/bin/sh");
        cmd.arg("-c")
            .arg(script)
            .arg("sh")
            .arg(self.bin)
            .args(["--id", "test-container", "--exit-file"])
            .arg(d.join("exit"))
            .arg("--log")
            .arg(d.join("log"))
            .args(["--stdout-fd", &out_r.as_raw_fd().to_string()])
            .args(["--stderr-fd", &err_r.as_raw_fd().to_string()])
            .args(&self.args);
        if !self.on_exit.is_empty() {
            cmd.arg("--on-exit").args(&self.on_exit);
        }
        cmd.env("INIT", self.init)
            .env("BEFORE", self.before_exec)
            .env("DIR", d)
            .stdin(Stdio::null())
            .stdout(Stdio::from(OwnedFd::from(out_w)))
            .stderr(Stdio::from(OwnedFd::from(err_w)));
        // SAFETY: between fork and exec the closure only makes async-signal-safe system
        // calls on integers: the descriptors are owned by this function's pipes and
        // `extra`, all alive until spawn returns.
        unsafe {
            cmd.pre_exec(move || {
                // The engine's setup: a session of its own, orphans come to us.
                libc::setsid();
                libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0);
                // Let the read ends (and the extra descriptor) survive exec.
                for fd in inherited.into_iter().flatten() {
                    if libc::fcntl(fd, libc::F_SETFD, 0) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                }
                Ok(())
            });
        }
        let monitor = cmd.spawn().expect("spawn sh");
        // Drop the write ends held by `cmd` and our read ends: only the init (and the
        // monitor, for the read ends) may hold them now.
        drop(cmd);
        drop((out_r, err_r));
        let run = Run {
            dir,
            monitor,
            status: None,
            init_pid: 0,
        };
        run.with_init_pid()
    }
}

struct Run {
    dir: tempfile::TempDir,
    monitor: Child,
    status: Option<ExitStatus>,
    init_pid: i32,
}

impl Run {
    fn with_init_pid(mut self) -> Self {
        let file = self.path("init.pid");
        self.init_pid = poll_until(Duration::from_secs(10), || {
            fs::read_to_string(&file).ok()?.trim().parse().ok()
        })
        .expect("init.pid written");
        self
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn pid(&self) -> i32 {
        self.monitor.id() as i32
    }

    /// Wait until the monitor has set itself up (ignores SIGTERM).
    fn wait_ready(&self) {
        let status = format!("/proc/{}/status", self.pid());
        poll_until(Duration::from_secs(10), || {
            let text = fs::read_to_string(&status).ok()?;
            let ign = text.lines().find_map(|l| l.strip_prefix("SigIgn:"))?;
            let mask = u64::from_str_radix(ign.trim(), 16).ok()?;
            (mask & 1 << (libc::SIGTERM - 1) != 0).then_some(())
        })
        .expect("monitor ready");
    }

    /// Wait for the monitor to exit.
    fn wait(&mut self, timeout: Duration) -> ExitStatus {
        if let Some(s) = self.status {
            return s;
        }
        let status = poll_until(timeout, || self.monitor.try_wait().unwrap())
            .unwrap_or_else(|| panic!("monitor still running after {timeout:?}{}", self.stderr()));
        self.status = Some(status);
        status
    }

    fn stderr(&self) -> String {
        let text = fs::read_to_string(self.path("monitor.err")).unwrap_or_default();
        format!("\n--- monitor stderr ---\n{text}")
    }

    fn exit_record(&self) -> Value {
        let text = fs::read_to_string(self.path("exit")).expect("exit file");
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("exit file {text:?}: {e}"))
    }

    /// The records of a log file, each checked for Docker's fields.
    fn records(&self, name: &str) -> Vec<Value> {
        let text = fs::read_to_string(self.path(name)).unwrap_or_default();
        text.lines()
            .map(|l| {
                let v: Value = serde_json::from_str(l).unwrap_or_else(|e| panic!("{l:?}: {e}"));
                let stream = v["stream"].as_str().unwrap();
                assert!(stream == "stdout" || stream == "stderr", "{l}");
                assert!(v["log"].is_string(), "{l}");
                rfc3339_to_unix(v["time"].as_str().unwrap());
                v
            })
            .collect()
    }
}

impl Drop for Run {
    fn drop(&mut self) {
        if self.monitor.try_wait().ok().flatten().is_none() {
            // The init is still the running monitor's child (a zombie at worst), so its
            // PID cannot have been reused. Killed first, it is reaped by the monitor,
            // which then exits; killing the monitor first would leave it to PID 1.
            kill(self.init_pid, libc::SIGKILL);
            let gone = poll_until(Duration::from_secs(10), || self.monitor.try_wait().unwrap());
            if gone.is_none() {
                let _ = self.monitor.kill();
                let _ = self.monitor.wait();
            }
        }
    }
}

fn kill(pid: i32, sig: i32) {
    if pid > 0 {
        // SAFETY: kill takes no pointers; callers pass PIDs of processes they started.
        unsafe { libc::kill(pid, sig) };
    }
}

fn poll_until<T>(timeout: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let start = Instant::now();
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if start.elapsed() > timeout {
            return None;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Parse `YYYY-MM-DDTHH:MM:SS.NNNNNNNNNZ` (exactly the monitor's form) to Unix seconds.
fn rfc3339_to_unix(s: &str) -> i64 {
    let b = s.as_bytes();
    assert_eq!(b.len(), 30, "{s}");
    assert!(
        b[4] == b'-'
            && b[7] == b'-'
            && b[10] == b'T'
            && b[13] == b':'
            && b[16] == b':'
            && b[19] == b'.'
            && b[29] == b'Z',
        "{s}"
    );
    let n = |r: std::ops::Range<usize>| -> i64 { s[r].parse().unwrap_or_else(|_| panic!("{s}")) };
    let (y, m, d) = (n(0..4), n(5..7), n(8..10));
    n(20..29);
    // days_from_civil (Hinnant)
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let days = era * 146_097 + yoe * 365 + yoe / 4 - yoe / 100 + doy - 719_468;
    days * 86_400 + n(11..13) * 3600 + n(14..16) * 60 + n(17..19)
}

fn now_unix() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

fn log_texts(records: &[Value], stream: &str) -> Vec<String> {
    records
        .iter()
        .filter(|r| r["stream"] == stream)
        .map(|r| r["log"].as_str().unwrap().to_owned())
        .collect()
}

const LONG: Duration = Duration::from_secs(30);

// ---------------------------------------------------------------------------------
// Logs

#[test]
fn stdout_and_stderr_lines_become_docker_json_lines() {
    for bin in binaries() {
        let mut run = Scenario::new(
            &bin,
            r#"printf 'hello\n'; printf 'oops\n' >&2; printf 'tab\there "q" \\ back\n'; printf '\377\001x\n'"#,
        )
        .start();
        assert!(run.wait(LONG).success(), "{}", run.stderr());
        let records = run.records("log");
        assert_eq!(
            log_texts(&records, "stdout"),
            ["hello\n", "tab\there \"q\" \\ back\n", "\u{fffd}\u{1}x\n"]
        );
        assert_eq!(log_texts(&records, "stderr"), ["oops\n"]);
        for r in &records {
            let t = rfc3339_to_unix(r["time"].as_str().unwrap());
            assert!((t - now_unix()).abs() < 120, "{r}");
        }
        // The raw bytes use JSON's escapes, as Docker's files do.
        let raw = fs::read_to_string(run.path("log")).unwrap();
        assert!(
            raw.contains(r#"{"log":"hello\n","stream":"stdout","time":""#),
            "{raw}"
        );
        assert!(raw.contains(r#""log":"\ufffd\u0001x\n""#), "{raw}");
    }
}

#[test]
fn a_partial_line_is_joined_with_its_rest_and_the_last_one_is_kept() {
    for bin in binaries() {
        let mut run = Scenario::new(
            &bin,
            "printf abc; sleep 0.3; printf 'def\\n'; printf 'no newline at exit'",
        )
        .start();
        assert!(run.wait(LONG).success(), "{}", run.stderr());
        let records = run.records("log");
        assert_eq!(
            log_texts(&records, "stdout"),
            ["abcdef\n", "no newline at exit"]
        );
    }
}

#[test]
fn a_long_line_is_split_into_16k_records() {
    for bin in binaries() {
        let mut run = Scenario::new(&bin, "head -c 40000 /dev/zero | tr '\\0' x; echo").start();
        assert!(run.wait(LONG).success(), "{}", run.stderr());
        let texts = log_texts(&run.records("log"), "stdout");
        let lens: Vec<usize> = texts.iter().map(String::len).collect();
        assert_eq!(lens, [16384, 16384, 40000 - 2 * 16384 + 1], "{bin:?}");
        assert_eq!(texts.concat(), format!("{}\n", "x".repeat(40000)));
    }
}

#[test]
fn five_mib_printed_at_once_loses_nothing() {
    for bin in binaries() {
        let mut run = Scenario::new(&bin, "seq 1 800000; echo done >&2")
            .opt("--log-max-size", "1000000000")
            .start();
        assert!(run.wait(LONG).success(), "{}", run.stderr());
        let records = run.records("log");
        let out = log_texts(&records, "stdout");
        assert_eq!(out.len(), 800_000);
        let bytes: usize = out.iter().map(String::len).sum();
        assert!(bytes > 5 << 20, "{bytes} bytes");
        for (i, line) in out.iter().enumerate() {
            assert_eq!(line, &format!("{}\n", i + 1));
        }
        assert_eq!(log_texts(&records, "stderr"), ["done\n"]);
    }
}

#[test]
fn rotation_keeps_max_files_with_the_newest_lines() {
    for bin in binaries() {
        let mut run = Scenario::new(&bin, "seq 1 20000")
            .opt("--log-max-size", "30000")
            .opt("--log-max-files", "3")
            .start();
        assert!(run.wait(LONG).success(), "{}", run.stderr());
        assert!(!run.path("log.3").exists());
        let mut numbers = Vec::new();
        for name in ["log.2", "log.1", "log"] {
            let size = fs::metadata(run.path(name)).unwrap().len();
            assert!(size <= 30000, "{name}: {size} bytes");
            let texts = log_texts(&run.records(name), "stdout");
            numbers.extend(texts.iter().map(|t| t.trim().parse::<u32>().unwrap()));
        }
        // The three files hold the newest lines, in order, without a gap.
        assert_eq!(numbers.last(), Some(&20000));
        assert!(numbers.len() > 2 * 30000 / 80, "{} lines", numbers.len());
        assert!(numbers.windows(2).all(|w| w[1] == w[0] + 1));
    }
}

#[test]
fn output_that_cannot_be_written_is_dropped_and_the_pipes_still_drained() {
    for bin in binaries() {
        // RLIMIT_FSIZE of one 512-byte block: writes past it fail with EFBIG (and
        // SIGXFSZ, which the monitor ignores). The init writes far more than a pipe
        // holds, so it would hang if the monitor stopped reading.
        let mut run = Scenario::new(&bin, "seq 1 300000");
        run.before_exec = "ulimit -f 1";
        let mut run = run.start();
        assert!(run.wait(LONG).success(), "{}", run.stderr());
        assert_eq!(run.exit_record()["exit_code"], 0);
        assert!(fs::metadata(run.path("log")).unwrap().len() <= 512);
    }
}

// ---------------------------------------------------------------------------------
// Exit

#[test]
fn exit_code_is_recorded() {
    for bin in binaries() {
        let mut run = Scenario::new(&bin, "exit 3").start();
        assert!(run.wait(LONG).success(), "{}", run.stderr());
        let exit = run.exit_record();
        assert_eq!(exit["exit_code"], 3);
        assert!(exit["signal"].is_null());
        assert_eq!(exit["oom_killed"], false);
        let t = rfc3339_to_unix(exit["finished_at"].as_str().unwrap());
        assert!((t - now_unix()).abs() < 120);
    }
}

#[test]
fn a_killed_init_is_recorded_as_128_plus_the_signal() {
    for bin in binaries() {
        let mut run = Scenario::new(&bin, "exec sleep 30").start();
        run.wait_ready();
        kill(run.init_pid, libc::SIGKILL);
        assert!(run.wait(LONG).success(), "{}", run.stderr());
        let exit = run.exit_record();
        assert_eq!(
            (&exit["exit_code"], &exit["signal"]),
            (&137.into(), &9.into())
        );
    }
}

#[test]
fn the_exit_file_appears_whole_or_not_at_all() {
    for bin in binaries() {
        let mut run = Scenario::new(&bin, "sleep 0.2; exit 5").start();
        let path = run.path("exit");
        // Read the file as fast as possible until the monitor has exited (checked
        // before each read, so the last read comes after the file was written).
        let mut seen = 0;
        loop {
            let done = run.monitor.try_wait().unwrap().is_some();
            if let Ok(text) = fs::read_to_string(&path) {
                let v: Value = serde_json::from_str(&text)
                    .unwrap_or_else(|e| panic!("half file {text:?}: {e}"));
                assert_eq!(v["exit_code"], 5);
                seen += 1;
            }
            if done {
                break;
            }
        }
        assert!(seen > 0, "no exit file");
        assert!(run.wait(LONG).success());
        assert!(!run.path("exit.tmp").exists());
    }
}

#[test]
fn on_exit_runs_after_the_exit_file_with_default_signals() {
    for bin in binaries() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Scenario::new(&bin, "echo bye; exit 4");
        s.on_exit = vec![
            "/bin/sh".into(),
            "-c".into(),
            r#"cat "$0" > "$1"; grep -E '^Sig(Ign|Blk)' /proc/self/status >> "$1"; exit 7"#.into(),
            dir.path().join("exit").display().to_string(),
            dir.path().join("ran").display().to_string(),
        ];
        s.dir = Some(dir);
        let mut run = s.start();
        let status = run.wait(LONG);
        // The monitor's process became the --on-exit program: its exit status is that.
        assert_eq!(status.code(), Some(7), "{}", run.stderr());
        let ran = fs::read_to_string(run.path("ran")).expect("on-exit ran");
        let mut lines = ran.lines();
        let exit: Value = serde_json::from_str(lines.next().unwrap()).unwrap();
        assert_eq!(exit["exit_code"], 4);
        // What the monitor ignored and blocked is back to normal (other bits may be
        // inherited from whatever runs the tests).
        let ours = [
            libc::SIGINT,
            libc::SIGHUP,
            libc::SIGPIPE,
            libc::SIGTERM,
            libc::SIGXFSZ,
            libc::SIGCHLD,
        ]
        .iter()
        .fold(0u64, |m, s| m | 1 << (s - 1));
        for l in lines {
            let mask = u64::from_str_radix(l.split_once(':').unwrap().1.trim(), 16).unwrap();
            assert_eq!(mask & ours, 0, "not reset: {l}");
        }
        assert_eq!(log_texts(&run.records("log"), "stdout"), ["bye\n"]);
    }
}

// ---------------------------------------------------------------------------------
// Process hygiene

#[test]
fn orphans_reparented_to_the_monitor_are_reaped() {
    for bin in binaries() {
        // The subshell exits at once: its `sleep 0.3` is orphaned and, the monitor being
        // the subreaper, becomes the monitor's child.
        let mut run = Scenario::new(&bin, "(sleep 0.3 &); exec sleep 2").start();
        run.wait_ready();
        let mon = run.pid();
        let children = |state: Option<char>| -> Vec<(i32, String)> {
            let mut found = Vec::new();
            for entry in fs::read_dir("/proc").unwrap().flatten() {
                let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
                    continue;
                };
                let Ok(stat) = fs::read_to_string(format!("/proc/{pid}/stat")) else {
                    continue;
                };
                // pid (comm) state ppid ...
                let close = stat.rfind(')').unwrap();
                let comm = stat[stat.find('(').unwrap() + 1..close].to_owned();
                let mut rest = stat[close + 2..].split(' ');
                let st = rest.next().unwrap().chars().next().unwrap();
                let ppid: i32 = rest.next().unwrap().parse().unwrap();
                if ppid == mon && state.is_none_or(|s| s == st) {
                    found.push((pid, comm));
                }
            }
            found
        };
        let orphan = poll_until(Duration::from_secs(5), || {
            children(None)
                .into_iter()
                .find(|(pid, comm)| comm == "sleep" && *pid != run.init_pid)
        });
        assert!(
            orphan.is_some(),
            "the orphan never became the monitor's child"
        );
        std::thread::sleep(Duration::from_millis(700));
        assert!(run.monitor.try_wait().unwrap().is_none());
        assert_eq!(children(Some('Z')), [], "zombies left");
        assert!(run.wait(LONG).success(), "{}", run.stderr());
        assert_eq!(run.exit_record()["exit_code"], 0);
    }
}

#[test]
fn sigterm_sighup_and_sigint_are_ignored() {
    for bin in binaries() {
        let mut run = Scenario::new(&bin, "sleep 0.5").start();
        run.wait_ready();
        for sig in [libc::SIGTERM, libc::SIGHUP, libc::SIGINT, libc::SIGPIPE] {
            kill(run.pid(), sig);
        }
        std::thread::sleep(Duration::from_millis(100));
        assert!(
            run.monitor.try_wait().unwrap().is_none(),
            "the monitor died"
        );
        assert!(run.wait(LONG).success(), "{}", run.stderr());
        assert_eq!(run.exit_record()["exit_code"], 0);
    }
}

#[test]
fn only_the_named_descriptors_stay_open_and_the_cwd_is_root() {
    for bin in binaries() {
        let stray: OwnedFd = fs::File::open("/dev/zero").unwrap().into();
        let mut run = Scenario::new(&bin, "exec sleep 1").start_with_extra_fd(Some(&stray));
        run.wait_ready();
        let fd_dir = format!("/proc/{}/fd", run.pid());
        let mut targets: Vec<String> = fs::read_dir(&fd_dir)
            .unwrap()
            .flatten()
            .map(|e| {
                let t = fs::read_link(e.path()).unwrap().display().to_string();
                if t.starts_with("pipe:") {
                    "pipe".into()
                } else {
                    t
                }
            })
            .collect();
        targets.sort();
        let log = run.path("log").display().to_string();
        let err = run.path("monitor.err").display().to_string();
        let mut expected = vec![
            "/dev/null".to_owned(),
            "/dev/null".into(),
            err,
            "pipe".into(),
            "pipe".into(),
            "anon_inode:[signalfd]".into(),
            log,
        ];
        expected.sort();
        assert_eq!(targets, expected);
        assert_eq!(
            fs::read_link(format!("/proc/{}/cwd", run.pid())).unwrap(),
            Path::new("/")
        );
        assert!(run.wait(LONG).success(), "{}", run.stderr());
    }
}

#[test]
fn an_orphan_holding_the_pipes_does_not_keep_the_monitor_forever() {
    for bin in binaries() {
        let mut run =
            Scenario::new(&bin, r#"sleep 20 & echo $! > "$DIR/orphan.pid"; echo bye"#).start();
        let started = Instant::now();
        let status = run.wait(Duration::from_secs(10));
        let orphan: i32 = fs::read_to_string(run.path("orphan.pid"))
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        kill(orphan, libc::SIGKILL);
        assert!(status.success(), "{}", run.stderr());
        assert!(started.elapsed() < Duration::from_secs(8));
        assert_eq!(run.exit_record()["exit_code"], 0);
        assert_eq!(log_texts(&run.records("log"), "stdout"), ["bye\n"]);
    }
}

#[test]
fn a_bad_command_line_or_a_pid_that_is_no_child_exits_2() {
    for bin in binaries() {
        let dir = tempfile::tempdir().unwrap();
        let exit = dir.path().join("exit").display().to_string();
        let log = dir.path().join("log").display().to_string();
        let cases: [(&[&str], &str); 3] = [
            (&["--pid", "1"], "missing option --id"),
            (
                &[
                    "--id",
                    "c",
                    "--pid",
                    "1",
                    "--exit-file",
                    "rel",
                    "--log",
                    &log,
                ],
                "not an absolute path",
            ),
            (
                &[
                    "--id",
                    "c",
                    "--pid",
                    "1",
                    "--exit-file",
                    &exit,
                    "--log",
                    &log,
                ],
                "--pid 1: not a child of this process",
            ),
        ];
        for (args, msg) in cases {
            let out = Command::new(&bin).args(args).output().unwrap();
            assert_eq!(out.status.code(), Some(2), "{args:?}");
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert!(stderr.contains(msg), "{args:?}: {stderr}");
        }
        assert!(!dir.path().join("exit").exists());
        let help = Command::new(&bin).arg("--help").output().unwrap();
        assert!(help.status.success());
        assert!(String::from_utf8_lossy(&help.stdout).starts_with("usage: onggi-monitor"));
    }
}

// ---------------------------------------------------------------------------------
// Memory

/// The smaps_rollup fields that matter, in KiB.
fn smaps_rollup(pid: i32) -> Vec<(String, u64)> {
    let text = fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).unwrap();
    text.lines()
        .filter_map(|l| {
            let (k, v) = l.split_once(':')?;
            let kib = v.trim().strip_suffix(" kB")?.parse().ok()?;
            Some((k.to_owned(), kib))
        })
        .collect()
}

fn field(fields: &[(String, u64)], name: &str) -> u64 {
    fields
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| *v)
        .unwrap()
}

/// conmon, the anchor: its PSS with a running container, measured on this machine.
const CONMON_PSS_KIB: u64 = 462;

/// Print the PSS breakdown of `pid`; its PSS in KiB.
fn report_pss(pid: i32, what: &str) -> u64 {
    let f = smaps_rollup(pid);
    let pss = field(&f, "Pss");
    eprintln!(
        "{what}: Rss {} KiB, Pss {pss} KiB (anon {}, file {}), Private_Dirty {} KiB, \
         Private_Clean {} KiB, Shared_Clean {} KiB, Shared_Dirty {} KiB; \
         {:.0}% of conmon's {CONMON_PSS_KIB} KiB",
        field(&f, "Rss"),
        field(&f, "Pss_Anon"),
        field(&f, "Pss_File"),
        field(&f, "Private_Dirty"),
        field(&f, "Private_Clean"),
        field(&f, "Shared_Clean"),
        field(&f, "Shared_Dirty"),
        100.0 * pss as f64 / CONMON_PSS_KIB as f64,
    );
    pss
}

fn wait_for_log(run: &Run, needle: &str) {
    poll_until(LONG, || {
        let text = fs::read_to_string(run.path("log")).ok()?;
        text.contains(needle).then_some(())
    })
    .unwrap_or_else(|| panic!("{needle:?} never logged{}", run.stderr()));
}

/// Measured twice: with a container that has printed a line on each stream (the
/// steady state of a quiet container), and after a burst that fills every buffer
/// (long lines on both streams, several rotations). The budget is for the release
/// build; the debug build (std, glibc, no optimisation) is shown for information.
#[test]
fn pss_with_a_running_container_is_at_most_half_of_conmon() {
    let init = r#"echo ready; echo err >&2
while [ ! -e "$DIR/go" ]; do sleep 0.01; done
seq 1 200000; head -c 40000 /dev/zero | tr '\0' x; echo
seq 1 100000 >&2; head -c 40000 /dev/zero | tr '\0' y >&2
echo burst-done; exec sleep 30"#;
    for (bin, name) in [(release_bin(), "release"), (debug_bin(), "debug")] {
        let size = fs::metadata(&bin).unwrap().len();
        let run = Scenario::new(&bin, init)
            .opt("--log-max-size", "2000000")
            .start();
        wait_for_log(&run, "err");
        std::thread::sleep(Duration::from_millis(50));
        let quiet = report_pss(
            run.pid(),
            &format!("onggi-monitor {name} ({size} bytes), quiet"),
        );
        fs::write(run.path("go"), "").unwrap();
        wait_for_log(&run, "burst-done");
        std::thread::sleep(Duration::from_millis(50));
        let busy = report_pss(
            run.pid(),
            &format!("onggi-monitor {name} ({size} bytes), after a burst"),
        );
        assert!(
            run.path("log.2").exists(),
            "the burst should rotate the log"
        );
        if name == "release" {
            for pss in [quiet, busy] {
                assert!(
                    pss <= CONMON_PSS_KIB / 2,
                    "release PSS {pss} KiB > {} KiB",
                    CONMON_PSS_KIB / 2
                );
            }
        }
    }
}
