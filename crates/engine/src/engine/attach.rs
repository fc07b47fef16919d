//! `run -i`/`-t`: the container attached to the caller's terminal (or stdin).
//!
//! Here the `onggi` process itself is the container's parent and the terminal's
//! relay, as `onggi-runtime run` is: the runtime library relays the pty (raw mode,
//! window size, signals forwarded) and returns the exit code. The caller stands
//! in for the monitor in the record, so a caller killed mid-run is found by the
//! next command like a dead monitor. No log is written for an attached container.

use std::path::Path;

use nix::unistd::Pid;
use onggi_image::rootfs;
use onggi_runtime::CreateOpts;

use super::Engine;
use crate::db::{Record, State};
use crate::error::Result;

impl Engine {
    /// Run the created container `rec` attached to this process's stdio (its
    /// terminal, with `process.terminal` set in its config); its exit code.
    pub fn run_attached(&self, rec: &Record) -> Result<i32> {
        // As `start`: held until the record says running (see `sweep`).
        let lock = self.lock(&rec.id)?;
        let mut rec = self.refresh(self.db.find(&rec.id)?)?;
        let image = self.store.resolve(&rec.image)?;
        let dir = self.dir(&rec.id);
        rootfs::mount_image(&self.store, &image, &dir)?;
        let me = Pid::this();
        rec.state = State::Running;
        rec.monitor_pid = Some(me.as_raw());
        rec.monitor_start =
            onggi_runtime::state::read_start_time(Path::new("/proc"), me).map(|s| s.1);
        rec.started_at = Some(onggi_runtime::state::rfc3339_now());
        self.db.update(&rec)?;
        drop(lock);
        let opts = CreateOpts {
            id: rec.id.clone(),
            bundle: dir.clone(),
            pid_file: None,
            console_socket: None,
            no_pivot: false,
            no_new_keyring: false,
            preserve_fds: 0,
        };
        let ran = self.runtime.run(&opts, false);
        let _ = rootfs::unmount(&dir);
        let mut rec = self.db.find(&rec.id)?;
        rec.state = State::Exited;
        rec.monitor_pid = None;
        rec.monitor_start = None;
        rec.finished_at = Some(onggi_runtime::state::rfc3339_now());
        rec.exit_code = Some(*ran.as_ref().unwrap_or(&125));
        self.db.update(&rec)?;
        Ok(ran?)
    }
}
