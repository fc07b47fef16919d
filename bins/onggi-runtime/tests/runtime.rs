//! Privileged integration tests of the `onggi-runtime` binary: real containers on
//! this machine, each feature checked from inside the container (a busybox shell
//! prints what it sees; the test reads the runtime's stdout).
//!
//! Every test needs root and skips itself (with a note) otherwise. Each has its own
//! `--root`, bundles, ids and cgroup parent (one test checks the default
//! `/onggi/<id>`): the harness, [`Fixture`] and its helpers, is in `common/mod.rs`.

mod common;

use std::collections::BTreeSet;
use std::fs::{self, File};
use std::io::Read;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use serde_json::{json, Value};

// ---------------------------------------------------------------------------------
// Identity: hostname, namespaces, PID 1, user namespace
// ---------------------------------------------------------------------------------

#[test]
fn hostname_and_domainname_come_from_the_spec() {
    let Some(fx) = Fixture::new("hostname") else {
        return;
    };
    let b = fx.bundle(&sh("hostname; cat /proc/sys/kernel/domainname"), |c| {
        c["hostname"] = json!("box-h");
        c["domainname"] = json!("example.test");
    });
    let out = fx.run(&fx.id("c"), &b).ok();
    assert_eq!(out.lines(), ["box-h", "example.test"]);
}

/// `--explain` lists exactly the namespaces the init got and the mounts its
/// mountinfo shows (ground truth: /proc/PID/ns against ours, /proc/PID/mountinfo).
#[test]
fn explain_lists_the_namespaces_and_mounts_the_container_has() {
    let Some(fx) = Fixture::new("explain") else {
        return;
    };
    let b = fx.bundle(&["sleep", "1000"], |_| {});
    let id = fx.id("c");
    let out = fx
        .rt(&[
            "--explain",
            "run",
            "--detach",
            "--bundle",
            fx.bundle_for(&id, &b),
            &id,
        ])
        .ok();
    let pid = fx.pid(&id);
    let lines: Vec<&str> = out
        .stderr
        .lines()
        .filter_map(|l| l.strip_prefix("explain: "))
        .collect();
    assert!(
        lines.iter().any(|l| l.starts_with("pivot_root")),
        "{}",
        out.stderr
    );
    assert!(
        lines.last().unwrap().starts_with("execve"),
        "{}",
        out.stderr
    );
    // Namespaces: those the clone and unshare lines name are exactly those that differ.
    let said: String = lines
        .iter()
        .filter(|l| l.starts_with("clone ") || l.starts_with("unshare "))
        .copied()
        .collect();
    for (flag, kind) in [
        ("CLONE_NEWPID", "pid"),
        ("CLONE_NEWNS", "mnt"),
        ("CLONE_NEWUTS", "uts"),
        ("CLONE_NEWIPC", "ipc"),
        ("CLONE_NEWNET", "net"),
        ("CLONE_NEWUSER", "user"),
        ("CLONE_NEWCGROUP", "cgroup"),
    ] {
        let link = |p: &str| fs::read_link(format!("/proc/{p}/ns/{kind}")).unwrap();
        let differs = link(&pid.to_string()) != link("self");
        assert_eq!(said.contains(flag), differs, "{kind}: {said}");
    }
    // Mounts: every new one (not remounts, not propagation changes), with the
    // targets before pivot_root taken inside the root, is a mount point, and back.
    let root = fs::canonicalize(b.join("rootfs")).unwrap();
    let root = root.to_str().unwrap();
    let explained: BTreeSet<String> = lines
        .iter()
        .filter(|l| {
            l.starts_with("mount ")
                && !l.starts_with("mount remount")
                && !l.starts_with("mount propagation")
        })
        .map(|l| {
            let target = l
                .split(" on ")
                .nth(1)
                .unwrap()
                .split(" (flags")
                .next()
                .unwrap();
            match target.strip_prefix(root) {
                Some("") => "/".to_owned(),
                Some(rest) => rest.to_owned(),
                None => target.to_owned(),
            }
        })
        .collect();
    let mountinfo = fs::read_to_string(format!("/proc/{pid}/mountinfo")).unwrap();
    let points: BTreeSet<String> = mountinfo
        .lines()
        .map(|l| l.split(' ').nth(4).unwrap().to_owned())
        .collect();
    assert_eq!(explained, points, "{}", out.stderr);
    fx.rt(&["delete", "--force", &id]).ok();
}

#[test]
fn every_namespace_differs_from_the_hosts() {
    let Some(fx) = Fixture::new("nsnew") else {
        return;
    };
    let b = fx.bundle(
        &sh("for n in pid mnt uts ipc net cgroup; do echo $n $(readlink /proc/self/ns/$n); done"),
        |c| {
            c["linux"]["namespaces"]
                .as_array_mut()
                .unwrap()
                .push(json!({"type": "cgroup"}));
        },
    );
    let out = fx.run(&fx.id("c"), &b).ok();
    assert_eq!(out.lines().len(), 6, "{out:?}");
    for line in out.lines() {
        let (ns, inside) = line.split_once(' ').unwrap();
        assert!(inside.starts_with(&format!("{ns}:[")), "{line}");
        assert_ne!(inside, ns_of("self", ns), "{ns} namespace is the host's");
    }
}

/// A bundle whose uts and network namespaces are those of host process `pid`.
fn joining_bundle(fx: &Fixture, pid: i32) -> PathBuf {
    fx.bundle(
        &sh("hostname; readlink /proc/self/ns/net; readlink /proc/self/ns/uts"),
        |c| {
            c.as_object_mut().unwrap().remove("hostname");
            for ns in c["linux"]["namespaces"].as_array_mut().unwrap() {
                match ns["type"].as_str().unwrap() {
                    "uts" => ns["path"] = json!(format!("/proc/{pid}/ns/uts")),
                    "network" => ns["path"] = json!(format!("/proc/{pid}/ns/net")),
                    _ => {}
                }
            }
        },
    )
}

#[test]
fn namespace_path_joins_another_containers_namespaces() {
    let Some(fx) = Fixture::new("nsjoin") else {
        return;
    };
    let first = fx.bundle(&["sleep", "30"], |c| c["hostname"] = json!("shared-uts"));
    let pid = fx.run_detached(&fx.id("first"), &first);
    let second = joining_bundle(&fx, pid);
    let id = fx.id("second");
    // The init inherits create's stdout: read it once the container has stopped.
    let created = fx.create(&id, &second).ok();
    fx.rt(&["start", &id]).ok();
    fx.wait_status(&id, "stopped");
    let p = pid.to_string();
    assert_eq!(
        created.stdout_now(),
        format!("shared-uts\n{}\n{}\n", ns_of(&p, "net"), ns_of(&p, "uts"))
    );
    assert_ne!(ns_of(&p, "net"), ns_of("self", "net"));
}

#[test]
fn namespace_path_works_with_run_in_the_foreground() {
    let Some(fx) = Fixture::new("nsjoinrun") else {
        return;
    };
    let first = fx.bundle(&["sleep", "30"], |c| c["hostname"] = json!("shared-uts"));
    let pid = fx.run_detached(&fx.id("first"), &first);
    let second = joining_bundle(&fx, pid);
    let id = fx.id("second");
    let out = fx.run(&id, &second).ok();
    let p = pid.to_string();
    assert_eq!(
        out.lines(),
        ["shared-uts", &ns_of(&p, "net"), &ns_of(&p, "uts")]
    );
    fx.assert_gone(&id);
}

#[test]
fn the_program_is_pid_1() {
    let Some(fx) = Fixture::new("pid1") else {
        return;
    };
    let b = fx.bundle(&sh("echo $$"), |_| {});
    assert_eq!(fx.run(&fx.id("c"), &b).ok().stdout, "1\n");
}

