//! The runtime's operations, as a library: create, start, run, state, kill, delete,
//! list, exec. The `onggi-runtime` binary is a thin command line over these, and the
//! engine calls them directly.
//!
//! The parent side of container creation lives here; the child side is
//! [`crate::init`]. A [`Cleanup`] guard undoes every step taken so far when any later
//! step fails, so a failed create leaves no state directory, cgroup or process.

use std::fs;
use std::os::fd::{AsFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{open, OFlag};
use nix::sched::{setns, CloneFlags};
use nix::sys::signal::{kill, sigprocmask, SigSet, SigmaskHow, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::stat::Mode;
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;
use onggi_cgroups::{Cgroup, Hierarchies};
use onggi_sys::{clone_fork, Forked};

use crate::error::{invalid, Context, Error, Result};
use crate::idmap;
use crate::init::{self, InitArgs, StartSignal};
use crate::lifecycle::{allowed, Op, Status};
use crate::plan::{self, Plan, ProcessPlan};
use crate::rootfs::CgroupMounts;
use crate::state::{self, Locked, OciState, Record, Store};
use crate::sync::{self, Channel, Msg};
use crate::{console, hooks};

/// Options common to every command (runc's global flags).
#[derive(Debug, Clone, Default)]
pub struct Runtime {
    /// State root.
    pub store: PathBuf,
    /// `--systemd-cgroup`.
    pub systemd_cgroup: bool,
}

/// Options of `create` and `run`.
#[derive(Debug, Clone, Default)]
pub struct CreateOpts {
    /// Container id.
    pub id: String,
    /// Bundle directory.
    pub bundle: PathBuf,
    /// Where to write the init's PID.
    pub pid_file: Option<PathBuf>,
    /// Where to send the pty master.
    pub console_socket: Option<PathBuf>,
    /// MS_MOVE + chroot instead of pivot_root.
    pub no_pivot: bool,
    /// Keep the caller's session keyring.
    pub no_new_keyring: bool,
    /// Pass descriptors 3..3+N to the container.
    pub preserve_fds: i32,
}

/// What `events` reports.
#[derive(Debug)]
pub enum Event {
    /// Periodic statistics of the container's cgroup.
    Stats(Box<onggi_cgroups::Stats>),
    /// The OOM killer killed a process in the container.
    Oom,
}

/// Options of `exec`.
#[derive(Debug, Clone, Default)]
pub struct ExecOpts {
    /// The process to run (already merged with the container's defaults).
    pub process: Option<oci_spec::runtime::Process>,
    /// Where to send the pty master (`process.terminal`).
    pub console_socket: Option<PathBuf>,
    /// Return once the process runs, instead of waiting for it.
    pub detach: bool,
    /// Where to write its PID.
    pub pid_file: Option<PathBuf>,
    /// Pass descriptors 3..3+N.
    pub preserve_fds: i32,
}

/// What `create` leaves for `run`: the container, its init, and the channel to it.
struct Launched {
    /// Held until the container is started (`None` after).
    locked: Option<Locked>,
    record: Record,
    channel: Channel,
    pid: Pid,
    cgroup: Option<Cgroup>,
    /// Where the init sends the pty master when `run` relays the terminal itself.
    console_rx: Option<UnixStream>,
}

/// Which command creates the container.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Launch {
    /// `create`: the init waits on exec.fifo.
    Create,
    /// `run -d`: started by message, then left running.
    Detached,
    /// `run -d` for a caller that keeps the terminal (the engine's monitor): as
    /// `Detached`, and the pty master comes back to the caller.
    Background,
    /// `run`: started by message, waited for, and its terminal relayed.
    Foreground,
}

/// Undo what a failed create did, in reverse order.
struct Cleanup<'a> {
    locked: Option<&'a Locked>,
    cgroup: Option<Cgroup>,
    pid: Option<Pid>,
}

impl Drop for Cleanup<'_> {
    fn drop(&mut self) {
        if let Some(pid) = self.pid {
            let _ = kill(pid, Signal::SIGKILL);
            let _ = waitpid(pid, None);
        }
        if let Some(cg) = &self.cgroup {
            let _ = cg.destroy();
        }
        if let Some(l) = self.locked {
            let _ = l.remove();
        }
    }
}

fn absolute(p: &Path) -> Result<PathBuf> {
    if p.is_absolute() {
        Ok(plan::normalize(p))
    } else {
        let cwd = std::env::current_dir().step(|| "get the current directory")?;
        Ok(plan::normalize(&cwd.join(p)))
    }
}

fn own_cgroup(path: &str) -> String {
    // Only relative cgroupsPaths need the caller's cgroup; skip the read otherwise.
    if path.starts_with('/') {
        String::new()
    } else {
        fs::read_to_string("/proc/self/cgroup").unwrap_or_default()
    }
}

/// Write `pid` to `path` atomically (containerd reads it as soon as it appears).
fn write_pid_file(path: &Path, pid: Pid) -> Result<()> {
    let tmp = path.with_extension("onggi-tmp");
    fs::write(&tmp, pid.to_string()).step(|| format!("write pid file {}", tmp.display()))?;
    fs::rename(&tmp, path).step(|| format!("rename pid file to {}", path.display()))
}

/// The host PIDs of every process in the PID namespace of `pid`, in order.
fn pids_in_namespace_of(pid: i32) -> Result<Vec<i32>> {
    use std::os::unix::fs::MetadataExt;
    let ns = |p: &str| fs::metadata(format!("/proc/{p}/ns/pid")).map(|m| (m.dev(), m.ino()));
    let theirs = ns(&pid.to_string()).step(|| format!("stat /proc/{pid}/ns/pid"))?;
    let mut pids: Vec<i32> = fs::read_dir("/proc")
        .step(|| "read /proc")?
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .filter(|p: &i32| ns(&p.to_string()).is_ok_and(|n| n == theirs))
        .collect();
    pids.sort_unstable();
    Ok(pids)
}

/// The cgroup, or none for a rootless caller without a delegated cgroup (as runc):
/// then limits other than device rules (which the user namespace enforces anyway:
/// no mknod, the host's devices bound in) cannot be had, and are refused.
fn usable_cgroup(
    cgroup: Cgroup,
    r: Option<&oci_spec::runtime::LinuxResources>,
) -> Result<Option<Cgroup>> {
    // Root's cgroups are always ours to make (create says what is wrong if not).
    if nix::unistd::geteuid().is_root() {
        return Ok(Some(cgroup));
    }
    let Err(dir) = cgroup.writable() else {
        return Ok(Some(cgroup));
    };
    let limits = r.is_some_and(|r| {
        r.memory().is_some()
            || r.cpu().is_some()
            || r.pids().is_some()
            || r.block_io().is_some()
            || r.hugepage_limits().as_ref().is_some_and(|v| !v.is_empty())
            || r.network().is_some()
            || r.rdma().as_ref().is_some_and(|v| !v.is_empty())
            || r.unified().as_ref().is_some_and(|v| !v.is_empty())
    });
    if limits {
        return Err(invalid(
            "linux.resources",
            format!(
                "limits need a cgroup, and no cgroup is delegated to uid {} ({} is not \
                 writable): remove the limits, or run in a delegated cgroup (cgroup v2, e.g. \
                 systemd-run --user --scope -p Delegate=yes)",
                nix::unistd::geteuid(),
                dir.display()
            ),
        ));
    }
    Ok(None)
}

