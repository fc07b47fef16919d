//! `onggi-monitor`: the small process that stays with a running container (what Docker
//! users know as the shim: containerd-shim, conmon). It keeps the container's output in
//! a log file and records how the container's init ended.
//!
//! # Protocol
//! ```text
//!  engine (onggi run -d)                          onggi-monitor
//!  ─────────────────────                          ─────────────
//!  prctl(PR_SET_CHILD_SUBREAPER), setsid()
//!  create + start the container (onggi-runtime):
//!    init = child of this process,
//!    init's stdout/stderr = pipes, read ends kept
//!  stdin/stdout/stderr → /dev/null
//!  execve("onggi-monitor", …) ──────────────────▶ same PID: inherits the init as its
//!                                                  child, the read ends as fds
//!                                                  copy pipes → log, reap children
//!                                   init exits ──▶ drain pipes, write exit file
//!                                                  execve(--on-exit …) or exit 0
//! ```
//!
//! Command line (`--on-exit` must come last: the rest of argv is its command):
//! ```text
//! onggi-monitor --id ID --pid PID --exit-file FILE --log FILE
//!               [--stdout-fd N] [--stderr-fd N] [--log-max-size BYTES] [--log-max-files N]
//!               [--on-exit PROGRAM ARG...]
//! ```
//! - `PID` is the container's init and must already be a child of this process. Other
//!   children that appear (orphans of the container, reparented to the monitor as the
//!   engine's subreaper) are reaped and ignored.
//! - `--stdout-fd`/`--stderr-fd` are the pipes' read ends (3 or above, distinct). Every
//!   other descriptor above 2 is closed at startup; 0-2 should be `/dev/null` (opened
//!   on `/dev/null` if closed). The monitor works in `/`, so paths must be absolute.
//! - Log (`--log`): Docker's `json-file` format, one record per line of output,
//!   `{"log":"hello\n","stream":"stdout","time":"2026-11-22T15:04:13.280685984Z"}`;
//!   lines longer than 16 KiB are split, the last partial line is written at end of
//!   file (see [`lines`]). Before the file would exceed `--log-max-size` bytes (default
//!   10 MiB) it is rotated, `FILE` → `FILE.1` → `FILE.2` …, keeping `--log-max-files`
//!   files (default 3, at most 99) in all (see [`logfile`]). Output that cannot be
//!   written (disk full) is dropped; the pipes are always drained.
//! - When the init has exited and both pipes are at end of file (or, after the init's
//!   exit, silent for 1 s or read for 5 s: an orphan outside a PID namespace may hold
//!   them), the exit file is written atomically (see [`exitfile`]):
//!   `{"exit_code":137,"signal":9,"finished_at":"…Z","oom_killed":false}`, with
//!   `exit_code` 128 + the signal for a killed init and `signal` `null` otherwise. The
//!   log is complete when the exit file appears. `oom_killed` is always `false`: the
//!   monitor does not read cgroups; the engine knows better.
//! - Then `--on-exit PROGRAM ARG...` is executed (`execve`, same PID, the monitor's
//!   environment, default signal dispositions) to apply the restart policy; without it
//!   the monitor exits 0. Exit status 2: a refused command line or a failed setup
//!   (message on stderr); 127: `PROGRAM` could not be executed.
//! - Signals: SIGINT, SIGHUP, SIGTERM, SIGPIPE and SIGXFSZ are ignored; the way to stop
//!   a container is the runtime, not its monitor.
//!
//! # Memory
//! The monitor lives as long as its container, one per container, so its memory is
//! what counts: its PSS must stay under half of conmon's (462 KiB). The release binary
//! therefore links no C library (see [`sys`]): it is a freestanding program of a few
//! dozen KiB whose only heap is one anonymous mapping of buffers (8 KiB for reads,
//! 8 KiB for log writes, 16 KiB per stream for partial lines), touched only as far as
//! used. The steady state allocates nothing.
//!
//! The library is `no_std` so that the same code serves the freestanding release
//! binary, the debug binary (std, for unwinding panics) and the unit tests.
#![cfg_attr(not(test), no_std)]
#![deny(unsafe_code)]
#![deny(missing_docs)]

pub mod args;
pub mod exitfile;
pub mod json;
pub mod lines;
pub mod logfile;
pub mod monitor;
pub mod sys;
pub mod time;
