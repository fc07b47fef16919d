//! Resolving the OCI `linux.cgroupsPath` to a directory in each hierarchy.
//!
//! * Absolute (`/onggi/c1`): taken from each hierarchy's root (the mount point).
//! * Relative (`onggi/c1`): taken from the caller's own cgroup in that hierarchy, as
//!   listed in `/proc/self/cgroup` (cgroups(7): `id:controllers:path`, `0::path` for v2).
//! * `slice:prefix:name` is the systemd form: refused, systemd cgroups are not
//!   supported yet.
//!
//! `.` and `..` components are refused so that a spec cannot escape the hierarchy.

use crate::error::{Error, Result};
use crate::hierarchy::Mount;

/// The field named in errors about the path.
const FIELD: &str = "linux.cgroupsPath";

/// A validated `linux.cgroupsPath`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SpecPath<'a> {
    /// Taken relative to the caller's own cgroup instead of the hierarchy root.
    pub relative: bool,
    /// The path without leading or trailing slashes, e.g. `onggi/c1`.
    pub rel: &'a str,
    /// The number of components of `rel` (at least 1).
    pub depth: usize,
}

/// Validate a `linux.cgroupsPath`.
pub(crate) fn parse(path: &str) -> Result<SpecPath<'_>> {
    let relative = !path.starts_with('/');
    if relative && path.matches(':').count() == 2 {
        return Err(Error::SystemdPath {
            path: path.to_owned(),
        });
    }
    let rel = path.trim_matches('/');
    let mut depth = 0;
    for c in rel.split('/') {
        let reason = match c {
            "" => "empty component (\"//\")",
            "." | ".." => "\".\" and \"..\" are not allowed",
            _ if c.contains('\0') => "NUL byte",
            _ => {
                depth += 1;
                continue;
            }
        };
        return Err(Error::Invalid {
            field: FIELD,
            reason: format!("{path:?}: {reason}"),
        });
    }
    if rel.is_empty() {
        return Err(Error::Invalid {
            field: FIELD,
            reason: format!("{path:?} does not name a cgroup below the hierarchy root"),
        });
    }
    Ok(SpecPath {
        relative,
        rel,
        depth,
    })
}

/// The caller's cgroup in `mount` (a v1 hierarchy, or the v2 one when `v2`), from the
/// contents of `/proc/self/cgroup`, relative to the mount point (no leading slash; empty
/// for the mount point itself).
pub(crate) fn own<'a>(own_cgroup: &'a str, mount: &Mount, v2: bool) -> Result<&'a str> {
    let hierarchy = || {
        if v2 {
            "unified".to_owned()
        } else {
            mount.controllers().join(",")
        }
    };
    let path = own_cgroup
        .lines()
        .filter_map(|l| {
            let mut f = l.splitn(3, ':');
            Some((f.next()?, f.next()?, f.next()?))
        })
        .find(|(id, ctrls, _)| {
            if v2 {
                *id == "0" && ctrls.is_empty()
            } else {
                !ctrls.is_empty() && ctrls.split(',').any(|c| mount.has(c))
            }
        })
        .map(|(_, _, p)| p)
        .ok_or_else(|| Error::OwnCgroup {
            hierarchy: hierarchy(),
            reason: "not listed in /proc/self/cgroup",
        })?;
    // Inside a container without a cgroup namespace the mount shows a subtree
    // (mountinfo root /docker/<id>) while /proc/self/cgroup gives the full path.
    let root = mount.root().trim_end_matches('/');
    match path.strip_prefix(root) {
        Some(rest) if rest.is_empty() || rest.starts_with('/') => Ok(rest.trim_start_matches('/')),
        _ => Err(Error::OwnCgroup {
            hierarchy: hierarchy(),
            reason: "outside the part of the hierarchy that is mounted",
        }),
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::hierarchy::{tests::HYBRID, tests::V1, Hierarchies};

    #[test]
    fn absolute_and_relative_paths() {
        let p = parse("/onggi/c1").unwrap();
        assert_eq!((p.relative, p.rel, p.depth), (false, "onggi/c1", 2));
        let p = parse("onggi/c1/").unwrap();
        assert_eq!((p.relative, p.rel, p.depth), (true, "onggi/c1", 2));
        assert_eq!(parse("/x").unwrap().depth, 1);
    }

    #[test]
    fn systemd_form_is_refused_clearly() {
        let e = parse("system.slice:onggi:c1").unwrap_err();
        assert!(matches!(e, Error::SystemdPath { .. }));
        assert!(e.to_string().contains("not supported yet"), "{e}");
        // A colon in an absolute path is just a name.
        assert!(parse("/a:b:c").is_ok());
    }

    #[test]
    fn bad_paths_name_the_field() {
        for p in ["", "/", "/a/../b", "a/./b", "/a//b"] {
            let e = parse(p).unwrap_err();
            assert!(
                matches!(e, Error::Invalid { field: FIELD, .. }),
                "{p:?}: {e}"
            );
        }
    }

    const OWN: &str = "\
9:name=systemd:/user.slice
8:pids:/
4:memory:/process_api/de8c
2:cpuacct:/
1:cpu:/
0::/user.slice/session-1.scope
";

    #[test]
    fn own_cgroup_per_hierarchy() {
        let h = Hierarchies::detect(Path::new("/sys/fs/cgroup"), HYBRID).unwrap();
        let own_of = |c| own(OWN, h.v1_mount(c).unwrap(), false).unwrap();
        assert_eq!(own_of("memory"), "process_api/de8c");
        assert_eq!(own_of("pids"), "");
        assert_eq!(own_of("name=systemd"), "user.slice");
        assert_eq!(
            own(OWN, h.unified().unwrap(), true).unwrap(),
            "user.slice/session-1.scope"
        );
        let e = own(OWN, h.v1_mount("devices").unwrap(), false).unwrap_err();
        assert!(matches!(e, Error::OwnCgroup { .. }), "{e}");
    }

    #[test]
    fn own_cgroup_in_a_combined_hierarchy_and_below_a_mount_root() {
        let h = Hierarchies::detect(Path::new("/sys/fs/cgroup"), V1).unwrap();
        let own_cg = "3:cpu,cpuacct:/docker/abc/inner\n";
        assert_eq!(
            own(own_cg, h.v1_mount("cpuacct").unwrap(), false).unwrap(),
            "docker/abc/inner"
        );
        let mi = "5 1 0:5 /docker/abc /sys/fs/cgroup/cpu,cpuacct rw - cgroup cgroup rw,cpu,cpuacct";
        let h = Hierarchies::detect(Path::new("/sys/fs/cgroup"), mi).unwrap();
        let m = h.v1_mount("cpu").unwrap();
        assert_eq!(own(own_cg, m, false).unwrap(), "inner");
        assert!(own("3:cpu,cpuacct:/docker/abcd\n", m, false).is_err());
    }
}
