//! The container's init: what the cloned child does, step by step, from the moment it
//! starts inside its new namespaces to the `execve` of the user's program. Also the
//! last steps (user, capabilities, exec) that `exec` shares.
//!
//! Nothing here returns to the caller: [`main`] ends in `execve` or `exit`.

use std::collections::HashSet;
use std::convert::Infallible;
use std::ffi::CString;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sched::CloneFlags;
use nix::sys::signal::{sigprocmask, SigSet, SigmaskHow};
use nix::sys::stat::{umask, Mode};
use nix::unistd::{setgroups, setresgid, setresuid, Gid, Uid};

use crate::error::{Context, Error, Result};
use crate::plan::{CapsPlan, Plan, ProcessPlan};
use crate::rootfs::{self, CgroupMounts};
use crate::sync::{Channel, Msg};
use crate::{console, hooks};

/// How the init learns that it may start the user's process.
pub enum StartSignal {
    /// `create`: a byte on the exec fifo (opened read-only, non-blocking, by the parent).
    Fifo(OwnedFd),
    /// `run`: a `Start` message on the bootstrap channel.
    Channel,
}

/// Everything the init needs, moved into the child.
pub struct InitArgs<'a> {
    /// The plan.
    pub plan: &'a Plan,
    /// The child's end of the bootstrap channel.
    pub channel: Channel,
    /// How to wait for start.
    pub start: StartSignal,
    /// The console socket, connected (terminal only).
    pub console: Option<UnixStream>,
    /// The container's cgroup as the host sees it.
    pub cgroup: CgroupMounts,
    /// `--no-pivot`.
    pub no_pivot: bool,
    /// `--no-new-keyring`.
    pub no_new_keyring: bool,
    /// `--preserve-fds`.
    pub preserve_fds: i32,
    /// The container id (for the session keyring's name).
    pub id: &'a str,
    /// The compiled seccomp filter, loaded just before the exec.
    pub seccomp: Option<&'a onggi_seccomp::Compiled>,
}

/// Run the init; report a failure to the parent and exit 1.
pub fn main(args: InitArgs<'_>) -> ! {
    let err = match run(&args) {
        Ok(never) => match never {},
        Err(e) => e,
    };
    // After start nobody listens on the channel any more: then the container's
    // stderr is the only place left to say what went wrong. A parent that hung up
    // before Go failed itself and says why; the init stays quiet then.
    if args.channel.send(&Msg::Error(err.to_string())).is_err() && !matches!(err, Error::ParentGone)
    {
        eprintln!("onggi-runtime: container init: {err}");
    }
    std::process::exit(1)
}

