//! A private onggi for one test (root only): data and run roots in a tempdir, busybox
//! imported, every container removed on drop, and a check that nothing of them is
//! left anywhere (mounts, cgroups, processes, directories, rows, image holds).
#![allow(dead_code)] // each test binary uses its share

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

pub const BIN: &str = env!("CARGO_BIN_EXE_onggi");

/// One private store of images and containers.
pub struct Onggi {
    pub dir: tempfile::TempDir,
}

/// What a command did.
#[derive(Debug)]
pub struct Ran {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Onggi {
    /// A store with busybox imported, or `None` (with a note) when not root.
    pub fn new(test: &str) -> Option<Onggi> {
        let status = fs::read_to_string("/proc/self/status").unwrap_or_default();
        let uid = status.lines().find_map(|l| l.strip_prefix("Uid:"));
        if uid.and_then(|u| u.split_whitespace().nth(1)) != Some("0") {
            eprintln!("skipping {test}: containers need root");
            return None;
        }
        let o = Onggi {
            dir: tempfile::Builder::new()
                .prefix("onggi-pol-t-")
                .tempdir()
                .unwrap(),
        };
        let tar = o.dir.path().join("rootfs.tar");
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../../scripts/rootfs-tar.sh");
        let made = Command::new("bash").arg(script).arg(&tar).status().unwrap();
        assert!(made.success(), "{script}");
        o.ok(&["import", tar.to_str().unwrap(), "busybox"]);
        Some(o)
    }

    pub fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    pub fn run_root(&self) -> PathBuf {
        self.dir.path().join("run")
    }

    /// `onggi` on this store's roots, its output to files (a detached container's
    /// monitor must not hold a pipe of ours).
    pub fn command(&self, args: &[&str], out: &Path) -> Command {
        let mut c = Command::new(BIN);
        c.arg("--root")
            .arg(self.data())
            .arg("--run-root")
            .arg(self.run_root())
            .args(args)
            .stdin(Stdio::null())
            .stdout(fs::File::create(out.with_extension("out")).unwrap())
            .stderr(fs::File::create(out.with_extension("err")).unwrap());
        c
    }

    pub fn onggi(&self, args: &[&str]) -> Ran {
        // A file per call: tests run commands from several threads.
        let out = self
            .dir
            .path()
            .join(format!("cmd-{:?}", std::thread::current().id()));
        let st = self.command(args, &out).status().unwrap();
        Ran {
            code: st.code().unwrap_or(-1),
            stdout: fs::read_to_string(out.with_extension("out")).unwrap_or_default(),
            stderr: fs::read_to_string(out.with_extension("err")).unwrap_or_default(),
        }
    }

    #[track_caller]
    pub fn ok(&self, args: &[&str]) -> String {
        let r = self.onggi(args);
        assert_eq!(r.code, 0, "onggi {args:?}: {r:#?}");
        r.stdout
    }

    pub fn inspect(&self, name: &str) -> Value {
        let v: Value = serde_json::from_str(&self.ok(&["inspect", name])).unwrap();
        v[0].clone()
    }

    /// Poll `inspect` until `ready` holds (at most `secs`); the last document.
    #[track_caller]
    pub fn until(&self, name: &str, secs: u64, ready: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            let v = self.inspect(name);
            if ready(&v) {
                return v;
            }
            assert!(Instant::now() < deadline, "{name}: gave up waiting: {v:#}");
            std::thread::sleep(Duration::from_millis(25));
        }
    }

    /// The engine on this store (for its consistency check).
    pub fn engine(&self) -> onggi_engine::Engine {
        let roots = onggi_engine::Roots {
            data: self.data(),
            run: self.run_root(),
        };
        let bin_dir = Path::new(BIN).parent().unwrap().to_path_buf();
        onggi_engine::Engine::open(roots, bin_dir).unwrap()
    }

    /// Every container's full id (`ps -a`).
    pub fn ids(&self) -> Vec<String> {
        let v: Value = serde_json::from_str(&self.ok(&["ps", "-a", "--format", "json"])).unwrap();
        let ids = v.as_array().unwrap().iter();
        ids.map(|c| c["id"].as_str().unwrap().to_owned()).collect()
    }

