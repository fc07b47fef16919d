//! `escape_probe`: one attempt to break out of a container, named by the first
//! argument, for the escape suite (`tests/escape.rs`). The suite runs it inside
//! containers made with podman's default configuration and checks what it prints,
//! one line per attempt:
//!
//! - `DENIED <attempt> errno=<E>`: the kernel refused the step that would escape;
//! - `ESCAPED <attempt> ...`: the step worked;
//! - `ERROR <step> errno=<E>`: a step the attempt needs failed, so it proved nothing;
//! - facts the suite compares with the host's: `STATUS`, `PIDS`, `FD`, `CWD`,
//!   `TREE`, `SEEN`, `CONTAINED`, `CALL`.
//!
//! It never harms the host when an attempt works: a sysctl is written the value it
//! already has, a device or a cgroup file is opened and closed (never read or
//! written), a signal goes only to a `sleep` the suite started, and the one file it
//! writes is the suite's own copy of the runtime.
//!
//! It is statically linked (`.cargo/config.toml`), so it runs in a busybox rootfs.

use std::collections::BTreeSet;
use std::ffi::CStr;
use std::fs;
use std::io::Write;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::fcntl::{open, OFlag};
use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::sys::signal::{kill, Signal};
use nix::sys::socket::{socket, AddressFamily, SockFlag, SockProtocol, SockType};
use nix::sys::stat::{mknod, Mode, SFlag};
use nix::unistd::Pid;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let rest: Vec<&str> = args.iter().skip(1).map(String::as_str).collect();
    match args.first().map(String::as_str) {
        Some("status") => status(),
        Some("sysrq") => sysrq(),
        Some("sysctl-rewrite") => rest.iter().for_each(|n| sysctl_rewrite(n)),
        Some("open-write") => rest.iter().for_each(|p| open_write(Path::new(p))),
        Some("open-read") => rest.iter().for_each(|p| open_read(Path::new(p))),
        Some("ro-tree") => rest.iter().for_each(|p| ro_tree(Path::new(p))),
        Some("mount") => mounts(),
        Some("mknod") => mknod_block(arg(&rest, 0), arg(&rest, 1)),
        Some("module") => modules(),
        Some("host-pid") => host_pid(arg(&rest, 0)),
        Some("procs") => procs(),
        Some("chroot-escape") => chroot_escape(arg(&rest, 0), arg(&rest, 1)),
        Some("fds") => fds(arg(&rest, 0)),
        Some("cwd") => cwd(arg(&rest, 0)),
        Some("exe-watch") => exe_watch(),
        Some("hostname") => hostname(arg(&rest, 0)),
        Some("syscalls") => syscalls(),
        other => panic!("escape_probe: unknown attempt {other:?}"),
    }
}

fn arg<'a>(rest: &[&'a str], i: usize) -> &'a str {
    rest.get(i)
        .unwrap_or_else(|| panic!("escape_probe: argument {} missing", i + 2))
}

/// `DENIED what errno=E` or `ESCAPED what`.
fn attempt<T>(what: &str, r: nix::Result<T>) {
    match r {
        Ok(_) => println!("ESCAPED {what}"),
        Err(e) => println!("DENIED {what} errno={e:?}"),
    }
}

fn errno_of(e: &std::io::Error) -> Errno {
    Errno::from_raw(e.raw_os_error().unwrap_or(0))
}

// ---------------------------------------------------------------------------------
// Raw system calls
// ---------------------------------------------------------------------------------

