//! The escape suite: from inside a container with the default configuration, each
//! known way out is one test, and each must fail with the error that shows what
//! stopped it.
//!
//! **The configuration is podman's.** Once per run the suite has the installed
//! podman make the config.json of a plain `podman run` (`podman create` + `podman
//! init`, with private storage in a tempdir, `--runtime` this build, no network, the
//! ulimits this machine needs; then everything of it is removed again). That config
//! is taken whole: podman's default capabilities, its default seccomp profile
//! (/usr/share/containers/seccomp.json, resolved by podman for those capabilities),
//! masked and read-only paths, namespaces, device rules, pids limit, sysctls, rlimits, and
//! noNewPrivileges as podman leaves it (unset). Only what belonged to podman's own
//! container is replaced: the rootfs (mkbundle.sh's busybox, from the [`Fixture`]),
//! the bind mounts of podman's files (/etc/hosts, /etc/hostname, /run/.containerenv;
//! /dev/shm becomes a tmpfs as in mkbundle's config), process.args and cgroupsPath.
//! The containers are run by onggi-runtime directly, so the attacks that go through
//! the runtime's command line (`exec`, `--preserve-fds`, the binary itself) meet the
//! same configuration. [`podman_default_is_in_force`] checks it from inside: seccomp
//! mode 2 and exactly podman's capabilities, in the init and in `exec`.
//!
//! **The attacker** is `examples/escape_probe.rs`, a static binary the suite builds
//! (`cargo build --example escape_probe`, so it is never stale) and bind-mounts
//! read-only at /probe. It makes one attempt per run and prints whole lines
//! (`DENIED <attempt> errno=EPERM`, `ESCAPED ...`, `ERROR <step> ...`) that the tests
//! compare exactly: an attempt that fails for another reason (a missing file, a set-up
//! step that did not work) fails the test. Where one errno could come from two
//! guards, a control run without the guard under test shows the attack otherwise
//! works (the seccomp and setuid tests). If an attack does work it harms nothing on
//! the host (see the probe's doc); everything a test makes is in its fixture's
//! tempdir or removed by the test.
//!
//! Needs root and podman; like the other suites, skips itself without root.

mod common;

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::str::FromStr;
use std::sync::OnceLock;
use std::time::Instant;

use common::*;
use serde_json::{json, Value};

/// Where the probe is bind-mounted in every container.
const PROBE: &str = "/probe";

// ---------------------------------------------------------------------------------
// podman's default configuration
// ---------------------------------------------------------------------------------

/// podman with private storage, state and tmpdir under `dir`, and this build as its
/// runtime (with its state under `dir` too).
struct Podman {
    dir: tempfile::TempDir,
    /// podman's parent cgroups that existed before (all others are removed at drop).
    cgroups_before: Vec<PathBuf>,
}

/// The cgroups podman's cgroupfs manager puts containers and conmon under, children
/// first.
fn libpod_cgroups() -> Vec<PathBuf> {
    let mut dirs = cgroup_dirs_of("libpod_parent/conmon");
    dirs.extend(cgroup_dirs_of("libpod_parent"));
    dirs
}

impl Podman {
    fn new() -> Podman {
        let dir = tempfile::Builder::new()
            .prefix("onggi-t-podman-")
            .tempdir()
            .unwrap();
        Podman {
            dir,
            cgroups_before: libpod_cgroups(),
        }
    }

    fn command(&self) -> Command {
        let d = self.dir.path();
        let mut cmd = Command::new("podman");
        cmd.arg("--root")
            .arg(d.join("storage"))
            .arg("--runroot")
            .arg(d.join("run"))
            .arg("--tmpdir")
            .arg(d.join("tmp"))
            .arg("--runtime-flag")
            .arg(format!("root={}", d.join("runtime").display()))
            .args(["--cgroup-manager", "cgroupfs", "--events-backend", "none"])
            .args(["--runtime", BIN])
            .stdin(Stdio::null());
        cmd
    }

    /// `podman GLOBAL-FLAGS ARGS...`, which must succeed; its stdout, trimmed.
    #[track_caller]
    fn ok(&self, args: &[&str]) -> String {
        let out = self
            .command()
            .args(args)
            .output()
            .unwrap_or_else(|e| panic!("podman (needed for its default config): {e}"));
        assert!(out.status.success(), "podman {args:?}: {out:?}");
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }
}

