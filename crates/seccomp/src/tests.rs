//! Unit tests: no root. Loading a filter happens in a child process (this test binary
//! re-run with [`CHILD_ENV`]), which sets `no_new_privs` first.

use std::path::Path;
use std::process::Command;

use nix::errno::Errno;
use serde_json::{json, Value};

use super::*;

/// Set in the child: the test that sees it loads a filter and reports syscall results.
const CHILD_ENV: &str = "ONGGI_SECCOMP_TEST_CHILD";
const PODMAN_PROFILE: &str = "/usr/share/containers/seccomp.json";

/// Podman's default profile as an OCI `linux.seccomp` object: podman derives
/// `architectures` from `archMap` (the native architecture and its sub-architectures).
/// Its per-rule `includes`/`excludes` (by capability, kernel version) are ignored, so
/// this compiles a superset of the rules podman would.
fn podman_profile() -> Option<LinuxSeccomp> {
    let mut v: Value = serde_json::from_slice(&std::fs::read(PODMAN_PROFILE).ok()?).unwrap();
    let arches: Vec<Value> = v["archMap"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["architecture"] == "SCMP_ARCH_X86_64")
        .flat_map(|m| {
            std::iter::once(m["architecture"].clone())
                .chain(m["subArchitectures"].as_array().unwrap().clone())
        })
        .collect();
    v["architectures"] = Value::Array(arches);
    Some(parse(v.to_string().as_bytes()).expect("podman's profile parses"))
}

fn profile(v: Value) -> LinuxSeccomp {
    parse(v.to_string().as_bytes()).unwrap()
}

fn unexpected_compile(_: &LinuxSeccomp) -> Result<Compiled, Error> {
    panic!("libseccomp was called on a cache hit")
}

#[test]
fn podman_profile_compiles_and_is_cached() {
    let Some(p) = podman_profile() else {
        eprintln!("skipped: {PODMAN_PROFILE} is missing");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let t = std::time::Instant::now();
    let first = compile_cached(&p, dir.path()).unwrap();
    let t_compile = t.elapsed();
    assert!(first.bpf().len() > 100 * 8, "{} bytes", first.bpf().len());
    assert_eq!(first.bpf().len() % 8, 0);
    assert!(!first.needs_listener());

    let t = std::time::Instant::now();
    let second = cache::compile_cached_with(&p, dir.path(), unexpected_compile).unwrap();
    let t_cached = t.elapsed();
    assert_eq!(first, second);
    eprintln!(
        "podman profile: compile {t_compile:?}, cache hit {t_cached:?}, {} insns",
        first.bpf().len() / 8
    );

    // Same as compiling directly.
    assert_eq!(compile(&p).unwrap(), first);
}

#[test]
fn tampered_or_truncated_cache_files_are_recompiled() {
    let p = profile(
        json!({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_ERRNO"}]}),
    );
    let dir = tempfile::tempdir().unwrap();
    let good = compile_cached(&p, dir.path()).unwrap();
    let file = only_file(dir.path());
    let bytes = std::fs::read(&file).unwrap();

    let mut flipped = bytes.clone();
    *flipped.last_mut().unwrap() ^= 1; // one bit of the program
    for broken in [
        flipped,
        bytes[..bytes.len() - 8].to_vec(),
        bytes[..10].to_vec(),
        Vec::new(),
    ] {
        std::fs::write(&file, &broken).unwrap();
        let mut compiled = false;
        let c = cache::compile_cached_with(&p, dir.path(), |s| {
            compiled = true;
            compile(s)
        })
        .unwrap();
        assert!(compiled, "a broken cache file was trusted");
        assert_eq!(c, good);
        assert_eq!(
            std::fs::read(&file).unwrap(),
            bytes,
            "the entry is rewritten"
        );
    }
    // Left whole: a hit again, and no temporary files behind.
    cache::compile_cached_with(&p, dir.path(), unexpected_compile).unwrap();
    assert_eq!(only_file(dir.path()), file);
}

fn only_file(dir: &Path) -> std::path::PathBuf {
    let files: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(files.len(), 1, "{files:?}");
    files.into_iter().next().unwrap()
}

#[test]
fn unknown_values_name_the_field() {
    let cases = [
        (
            json!({"defaultAction": "SCMP_ACT_NOPE"}),
            "linux.seccomp.defaultAction: unknown action \"SCMP_ACT_NOPE\"",
        ),
        (
            json!({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
                {"names": ["read"], "action": "SCMP_ACT_ERRNO"},
                {"names": ["write"], "action": "SCMP_ACT_FOO"}]}),
            "linux.seccomp.syscalls[1].action: unknown action \"SCMP_ACT_FOO\"",
        ),
        (
            json!({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
                {"names": ["kill"], "action": "SCMP_ACT_ERRNO", "args": [{"index": 0, "value": 1, "op": "SCMP_CMP_EQ"}, {"index": 1, "value": 1, "op": "SCMP_CMP_SORTA"}]}]}),
            "linux.seccomp.syscalls[0].args[1].op: unknown operator \"SCMP_CMP_SORTA\"",
        ),
        (
            json!({"defaultAction": "SCMP_ACT_ALLOW", "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_VAX"]}),
            "linux.seccomp.architectures[1]: unknown architecture \"SCMP_ARCH_VAX\"",
        ),
        (
            json!({"defaultAction": "SCMP_ACT_ALLOW", "flags": ["SECCOMP_FILTER_FLAG_FAST"]}),
            "linux.seccomp.flags[0]: unknown flag \"SECCOMP_FILTER_FLAG_FAST\"",
        ),
    ];
    for (v, want) in cases {
        assert_eq!(
            parse(v.to_string().as_bytes()).unwrap_err().to_string(),
            want
        );
    }
}