fn run(a: &InitArgs<'_>) -> Result<Infallible> {
    let plan = a.plan;
    let process = plan
        .process
        .as_ref()
        .expect("create checks that the spec has a process");
    let gate = Gate::new(a);
    unshare_rest(plan.new_namespaces)?;
    let user_ns = plan.new_namespaces.contains(CloneFlags::CLONE_NEWUSER);
    if user_ns {
        // Nothing can be done in a user namespace before its mappings are written.
        gate.pass()?;
        // The mappings are written: become the namespace's root.
        setresgid(Gid::from_raw(0), Gid::from_raw(0), Gid::from_raw(0))
            .step(|| "setresgid(0) in the new user namespace")?;
        setresuid(Uid::from_raw(0), Uid::from_raw(0), Uid::from_raw(0))
            .step(|| "setresuid(0) in the new user namespace")?;
    }
    if !a.no_new_keyring {
        crate::lsm::set_keycreate_label(process)?;
        // EPERM/ENOSYS: keyrings are unavailable (e.g. nested in a user namespace); runc ignores it too.
        let _ = onggi_sys::join_session_keyring(a.id);
    }
    if let Some(h) = &plan.hostname {
        nix::unistd::sethostname(h).step(|| format!("sethostname {h:?}"))?;
    }
    if let Some(d) = &plan.domainname {
        onggi_sys::set_domainname(d).step(|| format!("setdomainname {d:?}"))?;
    }
    // Device nodes and mount points get exactly the modes we ask for.
    umask(Mode::empty());

    let fs = rootfs::prepare(plan, &a.cgroup)?;
    // The cgroup mount binds the container's cgroup directories: they must exist.
    fs.mount_all(&gate)?;
    fs.setup_dev(user_ns)?;
    gate.pass()?;

    let state = if has_hooks_in_container(plan)
        || !plan.hooks.create_runtime.is_empty()
        || !plan.hooks.prestart.is_empty()
    {
        a.channel
            .send(&Msg::CreateRuntimeHooks)
            .step(|| "ask for the createRuntime hooks")?;
        match a
            .channel
            .recv()
            .step(|| "wait for the createRuntime hooks")?
        {
            Some(Msg::HooksDone(state)) => state,
            Some(Msg::Error(e)) => return Err(Error::Init(e)),
            other => {
                return Err(Error::Init(format!(
                    "protocol error: expected HooksDone, got {other:?}"
                )))
            }
        }
    } else {
        String::new()
    };
    hooks::run_all(
        "createContainer",
        &plan.hooks.create_container,
        state.as_bytes(),
    )?;

    fs.switch_root(a.no_pivot)?;
    // From here on, paths are the container's: the terminal below is opened through
    // its /dev/ptmx (a link to its own devpts), so the slave's name is valid inside.

    rootfs::write_sysctl(&plan.sysctl)?;
    rootfs::mask_and_protect(&plan.masked_paths, &plan.readonly_paths)?;
    if process.terminal {
        setup_terminal(a.console.as_ref(), process.console_size, true)?;
    }
    if plan.readonly_root {
        rootfs::readonly_root()?;
    }
    prepare_process(process)?;
    rootfs::create_cwd(&process.cwd)?;
    let program = find_program(&process.args[0], &process.env)?;

    let seccomp = hand_listener_to_parent(&a.channel, a.seccomp)?;
    a.channel.send(&Msg::Ready).step(|| "report ready")?;
    match &a.start {
        StartSignal::Fifo(fd) => wait_fifo(fd)?,
        StartSignal::Channel => a
            .channel
            .expect(Msg::Start, "Start")
            .map_err(|e| Error::Init(format!("wait for start: {e}")))?,
    }
    // The parent sent the state as "creating"; startContainer hooks see "created".
    let state = state.replacen("\"status\":\"creating\"", "\"status\":\"created\"", 1);
    hooks::run_all(
        "startContainer",
        &plan.hooks.start_container,
        state.as_bytes(),
    )?;
    exec_process(process, &program, a.preserve_fds, seccomp)
}

/// A profile that notifies a seccomp agent (`listenerPath`) is loaded here, before
/// `Ready`, while the parent still listens: only the parent can reach the agent's
/// socket on the host, so it gets the listener (SCM_RIGHTS), hands it over and
/// answers `SeccompDone`. As with runc, the rest of the setup (waiting for start,
/// user, capabilities, execve) then runs under the filter. Returns the filter that
/// is still to be loaded by [`exec_process`].
pub fn hand_listener_to_parent<'a>(
    ch: &Channel,
    seccomp: Option<&'a onggi_seccomp::Compiled>,
) -> Result<Option<&'a onggi_seccomp::Compiled>> {
    let Some(filter) = seccomp.filter(|c| c.needs_listener()) else {
        return Ok(seccomp);
    };
    let listener = onggi_seccomp::load(filter)?
        .ok_or_else(|| Error::Init("seccomp: the kernel returned no listener".into()))?;
    ch.send_with_fd(&Msg::SeccompFd, listener.as_fd())
        .step(|| "send the seccomp listener to the parent")?;
    drop(listener);
    ch.expect(Msg::SeccompDone, "SeccompDone")
        .map_err(|e| Error::Init(format!("hand the seccomp listener to the agent: {e}")))?;
    Ok(None)
}

impl rootfs::Parent for Gate<'_> {
    fn wait(&self) -> Result<()> {
        self.pass()
    }

    fn idmapped_mount(&self, index: usize) -> Result<OwnedFd> {
        self.pass()?;
        self.mounts.borrow_mut().remove(&index).ok_or_else(|| {
            Error::Init(format!(
                "mounts[{index}]: the parent sent no idmapped mount"
            ))
        })
    }
}