/// An argument of a raw system call: nothing the kernel could write through or that
/// could be freed before the call returns.
#[derive(Clone, Copy)]
enum Arg {
    Int(i64),
    Null,
    Str(&'static CStr),
    Bytes(&'static [u8]),
}

impl Arg {
    fn word(self) -> libc::c_long {
        match self {
            Arg::Int(i) => i,
            Arg::Null => 0,
            Arg::Str(s) => s.as_ptr() as libc::c_long,
            Arg::Bytes(b) => b.as_ptr() as libc::c_long,
        }
    }
}

/// `syscall(nr, args...)`, for the calls nix does not wrap. Every call site passes
/// the arguments of a system call that only reads through its pointers.
fn raw(nr: libc::c_long, args: &[Arg]) -> nix::Result<libc::c_long> {
    let mut w = [0 as libc::c_long; 5];
    for (slot, a) in w.iter_mut().zip(args) {
        *slot = a.word();
    }
    // SAFETY: each word is an integer, 0, or the address of 'static read-only data
    // (`Arg`); the calls made through here (module, ptrace SEIZE, pidfd_open,
    // vmsplice with no iovec, kexec_load with no segments, bpf with no attribute,
    // open_by_handle_at with no handle, add_key, userfaultfd, fsopen, open_tree,
    // setdomainname) never write through a pointer argument, and a returned
    // descriptor is left to the process's exit.
    let ret = unsafe { libc::syscall(nr, w[0], w[1], w[2], w[3], w[4]) };
    Errno::result(ret)
}

// ---------------------------------------------------------------------------------
// What the process is
// ---------------------------------------------------------------------------------

fn status_field<'a>(status: &'a str, key: &str) -> &'a str {
    status
        .lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(':'))
        .map(str::trim)
        .unwrap_or("?")
}

/// `STATUS seccomp=2 nnp=0 capeff=... capprm=... capbnd=... uid=0 euid=0`.
fn status() {
    let s = fs::read_to_string("/proc/self/status").unwrap_or_default();
    println!(
        "STATUS seccomp={} nnp={} capeff={} capprm={} capbnd={} uid={} euid={}",
        status_field(&s, "Seccomp"),
        status_field(&s, "NoNewPrivs"),
        status_field(&s, "CapEff"),
        status_field(&s, "CapPrm"),
        status_field(&s, "CapBnd"),
        nix::unistd::getuid(),
        nix::unistd::geteuid(),
    );
}

// ---------------------------------------------------------------------------------
// /proc, /sys/fs/cgroup: read-only
// ---------------------------------------------------------------------------------