/// A new user namespace mapping the container's ids 0..65536 to host 100000...
fn in_user_namespace(c: &mut Value) {
    c["linux"]["namespaces"]
        .as_array_mut()
        .unwrap()
        .push(json!({"type": "user"}));
    let map = json!([{"containerID": 0, "hostID": 100000, "size": 65536}]);
    c["linux"]["uidMappings"] = map.clone();
    c["linux"]["gidMappings"] = map;
}

#[test]
fn user_namespace_maps_container_root_to_a_host_range() {
    let Some(fx) = Fixture::new("userns") else {
        return;
    };
    // The mapped root (host uid 100000) must be able to walk to the bundle.
    fs::set_permissions(fx.dir.path(), fs::Permissions::from_mode(0o755)).unwrap();
    let shared = fx.host_dir("shared");
    // Its own bundle: the rootfs is chowned in place.
    let b = fx.own_bundle(
        &sh("id -u; id -g; cat /proc/self/uid_map /proc/self/gid_map; echo hi > /shared/f"),
        |c| {
            in_user_namespace(c);
            add_mount(c, bind(&shared, "/shared", &[]));
        },
    );
    for p in [b.join("rootfs"), shared.clone()] {
        let st = Command::new("chown")
            .args(["-R", "-h", "100000:100000"])
            .arg(&p)
            .status()
            .unwrap();
        assert!(st.success());
    }
    let out = fx.run(&fx.id("c"), &b).ok();
    let lines = out.lines();
    assert_eq!(lines[..2], ["0", "0"], "{out:?}");
    for map in &lines[2..4] {
        let fields: Vec<&str> = map.split_whitespace().collect();
        assert_eq!(fields, ["0", "100000", "65536"], "{out:?}");
    }
    let f = fs::metadata(shared.join("f")).unwrap();
    assert_eq!(
        (f.uid(), f.gid()),
        (100000, 100000),
        "owner of a file written by the container's root"
    );
}

/// A host directory with a file owned by root and one owned by uid/gid 1000.
fn owned_files(fx: &Fixture) -> PathBuf {
    let data = fx.host_dir("data");
    fs::write(data.join("rootfile"), "").unwrap();
    fs::write(data.join("userfile"), "").unwrap();
    std::os::unix::fs::chown(data.join("userfile"), Some(1000), Some(1000)).unwrap();
    data
}

const SHOW_OWNERS: &str = "stat -c '%n %u:%g' /d/rootfile /d/userfile; touch /d/new 2>&1; true";

/// `idmap` without mappings of its own maps through the container's user namespace:
/// host files keep their owners as the container sees them (root's are root's, not
/// nobody's), and a file the container's root makes is root's on the host.
#[test]
fn idmapped_mount_shows_host_owners_inside_a_user_namespace() {
    let Some(fx) = Fixture::new("idmapns") else {
        return;
    };
    fs::set_permissions(fx.dir.path(), fs::Permissions::from_mode(0o755)).unwrap();
    let data = owned_files(&fx);
    let with = |opts: &[&str]| {
        let mut options = vec!["bind"];
        options.extend_from_slice(opts);
        let b = fx.own_bundle(&sh(SHOW_OWNERS), |c| {
            in_user_namespace(c);
            add_mount(
                c,
                json!({"destination": "/d", "type": "bind", "source": data, "options": options}),
            );
        });
        // The mapped root must be able to make /d in its own root.
        fs::create_dir(b.join("rootfs/d")).unwrap();
        b
    };
    let out = fx.run(&fx.id("plain"), &with(&[])).ok();
    assert!(
        out.stdout.contains("/d/rootfile 65534:65534"),
        "without idmap: {out:?}"
    );
    assert!(
        out.stdout.contains("Permission denied"),
        "without idmap: {out:?}"
    );
    let out = fx.run(&fx.id("idmap"), &with(&["idmap"])).ok();
    assert!(out.stdout.contains("/d/rootfile 0:0"), "{out:?}");
    assert!(out.stdout.contains("/d/userfile 1000:1000"), "{out:?}");
    let new = fs::metadata(data.join("new")).expect("the container's root wrote /d/new");
    assert_eq!((new.uid(), new.gid()), (0, 0));
}

/// A mount's own `uidMappings`/`gidMappings` idmap it without a user namespace in
/// the container: host id 0 is shown as 1000, unmapped ids as the overflow id.
#[test]
fn mount_mappings_idmap_a_bind_without_a_user_namespace() {
    let Some(fx) = Fixture::new("idmapown") else {
        return;
    };
    let data = owned_files(&fx);
    let b = fx.bundle(&sh(SHOW_OWNERS), |c| {
        let map = json!([{"containerID": 0, "hostID": 1000, "size": 1}]);
        add_mount(
            c,
            json!({"destination": "/d", "type": "bind", "source": data, "options": ["bind", "idmap"],
                   "uidMappings": map, "gidMappings": map}),
        );
    });
    let out = fx.run(&fx.id("c"), &b).ok();
    assert!(out.stdout.contains("/d/rootfile 1000:1000"), "{out:?}");
    assert!(out.stdout.contains("/d/userfile 65534:65534"), "{out:?}");
    // Findmnt on the host sees no trace of the detached mount once it is gone.
    let mounts = fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(!mounts.contains(path_str(&data)), "{mounts}");
}

#[test]
fn idmap_mistakes_are_named_and_leave_nothing() {
    let Some(fx) = Fixture::new("idmapbad") else {
        return;
    };
    let data = fx.host_dir("data");
    let map = json!([{"containerID": 0, "hostID": 1000, "size": 1}]);
    let cases = [
        (
            json!({"destination": "/d", "type": "bind", "source": data, "options": ["bind", "idmap"]}),
            "mounts[7].options",
        ),
        (
            json!({"destination": "/d", "type": "bind", "source": data, "options": ["bind"], "uidMappings": map}),
            "mounts[7].uidMappings",
        ),
        (
            json!({"destination": "/d", "type": "tmpfs", "source": "tmpfs", "options": ["idmap"]}),
            "mounts[7].options",
        ),
    ];
    for (i, (mount, field)) in cases.into_iter().enumerate() {
        let b = fx.bundle(&["true"], |c| add_mount(c, mount));
        let id = fx.id(&format!("c{i}"));
        fx.create(&id, &b).fails_with(&[field]);
        fx.assert_gone(&id);
    }
}

// ---------------------------------------------------------------------------------
// Mounts
// ---------------------------------------------------------------------------------

#[test]
fn tmpfs_mount_with_size_option() {
    let Some(fx) = Fixture::new("tmpfs") else {
        return;
    };
    let b = fx.bundle(&sh("grep ' /tmp2 ' /proc/mounts"), |c| {
        add_mount(
            c,
            json!({"destination": "/tmp2", "type": "tmpfs", "source": "tmpfs",
                   "options": ["nosuid", "size=1m"]}),
        )
    });
    let out = fx.run(&fx.id("c"), &b).ok();
    let fields: Vec<&str> = out.stdout.split_whitespace().collect();
    assert_eq!(fields[1..3], ["/tmp2", "tmpfs"], "{out:?}");
    assert!(fields[3].contains("size=1024k"), "{out:?}");
    assert!(fields[3].contains("nosuid"), "{out:?}");
}

#[test]
fn bind_mounts_read_write_and_read_only() {
    let Some(fx) = Fixture::new("bind") else {
        return;
    };
    let rw = fx.host_dir("rw");
    let ro = fx.host_dir("ro");
    fs::write(rw.join("in"), "from-host\n").unwrap();
    fs::write(ro.join("in"), "ro-content\n").unwrap();
    let b = fx.bundle(
        &sh("cat /mnt/rw/in /mnt/ro/in; echo out > /mnt/rw/out; \
             if echo x 2>/dev/null > /mnt/ro/out; then echo ro-writable; else echo ro-refused; fi"),
        |c| {
            add_mount(c, bind(&rw, "/mnt/rw", &["rw"]));
            add_mount(c, bind(&ro, "/mnt/ro", &["ro"]));
        },
    );
    let out = fx.run(&fx.id("c"), &b).ok();
    assert_eq!(out.lines(), ["from-host", "ro-content", "ro-refused"]);
    assert_eq!(fs::read_to_string(rw.join("out")).unwrap(), "out\n");
    assert!(!ro.join("out").exists());
}