#[test]
fn invalid_values_name_the_field() {
    let cases = [
        (
            json!({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["kill"], "action": "SCMP_ACT_ERRNO", "args": [{"index": 6, "value": 1, "op": "SCMP_CMP_EQ"}]}]}),
            "linux.seccomp.syscalls[0].args[0].index",
        ),
        (
            json!({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["kill"], "action": "SCMP_ACT_ERRNO", "errnoRet": 70000}]}),
            "linux.seccomp.syscalls[0].errnoRet",
        ),
        (
            json!({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["kill"], "action": "SCMP_ACT_NOTIFY"}]}),
            "linux.seccomp.listenerPath",
        ),
    ];
    for (v, field) in cases {
        let err = compile(&profile(v)).unwrap_err().to_string();
        assert!(err.starts_with(&format!("{field}: ")), "{err}");
    }
}

#[test]
fn unknown_syscalls_are_skipped_and_notify_needs_a_listener() {
    let p = profile(
        json!({"defaultAction": "SCMP_ACT_ALLOW", "listenerPath": "/run/agent.sock", "flags": ["SECCOMP_FILTER_FLAG_LOG"],
        "syscalls": [{"names": ["no_such_syscall", "mkdir"], "action": "SCMP_ACT_NOTIFY"}]}),
    );
    let c = compile(&p).unwrap();
    assert!(c.needs_listener());
    assert_eq!(c.flags(), onggi_sys::seccomp::FLAG_LOG);
}

/// The profile the child loads: `mkdir` fails with EPERM; `kill` with EACCES only when
/// its pid argument is 999999 (any signal), or when the signal is 0 and the pid above
/// 2^30 (two conditions on one rule: AND); ESRCH for other absent pids shows that the
/// call reached the kernel.
fn child_profile() -> LinuxSeccomp {
    profile(json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
        "syscalls": [
            {"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": Errno::EPERM as i32},
            {"names": ["kill"], "action": "SCMP_ACT_ERRNO", "errnoRet": Errno::EACCES as i32,
             "args": [{"index": 0, "value": 999_999, "op": "SCMP_CMP_EQ"}]},
            {"names": ["kill"], "action": "SCMP_ACT_ERRNO", "errnoRet": Errno::EACCES as i32,
             "args": [{"index": 0, "value": 1u64 << 30, "op": "SCMP_CMP_GT"}, {"index": 1, "value": 0xff, "valueTwo": 0, "op": "SCMP_CMP_MASKED_EQ"}]},
            {"names": ["getppid"], "action": "SCMP_ACT_ALLOW"}
        ]
    }))
}

fn errno_name<T>(r: nix::Result<T>) -> String {
    match r {
        Ok(_) => "ok".to_owned(),
        Err(e) => format!("{e:?}"),
    }
}