/// The container's cgroup as the init needs it for `type: cgroup` mounts.
fn cgroup_mounts(h: &Hierarchies, cg: &Cgroup) -> CgroupMounts {
    if h.version() == onggi_cgroups::Version::V2 {
        return CgroupMounts {
            v2: true,
            v2_dir: cg.unified_path().map(Path::to_path_buf),
            v1: Vec::new(),
        };
    }
    let v1 = cg
        .paths()
        .map(|(name, dir)| {
            let opts = h
                .v1_mounts()
                .iter()
                .find(|m| m.name() == name)
                .map(|m| m.controllers().join(","))
                .unwrap_or_default();
            (name.to_string(), dir.to_path_buf(), opts)
        })
        .collect();
    CgroupMounts {
        v2: false,
        v2_dir: None,
        v1,
    }
}

impl Runtime {
    /// A runtime over the state root `store`.
    pub fn new(store: impl Into<PathBuf>) -> Self {
        Runtime {
            store: store.into(),
            systemd_cgroup: false,
        }
    }

    fn store(&self) -> Store {
        Store::new(&self.store)
    }

    /// Compile `linux.seccomp`, from the cache under the runtime root when this
    /// profile was compiled before (a cache that cannot be written is not an error).
    fn compile_seccomp(
        &self,
        s: Option<&oci_spec::runtime::LinuxSeccomp>,
    ) -> Result<Option<onggi_seccomp::Compiled>> {
        let Some(s) = s else { return Ok(None) };
        let compiled = match onggi_seccomp::compile_cached(s, &self.store.join(".seccomp-cache")) {
            Err(onggi_seccomp::Error::Cache { .. }) => onggi_seccomp::compile(s)?,
            r => r?,
        };
        Ok(Some(compiled))
    }

    /// `create`: set the container up and leave its init blocked until `start`.
    pub fn create(&self, o: &CreateOpts) -> Result<()> {
        let l = self.launch(o, Launch::Create)?;
        drop(l.channel);
        Ok(())
    }

    /// The shared part of `create` and `run`.
    fn launch(&self, o: &CreateOpts, mode: Launch) -> Result<Launched> {
        let run_mode = mode != Launch::Create;
        state::validate_id(&o.id)?;
        if self.systemd_cgroup {
            return Err(Error::Unsupported("--systemd-cgroup: systemd cgroup management is not supported yet; use the cgroupfs driver (omit the flag)".into()));
        }
        let bundle = absolute(&o.bundle)?;
        let plan = plan::plan(&plan::load_spec(&bundle)?, &bundle, &o.id)?;
        let process = check_launchable(&plan)?;
        crate::lsm::Lsms::check_host(process, plan.mount_label.as_deref(), "process")?;
        // Compiled (or taken from the cache) here: the init cannot see host paths.
        let seccomp = self.compile_seccomp(plan.seccomp.as_ref())?;
        // The pty master goes to --console-socket; `run` in the foreground without
        // one relays the terminal itself, as runc does.
        let (console, console_rx) = terminal_channel(
            process.terminal,
            o.console_socket.as_deref(),
            matches!(mode, Launch::Foreground | Launch::Background),
        )?;

        let locked = self.store().create_dir(&o.id)?;
        let mut undo = Cleanup {
            locked: Some(&locked),
            cgroup: None,
            pid: None,
        };

        let hier = self.hierarchies()?;
        // Only resolved here; the directories are made after the clone, while the
        // init does its first mounts (see `bootstrap`).
        let cgroup = Cgroup::new(&hier, &plan.cgroups_path, &own_cgroup(&plan.cgroups_path))?;
        let cgroup = usable_cgroup(cgroup, plan.resources.as_ref())?;
        // Bad limits are refused before anything is cloned.
        if let (Some(cg), Some(r)) = (&cgroup, &plan.resources) {
            cg.check(r)?;
        }
        let cg_view = match &cgroup {
            Some(cg)
                if plan
                    .mounts
                    .iter()
                    .any(|m| m.kind == plan::MountKind::Cgroup) =>
            {
                cgroup_mounts(&hier, cg)
            }
            _ => CgroupMounts::default(),
        };

        let start = if run_mode {
            StartSignal::Channel
        } else {
            let fifo = locked.fifo_path();
            nix::unistd::mkfifo(&fifo, Mode::from_bits_truncate(0o622))
                .step(|| format!("mkfifo {}", fifo.display()))?;
            let fd = open(
                &fifo,
                OFlag::O_RDONLY | OFlag::O_NONBLOCK | OFlag::O_CLOEXEC,
                Mode::empty(),
            )
            .step(|| format!("open {}", fifo.display()))?;
            StartSignal::Fifo(fd)
        };
        let (parent, child) = sync::pair().step(|| "socketpair for the bootstrap channel")?;
        if run_mode {
            block_signals()?;
            if !plan.join_namespaces.is_empty() {
                // The init is forked by an intermediate process that exits: adopt it,
                // so that we can wait for it.
                nix::sys::prctl::set_child_subreaper(true).step(|| "become a child subreaper")?;
            }
        }

        let pid = spawn_init(
            &plan,
            &o.id,
            child,
            start,
            console,
            cg_view,
            o,
            &[locked.lock_fd(), parent.raw_fd()],
            seccomp.as_ref(),
        )?;
        undo.pid = Some(pid);
        undo.cgroup = cgroup;
        let cgroup = undo.cgroup.as_ref();
        self.bootstrap(&plan, &parent, pid, cgroup, &o.id, &bundle)?;

        let record = Record {
            id: o.id.clone(),
            pid: pid.as_raw(),
            start_time: state::read_start_time(Path::new("/proc"), pid)
                .map(|s| s.1)
                .ok_or_else(|| Error::Init("the container's init exited during create".into()))?,
            bundle: bundle.clone(),
            rootfs: plan.rootfs.clone(),
            created: state::rfc3339_now(),
            owner: owner(),
            annotations: plan.annotations.clone(),
            // Empty: no cgroup (rootless, not delegated).
            cgroups_path: match cgroup {
                Some(_) => plan.cgroups_path.clone(),
                None => String::new(),
            },
            // The default parent (/onggi) is shared by every container that uses it:
            // whoever deletes the last one removes it, whoever made it.
            cgroup_owned_parents: match cgroup {
                Some(cg) if plan.cgroups_path == plan::default_cgroups_path(&o.id) => {
                    cg.owned_parents().max(1)
                }
                Some(cg) => cg.owned_parents(),
                None => 0,
            },
            own_pid_namespace: plan.new_namespaces.contains(CloneFlags::CLONE_NEWPID),
            process: plan.raw_process.clone(),
            seccomp: plan.seccomp.clone(),
            poststart: plan.hooks.poststart.clone(),
            poststop: plan.hooks.poststop.clone(),
            // `run` starts it by message right away: no exec.fifo tells the states apart.
            started: run_mode,
        };
        locked.save(&record)?;
        if let Some(p) = &o.pid_file {
            write_pid_file(&absolute(p)?, pid)?;
        }
        undo.pid = None;
        undo.locked = None;
        let cgroup = undo.cgroup.take();
        drop(undo);
        Ok(Launched {
            locked: Some(locked),
            record,
            channel: parent,
            pid,
            cgroup,
            console_rx,
        })
    }