#[test]
fn readonly_root_refuses_writes() {
    let Some(fx) = Fixture::new("roroot") else {
        return;
    };
    let script = "if touch /x 2>/dev/null; then echo wrote; else echo refused; fi";
    let ro = fx.bundle(&sh(script), |c| c["root"]["readonly"] = json!(true));
    assert_eq!(fx.run(&fx.id("ro"), &ro).ok().stdout, "refused\n");
    let rw = fx.bundle(&sh(script), |c| c["root"]["readonly"] = json!(false));
    assert_eq!(fx.run(&fx.id("rw"), &rw).ok().stdout, "wrote\n");
    assert!(rw.join("rootfs/x").exists());
}

#[test]
fn rootfs_propagation_is_accepted_and_applied() {
    let Some(fx) = Fixture::new("rprop") else {
        return;
    };
    // The optional fields (shared:N, master:N) of the root mount's mountinfo line.
    let script =
        "awk '$5 == \"/\" { for (i = 7; $i != \"-\"; i++) printf \"%s \", $i; print \"end\" }' \
                  /proc/self/mountinfo";
    for (i, prop) in [
        "private", "rprivate", "slave", "rslave", "shared", "rshared",
    ]
    .iter()
    .enumerate()
    {
        let b = fx.bundle(&sh(script), |c| {
            c["linux"]["rootfsPropagation"] = json!(prop)
        });
        let out = fx.run(&fx.id(&format!("p{i}")), &b).ok();
        let root_line = out.lines().last().copied().unwrap_or_default().to_string();
        match *prop {
            "private" | "rprivate" => {
                assert!(!root_line.contains("shared:"), "{prop}: {root_line}")
            }
            "shared" | "rshared" => assert!(root_line.contains("shared:"), "{prop}: {root_line}"),
            _ => {}
        }
    }
}

#[test]
fn mount_through_a_symlink_out_of_the_rootfs_fails_and_leaves_nothing() {
    let Some(fx) = Fixture::new("mntescape") else {
        return;
    };
    let b = fx.bundle(&["true"], |c| {
        add_mount(
            c,
            json!({"destination": "/evil/x", "type": "tmpfs", "source": "tmpfs"}),
        )
    });
    std::os::unix::fs::symlink("../../..", b.join("rootfs/evil")).unwrap();
    let id = fx.id("c");
    fx.create(&id, &b)
        .fails_with(&[&format!("mounts[{FIRST_EXTRA_MOUNT}]")]);
    fx.assert_gone(&id);
    assert!(!b.join("x").exists() && !fx.dir.path().join("x").exists());
}

// ---------------------------------------------------------------------------------
// /dev
// ---------------------------------------------------------------------------------

#[test]
fn dev_has_the_default_devices_links_and_shm() {
    let Some(fx) = Fixture::new("dev") else {
        return;
    };
    let b = fx.bundle(
        &sh("for d in null zero full random urandom tty fuse; do \
               stat -c '%n %F %t:%T' /dev/$d; done; \
             for l in ptmx fd stdin stdout stderr; do echo /dev/$l $(readlink /dev/$l); done; \
             grep ' /dev/shm ' /proc/mounts | cut -d' ' -f3; \
             echo x > /dev/null && echo null-writable"),
        |c| {
            c["linux"]["devices"] = json!([{"path": "/dev/fuse", "type": "c",
                "major": 10, "minor": 229, "fileMode": 438, "uid": 0, "gid": 0}]);
        },
    );
    let out = fx.run(&fx.id("c"), &b).ok();
    let chr = "character special file";
    let want = [
        format!("/dev/null {chr} 1:3"),
        format!("/dev/zero {chr} 1:5"),
        format!("/dev/full {chr} 1:7"),
        format!("/dev/random {chr} 1:8"),
        format!("/dev/urandom {chr} 1:9"),
        format!("/dev/tty {chr} 5:0"),
        format!("/dev/fuse {chr} a:e5"),
        "/dev/ptmx pts/ptmx".into(),
        "/dev/fd /proc/self/fd".into(),
        "/dev/stdin /proc/self/fd/0".into(),
        "/dev/stdout /proc/self/fd/1".into(),
        "/dev/stderr /proc/self/fd/2".into(),
        "tmpfs".into(),
        "null-writable".into(),
    ];
    assert_eq!(out.lines(), want, "{out:?}");
}

// ---------------------------------------------------------------------------------
// The process
// ---------------------------------------------------------------------------------

#[test]
fn process_env_cwd_and_user() {
    let Some(fx) = Fixture::new("procuser") else {
        return;
    };
    let b = fx.bundle(&sh("echo $FOO; pwd; id -u; id -g; id -G"), |c| {
        c["process"]["env"]
            .as_array_mut()
            .unwrap()
            .push(json!("FOO=bar"));
        c["process"]["cwd"] = json!("/tmp");
        c["process"]["user"] = json!({"uid": 1000, "gid": 1000, "additionalGids": [5, 65534]});
    });
    let out = fx.run(&fx.id("c"), &b).ok();
    let lines = out.lines();
    assert_eq!(lines[..4], ["bar", "/tmp", "1000", "1000"], "{out:?}");
    let mut groups: BTreeSet<&str> = lines[4].split_whitespace().collect();
    groups.remove("1000");
    assert_eq!(groups, BTreeSet::from(["5", "65534"]), "{out:?}");
}

/// The program does not inherit the runtime's ignored SIGPIPE (Rust ignores it at
/// start-up, and an ignored signal stays ignored across execve).
#[test]
fn the_program_gets_sigpipe_with_its_default_action() {
    let Some(fx) = Fixture::new("sigpipe") else {
        return;
    };
    let b = fx.bundle(&["sh", "-c", "grep SigIgn /proc/self/status"], |_| {});
    let out = fx.run(&fx.id("c"), &b).ok();
    let mask =
        u64::from_str_radix(out.stdout.trim().trim_start_matches("SigIgn:").trim(), 16).unwrap();
    assert_eq!(mask & (1 << (13 - 1)), 0, "SIGPIPE ignored: {}", out.stdout);
}

#[test]
fn process_umask_rlimits_and_oom_score_adj() {
    let Some(fx) = Fixture::new("proclimits") else {
        return;
    };
    let b = fx.bundle(
        &sh("umask; ulimit -n; ulimit -Hn; cat /proc/self/oom_score_adj"),
        |c| {
            c["process"]["user"]["umask"] = json!(23);
            c["process"]["rlimits"] = json!([{"type": "RLIMIT_NOFILE", "soft": 123, "hard": 456}]);
            c["process"]["oomScoreAdj"] = json!(321);
        },
    );
    let out = fx.run(&fx.id("c"), &b).ok();
    assert_eq!(out.lines(), ["0027", "123", "456", "321"]);
}

#[test]
fn sysctls_are_written_in_the_containers_namespaces() {
    let Some(fx) = Fixture::new("sysctl") else {
        return;
    };
    let b = fx.bundle(
        &sh("cat /proc/sys/net/ipv4/ip_forward /proc/sys/kernel/msgmax"),
        |c| {
            c["linux"]["sysctl"] = json!({"net.ipv4.ip_forward": "1", "kernel.msgmax": "4242"});
        },
    );
    let out = fx.run(&fx.id("c"), &b).ok();
    assert_eq!(out.lines(), ["1", "4242"]);
    assert_ne!(read(Path::new("/proc/sys/kernel/msgmax")).trim(), "4242");
}