#[test]
fn loaded_filter_denies_and_allows_in_a_child() {
    use nix::sys::signal::{kill, Signal};
    use nix::unistd::Pid;

    if std::env::var_os(CHILD_ENV).is_some() {
        let c = compile(&child_profile()).unwrap();
        nix::sys::prctl::set_no_new_privs().unwrap();
        assert!(load(&c).unwrap().is_none());
        let dir = std::env::var(CHILD_ENV).unwrap();
        let results = [
            (
                "mkdir",
                errno_name(nix::unistd::mkdir(
                    Path::new(&dir).join("d").as_path(),
                    nix::sys::stat::Mode::S_IRWXU,
                )),
            ),
            (
                "kill_matched",
                errno_name(kill(Pid::from_raw(999_999), None)),
            ),
            (
                "kill_other_pid",
                errno_name(kill(Pid::from_raw(999_998), None)),
            ),
            ("kill_self", errno_name(kill(Pid::this(), None))),
            (
                "kill_and_both",
                errno_name(kill(Pid::from_raw((1 << 30) + 5), None)),
            ),
            (
                "kill_and_one",
                errno_name(kill(Pid::from_raw((1 << 30) + 5), Signal::SIGCONT)),
            ),
            ("getppid", (nix::unistd::getppid().as_raw() > 0).to_string()),
        ];
        for (name, r) in results {
            println!("RESULT {name}={r}");
        }
        std::process::exit(0);
    }
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "tests::loaded_filter_denies_and_allows_in_a_child",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_ENV, dir.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{out:?}");
    let got: Vec<&str> = stdout
        .lines()
        .filter_map(|l| Some(l.split_once("RESULT ")?.1))
        .collect();
    assert_eq!(
        got,
        [
            "mkdir=EPERM",
            "kill_matched=EACCES",
            "kill_other_pid=ESRCH",
            "kill_self=ok",
            "kill_and_both=EACCES",
            "kill_and_one=ESRCH",
            "getppid=true"
        ]
    );
    assert!(!dir.path().join("d").exists());
}

/// Podman's profile resolved for a container: rules for capabilities it lacks and
/// for other architectures are gone; the rest compiles.
#[test]
fn a_containers_common_profile_resolves_per_capabilities_and_arch() {
    let profile = serde_json::json!({
        "defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": 38, "defaultErrno": "ENOSYS",
        "archMap": [{"architecture": "SCMP_ARCH_X86_64", "subArchitectures": ["SCMP_ARCH_X86", "SCMP_ARCH_X32"]},
                    {"architecture": "SCMP_ARCH_AARCH64", "subArchitectures": ["SCMP_ARCH_ARM"]}],
        "syscalls": [
            {"names": ["read"], "action": "SCMP_ACT_ALLOW", "includes": {}, "excludes": {}},
            {"names": ["arch_prctl"], "action": "SCMP_ACT_ALLOW", "includes": {"arches": ["amd64"]}, "excludes": {}},
            {"names": ["breakpoint"], "action": "SCMP_ACT_ALLOW", "includes": {"arches": ["arm64"]}, "excludes": {}},
            {"names": ["chroot"], "action": "SCMP_ACT_ALLOW", "includes": {"caps": ["CAP_SYS_CHROOT"]}, "excludes": {}},
            {"names": ["chroot"], "action": "SCMP_ACT_ERRNO", "includes": {}, "excludes": {"caps": ["CAP_SYS_CHROOT"]}},
            {"names": ["bpf"], "action": "SCMP_ACT_ALLOW", "includes": {"caps": ["CAP_SYS_ADMIN"]}, "excludes": {}}
        ]
    });
    let data = serde_json::to_vec(&profile).unwrap();
    let names = |s: &oci_spec::runtime::LinuxSeccomp| -> Vec<String> {
        s.syscalls()
            .iter()
            .flatten()
            .flat_map(|r| r.names().clone())
            .collect()
    };
    let with = crate::resolve(&data, &["CAP_SYS_CHROOT".into()], "amd64").unwrap();
    assert_eq!(names(&with), ["read", "arch_prctl", "chroot"]);
    assert_eq!(with.architectures().as_ref().map(|a| a.len()), Some(3));
    let without = crate::resolve(&data, &[], "amd64").unwrap();
    assert_eq!(
        names(&without),
        ["read", "arch_prctl", "chroot"],
        "chroot's ERRNO rule instead"
    );
    assert_eq!(
        without.syscalls().as_ref().unwrap()[2].action(),
        oci_spec::runtime::LinuxSeccompAction::ScmpActErrno
    );
    crate::compile(&with).unwrap();
    // Debian's own file, when podman is installed.
    if let Ok(real) = std::fs::read("/usr/share/containers/seccomp.json") {
        let caps: Vec<String> = ["CAP_CHOWN", "CAP_SYS_CHROOT"].map(String::from).to_vec();
        crate::compile(&crate::resolve(&real, &caps, "amd64").unwrap()).unwrap();
    }
}
