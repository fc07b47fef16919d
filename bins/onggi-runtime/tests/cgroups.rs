//! Privileged integration tests of cgroup ENFORCEMENT: real containers with
//! `linux.resources` set, checked by what the kernel does to them (a busy loop gets
//! its quota, an allocation is OOM-killed, forks fail at the pids limit, the freezer
//! stops a program) and by the cgroup files the runtime wrote.
//!
//! These tests are for a cgroup v1 (or hybrid) host, where the controllers live at
//! `/sys/fs/cgroup/<controller>`; on a cgroup v2-only host they skip with a note, and
//! `tests/v2-enforce.sh` makes the same checks in the v2 guest of `vm-run`.
//!
//! The helpers are those of `runtime.rs` (copied: every integration-test file is its
//! own crate): every test needs root and skips itself otherwise; each has its own
//! `--root`, bundles and output files in a tempdir, ids unique on the host, and its
//! own cgroup parent (`cgroupsPath` is `/onggi-ct<PID>-<test>/<id>`). A [`Fixture`]
//! runs `delete --force` on every id it handed out and removes its cgroup parent when
//! the test ends, passed or failed.
//!
//! Tests run in parallel with each other and with `runtime.rs` on a small machine, so
//! CPU use is measured from the container's own cgroup (`cpuacct.usage`), never from
//! the host's view, and lower bounds allow for other tests taking the CPUs.

use std::cell::{Cell, RefCell};
use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

const BIN: &str = env!("CARGO_BIN_EXE_onggi-runtime");
const MKBUNDLE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../scripts/mkbundle.sh");
/// How long any single command or condition may take before the test fails.
const TIMEOUT: Duration = Duration::from_secs(10);
const MIB: i64 = 1 << 20;
/// A program that allocates and touches 100 MiB: busybox dd's buffer, filled from
/// /dev/zero by one read(2). (A shell holding a growing string, `x=$(yes | head -c
/// 100000000)`, can instead thrash for minutes at the limit, reclaiming and
/// refaulting its own text pages, before the OOM killer comes: seen on cgroup v2
/// with the rootfs on 9p.)
const ALLOCATE_100MIB: [&str; 5] = ["dd", "if=/dev/zero", "of=/dev/null", "bs=100M", "count=1"];

// ---------------------------------------------------------------------------------
// Helpers (from runtime.rs)
// ---------------------------------------------------------------------------------

/// What a finished command left behind.
#[derive(Debug)]
struct Out {
    code: i32,
    stdout: String,
    stderr: String,
    /// The stdout file: a container made by `create` or `run --detach` writes here
    /// after the runtime has exited.
    stdout_file: PathBuf,
}

impl Out {
    /// Require exit code 0.
    #[track_caller]
    fn ok(self) -> Out {
        assert_eq!(self.code, 0, "expected success, got {self:#?}");
        self
    }

    /// Require a failure reported the runtime's way (`error: ...` on stderr) whose
    /// message contains every one of `words`.
    #[track_caller]
    fn fails_with(self, words: &[&str]) -> Out {
        assert_ne!(self.code, 0, "expected failure, got {self:#?}");
        assert!(
            self.stderr.starts_with("error:"),
            "stderr should start with 'error:': {self:#?}"
        );
        for w in words {
            assert!(
                self.stderr.contains(w),
                "stderr should mention {w:?}: {self:#?}"
            );
        }
        self
    }

    /// The stdout file as it is now.
    fn stdout_now(&self) -> String {
        read(&self.stdout_file)
    }
}

/// A runtime process that has been started and not yet waited for.
struct Running {
    child: Option<Child>,
    stdout: PathBuf,
    stderr: PathBuf,
    what: String,
}