// ---------------------------------------------------------------------------------
// run: exit codes and signals
// ---------------------------------------------------------------------------------

#[test]
fn run_returns_the_containers_exit_code() {
    let Some(fx) = Fixture::new("exitcode") else {
        return;
    };
    let b = fx.bundle(&sh("exit 42"), |_| {});
    let id = fx.id("c");
    assert_eq!(fx.run(&id, &b).code, 42);
    fx.assert_gone(&id);
}

#[test]
fn run_returns_128_plus_the_signal_that_killed_it() {
    let Some(fx) = Fixture::new("exitsig") else {
        return;
    };
    let b = fx.bundle(&["sleep", "30"], |_| {});
    let id = fx.id("c");
    let (run, pid) = fx.spawn_run(&id, &b);
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::SIGKILL).unwrap();
    let out = run.wait();
    assert_eq!(out.code, 128 + 9, "{out:?}");
    fx.assert_gone(&id);
}

#[test]
fn run_forwards_signals_to_the_container() {
    let Some(fx) = Fixture::new("forward") else {
        return;
    };
    let b = fx.bundle(&sh("trap 'exit 5' TERM; sleep 30 & wait"), |_| {});
    let id = fx.id("c");
    let (run, pid) = fx.spawn_run(&id, &b);
    wait_for_term_trap(pid);
    let runtime = nix::unistd::Pid::from_raw(run.pid());
    nix::sys::signal::kill(runtime, nix::sys::signal::SIGTERM).unwrap();
    assert_eq!(run.wait().code, 5);
    fx.assert_gone(&id);
}

#[test]
fn state_and_kill_work_while_run_is_in_the_foreground() {
    let Some(fx) = Fixture::new("runlock") else {
        return;
    };
    let b = fx.bundle(&["sleep", "30"], |_| {});
    let id = fx.id("c");
    let (run, pid) = fx.spawn_run(&id, &b);
    let state = fx
        .spawn(&["state", &id])
        .wait_at_most(Duration::from_secs(2));
    let st: Value = serde_json::from_str(&state.ok().stdout).unwrap();
    assert_eq!(
        (st["status"].as_str(), st["pid"].as_i64()),
        (Some("running"), Some(pid as i64))
    );
    fx.spawn(&["kill", &id, "KILL"])
        .wait_at_most(Duration::from_secs(2))
        .ok();
    assert_eq!(run.wait().code, 128 + 9);
    fx.assert_gone(&id);
}

// ---------------------------------------------------------------------------------
// Hooks
// ---------------------------------------------------------------------------------

/// A hook that appends "NAME STATE-JSON" to `log` after running `before`, in one
/// write (hooks may run at the same time). It runs the host's sh, except
/// startContainer, which runs after pivot_root: the container's busybox sh, with
/// `log`'s directory bind-mounted at its host path.
fn logging_hook(name: &str, log: &Path, before: &str) -> Value {
    let script = format!(
        "{before} state=$(cat); printf '%s %s\\n' {name} \"$state\" >> {}",
        log.display()
    );
    json!({
        "path": "/bin/sh",
        "args": ["sh", "-c", script],
        "env": ["PATH=/usr/sbin:/usr/bin:/sbin:/bin"],
    })
}

/// What the logging hooks of one container wrote: (hook name, state JSON) in the
/// order they ran, as it stood after each lifecycle step.
struct HookLog {
    id: String,
    /// The init's host PID.
    pid: i32,
    after_create: Vec<(String, Value)>,
    after_stop: Vec<(String, Value)>,
    after_delete: Vec<(String, Value)>,
}

/// Create, start (wait for the exit) and delete a container of `true` with one
/// logging hook of each kind, startContainer's delayed by `start_delay`.
fn run_all_hooks(fx: &Fixture, start_delay: &str) -> HookLog {
    let logs = fx.host_dir("hooklog");
    let log = logs.join("log");
    let b = fx.bundle(&["true"], |c| {
        c["hooks"] = json!({
            "prestart": [logging_hook("prestart", &log, "")],
            "createRuntime": [logging_hook("createRuntime", &log, "")],
            "createContainer": [logging_hook("createContainer", &log, "")],
            "startContainer": [logging_hook("startContainer", &log, start_delay)],
            "poststart": [logging_hook("poststart", &log, "")],
            "poststop": [logging_hook("poststop", &log, "")],
        });
        add_mount(c, bind(&logs, path_str(&logs), &[]));
    });
    let entries = || -> Vec<(String, Value)> {
        read(&log)
            .lines()
            .map(|l| {
                let (name, st) = l.split_once(' ').unwrap();
                let st = serde_json::from_str(st).unwrap_or_else(|e| panic!("{name}: {e}: {st}"));
                (name.to_string(), st)
            })
            .collect()
    };
    let id = fx.id("c");
    fx.create(&id, &b).ok();
    let pid = fx.pid(&id);
    let after_create = entries();
    fx.rt(&["start", &id]).ok();
    fx.wait_status(&id, "stopped");
    let after_stop = entries();
    fx.rt(&["delete", &id]).ok();
    HookLog {
        id,
        pid,
        after_create,
        after_stop,
        after_delete: entries(),
    }
}

fn names(entries: &[(String, Value)]) -> Vec<&str> {
    entries.iter().map(|(n, _)| n.as_str()).collect()
}

#[test]
fn hooks_run_at_their_lifecycle_step_with_the_init_pid() {
    let Some(fx) = Fixture::new("hooksteps") else {
        return;
    };
    let log = run_all_hooks(&fx, "");
    assert_eq!(
        names(&log.after_create),
        ["prestart", "createRuntime", "createContainer"]
    );
    let mut started = names(&log.after_stop)[3..].to_vec();
    started.sort();
    assert_eq!(started, ["poststart", "startContainer"]);
    assert_eq!(names(&log.after_delete)[5..], ["poststop"]);
    for (name, st) in &log.after_delete {
        assert_eq!(st["id"], log.id.as_str(), "{name}: {st}");
        let pid = st["pid"].as_i64().unwrap_or(0) as i32;
        // poststop: the init is gone; runc reports no pid then.
        if name != "poststop" || pid != 0 {
            assert_eq!(pid, log.pid, "{name} got the wrong pid: {st}");
        }
    }
}

#[test]
fn hooks_run_in_the_specs_order() {
    let Some(fx) = Fixture::new("hookorder") else {
        return;
    };
    // A slow startContainer hook must still come before poststart.
    let log = run_all_hooks(&fx, "sleep 0.2;");
    assert_eq!(
        names(&log.after_delete),
        [
            "prestart",
            "createRuntime",
            "createContainer",
            "startContainer",
            "poststart",
            "poststop"
        ]
    );
}

#[test]
fn hooks_receive_the_status_of_their_step() {
    let Some(fx) = Fixture::new("hookstate") else {
        return;
    };
    let log = run_all_hooks(&fx, "");
    assert_eq!(log.after_delete.len(), 6, "{:?}", log.after_delete);
    for (name, st) in &log.after_delete {
        let want = match name.as_str() {
            "prestart" | "createRuntime" | "createContainer" => "creating",
            "startContainer" => "created",
            "poststart" => "running",
            _ => "stopped",
        };
        assert_eq!(st["status"], want, "{name}: {st}");
    }
}

#[test]
fn a_failing_create_runtime_hook_fails_create_and_leaves_nothing() {
    let Some(fx) = Fixture::new("hookfail") else {
        return;
    };
    let b = fx.bundle(&["true"], |c| {
        c["hooks"] =
            json!({"createRuntime": [{"path": "/bin/sh", "args": ["sh", "-c", "exit 1"]}]});
    });
    let id = fx.id("c");
    fx.create(&id, &b).fails_with(&["createRuntime"]);
    fx.assert_gone(&id);
}

