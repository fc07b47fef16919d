//! Idmapped bind mounts, made on the runtime's side (parent) of the bootstrap.
//!
//! `mount_setattr(MOUNT_ATTR_IDMAP)` needs CAP_SYS_ADMIN in the user namespace that
//! owns the source filesystem (the host's), which an init in a new user namespace no
//! longer has. So the parent clones each source into a detached mount
//! (`open_tree(OPEN_TREE_CLONE)`), maps it through a user namespace, and sends the
//! descriptor to the init, which attaches it with `move_mount` (runc 1.2 does the
//! same). The user namespace is the container's when the mount has no mappings of
//! its own; otherwise a throwaway one: a child cloned into a new user namespace
//! that waits, is given the mappings, has its namespace opened, and is killed.

use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};

use nix::fcntl::{open, OFlag};
use nix::sys::signal::{kill, Signal};
use nix::sys::stat::Mode;
use nix::sys::wait::waitpid;
use nix::unistd::Pid;
use oci_spec::runtime::LinuxIdMapping;
use onggi_sys::{clone_fork, Forked};

use crate::error::{Context, Error, Result};
use crate::plan::Plan;
use crate::sync::{Channel, Msg};

/// Make every idmapped mount of `plan` and send it to the init `pid` (whose user
/// namespace has its mappings written) before `Go`.
pub fn send_mounts(plan: &Plan, pid: Pid, ch: &Channel) -> Result<()> {
    let mut container_ns = None;
    for m in &plan.mounts {
        let Some(idmap) = &m.idmap else { continue };
        let src = m.source.as_deref().expect("plan checks bind sources");
        let shown = || format!("mounts[{}] ({})", m.index, src.display());
        let own_ns;
        let userns = if idmap.uid_mappings.is_empty() {
            if container_ns.is_none() {
                let path = format!("/proc/{pid}/ns/user");
                container_ns = Some(
                    open(
                        path.as_str(),
                        OFlag::O_RDONLY | OFlag::O_CLOEXEC,
                        Mode::empty(),
                    )
                    .step(|| format!("open {path}"))?,
                );
            }
            container_ns.as_ref().expect("set above")
        } else {
            own_ns = user_namespace(&shown(), &idmap.uid_mappings, &idmap.gid_mappings)?;
            &own_ns
        };
        let recursive = m.flags.contains(nix::mount::MsFlags::MS_REC);
        let mnt = onggi_sys::mount_api::open_tree_clone(src, recursive)
            .step(|| format!("{}: clone a bind mount of the source", shown()))?;
        onggi_sys::mount_api::set_mount_attr(
            mnt.as_fd(),
            0,
            0,
            Some(userns.as_fd()),
            idmap.recursive,
        )
        .step(|| {
            format!(
                "{}: idmap the mount (mount_setattr MOUNT_ATTR_IDMAP)",
                shown()
            )
        })?;
        ch.send_with_fd(&Msg::MountFd(m.index as u32), mnt.as_fd())
            .step(|| format!("{}: send the idmapped mount to the init", shown()))?;
    }
    Ok(())
}

/// A user namespace with these mappings, held by its descriptor only; `what` names
/// the mount it is for in errors.
fn user_namespace(what: &str, uids: &[LinuxIdMapping], gids: &[LinuxIdMapping]) -> Result<OwnedFd> {
    let (hold, wait) = nix::unistd::pipe().step(|| format!("{what}: pipe"))?;
    let flags = nix::sched::CloneFlags::CLONE_NEWUSER.bits();
    let forked = clone_fork(flags).step(|| format!("{what}: clone into a new user namespace"))?;
    let child = match forked {
        Forked::Child => {
            drop(hold);
            // Wait (for EOF or death) without touching anything else.
            let _ = nix::unistd::read(&wait, &mut [0u8; 1]);
            std::process::exit(0)
        }
        Forked::Parent(pid) => pid,
    };
    drop(wait);
    let dir = PathBuf::from(format!("/proc/{child}"));
    let r = write_map(&dir.join("uid_map"), uids, &format!("{what} uidMappings"))
        .and_then(|()| write_map(&dir.join("gid_map"), gids, &format!("{what} gidMappings")))
        .and_then(|()| {
            let path = format!("/proc/{child}/ns/user");
            open(
                path.as_str(),
                OFlag::O_RDONLY | OFlag::O_CLOEXEC,
                Mode::empty(),
            )
            .step(|| format!("{what}: open {path}"))
        });
    let _ = kill(child, Signal::SIGKILL);
    let _ = waitpid(child, None);
    r
}

/// Write `/proc/PID/uid_map` and `gid_map`. Root writes any mapping. An
/// unprivileged caller (rootless) may map only its own uid and gid, each once, and
/// its gid only after denying setgroups(2) in the namespace (user_namespaces(7));
/// any other mapping goes through the setuid helpers `newuidmap`/`newgidmap`
/// (shadow's uidmap package), which allow the ranges /etc/subuid and /etc/subgid
/// give the caller.
pub fn write_maps(pid: Pid, uids: &[LinuxIdMapping], gids: &[LinuxIdMapping]) -> Result<()> {
    let dir = PathBuf::from(format!("/proc/{pid}"));
    let uid = nix::unistd::geteuid();
    if uid.is_root() {
        write_map(&dir.join("uid_map"), uids, "linux.uidMappings")?;
        return write_map(&dir.join("gid_map"), gids, "linux.gidMappings");
    }
    let only = |maps: &[LinuxIdMapping], id: u32| matches!(maps, [m] if m.host_id() == id && m.size() == 1);
    if only(uids, uid.as_raw()) {
        write_map(&dir.join("uid_map"), uids, "linux.uidMappings")?;
    } else {
        helper("newuidmap", pid, uids, "linux.uidMappings")?;
    }
    if only(gids, nix::unistd::getegid().as_raw()) {
        let setgroups = dir.join("setgroups");
        std::fs::write(&setgroups, "deny")
            .step(|| format!("write deny to {}", setgroups.display()))?;
        write_map(&dir.join("gid_map"), gids, "linux.gidMappings")
    } else {
        helper("newgidmap", pid, gids, "linux.gidMappings")
    }
}

/// Run `newuidmap`/`newgidmap PID ID HOSTID SIZE...`.
fn helper(program: &str, pid: Pid, maps: &[LinuxIdMapping], field: &str) -> Result<()> {
    let mut cmd = std::process::Command::new(program);
    cmd.arg(pid.to_string());
    for m in maps {
        cmd.args([m.container_id(), m.host_id(), m.size()].map(|n| n.to_string()));
    }
    let out = cmd.output().map_err(|e| {
        Error::Unsupported(format!(
            "{field}: a rootless caller can map only its own id without {program} \
             (install the uidmap package): {e}"
        ))
    })?;
    if !out.status.success() {
        return Err(Error::Unsupported(format!(
            "{field}: {program} refused the mapping (are the ranges in /etc/subuid and \
             /etc/subgid for this user?): {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(())
}

fn write_map(path: &Path, maps: &[LinuxIdMapping], field: &str) -> Result<()> {
    std::fs::write(path, id_map(maps)).step(|| format!("write {} ({field})", path.display()))
}

/// The text of a uid_map/gid_map file.
pub fn id_map(maps: &[LinuxIdMapping]) -> String {
    maps.iter()
        .map(|m| format!("{} {} {}\n", m.container_id(), m.host_id(), m.size()))
        .collect()
}