/// The namespaces the init is cloned into; it unshares the others itself.
pub const CLONE_NAMESPACES: CloneFlags = CloneFlags::CLONE_NEWPID.union(CloneFlags::CLONE_NEWUSER);

/// CLONE_NEWTIME, which nix does not name. It only works with unshare (or clone3):
/// in clone(2) the low byte is the exit signal.
pub const CLONE_NEWTIME: CloneFlags = CloneFlags::from_bits_retain(0x80);

/// Create the namespaces the init was not cloned into, except the cgroup namespace
/// (unshared at the [`Gate`], once the init is in its cgroup). A new time namespace
/// applies to children and, since Linux 5.17, to this process at its execve.
fn unshare_rest(new: CloneFlags) -> Result<()> {
    let rest = new - CLONE_NAMESPACES - CloneFlags::CLONE_NEWCGROUP;
    if rest.is_empty() {
        return Ok(());
    }
    nix::sched::unshare(rest).step(|| format!("unshare {rest:?}"))?;
    crate::explain!("unshare {rest:?}: new namespaces for the init");
    Ok(())
}

/// The point after which the init must be in its cgroup: the parent's `Go` says the
/// uid/gid maps are written and the init is in the cgroup. Until then the init gets on
/// with its mounts while the parent makes the cgroup on the other CPU. Right after `Go`,
/// a new cgroup namespace is unshared, so that its root is the container's cgroup
/// (cgroup_namespaces(7)), which is why the init is never cloned with CLONE_NEWCGROUP.
/// Idmapped mounts arrive before `Go`, made by the parent (only it holds
/// CAP_SYS_ADMIN over the filesystems in the host's user namespace).
struct Gate<'a> {
    args: &'a InitArgs<'a>,
    passed: std::cell::Cell<bool>,
    mounts: std::cell::RefCell<std::collections::HashMap<usize, OwnedFd>>,
}

impl<'a> Gate<'a> {
    fn new(args: &'a InitArgs<'a>) -> Self {
        Gate {
            args,
            passed: std::cell::Cell::new(false),
            mounts: Default::default(),
        }
    }

    fn pass(&self) -> Result<()> {
        if self.passed.replace(true) {
            return Ok(());
        }
        let lost = |e: crate::sync::ChannelError| match e {
            crate::sync::ChannelError::Closed => Error::ParentGone,
            e => Error::Init(format!("wait for the parent: {e}")),
        };
        loop {
            let (msg, fd) = self
                .args
                .channel
                .recv_with_fd()
                .map_err(|e| lost(e.into()))?;
            match (msg, fd) {
                (Some(Msg::Go), _) => break,
                (Some(Msg::MountFd(i)), Some(fd)) => {
                    self.mounts.borrow_mut().insert(i as usize, fd);
                }
                (None, _) => return Err(Error::ParentGone),
                (Some(Msg::Error(e)), _) => return Err(lost(crate::sync::ChannelError::Remote(e))),
                (Some(got), _) => {
                    return Err(lost(crate::sync::ChannelError::Unexpected {
                        expected: "Go",
                        got,
                    }))
                }
            }
        }
        if self
            .args
            .plan
            .new_namespaces
            .contains(CloneFlags::CLONE_NEWCGROUP)
        {
            nix::sched::unshare(CloneFlags::CLONE_NEWCGROUP)
                .step(|| "unshare the cgroup namespace")?;
            crate::explain!("unshare CLONE_NEWCGROUP: the container's cgroup is its root");
        }
        Ok(())
    }
}

fn has_hooks_in_container(plan: &Plan) -> bool {
    !plan.hooks.create_container.is_empty() || !plan.hooks.start_container.is_empty()
}

/// Make a pty, hand its master to the console socket, and make its slave this
/// process's terminal; with `bind_console`, also /dev/console.
pub fn setup_terminal(
    sock: Option<&UnixStream>,
    size: Option<(u16, u16)>,
    bind_console: bool,
) -> Result<()> {
    let sock = sock.ok_or_else(|| {
        Error::Unsupported("process.terminal is set but no --console-socket was given".into())
    })?;
    let (master, slave, slave_path) = console::open_pty()?;
    if bind_console {
        bind_dev_console(&slave_path)?;
    }
    console::send_master(sock, &master)?;
    drop(master);
    console::make_controlling(&slave, size)
}

