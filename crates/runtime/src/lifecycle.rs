//! The container lifecycle as a state machine (OCI runtime spec, "Lifecycle").
//!
//! ```text
//!   create ──► Created ──start──► Running ──exit──► Stopped ──delete──► (gone)
//!                 │                 │  ▲
//!                 │               pause resume
//!                 │                 ▼  │
//!                 │                Paused
//!                 └──────────── delete (kills) ─────────────────────► (gone)
//! ```
//! `kill` is allowed in Created, Running and Paused; `delete --force` from any state.

use std::fmt;

use serde::{Deserialize, Serialize};

/// The status of a container, with the spec's lowercase names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// `create` is still running.
    Creating,
    /// Set up, the user's process not yet started.
    Created,
    /// The user's process runs.
    Running,
    /// Frozen by `pause`.
    Paused,
    /// The container's process has exited.
    Stopped,
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Status::Creating => "creating",
            Status::Created => "created",
            Status::Running => "running",
            Status::Paused => "paused",
            Status::Stopped => "stopped",
        })
    }
}

/// The operations that depend on the status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// `start`: run the user's process.
    Start,
    /// `kill`: send a signal.
    Kill,
    /// `delete` without `--force`.
    Delete,
    /// `delete --force`.
    ForceDelete,
    /// `pause`.
    Pause,
    /// `resume`.
    Resume,
    /// `exec`: run another process inside.
    Exec,
    /// `update`: change resource limits.
    Update,
    /// `events`: read the cgroup's statistics and OOM events.
    Events,
}

impl Op {
    /// The verb as the user typed it, for error messages.
    pub fn verb(self) -> &'static str {
        match self {
            Op::Start => "start",
            Op::Kill => "kill",
            Op::Delete => "delete",
            Op::ForceDelete => "force-delete",
            Op::Pause => "pause",
            Op::Resume => "resume",
            Op::Exec => "exec in",
            Op::Update => "update",
            Op::Events => "read events of",
        }
    }
}

/// The transition table: may `op` run on a container in `status`?
pub fn allowed(status: Status, op: Op) -> bool {
    use Op::*;
    use Status::*;
    match op {
        Start => status == Created,
        Kill => matches!(status, Created | Running | Paused),
        // Deleting a created container is allowed (runc kills its init); a running
        // or paused one needs --force.
        Delete => matches!(status, Created | Stopped),
        ForceDelete => true,
        Pause => status == Running,
        Resume => status == Paused,
        Exec => status == Running,
        Update | Events => matches!(status, Created | Running | Paused),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL: [Status; 5] = [
        Status::Creating,
        Status::Created,
        Status::Running,
        Status::Paused,
        Status::Stopped,
    ];

    #[test]
    fn every_edge_of_the_table() {
        // (op, the statuses where it is allowed)
        let table: &[(Op, &[Status])] = &[
            (Op::Start, &[Status::Created]),
            (
                Op::Kill,
                &[Status::Created, Status::Running, Status::Paused],
            ),
            (Op::Delete, &[Status::Created, Status::Stopped]),
            (Op::ForceDelete, &ALL),
            (Op::Pause, &[Status::Running]),
            (Op::Resume, &[Status::Paused]),
            (Op::Exec, &[Status::Running]),
            (
                Op::Update,
                &[Status::Created, Status::Running, Status::Paused],
            ),
            (
                Op::Events,
                &[Status::Created, Status::Running, Status::Paused],
            ),
        ];
        for (op, ok) in table {
            for s in ALL {
                assert_eq!(allowed(s, *op), ok.contains(&s), "{op:?} in {s}");
            }
        }
    }

    #[test]
    fn status_serializes_lowercase() {
        assert_eq!(
            serde_json::to_string(&Status::Created).unwrap(),
            "\"created\""
        );
        assert_eq!(Status::Paused.to_string(), "paused");
    }
}