    /// The parent's half of the bootstrap protocol (see [`crate::sync`]).
    fn bootstrap(
        &self,
        plan: &Plan,
        ch: &Channel,
        pid: Pid,
        cgroup: Option<&Cgroup>,
        id: &str,
        bundle: &Path,
    ) -> Result<()> {
        let remote = |e: sync::ChannelError| Error::Init(e.to_string());
        if plan.new_namespaces.contains(CloneFlags::CLONE_NEWUSER) {
            idmap::write_maps(pid, &plan.uid_mappings, &plan.gid_mappings)?;
        }
        idmap::send_mounts(plan, pid, ch)?;
        if let Some(cgroup) = cgroup {
            cgroup.create()?;
            for (controller, dir) in cgroup.paths() {
                crate::explain!("cgroup: {} at {}", controller, dir.display());
            }
            if let Some(dir) = cgroup.unified_path() {
                crate::explain!("cgroup: unified at {}", dir.display());
            }
            if let Some(r) = &plan.resources {
                apply_resources(cgroup, r, false)?;
            }
            cgroup.add_pid(pid.as_raw())?;
            crate::explain!("cgroup: the init (PID {pid}) moved into them");
        }
        ch.send(&Msg::Go).step(|| "send Go to the init")?;
        let creating = || {
            Record::oci_state_of(
                id,
                pid,
                bundle,
                &plan.rootfs,
                &plan.annotations,
                Status::Creating,
            )
        };
        let h = &plan.hooks;
        let wants_hooks = !(h.prestart.is_empty()
            && h.create_runtime.is_empty()
            && h.create_container.is_empty()
            && h.start_container.is_empty());
        if wants_hooks {
            ch.expect(Msg::CreateRuntimeHooks, "CreateRuntimeHooks")
                .map_err(remote)?;
            let json = serde_json::to_vec(&creating()).expect("state serializes");
            let r = hooks::run_all("prestart", &h.prestart, &json)
                .and_then(|()| hooks::run_all("createRuntime", &h.create_runtime, &json));
            if let Err(e) = r {
                let _ = ch.send(&Msg::Error(e.to_string()));
                return Err(e);
            }
            ch.send(&Msg::HooksDone(
                String::from_utf8(json).expect("serde_json writes UTF-8"),
            ))
            .step(|| "send HooksDone to the init")?;
        }
        let agent = plan
            .seccomp
            .as_ref()
            .filter(|s| s.listener_path().is_some())
            .map(|s| SeccompAgent::new(s, pid, &creating()));
        wait_ready(ch, agent.as_ref())
    }