fn bind_dev_console(slave: &Path) -> Result<()> {
    let console = Path::new("/dev/console");
    if !console.exists() {
        std::fs::File::create(console).step(|| "create /dev/console")?;
    }
    crate::explain::mount(
        Some(slave),
        console,
        None::<&str>,
        nix::mount::MsFlags::MS_BIND,
        None::<&str>,
    )
    .step(|| format!("bind {} to /dev/console", slave.display()))
}

/// rlimits and oom_score_adj: done while the process still has every capability.
pub fn prepare_process(p: &ProcessPlan) -> Result<()> {
    for (res, soft, hard) in &p.rlimits {
        nix::sys::resource::setrlimit(*res, *soft, *hard)
            .step(|| format!("setrlimit {res:?} soft={soft} hard={hard}"))?;
    }
    if let Some(adj) = p.oom_score_adj {
        std::fs::write("/proc/self/oom_score_adj", adj.to_string())
            .step(|| format!("write oom_score_adj {adj}"))?;
    }
    Ok(())
}

/// Block until `start` writes a byte to the exec fifo.
fn wait_fifo(fd: &OwnedFd) -> Result<()> {
    // A reader that opened the fifo before any writer existed sees no POLLHUP until a
    // writer has come and gone (pipe_poll's w_counter check), so this blocks.
    let mut fds = [PollFd::new(std::os::fd::AsFd::as_fd(fd), PollFlags::POLLIN)];
    loop {
        match poll(&mut fds, PollTimeout::NONE) {
            Err(nix::errno::Errno::EINTR) => continue,
            r => {
                r.step(|| "wait on exec.fifo")?;
                break;
            }
        }
    }
    let mut b = [0u8; 1];
    let n = nix::unistd::read(fd, &mut b).step(|| "read exec.fifo")?;
    if n != 1 {
        return Err(Error::Init(
            "exec.fifo closed without the start byte".into(),
        ));
    }
    Ok(())
}

/// Find `arg0` the way execvp does, with the container's own PATH, so that a missing
/// program fails `create` (with runc's wording, which podman maps to exit code 127).
pub fn find_program(arg0: &str, env: &[String]) -> Result<CString> {
    let not_found = |what: &str| Error::Init(format!("exec: {arg0:?}: {what}"));
    let cstr = |p: &Path| {
        CString::new(p.as_os_str().as_encoded_bytes()).map_err(|_| not_found("contains a NUL byte"))
    };
    if arg0.contains('/') {
        let p = Path::new(arg0);
        return match std::fs::metadata(p) {
            Ok(_) => cstr(p),
            Err(_) => Err(not_found("stat: no such file or directory")),
        };
    }
    let path = env
        .iter()
        .find_map(|kv| kv.strip_prefix("PATH="))
        .unwrap_or("/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin");
    for dir in path.split(':').filter(|d| !d.is_empty()) {
        let candidate = PathBuf::from(dir).join(arg0);
        if let Ok(md) = std::fs::metadata(&candidate) {
            if md.is_file() && md.permissions().mode() & 0o111 != 0 {
                return cstr(&candidate);
            }
        }
    }
    Err(not_found("executable file not found in $PATH"))
}

