//! `onggi exec`, `pause`/`unpause`, `export` and `cp` through the binary (root
//! only): a busybox image imported into a store in a tempdir, containers run on
//! it, checked from inside and from the host, and nothing left behind.

mod harness;

use std::fs;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use harness::*;
use serde_json::Value;

impl T {
    /// A detached container of busybox running `script`; its id.
    fn run_d(&self, name: &str, extra: &[&str], script: &str) -> String {
        let mut args = vec!["run", "-d", "--name", name];
        args.extend_from_slice(extra);
        args.extend_from_slice(&["busybox", "sh", "-c", script]);
        self.ok(&args).stdout.trim().to_owned()
    }

    /// A detached container that runs the shell commands `setup`, then sleeps;
    /// its id once `setup` is done.
    fn run_prepared(&self, name: &str, setup: &str) -> String {
        let id = self.run_d(name, &[], &format!("{setup}; touch /ready; sleep 1000"));
        eventually("the container's setup is done", || {
            self.onggi(&["exec", name, "test", "-e", "/ready"]).code == 0
        });
        id
    }
}

/// Wait (5 s at most) until `f` holds.
#[track_caller]
fn eventually(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while !f() {
        assert!(Instant::now() < deadline, "timed out: {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Nothing of container `id` is mounted in this mount namespace.
fn assert_not_mounted(id: &str) {
    let mounts = fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(!mounts.contains(id), "a mount of {id} is left");
}

/// Nothing of a removed container stays: no mount, no cgroup, no directory.
fn assert_nothing_left(t: &T, id: &str) {
    assert_not_mounted(id);
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
        !t.path("data/containers").join(id).exists(),
        "directory left"
    );
}

/// Give the file `name` at the root of running container `id` CAP_NET_RAW as a
/// file capability, from the host (through its overlay); false without `setcap`.
fn set_caps(t: &T, id: &str, name: &str) -> bool {
    let path = t.path("data/containers").join(id).join("rootfs").join(name);
    match Command::new("setcap")
        .arg("cap_net_raw+ep")
        .arg(&path)
        .status()
    {
        Ok(st) => {
            assert!(st.success(), "setcap {}", path.display());
            true
        }
        Err(_) => {
            eprintln!("no setcap: file capabilities not checked");
            false
        }
    }
}

/// `getcap`'s word on `path`: `cap_...=ep`, or empty.
fn caps_of(path: &Path) -> String {
    let o = Command::new("getcap").arg(path).output().unwrap();
    let text = String::from_utf8(o.stdout).unwrap();
    text.split_whitespace().nth(1).unwrap_or("").to_owned()
}

/// The names in a tar file.
fn tar_names(tar: &Path) -> Vec<String> {
    let o = Command::new("tar").arg("-tf").arg(tar).output().unwrap();
    assert!(o.status.success(), "{o:?}");
    String::from_utf8(o.stdout)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect()
}

#[test]
fn exec_runs_in_the_container_with_its_settings_and_exit_code() {
    let Some(t) = T::new("exec") else {
        return;
    };
    let name = t.name("exec");
    let id = t.run_d(&name, &["-e", "FOO=from-run", "-w", "/srv"], "sleep 1000");
    let o = t.onggi(&[
        "exec",
        &name,
        "sh",
        "-c",
        "echo FOO=$FOO; id -u; pwd; echo err >&2; exit 3",
    ]);
    assert_eq!(o.code, 3, "{o:#?}");
    assert_eq!(o.stdout, "FOO=from-run\n0\n/srv\n", "{o:#?}");
    assert_eq!(o.stderr, "err\n", "{o:#?}");
    // Flags override the container's settings; a name is looked up in its /etc/passwd.
    let o = t.ok(&[
        "exec",
        "-e",
        "FOO=from-exec",
        "-e",
        "BAR=b",
        "-u",
        "user",
        "-w",
        "/tmp",
        &name,
        "sh",
        "-c",
        "echo $FOO $BAR; id -u; id -g; pwd",
    ]);
    assert_eq!(o.stdout, "from-exec b\n1000\n1000\n/tmp\n", "{o:#?}");
    // A user named (or numbered) gets the groups that list it as a member, as
    // under Docker; with an explicit group only that one.
    t.ok(&[
        "exec",
        &name,
        "sh",
        "-c",
        "echo wheel:x:10:root,user >> /etc/group",
    ]);
    for u in ["user", "1000"] {
        let o = t.ok(&["exec", "-u", u, &name, "id"]);
        assert_eq!(o.stdout, "uid=1000(user) gid=1000(user) groups=10(wheel)\n");
    }
    let o = t.ok(&["exec", "-u", "user:nogroup", &name, "id"]);
    assert_eq!(o.stdout, "uid=1000(user) gid=65534(nogroup)\n");
    let o = t.ok(&["exec", "-u", "65534:0", &name, "id"]);
    assert!(
        o.stdout.starts_with("uid=65534(nobody) gid=0(root)"),
        "{o:#?}"
    );
    // In the container's PID namespace: its init is PID 1.
    let o = t.ok(&["exec", &name, "ps", "-o", "pid,args"]);
    assert!(
        o.stdout
            .lines()
            .any(|l| l.trim_start().starts_with("1 ") && l.contains("sleep 1000")),
        "{o:#?}"
    );
    // Programs that cannot be run: Docker's codes.
    let o = t.onggi(&["exec", &name, "no-such-program"]);
    assert!(
        o.code == 127 && o.stderr.contains("no-such-program"),
        "{o:#?}"
    );
    let o = t.onggi(&["exec", &name, "/etc"]);
    assert_eq!(o.code, 126, "{o:#?}");
    // -d: nothing printed, the process left running in the container.
    let o = t.ok(&["exec", "-d", &name, "sh", "-c", "echo loud; sleep 777"]);
    assert_eq!((o.stdout.as_str(), o.stderr.as_str()), ("", ""));
    eventually("the detached process runs", || {
        t.ok(&["exec", &name, "ps", "-o", "args"])
            .stdout
            .contains("sleep 777")
    });
    // A stopped container: the engine's error.
    t.ok(&["stop", "-t", "0", &name]);
    let o = t.onggi(&["exec", &name, "true"]);
    assert!(o.code == 125 && o.stderr.contains("not running"), "{o:#?}");
    let o = t.onggi(&["exec", "no-such-container", "true"]);
    assert!(
        o.code == 125 && o.stderr.contains("no such container"),
        "{o:#?}"
    );
    t.ok(&["rm", &name]);
    assert_nothing_left(&t, &id);
    assert!(
        !Command::new("pgrep")
            .args(["-f", "sleep 777"])
            .status()
            .unwrap()
            .success(),
        "the detached process went with the container"
    );
}

/// The counter a container writes to /tmp/count, read with `cp` (which works on a
/// paused container).
fn count(t: &T, name: &str) -> u64 {
    let out = t.path("count");
    let _ = fs::remove_file(&out);
    t.ok(&["cp", &format!("{name}:/tmp/count"), out.to_str().unwrap()]);
    fs::read_to_string(&out).unwrap().trim().parse().unwrap()
}

#[test]
fn pause_freezes_unpause_thaws_and_a_paused_container_still_goes() {
    let Some(t) = T::new("pause") else {
        return;
    };
    let name = t.name("counter");
    let script = "i=0; while true; do i=$((i+1)); echo $i > /tmp/count; sleep 0.05; done";
    let id = t.run_d(&name, &[], script);
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(t.ok(&["pause", &name]).stdout, format!("{name}\n"));
    let frozen = count(&t, &name);
    std::thread::sleep(Duration::from_millis(400));
    assert_eq!(count(&t, &name), frozen, "a paused container does not run");
    let st = t.inspect(&name);
    assert_eq!(
        (&st["State"]["Status"], &st["State"]["Paused"]),
        (&Value::from("paused"), &Value::from(true)),
        "{st}"
    );
    let ps = t.ok(&["ps"]).stdout;
    assert!(
        ps.lines()
            .any(|l| l.contains("Up") && l.contains("(Paused)") && l.ends_with(&name)),
        "{ps}"
    );
    let o = t.onggi(&["exec", &name, "true"]);
    assert!(o.code == 125 && o.stderr.contains("paused"), "{o:#?}");
    let o = t.onggi(&["pause", &name]);
    assert!(o.code != 0 && o.stderr.contains("already paused"), "{o:#?}");
    t.ok(&["unpause", &name]);
    assert_eq!(t.inspect(&name)["State"]["Status"], "running");
    std::thread::sleep(Duration::from_millis(300));
    assert!(count(&t, &name) > frozen, "unpaused, it counts again");
    let o = t.onggi(&["unpause", &name]);
    assert!(o.code != 0 && o.stderr.contains("not paused"), "{o:#?}");
    // rm -f of a paused container: its frozen processes are killed, not waited for forever.
    t.ok(&["pause", &name]);
    let started = Instant::now();
    t.ok(&["rm", "-f", &name]);
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_nothing_left(&t, &id);

    // stop of a paused container: the SIGTERM reaches it (it exits 7 on it).
    let name = t.name("stoppable");
    let id = t.run_d(
        &name,
        &[],
        "trap 'exit 7' TERM; while true; do sleep 0.05; done",
    );
    std::thread::sleep(Duration::from_millis(200));
    t.ok(&["pause", &name]);
    let started = Instant::now();
    t.ok(&["stop", "-t", "10", &name]);
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "not the timeout's SIGKILL"
    );
    let st = t.inspect(&name);
    assert_eq!(st["State"]["ExitCode"], 7, "{st}");
    t.ok(&["rm", &name]);
    assert_nothing_left(&t, &id);
}

#[test]
fn export_writes_the_root_filesystem_and_imports_back() {
    let Some(t) = T::new("export") else {
        return;
    };
    let name = t.name("exp");
    let id = t.run_prepared(
        &name,
        "echo written-inside > /written; mkdir -p /deep/er; ln -s /written /deep/er/link; \
         ln /written /hard; chmod 4750 /written; cp /bin/busybox /capped",
    );
    let capped = set_caps(&t, &id, "capped");
    // Running: from its overlay, without what is mounted in its mount namespace.
    let tar = t.path("running.tar");
    t.ok(&["export", "-o", tar.to_str().unwrap(), &name]);
    // To a reader that goes away: quietly, as a program killed by SIGPIPE (141).
    let cut = Command::new("bash")
        .arg("-c")
        .arg(format!(
            "{BIN} --root {} --run-root {} export {name} 2>&1 | head -c 1 >/dev/null; \
             echo ${{PIPESTATUS[0]}}",
            t.path("data").display(),
            t.path("run").display()
        ))
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&cut.stdout), "141\n");
    let names = tar_names(&tar);
    for want in [
        "written",
        "hard",
        "deep/er/link",
        "bin/busybox",
        "proc/",
        "etc/passwd",
    ] {
        assert!(names.iter().any(|n| n == want), "{want} in {names:?}");
    }
    assert!(
        !names.iter().any(|n| n.starts_with("proc/") && n != "proc/"),
        "nothing of /proc: {names:?}"
    );
    let listing = Command::new("tar").arg("-tvf").arg(&tar).output().unwrap();
    let listing = String::from_utf8(listing.stdout).unwrap();
    assert!(
        listing
            .lines()
            .any(|l| l.starts_with("-rwsr-x---") && l.ends_with(" hard")),
        "the mode is kept: {listing}"
    );
    assert!(
        listing
            .lines()
            .any(|l| l.ends_with("hard link to written") || l.ends_with("written link to hard")),
        "a hard link: {listing}"
    );
    assert!(
        listing.contains("deep/er/link -> /written"),
        "a symlink: {listing}"
    );
    if capped {
        let x = t.path("extracted");
        fs::create_dir(&x).unwrap();
        let st = Command::new("tar")
            .args(["--xattrs", "--xattrs-include=*", "-xf"])
            .arg(&tar)
            .arg("-C")
            .arg(&x)
            .arg("capped")
            .status()
            .unwrap();
        assert!(st.success());
        assert_eq!(
            caps_of(&x.join("capped")),
            "cap_net_raw=ep",
            "file capabilities"
        );
    }
    // The round trip: imported, a container of it sees the files.
    let o = t.onggi_in(&["import", "-", "exported-copy"], Some(&tar));
    assert_eq!(o.code, 0, "{o:#?}");
    let copy = t.name("copy");
    let o = t.ok(&[
        "run",
        "--rm",
        "--name",
        &copy,
        "exported-copy",
        "sh",
        "-c",
        "cat /written; readlink /deep/er/link; stat -c %a /written",
    ]);
    assert_eq!(o.stdout, "written-inside\n/written\n4750\n", "{o:#?}");

    // Stopped: its overlay is mounted for the export only, and not where others see it.
    t.ok(&["stop", "-t", "0", &name]);
    assert_not_mounted(&id);
    let o = t.onggi(&["export", &name]);
    assert_eq!(o.code, 0, "{:?}", o.stderr);
    let stdout_tar = t.path("out");
    let names = tar_names(&stdout_tar);
    assert!(names.iter().any(|n| n == "written"), "{names:?}");
    assert_not_mounted(&id);
    t.ok(&["rm", &name]);
    assert_nothing_left(&t, &id);
}