#[test]
fn a_hook_past_its_timeout_fails_create_quickly() {
    let Some(fx) = Fixture::new("hooktimeout") else {
        return;
    };
    let b = fx.bundle(&["true"], |c| {
        c["hooks"] = json!({"createRuntime": [
            {"path": "/bin/sh", "args": ["sh", "-c", "exec sleep 5"], "timeout": 1}]});
    });
    let id = fx.id("c");
    let t0 = Instant::now();
    fx.create(&id, &b)
        .fails_with(&["createRuntime", "timed out"]);
    assert!(
        t0.elapsed() < Duration::from_millis(2500),
        "took {:?}",
        t0.elapsed()
    );
    fx.assert_gone(&id);
}

// ---------------------------------------------------------------------------------
// Console socket
// ---------------------------------------------------------------------------------

/// Accept one connection on `listener` and receive the descriptor sent with it.
fn receive_fd(listener: &UnixListener) -> OwnedFd {
    listener.set_nonblocking(true).unwrap();
    let deadline = Instant::now() + TIMEOUT;
    let stream = loop {
        match listener.accept() {
            Ok((s, _)) => break s,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                assert!(
                    Instant::now() < deadline,
                    "nobody connected to the console socket"
                );
                std::thread::sleep(Duration::from_millis(2));
            }
            Err(e) => panic!("accept: {e}"),
        }
    };
    stream.set_nonblocking(false).unwrap();
    stream.set_read_timeout(Some(TIMEOUT)).unwrap();
    // The one fd-taking call there is, in onggi-sys: no unsafe outside it.
    onggi_sys::recv_fd(&stream)
        .expect("recvmsg on the console socket")
        .expect("no descriptor came over the console socket")
}