impl Drop for Podman {
    fn drop(&mut self) {
        let _ = self
            .command()
            .args(["rm", "--all", "--force", "--time", "0"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        // conmon runs `podman container cleanup` when the container is gone: wait
        // for every process that names the directory, or it mounts storage again.
        let prefix = self.dir.path().to_string_lossy().into_owned();
        let deadline = Instant::now() + TIMEOUT;
        while !processes_naming(&prefix).is_empty() && Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        // The overlay driver's private bind mount of its directory: deepest first,
        // then the tempdir removes itself.
        let mountinfo = read(Path::new("/proc/self/mountinfo"));
        let mut points: Vec<&str> = mountinfo
            .lines()
            .filter_map(|l| l.split(' ').nth(4))
            .filter(|p| p.starts_with(&prefix))
            .collect();
        points.sort_by_key(|p| std::cmp::Reverse(p.len()));
        for p in points {
            let _ = nix::mount::umount2(p, nix::mount::MntFlags::MNT_DETACH);
        }
        for c in libpod_cgroups() {
            if !self.cgroups_before.contains(&c) {
                let _ = fs::remove_dir(c);
            }
        }
    }
}

/// The config.json podman makes for `podman run IMAGE`, ready for a [`Fixture`]
/// bundle: captured once per run.
fn podman_default() -> &'static Value {
    static CONFIG: OnceLock<Value> = OnceLock::new();
    CONFIG.get_or_init(capture_podman_default)
}

fn capture_podman_default() -> Value {
    let podman = Podman::new();
    let d = podman.dir.path().to_path_buf();
    mkbundle(&d.join("bundle"), &["true"]);
    let tar = d.join("busybox.tar");
    let st = Command::new("tar")
        .arg("-C")
        .arg(d.join("bundle/rootfs"))
        .arg("-cf")
        .arg(&tar)
        .arg(".")
        .status()
        .unwrap();
    assert!(st.success(), "tar of the busybox rootfs");
    podman.ok(&["import", "-q", path_str(&tar), "localhost/onggi-escape"]);
    let id = podman.ok(&[
        "create",
        "--ulimit",
        "nofile=1024:1024",
        "--ulimit",
        "nproc=32768:32768",
        "--network",
        "none",
        "localhost/onggi-escape",
        "true",
    ]);
    // podman writes config.json when it initialises the container (runtime create).
    podman.ok(&["init", &id]);
    let path = podman.ok(&["inspect", "--format", "{{.OCIConfigPath}}", &id]);
    let mut config: Value = serde_json::from_str(&read(Path::new(&path)))
        .unwrap_or_else(|e| panic!("podman's config.json at {path}: {e}"));
    // What belonged to podman's container, not to the configuration.
    config["root"] = json!({"path": "rootfs"});
    config["process"]["args"] = json!([]);
    let obj = config.as_object_mut().unwrap();
    obj.remove("annotations");
    obj.remove("hooks");
    config["linux"]
        .as_object_mut()
        .unwrap()
        .remove("cgroupsPath");
    let prefix = d.to_string_lossy().into_owned();
    let mounts = config["mounts"].as_array_mut().unwrap();
    mounts.retain(|m| !m["source"].as_str().unwrap_or("").starts_with(&prefix));
    mounts.push(
        json!({"destination": "/dev/shm", "type": "tmpfs", "source": "shm",
        "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]}),
    );
    config
}

/// podman's default capabilities as a CapEff-style mask.
fn podman_caps_mask() -> u64 {
    podman_default()["process"]["capabilities"]["effective"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            caps::Capability::from_str(c.as_str().unwrap())
                .unwrap_or_else(|e| panic!("{c}: {e}"))
                .bitmask()
        })
        .fold(0, |m, b| m | b)
}

// ---------------------------------------------------------------------------------
// The probe and its containers
// ---------------------------------------------------------------------------------

/// The probe's binary, built (or found up to date) by cargo once per run: `cargo
/// test --test escape` builds no examples, and a probe left from an older build
/// would test old attacks.
fn probe() -> &'static Path {
    static PROBE_BIN: OnceLock<PathBuf> = OnceLock::new();
    PROBE_BIN.get_or_init(|| {
        let out = Command::new(env!("CARGO"))
            .args(["build", "--message-format=json-render-diagnostics"])
            .args(["-p", "onggi-runtime-cli", "--example", "escape_probe"])
            .arg("--manifest-path")
            .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.toml"))
            .stdin(Stdio::null())
            .output()
            .expect("run cargo");
        assert!(out.status.success(), "cargo build of escape_probe: {out:?}");
        let stdout = String::from_utf8_lossy(&out.stdout);
        stdout
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter(|m| m["reason"] == "compiler-artifact" && m["target"]["name"] == "escape_probe")
            .find_map(|m| m["executable"].as_str().map(PathBuf::from))
            .expect("cargo names the escape_probe executable")
    })
}

/// A bundle with podman's default config running `args`, the probe at /probe.
fn default_bundle(fx: &Fixture, args: &[&str], edit: impl FnOnce(&mut Value)) -> PathBuf {
    let config = podman_default();
    fx.bundle(args, |c| {
        *c = config.clone();
        c["process"]["args"] = json!(args);
        add_mount(c, bind(probe(), PROBE, &["ro"]));
        edit(c);
    })
}

/// Run `script` (a shell script calling /probe) in a default container; its output.
#[track_caller]
fn run_probes(fx: &Fixture, script: &str) -> String {
    let b = default_bundle(fx, &sh(script), |_| {});
    fx.run(&fx.id("c"), &b).ok().stdout
}

/// A default container running `sleep 1000` in the background; its id.
fn sleeping(fx: &Fixture, name: &str) -> String {
    let b = default_bundle(fx, &["sleep", "1000"], |_| {});
    let id = fx.id(name);
    fx.run_detached(&id, &b);
    id
}

/// Wait (at most [`TIMEOUT`]) for `child`, `what` it runs; kill it after that.
#[track_caller]
fn wait_for(mut child: Child, what: &str) -> Output {
    let deadline = Instant::now() + TIMEOUT;
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("`{what}` did not finish: {:?}", child.wait_with_output());
        }
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
    child.wait_with_output().unwrap()
}

