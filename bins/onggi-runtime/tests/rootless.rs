//! Rootless containers: an unprivileged user, created by each test and removed after
//! it, runs `onggi-runtime` on a bundle of its own (`spec --rootless`: a user
//! namespace mapping only the caller's uid and gid, the host's /sys bound in).
//!
//! The test process is root (to create the user); every runtime command runs as the
//! user through `runuser`. No cgroup is delegated to a user on this host, so the
//! containers have none, and limits are refused with a message that says why.

mod common;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use common::{config_of, mkbundle, path_str, write_config, BIN};
use serde_json::{json, Value};

/// A user of the test's own, its directory (bundle, state root) and the containers
/// it made; all removed on drop.
struct User {
    name: String,
    uid: u32,
    dir: tempfile::TempDir,
    ids: Vec<String>,
}

/// What one command printed and returned.
#[derive(Debug)]
struct Out {
    code: i32,
    stdout: String,
    stderr: String,
}

impl User {
    fn new(test: &str) -> Option<User> {
        if !nix::unistd::geteuid().is_root() {
            eprintln!("skipping {test}: creating a user needs root");
            return None;
        }
        let name = format!("onggi-rl{}-{test}", std::process::id());
        let st = Command::new("useradd")
            .args(["--no-create-home", "--shell", "/usr/sbin/nologin", &name])
            .status()
            .expect("useradd");
        assert!(st.success(), "useradd {name}");
        let uid = nix::unistd::User::from_name(&name)
            .unwrap()
            .expect("the user just made")
            .uid
            .as_raw();
        let dir = tempfile::Builder::new()
            .prefix("onggi-t-rootless-")
            .tempdir()
            .expect("tempdir");
        fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).unwrap();
        let user = User {
            name,
            uid,
            dir,
            ids: Vec::new(),
        };
        user.chown(user.dir.path());
        Some(user)
    }

    fn chown(&self, p: &Path) {
        let st = Command::new("chown")
            .args(["-R", "-h", &format!("{0}:{0}", self.name)])
            .arg(p)
            .status()
            .unwrap();
        assert!(st.success());
    }

    /// `onggi-runtime ARGS` as the user, in its directory, state under it. Output
    /// goes to files: a created container inherits them and would hold a pipe open.
    fn rt(&self, args: &[&str]) -> Out {
        let root = self.dir.path().join("state");
        let (out_path, err_path) = (self.dir.path().join("out"), self.dir.path().join("err"));
        let status = Command::new("runuser")
            .args(["-u", &self.name, "--", BIN, "--root", path_str(&root)])
            .args(args)
            .current_dir(self.dir.path())
            .stdin(Stdio::null())
            .stdout(fs::File::create(&out_path).unwrap())
            .stderr(fs::File::create(&err_path).unwrap())
            .status()
            .expect("runuser");
        Out {
            code: status.code().unwrap_or(-1),
            stdout: common::read(&out_path),
            stderr: common::read(&err_path),
        }
    }

    #[track_caller]
    fn ok(&self, args: &[&str]) -> Out {
        let out = self.rt(args);
        assert_eq!(out.code, 0, "{args:?} as {}: {out:#?}", self.name);
        out
    }

    fn id(&mut self, name: &str) -> String {
        let id = format!("rl{}-{name}", std::process::id());
        self.ids.push(id.clone());
        id
    }

    /// A busybox bundle the user owns, with the config `spec --rootless` writes for
    /// it, running `args`, changed by `edit`.
    fn bundle(&self, name: &str, args: &[&str], edit: impl FnOnce(&mut Value)) -> PathBuf {
        let dir = self.dir.path().join(name);
        mkbundle(&dir, args);
        fs::remove_file(dir.join("config.json")).unwrap();
        self.chown(&dir);
        let out = Command::new("runuser")
            .args([
                "-u",
                &self.name,
                "--",
                BIN,
                "spec",
                "--rootless",
                "--bundle",
            ])
            .arg(&dir)
            .output()
            .unwrap();
        assert!(out.status.success(), "spec --rootless: {out:?}");
        let mut config = config_of(&dir);
        config["process"]["args"] = json!(args);
        config["process"]["terminal"] = json!(false);
        edit(&mut config);
        write_config(&dir, &config);
        self.chown(&dir.join("config.json"));
        dir
    }

    /// Host processes of the user.
    fn processes(&self) -> String {
        let out = Command::new("ps")
            .args(["-o", "pid=,args=", "-u", &self.uid.to_string()])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

impl Drop for User {
    fn drop(&mut self) {
        for id in &self.ids {
            let _ = self.rt(&["delete", "--force", id]);
        }
        // userdel refuses while the user has processes: a leak fails loudly here.
        let st = Command::new("userdel").arg(&self.name).status();
        if !matches!(st, Ok(s) if s.success()) && !std::thread::panicking() {
            panic!(
                "userdel {}: processes left: {}",
                self.name,
                self.processes()
            );
        }
    }
}

/// Everything a user does with a container, without privileges: run in the
/// foreground, create, start, state, exec, ps, kill, delete.
#[test]
fn an_unprivileged_user_runs_execs_into_and_deletes_containers() {
    let Some(mut u) = User::new("life") else {
        return;
    };
    let b = u.bundle(
        "fg",
        &["sh", "-c", "id -u; cat /proc/self/uid_map; echo $$"],
        |_| {},
    );
    let id = u.id("fg");
    let out = u.ok(&["run", "--bundle", path_str(&b), &id]);
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(lines[0], "0", "the user is root in its container: {out:?}");
    let map: Vec<&str> = lines[1].split_whitespace().collect();
    assert_eq!(map, ["0", &u.uid.to_string(), "1"], "{out:?}");
    assert_eq!(lines[2], "1", "PID 1: {out:?}");

    let b = u.bundle("bg", &["sleep", "60"], |_| {});
    let id = u.id("bg");
    u.ok(&["create", "--bundle", path_str(&b), &id]);
    let st: Value = serde_json::from_str(&u.ok(&["state", &id]).stdout).unwrap();
    assert_eq!(st["status"], "created");
    u.ok(&["start", &id]);
    let st: Value = serde_json::from_str(&u.ok(&["state", &id]).stdout).unwrap();
    assert_eq!(st["status"], "running");
    let pid = st["pid"].as_i64().unwrap();
    let host = fs::metadata(format!("/proc/{pid}")).unwrap();
    use std::os::unix::fs::MetadataExt;
    assert_eq!(
        host.uid(),
        u.uid,
        "the init is the user's process on the host"
    );

    let out = u.ok(&["exec", &id, "sh", "-c", "id -u; ps -o pid,comm"]);
    assert!(out.stdout.starts_with("0\n"), "{out:?}");
    assert!(
        out.stdout.contains("sleep"),
        "exec sees the container's processes: {out:?}"
    );
    let ps: Value = serde_json::from_str(&u.ok(&["ps", "--format", "json", &id]).stdout).unwrap();
    assert_eq!(
        ps,
        json!([pid]),
        "ps without a cgroup: the PID namespace's processes"
    );

    u.ok(&["kill", &id, "KILL"]);
    common::wait_until("the init to die", || {
        u.rt(&["state", &id]).stdout.contains("\"stopped\"")
    });
    u.ok(&["delete", &id]);
    assert!(u.rt(&["state", &id]).code != 0, "deleted");
    let state = u.dir.path().join("state");
    let left: Vec<_> = fs::read_dir(&state).unwrap().flatten().collect();
    assert!(
        left.iter()
            .all(|e| e.file_name().to_string_lossy().starts_with('.')),
        "state left: {left:?}"
    );
    // The init was reparented to the host's init when create exited: give it the
    // moment it takes to reap it.
    common::wait_until("no process of the user left", || u.processes().is_empty());
}

/// Limits need a cgroup; none is delegated here: create says so and makes nothing.
#[test]
fn limits_without_a_delegated_cgroup_are_refused_clearly() {
    let Some(mut u) = User::new("limits") else {
        return;
    };
    let b = u.bundle("b", &["true"], |c| {
        c["linux"]["resources"] = json!({"pids": {"limit": 10}});
    });
    let id = u.id("c");
    let out = u.rt(&["create", "--bundle", path_str(&b), &id]);
    assert_ne!(out.code, 0, "{out:?}");
    for w in ["linux.resources", "delegated", &format!("uid {}", u.uid)] {
        assert!(out.stderr.contains(w), "should mention {w:?}: {out:?}");
    }
    assert!(u.rt(&["state", &id]).code != 0, "nothing made");
    assert_eq!(u.processes(), "");
}
