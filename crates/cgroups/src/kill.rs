//! Signalling every process of a cgroup (`kill --all`, `delete --force`).
//!
//! With `SIGKILL` and a unified directory that has `cgroup.kill` (Linux 5.14+), one write
//! kills the whole subtree and keeps it from forking meanwhile. Otherwise, and on v1,
//! the PIDs are listed from `cgroup.procs` of the container's directory and of every
//! cgroup below it, in every hierarchy, and signalled one by one; for `SIGKILL` that is
//! repeated until the cgroup is empty (a process forked while the list was read is
//! caught in the next round), for up to [`KILL_PATIENCE`].

use std::collections::BTreeSet;
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::sys::signal::{self, Signal};
use nix::unistd::Pid;

use crate::cgroup::Cgroup;
use crate::error::{Error, Result};
use crate::fs;
use crate::hierarchy::Version;

/// How long `kill_all(SIGKILL)` waits for the cgroup to empty.
pub(crate) const KILL_PATIENCE: Duration = Duration::from_secs(1);

impl Cgroup {
    /// Send `sig` to every process in the cgroup and in the cgroups below it.
    ///
    /// `SIGKILL` returns once no process is left (killed processes that are zombies do
    /// not count), or fails with [`Error::KillTimeout`] after about a second. A frozen
    /// cgroup is thawed for it, as its processes cannot die frozen on v1. Other signals
    /// are sent once to each process listed. A process that is already gone is not
    /// an error.
    pub fn kill_all(&self, sig: Signal) -> Result<()> {
        if sig == Signal::SIGKILL {
            self.write_cgroup_kill()?;
        }
        let deadline = Instant::now() + KILL_PATIENCE;
        let mut tries = 0u32;
        loop {
            let pids = self.all_pids()?;
            if pids.is_empty() {
                return Ok(());
            }
            for &pid in &pids {
                send(pid, sig)?;
            }
            if sig != Signal::SIGKILL {
                return Ok(());
            }
            if tries == 0 && self.is_frozen().unwrap_or(false) {
                self.thaw()?;
            }
            if Instant::now() > deadline {
                return Err(Error::KillTimeout {
                    path: self.procs_dir().to_owned(),
                    pids: pids.into_iter().collect(),
                    waited_ms: KILL_PATIENCE.as_millis() as u64,
                });
            }
            tries += 1;
            std::thread::sleep(Duration::from_millis((1u64 << tries.min(4)).min(10)));
        }
    }

    /// `1` to `cgroup.kill` of the unified directory, where there is one (not before
    /// Linux 5.14; on hybrid, not when the unified cgroup was not made).
    fn write_cgroup_kill(&self) -> Result<()> {
        let Some(dir) = self.unified_path() else {
            return Ok(());
        };
        let path = dir.join("cgroup.kill");
        match fs::write_raw(&path, "1") {
            Ok(()) => Ok(()),
            Err(e) if fs::is(&e, libc::ENOENT) => Ok(()),
            Err(e)
                if self.version() == Version::Hybrid
                    && matches!(e.raw_os_error(), Some(libc::EACCES | libc::EPERM)) =>
            {
                Ok(())
            }
            Err(e) => Err(fs::write_error(path, "1", e)),
        }
    }

    /// Every PID in the cgroup's subtree, over all hierarchies.
    fn all_pids(&self) -> Result<BTreeSet<i32>> {
        let mut pids = BTreeSet::new();
        let v1 = self.paths().map(|(_, p)| p);
        for dir in v1.chain(self.unified_path()) {
            collect_pids(dir, &mut pids)?;
        }
        Ok(pids)
    }

    /// A directory to name in errors: the pids hierarchy's, else any.
    fn procs_dir(&self) -> &Path {
        self.path("pids")
            .or_else(|| self.paths().next().map(|(_, p)| p))
            .or_else(|| self.unified_path())
            .unwrap_or(Path::new("/"))
    }
}

/// Add the PIDs of `dir`'s `cgroup.procs` and of every cgroup below it. A directory
/// that is gone (the cgroup was removed meanwhile) adds nothing.
fn collect_pids(dir: &Path, pids: &mut BTreeSet<i32>) -> Result<()> {
    let procs = dir.join("cgroup.procs");
    let text = match fs::read_raw(&procs) {
        Ok(t) => t,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(source) => {
            return Err(Error::Read {
                path: procs,
                source,
            })
        }
    };
    for line in text.lines() {
        // Never 0 or negative: kill(2) would take those as process groups or "all".
        match line.trim().parse::<i32>() {
            Ok(pid) if pid > 0 => pids.insert(pid),
            _ => {
                return Err(Error::Parse {
                    path: procs,
                    reason: format!("{line:?} is not a PID"),
                })
            }
        };
    }
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(source) => {
            return Err(Error::ReadDir {
                path: dir.to_owned(),
                source,
            })
        }
    };
    for entry in entries {
        let entry = entry.map_err(|source| Error::ReadDir {
            path: PathBuf::from(dir),
            source,
        })?;
        if entry.file_type().is_ok_and(|t| t.is_dir()) {
            collect_pids(&entry.path(), pids)?;
        }
    }
    Ok(())
}