/// `sh -c SCRIPT` on the host with its output in pipes (the runtime in the script
/// runs in the foreground).
#[track_caller]
fn host_sh(script: &str) -> Output {
    let child = Command::new("/bin/sh")
        .args(["-c", script])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_for(child, script)
}

/// Run `/probe ATTACK` in a default container: it must print exactly `want`.
#[track_caller]
fn assert_probe(fx: &Fixture, attack: &str, want: &[&str]) {
    let out = run_probes(fx, &format!("{PROBE} {attack}"));
    assert_eq!(out.lines().collect::<Vec<_>>(), want, "/probe {attack}");
}

/// The name of errno `n` as the probe prints it (`EPERM`).
fn errno_name(n: i64) -> String {
    format!("{:?}", nix::errno::Errno::from_raw(n as i32))
}

/// A file on the host, outside every container: visible in one only after an escape.
fn host_marker(fx: &Fixture) -> PathBuf {
    let p = fx.path("host-marker");
    fs::write(&p, "host\n").unwrap();
    p
}

// ---------------------------------------------------------------------------------
// The configuration in force
// ---------------------------------------------------------------------------------

/// The `key=value` fields of one of the probe's `TAG ...` lines; a word without `=`
/// (the root of a TREE line) is the value of `TAG`.
#[track_caller]
fn fields<'a>(line: &'a str, tag: &'static str) -> BTreeMap<&'a str, &'a str> {
    let rest = line
        .strip_prefix(tag)
        .and_then(|r| r.strip_prefix(' '))
        .unwrap_or_else(|| panic!("not a {tag} line: {line:?}"));
    rest.split(' ')
        .map(|w| w.split_once('=').unwrap_or((tag, w)))
        .collect()
}

#[test]
fn podman_default_is_in_force() {
    let Some(fx) = Fixture::new("esc-default") else {
        return;
    };
    let config = podman_default();
    assert_eq!(
        config["linux"]["seccomp"]["defaultAction"],
        "SCMP_ACT_ERRNO"
    );
    assert!(
        config["process"]["noNewPrivileges"].as_bool() != Some(true),
        "podman sets no noNewPrivileges by default: {}",
        config["process"]
    );
    let caps = format!("{:016x}", podman_caps_mask());
    let want = |line: &str| {
        let f = fields(line, "STATUS");
        assert_eq!(f["seccomp"], "2", "seccomp filter mode: {line}");
        assert_eq!(f["nnp"], "0", "{line}");
        for set in ["capeff", "capprm", "capbnd"] {
            assert_eq!(f[set], caps, "{set} is podman's capabilities: {line}");
        }
        assert_eq!(f["euid"], "0", "{line}");
    };
    let b = default_bundle(&fx, &[PROBE, "status"], |_| {});
    want(fx.run(&fx.id("c"), &b).ok().stdout.trim());
    let id = sleeping(&fx, "exec");
    want(fx.rt(&["exec", &id, PROBE, "status"]).ok().stdout.trim());
}

// ---------------------------------------------------------------------------------
// /proc/sysrq-trigger, /proc/sys
// ---------------------------------------------------------------------------------

/// The sysctls written from inside: each gets the value it has.
const SYSCTLS: [&str; 5] = [
    "kernel/domainname",
    "kernel/hostname",
    "kernel/core_pattern",
    "kernel/panic",
    "net/ipv4/ip_forward",
];

