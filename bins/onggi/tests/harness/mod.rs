//! The harness of the container tests through the binary (root only): a store of
//! images and containers in a tempdir with busybox imported, the commands run with
//! their output in files, every container named by the test removed on drop and
//! whatever a failed test left mounted under the tempdir unmounted.
#![allow(dead_code)] // each test file uses its share

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde_json::Value;

pub const BIN: &str = env!("CARGO_BIN_EXE_onggi");

pub struct T {
    pub dir: tempfile::TempDir,
    names: std::cell::RefCell<Vec<String>>,
}

#[derive(Debug)]
pub struct Out {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl T {
    /// A store with busybox imported, or `None` (with a note) when not root.
    pub fn new(test: &str) -> Option<T> {
        let root = fs::read_to_string("/proc/self/status")
            .ok()
            .and_then(|s| {
                s.lines()
                    .find(|l| l.starts_with("Uid:"))
                    .map(|l| l.split_whitespace().nth(2) == Some("0"))
            })
            .unwrap_or(false);
        if !root {
            eprintln!("skipping {test}: containers need root");
            return None;
        }
        let t = T {
            dir: tempfile::Builder::new()
                .prefix("onggi-cli-t-")
                .tempdir()
                .unwrap(),
            names: Default::default(),
        };
        let tar = t.dir.path().join("rootfs.tar");
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../../scripts/rootfs-tar.sh");
        assert!(Command::new("bash")
            .arg(script)
            .arg(&tar)
            .status()
            .unwrap()
            .success());
        t.ok(&["import", tar.to_str().unwrap(), "busybox"]);
        Some(t)
    }

    pub fn path(&self, p: &str) -> PathBuf {
        self.dir.path().join(p)
    }

    /// Run onggi with `stdin` (a file, or /dev/null); stdout and stderr to files (a
    /// detached container's monitor must not hold our pipes).
    pub fn onggi_in(&self, args: &[&str], stdin: Option<&Path>) -> Out {
        let (o, e) = (self.path("out"), self.path("err"));
        let input = match stdin {
            Some(p) => Stdio::from(fs::File::open(p).unwrap()),
            None => Stdio::null(),
        };
        let st = Command::new(BIN)
            .arg("--root")
            .arg(self.path("data"))
            .arg("--run-root")
            .arg(self.path("run"))
            .args(args)
            .stdin(input)
            .stdout(fs::File::create(&o).unwrap())
            .stderr(fs::File::create(&e).unwrap())
            .status()
            .unwrap();
        Out {
            code: st.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&fs::read(&o).unwrap_or_default()).into_owned(),
            stderr: fs::read_to_string(&e).unwrap_or_default(),
        }
    }

    pub fn onggi(&self, args: &[&str]) -> Out {
        self.onggi_in(args, None)
    }

    #[track_caller]
    pub fn ok(&self, args: &[&str]) -> Out {
        let o = self.onggi(args);
        assert_eq!(o.code, 0, "onggi {args:?}: {o:#?}");
        o
    }

    /// A container name unique to this test run, removed on drop.
    pub fn name(&self, n: &str) -> String {
        let name = format!("t{}-{n}", std::process::id());
        self.names.borrow_mut().push(name.clone());
        name
    }

    pub fn inspect(&self, name: &str) -> Value {
        let o = self.ok(&["inspect", name]);
        serde_json::from_str::<Value>(&o.stdout).unwrap()[0].clone()
    }
}

impl Drop for T {
    fn drop(&mut self) {
        for n in self.names.borrow().iter() {
            let _ = self.onggi(&["rm", "-f", n]);
        }
        // Whatever a failed test left mounted under the tempdir.
        let mounts = fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        let dir = self.dir.path().display().to_string();
        let mut points: Vec<&str> = mounts
            .lines()
            .filter_map(|l| l.split(' ').nth(4))
            .filter(|p| p.starts_with(&dir))
            .collect();
        points.sort_by_key(|p| std::cmp::Reverse(p.len()));
        for p in points {
            let _ = Command::new("umount").arg("-l").arg(p).status();
        }
    }
}