/// Write "h" (print the sysrq help to the kernel log) to /proc/sysrq-trigger.
fn sysrq() {
    let r = open(
        "/proc/sysrq-trigger",
        OFlag::O_WRONLY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .and_then(|fd| nix::unistd::write(&fd, b"h"));
    attempt("sysrq", r);
}

/// Write a sysctl (relative to /proc/sys) the value it already has.
fn sysctl_rewrite(name: &str) {
    let path = Path::new("/proc/sys").join(name);
    let value = match fs::read(&path) {
        Ok(v) => v,
        Err(e) => return println!("ERROR read {} errno={:?}", path.display(), errno_of(&e)),
    };
    let r = open(&path, OFlag::O_WRONLY | OFlag::O_CLOEXEC, Mode::empty())
        .and_then(|fd| nix::unistd::write(&fd, &value));
    attempt(&format!("sysctl {name}"), r);
}

/// Open a file for writing and close it: nothing is written.
fn open_write(path: &Path) {
    let r = open(path, OFlag::O_WRONLY | OFlag::O_CLOEXEC, Mode::empty());
    attempt(&format!("open-write {}", path.display()), r);
}

/// Open a file for reading and close it: nothing is read.
fn open_read(path: &Path) {
    let r = open(path, OFlag::O_RDONLY | OFlag::O_CLOEXEC, Mode::empty());
    attempt(&format!("open-read {}", path.display()), r);
}

/// Every regular file under `root` opened for writing (and closed unwritten), a
/// directory made in every directory (and removed if that worked):
/// `TREE root files=N open=E1,E2 dirs=M mkdir=E1`, the errnos each step met, after
/// an `ESCAPED` line for each success.
fn ro_tree(root: &Path) {
    let (mut open_errnos, mut mkdir_errnos) = (BTreeSet::new(), BTreeSet::new());
    let (mut files, mut dirs) = (0, 0);
    let mut todo = vec![root.to_path_buf()];
    while let Some(dir) = todo.pop() {
        dirs += 1;
        let probe = dir.join("onggi-escape-probe");
        match nix::unistd::mkdir(&probe, Mode::from_bits_truncate(0o755)) {
            Ok(()) => {
                println!("ESCAPED mkdir {}", probe.display());
                let _ = fs::remove_dir(&probe);
            }
            Err(e) => drop(mkdir_errnos.insert(format!("{e:?}"))),
        }
        for entry in fs::read_dir(&dir).into_iter().flatten().flatten() {
            let Ok(ft) = entry.file_type() else { continue };
            if ft.is_dir() {
                todo.push(entry.path());
            } else if ft.is_file() {
                files += 1;
                let flags = OFlag::O_WRONLY | OFlag::O_CLOEXEC;
                match open(&entry.path(), flags, Mode::empty()) {
                    Ok(_) => println!("ESCAPED open-write {}", entry.path().display()),
                    Err(e) => drop(open_errnos.insert(format!("{e:?}"))),
                }
            }
        }
    }
    let join = |set: BTreeSet<String>| set.into_iter().collect::<Vec<_>>().join(",");
    println!(
        "TREE {} files={files} open={} dirs={dirs} mkdir={}",
        root.display(),
        join(open_errnos),
        join(mkdir_errnos)
    );
}

// ---------------------------------------------------------------------------------
// Mounts, devices, modules
// ---------------------------------------------------------------------------------

fn mounts() {
    let none: Option<&str> = None;
    attempt(
        "mount-tmpfs",
        mount(Some("tmpfs"), "/tmp", Some("tmpfs"), MsFlags::empty(), none),
    );
    attempt(
        "mount-proc",
        mount(Some("proc"), "/tmp", Some("proc"), MsFlags::empty(), none),
    );
    attempt(
        "remount-proc-sys-rw",
        mount(
            none,
            "/proc/sys",
            none,
            MsFlags::MS_REMOUNT | MsFlags::MS_BIND,
            none,
        ),
    );
    // A read-only path (podman's readonlyPaths) and a masked one (maskedPaths).
    attempt(
        "umount-proc-sys",
        umount2("/proc/sys", MntFlags::MNT_DETACH),
    );
    attempt(
        "umount-proc-keys",
        umount2("/proc/keys", MntFlags::MNT_DETACH),
    );
    attempt(
        "fsopen-tmpfs",
        raw(libc::SYS_fsopen, &[Arg::Str(c"tmpfs"), Arg::Int(0)]),
    );
    attempt(
        "open-tree-clone-root",
        raw(
            libc::SYS_open_tree,
            &[
                Arg::Int(libc::AT_FDCWD.into()),
                Arg::Str(c"/"),
                Arg::Int(libc::OPEN_TREE_CLONE.into()),
            ],
        ),
    );
}

/// mknod the host's root disk (block device `major`:`minor`) in /tmp.
fn mknod_block(major: &str, minor: &str) {
    let dev = libc::makedev(major.parse().unwrap(), minor.parse().unwrap());
    let r = mknod(
        "/tmp/onggi-disk",
        SFlag::S_IFBLK,
        Mode::from_bits_truncate(0o600),
        dev,
    );
    attempt("mknod", r);
}

static MODULE_IMAGE: [u8; 64] = [0x5a; 64];

fn modules() {
    attempt(
        "init_module",
        raw(
            libc::SYS_init_module,
            &[
                Arg::Bytes(&MODULE_IMAGE),
                Arg::Int(MODULE_IMAGE.len() as i64),
                Arg::Str(c""),
            ],
        ),
    );
    let r = open("/proc/self/exe", OFlag::O_RDONLY, Mode::empty()).and_then(|fd| {
        raw(
            libc::SYS_finit_module,
            &[Arg::Int(fd.as_raw_fd().into()), Arg::Str(c""), Arg::Int(0)],
        )
    });
    attempt("finit_module", r);
    attempt(
        "delete_module",
        raw(
            libc::SYS_delete_module,
            &[
                Arg::Str(c"onggi_no_such_module"),
                Arg::Int(libc::O_NONBLOCK.into()),
            ],
        ),
    );
}

// ---------------------------------------------------------------------------------
// Processes
// ---------------------------------------------------------------------------------

/// Signal, trace and look at host process `pid` (a `sleep` the suite started).
fn host_pid(pid: &str) {
    let n: i32 = pid.parse().unwrap();
    attempt("kill", kill(Pid::from_raw(n), Signal::SIGKILL));
    attempt(
        "ptrace-seize",
        raw(
            libc::SYS_ptrace,
            &[
                Arg::Int(libc::PTRACE_SEIZE.into()),
                Arg::Int(n.into()),
                Arg::Null,
                Arg::Null,
            ],
        ),
    );
    attempt(
        "pidfd_open",
        raw(libc::SYS_pidfd_open, &[Arg::Int(n.into()), Arg::Int(0)]),
    );
    attempt(
        "stat-proc",
        nix::sys::stat::stat(format!("/proc/{n}").as_str()),
    );
    // Signal 0 to every process it may signal: only tells whether there is one.
    attempt("kill-all-probe", kill(Pid::from_raw(-1), None));
}

fn pids_in_proc() -> Vec<i32> {
    let mut pids: Vec<i32> = fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse().ok())
        .collect();
    pids.sort();
    pids
}