#[test]
fn cp_copies_in_and_out_of_running_and_stopped_containers_and_stays_inside() {
    let Some(t) = T::new("cp") else {
        return;
    };
    // A secret on the host, and links in the container pointing at it.
    let secret_dir = t.path("host-secrets");
    fs::create_dir(&secret_dir).unwrap();
    fs::write(secret_dir.join("secret"), "HOST SECRET\n").unwrap();
    let name = t.name("cp");
    let script = format!(
        "ln -s {0} /leakdir; ln -s {0}/secret /leakfile; ln -s /etc /etclink; \
         mkdir -p /data/sub; echo one > /data/sub/f; echo container > /inside; cp /bin/busybox /capped",
        secret_dir.display()
    );
    let id = t.run_prepared(&name, &script);
    let capped = set_caps(&t, &id, "capped");
    let host = |p: &str| t.path(p).display().to_string();
    let c = |p: &str| format!("{name}:{p}");

    // Into and out of the running container: a file, then a directory.
    fs::write(t.path("in.txt"), "from the host\n").unwrap();
    t.ok(&["cp", &host("in.txt"), &c("/tmp/")]);
    t.ok(&["cp", &host("in.txt"), &c("/renamed")]);
    let o = t.ok(&["exec", &name, "cat", "/tmp/in.txt", "/renamed"]);
    assert_eq!(o.stdout, "from the host\nfrom the host\n");
    let o = t.ok(&["exec", &name, "stat", "-c", "%u", "/tmp/in.txt"]);
    assert_eq!(o.stdout, "0\n", "owned by the container's root");
    if capped {
        t.ok(&["cp", &c("/capped"), &host("capped")]);
        assert_eq!(caps_of(&t.path("capped")), "cap_net_raw=ep");
    }
    t.ok(&["cp", &c("/inside"), &host("out.txt")]);
    assert_eq!(
        fs::read_to_string(t.path("out.txt")).unwrap(),
        "container\n"
    );
    fs::create_dir(t.path("outdir")).unwrap();
    t.ok(&["cp", &c("/data"), &host("outdir")]);
    assert_eq!(
        fs::read_to_string(t.path("outdir/data/sub/f")).unwrap(),
        "one\n"
    );
    fs::create_dir_all(t.path("tree/a/b")).unwrap();
    fs::write(t.path("tree/a/b/leaf"), "leaf\n").unwrap();
    t.ok(&["cp", &host("tree"), &c("/data")]);
    t.ok(&["cp", &host("tree/."), &c("/flat")]);
    let o = t.ok(&[
        "exec",
        &name,
        "cat",
        "/data/tree/a/b/leaf",
        "/flat/a/b/leaf",
    ]);
    assert_eq!(o.stdout, "leaf\nleaf\n");
    let o = t.onggi(&["cp", &host("tree"), &c("/inside")]);
    assert!(
        o.code == 125 && o.stderr.contains("directory to a file"),
        "{o:#?}"
    );

    // Links in the container never lead to the host's files.
    t.ok(&["cp", &c("/leakfile"), &host("leaked")]);
    assert!(
        fs::symlink_metadata(t.path("leaked"))
            .unwrap()
            .file_type()
            .is_symlink(),
        "a symlink is copied as a symlink"
    );
    for p in [
        "/leakdir/secret",
        "/leakfile/",
        "/../../../../../../etc/shadow",
        &format!("/../../..{}", secret_dir.join("secret").display()),
    ] {
        let out = t.path("stolen");
        let _ = fs::remove_file(&out);
        let o = t.onggi(&["cp", &c(p), out.to_str().unwrap()]);
        assert_ne!(o.code, 0, "{p}: {o:#?}");
        assert!(!out.exists(), "{p} was copied");
    }
    // /etclink/hostname is the container's /etc/hostname, not the host's.
    t.ok(&["cp", &c("/etclink/hostname"), &host("hostname")]);
    let image_hostname = Command::new("tar")
        .args(["-xOf", &host("rootfs.tar"), "./etc/hostname"])
        .output()
        .unwrap()
        .stdout;
    assert_eq!(fs::read(t.path("hostname")).unwrap(), image_hostname);
    // Writing through a link into the host: refused, or made inside the container.
    let o = t.onggi(&["cp", &host("in.txt"), &c("/leakdir/planted")]);
    assert_ne!(o.code, 0, "{o:#?}");
    t.ok(&["cp", &host("in.txt"), &c("/leakfile")]);
    assert!(!secret_dir.join("planted").exists());
    assert_eq!(
        fs::read_to_string(secret_dir.join("secret")).unwrap(),
        "HOST SECRET\n",
        "the host's file is untouched"
    );
    let o = t.ok(&["exec", &name, "cat", "/leakfile"]);
    assert_eq!(o.stdout, "from the host\n", "the link was replaced inside");

    // Tar streams (-): out, SRC under its own name; in, unpacked into a directory
    // with the tar's owners; an entry that climbs out of it lands nowhere.
    fs::create_dir(t.path("streamdir")).unwrap();
    fs::write(t.path("streamdir/a"), "streamed\n").unwrap();
    let tar = |args: &[&str]| {
        let st = Command::new("tar").args(args).status().unwrap();
        assert!(st.success(), "tar {args:?}");
    };
    tar(&[
        "--owner=1000",
        "--group=1000",
        "-C",
        &host(""),
        "-cf",
        &host("in.tar"),
        "streamdir",
    ]);
    tar(&[
        "-C",
        &host("streamdir"),
        "-cPf",
        &host("evil.tar"),
        "../in.txt",
    ]);
    t.ok(&["cp", "-", &c("/tmp")]); // stdin /dev/null: an empty tar stream
    assert_eq!(
        t.onggi_in(&["cp", "-", &c("/tmp")], Some(&t.path("in.tar")))
            .code,
        0
    );
    let o = t.ok(&["exec", &name, "stat", "-c", "%u:%g %n", "/tmp/streamdir/a"]);
    assert_eq!(o.stdout, "1000:1000 /tmp/streamdir/a\n");
    t.onggi_in(
        &["cp", "-", &c("/tmp/streamdir")],
        Some(&t.path("evil.tar")),
    );
    assert!(t.onggi(&["exec", &name, "ls", "/tmp/evil.txt"]).code != 0);
    assert!(!t.path("data/evil.txt").exists());
    let o = t.onggi_in(&["cp", "-", &c("/no/such/dir")], Some(&t.path("in.tar")));
    assert!(
        o.code == 125 && o.stderr.contains("must be an existing directory"),
        "{o:#?}"
    );
    t.ok(&["cp", &c("/data"), "-"]);
    let listed = Command::new("tar")
        .args(["-tvf", &host("out")])
        .output()
        .unwrap();
    let listed = String::from_utf8_lossy(&listed.stdout);
    assert!(
        listed.contains(" data/sub/f") && listed.contains("0/0"),
        "{listed}"
    );
    t.ok(&["cp", &c("/data/."), "-"]);
    let listed = Command::new("tar")
        .args(["-tf", &host("out")])
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&listed.stdout).lines().next(),
        Some("sub/")
    );

    // Stopped: the same, through an overlay mounted for the copy alone.
    t.ok(&["stop", "-t", "0", &name]);
    fs::write(t.path("in2.txt"), "while stopped\n").unwrap();
    t.ok(&["cp", &host("in2.txt"), &c("/tmp/in2.txt")]);
    assert_not_mounted(&id);
    t.ok(&["cp", &c("/data"), &host("copied")]);
    assert_eq!(fs::read_to_string(t.path("copied/sub/f")).unwrap(), "one\n");
    assert_eq!(
        fs::read_to_string(t.path("copied/tree/a/b/leaf")).unwrap(),
        "leaf\n"
    );
    assert_not_mounted(&id);
    t.ok(&["start", &name]);
    let o = t.ok(&["exec", &name, "cat", "/tmp/in2.txt"]);
    assert_eq!(o.stdout, "while stopped\n");
    t.ok(&["rm", "-f", &name]);
    assert_nothing_left(&t, &id);
}
