//! The engine's operations on containers: create, start (under a monitor), stop,
//! kill, rm, ps, logs, wait, inspect here; run -i/-t in `attach`, exec in
//! [`exec`], pause/unpause in `ops`, export and cp in [`files`], restart policies
//! in [`restart`], --init in `init`, the per-container lock in `lock`, the sweep of
//! half-made containers in `sweep`. The runtime is called as a library.
//!
//! ```text
//! DATA/engine.db                 container metadata (SQLite, WAL)
//! DATA/containers/<id>/          config.json, rootfs/ (the overlay), upper/, work/
//! DATA/containers/<id>/container.log   JSON lines, written by the monitor
//! RUN/runtime/                   the runtime's state (--root of onggi-runtime)
//! RUN/containers/<id>/exit       the monitor's record of the init's exit
//! ```
//!
//! Starting: the engine forks; the child makes a new session, becomes a child
//! subreaper, creates the container with stdout/stderr on pipes (so the init is
//! its child), starts it, tells the parent the init's PID, and execs
//! `onggi-monitor` with the pipes' read ends: the monitor writes the logs, waits
//! for the init and records its exit, then runs `onggi __exited ID`, which
//! records it in the database and releases what the container held, then applies
//! the restart policy ([`restart`]). A container whose monitor is gone (killed) is
//! found so by the next command, which stops it, records why and runs that hook
//! itself. One command at a time changes a container's lifecycle (`lock.rs`); what a
//! killed command left half-made is swept or settled by the next (`sweep.rs`).

mod attach;
pub mod exec;
pub mod files;
mod init;
pub mod inspect;
mod lock;
mod ops;
pub mod restart;
mod sweep;

use std::fs;
use std::io::Write;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};

use nix::sys::signal::Signal;
use nix::unistd::Pid;
use onggi_image::{rootfs, Store};
use onggi_runtime::{CreateOpts, Runtime};
use serde::Deserialize;

use crate::db::{Db, Record, State};
use crate::error::{Context, Error, Result};
use crate::spec::RunOptions;

/// Where the engine keeps things.
#[derive(Debug, Clone)]
pub struct Roots {
    /// Images, containers' directories and the database (`/var/lib/onggi`).
    pub data: PathBuf,
    /// Runtime state and exit records (`/run/onggi`, a tmpfs).
    pub run: PathBuf,
}

/// The engine, opened on its roots.
pub struct Engine {
    roots: Roots,
    store: Store,
    db: Db,
    runtime: Runtime,
    /// The `onggi` binary (for the monitor's exit hook) and `onggi-monitor`.
    bin_dir: PathBuf,
}

/// What the monitor writes when the init exits.
#[derive(Debug, Deserialize)]
struct ExitFile {
    exit_code: i32,
    finished_at: String,
}

impl Engine {
    /// Open the store and database under `roots`; `bin_dir` holds `onggi` and
    /// `onggi-monitor`.
    pub fn open(roots: Roots, bin_dir: PathBuf) -> Result<Engine> {
        // The monitor works in / and takes absolute paths only.
        let abs =
            |p: &Path| std::path::absolute(p).step(|| format!("make {} absolute", p.display()));
        let roots = Roots {
            data: abs(&roots.data)?,
            run: abs(&roots.run)?,
        };
        for d in [
            roots.data.join("containers"),
            roots.run.join("containers"),
            roots.run.join("runtime"),
        ] {
            fs::create_dir_all(&d).step(|| format!("create {}", d.display()))?;
        }
        let store = Store::open(&roots.data)?;
        let db = Db::open(&roots.data.join("engine.db"))?;
        let runtime = Runtime {
            store: roots.run.join("runtime"),
            systemd_cgroup: false,
        };
        Ok(Engine {
            roots,
            store,
            db,
            runtime,
            bin_dir,
        })
    }

    /// The image store.
    pub fn store(&self) -> &Store {
        &self.store
    }

    fn dir(&self, id: &str) -> PathBuf {
        self.roots.data.join("containers").join(id)
    }

    fn exit_file(&self, id: &str) -> PathBuf {
        self.roots.run.join("containers").join(id).join("exit")
    }

