//! The container's terminal: a pty made inside the container (from its own devpts),
//! whose master is handed to the caller over `--console-socket` with SCM_RIGHTS, and
//! whose slave becomes the process's controlling terminal and stdio.

use std::io::IoSlice;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};

use nix::fcntl::{open, OFlag};
use nix::pty::{grantpt, posix_openpt, ptsname_r, unlockpt};
use nix::sys::socket::{sendmsg, ControlMessage, MsgFlags, UnixAddr};
use nix::sys::stat::Mode;

use crate::error::{Context, Result};

/// Connect to the console socket (done by the runtime before the init is cloned, while
/// the host's paths are still visible).
pub fn connect(path: &Path) -> Result<UnixStream> {
    UnixStream::connect(path).step(|| format!("connect to console socket {}", path.display()))
}

/// A new pty: (master, slave, slave path).
pub fn open_pty() -> Result<(OwnedFd, OwnedFd, PathBuf)> {
    let master = posix_openpt(OFlag::O_RDWR | OFlag::O_NOCTTY | OFlag::O_CLOEXEC)
        .step(|| "open /dev/ptmx")?;
    grantpt(&master).step(|| "grantpt")?;
    unlockpt(&master).step(|| "unlockpt")?;
    let name = ptsname_r(&master).step(|| "ptsname")?;
    let slave = open(
        name.as_str(),
        OFlag::O_RDWR | OFlag::O_NOCTTY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .step(|| format!("open pty slave {name}"))?;
    let master: OwnedFd = master.into();
    Ok((master, slave, PathBuf::from(name)))
}

/// Send `master` over the connected console socket, as runc does (the message body is
/// the name of the terminal).
pub fn send_master(sock: &UnixStream, master: &OwnedFd) -> Result<()> {
    let fds = [master.as_raw_fd()];
    let body = b"/dev/ptmx";
    let iov = [IoSlice::new(body)];
    sendmsg::<UnixAddr>(
        sock.as_raw_fd(),
        &iov,
        &[ControlMessage::ScmRights(&fds)],
        MsgFlags::empty(),
        None,
    )
    .step(|| "send the pty master over the console socket")?;
    Ok(())
}

/// Make `slave` the controlling terminal and stdin/stdout/stderr of this process.
pub fn make_controlling(slave: &OwnedFd, size: Option<(u16, u16)>) -> Result<()> {
    nix::unistd::setsid().step(|| "setsid")?;
    onggi_sys::set_controlling_terminal(slave).step(|| "make the pty the controlling terminal")?;
    if let Some((rows, cols)) = size {
        onggi_sys::set_window_size(slave, rows, cols).step(|| "set the terminal size")?;
    }
    nix::unistd::dup2_stdin(slave).step(|| "dup the pty onto stdin")?;
    nix::unistd::dup2_stdout(slave).step(|| "dup the pty onto stdout")?;
    nix::unistd::dup2_stderr(slave).step(|| "dup the pty onto stderr")?;
    Ok(())
}

/// Receive the pty master that the init sent over `sock` (the far end of an internal
/// socketpair, for `run` in the foreground without `--console-socket`).
pub fn recv_master(sock: &UnixStream) -> Result<OwnedFd> {
    use std::os::fd::AsFd;
    onggi_sys::recv_fd(sock.as_fd())
        .step(|| "receive the pty master")?
        .ok_or_else(|| crate::error::Error::Init("the init sent no pty master".into()))
}

/// Our terminal in raw mode while a container's terminal is relayed; restored on drop.
pub struct RawMode {
    fd: std::os::fd::OwnedFd,
    saved: nix::sys::termios::Termios,
}

impl RawMode {
    /// If `ours` is a terminal: give `master` its size and switch `ours` to raw mode
    /// (keys go to the container unprocessed). `None` when `ours` is not a terminal.
    pub fn enter(ours: std::os::fd::BorrowedFd<'_>, master: &OwnedFd) -> Option<RawMode> {
        use nix::sys::termios::{cfmakeraw, tcgetattr, tcsetattr, SetArg};
        let saved = tcgetattr(ours).ok()?;
        copy_window_size(ours, master);
        let mut raw = saved.clone();
        cfmakeraw(&mut raw);
        tcsetattr(ours, SetArg::TCSANOW, &raw).ok()?;
        Some(RawMode {
            fd: ours.try_clone_to_owned().ok()?,
            saved,
        })
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        let _ =
            nix::sys::termios::tcsetattr(&self.fd, nix::sys::termios::SetArg::TCSANOW, &self.saved);
    }
}

/// Give `master` the window size of `ours` (if `ours` is a terminal).
pub fn copy_window_size(ours: std::os::fd::BorrowedFd<'_>, master: &OwnedFd) {
    if let Ok((rows, cols)) = onggi_sys::window_size(ours) {
        let _ = onggi_sys::set_window_size(master, rows, cols);
    }
}