/// `PIDS 1 ...`: the processes /proc shows.
fn procs() {
    let pids: Vec<String> = pids_in_proc().iter().map(i32::to_string).collect();
    println!("PIDS {}", pids.join(" "));
}

// ---------------------------------------------------------------------------------
// Roots: chroot, descriptors, cwd
// ---------------------------------------------------------------------------------

/// The classic chroot escape: keep a descriptor of "/", chroot into a subdirectory,
/// fchdir back out of it, climb with "..", chroot("."). Then look for
/// `host_marker` (a path on the host) and `own_marker` (a path in the container).
fn chroot_escape(host_marker: &str, own_marker: &str) {
    let step = |what: &str, r: nix::Result<()>| match r {
        Ok(()) => true,
        Err(e) => {
            println!("ERROR {what} errno={e:?}");
            false
        }
    };
    let sub = "/tmp/onggi-chroot";
    match nix::unistd::mkdir(sub, Mode::from_bits_truncate(0o755)) {
        Ok(()) | Err(Errno::EEXIST) => {}
        Err(e) => return println!("ERROR mkdir errno={e:?}"),
    }
    let root = match open("/", OFlag::O_RDONLY | OFlag::O_DIRECTORY, Mode::empty()) {
        Ok(fd) => fd,
        Err(e) => return println!("ERROR open-root errno={e:?}"),
    };
    if !step("chroot-sub", nix::unistd::chroot(sub)) || !step("fchdir", nix::unistd::fchdir(&root))
    {
        return;
    }
    for _ in 0..64 {
        if !step("chdir-up", nix::unistd::chdir("..")) {
            return;
        }
    }
    if !step("chroot-dot", nix::unistd::chroot(".")) {
        return;
    }
    let seen = |p: &str| match fs::symlink_metadata(p) {
        Ok(_) => "found".to_string(),
        Err(e) => format!("{:?}", errno_of(&e)),
    };
    let (host, own) = (seen(host_marker), seen(own_marker));
    if host == "found" {
        println!("ESCAPED chroot host-marker={host} own-marker={own}");
    } else {
        println!("CONTAINED host-marker={host} own-marker={own}");
    }
}

fn kind(m: &fs::Metadata) -> &'static str {
    let t = m.file_type();
    if t.is_dir() {
        "dir"
    } else if t.is_file() {
        "file"
    } else if t.is_char_device() {
        "chr"
    } else if t.is_block_device() {
        "blk"
    } else if t.is_fifo() {
        "fifo"
    } else if t.is_socket() {
        "sock"
    } else {
        "other"
    }
}