/// The last steps before the user's program: close-on-exec on every descriptor past
/// the preserved ones and a clean signal mask (first, so that a seccomp profile need
/// not allow them), groups and user (keeping capabilities across the uid change),
/// capabilities, no_new_privs, umask, cwd, execve. The seccomp filter is loaded as late
/// as it can be: right before execve under no_new_privs; else before capabilities are
/// dropped, since loading it then needs CAP_SYS_ADMIN (runc's order).
pub fn exec_process(
    p: &ProcessPlan,
    program: &CString,
    preserve_fds: i32,
    seccomp: Option<&onggi_seccomp::Compiled>,
) -> Result<Infallible> {
    onggi_sys::set_cloexec_from(3 + preserve_fds)
        .step(|| "mark inherited descriptors close-on-exec")?;
    sigprocmask(SigmaskHow::SIG_SETMASK, Some(&SigSet::empty()), None)
        .step(|| "clear the signal mask")?;
    onggi_sys::default_signal_action(nix::sys::signal::Signal::SIGPIPE)
        .step(|| "give SIGPIPE its default action (Rust ignores it)")?;
    crate::lsm::set_exec_labels(p)?;
    if let Some(filter) = seccomp.filter(|_| !p.no_new_privileges) {
        onggi_seccomp::load(filter)?;
        explain_seccomp(filter);
    }
    let caps = p.caps.as_ref().map(resolve_caps).transpose()?;
    // Dropping from the bounding set needs CAP_SETPCAP in the effective set, which
    // the uid change below clears: do it first.
    if let Some(c) = &caps {
        c.drop_bounding()?;
    }
    nix::sys::prctl::set_keepcaps(true).step(|| "prctl(PR_SET_KEEPCAPS)")?;
    // setgroups fails with EPERM in a user namespace whose setgroups is denied;
    // then there is nothing to change anyway.
    let groups: Vec<Gid> = p
        .additional_gids
        .iter()
        .map(|g| Gid::from_raw(*g))
        .collect();
    match setgroups(&groups) {
        Ok(()) => {}
        Err(nix::errno::Errno::EPERM) if groups.is_empty() => {}
        Err(e) => return Err(e).step(|| format!("setgroups {:?}", p.additional_gids)),
    }
    let gid = Gid::from_raw(p.gid);
    setresgid(gid, gid, gid).step(|| format!("setresgid {}", p.gid))?;
    let uid = Uid::from_raw(p.uid);
    setresuid(uid, uid, uid).step(|| format!("setresuid {}", p.uid))?;
    nix::sys::prctl::set_keepcaps(false).step(|| "prctl(PR_SET_KEEPCAPS, 0)")?;
    if let Some(c) = &caps {
        c.apply_rest()?;
    }
    crate::explain!(
        "user {}:{} groups {:?}; capabilities kept (effective): {:?}",
        p.uid,
        p.gid,
        p.additional_gids,
        caps::read(None, caps::CapSet::Effective).unwrap_or_default()
    );
    if p.no_new_privileges {
        nix::sys::prctl::set_no_new_privs().step(|| "prctl(PR_SET_NO_NEW_PRIVS)")?;
    }
    umask(Mode::from_bits_truncate(p.umask.unwrap_or(0o022)));
    nix::unistd::chdir(&p.cwd).step(|| format!("chdir to process.cwd {}", p.cwd.display()))?;
    // A cwd reached through a descriptor or a mount that leads out of the root
    // (CVE-2024-21626: process.cwd = /proc/self/fd/N of a leaked host directory) has
    // no path from the root: getcwd fails (ENOENT) instead of returning one.
    match nix::unistd::getcwd() {
        Ok(dir) if dir.is_absolute() => {}
        _ => {
            return Err(Error::Init(format!(
                "process.cwd {}: the directory is outside the container's root",
                p.cwd.display()
            )))
        }
    }
    let args: Vec<CString> = p
        .args
        .iter()
        .map(|a| CString::new(a.as_str()))
        .collect::<std::result::Result<_, _>>()
        .map_err(|_| Error::Init("process.args: an argument contains a NUL byte".into()))?;
    let env: Vec<CString> = p
        .env
        .iter()
        .filter_map(|e| CString::new(e.as_str()).ok())
        .collect();
    if let Some(filter) = seccomp.filter(|_| p.no_new_privileges) {
        onggi_seccomp::load(filter)?;
        explain_seccomp(filter);
    }
    crate::explain!("execve {program:?} {:?}", p.args);
    let err = nix::unistd::execve(program, &args, &env).unwrap_err();
    Err(Error::Init(format!("exec: {:?}: {err}", p.args[0])))
}