/// /proc/sysrq-trigger, sysctls (core_pattern would run a program on the host) and
/// every file under podman's readonlyPaths.
#[test]
fn proc_sysrq_trigger_sysctls_and_readonly_paths_refuse_writes() {
    let Some(fx) = Fixture::new("esc-procsys") else {
        return;
    };
    let host = |name: &str| read(&Path::new("/proc/sys").join(name));
    let before: Vec<String> = SYSCTLS.iter().map(|s| host(s)).collect();
    // Those of podman's read-only paths this kernel has (/proc/asound may be missing).
    let readonly: Vec<&str> = podman_default()["linux"]["readonlyPaths"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_str().unwrap())
        .filter(|p| Path::new(p).is_dir())
        .collect();
    assert!(readonly.contains(&"/proc/sys"), "{readonly:?}");
    let out = run_probes(
        &fx,
        &format!(
            "{PROBE} sysrq; {PROBE} sysctl-rewrite {}; {PROBE} ro-tree {}",
            SYSCTLS.join(" "),
            readonly.join(" ")
        ),
    );
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 1 + SYSCTLS.len() + readonly.len(), "{out}");
    // A kernel without CONFIG_MAGIC_SYSRQ has no trigger to write to.
    let sysrq = if Path::new("/proc/sysrq-trigger").exists() {
        "EROFS"
    } else {
        "ENOENT"
    };
    assert_eq!(lines[0], format!("DENIED sysrq errno={sysrq}"));
    for (line, name) in lines[1..].iter().zip(SYSCTLS) {
        assert_eq!(*line, format!("DENIED sysctl {name} errno=EROFS"));
    }
    // Every file: the read-only mount, or no write permission to begin with. mkdir:
    // the read-only mount, or (procfs) no such name to make.
    for (line, path) in lines[1 + SYSCTLS.len()..].iter().zip(&readonly) {
        let t = fields(line, "TREE");
        assert_eq!(t["TREE"], *path, "{out}");
        assert!(["EROFS", "EACCES,EROFS"].contains(&t["open"]), "{line}");
        assert!(
            ["EROFS", "ENOENT", "ENOENT,EROFS"].contains(&t["mkdir"]),
            "{line}"
        );
    }
    let after: Vec<String> = SYSCTLS.iter().map(|s| host(s)).collect();
    assert_eq!(before, after);
}

// ---------------------------------------------------------------------------------
// Mounts, devices, modules
// ---------------------------------------------------------------------------------

#[test]
fn mounting_is_refused() {
    let Some(fx) = Fixture::new("esc-mount") else {
        return;
    };
    assert_probe(
        &fx,
        "mount",
        &[
            "DENIED mount-tmpfs errno=EPERM",
            "DENIED mount-proc errno=EPERM",
            "DENIED remount-proc-sys-rw errno=EPERM",
            "DENIED umount-proc-sys errno=EPERM",
            "DENIED umount-proc-keys errno=EPERM",
            "DENIED fsopen-tmpfs errno=EPERM",
            "DENIED open-tree-clone-root errno=EPERM",
        ],
    );
}

/// The host's root file system's block device, (major, minor).
fn host_root_disk() -> (u32, u32) {
    let dev = fs::metadata("/").unwrap().dev();
    let (major, minor) = (libc::major(dev), libc::minor(dev));
    assert!(
        Path::new(&format!("/sys/dev/block/{major}:{minor}")).exists(),
        "/ is not on a block device ({major}:{minor}): this test needs one"
    );
    (major, minor)
}

#[test]
fn block_device_of_the_host_disk_cannot_be_made_or_opened() {
    let Some(fx) = Fixture::new("esc-mknod") else {
        return;
    };
    let (major, minor) = host_root_disk();
    let b = default_bundle(
        &fx,
        &sh(&format!(
            "{PROBE} mknod {major} {minor}; {PROBE} open-read /tmp/host-disk"
        )),
        |_| {},
    );
    // A node made on the host: only the device cgroup stands between it and the disk.
    nix::sys::stat::mknod(
        &b.join("rootfs/tmp/host-disk"),
        nix::sys::stat::SFlag::S_IFBLK,
        nix::sys::stat::Mode::from_bits_truncate(0o600),
        libc::makedev(major, minor),
    )
    .unwrap();
    let out = fx.run(&fx.id("c"), &b).ok();
    assert_eq!(
        out.lines(),
        [
            "DENIED mknod errno=EPERM",
            "DENIED open-read /tmp/host-disk errno=EPERM"
        ],
        "{out:?}"
    );
}

#[test]
fn kernel_modules_cannot_be_loaded() {
    let Some(fx) = Fixture::new("esc-module") else {
        return;
    };
    // EPERM, not EINVAL or ENOEXEC (the image refused: the call was allowed).
    assert_probe(
        &fx,
        "module",
        &[
            "DENIED init_module errno=EPERM",
            "DENIED finit_module errno=EPERM",
            "DENIED delete_module errno=EPERM",
        ],
    );
}

// ---------------------------------------------------------------------------------
// Host processes
// ---------------------------------------------------------------------------------

/// A `sleep` on the host, killed by its PID when dropped.
struct HostSleep(Child);

impl HostSleep {
    fn start() -> HostSleep {
        HostSleep(Command::new("sleep").arg("60").spawn().unwrap())
    }

    fn pid(&self) -> i32 {
        self.0.id() as i32
    }
}