    /// `start`: let a created container's init exec the user's program.
    pub fn start(&self, id: &str) -> Result<()> {
        let locked = self.store().lock(id, true)?;
        let rec = locked.load()?;
        let status = self.status_of(&locked, &rec);
        if !allowed(status, Op::Start) {
            return Err(Error::WrongState {
                op: "start",
                id: id.into(),
                status,
            });
        }
        let fifo = locked.fifo_path();
        let fd = open(
            &fifo,
            OFlag::O_WRONLY | OFlag::O_NONBLOCK | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .step(|| format!("open {} (is the init still waiting?)", fifo.display()))?;
        nix::unistd::write(&fd, b"0").step(|| format!("write {}", fifo.display()))?;
        fs::remove_file(&fifo).step(|| format!("remove {}", fifo.display()))?;
        // The init's read end is close-on-exec: once no reader is left (POLLERR on our
        // write end) the init has run its startContainer hooks and exec'd (or died,
        // saying why on its stderr). Only then is it "started" for poststart hooks.
        let mut fds = [nix::poll::PollFd::new(
            fd.as_fd(),
            nix::poll::PollFlags::empty(),
        )];
        loop {
            match nix::poll::poll(&mut fds, nix::poll::PollTimeout::NONE) {
                Err(Errno::EINTR) => continue,
                r => {
                    r.step(|| format!("wait for the init to exec (poll {})", fifo.display()))?;
                    break;
                }
            }
        }
        drop(fd);
        let st = serde_json::to_vec(&rec.oci_state(Status::Running)).expect("state serializes");
        hooks::run_all_warn("poststart", &rec.poststart, &st);
        Ok(())
    }

    /// `run`: create and start; in the foreground, forward signals to the container
    /// and return its exit code once it has exited and been deleted. `detach` returns
    /// right after start (see [`Runtime::run_detached`]).
    pub fn run(&self, o: &CreateOpts, detach: bool) -> Result<i32> {
        let old_mask = current_mask()?;
        let r = if detach {
            self.launch_and_start(o, Launch::Detached).map(|_| 0)
        } else {
            self.run_foreground(o)
        };
        restore_mask(&old_mask);
        r
    }

    /// `run -d` as a library call, for a caller that keeps the container's terminal
    /// itself (the engine's monitor): create and start in one go (no exec fifo, no
    /// second look at the state). Returns the init's PID once it runs the program
    /// and, when `process.terminal` is set and no console socket is given, the pty
    /// master.
    pub fn run_detached(&self, o: &CreateOpts) -> Result<(Pid, Option<OwnedFd>)> {
        let old_mask = current_mask()?;
        let r = self.launch_and_start(o, Launch::Background).and_then(|l| {
            // The init sent the master before Ready: it is waiting in the socket.
            let master = l.console_rx.as_ref().map(console::recv_master).transpose();
            if master.is_err() {
                let _ = self.delete(&o.id, true);
            }
            Ok((l.pid, master?))
        });
        restore_mask(&old_mask);
        r
    }

    /// Launch in a `run` mode and start: when this returns, the init has exec'd the
    /// program (else the container is deleted again) and poststart hooks have run.
    fn launch_and_start(&self, o: &CreateOpts, mode: Launch) -> Result<Launched> {
        let mut l = self.launch(o, mode)?;
        let started = l
            .channel
            .send(&Msg::Start)
            .step(|| "send Start to the init")
            .and_then(|()| wait_for_exec(&l.channel));
        // Others (state, kill, delete, a poststart hook) may act on it from now on.
        drop(l.locked.take());
        if let Err(e) = started {
            let _ = self.delete(&o.id, true);
            return Err(e);
        }
        let st =
            serde_json::to_vec(&l.record.oci_state(Status::Running)).expect("state serializes");
        hooks::run_all_warn("poststart", &l.record.poststart, &st);
        Ok(l)
    }

    fn run_foreground(&self, o: &CreateOpts) -> Result<i32> {
        let Launched {
            record,
            channel: _channel,
            pid,
            cgroup,
            console_rx,
            ..
        } = self.launch_and_start(o, Launch::Foreground)?;
        // The init sent the master before Ready, so it is waiting in the socket.
        let code = match console_rx.as_ref().map(console::recv_master).transpose() {
            Ok(master) => forward_and_wait(pid, master),
            Err(e) => {
                let _ = kill(pid, Signal::SIGKILL);
                Err(e)
            }
        };
        // The container has exited: delete it, as runc does after a foreground run
        // (unless someone already did).
        match self.store().lock(&o.id, true) {
            Ok(locked) => self.remove_container(&locked, &record, cgroup.as_ref())?,
            Err(Error::NotFound(_)) => {}
            Err(e) => return Err(e),
        }
        code
    }

    fn status_of(&self, locked: &Locked, rec: &Record) -> Status {
        locked.status(rec, || {
            self.cgroup_of(rec)
                .and_then(|c| c.is_frozen().ok())
                .unwrap_or(false)
        })
    }

    /// The host's cgroup hierarchies, detected once per change of what is mounted
    /// under the cgroup root (see [`Hierarchies::host_cached`]), the cache kept in
    /// the state root.
    fn hierarchies(&self) -> Result<Hierarchies> {
        Ok(Hierarchies::host_cached(
            &self.store.join(".cgroup-mounts"),
        )?)
    }

    fn cgroup_of(&self, rec: &Record) -> Option<Cgroup> {
        if rec.cgroups_path.is_empty() {
            return None;
        }
        let h = self.hierarchies().ok()?;
        let cg = Cgroup::new(&h, &rec.cgroups_path, &own_cgroup(&rec.cgroups_path)).ok()?;
        cg.set_owned_parents(rec.cgroup_owned_parents);
        Some(cg)
    }

    /// `state`: the spec's state document.
    pub fn state(&self, id: &str) -> Result<OciState> {
        let locked = self.store().lock(id, false)?;
        let rec = locked.load()?;
        Ok(rec.oci_state(self.status_of(&locked, &rec)))
    }

    /// `list`: the state of every container (those still being created are skipped).
    pub fn list(&self) -> Result<Vec<OciState>> {
        let mut out = Vec::new();
        for id in self.store().ids()? {
            if let Ok(st) = self.state(&id) {
                out.push(st);
            }
        }
        Ok(out)
    }

    /// `kill`: send `signal` to the init, or with `all` to every process in the
    /// container's cgroup.
    pub fn kill(&self, id: &str, signal: Signal, all: bool) -> Result<()> {
        let locked = self.store().lock(id, true)?;
        let rec = locked.load()?;
        let status = self.status_of(&locked, &rec);
        if !allowed(status, Op::Kill) {
            return Err(Error::WrongState {
                op: "kill",
                id: id.into(),
                status,
            });
        }
        if all {
            if let Some(cg) = self.cgroup_of(&rec) {
                cg.kill_all(signal)?;
            }
        }
        kill(Pid::from_raw(rec.pid), signal).step(|| format!("kill {} with {signal}", rec.pid))
    }

    /// Lock the container for a cgroup operation: its record, status and cgroup,
    /// after checking that `op` is allowed.
    fn cgroup_op(&self, id: &str, op: Op) -> Result<(Locked, Record, Cgroup)> {
        let locked = self.store().lock(id, true)?;
        let rec = locked.load()?;
        let status = self.status_of(&locked, &rec);
        if !allowed(status, op) {
            return Err(Error::WrongState {
                op: op.verb(),
                id: id.into(),
                status,
            });
        }
        let cgroup = self.cgroup_of(&rec).ok_or_else(|| Error::State {
            id: id.into(),
            reason: format!(
                "its cgroup {} cannot be resolved on this host",
                rec.cgroups_path
            ),
        })?;
        Ok((locked, rec, cgroup))
    }

    /// `pause`: freeze every process of a running container (v1 freezer, v2
    /// cgroup.freeze).
    pub fn pause(&self, id: &str) -> Result<()> {
        let (_locked, _rec, cgroup) = self.cgroup_op(id, Op::Pause)?;
        Ok(cgroup.freeze()?)
    }

    /// `resume`: thaw a paused container.
    pub fn resume(&self, id: &str) -> Result<()> {
        let (_locked, _rec, cgroup) = self.cgroup_op(id, Op::Resume)?;
        Ok(cgroup.thaw()?)
    }

    /// `ps`: the PIDs (in our PID namespace) of every process in the container's cgroup.
    pub fn pids(&self, id: &str) -> Result<Vec<i32>> {
        let locked = self.store().lock(id, false)?;
        let rec = locked.load()?;
        match self.cgroup_of(&rec) {
            Some(cg) => Ok(cg.pids()?),
            // No cgroup (rootless): the processes in the init's PID namespace.
            None if rec.own_pid_namespace && self.status_of(&locked, &rec) != Status::Stopped => {
                pids_in_namespace_of(rec.pid)
            }
            None => Ok(Vec::new()),
        }
    }

    /// `update`: change the resource limits of a live container. Only the fields set
    /// in `resources` are written.
    pub fn update(&self, id: &str, resources: &oci_spec::runtime::LinuxResources) -> Result<()> {
        let (_locked, _rec, cgroup) = self.cgroup_op(id, Op::Update)?;
        apply_resources(&cgroup, resources, true)
    }

    /// `events --stats`: the container's cgroup statistics now.
    pub fn stats(&self, id: &str) -> Result<onggi_cgroups::Stats> {
        let (_locked, _rec, cgroup) = self.cgroup_op(id, Op::Events)?;
        Ok(cgroup.stats()?)
    }

    /// `events`: call `each` with an event every `interval` (statistics) and as soon
    /// as the OOM killer strikes in the container's cgroup (polled every 100 ms),
    /// until the container stops or `each` returns false.
    pub fn events(
        &self,
        id: &str,
        interval: std::time::Duration,
        each: &mut dyn FnMut(Event) -> bool,
    ) -> Result<()> {
        let (locked, rec, cgroup) = self.cgroup_op(id, Op::Events)?;
        // Don't hold the lock while we stream: others must be able to act.
        drop(locked);
        let mut ooms = cgroup.oom_kill_count().unwrap_or(0);
        let tick = std::time::Duration::from_millis(100).min(interval);
        let mut next_stats = std::time::Instant::now();
        loop {
            // The OOM counter first: a kill that ended the container is still reported.
            let alive = state::process_alive(Pid::from_raw(rec.pid), rec.start_time);
            let now_ooms = cgroup.oom_kill_count().unwrap_or(ooms);
            if now_ooms > ooms {
                ooms = now_ooms;
                if !each(Event::Oom) {
                    return Ok(());
                }
            }
            if !alive {
                return Ok(());
            }
            if std::time::Instant::now() >= next_stats {
                next_stats += interval;
                match cgroup.stats() {
                    Ok(st) => {
                        if !each(Event::Stats(Box::new(st))) {
                            return Ok(());
                        }
                    }
                    // The cgroup went away: the container is being deleted.
                    Err(_) if !state::process_alive(Pid::from_raw(rec.pid), rec.start_time) => {
                        return Ok(())
                    }
                    Err(e) => return Err(e.into()),
                }
            }
            std::thread::sleep(tick);
        }
    }

    /// `delete`: remove a stopped (or created) container; `force` kills a running one.
    pub fn delete(&self, id: &str, force: bool) -> Result<()> {
        let locked = self.store().lock(id, true)?;
        let rec = match locked.load() {
            Ok(r) => r,
            // A create that died half-way: nothing to stop, only the directory to remove.
            Err(Error::State { .. }) if force => return locked.remove(),
            Err(e) => return Err(e),
        };
        let status = self.status_of(&locked, &rec);
        let op = if force { Op::ForceDelete } else { Op::Delete };
        if !allowed(status, op) {
            return Err(Error::WrongState {
                op: "delete",
                id: id.into(),
                status,
            });
        }
        let cgroup = self.cgroup_of(&rec);
        if status != Status::Stopped {
            stop_init(&rec, cgroup.as_ref(), status == Status::Paused)?;
            // Whatever else is in the cgroup (joined from outside the PID namespace)
            // goes too: cgroup.kill on v2, a signal each on v1.
            if let Some(cg) = &cgroup {
                cg.kill_all(Signal::SIGKILL)?;
            }
        }
        self.remove_container(&locked, &rec, cgroup.as_ref())
    }

    /// The end of every container: kill what is left in its cgroup (without a PID
    /// namespace of its own, the init's death does not take the others along), remove
    /// the cgroup and the state, then run the poststop hooks.
    fn remove_container(
        &self,
        locked: &Locked,
        rec: &Record,
        cgroup: Option<&Cgroup>,
    ) -> Result<()> {
        if let Some(cg) = cgroup {
            if !rec.own_pid_namespace {
                cg.kill_all(Signal::SIGKILL)?;
            }
            cg.destroy()?;
        }
        locked.remove()?;
        let st = serde_json::to_vec(&rec.oci_state(Status::Stopped)).expect("state serializes");
        hooks::run_all_warn("poststop", &rec.poststop, &st);
        Ok(())
    }

    /// The container's configured process: the defaults that `exec` flags modify.
    pub fn container_process(&self, id: &str) -> Result<Option<oci_spec::runtime::Process>> {
        let locked = self.store().lock(id, false)?;
        Ok(locked.load()?.process)
    }

    /// `exec`: run another process in every namespace and the cgroup of a running
    /// container. Returns its exit code, or 0 with `detach`.
    pub fn exec(&self, id: &str, o: &ExecOpts) -> Result<i32> {
        let (rec, cgroup) = {
            let locked = self.store().lock(id, false)?;
            let rec = locked.load()?;
            let status = self.status_of(&locked, &rec);
            if !allowed(status, Op::Exec) {
                return Err(Error::WrongState {
                    op: "exec in",
                    id: id.into(),
                    status,
                });
            }
            let cg = self.cgroup_of(&rec);
            (rec, cg)
        };
        let raw = o
            .process
            .as_ref()
            .ok_or_else(|| invalid("process", "exec needs a process"))?;
        let process = plan::process_plan(raw)?;
        crate::lsm::Lsms::check_host(&process, None, "process")?;
        let seccomp = self.compile_seccomp(rec.seccomp.as_ref())?;
        // As for `run`: without --console-socket, a foreground exec relays the terminal.
        let (console, console_rx) =
            terminal_channel(process.terminal, o.console_socket.as_deref(), !o.detach)?;
        let namespaces = container_namespaces(Pid::from_raw(rec.pid))?;
        let (parent, child) = sync::pair().step(|| "socketpair for exec")?;
        let old_mask = current_mask()?;
        if !o.detach {
            block_signals()?;
        }
        // Rootless, our only privilege over the container's namespaces is in its user
        // namespace (ours, we made it): join it first, for good, since no process can
        // go back to an ancestor user namespace; nor then to our own PID namespace. A
        // long-lived rootless caller should exec from a child process.
        let their_userns = namespaces
            .iter()
            .find(|(f, _)| *f == CloneFlags::CLONE_NEWUSER)
            .filter(|_| !nix::unistd::geteuid().is_root());
        if let Some((_, fd)) = their_userns {
            setns(fd, CloneFlags::CLONE_NEWUSER)
                .step(|| "join the container's user namespace (rootless)")?;
        }
        let rootless_join = their_userns.is_some();
        // Join the PID (and time) namespace here: it only applies to our children.
        // Ours are kept to come back to right after the fork, so that a long-lived
        // caller (the engine) does not fork its later children into the container.
        let mut restore = Vec::new();
        for (flag, fd) in &namespaces {
            if *flag == CloneFlags::CLONE_NEWPID || *flag == init::CLONE_NEWTIME {
                let ours = format!("/proc/self/ns/{}", ns_name(*flag));
                if rootless_join {
                    setns(fd, *flag)
                        .step(|| format!("join the container's {} namespace", ns_name(*flag)))?;
                    continue;
                }
                restore.push((
                    *flag,
                    open(
                        ours.as_str(),
                        OFlag::O_RDONLY | OFlag::O_CLOEXEC,
                        Mode::empty(),
                    )
                    .step(|| format!("open {ours}"))?,
                ));
                setns(fd, *flag)
                    .step(|| format!("join the container's {} namespace", ns_name(*flag)))?;
            }
        }
        let forked = clone_fork(0).step(|| "fork the exec process");
        if !matches!(forked, Ok(Forked::Child)) {
            for (flag, fd) in &restore {
                setns(fd, *flag)
                    .step(|| format!("return to our own {} namespace", ns_name(*flag)))?;
            }
        }
        let child_pid = match forked? {
            Forked::Child => {
                drop(parent);
                let r = exec_child(
                    &namespaces,
                    rootless_join,
                    &process,
                    console.as_ref(),
                    &child,
                    o.preserve_fds,
                    seccomp.as_ref(),
                );
                let e = match r {
                    Ok(never) => match never {},
                    Err(e) => e,
                };
                let _ = child.send(&Msg::Error(e.to_string()));
                std::process::exit(127)
            }
            Forked::Parent(p) => p,
        };
        drop(child);
        drop(console);
        let fail = |e: Error| {
            let _ = kill(child_pid, Signal::SIGKILL);
            let _ = waitpid(child_pid, None);
            e
        };
        if let Some(cg) = &cgroup {
            cg.add_pid(child_pid.as_raw()).map_err(|e| fail(e.into()))?;
        }
        parent
            .send(&Msg::Go)
            .step(|| "send Go to the exec process")
            .map_err(fail)?;
        let agent = rec
            .seccomp
            .as_ref()
            .filter(|s| s.listener_path().is_some())
            .map(|s| SeccompAgent::new(s, child_pid, &rec.oci_state(Status::Running)));
        wait_ready(&parent, agent.as_ref()).map_err(fail)?;
        wait_for_exec(&parent).map_err(fail)?;
        if let Some(p) = &o.pid_file {
            write_pid_file(&absolute(p)?, child_pid)?;
        }
        if o.detach {
            return Ok(0);
        }
        let master = console_rx
            .as_ref()
            .map(console::recv_master)
            .transpose()
            .map_err(fail)?;
        let code = forward_and_wait(child_pid, master)?;
        restore_mask(&old_mask);
        Ok(code)
    }
}

impl Record {
    /// The state document for a container that has no record yet (during create).
    fn oci_state_of(
        id: &str,
        pid: Pid,
        bundle: &Path,
        rootfs: &Path,
        ann: &std::collections::HashMap<String, String>,
        status: Status,
    ) -> OciState {
        OciState {
            oci_version: state::OCI_VERSION.into(),
            id: id.into(),
            status,
            pid: pid.as_raw(),
            bundle: bundle.into(),
            rootfs: rootfs.into(),
            created: state::rfc3339_now(),
            owner: owner(),
            annotations: ann.clone(),
        }
    }
}

/// What create needs beyond a valid plan: a process, a root filesystem that exists,
/// a mount namespace of its own.
fn check_launchable(plan: &Plan) -> Result<&ProcessPlan> {
    let process = plan
        .process
        .as_ref()
        .ok_or_else(|| invalid("process", "missing: the container needs a process to run"))?;
    if !fs::metadata(&plan.rootfs)
        .map(|m| m.is_dir())
        .unwrap_or(false)
    {
        return Err(invalid(
            "root.path",
            format!(
                "{} does not exist or is not a directory",
                plan.rootfs.display()
            ),
        ));
    }
    if !plan.new_namespaces.contains(CloneFlags::CLONE_NEWNS) {
        return Err(invalid(
            "linux.namespaces",
            "a new mount namespace is required",
        ));
    }
    Ok(process)
}

/// Where a process with a terminal sends its pty master: (the socket the process
/// gets, our end when we relay the terminal ourselves). With `--console-socket`, that
/// socket; without one, a socketpair when we stay in the foreground (`relay`), else an
/// error naming the field.
fn terminal_channel(
    terminal: bool,
    socket: Option<&Path>,
    relay: bool,
) -> Result<(Option<UnixStream>, Option<UnixStream>)> {
    match (terminal, socket) {
        (false, _) => Ok((None, None)),
        (true, Some(path)) => Ok((Some(console::connect(path)?), None)),
        (true, None) if relay => {
            let (ours, theirs) = UnixStream::pair().step(|| "socketpair for the terminal")?;
            Ok((Some(theirs), Some(ours)))
        }
        (true, None) => Err(invalid("process.terminal", "a terminal needs --console-socket (the pty master is sent there) unless the command stays in the foreground")),
    }
}

/// Clone the init (directly, or through an intermediate process that first joins the
/// namespaces given by path) and return its PID.
#[allow(clippy::too_many_arguments)]
fn spawn_init(
    plan: &Plan,
    id: &str,
    child: Channel,
    start: StartSignal,
    console: Option<UnixStream>,
    cgroup: CgroupMounts,
    o: &CreateOpts,
    parent_fds: &[RawFd],
    seccomp: Option<&onggi_seccomp::Compiled>,
) -> Result<Pid> {
    let args = |channel: Channel, start: StartSignal, console, cgroup| InitArgs {
        plan,
        channel,
        start,
        console,
        cgroup,
        no_pivot: o.no_pivot,
        no_new_keyring: o.no_new_keyring,
        preserve_fds: o.preserve_fds,
        id,
        seccomp,
    };
    // Only the namespaces that must exist at fork time: PID (the init must be its
    // PID 1) and user (it must own the others). The init unshares the rest itself
    // (`init::unshare_rest`), so the kernel builds them on the init's CPU while this
    // process makes the cgroup on the other.
    let flags = (plan.new_namespaces & init::CLONE_NAMESPACES).bits();
    if plan.join_namespaces.is_empty() {
        return match clone_fork(flags)
            .step(|| format!("clone the container's init with {:?}", plan.new_namespaces))?
        {
            Forked::Child => {
                close_parent_fds(parent_fds);
                init::main(args(child, start, console, cgroup))
            }
            Forked::Parent(pid) => {
                crate::explain!(
                    "clone {:?}: the init, PID {pid} on the host",
                    CloneFlags::from_bits_truncate(flags)
                );
                Ok(pid)
            }
        };
    }
    // Joining: setns in an intermediate process (the PID and user namespaces can only
    // be entered before the init is forked), which then clones the init.
    let ns_fds: Vec<(CloneFlags, OwnedFd)> = plan
        .join_namespaces
        .iter()
        .map(|(f, p)| {
            open(p, OFlag::O_RDONLY | OFlag::O_CLOEXEC, Mode::empty())
                .step(|| format!("open namespace {} ({})", p.display(), ns_name(*f)))
                .map(|fd| (*f, fd))
        })
        .collect::<Result<_>>()?;
    let (inter_parent, inter_child) =
        sync::pair().step(|| "socketpair for the intermediate process")?;
    match clone_fork(0).step(|| "fork the intermediate process")? {
        Forked::Child => {
            close_parent_fds(parent_fds);
            drop(inter_parent);
            for (f, fd) in &ns_fds {
                crate::explain!("setns: join the {} namespace given by path", ns_name(*f));
                if let Err(e) = setns(fd, *f) {
                    let _ = inter_child.send(&Msg::Error(format!(
                        "join {} namespace (linux.namespaces path): {e}",
                        ns_name(*f)
                    )));
                    std::process::exit(1);
                }
            }
            drop(ns_fds);
            match clone_fork(flags) {
                Ok(Forked::Child) => {
                    drop(inter_child);
                    crate::explain!(
                        "clone {:?}: the init, in the namespaces joined",
                        CloneFlags::from_bits_truncate(flags)
                    );
                    init::main(args(child, start, console, cgroup))
                }
                Ok(Forked::Parent(pid)) => {
                    let _ = inter_child.send(&Msg::InitPid(pid.as_raw()));
                    std::process::exit(0)
                }
                Err(e) => {
                    let _ =
                        inter_child.send(&Msg::Error(format!("clone the container's init: {e}")));
                    std::process::exit(1)
                }
            }
        }
        Forked::Parent(inter) => {
            drop(inter_child);
            let msg = inter_parent
                .recv()
                .step(|| "read the init's PID from the intermediate process");
            let _ = waitpid(inter, None);
            match msg? {
                Some(Msg::InitPid(p)) => Ok(Pid::from_raw(p)),
                Some(Msg::Error(e)) => Err(Error::Init(e)),
                other => Err(Error::Init(format!(
                    "intermediate process: unexpected {other:?}"
                ))),
            }
        }
    }
}

/// In a forked child: close the descriptors that belong to the parent. The state
/// lock must not be held by an init that waits for `start` (flock belongs to the open
/// file, so closing our copy leaves the parent's lock in place), and the parent's end
/// of the channel must go so that the parent's death reads as EOF.
fn close_parent_fds(fds: &[RawFd]) {
    for fd in fds {
        let _ = nix::unistd::close(*fd);
    }
}

fn ns_name(f: CloneFlags) -> &'static str {
    match f {
        CloneFlags::CLONE_NEWUSER => "user",
        CloneFlags::CLONE_NEWIPC => "ipc",
        CloneFlags::CLONE_NEWUTS => "uts",
        CloneFlags::CLONE_NEWNET => "net",
        CloneFlags::CLONE_NEWPID => "pid",
        CloneFlags::CLONE_NEWCGROUP => "cgroup",
        CloneFlags::CLONE_NEWNS => "mnt",
        _ => "time",
    }
}