impl Running {
    /// Wait (at most [`TIMEOUT`]) for the runtime to exit and collect its output.
    #[track_caller]
    fn wait(mut self) -> Out {
        let mut child = self.child.take().expect("waited once");
        let deadline = Instant::now() + TIMEOUT;
        let status = loop {
            if let Some(st) = child.try_wait().expect("try_wait") {
                break st;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "`{}` did not finish within {TIMEOUT:?}\nstdout: {}\nstderr: {}",
                    self.what,
                    read(&self.stdout),
                    read(&self.stderr)
                );
            }
            std::thread::sleep(Duration::from_millis(2));
        };
        use std::os::unix::process::ExitStatusExt;
        Out {
            code: status
                .code()
                .unwrap_or_else(|| 128 + status.signal().unwrap_or(0)),
            stdout: read(&self.stdout),
            stderr: read(&self.stderr),
            stdout_file: self.stdout.clone(),
        }
    }

    /// What the process has written to stdout so far.
    fn stdout_now(&self) -> String {
        read(&self.stdout)
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(c) = &mut self.child {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn read(p: &Path) -> String {
    fs::read_to_string(p).unwrap_or_default()
}

/// One test's world: a tempdir holding its `--root`, bundles and output files; the
/// container ids it handed out (each deleted with `--force` on drop); and a cgroup
/// parent of its own, `/onggi-ct<PID>-<test>`, that every container it starts is put
/// under (so parallel tests never share, create or remove one another's parent).
struct Fixture {
    test: &'static str,
    dir: tempfile::TempDir,
    root: PathBuf,
    cgroup_parent: String,
    ids: RefCell<Vec<String>>,
    seq: Cell<u32>,
}

impl Fixture {
    /// `None` (after a note on stderr) when not root or not on a cgroup v1 host: the
    /// test then returns early.
    fn new(test: &'static str) -> Option<Fixture> {
        if !nix::unistd::geteuid().is_root() {
            eprintln!("skipping {test}: onggi-runtime's integration tests need root");
            return None;
        }
        if !Path::new(V1).join("pids").is_dir() {
            eprintln!(
                "skipping {test}: not a cgroup v1 host (no {V1}/pids); \
                 tests/v2-enforce.sh checks cgroup v2 in vm-run's guest"
            );
            return None;
        }
        let dir = tempfile::Builder::new()
            .prefix("onggi-ct-")
            .tempdir()
            .expect("tempdir");
        let root = dir.path().join("state");
        Template::acquire();
        Some(Fixture {
            test,
            dir,
            root,
            cgroup_parent: format!("onggi-ct{}-{test}", std::process::id()),
            ids: RefCell::new(Vec::new()),
            seq: Cell::new(0),
        })
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn next(&self) -> u32 {
        let n = self.seq.get();
        self.seq.set(n + 1);
        n
    }

    /// A container id unique on this host, deleted when the fixture drops.
    fn id(&self, name: &str) -> String {
        let id = format!("ct{}-{}-{name}", std::process::id(), self.test);
        self.ids.borrow_mut().push(id.clone());
        id
    }

    /// A directory for the test's own files (bind mount sources and the like).
    fn host_dir(&self, name: &str) -> PathBuf {
        let p = self.path(name);
        fs::create_dir_all(&p).unwrap();
        p
    }

    /// A new bundle running `args`, its config.json changed by `edit`: mkbundle.sh's
    /// bundle, with the rootfs hard-linked from the shared [`Template`].
    fn bundle(&self, args: &[&str], edit: impl FnOnce(&mut Value)) -> PathBuf {
        let dir = self.path(&format!("bundle{}", self.next()));
        fs::create_dir(&dir).unwrap();
        let template = Template::path();
        let st = Command::new("cp")
            .arg("-al")
            .arg(template.join("rootfs"))
            .arg(dir.join("rootfs"))
            .status()
            .unwrap();
        assert!(st.success(), "cp -al of the template rootfs");
        let mut config = config_of(&template);
        config["process"]["args"] = json!(args);
        edit(&mut config);
        write_config(&dir, &config);
        dir
    }

    /// The `--bundle` argument for container `id`: first points the bundle's
    /// cgroupsPath at `/<this test's cgroup parent>/<id>`.
    fn bundle_for<'b>(&self, id: &str, bundle: &'b Path) -> &'b str {
        let mut c = config_of(bundle);
        c["linux"]["cgroupsPath"] = json!(self.cgroup_path(id));
        write_config(bundle, &c);
        path_str(bundle)
    }

    /// Start `onggi-runtime --root R ARGS...` with `stdin` and output in files.
    fn spawn_with(&self, args: &[&str], stdin: Stdio) -> Running {
        let n = self.next();
        let stdout = self.path(&format!("out{n}"));
        let stderr = self.path(&format!("err{n}"));
        let child = Command::new(BIN)
            .arg("--root")
            .arg(&self.root)
            .args(args)
            .stdin(stdin)
            .stdout(File::create(&stdout).unwrap())
            .stderr(File::create(&stderr).unwrap())
            .spawn()
            .expect("spawn onggi-runtime");
        Running {
            child: Some(child),
            stdout,
            stderr,
            what: format!("onggi-runtime {}", args.join(" ")),
        }
    }

    /// Start `onggi-runtime --root R ARGS...` with stdin closed.
    fn spawn(&self, args: &[&str]) -> Running {
        self.spawn_with(args, Stdio::null())
    }

    /// Run `onggi-runtime --root R ARGS...` to completion.
    #[track_caller]
    fn rt(&self, args: &[&str]) -> Out {
        self.spawn(args).wait()
    }

    /// `create --bundle B ID`.
    #[track_caller]
    fn create(&self, id: &str, bundle: &Path) -> Out {
        self.rt(&["create", "--bundle", self.bundle_for(id, bundle), id])
    }

    /// `run` a container in the foreground and return what it printed.
    #[track_caller]
    fn run(&self, id: &str, bundle: &Path) -> Out {
        self.rt(&["run", "--bundle", self.bundle_for(id, bundle), id])
    }

    /// Make a container running in the background (`run --detach`).
    #[track_caller]
    fn run_detached(&self, id: &str, bundle: &Path) -> Out {
        self.rt(&[
            "run",
            "--detach",
            "--bundle",
            self.bundle_for(id, bundle),
            id,
        ])
        .ok()
    }

    /// `state ID`, parsed.
    #[track_caller]
    fn state(&self, id: &str) -> Value {
        let out = self.rt(&["state", id]).ok();
        serde_json::from_str(&out.stdout).unwrap_or_else(|e| panic!("state JSON: {e}: {out:?}"))
    }

    #[track_caller]
    fn status(&self, id: &str) -> String {
        self.state(id)["status"].as_str().unwrap().to_string()
    }

    #[track_caller]
    fn wait_status(&self, id: &str, want: &str) {
        wait_until(&format!("{id} to be {want}"), || self.status(id) == want);
    }

    fn state_dir(&self, id: &str) -> PathBuf {
        self.root.join(id)
    }

    /// `/<this test's cgroup parent>/<id>`, the container's linux.cgroupsPath.
    fn cgroup_path(&self, id: &str) -> String {
        format!("/{}/{id}", self.cgroup_parent)
    }

    /// Control file `file` of container `id` in the v1 hierarchy of `controller`,
    /// e.g. `fx.cgroup_file(&id, "pids", "pids.max")`.
    fn cgroup_file(&self, id: &str, controller: &str, file: &str) -> PathBuf {
        Path::new(V1)
            .join(controller)
            .join(&self.cgroup_parent)
            .join(id)
            .join(file)
    }

    /// The trimmed content of [`Fixture::cgroup_file`]; fails if it cannot be read.
    #[track_caller]
    fn cgroup_read(&self, id: &str, controller: &str, file: &str) -> String {
        let p = self.cgroup_file(id, controller, file);
        fs::read_to_string(&p)
            .unwrap_or_else(|e| panic!("read {}: {e}", p.display()))
            .trim()
            .to_string()
    }

    /// The container's cgroup directories, in every hierarchy.
    fn cgroup_dirs(&self, id: &str) -> Vec<PathBuf> {
        cgroup_dirs_of(&format!("{}/{id}", self.cgroup_parent))
    }

    /// Nothing of `id` is left: no state directory, no cgroup, no process whose
    /// command line names it.
    #[track_caller]
    fn assert_gone(&self, id: &str) {
        assert!(
            !self.state_dir(id).exists(),
            "state directory of {id} left behind"
        );
        assert_eq!(
            self.cgroup_dirs(id),
            Vec::<PathBuf>::new(),
            "cgroups of {id} left behind"
        );
        assert_eq!(
            processes_naming(id),
            Vec::<i32>::new(),
            "processes of {id} left behind"
        );
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        Template::release();
        for id in self.ids.borrow().iter() {
            let _ = Command::new(BIN)
                .arg("--root")
                .arg(&self.root)
                .args(["delete", "--force", id])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
        // The cgroup parent is this test's alone: remove what is left of it (rmdir
        // only removes empty cgroups). The tempdir removes itself after this.
        for parent in cgroup_dirs_of(&self.cgroup_parent) {
            for child in fs::read_dir(&parent).into_iter().flatten().flatten() {
                if child.path().is_dir() {
                    let _ = fs::remove_dir(child.path());
                }
            }
            let _ = fs::remove_dir(&parent);
        }
    }
}

/// mkbundle.sh's bundle (running `true`), made once and shared by the bundles of all
/// the fixtures alive at the time, and removed when the last fixture drops.
struct Template;

/// (live fixtures, the template's directory once made)
static TEMPLATE: Mutex<(usize, Option<tempfile::TempDir>)> = Mutex::new((0, None));

impl Template {
    fn lock() -> std::sync::MutexGuard<'static, (usize, Option<tempfile::TempDir>)> {
        // A test that panicked while holding the lock left consistent data.
        TEMPLATE.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn acquire() {
        Self::lock().0 += 1;
    }

    fn release() {
        let mut t = Self::lock();
        t.0 -= 1;
        if t.0 == 0 {
            t.1 = None;
        }
    }

    /// The template bundle's directory, made on first use.
    fn path() -> PathBuf {
        let mut t = Self::lock();
        if t.1.is_none() {
            let dir = tempfile::Builder::new()
                .prefix("onggi-ct-template-")
                .tempdir()
                .expect("tempdir");
            mkbundle(&dir.path().join("bundle"), &["true"]);
            t.1 = Some(dir);
        }
        t.1.as_ref().unwrap().path().join("bundle")
    }
}

/// `scripts/mkbundle.sh DIR -- ARGS...`
fn mkbundle(dir: &Path, args: &[&str]) {
    let out = Command::new("bash")
        .arg(MKBUNDLE)
        .arg(dir)
        .arg("--")
        .args(args)
        .output()
        .expect("run mkbundle.sh");
    assert!(out.status.success(), "mkbundle.sh: {out:?}");
}

fn path_str(p: &Path) -> &str {
    p.to_str().expect("test paths are UTF-8")
}

/// `sh -c SCRIPT` as process.args.
fn sh(script: &str) -> Vec<&str> {
    vec!["sh", "-c", script]
}

fn config_of(bundle: &Path) -> Value {
    serde_json::from_str(&fs::read_to_string(bundle.join("config.json")).unwrap()).unwrap()
}

fn write_config(bundle: &Path, config: &Value) {
    fs::write(
        bundle.join("config.json"),
        serde_json::to_string_pretty(config).unwrap(),
    )
    .unwrap();
}

/// Set `linux.resources.<key>` (mkbundle's resources hold only the device rules).
fn set_resources(c: &mut Value, key: &str, v: Value) {
    c["linux"]["resources"][key] = v;
}

/// Append a bind mount of `src` on `dst`.
fn add_bind(c: &mut Value, src: &Path, dst: &str) {
    c["mounts"]
        .as_array_mut()
        .unwrap()
        .push(json!({"destination": dst, "type": "bind", "source": src, "options": ["rbind"]}));
}

/// Poll `cond` every 2 ms until it holds; fail after [`TIMEOUT`].
#[track_caller]
fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + TIMEOUT;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// Where the v1 hierarchies are mounted (`/sys/fs/cgroup/<controller>`).
const V1: &str = "/sys/fs/cgroup";

/// The directories of cgroup `path` (relative to a hierarchy's root) that exist, in
/// a v2-only /sys/fs/cgroup and in every v1 (or hybrid) hierarchy below it.
fn cgroup_dirs_of(path: &str) -> Vec<PathBuf> {
    let base = Path::new(V1);
    let hierarchies = fs::read_dir(base).into_iter().flatten().flatten();
    std::iter::once(base.to_path_buf())
        .chain(hierarchies.map(|e| e.path()))
        .map(|h| h.join(path))
        .filter(|p| p.is_dir())
        .collect()
}

/// Whether `pid` is a live process (not gone, not a zombie waiting to be reaped).
fn alive(pid: i32) -> bool {
    let stat = read(Path::new(&format!("/proc/{pid}/stat")));
    match stat.rsplit(')').next().map(str::trim_start) {
        Some(rest) if !stat.is_empty() => !rest.starts_with('Z') && !rest.starts_with('X'),
        _ => false,
    }
}

/// PIDs of live processes whose command line contains `word`.
fn processes_naming(word: &str) -> Vec<i32> {
    let me = std::process::id() as i32;
    let mut pids = Vec::new();
    for e in fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        if pid == me || !alive(pid) {
            continue;
        }
        let cmdline = fs::read(e.path().join("cmdline")).unwrap_or_default();
        if String::from_utf8_lossy(&cmdline).contains(word) {
            pids.push(pid);
        }
    }
    pids
}

/// The number after `key` in a flat-keyed cgroup file such as `memory.oom_control`
/// (`oom_kill 1`) or `pids.events` (`max 3`).
#[track_caller]
fn keyed(content: &str, key: &str) -> u64 {
    content
        .lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {key:?} in {content:?}"))
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
    let Some(fx) = Fixture::new("cpuquota") else {
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
    let Some(fx) = Fixture::new("cpuset") else {
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
    let Some(fx) = Fixture::new("oom") else {
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
    let Some(fx) = Fixture::new("oomevents") else {
        return;
    };
    let shared = fx.host_dir("shared");
    let script = format!(
        "while [ ! -e /shared/go ]; do sleep 0.05; done; {}; echo inner=$?; exec sleep 30",
        ALLOCATE_100MIB.join(" ")
    );
    let b = fx.bundle(&sh(&script), |c| {
        limit_32mib(c);
        add_bind(c, &shared, "/shared");
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
    let Some(fx) = Fixture::new("pids") else {
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
    let Some(fx) = Fixture::new("update") else {
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
    let Some(fx) = Fixture::new("pause") else {
        return;
    };
    let shared = fx.host_dir("shared");
    let b = fx.bundle(
        &sh("i=0; while :; do i=$((i + 1)); echo $i >/shared/n; sleep 0.05; done"),
        |c| add_bind(c, &shared, "/shared"),
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
    let Some(fx) = Fixture::new("badres") else {
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
