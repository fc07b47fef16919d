//! The namespaces a process is in: `ls -l /proc/PID/ns`.

use std::os::unix::fs::MetadataExt;
use std::path::Path;

use serde::Serialize;

use crate::{Error, Result};

/// The namespace kinds, as `/proc/PID/ns` names them (`*_for_children`: what the
/// process's next children get).
pub const NS_KINDS: &[&str] = &[
    "cgroup",
    "ipc",
    "mnt",
    "net",
    "pid",
    "pid_for_children",
    "time",
    "time_for_children",
    "user",
    "uts",
];

/// One namespace of a process.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Namespace {
    /// `net`, `pid`...
    pub kind: String,
    /// Its inode: `readlink /proc/PID/ns/KIND` says `KIND:[INODE]`.
    pub inode: u64,
    /// The device of the nsfs it is on (inodes are unique per device).
    pub dev: u64,
}

/// The namespaces of `pid` (those this kernel has), in [`NS_KINDS`] order.
pub fn namespaces(proc: &Path, pid: i32) -> Result<Vec<Namespace>> {
    let dir = proc.join(pid.to_string()).join("ns");
    let mut out = Vec::new();
    for kind in NS_KINDS {
        match std::fs::metadata(dir.join(kind)) {
            Ok(m) => out.push(Namespace {
                kind: (*kind).to_owned(),
                inode: m.ino(),
                dev: m.dev(),
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {} // not in this kernel
            Err(source) => {
                return Err(Error::Io {
                    what: dir.join(kind).display().to_string(),
                    source,
                })
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inodes_are_what_readlink_says() {
        let me = std::process::id() as i32;
        let ns = namespaces(Path::new("/proc"), me).unwrap();
        assert!(ns.iter().any(|n| n.kind == "net"));
        for n in ns {
            let link = std::fs::read_link(format!("/proc/{me}/ns/{}", n.kind)).unwrap();
            let want = format!("{}:[{}]", n.kind.trim_end_matches("_for_children"), n.inode);
            assert_eq!(link.to_string_lossy(), want);
        }
    }
}