    /// The container's log file.
    pub fn log_file(&self, id: &str) -> PathBuf {
        self.dir(id).join("container.log")
    }

    /// `create`: a container of `image` named `name` (or a generated one), not started.
    pub fn create(
        &self,
        image_ref: &str,
        name: Option<&str>,
        o: &RunOptions,
        auto_remove: bool,
    ) -> Result<Record> {
        crate::spec::check(o)?;
        let image = self.store.resolve(image_ref)?;
        let id = crate::names::new_id()?;
        let generated = name.is_none();
        let name = match name {
            Some(n) => {
                crate::names::check(n)?;
                n.to_owned()
            }
            None => crate::names::generate(&id),
        };
        let dir = self.dir(&id);
        let made = (|| {
            fs::create_dir_all(dir.join("rootfs")).step(|| format!("create {}", dir.display()))?;
            let _lock = self.lock(&id)?;
            let config = onggi_image::bundle::image_config(&self.store, &image)?;
            // Names in -u are looked up in the image's own /etc/passwd (its top layer that has one).
            let etc = image
                .layers
                .iter()
                .rev()
                .map(|l| self.store.layer_path(&l.diff_id))
                .find(|p| p.join("etc/passwd").exists())
                .unwrap_or_else(|| dir.join("rootfs"));
            let spec = crate::spec::config_json(&config, Path::new("rootfs"), &etc, &id, o)?;
            let spec = init::apply(spec, o.init, &self.bin_dir)?;
            let data = serde_json::to_vec_pretty(&spec).expect("spec serializes");
            fs::write(dir.join("config.json"), data)
                .step(|| format!("write {}/config.json", dir.display()))?;
            self.store.hold(&image.id, &id)?;
            let mut record = Record {
                id: id.clone(),
                name,
                image: image.id.to_string(),
                image_ref: image_ref.to_owned(),
                config: serde_json::json!({ "options": o, "auto_remove": auto_remove }),
                created: onggi_runtime::state::rfc3339_now(),
                state: State::Created,
                pid: None,
                monitor_pid: None,
                monitor_start: None,
                started_at: None,
                finished_at: None,
                exit_code: None,
                exit_cause: None,
                restart_count: 0,
            };
            // The commit point: before this row, the directory is nobody's; a name in
            // use is refused here (UNIQUE), and what was made is removed below. A
            // generated name that is taken (one of 40000: among 100 containers, a
            // one-in-eight chance) is drawn again, as Docker does.
            let draw = || Ok(crate::names::generate(&crate::names::new_id()?));
            insert_drawing_names(&self.db, &mut record, generated.then_some(draw))?;
            Ok(record)
        })();
        if made.is_err() {
            let _ = self.store.release(&image.id, &id);
            let _ = fs::remove_dir_all(&dir);
        }
        made
    }

    /// `start`: mount the root filesystem, create and start the container under its
    /// monitor. Returns the record with the init's PID.
    pub fn start(&self, what: &str) -> Result<Record> {
        let _lock = self.lock(&self.db.find(what)?.id)?;
        let mut rec = self.refresh(self.db.find(what)?)?;
        match rec.state {
            State::Created | State::Exited => {}
            State::Running | State::Paused => return Ok(rec),
        }
        let image = self.store.resolve(&rec.image)?;
        let dir = self.dir(&rec.id);
        let fs = rootfs::mount_image(&self.store, &image, &dir)?;
        onggi_runtime::explain!(
            "mount new overlay on {}: {} image layers below, {} above",
            fs.rootfs.display(),
            image.layers.len(),
            dir.join("upper").display()
        );
        let _ = fs::remove_file(self.exit_file(&rec.id));
        let started = self.spawn_monitor(&rec, &dir);
        let (pid, monitor) = match started {
            Ok(p) => p,
            Err(e) => {
                let _ = rootfs::unmount(&dir);
                return Err(e);
            }
        };
        rec.state = State::Running;
        rec.pid = Some(pid);
        rec.monitor_pid = Some(monitor.as_raw());
        rec.monitor_start =
            onggi_runtime::state::read_start_time(Path::new("/proc"), monitor).map(|s| s.1);
        rec.started_at = Some(onggi_runtime::state::rfc3339_now());
        rec.finished_at = None;
        rec.exit_code = None;
        rec.exit_cause = None;
        self.db.update(&rec)?;
        Ok(rec)
    }

