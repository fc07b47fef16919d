//! The harness shared by the privileged integration tests of the `onggi-runtime`
//! binary (`runtime.rs`, `cgroups.rs`): real containers on this machine, started
//! through the binary and checked by what they print and what they leave behind.
//!
//! Every test needs root and skips itself (with a note) otherwise. Tests run in
//! parallel, so each one has its own `--root`, bundles and output files in a tempdir,
//! ids unique on the host, and its own cgroup parent (`cgroupsPath` is set to
//! `/onggi-t<PID>-<test>/<id>`). A [`Fixture`] runs `delete --force` on every id it
//! handed out, removes its cgroup parent and its tempdir when the test ends, passed or
//! failed; a [`Running`] kills its runtime process if the test never waited for it.
//!
//! The runtime's stdout and stderr go to files, never pipes: a detached container
//! inherits them and would keep a pipe open long after the runtime has exited.
//!
//! Every test file is its own crate and uses a part of this module only.
#![allow(dead_code)]

use std::cell::{Cell, RefCell};
use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

pub const BIN: &str = env!("CARGO_BIN_EXE_onggi-runtime");
const MKBUNDLE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../scripts/mkbundle.sh");
/// How long any single command or condition may take before the test fails.
pub const TIMEOUT: Duration = Duration::from_secs(10);
/// Index of the first mount a test appends to mkbundle's seven.
pub const FIRST_EXTRA_MOUNT: usize = 7;
pub const MIB: i64 = 1 << 20;
/// The cgroup filesystem: the v2 hierarchy itself, or (cgroup v1, hybrid) the
/// directory holding a hierarchy per controller, `/sys/fs/cgroup/<controller>`.
pub const CGROUP_FS: &str = "/sys/fs/cgroup";

// ---------------------------------------------------------------------------------
// Running the runtime
// ---------------------------------------------------------------------------------

/// What a finished command left behind.
#[derive(Debug)]
pub struct Out {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
    /// The stdout file: a container made by `create` or `run --detach` writes here
    /// after the runtime has exited.
    pub stdout_file: PathBuf,
}

impl Out {
    /// Require exit code 0.
    #[track_caller]
    pub fn ok(self) -> Out {
        assert_eq!(self.code, 0, "expected success, got {self:#?}");
        self
    }

    /// Require a failure reported the runtime's way (`error: ...` on stderr) whose
    /// message contains every one of `words`.
    #[track_caller]
    pub fn fails_with(self, words: &[&str]) -> Out {
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

    pub fn lines(&self) -> Vec<&str> {
        self.stdout.lines().collect()
    }

    /// The stdout file as it is now.
    pub fn stdout_now(&self) -> String {
        read(&self.stdout_file)
    }
}

/// A runtime process that has been started and not yet waited for.
pub struct Running {
    child: Option<Child>,
    stdout: PathBuf,
    stderr: PathBuf,
    what: String,
}

impl Running {
    pub fn pid(&self) -> i32 {
        self.child.as_ref().expect("not waited yet").id() as i32
    }

    /// What the process has written to stdout so far.
    pub fn stdout_now(&self) -> String {
        read(&self.stdout)
    }

    /// Wait (at most [`TIMEOUT`]) for the runtime to exit and collect its output.
    #[track_caller]
    pub fn wait(self) -> Out {
        self.wait_at_most(TIMEOUT)
    }

