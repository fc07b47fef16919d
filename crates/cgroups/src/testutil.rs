//! Helpers for the tempdir fixtures of the unit tests.

use std::fs;
use std::path::{Path, PathBuf};

use crate::hierarchy::Hierarchies;

/// A v1 host with every controller `apply` and `stats` use, some co-mounted as
/// distributions do.
pub(crate) const V1_ALL: &str = "\
25 24 0:21 / /sys/fs/cgroup/systemd rw - cgroup cgroup rw,xattr,name=systemd
27 24 0:23 / /sys/fs/cgroup/cpu,cpuacct rw - cgroup cgroup rw,cpu,cpuacct
28 24 0:24 / /sys/fs/cgroup/net_cls,net_prio rw - cgroup cgroup rw,net_cls,net_prio
29 24 0:25 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory
30 24 0:26 / /sys/fs/cgroup/pids rw - cgroup cgroup rw,pids
31 24 0:27 / /sys/fs/cgroup/devices rw - cgroup cgroup rw,devices
32 24 0:28 / /sys/fs/cgroup/freezer rw - cgroup cgroup rw,freezer
33 24 0:29 / /sys/fs/cgroup/blkio rw - cgroup cgroup rw,blkio
34 24 0:30 / /sys/fs/cgroup/cpuset rw - cgroup cgroup rw,cpuset
35 24 0:31 / /sys/fs/cgroup/hugetlb rw - cgroup cgroup rw,hugetlb
36 24 0:32 / /sys/fs/cgroup/rdma rw - cgroup cgroup rw,rdma
";

/// `template` (a mountinfo sample naming `/sys/fs/cgroup`) moved under `root`.
pub(crate) fn detect(root: &Path, template: &str) -> Hierarchies {
    let mi = template.replace("/sys/fs/cgroup", root.to_str().unwrap());
    Hierarchies::detect(root, &mi).unwrap()
}

/// Make `dir` and the given files in it.
pub(crate) fn files(dir: &Path, files: &[(&str, &str)]) {
    fs::create_dir_all(dir).unwrap();
    for (f, content) in files {
        fs::write(dir.join(f), content).unwrap();
    }
}

/// Make `dir` and empty control files in it.
pub(crate) fn empty_files(dir: &Path, names: &[&str]) {
    fs::create_dir_all(dir).unwrap();
    for f in names {
        fs::write(dir.join(f), "").unwrap();
    }
}

pub(crate) fn cat(path: impl AsRef<Path>) -> String {
    let path = path.as_ref();
    fs::read_to_string(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

/// The container's directory `onggi/c1` in the hierarchy mounted at `root/<mount>`.
pub(crate) fn leaf(root: &Path, mount: &str) -> PathBuf {
    root.join(mount).join("onggi/c1")
}