    /// Fork the monitor: it creates and starts the container and execs
    /// `onggi-monitor`. Returns (init PID, monitor PID) once the init runs.
    fn spawn_monitor(&self, rec: &Record, dir: &Path) -> Result<(i32, Pid)> {
        let id = rec.id.as_str();
        let (ready_r, ready_w) = cloexec_pipe()?;
        let exit_dir = self.roots.run.join("containers").join(id);
        fs::create_dir_all(&exit_dir).step(|| format!("create {}", exit_dir.display()))?;
        match onggi_sys::clone_fork(0).step(|| "fork the monitor")? {
            onggi_sys::Forked::Child => {
                drop(ready_r);
                let e = match self.become_monitor(rec, dir, &ready_w) {
                    Ok(never) => match never {},
                    Err(e) => e,
                };
                let _ = nix::unistd::write(
                    &ready_w,
                    format!("err {}\n", onggi_runtime::error::one_line(&e)).as_bytes(),
                );
                std::process::exit(1)
            }
            onggi_sys::Forked::Parent(monitor) => {
                drop(ready_w);
                // One line, "ok PID" or "err MESSAGE": not to EOF, which comes only
                // when the monitor has exec'd.
                let mut msg = String::new();
                let _ = std::io::BufRead::read_line(
                    &mut std::io::BufReader::new(fs::File::from(ready_r)),
                    &mut msg,
                );
                if let Some(pid) = msg.strip_prefix("ok ") {
                    let pid = pid.trim().parse().unwrap_or(0);
                    return Ok((pid, monitor));
                }
                let _ = nix::sys::wait::waitpid(monitor, None);
                let message = msg
                    .strip_prefix("err ")
                    .unwrap_or("the monitor exited without a word")
                    .to_owned();
                // Docker: 127 for a command not found, 126 for one that cannot be executed.
                if message.contains("executable file not found")
                    || message.contains("no such file or directory") && message.contains("exec")
                {
                    return Err(Error::Exec { code: 127, message });
                }
                if message.contains("permission denied") && message.contains("exec") {
                    return Err(Error::Exec { code: 126, message });
                }
                Err(Error::WrongState {
                    id: id.to_owned(),
                    reason: format!("start: {message}"),
                })
            }
        }
    }

