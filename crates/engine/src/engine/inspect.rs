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

/// One container's use of the machine, as `docker stats` shows it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Usage {
    /// The container's id.
    pub id: String,
    /// Its name.
    pub name: String,
    /// CPU time used per wall time since the last look (100 = one CPU's worth).
    pub cpu_percent: f64,
    /// Memory in use, bytes (page cache included, as the cgroup counts it).
    pub memory_usage: u64,
    /// The limit: the cgroup's, else the host's memory.
    pub memory_limit: u64,
    /// usage / limit × 100.
    pub memory_percent: f64,
    /// Processes and threads.
    pub pids: u64,
    /// Bytes received and sent on the container's interfaces (loopback aside).
    pub net_rx: u64,
    /// Bytes sent.
    pub net_tx: u64,
    /// Bytes read from block devices.
    pub block_read: u64,
    /// Bytes written.
    pub block_write: u64,
}

/// How long a CPU sample must span at least: one CFS period (100 ms by default),
/// over which a `--cpus` quota is exactly its share.
pub const CPU_WINDOW: std::time::Duration = std::time::Duration::from_millis(100);

impl Engine {
    /// `stats`: the running containers `what` names (every running one when empty).
    /// CPU % is measured from the previous look at the container (kept in its run
    /// directory) when that is under a minute old, else from the container's start
    /// (as `ps` does); a reference younger than [`CPU_WINDOW`] is waited for.
    pub fn stats(&self, what: &[String]) -> Result<Vec<Usage>> {
        let recs: Vec<Record> = if what.is_empty() {
            self.list(false)?
        } else {
            what.iter()
                .map(|w| self.running(w).map(|(r, _)| r))
                .collect::<Result<_>>()?
        };
        // The cgroups are read directly (the engine chose their paths), not through
        // the runtime's state files: one look at 100 containers must stay quick.
        let hier = onggi_cgroups::Hierarchies::host_cached(
            &self.roots.run.join("runtime").join(".cgroup-mounts"),
        )?;
        let look = |r: &Record| -> Option<(onggi_cgroups::Stats, u128)> {
            let cg =
                onggi_cgroups::Cgroup::new(&hier, &crate::spec::cgroups_path(&r.id), "").ok()?;
            let s = cg.stats().ok()?;
            let at = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .ok()?
                .as_nanos();
            Some((s, at))
        };
        let mut now: Vec<_> = recs.iter().map(look).collect();
        let previous: Vec<Option<(u64, u128)>> =
            recs.iter().map(|r| self.previous_sample(r)).collect();
        // CPU % since the previous look when it is under a minute old (and the
        // counter has not started over: a restarted container), else since the
        // container started. A reference younger than the window is waited for
        // (only what is missing), once for all.
        let window = CPU_WINDOW.as_nanos();
        let before: Vec<Option<(u64, u128)>> = recs
            .iter()
            .zip(&previous)
            .zip(&now)
            .map(|((rec, then), now)| {
                let (s, at) = now.as_ref()?;
                match then {
                    Some((u, t))
                        if *t <= *at && at - t < 60_000_000_000 && *u <= s.cpu.usage_ns =>
                    {
                        Some((*u, *t))
                    }
                    _ => {
                        let ran = onggi_inspect::seconds_running(Path::new(PROC), rec.pid?)?;
                        Some((0, at.saturating_sub((ran * 1e9) as u128)))
                    }
                }
            })
            .collect();
        let missing = before
            .iter()
            .zip(&now)
            .filter_map(|(b, n)| Some(window.saturating_sub(n.as_ref()?.1 - b.as_ref()?.1)))
            .max()
            .unwrap_or(0);
        if missing > 0 {
            std::thread::sleep(std::time::Duration::from_nanos(missing as u64));
            now = recs.iter().map(look).collect();
        }
        let host_memory = host_memory();
        let mut out = Vec::new();
        for ((rec, b), a) in recs.iter().zip(before).zip(now) {
            let Some((s, at)) = a else {
                continue; // stopped meanwhile
            };
            let _ = std::fs::write(self.sample_file(rec), format!("{} {at}\n", s.cpu.usage_ns));
            let cpu_percent = match b {
                Some((u0, t0)) if at > t0 => {
                    let p = s.cpu.usage_ns.saturating_sub(u0) as f64 / (at - t0) as f64 * 100.0;
                    (p * 10.0).round() / 10.0
                }
                _ => 0.0,
            };
            let limit = if s.memory.limit == u64::MAX {
                host_memory
            } else {
                s.memory.limit
            };
            let (net_rx, net_tx) = rec.pid.map_or((0, 0), net_bytes);
            out.push(Usage {
                id: rec.id.clone(),
                name: rec.name.clone(),
                cpu_percent,
                memory_usage: s.memory.usage,
                memory_limit: limit,
                memory_percent: if limit > 0 {
                    (s.memory.usage as f64 / limit as f64 * 1000.0).round() / 10.0
                } else {
                    0.0
                },
                pids: s.pids.current,
                net_rx,
                net_tx,
                block_read: s.io.iter().map(|e| e.read_bytes).sum(),
                block_write: s.io.iter().map(|e| e.write_bytes).sum(),
            });
        }
        Ok(out)
    }

    fn sample_file(&self, rec: &Record) -> std::path::PathBuf {
        self.exit_file(&rec.id).with_file_name("cpu-sample")
    }

    /// The sample the last `stats` left.
    fn previous_sample(&self, rec: &Record) -> Option<(u64, u128)> {
        let text = std::fs::read_to_string(self.sample_file(rec)).ok()?;
        let mut f = text.split_whitespace();
        Some((f.next()?.parse().ok()?, f.next()?.parse().ok()?))
    }
}

/// The host's memory (MemTotal), bytes; 0 if unknown.
fn host_memory() -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            let line = m.lines().find(|l| l.starts_with("MemTotal:"))?;
            line.split_whitespace().nth(1)?.parse::<u64>().ok()
        })
        .map_or(0, |kib| kib * 1024)
}

/// Bytes received and sent by the network namespace of `pid`, loopback aside
/// (`/proc/PID/net/dev`).
fn net_bytes(pid: i32) -> (u64, u64) {
    let Ok(text) = std::fs::read_to_string(format!("{PROC}/{pid}/net/dev")) else {
        return (0, 0);
    };
    text.lines()
        .skip(2)
        .filter_map(|l| {
            let (name, rest) = l.split_once(':')?;
            if name.trim() == "lo" {
                return None;
            }
            let f: Vec<u64> = rest
                .split_whitespace()
                .filter_map(|v| v.parse().ok())
                .collect();
            Some((*f.first()?, *f.get(8)?))
        })
        .fold((0, 0), |(r, t), (a, b)| (r + a, t + b))
}
