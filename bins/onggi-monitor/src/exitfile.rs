//! How the container's init ended, and the exit file that tells the engine.
//!
//! The file is replaced atomically: the record is written to `FILE.tmp`, synced, and
//! renamed over `FILE`, then the directory is synced. A reader sees no file or the
//! whole record, never a part of it, even after a crash.

use core::ffi::CStr;

use crate::json::{self, Cursor};
use crate::logfile::{path_with_suffix, NAME_LEN};
use crate::sys::{self, Errno, Time};
use crate::time::Rfc3339;

/// How a process ended, as Docker reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExitStatus {
    /// The exit code; 128 + the signal number for a process killed by a signal.
    pub code: i32,
    /// The signal that killed the process, if one did.
    pub signal: Option<i32>,
}

impl ExitStatus {
    /// Decode a raw `wait4` status; `None` for a stopped or continued process.
    pub fn from_wait_status(status: i32) -> Option<Self> {
        let low = status & 0x7f;
        if low == 0 {
            // WIFEXITED: the code is in bits 8-15.
            Some(ExitStatus {
                code: (status >> 8) & 0xff,
                signal: None,
            })
        } else if low != 0x7f && status & 0xffff == low | (status & 0x80) {
            // WIFSIGNALED: the signal in bits 0-6, bit 7 says a core was dumped.
            Some(ExitStatus {
                code: 128 + low,
                signal: Some(low),
            })
        } else {
            None
        }
    }
}

/// The step of writing the exit file that failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitFileError {
    /// Creating `FILE.tmp`.
    Create(Errno),
    /// Writing the record.
    Write(Errno),
    /// Syncing `FILE.tmp`.
    Sync(Errno),
    /// Renaming `FILE.tmp` to `FILE`.
    Rename(Errno),
}

impl ExitFileError {
    /// The failed step's name and its error.
    pub fn step(&self) -> (&'static [u8], Errno) {
        match *self {
            ExitFileError::Create(e) => (b"create", e),
            ExitFileError::Write(e) => (b"write", e),
            ExitFileError::Sync(e) => (b"fsync", e),
            ExitFileError::Rename(e) => (b"rename", e),
        }
    }
}

/// Write `status` (finished at `at`) to `path`, atomically. `names` holds a
/// [`NAME_LEN`]-byte scratch name.
pub fn write(
    path: &CStr,
    status: ExitStatus,
    at: Time,
    names: &mut [u8],
) -> Result<(), ExitFileError> {
    let mut record = [0u8; 128];
    let mut out = Cursor::new(&mut record);
    json::put_exit_record(&mut out, status.code, status.signal, &Rfc3339::new(at));
    let record = out.into_bytes();

    let tmp = path_with_suffix(&mut names[..NAME_LEN], path, b".tmp", None);
    let fd = sys::open(tmp, sys::O_WRONLY | sys::O_CREAT | sys::O_TRUNC, 0o644)
        .map_err(ExitFileError::Create)?;
    sys::write_all(fd.raw(), record).map_err(|(_, e)| ExitFileError::Write(e))?;
    sys::fsync(&fd).map_err(ExitFileError::Sync)?;
    drop(fd);
    sys::rename(tmp, path).map_err(ExitFileError::Rename)?;
    sync_parent_dir(path, names);
    Ok(())
}

/// Make the rename durable: `fsync` the directory holding `path` (best effort: the
/// record is already in place for every reader).
fn sync_parent_dir(path: &CStr, names: &mut [u8]) {
    let p = path.to_bytes();
    let slash = p.iter().rposition(|&b| b == b'/').unwrap_or(0);
    let dir = if slash == 0 { &b"/"[..] } else { &p[..slash] };
    let mut out = Cursor::new(&mut names[..NAME_LEN]);
    json::Put::put(&mut out, dir);
    json::Put::put(&mut out, b"\0");
    if let Ok(dir) = CStr::from_bytes_with_nul(out.into_bytes()) {
        if let Ok(fd) = sys::open(dir, sys::O_DIRECTORY, 0) {
            let _ = sys::fsync(&fd);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_wait_statuses_like_libc() {
        for code in [0, 1, 3, 255] {
            let raw = code << 8;
            assert!(libc::WIFEXITED(raw));
            assert_eq!(
                ExitStatus::from_wait_status(raw),
                Some(ExitStatus { code, signal: None })
            );
        }
        for (sig, core) in [(9, false), (15, false), (11, true), (6, true)] {
            let raw = sig | if core { 0x80 } else { 0 };
            assert!(libc::WIFSIGNALED(raw));
            assert_eq!(
                ExitStatus::from_wait_status(raw),
                Some(ExitStatus {
                    code: 128 + sig,
                    signal: Some(sig)
                })
            );
        }
        // Stopped (0x7f in the low byte) and continued (0xffff).
        assert!(libc::WIFSTOPPED(0x137f));
        assert_eq!(ExitStatus::from_wait_status(0x137f), None);
        assert_eq!(ExitStatus::from_wait_status(0xffff), None);
    }

    #[test]
    fn writes_the_record_and_leaves_no_temporary_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = std::ffi::CString::new(
            dir.path()
                .join("exit")
                .into_os_string()
                .into_encoded_bytes(),
        )
        .unwrap();
        let mut names = vec![0u8; NAME_LEN];
        let status = ExitStatus {
            code: 137,
            signal: Some(9),
        };
        write(&path, status, Time { secs: 0, nanos: 0 }, &mut names).unwrap();
        let text = std::fs::read_to_string(dir.path().join("exit")).unwrap();
        assert_eq!(
            text,
            "{\"exit_code\":137,\"signal\":9,\"finished_at\":\"1970-01-01T00:00:00.000000000Z\",\"oom_killed\":false}\n"
        );
        assert!(!dir.path().join("exit.tmp").exists());
    }

    #[test]
    fn names_the_failed_step() {
        let mut names = vec![0u8; NAME_LEN];
        let status = ExitStatus {
            code: 0,
            signal: None,
        };
        let err = write(
            c"/nonexistent-dir/exit",
            status,
            Time { secs: 0, nanos: 0 },
            &mut names,
        )
        .unwrap_err();
        assert_eq!(err.step(), (&b"create"[..], Errno(2)));
    }
}