    /// In the forked child: session, subreaper, stdio on pipes, create, start,
    /// report, exec the monitor.
    ///
    /// The init's stdin is /dev/null, or with `-i` a pipe whose write end the
    /// monitor holds as its own stdin (never writing: the program sees no EOF, as
    /// under Docker without an attached client). Its stdout and stderr are pipes
    /// the monitor logs; with `-t` the pty's slave instead, and the monitor logs
    /// (and holds) the master.
    fn become_monitor(
        &self,
        rec: &Record,
        dir: &Path,
        ready: &OwnedFd,
    ) -> Result<std::convert::Infallible> {
        use nix::unistd::{dup2_stderr, dup2_stdin, dup2_stdout};
        use std::os::fd::AsFd;
        let id = rec.id.as_str();
        let option = |name: &str| rec.config["options"][name] == true;
        let (interactive, tty) = (option("interactive"), option("tty"));
        nix::unistd::setsid().step(|| "setsid")?;
        nix::sys::prctl::set_child_subreaper(true).step(|| "become a child subreaper")?;
        let null = fs::File::options()
            .read(true)
            .write(true)
            .open("/dev/null")
            .step(|| "open /dev/null")?;
        let stdin_w = if interactive && !tty {
            let (r, w) = cloexec_pipe()?;
            dup2_stdin(r.as_fd()).step(|| "dup2 stdin")?;
            Some(w)
        } else {
            dup2_stdin(null.as_fd()).step(|| "dup2 stdin")?;
            None
        };
        let logged = if tty {
            None
        } else {
            // The init inherits fds 1 and 2: the pipes' write ends.
            let (out_r, out_w) = cloexec_pipe()?;
            let (err_r, err_w) = cloexec_pipe()?;
            dup2_stdout(out_w.as_fd()).step(|| "dup2 stdout")?;
            dup2_stderr(err_w.as_fd()).step(|| "dup2 stderr")?;
            Some((out_r, err_r))
        };
        let opts = CreateOpts {
            id: id.to_owned(),
            bundle: dir.to_path_buf(),
            pid_file: None,
            console_socket: None,
            no_pivot: false,
            no_new_keyring: false,
            preserve_fds: 0,
        };
        // The monitor itself must not hold the write ends: EOF comes when the
        // container's last writer goes. The init has its own copies by now.
        let started = self.runtime.run_detached(&opts);
        dup2_stdout(null.as_fd()).step(|| "dup2 stdout")?;
        dup2_stderr(null.as_fd()).step(|| "dup2 stderr")?;
        let (pid, master) = started?;
        let pid = pid.as_raw();
        match &stdin_w {
            Some(w) => dup2_stdin(w.as_fd()).step(|| "dup2 the stdin pipe for the monitor")?,
            None => dup2_stdin(null.as_fd()).step(|| "dup2 stdin")?,
        }
        let (out_r, err_r) = match (logged, master) {
            (Some((o, e)), _) => (o, Some(e)),
            (None, Some(m)) => (m, None),
            (None, None) => {
                return Err(Error::WrongState {
                    id: id.to_owned(),
                    reason: "-t: the runtime sent no pty master".into(),
                })
            }
        };
        nix::unistd::write(ready, format!("ok {pid}\n").as_bytes())
            .step(|| "report the init's pid")?;
        let monitor = self.bin_dir.join("onggi-monitor");
        let onggi = self.bin_dir.join("onggi");
        let mut args: Vec<String> = vec![
            "onggi-monitor".into(),
            "--id".into(),
            id.into(),
            "--pid".into(),
            pid.to_string(),
            "--exit-file".into(),
            self.exit_file(id).display().to_string(),
            "--log".into(),
            self.log_file(id).display().to_string(),
            "--stdout-fd".into(),
            out_r.as_raw_fd().to_string(),
        ];
        if let Some(e) = &err_r {
            args.extend(["--stderr-fd".into(), e.as_raw_fd().to_string()]);
        }
        // Last: the exit hook takes the rest of the line.
        args.extend([
            "--on-exit".into(),
            onggi.display().to_string(),
            "--root".into(),
            self.roots.data.display().to_string(),
            "--run-root".into(),
            self.roots.run.display().to_string(),
            "__exited".into(),
            id.into(),
        ]);
        for fd in std::iter::once(&out_r).chain(&err_r) {
            nix::fcntl::fcntl(
                fd,
                nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::empty()),
            )
            .step(|| "keep the log pipes across exec")?;
        }
        let cargs: Vec<std::ffi::CString> = args
            .iter()
            .map(|a| std::ffi::CString::new(a.as_str()).expect("no NUL"))
            .collect();
        let cpath = std::ffi::CString::new(monitor.as_os_str().as_encoded_bytes()).expect("no NUL");
        let env: Vec<std::ffi::CString> = vec![];
        let e = nix::unistd::execve(&cpath, &cargs, &env).unwrap_err();
        Err(e).step(|| format!("exec {}", monitor.display()))
    }

    /// Bring `rec` up to date: a running container whose monitor recorded its
    /// exit, or whose monitor is gone, is stopped and cleaned up now.
    pub fn refresh(&self, rec: Record) -> Result<Record> {
        if !matches!(rec.state, State::Running | State::Paused) {
            return self.settle(rec);
        }
        if !self.exit_file(&rec.id).exists() && self.monitor_alive(&rec) {
            return Ok(rec);
        }
        // Record the exit once: another command, or the restart policy, may be at it.
        let _lock = self.lock(&rec.id)?;
        let mut rec = self.db.find(&rec.id)?;
        if !matches!(rec.state, State::Running | State::Paused) {
            return Ok(rec);
        }
        let exit = fs::read(self.exit_file(&rec.id))
            .ok()
            .and_then(|d| serde_json::from_slice::<ExitFile>(&d).ok());
        let monitor_died = exit.is_none();
        if let Some(x) = exit {
            rec.exit_code = Some(x.exit_code);
            rec.finished_at = Some(x.finished_at);
        } else if self.monitor_alive(&rec) {
            return Ok(rec);
        } else {
            rec.exit_code = Some(137);
            rec.exit_cause = Some("its monitor died; the container was stopped".into());
            rec.finished_at = Some(onggi_runtime::state::rfc3339_now());
        }
        self.release_runtime(&rec.id);
        rec.state = State::Exited;
        rec.pid = None;
        rec.monitor_pid = None;
        rec.monitor_start = None;
        self.db.update(&rec)?;
        if monitor_died {
            // A dead monitor ran no exit hook (restart policy, --rm): run it now.
            self.run_exit_hook(&rec);
        }
        Ok(rec)
    }

    fn monitor_alive(&self, rec: &Record) -> bool {
        match (rec.monitor_pid, rec.monitor_start) {
            (Some(pid), Some(start)) => {
                onggi_runtime::state::process_alive(Pid::from_raw(pid), start)
            }
            _ => false,
        }
    }

    /// Remove the container from the runtime (killing what is left) and unmount
    /// its root filesystem; the upper directory stays for a later start.
    fn release_runtime(&self, id: &str) {
        let _ = self.runtime.delete(id, true);
        let _ = rootfs::unmount(&self.dir(id));
        let _ = fs::remove_file(self.exit_file(id));
    }

    /// What the monitor runs after writing the exit file: record the exit (and
    /// remove a `--rm` container). True when the restart policy wants the container
    /// started again, which [`Engine::restart_by_policy`] does.
    pub fn exited(&self, id: &str) -> Result<bool> {
        let rec = self.refresh(self.db.find(id)?)?;
        if rec.config["auto_remove"] == true {
            self.remove(&rec.id, true)?;
            return Ok(false);
        }
        self.restart_due(&rec)
    }

    /// Every container (refreshed), newest first; with `all`, the stopped ones too.
    pub fn list(&self, all: bool) -> Result<Vec<Record>> {
        let mut out = Vec::new();
        let rows = self.db.list()?;
        self.sweep(&rows);
        for r in rows {
            let r = match self.refresh(r) {
                Err(Error::NoSuchContainer(_)) => continue, // removed meanwhile
                r => r?,
            };
            if all || matches!(r.state, State::Running | State::Paused) {
                out.push(r);
            }
        }
        Ok(out)
    }

    /// The container `what` names, refreshed.
    pub fn find(&self, what: &str) -> Result<Record> {
        self.refresh(self.db.find(what)?)
    }

    /// `kill`: send `signal` to the container's init.
    pub fn kill(&self, what: &str, signal: Signal) -> Result<Record> {
        let rec = self.find(what)?;
        if rec.state != State::Running && rec.state != State::Paused {
            return Err(Error::WrongState {
                id: rec.name,
                reason: "it is not running".into(),
            });
        }
        self.ended_by_user(&rec.id, Some(signal))?;
        self.signal(&rec, signal)?;
        Ok(rec)
    }

    /// Wait until the container is no longer running (at most `limit`); its record then.
    pub fn wait_exit(&self, what: &str, limit: Option<std::time::Duration>) -> Result<Record> {
        let start = std::time::Instant::now();
        loop {
            let rec = self.find(what)?;
            if !matches!(rec.state, State::Running | State::Paused) {
                return Ok(rec);
            }
            if limit.is_some_and(|l| start.elapsed() >= l) {
                return Ok(rec);
            }
            // A killed init is recorded within milliseconds: look often at first.
            let quick = start.elapsed() < std::time::Duration::from_millis(50);
            std::thread::sleep(std::time::Duration::from_millis(if quick { 1 } else { 5 }));
        }
    }

    /// `stop`: SIGTERM, then SIGKILL after `timeout`.
    pub fn stop(&self, what: &str, timeout: std::time::Duration) -> Result<Record> {
        let rec = self.find(what)?;
        self.ended_by_user(&rec.id, None)?;
        if !matches!(rec.state, State::Running | State::Paused) {
            return Ok(rec);
        }
        let _ = self.signal(&rec, Signal::SIGTERM);
        let rec = self.wait_exit(&rec.id, Some(timeout))?;
        if matches!(rec.state, State::Running | State::Paused) {
            let _ = self.signal(&rec, Signal::SIGKILL);
            return self.wait_exit(&rec.id, None);
        }
        Ok(rec)
    }

    /// `rm`: remove a stopped container (a running one only with `force`, which kills it).
    pub fn remove(&self, what: &str, force: bool) -> Result<Record> {
        let rec = self.find(what)?;
        self.ended_by_user(&rec.id, None)?;
        let rec = if matches!(rec.state, State::Running | State::Paused) {
            if !force {
                return Err(Error::WrongState {
                    id: rec.name,
                    reason: "it is running: stop it first, or remove it with -f".into(),
                });
            }
            let _ = self.signal(&rec, Signal::SIGKILL);
            self.wait_exit(&rec.id, None)?
        } else {
            rec
        };
        self.release_runtime(&rec.id);
        rootfs::remove(&self.dir(&rec.id))?;
        let _ = fs::remove_dir_all(self.roots.run.join("containers").join(&rec.id));
        if let Ok(d) = rec.image.parse() {
            self.store.release(&d, &rec.id)?;
        }
        self.db.delete(&rec.id)?;
        Ok(rec)
    }

    /// The container's log, JSON lines as the monitor wrote them.
    pub fn log_path(&self, what: &str) -> Result<(Record, PathBuf)> {
        let rec = self.find(what)?;
        let p = self.log_file(&rec.id);
        Ok((rec, p))
    }

    /// Write a container's JSON log lines to `out` (stdout) and `err` (stderr).
    pub fn copy_log_lines(line: &str, timestamps: bool, out: &mut dyn Write, err: &mut dyn Write) {
        let Ok(v) = serde_json::from_str::<serde_json::Value>(line) else {
            return;
        };
        let text = v["log"].as_str().unwrap_or("");
        let w: &mut dyn Write = if v["stream"] == "stderr" { err } else { out };
        if timestamps {
            let _ = write!(w, "{} ", v["time"].as_str().unwrap_or(""));
        }
        let _ = w.write_all(text.as_bytes());
    }
}