impl Drop for HostSleep {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn host_process_cannot_be_signalled_or_traced() {
    let Some(fx) = Fixture::new("esc-hostpid") else {
        return;
    };
    let sleep = HostSleep::start();
    let pid = sleep.pid();
    assert_probe(
        &fx,
        &format!("host-pid {pid}"),
        &[
            "DENIED kill errno=ESRCH",
            "DENIED ptrace-seize errno=ESRCH",
            "DENIED pidfd_open errno=ESRCH",
            "DENIED stat-proc errno=ENOENT",
            // signal 0 to all it may signal: nobody but itself in the container
            "DENIED kill-all-probe errno=ESRCH",
        ],
    );
    assert!(alive(pid), "the host's sleep was killed");
    let status = read(Path::new(&format!("/proc/{pid}/status")));
    assert!(status.contains("TracerPid:\t0\n"), "{status}");
}

#[test]
fn host_processes_are_not_visible() {
    let Some(fx) = Fixture::new("esc-procs") else {
        return;
    };
    let _sleep = HostSleep::start();
    assert_eq!(run_probes(&fx, &format!("exec {PROBE} procs")), "PIDS 1\n");
    // exec: the init and the exec'd probe, nothing else.
    let id = sleeping(&fx, "exec");
    let out = fx.rt(&["exec", &id, PROBE, "procs"]).ok();
    let pids: Vec<&str> = out.stdout.trim().split(' ').skip(1).collect();
    assert_eq!(pids.len(), 2, "{out:?}");
    assert_eq!(pids[0], "1", "{out:?}");
}

// ---------------------------------------------------------------------------------
// The root: chroot, descriptors, cwd
// ---------------------------------------------------------------------------------

#[test]
fn fchdir_chroot_trick_stays_in_the_container() {
    let Some(fx) = Fixture::new("esc-chroot") else {
        return;
    };
    let marker = host_marker(&fx);
    let b = default_bundle(
        &fx,
        &[
            PROBE,
            "chroot-escape",
            path_str(&marker),
            "/container-marker",
        ],
        |_| {},
    );
    fs::write(b.join("rootfs/container-marker"), "container\n").unwrap();
    let out = fx.run(&fx.id("c"), &b).ok();
    assert_eq!(
        out.stdout, "CONTAINED host-marker=ENOENT own-marker=found\n",
        "{out:?}"
    );
}

/// `FD n kind target` lines: (n, kind, target).
fn fd_lines(out: &str) -> Vec<(i32, String, String)> {
    out.lines()
        .map(|l| {
            let mut f = l.splitn(4, ' ');
            assert_eq!(f.next(), Some("FD"), "{out}");
            let n = f.next().unwrap().parse().unwrap();
            (n, f.next().unwrap().into(), f.next().unwrap_or("").into())
        })
        .collect()
}

/// Only descriptors 0, 1, 2 and the `extra` ones, none of them a directory; with
/// `pipes`, stdin is /dev/null and stdout and stderr are pipes (as the test gave them).
#[track_caller]
fn assert_only_stdio(out: &str, extra: &[i32], pipes: bool) {
    let fds = fd_lines(out);
    let nums: Vec<i32> = fds.iter().map(|f| f.0).collect();
    let mut want = vec![0, 1, 2];
    want.extend_from_slice(extra);
    assert_eq!(nums, want, "{out}");
    assert!(
        fds.iter().all(|f| f.1 != "dir"),
        "a directory leaked: {out}"
    );
    if pipes {
        let stdio: Vec<&str> = fds[..3].iter().map(|f| f.1.as_str()).collect();
        assert_eq!(stdio, ["chr", "fifo", "fifo"], "{out}");
        assert_eq!(fds[0].2, "/dev/null", "{out}");
    }
}

#[test]
fn host_descriptors_do_not_leak_into_the_container() {
    let Some(fx) = Fixture::new("esc-fds") else {
        return;
    };
    let b = default_bundle(&fx, &[PROBE, "fds", "self"], |_| {});
    let id = fx.id("c");
    let passed = fx.path("passed");
    fs::write(&passed, "passed on purpose\n").unwrap();
    // A careless caller: fd 3 is to be preserved, 4 (a host directory) and 5 (the
    // host's root) are open without close-on-exec and must stay behind.
    let out = host_sh(&format!(
        "exec 3<{p} 4<{dir} 5</; exec {BIN} --root {root} run --preserve-fds 1 --bundle {b} {id}",
        p = path_str(&passed),
        dir = path_str(fx.dir.path()),
        root = path_str(&fx.root),
        b = fx.bundle_for(&id, &b),
    ));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{out:?}");
    assert_only_stdio(&stdout, &[3], true);
    let fd3 = &fd_lines(&stdout)[3];
    assert_eq!(
        (fd3.1.as_str(), fd3.2.as_str()),
        ("file", path_str(&passed))
    );
}

#[test]
fn host_descriptors_do_not_leak_into_exec() {
    let Some(fx) = Fixture::new("esc-execfds") else {
        return;
    };
    let id = sleeping(&fx, "c");
    let out = host_sh(&format!(
        "exec 4<{dir} 5</; exec {BIN} --root {root} exec {id} {PROBE} fds self",
        dir = path_str(fx.dir.path()),
        root = path_str(&fx.root),
    ));
    assert!(out.status.success(), "{out:?}");
    assert_only_stdio(&String::from_utf8_lossy(&out.stdout), &[], true);
    // The init, as the exec'd process finds it.
    let init = fx.rt(&["exec", &id, PROBE, "fds", "1"]).ok();
    assert_only_stdio(&init.stdout, &[], false);
}

/// How a process started with cwd `cwd` ended: refused by the runtime, or in a
/// directory of the container; else the test fails with what happened.
fn cwd_outcome(cwd: &str, out: &Out) -> Result<(), String> {
    let line = out.stdout.trim();
    if out.code != 0 && out.stderr.starts_with("error:") && line.is_empty() {
        return Ok(());
    }
    match line.strip_prefix("CWD ") {
        Some(rest) if rest.starts_with('/') && rest.ends_with(" marker=ENOENT") => Ok(()),
        _ => Err(format!(
            "cwd {cwd}: code {} stdout {line:?} stderr {:?}",
            out.code, out.stderr
        )),
    }
}

/// CVE-2024-21626: a cwd of /proc/self/fd/N reaches a directory the runtime had open
/// (a host directory, if one leaked) before the root was left behind. First every
/// N the runtime might hold, then a host directory passed with `--preserve-fds`, in
/// place of a leaked one: the runtime must refuse it or the process must find itself
/// inside the container.
#[test]
fn cwd_through_proc_self_fd_stays_in_the_container() {
    let Some(fx) = Fixture::new("esc-cwd") else {
        return;
    };
    let marker = host_marker(&fx);
    let marker = path_str(&marker);
    let with_cwd = |cwd: &str| {
        default_bundle(&fx, &[PROBE, "cwd", marker], |c| {
            c["process"]["cwd"] = json!(cwd)
        })
    };
    let mut failures = Vec::new();
    for n in 3..=10 {
        let cwd = format!("/proc/self/fd/{n}");
        let out = fx.run(&fx.id(&format!("run{n}")), &with_cwd(&cwd));
        failures.extend(cwd_outcome(&format!("run {cwd}"), &out).err());
    }
    let id = sleeping(&fx, "exec");
    for n in 3..=10 {
        let cwd = format!("/proc/self/fd/{n}");
        let out = fx.rt(&["exec", "--cwd", &cwd, &id, PROBE, "cwd", marker]);
        failures.extend(cwd_outcome(&format!("exec {cwd}"), &out).err());
    }
    let host_dir = path_str(fx.dir.path());
    let root = path_str(&fx.root);
    let preserved = fx.id("preserved");
    let b = with_cwd("/proc/self/fd/3");
    let scripts = [
        format!(
            "exec 3<{host_dir}; exec {BIN} --root {root} run --preserve-fds 1 --bundle {b} {preserved}",
            b = fx.bundle_for(&preserved, &b)
        ),
        format!(
            "exec 3<{host_dir}; exec {BIN} --root {root} exec --preserve-fds 1 --cwd /proc/self/fd/3 {id} {PROBE} cwd {marker}"
        ),
    ];
    for (what, script) in ["run --preserve-fds", "exec --preserve-fds"]
        .iter()
        .zip(scripts)
    {
        let o = host_sh(&script);
        let out = Out {
            code: o.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&o.stdout).into(),
            stderr: String::from_utf8_lossy(&o.stderr).into(),
            stdout_file: PathBuf::new(),
        };
        failures.extend(cwd_outcome(&format!("{what} 1, a host directory as fd 3"), &out).err());
    }
    // A cwd below the leaked directory is made inside the root, if anywhere: never
    // on the host (runc's in-root mkdir).
    let below = fx.id("below");
    let b = with_cwd("/proc/self/fd/3/made-by-container");
    let o = host_sh(&format!(
        "exec 3<{host_dir}; exec {BIN} --root {root} run --preserve-fds 1 --bundle {b} {below}",
        b = fx.bundle_for(&below, &b)
    ));
    let out = Out {
        code: o.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&o.stdout).into(),
        stderr: String::from_utf8_lossy(&o.stderr).into(),
        stdout_file: PathBuf::new(),
    };
    failures.extend(cwd_outcome("a new directory below a host directory as fd 3", &out).err());
    if fx.dir.path().join("made-by-container").exists() {
        failures.push("the runtime made process.cwd in the host directory".into());
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

// ---------------------------------------------------------------------------------
// CVE-2019-5736: the runtime's binary through /proc/self/exe
// ---------------------------------------------------------------------------------

/// `bin --root R ARGS...` (another binary than [`BIN`]) to completion; exit code,
/// stdout file (a detached container writes there later) and stderr.
#[track_caller]
fn rt_of(fx: &Fixture, bin: &Path, name: &str, args: &[&str]) -> (i32, PathBuf, String) {
    let (stdout, stderr) = (
        fx.path(&format!("{name}.out")),
        fx.path(&format!("{name}.err")),
    );
    let child = Command::new(bin)
        .arg("--root")
        .arg(&fx.root)
        .args(args)
        .stdin(Stdio::null())
        .stdout(fs::File::create(&stdout).unwrap())
        .stderr(fs::File::create(&stderr).unwrap())
        .spawn()
        .unwrap();
    let status = wait_for(child, &format!("{} {args:?}", bin.display())).status;
    (status.code().unwrap_or(-1), stdout, read(&stderr))
}

/// The container runs a watcher; `exec` of `/evil` (`#!/proc/self/exe`) makes the
/// runtime run itself inside the container. The watcher holds the runtime process's
/// /proc/PID/exe, tries to open it for writing while it runs, and with O_TRUNC once
/// it has exited. The runtime used is a copy in the tempdir: the build's binary is
/// never at risk.
#[test]
fn runtime_cannot_be_overwritten_through_proc_self_exe() {
    let Some(fx) = Fixture::new("esc-exe") else {
        return;
    };
    let original = fs::read(BIN).unwrap();
    let copy = fx.path("onggi-runtime");
    fs::write(&copy, &original).unwrap();
    fs::set_permissions(&copy, fs::Permissions::from_mode(0o755)).unwrap();
    let b = default_bundle(&fx, &[PROBE, "exe-watch"], |_| {});
    let evil = b.join("rootfs/evil");
    fs::write(&evil, "#!/proc/self/exe\n").unwrap();
    fs::set_permissions(&evil, fs::Permissions::from_mode(0o755)).unwrap();
    let id = fx.id("c");
    let (code, watch, err) = rt_of(
        &fx,
        &copy,
        "run",
        &["run", "--detach", "--bundle", fx.bundle_for(&id, &b), &id],
    );
    assert_eq!(code, 0, "run --detach: {err}");
    wait_until("the watcher", || read(&watch).starts_with("WATCHING\n"));
    // The runtime in the container lives a millisecond or two: again until the
    // watcher has seen it.
    let mut exec_err = String::new();
    for n in 0..20 {
        if read(&watch).contains("\nSEEN ") {
            break;
        }
        exec_err = rt_of(&fx, &copy, &format!("exec{n}"), &["exec", &id, "/evil"]).2;
    }
    fx.wait_status(&id, "stopped");
    let report = read(&watch);
    let lines: Vec<&str> = report.lines().collect();
    let denied = |line: &str, prefix: &str, errnos: &[&str]| {
        line.strip_prefix(prefix)
            .is_some_and(|e| errnos.contains(&e))
    };
    // While the runtime runs, ETXTBSY guards it anyway. Once no process runs it,
    // only a binary that cannot be written saves it: a read-only mount (EROFS) or a
    // sealed memfd (EPERM). ETXTBSY then would mean the watcher gave up waiting.
    let protected = ["EROFS", "EPERM", "EACCES"];
    assert!(
        lines.len() == 4
            && lines[1].starts_with("SEEN exe=")
            && denied(
                lines[2],
                "DENIED live errno=",
                &["ETXTBSY", "EROFS", "EPERM", "EACCES"]
            )
            && denied(lines[3], "DENIED after-exit errno=", &protected),
        "the watcher reported:\n{report}exec's stderr: {exec_err}"
    );
    assert!(
        fs::read(&copy).unwrap() == original,
        "the runtime's binary was changed:\n{report}"
    );
}

// ---------------------------------------------------------------------------------
// cgroups, hostname
// ---------------------------------------------------------------------------------

#[test]
fn cgroup_files_are_read_only() {
    let Some(fx) = Fixture::new("esc-cgroup") else {
        return;
    };
    let own = [
        "/sys/fs/cgroup/pids/cgroup.procs",
        "/sys/fs/cgroup/pids/pids.max",
        "/sys/fs/cgroup/memory/memory.limit_in_bytes",
        "/sys/fs/cgroup/devices/devices.allow",
    ];
    let out = run_probes(
        &fx,
        &format!(
            "{PROBE} open-write {}; {PROBE} ro-tree /sys/fs/cgroup",
            own.join(" ")
        ),
    );
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), own.len() + 1, "{out}");
    for (line, path) in lines.iter().zip(own) {
        assert_eq!(*line, format!("DENIED open-write {path} errno=EROFS"));
    }
    let t = fields(lines.last().unwrap(), "TREE");
    assert_eq!(
        (t["TREE"], t["open"], t["mkdir"]),
        ("/sys/fs/cgroup", "EROFS", "EROFS"),
        "{out}"
    );
    assert!(t["files"].parse::<u32>().unwrap() > 0, "{out}");
}