/// `kill(2)`; a process that is gone (`ESRCH`) is fine.
fn send(pid: i32, sig: Signal) -> Result<()> {
    match signal::kill(Pid::from_raw(pid), sig) {
        Ok(()) | Err(Errno::ESRCH) => Ok(()),
        Err(e) => Err(Error::Signal {
            pid,
            signal: sig.as_str(),
            source: io::Error::from(e),
        }),
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::process::ExitStatusExt;
    use std::process::{Child, Command};

    use tempfile::TempDir;

    use super::*;
    use crate::hierarchy::tests::V2;
    use crate::testutil::{cat, detect, files, leaf, V1_ALL};

    /// A `sleep` child, killed and reaped on drop if the test did not.
    struct Sleeper(Child);

    impl Sleeper {
        fn new() -> Sleeper {
            Sleeper(Command::new("sleep").arg("30").spawn().unwrap())
        }
        fn pid(&self) -> i32 {
            self.0.id() as i32
        }
    }

    impl Drop for Sleeper {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }

    /// A v1 fixture where `pid` sits in a child cgroup of the container's (in the pids
    /// hierarchy) and in the leaf of the others.
    fn v1_with(root: &Path, pid: i32) -> Cgroup {
        let cg = Cgroup::new(&detect(root, V1_ALL), "/onggi/c1", "").unwrap();
        for (name, dir) in cg.paths() {
            let procs = if name == "pids" {
                String::new()
            } else {
                format!("{pid}\n")
            };
            files(dir, &[("cgroup.procs", &procs)]);
        }
        files(
            &leaf(root, "pids").join("inner"),
            &[("cgroup.procs", &format!("{pid}\n"))],
        );
        cg
    }

    #[test]
    fn other_signals_are_sent_once_to_every_process_below() {
        let tmp = TempDir::new().unwrap();
        let mut child = Sleeper::new();
        let cg = v1_with(tmp.path(), child.pid());
        assert_eq!(cg.all_pids().unwrap(), BTreeSet::from([child.pid()]));
        cg.kill_all(Signal::SIGTERM).unwrap();
        let status = child.0.wait().unwrap();
        assert_eq!(status.signal(), Some(libc::SIGTERM));
    }

    #[test]
    fn sigkill_repeats_until_the_cgroup_is_empty() {
        let tmp = TempDir::new().unwrap();
        let child = Sleeper::new();
        let cg = v1_with(tmp.path(), child.pid());
        // Play the kernel: once the child is dead, it leaves cgroup.procs.
        let dirs: Vec<PathBuf> = cg
            .paths()
            .map(|(_, p)| p.to_owned())
            .chain([leaf(tmp.path(), "pids").join("inner")])
            .collect();
        let mut child = child;
        let reaper = std::thread::spawn(move || {
            let status = child.0.wait().unwrap();
            for d in dirs {
                std::fs::write(d.join("cgroup.procs"), "").unwrap();
            }
            status
        });
        cg.kill_all(Signal::SIGKILL).unwrap();
        assert_eq!(reaper.join().unwrap().signal(), Some(libc::SIGKILL));
    }

    #[test]
    fn sigkill_gives_up_naming_the_processes_left() {
        let tmp = TempDir::new().unwrap();
        let mut child = Sleeper::new();
        let pid = child.pid();
        let cg = v1_with(tmp.path(), pid);
        let e = cg.kill_all(Signal::SIGKILL).unwrap_err();
        assert!(
            matches!(&e, Error::KillTimeout { pids, path, .. } if *pids == [pid] && path.ends_with("pids/onggi/c1")),
            "{e}"
        );
        assert_eq!(child.0.wait().unwrap().signal(), Some(libc::SIGKILL));
    }

    #[test]
    fn v2_writes_cgroup_kill_when_there_is_one() {
        let tmp = TempDir::new().unwrap();
        let cg = Cgroup::new(&detect(tmp.path(), V2), "/onggi/c1", "").unwrap();
        let dir = cg.unified_path().unwrap().to_owned();
        files(&dir, &[("cgroup.kill", ""), ("cgroup.procs", "")]);
        cg.kill_all(Signal::SIGKILL).unwrap();
        assert_eq!(cat(dir.join("cgroup.kill")), "1");
        // Other signals do not use it.
        std::fs::write(dir.join("cgroup.kill"), "").unwrap();
        cg.kill_all(Signal::SIGHUP).unwrap();
        assert_eq!(cat(dir.join("cgroup.kill")), "");
        // Before Linux 5.14 there is none: each process is signalled.
        std::fs::remove_file(dir.join("cgroup.kill")).unwrap();
        let mut child = Sleeper::new();
        files(&dir, &[("cgroup.procs", &format!("{}\n", child.pid()))]);
        cg.kill_all(Signal::SIGTERM).unwrap();
        assert_eq!(child.0.wait().unwrap().signal(), Some(libc::SIGTERM));
        // A cgroup already removed has no process.
        std::fs::remove_dir_all(&dir).unwrap();
        cg.kill_all(Signal::SIGKILL).unwrap();
    }

    #[test]
    fn pid_0_or_garbage_is_refused_before_any_signal() {
        let tmp = TempDir::new().unwrap();
        let cg = Cgroup::new(&detect(tmp.path(), V2), "/onggi/c1", "").unwrap();
        let dir = cg.unified_path().unwrap().to_owned();
        for bad in ["0\n", "-1\n", "12ab\n"] {
            files(&dir, &[("cgroup.procs", bad)]);
            let e = cg.kill_all(Signal::SIGTERM).unwrap_err();
            assert!(
                matches!(&e, Error::Parse { path, .. } if path.ends_with("cgroup.procs")),
                "{bad:?}: {e}"
            );
        }
    }
}