/// Insert `record`; when its name is taken and `draw` is given (the name was
/// generated), draw another name and try again (a hundred times at most).
fn insert_drawing_names(
    db: &Db,
    record: &mut Record,
    mut draw: Option<impl FnMut() -> Result<String>>,
) -> Result<()> {
    let mut draws = 0;
    loop {
        match (db.insert(record), draw.as_mut()) {
            (Err(Error::NameInUse(_)), Some(draw)) if draws < 100 => {
                draws += 1;
                record.name = draw()?;
            }
            (r, _) => return r,
        }
    }
}

/// A pipe whose ends close at exec (the monitor keeps only what it is told to).
fn cloexec_pipe() -> Result<(OwnedFd, OwnedFd)> {
    nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).step(|| "pipe")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::tests::record;

    #[test]
    fn a_generated_name_in_use_is_drawn_again_a_given_one_refused() {
        let d = tempfile::tempdir().unwrap();
        let db = Db::open(&d.path().join("engine.db")).unwrap();
        db.insert(&record("a1", "kind_pine_7")).unwrap();
        db.insert(&record("a2", "kind_pine_8")).unwrap();
        let mut drawn = ["kind_pine_8", "kind_pine_9"].into_iter();
        let mut r = record("b1", "kind_pine_7");
        let draw = || Ok(drawn.next().unwrap().to_owned());
        insert_drawing_names(&db, &mut r, Some(draw)).unwrap();
        assert_eq!(db.find("b1").unwrap().name, "kind_pine_9");
        let mut given = record("c1", "kind_pine_7");
        let none: Option<fn() -> Result<String>> = None;
        let e = insert_drawing_names(&db, &mut given, none).unwrap_err();
        assert!(matches!(e, Error::NameInUse(n) if n == "kind_pine_7"));
    }
}
