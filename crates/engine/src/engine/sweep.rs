//! What a killed `onggi` leaves half-made, and the check that nothing is.
//!
//! The row is the commit point: before `create` inserts it, the container's
//! directory is nobody's; a container is running only once `start` has recorded
//! its monitor. A command killed in between leaves:
//!
//! - a directory (and an image hold) without a row, from a killed `create`: swept by
//!   `list` ([`Engine::sweep`]) once its maker's lock is free, that is once the maker
//!   is dead;
//! - a created (or exited) container with its root filesystem mounted, its runtime
//!   container made or even running, from a killed `start`: settled by `refresh`
//!   ([`Engine::settle`]) once the starter's lock is free (the forked monitor holds it
//!   until its `execve`). Its monitor, if it got so far, then sees the init die and
//!   runs the exit hook, which leaves a container that is not running alone.
//!
//! [`Engine::inconsistencies`] lists whatever breaks these rules.

use std::collections::HashSet;
use std::fs;

use onggi_image::rootfs;

use super::Engine;
use crate::db::{Record, State};
use crate::error::{Error, Result};

impl Engine {
    /// A container that is not running: if a start was cut short, release what it
    /// made (runtime container, mounted root filesystem, exit record). Every start
    /// (`start`, `run -i`) holds the container's lock until it has recorded the
    /// container as running, so with the lock free whatever is there is left over.
    pub(crate) fn settle(&self, rec: Record) -> Result<Record> {
        let lock = match self.try_lock(&rec.id) {
            Ok(Some(l)) => l,
            // Being started or stopped right now; or its directory is gone, which
            // `inconsistencies` reports.
            Ok(None) | Err(Error::NoSuchContainer(_)) => return Ok(rec),
            Err(e) => return Err(e),
        };
        if !lock.reentered() {
            // A start may have finished between the caller's read and the lock.
            let now = self.db.find(&rec.id)?;
            if now.state != rec.state || now.started_at != rec.started_at {
                drop(lock);
                return self.refresh(now);
            }
        }
        self.release_runtime(&rec.id);
        Ok(rec)
    }

    /// Remove the directories (and image holds) that no row owns and no living
    /// `create` is making; `rows` is every container.
    pub(crate) fn sweep(&self, rows: &[Record]) {
        let Ok(entries) = fs::read_dir(self.roots.data.join("containers")) else {
            return;
        };
        let owned: HashSet<&str> = rows.iter().map(|r| r.id.as_str()).collect();
        for e in entries.flatten() {
            let id = e.file_name().to_string_lossy().into_owned();
            if !owned.contains(id.as_str()) {
                let _ = self.sweep_one(&id);
            }
        }
    }

    fn sweep_one(&self, id: &str) -> Result<()> {
        let Some(_lock) = self.try_lock(id)? else {
            return Ok(()); // its create is still running
        };
        if self.db.find(id).is_ok_and(|r| r.id == id) {
            return Ok(()); // inserted since the caller listed the rows
        }
        // Holds first: a sweep killed half-way leaves a directory, swept again.
        for listed in self.store.images()? {
            self.store.release(&listed.image.id, id)?;
        }
        let _ = fs::remove_dir_all(self.roots.run.join("containers").join(id));
        rootfs::remove(&self.dir(id))?;
        Ok(())
    }

    /// Whatever breaks the engine's rules, one line each (empty when consistent):
    /// every container (refreshed, half-made ones swept first) has its directory and
    /// config; one not running has no runtime container and no mounted root
    /// filesystem; every directory, exit record, runtime container and image hold
    /// belongs to a row. Reads `/proc/self/mountinfo` for the mounts.
    pub fn inconsistencies(&self) -> Result<Vec<String>> {
        let rows = self.list(true)?;
        let mut problems = Vec::new();
        let mounts = fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        let mounted: HashSet<&str> = mounts.lines().filter_map(|l| l.split(' ').nth(4)).collect();
        let runtime: Vec<String> = self.runtime.list()?.into_iter().map(|s| s.id).collect();
        for r in &rows {
            let dir = self.dir(&r.id);
            let rootfs_mounted = mounted.contains(dir.join("rootfs").to_string_lossy().as_ref());
            let running = matches!(r.state, State::Running | State::Paused);
            let mut say = |what: &str| {
                problems.push(format!(
                    "container {} ({}, {:?}): {what}",
                    r.name, r.id, r.state
                ))
            };
            if !dir.join("config.json").exists() {
                say("its directory or config.json is missing");
            }
            if !running && runtime.contains(&r.id) {
                say("not running, but the runtime has a container for it");
            }
            if !running && rootfs_mounted {
                say("not running, but its root filesystem is mounted");
            }
            if running && !rootfs_mounted && r.monitor_pid.is_some() {
                say("running, but its root filesystem is not mounted");
            }
        }
        let ids: HashSet<&str> = rows.iter().map(|r| r.id.as_str()).collect();
        for (what, dir) in [
            ("container directory", self.roots.data.join("containers")),
            ("run directory", self.roots.run.join("containers")),
        ] {
            for e in fs::read_dir(&dir).into_iter().flatten().flatten() {
                let id = e.file_name().to_string_lossy().into_owned();
                if !ids.contains(id.as_str()) {
                    problems.push(format!("{what} {} has no container", e.path().display()));
                }
            }
        }
        for id in runtime.iter().filter(|id| !ids.contains(id.as_str())) {
            problems.push(format!("runtime container {id} has no container"));
        }
        for listed in self.store.images()? {
            for holder in self.store.holders(&listed.image.id) {
                if !ids.contains(holder.as_str()) {
                    problems.push(format!(
                        "image {} is held for {holder}, which does not exist",
                        listed.image.id
                    ));
                }
            }
        }
        Ok(problems)
    }
}