fn cap_set(
    names: &Option<Vec<oci_spec::runtime::Capability>>,
    field: &str,
    bounding: &caps::CapsHashSet,
) -> Result<Option<caps::CapsHashSet>> {
    let Some(names) = names else { return Ok(None) };
    let mut set = HashSet::new();
    for c in names {
        let name = format!("CAP_{c}");
        let cap = caps::Capability::from_str(&name).map_err(|_| Error::InvalidConfig {
            field: format!("process.capabilities.{field}"),
            reason: format!("unknown capability {name}"),
        })?;
        if !bounding.contains(&cap) {
            return Err(Error::InvalidConfig {
                field: format!("process.capabilities.{field}"),
                reason: format!(
                    "{name} is not in the host's bounding set, so no container can have it"
                ),
            });
        }
        set.insert(cap);
    }
    Ok(Some(set))
}

/// The five capability sets, checked against the host's bounding set.
struct Caps {
    host: caps::CapsHashSet,
    bounding: Option<caps::CapsHashSet>,
    inheritable: Option<caps::CapsHashSet>,
    ambient: Option<caps::CapsHashSet>,
    effective: Option<caps::CapsHashSet>,
    permitted: Option<caps::CapsHashSet>,
}

fn resolve_caps(c: &CapsPlan) -> Result<Caps> {
    let host = caps::read(None, caps::CapSet::Bounding)
        .map_err(|e| Error::Init(format!("read the bounding set: {e}")))?;
    Ok(Caps {
        bounding: cap_set(&c.bounding, "bounding", &host)?,
        inheritable: cap_set(&c.inheritable, "inheritable", &host)?,
        ambient: cap_set(&c.ambient, "ambient", &host)?,
        effective: cap_set(&c.effective, "effective", &host)?,
        permitted: cap_set(&c.permitted, "permitted", &host)?,
        host,
    })
}

fn caps_err(what: &str, e: caps::errors::CapsError) -> Error {
    Error::Init(format!("set {what} capabilities: {e}"))
}

impl Caps {
    fn drop_bounding(&self) -> Result<()> {
        if let Some(b) = &self.bounding {
            for cap in self.host.difference(b) {
                caps::drop(None, caps::CapSet::Bounding, *cap)
                    .map_err(|e| caps_err("bounding", e))?;
            }
        }
        Ok(())
    }

    /// Inheritable and ambient first (raising them needs the permitted set still
    /// full), then effective, then permitted (which must stay a superset of effective).
    fn apply_rest(&self) -> Result<()> {
        use caps::CapSet;
        if let Some(i) = &self.inheritable {
            caps::set(None, CapSet::Inheritable, i).map_err(|e| caps_err("inheritable", e))?;
        }
        if let Some(a) = &self.ambient {
            // A cap can be ambient only if it is also permitted and inheritable; runc's
            // default spec lists ambient caps without inheritable ones, and runc and
            // crun skip those that cannot be raised. So do we.
            let _ = caps::clear(None, CapSet::Ambient);
            for cap in a {
                let _ = caps::raise(None, CapSet::Ambient, *cap);
            }
        }
        for (set, value, name) in [
            (CapSet::Effective, &self.effective, "effective"),
            (CapSet::Permitted, &self.permitted, "permitted"),
        ] {
            if let Some(v) = value {
                caps::set(None, set, v).map_err(|e| caps_err(name, e))?;
            }
        }
        Ok(())
    }
}

/// `--explain`'s line for a loaded seccomp filter.
fn explain_seccomp(filter: &onggi_seccomp::Compiled) {
    crate::explain!(
        "seccomp: filter loaded, {} BPF instructions, flags {:#x}",
        filter.bpf().len() / 8,
        filter.flags()
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn find_program_uses_the_containers_path() {
        let env = vec!["PATH=/nonexistent:/bin:/usr/bin".to_string()];
        assert!(find_program("sh", &env)
            .unwrap()
            .to_str()
            .unwrap()
            .ends_with("/sh"));
        let e = find_program("no-such-program-xyz", &env)
            .unwrap_err()
            .to_string();
        assert!(e.contains("executable file not found in $PATH"), "{e}");
        let e = find_program("/no/such", &env).unwrap_err().to_string();
        assert!(e.contains("no such file or directory"), "{e}");
    }
}
