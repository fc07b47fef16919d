//! The parent↔init bootstrap protocol: one typed message enum over a
//! `SOCK_SEQPACKET` socketpair (one datagram per message, so no framing).
//!
//! ```text
//!  runtime (parent)                         container init (child)
//!  ────────────────                         ──────────────────────
//!  clone(CLONE_NEW*) ─────────────────────► starts in the new namespaces
//!  write uid_map/gid_map, join cgroup
//!  MountFd(i) + fd ───────────────────────► (one per idmapped mount)
//!  Go ────────────────────────────────────► (blocks until Go)
//!                                           hostname, mounts, /dev
//!  ◄──────────────────────────────────────  CreateRuntimeHooks   (only if there are any)
//!  run prestart + createRuntime hooks
//!  HooksDone(state) ──────────────────────►
//!                                           createContainer hooks, pivot_root,
//!                                           console, rlimits, resolve args[0]
//!  ◄──────────────────────────────────────  SeccompFd + fd   (only with a listenerPath:
//!  hand the listener to the seccomp agent                    the filter is loaded here)
//!  SeccompDone ───────────────────────────►
//!  ◄──────────────────────────────────────  Ready
//!  write state.json, exit (create)          block on exec.fifo (create)
//!  or Start ──────────────────────────────► or on Start (run)
//!                                           startContainer hooks, user, caps, execve
//!  ◄──────────────────────────────────────  Error(msg)  at any step; then exit(1)
//! ```
//! With namespaces to join, an intermediate process joins them and clones the init;
//! it sends `InitPid` before exiting, so the parent learns the init's PID.

use std::os::fd::{AsRawFd, OwnedFd};

use nix::errno::Errno;
use nix::sys::socket::{recv, send, socketpair, AddressFamily, MsgFlags, SockFlag, SockType};

/// One message of the bootstrap protocol.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Msg {
    /// parent → init: mappings written, cgroup joined; go on.
    Go,
    /// init → parent: the environment is made; run createRuntime hooks now.
    CreateRuntimeHooks,
    /// parent → init: createRuntime hooks done; the state JSON for the
    /// createContainer and startContainer hooks (the init cannot see its host PID).
    HooksDone(String),
    /// init → parent: set up and waiting for start.
    Ready,
    /// parent → init: start the user's process (`run` only; `create` uses exec.fifo).
    Start,
    /// intermediate → parent: the init's PID.
    InitPid(i32),
    /// either way: setup failed with this message.
    Error(String),
    /// init → parent, with the seccomp listener descriptor attached (SCM_RIGHTS):
    /// the filter is loaded; hand the listener to the agent at `listenerPath`.
    SeccompFd,
    /// parent → init: the agent has the listener; go on.
    SeccompDone,
    /// parent → init, before `Go`, with a detached idmapped mount attached
    /// (SCM_RIGHTS): the source of `mounts[index]`.
    MountFd(u32),
}

impl Msg {
    fn encode(&self) -> Vec<u8> {
        match self {
            Msg::Go => vec![1],
            Msg::CreateRuntimeHooks => vec![2],
            Msg::HooksDone(s) => {
                let mut v = vec![3];
                v.extend_from_slice(s.as_bytes());
                v
            }
            Msg::Ready => vec![4],
            Msg::Start => vec![5],
            Msg::InitPid(p) => {
                let mut v = vec![6];
                v.extend_from_slice(&p.to_le_bytes());
                v
            }
            Msg::Error(s) => {
                let mut v = vec![7];
                v.extend_from_slice(s.as_bytes());
                v
            }
            Msg::SeccompFd => vec![8],
            Msg::SeccompDone => vec![9],
            Msg::MountFd(i) => {
                let mut v = vec![10];
                v.extend_from_slice(&i.to_le_bytes());
                v
            }
        }
    }

    fn decode(b: &[u8]) -> Option<Msg> {
        Some(match *b.first()? {
            1 => Msg::Go,
            2 => Msg::CreateRuntimeHooks,
            3 => Msg::HooksDone(String::from_utf8_lossy(&b[1..]).into_owned()),
            4 => Msg::Ready,
            5 => Msg::Start,
            6 => Msg::InitPid(i32::from_le_bytes(b.get(1..5)?.try_into().ok()?)),
            7 => Msg::Error(String::from_utf8_lossy(&b[1..]).into_owned()),
            8 => Msg::SeccompFd,
            9 => Msg::SeccompDone,
            10 => Msg::MountFd(u32::from_le_bytes(b.get(1..5)?.try_into().ok()?)),
            _ => return None,
        })
    }
}

/// One end of the bootstrap channel.
#[derive(Debug)]
pub struct Channel(OwnedFd);

