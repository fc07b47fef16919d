//! cgroup v1, v2 and hybrid behind one interface.
//!
//! ```text
//! Hierarchies::detect(root, mountinfo)   which hierarchies are mounted where (pure)
//!   └─ Cgroup::new(h, cgroupsPath, own)  the container's directory in each (pure)
//!        ├─ create()                     mkdir -p (+ v1 cpuset copy, v2 subtree_control)
//!        ├─ apply(&LinuxResources)       plan::plan → one write per control file
//!        ├─ add_pid(pid)                 cgroup.procs in every hierarchy
//!        ├─ update(&LinuxResources)      apply on a live cgroup (checkBeforeUpdate)
//!        ├─ pids / freeze / thaw / is_frozen
//!        ├─ stats() / oom_kill_count()   usage figures (stats.rs)
//!        ├─ kill_all(sig)                cgroup.kill, else every PID in every hierarchy
//!        └─ destroy()                    rmdir, children first, then the parents create made
//! ```
//!
//! Every function that touches the filesystem is given the cgroup root (normally
//! `/sys/fs/cgroup`) and the mountinfo / `/proc/self/cgroup` contents, so the unit tests
//! run on tempdir fixtures without root. Only [`Hierarchies::host`] and
//! [`Cgroup::for_self`] read the real `/proc` files. systemd-managed cgroups
//! (`slice:prefix:name`) are not supported yet. v2 device rules need an eBPF program
//! that this module does not load: see [`Cgroup::device_rules_need_ebpf`].
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod cgroup;
pub mod ebpf;
mod error;
mod fs;
mod hierarchy;
mod kill;
mod path;
pub mod plan;
mod stats;

#[cfg(test)]
mod apply_tests;
#[cfg(test)]
mod testutil;

pub use cgroup::Cgroup;
pub use error::{Error, Result};
pub use fs::watch_writes;
pub use hierarchy::{Hierarchies, Mount, Version};
pub use stats::{CpuStats, HugetlbStats, IoEntry, MemoryStats, PidsStats, Stats};