/// Everything the pty master yields until the slave side is closed (EIO).
fn read_all_from_master(master: OwnedFd) -> String {
    use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
    let mut f = File::from(master);
    let mut out = Vec::new();
    let deadline = Instant::now() + TIMEOUT;
    loop {
        let mut fds = [PollFd::new(f.as_fd(), PollFlags::POLLIN)];
        if poll(&mut fds, PollTimeout::from(100u16)).unwrap() == 0 {
            assert!(Instant::now() < deadline, "pty stayed silent: {out:?}");
            continue;
        }
        let mut buf = [0u8; 1024];
        match f.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => out.extend_from_slice(&buf[..n]),
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[test]
fn terminal_goes_to_the_console_socket() {
    let Some(fx) = Fixture::new("console") else {
        return;
    };
    let sock = fx.path("console.sock");
    let listener = UnixListener::bind(&sock).unwrap();
    let b = fx.bundle(&sh("test -t 0 && test -t 1 && echo tty-ok"), |c| {
        c["process"]["terminal"] = json!(true)
    });
    let id = fx.id("c");
    let run = fx.spawn(&[
        "run",
        "--console-socket",
        path_str(&sock),
        "--bundle",
        fx.bundle_for(&id, &b),
        &id,
    ]);
    let master = receive_fd(&listener);
    let text = read_all_from_master(master);
    let out = run.wait().ok();
    assert!(text.contains("tty-ok"), "pty said {text:?}; {out:?}");
    fx.assert_gone(&id);
}

#[test]
fn terminal_without_console_socket_is_refused() {
    let Some(fx) = Fixture::new("noconsole") else {
        return;
    };
    let b = fx.bundle(&["true"], |c| c["process"]["terminal"] = json!(true));
    let id = fx.id("c");
    fx.create(&id, &b)
        .fails_with(&["process.terminal", "console-socket"]);
    fx.assert_gone(&id);
}

// ---------------------------------------------------------------------------------
// Lifecycle
// ---------------------------------------------------------------------------------

#[test]
fn create_waits_for_start_and_state_reports_it() {
    let Some(fx) = Fixture::new("lifecycle") else {
        return;
    };
    let shared = fx.host_dir("shared");
    let b = fx.bundle(&sh("touch /shared/started"), |c| {
        add_mount(c, bind(&shared, "/shared", &[]))
    });
    let id = fx.id("c");
    fx.create(&id, &b).ok();

    let st = fx.state(&id);
    assert!(
        st["ociVersion"].as_str().is_some_and(|v| !v.is_empty()),
        "{st}"
    );
    assert_eq!(st["id"], id.as_str());
    assert_eq!(st["status"], "created");
    assert_eq!(st["bundle"], path_str(&b));
    let pid = st["pid"].as_i64().unwrap() as i32;
    assert!(pid > 0 && alive(pid), "{st}");
    assert!(!fx.cgroup_dirs(&id).is_empty(), "create made no cgroup");
    // The program must not run before start.
    std::thread::sleep(Duration::from_millis(50));
    assert!(
        !shared.join("started").exists(),
        "the program ran before start"
    );

    fx.rt(&["start", &id]).ok();
    wait_until("the program to run", || shared.join("started").exists());
    fx.wait_status(&id, "stopped");
    fx.rt(&["start", &id]).fails_with(&[&id, "stopped"]);

    fx.rt(&["delete", &id]).ok();
    fx.assert_gone(&id);
    fx.rt(&["state", &id]).fails_with(&["does not exist"]);
}

#[test]
fn start_twice_is_refused() {
    let Some(fx) = Fixture::new("start2") else {
        return;
    };
    let b = fx.bundle(&["sleep", "30"], |_| {});
    let id = fx.id("c");
    fx.create(&id, &b).ok();
    fx.rt(&["start", &id]).ok();
    assert_eq!(fx.status(&id), "running");
    fx.rt(&["start", &id]).fails_with(&["running"]);
}

#[test]
fn kill_by_name_or_number_stops_the_container() {
    let Some(fx) = Fixture::new("kill") else {
        return;
    };
    // sh as PID 1 ignores TERM unless it traps it.
    let b = fx.bundle(&sh("trap 'exit 3' TERM; sleep 30 & wait"), |_| {});
    for (i, sig) in ["TERM", "SIGKILL", "9", "kill"].iter().enumerate() {
        let id = fx.id(&format!("k{i}"));
        let pid = fx.run_detached(&id, &b);
        wait_for_term_trap(pid);
        fx.rt(&["kill", &id, sig]).ok();
        fx.wait_status(&id, "stopped");
        fx.rt(&["delete", &id]).ok();
        fx.assert_gone(&id);
    }
    let id = fx.id("bad");
    fx.run_detached(&id, &b);
    fx.rt(&["kill", &id, "NOSUCHSIG"])
        .fails_with(&["NOSUCHSIG"]);
    assert_eq!(fx.status(&id), "running");
}

#[test]
fn delete_needs_force_for_a_running_container() {
    let Some(fx) = Fixture::new("delete") else {
        return;
    };
    let b = fx.bundle(&["sleep", "30"], |_| {});
    let id = fx.id("c");
    let pid = fx.run_detached(&id, &b);
    fx.rt(&["delete", &id]).fails_with(&["running"]);
    assert_eq!(fx.status(&id), "running");
    fx.rt(&["delete", "--force", &id]).ok();
    fx.assert_gone(&id);
    assert!(!alive(pid), "init {pid} survived delete --force");
}

#[test]
fn delete_of_a_created_container_kills_its_init() {
    let Some(fx) = Fixture::new("delcreated") else {
        return;
    };
    let b = fx.bundle(&["true"], |_| {});
    let id = fx.id("c");
    fx.create(&id, &b).ok();
    let pid = fx.pid(&id);
    fx.rt(&["delete", &id]).ok();
    fx.assert_gone(&id);
    assert!(!alive(pid), "init {pid} survived delete");
}

#[test]
fn default_cgroup_is_onggi_slash_id_and_goes_with_delete() {
    let Some(fx) = Fixture::new("cgdefault") else {
        return;
    };
    let b = fx.bundle(&["true"], |_| {});
    let id = fx.id("c");
    // No bundle_for: the config has no cgroupsPath.
    fx.rt(&["create", "--bundle", path_str(&b), &id]).ok();
    let dirs = cgroup_dirs_of(&format!("onggi/{id}"));
    assert!(!dirs.is_empty(), "no /onggi/{id} cgroup");
    let pid = fx.pid(&id).to_string();
    for d in &dirs {
        let procs = read(&d.join("cgroup.procs"));
        assert!(
            procs.lines().any(|l| l == pid),
            "init not in {}",
            d.display()
        );
    }
    fx.rt(&["delete", &id]).ok();
    assert_eq!(
        cgroup_dirs_of(&format!("onggi/{id}")),
        Vec::<PathBuf>::new()
    );
}

/// An explicit cgroupsPath's parent belongs to the client (runc never removes one):
/// onggi removes it only with the container that made it, once it is empty.
#[test]
fn explicit_cgroup_parent_goes_with_the_container_that_made_it() {
    let Some(fx) = Fixture::new("cgparent") else {
        return;
    };
    let b = fx.bundle(&["sleep", "30"], |_| {});
    let (first, second) = (fx.id("first"), fx.id("second"));
    fx.create(&first, &b).ok();
    fx.create(&second, &b).ok();
    fx.rt(&["delete", &second]).ok();
    assert!(
        !cgroup_dirs_of(&fx.cgroup_parent).is_empty(),
        "the parent is still in use by {first}"
    );
    fx.rt(&["delete", &first]).ok();
    assert_eq!(
        cgroup_dirs_of(&fx.cgroup_parent),
        Vec::<PathBuf>::new(),
        "the parent /{} was made by {first}'s create and is empty now",
        fx.cgroup_parent
    );
}

/// The default parent, /onggi, is shared by all of onggi's containers: every one of
/// them records it as its own to remove, so it goes with the last one in any order.
#[test]
fn default_cgroup_parent_is_claimed_by_every_container() {
    let Some(fx) = Fixture::new("cgclaim") else {
        return;
    };
    let b = fx.bundle(&["sleep", "30"], |_| {});
    let (first, second) = (fx.id("first"), fx.id("second"));
    // No bundle_for: the config has no cgroupsPath.
    fx.rt(&["create", "--bundle", path_str(&b), &first]).ok();
    fx.rt(&["create", "--bundle", path_str(&b), &second]).ok();
    for id in [&first, &second] {
        let state: Value = serde_json::from_str(
            &std::fs::read_to_string(fx.root.join(id).join("state.json")).unwrap(),
        )
        .unwrap();
        assert_eq!(state["cgroupsPath"], format!("/onggi/{id}"));
        assert_eq!(state["cgroupOwnedParents"], 1, "{id} must claim /onggi");
    }
    fx.rt(&["delete", &first]).ok();
    fx.rt(&["delete", &second]).ok();
    assert!(!Path::new("/sys/fs/cgroup/pids/onggi")
        .join(&second)
        .exists());
}

#[test]
fn list_shows_containers_as_table_and_json() {
    let Some(fx) = Fixture::new("list") else {
        return;
    };
    let b = fx.bundle(&["true"], |_| {});
    let id = fx.id("c");
    fx.create(&id, &b).ok();
    let table = fx.rt(&["list"]).ok();
    let row = table
        .lines()
        .into_iter()
        .find(|l| l.starts_with(&id))
        .unwrap_or_else(|| panic!("{id} not in the table: {table:?}"));
    assert!(row.contains("created"), "{row}");
    let json = fx.rt(&["list", "--format", "json"]).ok();
    let list: Vec<Value> = serde_json::from_str(&json.stdout).unwrap();
    assert_eq!(list.len(), 1, "{json:?}");
    assert_eq!(list[0]["id"], id.as_str());
    assert_eq!(list[0]["status"], "created");
    assert_eq!(fx.rt(&["list", "--quiet"]).ok().stdout, format!("{id}\n"));
}

#[test]
fn ids_must_be_unique_and_plain() {
    let Some(fx) = Fixture::new("ids") else {
        return;
    };
    let b = fx.bundle(&["true"], |_| {});
    let id = fx.id("c");
    fx.create(&id, &b).ok();
    fx.create(&id, &b).fails_with(&["already exists"]);
    assert_eq!(
        fx.status(&id),
        "created",
        "the failed create disturbed the first"
    );
    for bad in ["a/b", "..", ""] {
        fx.rt(&["create", "--bundle", path_str(&b), bad])
            .fails_with(&["invalid container id"]);
    }
    // Dot files are the runtime's caches (cgroup mounts, seccomp filters).
    let entries: Vec<_> = fs::read_dir(&fx.root)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .filter(|n| !n.to_string_lossy().starts_with('.'))
        .collect();
    assert_eq!(
        entries,
        [std::ffi::OsString::from(&id)],
        "only the first container has a state directory"
    );
}

// ---------------------------------------------------------------------------------
// exec
// ---------------------------------------------------------------------------------

#[test]
fn exec_joins_the_containers_namespaces() {
    let Some(fx) = Fixture::new("exec") else {
        return;
    };
    let b = fx.bundle(&["sleep", "30"], |_| {});
    let id = fx.id("c");
    let init = fx.run_detached(&id, &b).to_string();
    let script = "for n in pid mnt net uts ipc; do readlink /proc/self/ns/$n; done";
    let out = fx.rt(&["exec", &id, "sh", "-c", script]).ok();
    let want: Vec<String> = ["pid", "mnt", "net", "uts", "ipc"]
        .iter()
        .map(|n| ns_of(&init, n))
        .collect();
    assert_eq!(out.lines(), want);
    assert_eq!(fx.rt(&["exec", &id, "sh", "-c", "exit 7"]).code, 7);
}

#[test]
fn exec_env_cwd_and_user_flags() {
    let Some(fx) = Fixture::new("execflags") else {
        return;
    };
    let b = fx.bundle(&["sleep", "30"], |_| {});
    let id = fx.id("c");
    fx.run_detached(&id, &b);
    let out = fx
        .rt(&[
            "exec",
            "--env",
            "FOO=bar",
            "--cwd",
            "/tmp",
            "--user",
            "1000:1000",
            &id,
            "sh",
            "-c",
            "echo $FOO; pwd; id -u; id -g",
        ])
        .ok();
    assert_eq!(out.lines(), ["bar", "/tmp", "1000", "1000"]);
}

#[test]
fn exec_detach_writes_the_pid_file() {
    let Some(fx) = Fixture::new("execdetach") else {
        return;
    };
    let b = fx.bundle(&["sleep", "30"], |_| {});
    let id = fx.id("c");
    let init = fx.run_detached(&id, &b).to_string();
    let pid_file = fx.path("exec.pid");
    fx.rt(&[
        "exec",
        "--detach",
        "--pid-file",
        path_str(&pid_file),
        &id,
        "sleep",
        "30",
    ])
    .ok();
    let pid = read(&pid_file).trim().to_string();
    assert!(pid.parse::<i32>().is_ok(), "pid file holds {pid:?}");
    assert_eq!(ns_of(&pid, "pid"), ns_of(&init, "pid"));
    assert_eq!(ns_of(&pid, "mnt"), ns_of(&init, "mnt"));
}

#[test]
fn exec_process_json() {
    let Some(fx) = Fixture::new("execprocess") else {
        return;
    };
    let b = fx.bundle(&["sleep", "30"], |_| {});
    let id = fx.id("c");
    fx.run_detached(&id, &b);
    let process = fx.path("process.json");
    let json = json!({
        "args": ["sh", "-c", "echo from-json $X $(pwd) $(id -u)"],
        "env": ["PATH=/bin", "X=42"],
        "cwd": "/tmp",
        "user": {"uid": 65534, "gid": 65534},
    });
    fs::write(&process, json.to_string()).unwrap();
    let out = fx.rt(&["exec", "--process", path_str(&process), &id]).ok();
    assert_eq!(out.stdout, "from-json 42 /tmp 65534\n");
}

#[test]
fn exec_into_a_stopped_container_fails() {
    let Some(fx) = Fixture::new("execstopped") else {
        return;
    };
    let b = fx.bundle(&["true"], |_| {});
    let id = fx.id("c");
    fx.run_detached(&id, &b);
    fx.wait_status(&id, "stopped");
    fx.rt(&["exec", &id, "true"]).fails_with(&[&id, "stopped"]);
}

// ---------------------------------------------------------------------------------
// Bad input
// ---------------------------------------------------------------------------------

/// `create` must fail naming `words`, and leave nothing behind.
#[track_caller]
fn create_fails(fx: &Fixture, name: &str, bundle: &Path, words: &[&str]) {
    let id = fx.id(name);
    fx.create(&id, bundle).fails_with(words);
    fx.assert_gone(&id);
}

#[test]
fn bad_bundles_fail_with_the_file_or_field_named() {
    let Some(fx) = Fixture::new("badinput") else {
        return;
    };

    let missing = fx.bundle(&["true"], |_| {});
    fs::remove_file(missing.join("config.json")).unwrap();
    create_fails(&fx, "noconfig", &missing, &["config.json"]);

    let garbage = fx.bundle(&["true"], |_| {});
    fs::write(garbage.join("config.json"), "{ not json").unwrap();
    create_fails(&fx, "notjson", &garbage, &["config.json"]);

    let bad_ns = fx.bundle(&["true"], |c| {
        c["linux"]["namespaces"]
            .as_array_mut()
            .unwrap()
            .push(json!({"type": "bogus"}))
    });
    create_fails(&fx, "badns", &bad_ns, &["config.json", "bogus"]);

    let relative = fx.bundle(&["true"], |c| {
        add_mount(
            c,
            json!({"destination": "relative/dir", "type": "tmpfs", "source": "tmpfs"}),
        )
    });
    let field = format!("mounts[{FIRST_EXTRA_MOUNT}].destination");
    create_fails(&fx, "reldest", &relative, &[&field]);

    let no_rootfs = fx.bundle(&["true"], |c| c["root"]["path"] = json!("nonexistent"));
    create_fails(&fx, "norootfs", &no_rootfs, &["root.path", "nonexistent"]);

    let no_program = fx.bundle(&["no-such-program"], |_| {});
    create_fails(&fx, "noprogram", &no_program, &["no-such-program"]);
}

#[test]
fn errors_name_their_cause_once() {
    let Some(fx) = Fixture::new("errdup") else {
        return;
    };
    let b = fx.bundle(&["true"], |_| {});
    fs::remove_file(b.join("config.json")).unwrap();
    let out = fx.create(&fx.id("c"), &b).fails_with(&["config.json"]);
    let cause = "No such file or directory";
    assert_eq!(out.stderr.matches(cause).count(), 1, "{}", out.stderr);
}

// ---------------------------------------------------------------------------------
// The command line
// ---------------------------------------------------------------------------------

#[test]
fn options_after_the_id_work() {
    let Some(fx) = Fixture::new("optorder") else {
        return;
    };
    let b = fx.bundle(&["true"], |_| {});
    let id = fx.id("c");
    fx.rt(&["create", &id, "--bundle", fx.bundle_for(&id, &b)])
        .ok();
    assert_eq!(fx.status(&id), "created");
}

#[test]
fn version_names_the_program_and_version() {
    let Some(fx) = Fixture::new("version") else {
        return;
    };
    let out = fx.rt(&["--version"]).ok();
    assert!(out.stdout.starts_with("onggi-runtime "), "{out:?}");
    assert!(out.stdout.contains(env!("CARGO_PKG_VERSION")), "{out:?}");
}

#[test]
fn spec_writes_a_config_that_create_accepts() {
    let Some(fx) = Fixture::new("spec") else {
        return;
    };
    let rootfs_bundle = fx.bundle(&["true"], |_| {});
    let dir = fx.host_dir("specbundle");
    fx.rt(&["spec", "--bundle", path_str(&dir)]).ok();
    let mut c = config_of(&dir);
    assert_eq!(c["process"]["args"], json!(["sh"]));
    c["root"]["path"] = json!(rootfs_bundle.join("rootfs"));
    c["process"]["terminal"] = json!(false);
    c["process"]["args"] = json!(["true"]);
    write_config(&dir, &c);
    let id = fx.id("c");
    fx.create(&id, &dir).ok();
    assert_eq!(fx.status(&id), "created");
    fx.rt(&["spec", "--bundle", path_str(&dir)])
        .fails_with(&["already exists"]);
}

#[test]
fn features_prints_json() {
    let Some(fx) = Fixture::new("features") else {
        return;
    };
    let out = fx.rt(&["features"]).ok();
    let f: Value = serde_json::from_str(&out.stdout).unwrap();
    assert!(
        f["ociVersionMax"]
            .as_str()
            .is_some_and(|v| v.starts_with("1.")),
        "{f}"
    );
    assert!(f["ociVersionMin"].is_string(), "{f}");
    assert!(f["hooks"].as_array().is_some_and(|h| h.len() == 6), "{f}");
}

#[test]
fn preserve_fds_passes_exactly_that_many_descriptors() {
    let Some(fx) = Fixture::new("preserve") else {
        return;
    };
    let b = fx.bundle(
        &sh("cat /proc/self/fd/3; test -e /proc/self/fd/4 && echo fd4-leaked || echo no-fd4"),
        |_| {},
    );
    let id = fx.id("c");
    let secret = fx.path("secret");
    fs::write(&secret, "passed-through\n").unwrap();
    // A host shell opens fds 3 and 4 and execs the runtime: only 3 may reach the container.
    let script = format!(
        "exec 3<{s} 4<{s}; exec {bin} --root {root} run --preserve-fds 1 --bundle {b} {id}",
        s = path_str(&secret),
        bin = BIN,
        root = path_str(&fx.root),
        b = fx.bundle_for(&id, &b),
    );
    let out = Command::new("/bin/sh")
        .args(["-c", &script])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(stdout, "passed-through\nno-fd4\n", "{out:?}");
    fx.assert_gone(&id);
}

#[test]
fn no_pivot_moves_the_root_and_chroots() {
    let Some(fx) = Fixture::new("nopivot") else {
        return;
    };
    // With MS_MOVE + chroot the container's root is a mount point at "/" whose
    // mountinfo root is the rootfs directory itself.
    let b = fx.bundle(
        &sh("echo pid=$$; grep -c ' / / ' /proc/self/mountinfo; ls /bin/busybox"),
        |_| {},
    );
    let id = fx.id("c");
    let out = fx
        .rt(&["run", "--no-pivot", "--bundle", fx.bundle_for(&id, &b), &id])
        .ok();
    assert_eq!(out.lines(), vec!["pid=1", "0", "/bin/busybox"], "{out:?}");
}

#[test]
fn session_keyring_is_new_unless_no_new_keyring() {
    let Some(fx) = Fixture::new("keyring") else {
        return;
    };
    let unmask_keys = |c: &mut Value| {
        c["linux"]["maskedPaths"] = json!([]);
    };
    // Distinct ids: a finished container's keyring stays listed until the kernel's
    // key garbage collector runs.
    for (name, flag, want) in [("new", None, "1"), ("kept", Some("--no-new-keyring"), "0")] {
        let id = fx.id(name);
        let b = fx.bundle(&sh(&format!("grep -c ' {id}: ' /proc/keys")), unmask_keys);
        let mut args = vec!["run"];
        args.extend(flag);
        args.extend(["--bundle", fx.bundle_for(&id, &b), &id]);
        let out = fx.rt(&args);
        assert_eq!(out.stdout.trim(), want, "{flag:?}: {out:?}");
    }
}

#[test]
fn systemd_cgroup_is_a_clear_error_that_leaves_nothing() {
    let Some(fx) = Fixture::new("systemd") else {
        return;
    };
    let b = fx.bundle(&["true"], |_| {});
    let id = fx.id("c");
    fx.rt(&[
        "--systemd-cgroup",
        "create",
        "--bundle",
        fx.bundle_for(&id, &b),
        &id,
    ])
    .fails_with(&["--systemd-cgroup", "not supported"]);
    fx.assert_gone(&id);
}

#[test]
fn log_format_json_writes_errors_as_json_lines() {
    let Some(fx) = Fixture::new("logjson") else {
        return;
    };
    let log = fx.path("log.json");
    let missing = fx.path("no-such-bundle");
    fx.rt(&[
        "--log",
        path_str(&log),
        "--log-format",
        "json",
        "create",
        "--bundle",
        path_str(&missing),
        "x",
    ])
    .fails_with(&["config.json"]);
    let text = read(&log);
    let line: Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
    assert_eq!(line["level"], "error", "{text}");
    assert!(
        line["msg"]
            .as_str()
            .unwrap()
            .contains("no-such-bundle/config.json"),
        "{text}"
    );
    assert!(line["time"].as_str().unwrap().ends_with('Z'), "{text}");
    // --debug adds debug lines to the same log.
    fx.rt(&[
        "--log",
        path_str(&log),
        "--log-format",
        "json",
        "--debug",
        "list",
    ])
    .ok();
    assert!(
        read(&log)
            .lines()
            .any(|l| l.contains("\"level\":\"debug\"")),
        "{}",
        read(&log)
    );
}

fn deny_mkdir() -> Value {
    json!({"defaultAction": "SCMP_ACT_ALLOW", "architectures": ["SCMP_ARCH_X86_64"],
           "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1}]})
}

/// linux.seccomp is loaded with and without noNewPrivileges (before the capabilities
/// are dropped, or just before exec), and `exec` gets the same profile.
#[test]
fn seccomp_profile_denies_its_syscalls_in_the_container_and_in_exec() {
    let Some(fx) = Fixture::new("seccomp") else {
        return;
    };
    for nnp in [false, true] {
        let b = fx.bundle(
            &sh("mkdir /tmp/x 2>&1; grep ^Seccomp: /proc/self/status"),
            |c| {
                c["linux"]["seccomp"] = deny_mkdir();
                c["process"]["noNewPrivileges"] = json!(nnp);
            },
        );
        let id = fx.id(if nnp { "nnp" } else { "caps" });
        let out = fx.run(&id, &b).ok();
        assert!(
            out.stdout.contains("Operation not permitted"),
            "nnp={nnp}: {out:?}"
        );
        assert!(out.stdout.contains("Seccomp:\t2"), "nnp={nnp}: {out:?}");
    }
    let b = fx.bundle(&["sleep", "30"], |c| c["linux"]["seccomp"] = deny_mkdir());
    let id = fx.id("exec");
    fx.run_detached(&id, &b);
    let out = fx
        .rt(&["exec", &id, "sh", "-c", "mkdir /tmp/y 2>&1; true"])
        .ok();
    assert!(out.stdout.contains("Operation not permitted"), "{out:?}");
}

fn notify_mkdir(listener: &Path) -> Value {
    json!({"defaultAction": "SCMP_ACT_ALLOW", "architectures": ["SCMP_ARCH_X86_64"],
           "listenerPath": listener, "listenerMetadata": "agent-test",
           "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_NOTIFY"}]})
}

/// A seccomp agent: for each connection (served on a thread of its own, as each
/// listener blocks until its processes are gone), the ContainerProcessState it was
/// sent and the system calls it was notified of, each answered with EXDEV.
fn seccomp_agent(
    listener: UnixListener,
    connections: usize,
) -> std::thread::JoinHandle<Vec<(Value, Vec<i32>)>> {
    std::thread::spawn(move || {
        let mut served = Vec::new();
        for _ in 0..connections {
            let (sock, _) = listener.accept().expect("accept");
            served.push(std::thread::spawn(move || {
                let mut buf = vec![0u8; 65536];
                let (n, fd) = onggi_sys::recv_with_fd(&sock, &mut buf).expect("recvmsg");
                let state: Value = serde_json::from_slice(&buf[..n]).expect("state JSON");
                let fd = fd.expect("the seccomp listener comes with the state");
                let mut calls = Vec::new();
                // ENOENT once every process under the filter is gone.
                while let Ok(n) = onggi_sys::seccomp::notif_recv(&fd) {
                    calls.push(n.nr);
                    let _ = onggi_sys::seccomp::notif_respond(&fd, n.id, 0, nix::libc::EXDEV);
                }
                (state, calls)
            }));
        }
        served
            .into_iter()
            .map(|t| t.join().expect("agent connection"))
            .collect()
    })
}

/// `listenerPath`: the listener goes to the agent with the container's state (for
/// the init at create, for an exec'd process at exec); the agent's answer is what
/// the container's system call returns.
#[test]
fn seccomp_notify_hands_the_listener_to_the_agent() {
    let Some(fx) = Fixture::new("seccompagent") else {
        return;
    };
    let path = fx.path("agent.sock");
    let agent = seccomp_agent(UnixListener::bind(&path).expect("bind"), 2);
    let b = fx.bundle(&["sleep", "30"], |c| {
        c["linux"]["seccomp"] = notify_mkdir(&path)
    });
    let id = fx.id("c");
    let pid = fx.run_detached(&id, &b);
    let out = fx
        .rt(&["exec", &id, "sh", "-c", "mkdir /tmp/y 2>&1; echo done"])
        .ok();
    assert!(
        out.stdout.contains("cross-device link") && out.stdout.contains("done"),
        "{out:?}"
    );
    fx.rt(&["kill", &id, "KILL"]).ok();
    fx.wait_status(&id, "stopped");
    let seen = agent.join().expect("agent");
    let (init_state, init_calls) = &seen[0];
    assert_eq!(init_state["fds"], json!(["seccompFd"]), "{init_state}");
    assert_eq!(init_state["pid"], json!(pid), "{init_state}");
    assert_eq!(init_state["metadata"], "agent-test");
    assert_eq!(init_state["state"]["id"], json!(id));
    assert_eq!(init_state["state"]["status"], "creating");
    assert!(init_calls.is_empty(), "sleep made no mkdir: {init_calls:?}");
    let (exec_state, exec_calls) = &seen[1];
    assert_eq!(exec_state["state"]["status"], "running", "{exec_state}");
    assert_ne!(
        exec_state["pid"],
        json!(pid),
        "the exec'd process's own pid"
    );
    assert_eq!(
        exec_calls,
        &vec![nix::libc::SYS_mkdir as i32],
        "busybox mkdir is mkdir(2)"
    );
}

#[test]
fn seccomp_notify_without_an_agent_is_a_clear_error() {
    let Some(fx) = Fixture::new("seccompnotify") else {
        return;
    };
    let b = fx.bundle(&["true"], |c| {
        c["linux"]["seccomp"] = notify_mkdir(Path::new("/run/onggi-no-agent.sock"));
    });
    let id = fx.id("c");
    fx.create(&id, &b)
        .fails_with(&["linux.seccomp.listenerPath", "/run/onggi-no-agent.sock"]);
    fx.assert_gone(&id);
}
