//! `--explain`: each kernel step of making a container, printed as it is taken
//! (namespaces, mounts, pivot_root, device nodes, cgroups, capabilities, seccomp,
//! exec), so that a person sees what a container is.
//!
//! The sink is one per process tree, like a logger: the command sets it once
//! ([`enable`]) before anything is forked, and the init, a fork, inherits it with
//! its descriptor (close-on-exec: the container's program never gets it). Steps in
//! the init and in the parent go to the same place in the order they happen.

use std::fmt;
use std::fs::File;
use std::io::Write;
use std::os::fd::OwnedFd;
use std::sync::OnceLock;

use nix::mount::MsFlags;
use nix::NixPath;

static SINK: OnceLock<File> = OnceLock::new();

/// Print the steps to `to` (a close-on-exec descriptor) from now on.
pub fn enable(to: OwnedFd) {
    let _ = SINK.set(File::from(to));
    onggi_cgroups::watch_writes(|path, value| {
        say(format_args!(
            "cgroup: write {:?} to {}",
            value.trim_end(),
            path.display()
        ))
    });
}

/// Whether steps are printed.
pub fn enabled() -> bool {
    SINK.get().is_some()
}

/// Print one step (nothing unless [`enable`]d), in one `write(2)`: the parent and
/// the init print at the same time, and a line written in pieces would interleave.
pub fn say(args: fmt::Arguments<'_>) {
    if let Some(mut f) = SINK.get() {
        let line = format!("explain: {args}\n");
        let _ = f.write_all(line.as_bytes());
    }
}

/// Print a step: `explain!("pivot_root to {}", dir)`. The arguments are evaluated
/// only when steps are printed: the start path pays one check, nothing more.
#[macro_export]
macro_rules! explain {
    ($($arg:tt)*) => {
        if $crate::explain::enabled() {
            $crate::explain::say(format_args!($($arg)*))
        }
    };
}

/// `/proc/self/fd/N[/rest]` as the path the descriptor names (and the rest).
fn real_path(path: &str) -> String {
    let Some(tail) = path.strip_prefix("/proc/self/fd/") else {
        return path.to_owned();
    };
    let (n, rest) = tail.split_once('/').unwrap_or((tail, ""));
    match std::fs::read_link(format!("/proc/self/fd/{n}")) {
        Ok(dir) if rest.is_empty() => dir.display().to_string(),
        Ok(dir) => dir.join(rest).display().to_string(),
        Err(_) => path.to_owned(),
    }
}

fn text<P: ?Sized + NixPath>(p: Option<&P>) -> String {
    p.and_then(|p| p.with_nix_path(|c| c.to_string_lossy().into_owned()).ok())
        .unwrap_or_default()
}

/// `mount(2)` as `nix::mount::mount`, said once it is done: every mount the
/// runtime makes goes through here, so `--explain` lists them all (and only those
/// that happened: a masked path that does not exist is skipped by the caller). A `/proc/self/fd/N` target
/// (the runtime mounts on descriptors it resolved safely) is shown as the path it
/// names.
pub fn mount<P1, P2, P3, P4>(
    source: Option<&P1>,
    target: &P2,
    fstype: Option<&P3>,
    flags: MsFlags,
    data: Option<&P4>,
) -> nix::Result<()>
where
    P1: ?Sized + NixPath,
    P2: ?Sized + NixPath,
    P3: ?Sized + NixPath,
    P4: ?Sized + NixPath,
{
    let done = nix::mount::mount(source, target, fstype, flags, data);
    if done.is_ok() && enabled() {
        let shown = real_path(&text(Some(target)));
        let what = if flags.contains(MsFlags::MS_REMOUNT) {
            "remount".to_owned()
        } else if flags.contains(MsFlags::MS_MOVE) {
            format!("move {}", text(source))
        } else if flags.contains(MsFlags::MS_BIND) {
            format!("bind {}", text(source))
        } else if flags.intersects(MsFlags::MS_PRIVATE | MsFlags::MS_SLAVE | MsFlags::MS_SHARED)
            && fstype.is_none()
        {
            "propagation".to_owned()
        } else {
            format!("new {} from {}", text(fstype), text(source))
        };
        say(format_args!(
            "mount {what} on {shown} (flags {flags:?}{}{})",
            if data.is_some() { ", data " } else { "" },
            text(data)
        ));
    }
    done
}