    #[track_caller]
    pub fn wait_at_most(mut self, limit: Duration) -> Out {
        let mut child = self.child.take().expect("waited once");
        let deadline = Instant::now() + limit;
        let status = loop {
            if let Some(st) = child.try_wait().expect("try_wait") {
                break st;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "`{}` did not finish within {limit:?}\nstdout: {}\nstderr: {}",
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
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(c) = &mut self.child {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

pub fn read(p: &Path) -> String {
    fs::read_to_string(p).unwrap_or_default()
}

// ---------------------------------------------------------------------------------
// The fixture
// ---------------------------------------------------------------------------------

/// One test's world: a tempdir holding its `--root`, bundles and output files; the
/// container ids it handed out (each deleted with `--force` on drop); and a cgroup
/// parent of its own, `/onggi-t<PID>-<test>`, that every container it starts is put
/// under (so parallel tests never share, create or remove one another's parent).
pub struct Fixture {
    test: &'static str,
    pub dir: tempfile::TempDir,
    pub root: PathBuf,
    pub cgroup_parent: String,
    ids: RefCell<Vec<String>>,
    seq: Cell<u32>,
}

impl Fixture {
    /// `None` (after a note on stderr) when not root: the test then returns early.
    pub fn new(test: &'static str) -> Option<Fixture> {
        if !nix::unistd::geteuid().is_root() {
            eprintln!("skipping {test}: onggi-runtime's integration tests need root");
            return None;
        }
        let dir = tempfile::Builder::new()
            .prefix("onggi-t-")
            .tempdir()
            .expect("tempdir");
        let root = dir.path().join("state");
        Template::acquire();
        Some(Fixture {
            test,
            dir,
            root,
            cgroup_parent: format!("onggi-t{}-{test}", std::process::id()),
            ids: RefCell::new(Vec::new()),
            seq: Cell::new(0),
        })
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn next(&self) -> u32 {
        let n = self.seq.get();
        self.seq.set(n + 1);
        n
    }

    /// A container id unique on this host, deleted when the fixture drops.
    pub fn id(&self, name: &str) -> String {
        let id = format!("t{}-{}-{name}", std::process::id(), self.test);
        self.ids.borrow_mut().push(id.clone());
        id
    }

    /// A directory for the test's own files (bind mount sources and the like).
    pub fn host_dir(&self, name: &str) -> PathBuf {
        let p = self.path(name);
        fs::create_dir_all(&p).unwrap();
        p
    }

    /// A new bundle running `args`, its config.json changed by `edit`: mkbundle.sh's
    /// bundle, with the rootfs hard-linked from the shared [`Template`] (files must
    /// not be changed in place: use [`Fixture::own_bundle`] for that).
    pub fn bundle(&self, args: &[&str], edit: impl FnOnce(&mut Value)) -> PathBuf {
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

    /// Like [`Fixture::bundle`], but a bundle of its own straight from mkbundle.sh.
    pub fn own_bundle(&self, args: &[&str], edit: impl FnOnce(&mut Value)) -> PathBuf {
        let dir = self.path(&format!("bundle{}", self.next()));
        mkbundle(&dir, args);
        let mut config = config_of(&dir);
        edit(&mut config);
        write_config(&dir, &config);
        dir
    }

    /// The `--bundle` argument for container `id`: first points the bundle's
    /// cgroupsPath at [`Fixture::cgroup_path`] (when config.json is JSON with a
    /// `linux` object: tests of bad configs pass theirs through untouched).
    pub fn bundle_for<'b>(&self, id: &str, bundle: &'b Path) -> &'b str {
        let config = fs::read_to_string(bundle.join("config.json")).ok();
        if let Some(Ok(mut c)) = config.map(|s| serde_json::from_str::<Value>(&s)) {
            if c["linux"].is_object() {
                c["linux"]["cgroupsPath"] = json!(self.cgroup_path(id));
                write_config(bundle, &c);
            }
        }
        path_str(bundle)
    }

    /// Start `onggi-runtime --root R ARGS...` with `stdin` and output in files.
    pub fn spawn_with(&self, args: &[&str], stdin: Stdio) -> Running {
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

    /// Start `onggi-runtime --root R ARGS...` with stdin closed and output in files.
    pub fn spawn(&self, args: &[&str]) -> Running {
        self.spawn_with(args, Stdio::null())
    }

    /// Run `onggi-runtime --root R ARGS...` to completion.
    #[track_caller]
    pub fn rt(&self, args: &[&str]) -> Out {
        self.spawn(args).wait()
    }

    /// `create --bundle B ID`.
    #[track_caller]
    pub fn create(&self, id: &str, bundle: &Path) -> Out {
        self.rt(&["create", "--bundle", self.bundle_for(id, bundle), id])
    }

    /// `run` a container in the foreground and return what it printed.
    #[track_caller]
    pub fn run(&self, id: &str, bundle: &Path) -> Out {
        self.rt(&["run", "--bundle", self.bundle_for(id, bundle), id])
    }

    /// Start `run` in the foreground with `--pid-file`; returns the runtime process
    /// and the init's host PID once the init has become the container's program.
    #[track_caller]
    pub fn spawn_run(&self, id: &str, bundle: &Path) -> (Running, i32) {
        let pid_file = self.path(&format!("{id}.pid"));
        let run = self.spawn(&[
            "run",
            "--pid-file",
            path_str(&pid_file),
            "--bundle",
            self.bundle_for(id, bundle),
            id,
        ]);
        wait_until("the pid file of `run`", || pid_file.exists());
        let pid: i32 = read(&pid_file).trim().parse().unwrap();
        // The pid file comes before start: wait for the exec of the program.
        wait_until("the container's program to run", || {
            read(Path::new(&format!("/proc/{pid}/comm"))).trim() != "onggi-runtime"
        });
        (run, pid)
    }

    /// Make a container running in the background (`run --detach`); returns the
    /// init's host PID.
    #[track_caller]
    pub fn run_detached(&self, id: &str, bundle: &Path) -> i32 {
        self.rt(&[
            "run",
            "--detach",
            "--bundle",
            self.bundle_for(id, bundle),
            id,
        ])
        .ok();
        self.pid(id)
    }

    /// `state ID`, parsed.
    #[track_caller]
    pub fn state(&self, id: &str) -> Value {
        let out = self.rt(&["state", id]).ok();
        serde_json::from_str(&out.stdout).unwrap_or_else(|e| panic!("state JSON: {e}: {out:?}"))
    }

    #[track_caller]
    pub fn status(&self, id: &str) -> String {
        self.state(id)["status"].as_str().unwrap().to_string()
    }

    #[track_caller]
    pub fn pid(&self, id: &str) -> i32 {
        self.state(id)["pid"].as_i64().unwrap() as i32
    }

    #[track_caller]
    pub fn wait_status(&self, id: &str, want: &str) {
        wait_until(&format!("{id} to be {want}"), || self.status(id) == want);
    }

    pub fn state_dir(&self, id: &str) -> PathBuf {
        self.root.join(id)
    }

    /// `/<this test's cgroup parent>/<id>`, the container's linux.cgroupsPath.
    pub fn cgroup_path(&self, id: &str) -> String {
        format!("/{}/{id}", self.cgroup_parent)
    }

    /// The container's cgroup directories, in every hierarchy (v1 or v2).
    pub fn cgroup_dirs(&self, id: &str) -> Vec<PathBuf> {
        cgroup_dirs_of(&format!("{}/{id}", self.cgroup_parent))
    }

    /// Control file `file` of container `id` in the v1 hierarchy of `controller`,
    /// e.g. `fx.cgroup_file(&id, "pids", "pids.max")`.
    pub fn cgroup_file(&self, id: &str, controller: &str, file: &str) -> PathBuf {
        Path::new(CGROUP_FS)
            .join(controller)
            .join(&self.cgroup_parent)
            .join(id)
            .join(file)
    }

    /// The trimmed content of [`Fixture::cgroup_file`]; fails if it cannot be read.
    #[track_caller]
    pub fn cgroup_read(&self, id: &str, controller: &str, file: &str) -> String {
        let p = self.cgroup_file(id, controller, file);
        fs::read_to_string(&p)
            .unwrap_or_else(|e| panic!("read {}: {e}", p.display()))
            .trim()
            .to_string()
    }

    /// Nothing of `id` is left: no state directory, no cgroup, no process whose
    /// command line names it (a blocked init still has the runtime's command line).
    #[track_caller]
    pub fn assert_gone(&self, id: &str) {
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
/// the fixtures alive at the time: mkbundle takes a quarter of a second, a hard-linked
/// copy of its rootfs a few milliseconds. Removed when the last fixture drops (and
/// made again if another comes later), so nothing outlives the test run.
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
                .prefix("onggi-t-template-")
                .tempdir()
                .expect("tempdir");
            mkbundle(&dir.path().join("bundle"), &["true"]);
            t.1 = Some(dir);
        }
        t.1.as_ref().unwrap().path().join("bundle")
    }
}

// ---------------------------------------------------------------------------------
// Bundles and their config.json
// ---------------------------------------------------------------------------------

/// `scripts/mkbundle.sh DIR -- ARGS...`
pub fn mkbundle(dir: &Path, args: &[&str]) {
    let out = Command::new("bash")
        .arg(MKBUNDLE)
        .arg(dir)
        .arg("--")
        .args(args)
        .output()
        .expect("run mkbundle.sh");
    assert!(out.status.success(), "mkbundle.sh: {out:?}");
}

pub fn path_str(p: &Path) -> &str {
    p.to_str().expect("test paths are UTF-8")
}

/// `sh -c SCRIPT` as process.args.
pub fn sh(script: &str) -> Vec<&str> {
    vec!["sh", "-c", script]
}

pub fn config_of(bundle: &Path) -> Value {
    serde_json::from_str(&fs::read_to_string(bundle.join("config.json")).unwrap()).unwrap()
}

pub fn write_config(bundle: &Path, config: &Value) {
    fs::write(
        bundle.join("config.json"),
        serde_json::to_string_pretty(config).unwrap(),
    )
    .unwrap();
}

/// Append a mount to the config.
pub fn add_mount(c: &mut Value, m: Value) {
    c["mounts"].as_array_mut().unwrap().push(m);
}

/// A bind mount of `src` on `dst` with extra options.
pub fn bind(src: &Path, dst: &str, opts: &[&str]) -> Value {
    let mut options = vec!["rbind"];
    options.extend_from_slice(opts);
    json!({"destination": dst, "type": "bind", "source": src, "options": options})
}

/// Set `linux.resources.<key>` (mkbundle's resources hold only the device rules).
pub fn set_resources(c: &mut Value, key: &str, v: Value) {
    c["linux"]["resources"][key] = v;
}

// ---------------------------------------------------------------------------------
// Watching the host
// ---------------------------------------------------------------------------------

/// Poll `cond` every 2 ms until it holds; fail after [`TIMEOUT`].
#[track_caller]
pub fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + TIMEOUT;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// The namespace link of a host process, e.g. `ns_of("self", "net")` = `net:[4026...]`.
pub fn ns_of(pid: &str, ns: &str) -> String {
    fs::read_link(format!("/proc/{pid}/ns/{ns}"))
        .unwrap()
        .to_string_lossy()
        .into_owned()
}

/// The directories of cgroup `path` (relative to a hierarchy's root) that exist, in
/// a v2-only /sys/fs/cgroup and in every v1 (or hybrid) hierarchy below it.
pub fn cgroup_dirs_of(path: &str) -> Vec<PathBuf> {
    let base = Path::new(CGROUP_FS);
    let hierarchies = fs::read_dir(base).into_iter().flatten().flatten();
    std::iter::once(base.to_path_buf())
        .chain(hierarchies.map(|e| e.path()))
        .map(|h| h.join(path))
        .filter(|p| p.is_dir())
        .collect()
}

/// The number after `key` in a flat-keyed cgroup file such as `memory.oom_control`
/// (`oom_kill 1`) or `pids.events` (`max 3`).
#[track_caller]
pub fn keyed(content: &str, key: &str) -> u64 {
    content
        .lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {key:?} in {content:?}"))
}

/// Whether `pid` is a live process (not gone, not a zombie waiting to be reaped).
pub fn alive(pid: i32) -> bool {
    let stat = read(Path::new(&format!("/proc/{pid}/stat")));
    match stat.rsplit(')').next().map(str::trim_start) {
        Some(rest) if !stat.is_empty() => !rest.starts_with('Z') && !rest.starts_with('X'),
        _ => false,
    }
}

/// PIDs of live processes whose command line contains `word`.
pub fn processes_naming(word: &str) -> Vec<i32> {
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

/// Signals a process catches (SigCgt of /proc/PID/status), as a bit mask.
pub fn caught_signals(pid: i32) -> u64 {
    let status = read(Path::new(&format!("/proc/{pid}/status")));
    status
        .lines()
        .find_map(|l| l.strip_prefix("SigCgt:"))
        .and_then(|h| u64::from_str_radix(h.trim(), 16).ok())
        .unwrap_or(0)
}

/// Wait until `pid` has a handler for SIGTERM (a shell's `trap` ran).
#[track_caller]
pub fn wait_for_term_trap(pid: i32) {
    wait_until("the TERM trap", || caught_signals(pid) & (1 << 14) != 0);
}