/// Descriptors of the container's namespaces that differ from ours, in join order.
fn container_namespaces(pid: Pid) -> Result<Vec<(CloneFlags, OwnedFd)>> {
    use std::os::unix::fs::MetadataExt;
    let order = [
        ("user", CloneFlags::CLONE_NEWUSER),
        ("ipc", CloneFlags::CLONE_NEWIPC),
        ("uts", CloneFlags::CLONE_NEWUTS),
        ("net", CloneFlags::CLONE_NEWNET),
        ("pid", CloneFlags::CLONE_NEWPID),
        ("cgroup", CloneFlags::CLONE_NEWCGROUP),
        ("time", init::CLONE_NEWTIME),
        ("mnt", CloneFlags::CLONE_NEWNS),
    ];
    let mut out = Vec::new();
    for (name, flag) in order {
        let theirs = format!("/proc/{pid}/ns/{name}");
        let ours = format!("/proc/self/ns/{name}");
        let (Ok(a), Ok(b)) = (fs::metadata(&theirs), fs::metadata(&ours)) else {
            continue;
        };
        if a.ino() == b.ino() && a.dev() == b.dev() {
            continue;
        }
        let fd = open(
            theirs.as_str(),
            OFlag::O_RDONLY | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .step(|| format!("open {theirs}"))?;
        out.push((flag, fd));
    }
    Ok(out)
}

fn exec_child(
    ns: &[(CloneFlags, OwnedFd)],
    user_joined: bool,
    p: &ProcessPlan,
    console: Option<&UnixStream>,
    ch: &Channel,
    preserve_fds: i32,
    seccomp: Option<&onggi_seccomp::Compiled>,
) -> Result<std::convert::Infallible> {
    ch.expect(Msg::Go, "Go")
        .map_err(|e| Error::Init(e.to_string()))?;
    for (flag, fd) in ns {
        if *flag == CloneFlags::CLONE_NEWPID
            || *flag == init::CLONE_NEWTIME
            || (user_joined && *flag == CloneFlags::CLONE_NEWUSER)
        {
            continue;
        }
        setns(fd.as_fd(), *flag)
            .step(|| format!("join the container's {} namespace", ns_name(*flag)))?;
    }
    if p.terminal {
        init::setup_terminal(console, p.console_size, false)?;
    }
    init::prepare_process(p)?;
    let program = init::find_program(&p.args[0], &p.env)?;
    let seccomp = init::hand_listener_to_parent(ch, seccomp)?;
    ch.send(&Msg::Ready).step(|| "report ready")?;
    init::exec_process(p, &program, preserve_fds, seccomp)
}

/// Write `linux.resources` into the cgroup (`live`: an update of a running
/// container, which refuses a memory limit below the current usage when asked to),
/// saying on stderr which fields have no effect here; on cgroup v2 the device rules
/// become an eBPF program attached to the cgroup.
fn apply_resources(
    cgroup: &Cgroup,
    r: &oci_spec::runtime::LinuxResources,
    live: bool,
) -> Result<()> {
    let warnings = if live {
        cgroup.update(r)?
    } else {
        cgroup.apply(r)?
    };
    for w in warnings {
        eprintln!("warning: {w}");
    }
    if cgroup.device_rules_need_ebpf() {
        if let (Some(dir), Some(rules)) = (cgroup.unified_path(), r.devices()) {
            onggi_cgroups::ebpf::apply(dir, rules)?;
        }
    }
    Ok(())
}

/// The seccomp agent of a profile with a `listenerPath`, and what it is told with
/// the listener: the OCI `ContainerProcessState`.
struct SeccompAgent {
    path: PathBuf,
    message: Vec<u8>,
}

impl SeccompAgent {
    fn new(s: &oci_spec::runtime::LinuxSeccomp, pid: Pid, state: &impl serde::Serialize) -> Self {
        let mut message = serde_json::json!({
            "ociVersion": oci_spec::runtime::VERSION,
            "fds": ["seccompFd"],
            "pid": pid.as_raw(),
            "state": state,
        });
        if let Some(m) = s.listener_metadata() {
            message["metadata"] = m.as_str().into();
        }
        SeccompAgent {
            path: s.listener_path().clone().unwrap_or_default(),
            message: serde_json::to_vec(&message).expect("state serializes"),
        }
    }

    /// Connect to the agent and send the state with the listener attached.
    fn hand_over(&self, listener: std::os::fd::BorrowedFd<'_>) -> Result<()> {
        use nix::sys::socket::{sendmsg, ControlMessage, MsgFlags};
        use std::os::fd::AsRawFd;
        let field = "linux.seccomp.listenerPath";
        let sock = UnixStream::connect(&self.path)
            .step(|| format!("connect to {field} {}", self.path.display()))?;
        let iov = [std::io::IoSlice::new(&self.message)];
        let fds = [listener.as_raw_fd()];
        sendmsg::<()>(
            sock.as_raw_fd(),
            &iov,
            &[ControlMessage::ScmRights(&fds)],
            MsgFlags::MSG_NOSIGNAL,
            None,
        )
        .step(|| {
            format!(
                "send the seccomp listener to {field} {}",
                self.path.display()
            )
        })?;
        Ok(())
    }
}

/// Wait for the init's (or exec process's) `Ready`. A profile with a listener
/// sends it first (see [`init::hand_listener_to_parent`]): it goes to the agent.
fn wait_ready(ch: &Channel, agent: Option<&SeccompAgent>) -> Result<()> {
    let remote = |e: sync::ChannelError| Error::Init(e.to_string());
    loop {
        let (msg, fd) = ch.recv_with_fd().step(|| "wait for the init to be ready")?;
        match (msg, fd, agent) {
            (Some(Msg::Ready), _, _) => return Ok(()),
            (Some(Msg::SeccompFd), Some(fd), Some(agent)) => {
                if let Err(e) = agent.hand_over(fd.as_fd()) {
                    let _ = ch.send(&Msg::Error(e.to_string()));
                    return Err(e);
                }
                ch.send(&Msg::SeccompDone)
                    .step(|| "tell the init the agent has its listener")?;
            }
            (None, _, _) => return Err(remote(sync::ChannelError::Closed)),
            (Some(Msg::Error(e)), _, _) => return Err(Error::Init(e)),
            (Some(got), _, _) => {
                return Err(remote(sync::ChannelError::Unexpected {
                    expected: "Ready",
                    got,
                }))
            }
        }
    }
}

/// After `Start`: the channel is close-on-exec in the init, so end-of-file means the
/// user's program was exec'd; an `Error` means the last steps failed.
fn wait_for_exec(ch: &Channel) -> Result<()> {
    match ch.recv() {
        Ok(Some(Msg::Error(e))) => Err(Error::Init(e)),
        Ok(_) => Ok(()),
        Err(e) => Err(e).step(|| "wait for the init to exec"),
    }
}

/// Kill the init with SIGKILL and wait until it is gone (a pidfd becomes readable at
/// exit, whoever the parent is).
fn stop_init(rec: &Record, cgroup: Option<&Cgroup>, paused: bool) -> Result<()> {
    let pid = Pid::from_raw(rec.pid);
    let pidfd = match onggi_sys::pidfd_open(pid) {
        Ok(fd) => fd,
        Err(Errno::ESRCH) => return Ok(()),
        Err(e) => return Err(e).step(|| format!("pidfd_open {pid}")),
    };
    // The PID could have been reused between the status check and pidfd_open.
    if !state::process_alive(pid, rec.start_time) {
        return Ok(());
    }
    onggi_sys::pidfd_send_signal(&pidfd, libc::SIGKILL).step(|| format!("kill {pid}"))?;
    if paused {
        if let Some(cg) = cgroup {
            let _ = cg.thaw();
        }
    }
    let mut fds = [nix::poll::PollFd::new(
        pidfd.as_fd(),
        nix::poll::PollFlags::POLLIN,
    )];
    match nix::poll::poll(&mut fds, nix::poll::PollTimeout::from(10_000u16)) {
        Ok(0) => Err(Error::Init(format!(
            "container init {pid} did not die within 10 s of SIGKILL"
        ))),
        r => r.map(drop).step(|| format!("wait for {pid} to exit")),
    }
}

fn current_mask() -> Result<SigSet> {
    let mut old = SigSet::empty();
    sigprocmask(SigmaskHow::SIG_SETMASK, None, Some(&mut old)).step(|| "read the signal mask")?;
    Ok(old)
}

fn block_signals() -> Result<()> {
    sigprocmask(SigmaskHow::SIG_BLOCK, Some(&SigSet::all()), None)
        .step(|| "block signals for forwarding")
}

fn restore_mask(old: &SigSet) {
    let _ = sigprocmask(SigmaskHow::SIG_SETMASK, Some(old), None);
}

/// Wait for `pid` (our child) while forwarding every signal we receive to it, and,
/// with `tty` (the pty master of a container whose terminal we relay), copying our
/// stdin to it and its output to our stdout, our terminal in raw mode meanwhile.
/// Returns the exit code (128 + signal when killed), as a shell reports it.
fn forward_and_wait(pid: Pid, tty: Option<OwnedFd>) -> Result<i32> {
    use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
    let mut all = SigSet::all();
    all.remove(Signal::SIGKILL);
    all.remove(Signal::SIGSTOP);
    let sfd = SignalFd::with_flags(&all, SfdFlags::SFD_CLOEXEC).step(|| "signalfd")?;
    let _raw = tty
        .as_ref()
        .and_then(|m| console::RawMode::enter(std::io::stdin().as_fd(), m));
    let mut stdin_open = tty.is_some();
    let mut buf = [0u8; 8192];
    loop {
        // The child may have exited before we got here: check first, then wait.
        match waitpid(pid, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::Exited(_, code)) => {
                drain(tty.as_ref(), &mut buf);
                return Ok(code);
            }
            Ok(WaitStatus::Signaled(_, sig, _)) => {
                drain(tty.as_ref(), &mut buf);
                return Ok(128 + sig as i32);
            }
            Ok(_) => {}
            Err(Errno::EINTR) => continue,
            Err(e) => return Err(e).step(|| format!("wait for {pid}")),
        }
        let stdin = std::io::stdin();
        let mut fds = vec![PollFd::new(sfd.as_fd(), PollFlags::POLLIN)];
        if let Some(m) = &tty {
            fds.push(PollFd::new(m.as_fd(), PollFlags::POLLIN));
            if stdin_open {
                fds.push(PollFd::new(stdin.as_fd(), PollFlags::POLLIN));
            }
        }
        match poll(&mut fds, PollTimeout::NONE) {
            Err(Errno::EINTR) => continue,
            r => r.step(|| "poll the signal descriptor and the terminal")?,
        };
        let ready = |i: usize| {
            fds.get(i)
                .and_then(|f| f.revents())
                .is_some_and(|r| !r.is_empty())
        };
        let (sig_ready, master_ready, stdin_ready) = (ready(0), ready(1), ready(2));
        drop(fds);
        if let Some(m) = &tty {
            if master_ready {
                match nix::unistd::read(m, &mut buf) {
                    Ok(n) if n > 0 => write_all_stdout(&buf[..n]),
                    // EIO: every slave descriptor is closed; the exit follows.
                    _ => {}
                }
            }
            if stdin_ready {
                match nix::unistd::read(stdin.as_fd(), &mut buf) {
                    Ok(n) if n > 0 => {
                        let _ = nix::unistd::write(m, &buf[..n]);
                    }
                    _ => stdin_open = false,
                }
            }
        }
        if !sig_ready {
            continue;
        }
        let info = match sfd.read_signal() {
            Ok(Some(i)) => i,
            Ok(None) | Err(Errno::EINTR) => continue,
            Err(e) => return Err(e).step(|| "read signalfd"),
        };
        let sig = info.ssi_signo as i32;
        if sig == libc::SIGCHLD {
            // Reap other children too (we may be a subreaper for them).
            continue;
        }
        if sig == libc::SIGWINCH {
            if let Some(m) = &tty {
                // Resizing the pty signals the container's foreground process group.
                console::copy_window_size(std::io::stdin().as_fd(), m);
                continue;
            }
        }
        if let Ok(s) = Signal::try_from(sig) {
            let _ = kill(pid, s);
        }
    }
}

/// Copy what the container wrote before it exited.
fn drain(tty: Option<&OwnedFd>, buf: &mut [u8]) {
    let Some(m) = tty else { return };
    let mut fds = [nix::poll::PollFd::new(
        m.as_fd(),
        nix::poll::PollFlags::POLLIN,
    )];
    while nix::poll::poll(&mut fds, nix::poll::PollTimeout::ZERO).unwrap_or(0) > 0 {
        match nix::unistd::read(m, buf) {
            Ok(n) if n > 0 => write_all_stdout(&buf[..n]),
            _ => break,
        }
    }
}

fn write_all_stdout(data: &[u8]) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(data);
    let _ = out.flush();
}

/// The caller's user name from /etc/passwd (read directly: NSS cannot be loaded by a
/// static binary), or the uid.
fn owner() -> String {
    let uid = nix::unistd::getuid().as_raw().to_string();
    std::fs::read_to_string("/etc/passwd")
        .ok()
        .and_then(|p| {
            p.lines().find_map(|l| {
                let mut f = l.split(':');
                let name = f.next()?;
                (f.nth(1)? == uid).then(|| name.to_string())
            })
        })
        .unwrap_or(uid)
}
