//! The process tree, as `ps afx` and `pstree -p` draw it.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Serialize;

use crate::process::{describe, ProcessInfo};
use crate::{proc_err, Result};

/// One line of the tree: a process and how deep it is (0 for a root).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TreeLine {
    /// Depth below its root.
    pub depth: usize,
    /// The process.
    #[serde(flatten)]
    pub process: ProcessInfo,
}

/// Every process of `proc`, parents before children and children by PID, each
/// under its parent (processes whose parent is not there are roots); with `root`,
/// only that process and what descends from it.
pub fn tree(proc: &Path, root: Option<i32>) -> Result<Vec<TreeLine>> {
    let all = procfs::process::all_processes_with_root(proc)
        .map_err(proc_err(proc.display().to_string()))?;
    let procs: BTreeMap<i32, ProcessInfo> = all
        .flatten()
        .filter_map(|p| describe(proc, &p).ok())
        .map(|i| (i.pid, i))
        .collect();
    let mut children: BTreeMap<i32, Vec<i32>> = BTreeMap::new();
    for p in procs.values() {
        children.entry(p.ppid).or_default().push(p.pid);
    }
    let roots: Vec<i32> = match root {
        Some(r) => procs.contains_key(&r).then_some(r).into_iter().collect(),
        None => procs
            .values()
            .filter(|p| !procs.contains_key(&p.ppid))
            .map(|p| p.pid)
            .collect(),
    };
    let mut out = Vec::with_capacity(procs.len());
    // Depth first, without recursion: (pid, depth), the next child last pushed.
    let mut stack: Vec<(i32, usize)> = roots.into_iter().rev().map(|p| (p, 0)).collect();
    while let Some((pid, depth)) = stack.pop() {
        let Some(p) = procs.get(&pid) else { continue };
        out.push(TreeLine {
            depth,
            process: p.clone(),
        });
        if let Some(kids) = children.get(&pid) {
            stack.extend(kids.iter().rev().map(|k| (*k, depth + 1)));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_child_is_under_its_parent() {
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        let me = std::process::id() as i32;
        let lines = tree(Path::new("/proc"), Some(me)).unwrap();
        assert_eq!((lines[0].process.pid, lines[0].depth), (me, 0));
        let c = lines
            .iter()
            .find(|l| l.process.pid == child.id() as i32)
            .unwrap();
        assert_eq!((c.depth, c.process.ppid), (1, me));
        let whole = tree(Path::new("/proc"), None).unwrap();
        let at = |pid: i32| whole.iter().position(|l| l.process.pid == pid).unwrap();
        assert!(at(me) < at(child.id() as i32), "parents first");
        child.kill().unwrap();
        child.wait().unwrap();
    }
}