#[test]
fn hostname_change_does_not_reach_the_host() {
    let Some(fx) = Fixture::new("esc-hostname") else {
        return;
    };
    let host = || {
        let u = nix::sys::utsname::uname().unwrap();
        (u.nodename().to_owned(), u.domainname().to_owned())
    };
    let before = host();
    let out = run_probes(
        &fx,
        &format!("{PROBE} hostname evil; hostname evil 2>&1; hostname"),
    );
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(
        lines[..3],
        [
            "DENIED sethostname errno=EPERM",
            "DENIED setdomainname errno=EPERM",
            "DENIED write-proc-sys-kernel-hostname errno=EROFS",
        ],
        "{out}"
    );
    assert_ne!(lines.last(), Some(&"evil"), "{out}");
    assert_eq!(host(), before);
}

// ---------------------------------------------------------------------------------
// setuid, seccomp
// ---------------------------------------------------------------------------------

/// A setuid-root copy of the probe at /suid, run as uid 1000: under noNewPrivileges
/// it gains nothing; without (the control) it becomes root with podman's capabilities.
#[test]
fn setuid_binary_gains_nothing_under_no_new_privileges() {
    let Some(fx) = Fixture::new("esc-setuid") else {
        return;
    };
    let suid = fx.path("probe-suid");
    fs::copy(probe(), &suid).unwrap();
    std::os::unix::fs::chown(&suid, Some(0), Some(0)).unwrap();
    fs::set_permissions(&suid, fs::Permissions::from_mode(0o4755)).unwrap();
    let status_with = |nnp: bool| {
        let b = default_bundle(&fx, &["/suid", "status"], |c| {
            c["process"]["user"] = json!({"uid": 1000, "gid": 1000});
            c["process"]["noNewPrivileges"] = json!(nnp);
            add_mount(c, bind(&suid, "/suid", &[]));
        });
        let out = fx.run(&fx.id(if nnp { "nnp" } else { "control" }), &b).ok();
        fields(out.stdout.trim(), "STATUS")
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect::<BTreeMap<_, _>>()
    };
    let f = status_with(true);
    assert_eq!(
        (f["nnp"].as_str(), f["uid"].as_str(), f["euid"].as_str()),
        ("1", "1000", "1000"),
        "{f:?}"
    );
    assert_eq!(
        (f["capeff"].as_str(), f["capprm"].as_str()),
        ("0000000000000000", "0000000000000000"),
        "{f:?}"
    );
    let control = status_with(false);
    let caps = format!("{:016x}", podman_caps_mask());
    assert_eq!(
        (control["euid"].as_str(), control["capeff"].as_str()),
        ("0", caps.as_str()),
        "without noNewPrivileges the setuid bit works: {control:?}"
    );
}