/// What went wrong on the channel.
#[derive(Debug, thiserror::Error)]
pub enum ChannelError {
    /// The other side closed without sending (it died).
    #[error("the other side exited without a word")]
    Closed,
    /// A message we did not expect at this point.
    #[error("protocol error: expected {expected}, got {got:?}")]
    Unexpected {
        /// What we waited for.
        expected: &'static str,
        /// What came.
        got: Msg,
    },
    /// The other side reported a failure.
    #[error("{0}")]
    Remote(String),
    /// The socket call failed.
    #[error("bootstrap socket: {0}")]
    Sys(#[from] Errno),
}

/// A connected pair: (parent's end, child's end). Both are close-on-exec.
pub fn pair() -> Result<(Channel, Channel), Errno> {
    let (a, b) = socketpair(
        AddressFamily::Unix,
        SockType::SeqPacket,
        None,
        SockFlag::SOCK_CLOEXEC,
    )?;
    Ok((Channel(a), Channel(b)))
}

impl Channel {
    /// Send one message.
    pub fn send(&self, m: &Msg) -> Result<(), Errno> {
        let buf = m.encode();
        loop {
            match send(self.0.as_raw_fd(), &buf, MsgFlags::MSG_NOSIGNAL) {
                Err(Errno::EINTR) => continue,
                r => return r.map(drop),
            }
        }
    }

    /// Receive one message; `None` when the other side has closed.
    /// Send `m` with the descriptor `fd` attached (SCM_RIGHTS).
    pub fn send_with_fd(&self, m: &Msg, fd: std::os::fd::BorrowedFd<'_>) -> Result<(), Errno> {
        use nix::sys::socket::{sendmsg, ControlMessage};
        let buf = m.encode();
        let iov = [std::io::IoSlice::new(&buf)];
        let fds = [fd.as_raw_fd()];
        let cmsg = [ControlMessage::ScmRights(&fds)];
        loop {
            match sendmsg::<()>(
                self.0.as_raw_fd(),
                &iov,
                &cmsg,
                MsgFlags::MSG_NOSIGNAL,
                None,
            ) {
                Err(Errno::EINTR) => continue,
                r => return r.map(drop),
            }
        }
    }

    /// Receive a message and the descriptor attached to it, if any (close-on-exec).
    pub fn recv_with_fd(&self) -> Result<(Option<Msg>, Option<OwnedFd>), Errno> {
        let mut buf = [0u8; 4096];
        loop {
            match onggi_sys::recv_with_fd(&self.0, &mut buf) {
                Err(Errno::EINTR) => continue,
                Err(e) => return Err(e),
                Ok((0, fd)) => return Ok((None, fd)),
                Ok((n, fd)) => return Ok((Msg::decode(&buf[..n]), fd)),
            }
        }
    }

    /// Receive one message; `None` when the other side has closed.
    pub fn recv(&self) -> Result<Option<Msg>, Errno> {
        let mut buf = [0u8; 4096];
        loop {
            match recv(self.0.as_raw_fd(), &mut buf, MsgFlags::empty()) {
                Err(Errno::EINTR) => continue,
                Err(e) => return Err(e),
                Ok(0) => return Ok(None),
                Ok(n) => return Ok(Msg::decode(&buf[..n])),
            }
        }
    }

    /// Receive and require `want`; a remote `Error` becomes [`ChannelError::Remote`].
    pub fn expect(&self, want: Msg, name: &'static str) -> Result<(), ChannelError> {
        match self.recv()? {
            None => Err(ChannelError::Closed),
            Some(Msg::Error(s)) => Err(ChannelError::Remote(s)),
            Some(m) if m == want => Ok(()),
            Some(got) => Err(ChannelError::Unexpected {
                expected: name,
                got,
            }),
        }
    }

    /// The descriptor number (for a forked child to close the other side's end).
    pub fn raw_fd(&self) -> std::os::fd::RawFd {
        self.0.as_raw_fd()
    }

    /// The raw descriptor (for polling).
    pub fn fd(&self) -> std::os::fd::BorrowedFd<'_> {
        use std::os::fd::AsFd;
        self.0.as_fd()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_message_round_trips() {
        let (a, b) = pair().unwrap();
        let all = [
            Msg::Go,
            Msg::CreateRuntimeHooks,
            Msg::HooksDone("{}".into()),
            Msg::Ready,
            Msg::Start,
            Msg::InitPid(4242),
            Msg::Error("mount proc: EPERM".into()),
            Msg::SeccompFd,
            Msg::SeccompDone,
            Msg::MountFd(7),
        ];
        for m in &all {
            a.send(m).unwrap();
            assert_eq!(b.recv().unwrap().as_ref(), Some(m));
        }
        // A descriptor travels with its message.
        let (r, _w) = nix::unistd::pipe().unwrap();
        use std::os::fd::AsFd;
        a.send_with_fd(&Msg::MountFd(3), r.as_fd()).unwrap();
        let (m, fd) = b.recv_with_fd().unwrap();
        assert_eq!(m, Some(Msg::MountFd(3)));
        let got = nix::sys::stat::fstat(fd.unwrap()).unwrap();
        assert_eq!(got.st_ino, nix::sys::stat::fstat(&r).unwrap().st_ino);
        b.send(&Msg::Error("boom".into())).unwrap();
        assert!(
            matches!(a.expect(Msg::Ready, "Ready"), Err(ChannelError::Remote(s)) if s == "boom")
        );
        drop(b);
        assert!(matches!(
            a.expect(Msg::Ready, "Ready"),
            Err(ChannelError::Closed)
        ));
    }
}
