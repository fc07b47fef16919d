//! Processes and threads, with their PIDs inside their PID namespace and on the host.

use std::os::unix::fs::MetadataExt;
use std::path::Path;

use procfs::process::{Process, Stat, Status};
use serde::Serialize;

use crate::{proc_err, Error, Result};

/// One process (or one thread of it), as `ps -eLf` and `ps u` show it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ProcessInfo {
    /// The PID in the procfs read (the host's, for `/proc`).
    pub pid: i32,
    /// The thread's id there: `pid` for a process listed as a whole.
    pub tid: i32,
    /// The PID in the process's own PID namespace (the last field of `NSpid`): the
    /// container's view.
    pub ns_pid: i32,
    /// The thread's id in that namespace.
    pub ns_tid: i32,
    /// The parent's PID in the procfs read (0: none there).
    pub ppid: i32,
    /// Real user id (as the host sees it).
    pub uid: u32,
    /// `R`, `S`, `D`, `Z`, `T`...
    pub state: char,
    /// Threads of the process.
    pub threads: u64,
    /// CPU time over the lifetime, as `ps` computes `%CPU`: (user + system) / elapsed.
    pub cpu_percent: f64,
    /// Resident memory, KiB.
    pub rss_kib: u64,
    /// Seconds after boot it started.
    pub start_secs: f64,
    /// CPU time used, seconds (user + system).
    pub cpu_secs: f64,
    /// The command line, or `[comm]` for a kernel thread or a zombie.
    pub command: String,
    /// The inode of its PID namespace (0: not readable): processes of one
    /// container share it.
    pub pid_ns: u64,
}

/// The processes of the PID namespace `pid` is in (the host's PIDs from `proc`),
/// ordered by PID. For a container's init: every process of the container.
pub fn in_pid_namespace_of(proc: &Path, pid: i32) -> Result<Vec<ProcessInfo>> {
    let ns = |p: i32| {
        std::fs::metadata(proc.join(p.to_string()).join("ns/pid")).map(|m| (m.dev(), m.ino()))
    };
    let theirs = ns(pid).map_err(|source| Error::Io {
        what: format!("{}/{pid}/ns/pid", proc.display()),
        source,
    })?;
    let all = procfs::process::all_processes_with_root(proc)
        .map_err(proc_err(format!("{}", proc.display())))?;
    let mut out = Vec::new();
    for p in all.flatten() {
        if ns(p.pid).is_ok_and(|n| n == theirs) {
            // Gone meanwhile: skipped.
            if let Ok(info) = describe(proc, &p) {
                out.push(info);
            }
        }
    }
    out.sort_by_key(|p| p.pid);
    Ok(out)
}

/// Each thread of the process `pid`, as `ps -eLf` lists them.
pub fn threads_of(proc: &Path, pid: i32) -> Result<Vec<ProcessInfo>> {
    let p = Process::new_with_root(proc.join(pid.to_string()))
        .map_err(proc_err(format!("{}/{pid}", proc.display())))?;
    let tasks = p
        .tasks()
        .map_err(proc_err(format!("{}/{pid}/task", proc.display())))?;
    let whole = describe(proc, &p)?;
    let mut out = Vec::new();
    for t in tasks.flatten() {
        // A thread that ended meanwhile is skipped.
        if let (Ok(stat), Ok(status)) = (t.stat(), t.status()) {
            let mut info = from_parts(proc, &p, &stat, &status)?;
            info.tid = t.tid;
            info.ns_tid = info.ns_pid; // a task's NSpid holds its thread ids
            info.ns_pid = whole.ns_pid;
            out.push(info);
        }
    }
    out.sort_by_key(|t| t.tid);
    Ok(out)
}

/// `p` as a whole.
pub(crate) fn describe(proc: &Path, p: &Process) -> Result<ProcessInfo> {
    let what = format!("{}/{}", proc.display(), p.pid);
    let stat = p.stat().map_err(proc_err(format!("{what}/stat")))?;
    let status = p.status().map_err(proc_err(format!("{what}/status")))?;
    from_parts(proc, p, &stat, &status)
}

fn from_parts(proc: &Path, p: &Process, stat: &Stat, status: &Status) -> Result<ProcessInfo> {
    let ticks = procfs::ticks_per_second() as f64;
    let start_secs = stat.starttime as f64 / ticks;
    let cpu_secs = (stat.utime + stat.stime) as f64 / ticks;
    let elapsed = uptime(proc).map(|u| u - start_secs).unwrap_or(0.0);
    let cpu_percent = if elapsed > 0.0 {
        (cpu_secs / elapsed * 1000.0).round() / 10.0
    } else {
        0.0
    };
    let cmdline = p.cmdline().unwrap_or_default();
    let command = if cmdline.is_empty() {
        format!("[{}]", stat.comm)
    } else {
        cmdline.join(" ")
    };
    let ns_pid = status
        .nspid
        .as_ref()
        .and_then(|v| v.last().copied())
        .unwrap_or(p.pid);
    Ok(ProcessInfo {
        pid: p.pid,
        tid: p.pid,
        ns_pid,
        ns_tid: ns_pid,
        ppid: stat.ppid,
        uid: status.ruid,
        state: stat.state,
        threads: status.threads,
        cpu_percent,
        rss_kib: status.vmrss.unwrap_or(0),
        start_secs,
        cpu_secs,
        command,
        pid_ns: std::fs::metadata(proc.join(p.pid.to_string()).join("ns/pid"))
            .map_or(0, |m| m.ino()),
    })
}

/// How long the process `pid` has been running, in seconds.
pub fn seconds_running(proc: &Path, pid: i32) -> Option<f64> {
    let p = Process::new_with_root(proc.join(pid.to_string())).ok()?;
    let start = p.stat().ok()?.starttime as f64 / procfs::ticks_per_second() as f64;
    Some((uptime(proc)? - start).max(0.0))
}

/// Seconds since boot (the first field of `uptime`).
fn uptime(proc: &Path) -> Option<f64> {
    std::fs::read_to_string(proc.join("uptime"))
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_and_its_threads_are_seen_as_ps_sees_them() {
        let me = std::process::id() as i32;
        let proc = Path::new("/proc");
        let peers = in_pid_namespace_of(proc, me).unwrap();
        let mine = peers.iter().find(|p| p.pid == me).expect("listed");
        assert_eq!(mine.ns_pid, me, "the test runs in the host's PID namespace");
        assert!(mine.command.contains("onggi_inspect"), "{}", mine.command);
        let (tx, rx) = std::sync::mpsc::channel::<()>();
        let t = std::thread::spawn(move || rx.recv());
        let threads = threads_of(proc, me).unwrap();
        let count = std::fs::read_dir(format!("/proc/{me}/task"))
            .unwrap()
            .count();
        assert_eq!(threads.len(), count);
        assert!(threads
            .iter()
            .all(|t| t.pid == me && t.threads as usize == count));
        assert!(threads.iter().any(|t| t.tid != me));
        tx.send(()).unwrap();
        t.join().unwrap().unwrap();
    }
}
