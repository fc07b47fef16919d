//! `top`, `ns`, `tree`: a container's processes, threads and namespaces, the way
//! the seeds look at them, from /proc (`onggi-inspect`) and the engine's records.

use std::path::Path;

use onggi_inspect::{Namespace, ProcessInfo, TreeLine};
use serde::Serialize;

use super::Engine;
use crate::db::{Record, State};
use crate::error::{Error, Result};

const PROC: &str = "/proc";

/// A namespace of a container and who else is in it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SharedNamespace {
    /// The namespace.
    #[serde(flatten)]
    pub ns: Namespace,
    /// `host` when the host is in it too, else the names of the other
    /// running containers whose init is in it (empty: the container's own).
    pub shared_with: Vec<String>,
}

/// A line of `tree`: a process, and the container it belongs to (its monitor, or
/// a process in its PID namespace).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MarkedLine {
    /// The process and its depth.
    #[serde(flatten)]
    pub line: TreeLine,
    /// The container's name, and `monitor` or `container`.
    pub container: Option<(String, &'static str)>,
}

impl Engine {
    /// The running container `what` names, with the init's host PID.
    fn running(&self, what: &str) -> Result<(Record, i32)> {
        let rec = self.find(what)?;
        match (rec.state, rec.pid) {
            (State::Running | State::Paused, Some(pid)) => Ok((rec, pid)),
            _ => Err(Error::WrongState {
                id: rec.name,
                reason: "it is not running".into(),
            }),
        }
    }

    /// `top`: every process of the container (PIDs inside and on the host), or
    /// with `threads` every thread of them, as `ps -eLf` lists them.
    pub fn top(&self, what: &str, threads: bool) -> Result<(Record, Vec<ProcessInfo>)> {
        let (rec, pid) = self.running(what)?;
        let procs = onggi_inspect::in_pid_namespace_of(Path::new(PROC), pid)?;
        if !threads {
            return Ok((rec, procs));
        }
        let mut out = Vec::new();
        for p in procs {
            // A process that exited meanwhile has no threads to show.
            out.extend(onggi_inspect::threads_of(Path::new(PROC), p.pid).unwrap_or_default());
        }
        Ok((rec, out))
    }

    /// `ns`: the namespaces of the container's init, each with who shares it: the
    /// host (the namespaces this command runs in: PID 1's may not be readable) or
    /// other running containers.
    pub fn namespaces(&self, what: &str) -> Result<(Record, Vec<SharedNamespace>)> {
        let (rec, pid) = self.running(what)?;
        let proc = Path::new(PROC);
        let mine = onggi_inspect::namespaces(proc, pid)?;
        let host = onggi_inspect::namespaces(proc, std::process::id() as i32)?;
        let mut others: Vec<(String, Vec<Namespace>)> = Vec::new();
        for r in self.list(false)? {
            if let (Some(p), true) = (r.pid, r.id != rec.id) {
                if let Ok(ns) = onggi_inspect::namespaces(proc, p) {
                    others.push((r.name, ns));
                }
            }
        }
        let shared = mine
            .into_iter()
            .map(|ns| {
                let same = |v: &[Namespace]| {
                    v.iter()
                        .any(|o| o.kind == ns.kind && o.inode == ns.inode && o.dev == ns.dev)
                };
                let shared_with = if same(&host) {
                    vec!["host".to_owned()]
                } else {
                    others
                        .iter()
                        .filter(|(_, v)| same(v))
                        .map(|(n, _)| n.clone())
                        .collect()
                };
                SharedNamespace { ns, shared_with }
            })
            .collect();
        Ok((rec, shared))
    }

    /// `tree`: the host's processes as `ps afx` shows them, each container's
    /// monitor and processes marked with its name; with `what`, that container's
    /// monitor and what is under it.
    pub fn tree(&self, what: Option<&str>) -> Result<Vec<MarkedLine>> {
        let proc = Path::new(PROC);
        let running: Vec<Record> = match what {
            Some(w) => vec![self.running(w)?.0],
            None => self.list(false)?,
        };
        // A container's processes are those in its init's PID namespace.
        let mut monitors = std::collections::HashMap::new();
        let mut pid_namespaces = std::collections::HashMap::new();
        let host = std::fs::metadata("/proc/self/ns/pid").ok();
        for r in &running {
            if let Some(m) = r.monitor_pid {
                monitors.insert(m, r.name.clone());
            }
            let ns = r.pid.and_then(|p| {
                std::fs::metadata(Path::new(PROC).join(p.to_string()).join("ns/pid")).ok()
            });
            // (One in the host's PID namespace would claim every process.)
            if let (Some(ns), Some(host)) = (ns, &host) {
                use std::os::unix::fs::MetadataExt;
                if ns.ino() != host.ino() {
                    pid_namespaces.insert(ns.ino(), r.name.clone());
                }
            }
        }
        let root = match what {
            Some(_) => running[0].monitor_pid.or(running[0].pid),
            None => None,
        };
        Ok(onggi_inspect::tree(proc, root)?
            .into_iter()
            .map(|line| {
                let p = &line.process;
                let container = match monitors.get(&p.pid) {
                    Some(n) => Some((n.clone(), "monitor")),
                    None => pid_namespaces
                        .get(&p.pid_ns)
                        .map(|n| (n.clone(), "container")),
                };
                MarkedLine { line, container }
            })
            .collect())
    }
}