/// The errno podman's profile gives `name` when no argument matters: the
/// `errnoRet` of an unconditional SCMP_ACT_ERRNO rule, or the default's if no rule
/// allows it. `None` when a rule allows it.
fn profile_errno(profile: &Value, name: &str) -> Option<i64> {
    let rules = profile["syscalls"].as_array().unwrap();
    for r in rules {
        let named = r["names"].as_array().unwrap().iter().any(|n| n == name);
        let unconditional = r["args"].as_array().is_none_or(|a| a.is_empty());
        if named && unconditional {
            match r["action"].as_str().unwrap() {
                "SCMP_ACT_ALLOW" => return None,
                "SCMP_ACT_ERRNO" => return Some(r["errnoRet"].as_i64().unwrap_or(1)),
                other => panic!("{name}: action {other}"),
            }
        }
    }
    assert_eq!(profile["defaultAction"], "SCMP_ACT_ERRNO");
    Some(profile["defaultErrnoRet"].as_i64().unwrap_or(1))
}

/// `CALL name errno=E` / `CALL name ok` lines, by name.
fn calls(out: &str) -> BTreeMap<String, String> {
    out.lines()
        .map(|l| {
            let rest = l.strip_prefix("CALL ").unwrap_or_else(|| panic!("{out}"));
            let (name, result) = rest.split_once(' ').unwrap();
            (name.to_string(), result.to_string())
        })
        .collect()
}

