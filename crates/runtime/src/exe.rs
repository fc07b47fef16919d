//! The runtime's own executable, sealed before a container is made (CVE-2019-5736).
//!
//! A container's init and exec processes are forks of the runtime: until their
//! execve, `/proc/PID/exe` is the runtime's binary, and a program in the container
//! that is `#!/proc/self/exe` runs that binary inside the container. A process there
//! can then hold `/proc/PID/exe` open and, once the runtime has exited, reopen it for
//! writing and replace the host's runtime. runc and youki defend by copying the binary
//! into a sealed memfd at every start (~5 ms for youki's 7 MiB); runc 1.2 mounts a
//! read-only overlayfs instead.
//!
//! onggi re-executes itself from a *detached read-only bind mount* of its binary:
//! `open_tree(OPEN_TREE_CLONE)` of `/proc/self/exe`, `mount_setattr(MOUNT_ATTR_RDONLY)`,
//! `execveat`. `/proc/self/exe` then names the file through a mount that refuses every
//! write (EROFS), a mount no process can reach but through that link, that no mount
//! table shows, that only `CAP_SYS_ADMIN` in the host's user namespace could make
//! writable again, and that vanishes with the last process running from it. It costs
//! one execve of a static binary, no copy. Where mounts cannot be made (rootless), a
//! binary the caller cannot write needs no protection from the caller's containers;
//! one it can write is copied into a sealed memfd, as runc does.

use std::ffi::CString;
use std::os::fd::AsFd;
use std::os::unix::ffi::OsStrExt;

use nix::sys::statvfs::{statvfs, FsFlags};
use nix::unistd::AccessFlags;

use crate::error::{Context, Error, Result};

const SELF: &str = "/proc/self/exe";
/// The environment variable that carries the installed binary's path across the
/// re-execution.
const ORIGINAL_VAR: &str = "ONGGI_ORIGINAL_EXE";

/// The path this binary was installed at (before any sealed re-execution).
pub fn installed_path() -> Result<std::path::PathBuf> {
    if let Some(p) = std::env::var_os(ORIGINAL_VAR) {
        return Ok(p.into());
    }
    std::fs::read_link(SELF).step(|| format!("readlink {SELF}"))
}

/// Make sure this process runs from a binary the containers it makes cannot write:
/// return at once when it already does, else re-execute it from a sealed copy with
/// the same arguments and environment (this call then does not return).
pub fn ensure_sealed() -> Result<()> {
    let st = statvfs(SELF).step(|| format!("statfs {SELF}"))?;
    if st.flags().contains(FsFlags::ST_RDONLY) {
        return Ok(());
    }
    let argv = cstrings(std::env::args_os().map(|a| a.as_bytes().to_vec()))?;
    // Where the binary is installed, for finding its siblings after the
    // re-execution (then /proc/self/exe names the detached mount, "/").
    let original = std::fs::read_link(SELF).step(|| format!("readlink {SELF}"))?;
    let original_var = (
        std::ffi::OsString::from(ORIGINAL_VAR),
        original.into_os_string(),
    );
    let vars = std::env::vars_os().filter(|(k, _)| k != ORIGINAL_VAR);
    let envp = cstrings(vars.chain(std::iter::once(original_var)).map(|(k, v)| {
        let mut kv = k.as_bytes().to_vec();
        kv.push(b'=');
        kv.extend_from_slice(v.as_bytes());
        kv
    }))?;
    let err = match onggi_sys::mount_api::open_tree_clone(SELF.as_ref(), false) {
        Ok(mnt) => {
            use onggi_sys::mount_attr::{NODEV, NOSUID, RDONLY};
            onggi_sys::mount_api::set_mount_attr(
                mnt.as_fd(),
                RDONLY | NOSUID | NODEV,
                0,
                None,
                false,
            )
            .step(|| "make the bind mount of the runtime's binary read-only")?;
            onggi_sys::mount_api::execveat_fd(mnt.as_fd(), &argv, &envp)
        }
        // No mounts for us (no CAP_SYS_ADMIN): a binary we cannot write is safe.
        Err(nix::errno::Errno::EPERM) => {
            if nix::unistd::access(SELF, AccessFlags::W_OK).is_err() {
                return Ok(());
            }
            let copy = sealed_copy()?;
            onggi_sys::mount_api::execveat_fd(copy.as_fd(), &argv, &envp)
        }
        Err(e) => {
            return Err(e)
                .step(|| format!("open_tree {SELF} (clone a bind mount of the runtime's binary)"))
        }
    };
    Err(err).step(|| "re-execute the runtime from its sealed binary")
}

/// A copy of the binary in a memfd sealed against writes, shrinking and growing.
fn sealed_copy() -> Result<std::os::fd::OwnedFd> {
    use nix::fcntl::{fcntl, FcntlArg, SealFlag};
    use nix::sys::memfd::{memfd_create, MFdFlags};
    let fd = memfd_create(
        c"onggi-runtime",
        MFdFlags::MFD_CLOEXEC | MFdFlags::MFD_ALLOW_SEALING,
    )
    .step(|| "memfd_create for a sealed copy of the runtime")?;
    let mut src = std::fs::File::open(SELF).step(|| format!("open {SELF}"))?;
    let mut dst = std::fs::File::from(fd);
    std::io::copy(&mut src, &mut dst).step(|| "copy the runtime's binary into a memfd")?;
    let seals = SealFlag::F_SEAL_SEAL
        | SealFlag::F_SEAL_SHRINK
        | SealFlag::F_SEAL_GROW
        | SealFlag::F_SEAL_WRITE;
    fcntl(&dst, FcntlArg::F_ADD_SEALS(seals)).step(|| "seal the memfd copy of the runtime")?;
    Ok(dst.into())
}

fn cstrings(items: impl Iterator<Item = Vec<u8>>) -> Result<Vec<CString>> {
    items
        .map(|b| {
            CString::new(b).map_err(|_| {
                Error::Unsupported("an argument or environment variable contains a NUL byte".into())
            })
        })
        .collect()
}

/// Global options of a command line, for [`subcommand_word`].
#[derive(Debug, Clone, Copy)]
pub struct GlobalOptions<'a> {
    /// Long options (without `--`) that take the next word as their value.
    pub with_value: &'a [&'a str],
    /// Long options whose value is optional: the next word is theirs when it is
    /// one of the listed values.
    pub optional_value: &'a [(&'a str, &'a [&'a str])],
}

/// The subcommand on a command line, found without parsing it: the first word that
/// is neither an option nor the value of a global option that takes one. The
/// binaries use it to seal themselves ([`ensure_sealed`]) before their argument
/// parser starts, so that the re-execution pays for one parse, not two.
pub fn subcommand_word(
    args: impl Iterator<Item = std::ffi::OsString>,
    g: GlobalOptions<'_>,
) -> Option<String> {
    let mut args = args.skip(1).peekable();
    while let Some(arg) = args.next() {
        let word = arg.into_string().ok()?;
        match word.strip_prefix("--") {
            Some("") => return None,
            Some(opt) if g.with_value.contains(&opt) => {
                args.next();
            }
            Some(opt) => {
                if let Some((_, values)) = g.optional_value.iter().find(|(o, _)| *o == opt) {
                    let next = args.peek().and_then(|v| v.to_str());
                    if next.is_some_and(|v| values.contains(&v)) {
                        args.next();
                    }
                }
            }
            None if word.starts_with('-') => {}
            None => return Some(word),
        }
    }
    None
}