/// `FD n kind target` for every open descriptor of `pid` ("self" or a number),
/// except the one this listing reads /proc/self/fd through.
fn fds(pid: &str) {
    let dir_path = format!("/proc/{pid}/fd");
    let mut dir = match nix::dir::Dir::open(
        dir_path.as_str(),
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    ) {
        Ok(d) => d,
        Err(e) => return println!("ERROR open {dir_path} errno={e:?}"),
    };
    let own = if pid == "self" {
        Some(dir.as_raw_fd())
    } else {
        None
    };
    let mut nums: Vec<i32> = dir
        .iter()
        .flatten()
        .filter_map(|e| e.file_name().to_str().ok()?.parse().ok())
        .filter(|n| Some(*n) != own)
        .collect();
    nums.sort();
    for n in nums {
        let link = format!("{dir_path}/{n}");
        let target = fs::read_link(&link)
            .map(|t| t.display().to_string())
            .unwrap_or_else(|e| format!("?{:?}", errno_of(&e)));
        let k = fs::metadata(&link).map(|m| kind(&m)).unwrap_or("gone");
        println!("FD {n} {k} {target}");
    }
}

/// `CWD <getcwd> marker=<found|errno>`: where the process started, and whether the
/// host path `marker` can be reached by climbing from there.
fn cwd(marker: &str) {
    let dir = match nix::unistd::getcwd() {
        Ok(d) => d.display().to_string(),
        Err(e) => format!("!{e:?}"),
    };
    let mut climb = PathBuf::new();
    for _ in 0..40 {
        climb.push("..");
    }
    climb.push(marker.trim_start_matches('/'));
    let seen = match fs::symlink_metadata(&climb) {
        Ok(_) => "found".to_string(),
        Err(e) => format!("{:?}", errno_of(&e)),
    };
    if seen == "found" {
        println!("ESCAPED cwd={dir} marker={seen}");
    } else {
        println!("CWD {dir} marker={seen}");
    }
}

// ---------------------------------------------------------------------------------
// CVE-2019-5736: the runtime's binary through /proc/PID/exe
// ---------------------------------------------------------------------------------

fn line(s: &str) {
    println!("{s}");
    let _ = std::io::stdout().flush();
}

/// (device, inode) of what `/proc/<pid>/exe` leads to.
fn exe_id(pid: &str) -> Option<(u64, u64)> {
    fs::metadata(format!("/proc/{pid}/exe"))
        .ok()
        .map(|m| (m.dev(), m.ino()))
}

fn gone(pid: i32) -> bool {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    stat.rsplit(')')
        .next()
        .map(str::trim_start)
        .is_none_or(|s| stat.is_empty() || s.starts_with('Z') || s.starts_with('X'))
}