#[test]
fn profile_denies_its_syscalls_with_its_errno() {
    let Some(fx) = Fixture::new("esc-seccomp") else {
        return;
    };
    let profile = &podman_default()["linux"]["seccomp"];
    let mut want = BTreeMap::new();
    for name in [
        "vmsplice",
        "userfaultfd",
        "add_key",
        "kexec_load",
        "bpf",
        "open_by_handle_at",
    ] {
        let errno = profile_errno(profile, name)
            .unwrap_or_else(|| panic!("podman's profile allows {name}"));
        want.insert(name.to_string(), format!("errno={}", errno_name(errno)));
    }
    // socket(AF_NETLINK, SOCK_RAW, NETLINK_AUDIT): the profile's one rule on arguments.
    let audit = profile["syscalls"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["names"] == json!(["socket"]) && r["action"] == "SCMP_ACT_ERRNO")
        .expect("podman's profile has a rule for audit sockets");
    want.insert(
        "socket-netlink-audit".into(),
        format!("errno={}", errno_name(audit["errnoRet"].as_i64().unwrap())),
    );
    let got = calls(&run_probes(&fx, &format!("{PROBE} syscalls")));
    assert_eq!(got, want);
    // Without the profile these calls do something else: the profile made the errno.
    let b = default_bundle(&fx, &[PROBE, "syscalls"], |c| {
        c["linux"].as_object_mut().unwrap().remove("seccomp");
    });
    let control = calls(&fx.run(&fx.id("control"), &b).ok().stdout);
    for name in ["vmsplice", "userfaultfd", "add_key", "socket-netlink-audit"] {
        assert_ne!(
            control[name], want[name],
            "{name} without seccomp: {control:?}"
        );
    }
}