    /// Remove every container, then check that nothing of them (nor of `removed`,
    /// containers removed before) is left anywhere.
    #[track_caller]
    pub fn remove_all_and_check(&self, removed: &[String]) {
        let mut ids = removed.to_vec();
        for id in self.ids() {
            self.ok(&["rm", "-f", &id]);
            ids.push(id);
        }
        assert_eq!(
            self.engine().inconsistencies().unwrap(),
            Vec::<String>::new()
        );
        assert!(self.ids().is_empty());
        for d in [
            self.data().join("containers"),
            self.run_root().join("containers"),
        ] {
            let left: Vec<_> = fs::read_dir(&d)
                .unwrap()
                .flatten()
                .map(|e| e.path())
                .collect();
            assert!(left.is_empty(), "left in {}: {left:?}", d.display());
        }
        let runtime = fs::read_dir(self.run_root().join("runtime"))
            .unwrap()
            .flatten();
        let states: Vec<_> = runtime
            .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
            .collect();
        assert!(states.is_empty(), "runtime states left: {states:?}");
        let mounts = fs::read_to_string("/proc/self/mountinfo").unwrap();
        let here = self.dir.path().to_string_lossy().into_owned();
        assert!(!mounts.contains(&here), "mounts left under {here}");
        for id in &ids {
            assert!(!mounts.contains(id.as_str()), "a mount of {id} is left");
            let found = Command::new("find")
                .args(["/sys/fs/cgroup", "-maxdepth", "4", "-name", id])
                .output()
                .unwrap();
            assert!(
                found.stdout.is_empty(),
                "cgroup left: {}",
                String::from_utf8_lossy(&found.stdout)
            );
        }
        // Monitors and exit hooks name the roots on their command lines; they may
        // take a moment to finish.
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let ours = processes_mentioning(&here);
            if ours.is_empty() {
                break;
            }
            assert!(Instant::now() < deadline, "processes left: {ours:?}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Onggi {
    fn drop(&mut self) {
        if let Ok(v) =
            serde_json::from_str::<Value>(&self.onggi(&["ps", "-a", "--format", "json"]).stdout)
        {
            for c in v.as_array().into_iter().flatten() {
                let _ = self.onggi(&["rm", "-f", c["id"].as_str().unwrap_or("")]);
            }
        }
        // Whatever a failed test left mounted under the tempdir: mountinfo lists a
        // mount after the one it is on, so the last first.
        let mounts = fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        let here = self.dir.path().to_string_lossy().into_owned();
        for point in mounts.lines().rev().filter_map(|l| l.split(' ').nth(4)) {
            if point.starts_with(&here) {
                let _ = Command::new("umount").arg("-l").arg(point).status();
            }
        }
    }
}

/// Live processes (not zombies) whose command line contains `text`.
pub fn processes_mentioning(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    for e in fs::read_dir("/proc").unwrap().flatten() {
        let pid = e.file_name().to_string_lossy().into_owned();
        if !pid.bytes().all(|b| b.is_ascii_digit()) || pid == std::process::id().to_string() {
            continue;
        }
        let cmd = fs::read(e.path().join("cmdline")).unwrap_or_default();
        let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
        if cmd.contains(text) && state(&pid) != Some('Z') {
            out.push(format!("{pid}: {cmd}"));
        }
    }
    out
}

/// A process's state letter (R, S, Z…).
pub fn state(pid: &str) -> Option<char> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit(") ").next()?.chars().next()
}

/// `pid` and all its descendants, with their state letters.
pub fn tree(pid: i64) -> Vec<(i64, char)> {
    let mut out = vec![(pid, state(&pid.to_string()).unwrap_or('?'))];
    let kids = fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")).unwrap_or_default();
    for k in kids.split_whitespace().filter_map(|k| k.parse().ok()) {
        out.extend(tree(k));
    }
    out
}

/// SIGKILL to a process we started, and wait until it is gone.
pub fn kill9(pid: i64) {
    let _ = Command::new("kill").arg("-9").arg(pid.to_string()).status();
    let deadline = Instant::now() + Duration::from_secs(5);
    while state(&pid.to_string()).is_some_and(|s| s != 'Z') && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
}