/// Wait for a process of another binary to appear in the container (the runtime,
/// run by `exec` of a `#!/proc/self/exe` script), hold its `/proc/PID/exe` open
/// with O_PATH, try to open it for writing while it runs, and again, with O_TRUNC,
/// through the held descriptor once it has exited; if that works, write to it.
///
/// The runtime runs for a millisecond or two: rather than list /proc, the watcher
/// opens `/proc/PID/exe` of the next PIDs of the container's namespace in a tight loop.
fn exe_watch() {
    let me = exe_id("self").expect("stat /proc/self/exe");
    let own_pid = std::process::id() as i32;
    line("WATCHING");
    let deadline = Instant::now() + Duration::from_secs(5);
    let (pid, held) = 'found: loop {
        if Instant::now() > deadline {
            return line("ERROR no-runtime-process-seen");
        }
        for pid in (own_pid + 1)..(own_pid + 64) {
            let path = format!("/proc/{pid}/exe");
            if let Ok(fd) = open(path.as_str(), OFlag::O_PATH, Mode::empty()) {
                let id = fs::metadata(format!("/proc/self/fd/{}", fd.as_raw_fd()))
                    .map(|m| (m.dev(), m.ino()));
                if id.is_ok_and(|id| id != me) {
                    break 'found (pid, fd);
                }
            }
        }
    };
    let through = format!("/proc/self/fd/{}", held.as_raw_fd());
    let exe = fs::read_link(&through)
        .map(|t| t.display().to_string())
        .unwrap_or_default();
    let live = open(through.as_str(), OFlag::O_WRONLY, Mode::empty());
    let alive = !gone(pid);
    line(&format!("SEEN exe={exe} alive-after-live-open={alive}"));
    match live {
        Ok(_) => line("ESCAPED live open-for-write"),
        Err(e) => line(&format!("DENIED live errno={e:?}")),
    }
    while !gone(pid) {
        if Instant::now() > deadline {
            return line("ERROR runtime-process-did-not-exit");
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    // The runtime's `exec` on the host runs the same binary a little longer: ETXTBSY
    // until it has exited.
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        match open(
            through.as_str(),
            OFlag::O_WRONLY | OFlag::O_TRUNC,
            Mode::empty(),
        ) {
            Ok(fd) => {
                let n = nix::unistd::write(&fd, b"#!/bin/sh\necho overwritten by escape_probe\n");
                return line(&format!("ESCAPED after-exit wrote={n:?}"));
            }
            Err(Errno::ETXTBSY) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(1))
            }
            Err(e) => return line(&format!("DENIED after-exit errno={e:?}")),
        }
    }
}

// ---------------------------------------------------------------------------------
// Hostname, system calls
// ---------------------------------------------------------------------------------

fn hostname(name: &str) {
    attempt("sethostname", nix::unistd::sethostname(name));
    attempt(
        "setdomainname",
        raw(
            libc::SYS_setdomainname,
            &[Arg::Str(c"onggi-escape"), Arg::Int(12)],
        ),
    );
    let r = open(
        "/proc/sys/kernel/hostname",
        OFlag::O_WRONLY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .and_then(|fd| nix::unistd::write(&fd, name.as_bytes()));
    attempt("write-proc-sys-kernel-hostname", r);
}

/// `CALL name errno=E` (or `CALL name ok`) for system calls a seccomp profile may
/// deny, each with arguments that would do nothing harmful if it ran.
fn syscalls() {
    let report = |name: &str, r: nix::Result<libc::c_long>| match r {
        Ok(_) => println!("CALL {name} ok"),
        Err(e) => println!("CALL {name} errno={e:?}"),
    };
    report(
        "vmsplice",
        raw(
            libc::SYS_vmsplice,
            &[Arg::Int(-1), Arg::Null, Arg::Int(0), Arg::Int(0)],
        ),
    );
    report(
        "userfaultfd",
        raw(
            libc::SYS_userfaultfd,
            // UFFD_USER_MODE_ONLY: allowed without privilege
            &[Arg::Int(i64::from(libc::O_CLOEXEC) | 1)],
        ),
    );
    report(
        "add_key",
        raw(
            libc::SYS_add_key,
            &[
                Arg::Str(c"user"),
                Arg::Str(c"onggi-escape-probe"),
                Arg::Bytes(b"x"),
                Arg::Int(1),
                Arg::Int(libc::KEY_SPEC_PROCESS_KEYRING.into()),
            ],
        ),
    );
    let audit = socket(
        AddressFamily::Netlink,
        SockType::Raw,
        SockFlag::SOCK_CLOEXEC,
        SockProtocol::NetlinkAudit,
    );
    report("socket-netlink-audit", audit.map(|_| 0));
    report(
        "kexec_load",
        raw(
            libc::SYS_kexec_load,
            &[Arg::Int(0), Arg::Int(0), Arg::Null, Arg::Int(0)],
        ),
    );
    report(
        "bpf",
        raw(libc::SYS_bpf, &[Arg::Int(0), Arg::Null, Arg::Int(0)]),
    );
    report(
        "open_by_handle_at",
        raw(
            libc::SYS_open_by_handle_at,
            &[Arg::Int(libc::AT_FDCWD.into()), Arg::Null, Arg::Int(0)],
        ),
    );
}
