//! `pause` and `unpause`: freeze and thaw every process of a running container
//! through its cgroup's freezer (the runtime's `pause`/`resume`).
//!
//! ```text
//!   Running ──pause──► Paused ──unpause──► Running
//! ```
//! The record's state follows the runtime's. A signal sent to a paused container
//! ([`Engine::signal`]: kill, stop, rm -f) thaws it, as Docker does: with the
//! cgroup v1 freezer a frozen process gets no signal, not even SIGKILL, until thawed.
//!
//! The record is written after the freeze (a frozen init cannot exit, so no exit
//! is recorded meanwhile) and before the thaw (an init that exits right after it is
//! recorded as exited, not overwritten as running).

use nix::sys::signal::Signal;
use onggi_runtime::lifecycle::Status;

use super::Engine;
use crate::db::{Record, State};
use crate::error::{Error, Result};

impl Engine {
    /// `pause`: freeze the running container `what`.
    pub fn pause(&self, what: &str) -> Result<Record> {
        let rec = self.find(what)?;
        match rec.state {
            State::Running => {}
            State::Paused => return Err(wrong(&rec, "it is already paused")),
            _ => return Err(wrong(&rec, "it is not running")),
        }
        self.runtime.pause(&rec.id)?;
        self.set_state(&rec.id, State::Running, State::Paused)
    }

    /// `unpause`: thaw the paused container `what`.
    pub fn unpause(&self, what: &str) -> Result<Record> {
        let rec = self.find(what)?;
        if rec.state != State::Paused {
            return Err(wrong(&rec, "it is not paused"));
        }
        let rec = self.set_state(&rec.id, State::Paused, State::Running)?;
        if let Err(e) = self.runtime.resume(&rec.id) {
            let _ = self.set_state(&rec.id, State::Running, State::Paused);
            return Err(e.into());
        }
        Ok(rec)
    }

    /// Send `signal` to the init of `rec`, then thaw the container if it is
    /// paused, so that the signal is delivered.
    pub(super) fn signal(&self, rec: &Record, signal: Signal) -> Result<()> {
        self.runtime.kill(&rec.id, signal, false)?;
        let paused = self
            .runtime
            .state(&rec.id)
            .is_ok_and(|s| s.status == Status::Paused);
        if paused {
            self.set_state(&rec.id, State::Paused, State::Running)?;
            self.runtime.resume(&rec.id)?;
        }
        Ok(())
    }

    /// Record `to` for container `id` if its record still says `from` (another
    /// command may have recorded its exit meanwhile); the record then.
    fn set_state(&self, id: &str, from: State, to: State) -> Result<Record> {
        let mut rec = self.db.find(id)?;
        if rec.state == from {
            rec.state = to;
            self.db.update(&rec)?;
        }
        Ok(rec)
    }
}

fn wrong(rec: &Record, reason: &str) -> Error {
    Error::WrongState {
        id: rec.name.clone(),
        reason: reason.into(),
    }
}
