//! The container's log file in Docker's `json-file` format, with rotation.
//!
//! Records are built in a fixed buffer and written with as few `write` calls as
//! possible: a record that fits in the buffer's free space is never split across two
//! writes, so a reader following the file sees whole lines. Before a record that
//! would make the file larger than the maximum size, the file is rotated:
//! `FILE.(n-1)` → `FILE.n`, …, `FILE` → `FILE.1`, and a new empty `FILE` is opened,
//! so that `max_files` files exist at most (with one, the file is truncated instead).
//!
//! A failed write (disk full, `RLIMIT_FSIZE`, I/O error) drops what was not written
//! and the monitor carries on: the container must never block on a full pipe because
//! its log cannot be written. If a failure left half a record in the file, the next
//! record starts on a new line, so the damage stays on one line.

use core::ffi::CStr;

use crate::json::{self, Cursor, Put, Stream};
use crate::sys::{self, Errno, Fd, Time};
use crate::time::Rfc3339;

/// The log file's limits (`--log-max-size`, `--log-max-files`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rotation {
    /// Rotate before the file would grow beyond this many bytes.
    pub max_size: u64,
    /// How many files to keep, the current one included (1..=99).
    pub max_files: u32,
}

/// Longest path accepted for the log and exit files: leaves room for the suffixes
/// (`.99`, `.tmp`) and the NUL in a page-sized name buffer.
pub const MAX_PATH: usize = 4000;

/// Room for one path with a suffix and its NUL.
pub const NAME_LEN: usize = MAX_PATH + 8;

/// Write `path` + `suffix` (+ a number if given) + NUL into `buf`; the resulting C string.
pub fn path_with_suffix<'b>(
    buf: &'b mut [u8],
    path: &CStr,
    suffix: &[u8],
    n: Option<u32>,
) -> &'b CStr {
    let mut b = Cursor::new(buf);
    b.put(path.to_bytes());
    b.put(suffix);
    if let Some(n) = n {
        json::put_int(&mut b, n.into());
    }
    b.put(b"\0");
    CStr::from_bytes_with_nul(b.into_bytes()).unwrap_or(c"")
}

/// An open log file and its write buffer.
#[derive(Debug)]
pub struct LogFile<'a> {
    path: &'a CStr,
    fd: Option<Fd>,
    rotation: Rotation,
    /// Bytes in the file (as far as this process knows: written, not buffered).
    size: u64,
    buf: &'a mut [u8],
    len: usize,
    /// The last write stopped in the middle of a record.
    torn: bool,
    /// Scratch space for the rotated files' names (two names).
    names: &'a mut [u8],
}

impl<'a> LogFile<'a> {
    /// Open (create, append to) the log at `path`. `buf` is the write buffer;
    /// `names` must hold two [`NAME_LEN`] names. If the file cannot be opened the
    /// error is returned with a `LogFile` that drops everything.
    pub fn open(
        path: &'a CStr,
        rotation: Rotation,
        buf: &'a mut [u8],
        names: &'a mut [u8],
    ) -> (Self, Option<Errno>) {
        let mut log = LogFile {
            path,
            fd: None,
            rotation,
            size: 0,
            buf,
            len: 0,
            torn: false,
            names,
        };
        let err = log.reopen(false).err();
        (log, err)
    }

    fn reopen(&mut self, truncate: bool) -> Result<(), Errno> {
        // Without a file nothing is written, so nothing counts towards a rotation.
        self.fd = None;
        self.size = 0;
        self.torn = false;
        let trunc = if truncate { sys::O_TRUNC } else { 0 };
        let fd = sys::open(
            self.path,
            sys::O_WRONLY | sys::O_CREAT | sys::O_APPEND | trunc,
            0o640,
        )?;
        self.size = sys::seek_end(&fd).unwrap_or(0);
        self.fd = Some(fd);
        Ok(())
    }

    /// Append one record for `line` of `stream`, read at `time`.
    pub fn record(&mut self, stream: Stream, line: &[u8], time: Time) {
        let time = Rfc3339::new(time);
        let len = json::log_record_len(line, stream, &time) + usize::from(self.torn);
        let pending = self.size + self.len as u64;
        if pending > 0 && pending + len as u64 > self.rotation.max_size {
            self.flush();
            self.rotate();
        }
        if self.len + len > self.buf.len() {
            self.flush();
        }
        if self.torn {
            self.put(b"\n");
            self.torn = false;
        }
        json::put_log_record(self, line, stream, &time);
    }

    /// Write out the buffer (dropping it if the write fails).
    pub fn flush(&mut self) {
        if self.len == 0 {
            return;
        }
        if let Some(fd) = &self.fd {
            let data = &self.buf[..self.len];
            match sys::write_all(fd.raw(), data) {
                Ok(()) => self.size += data.len() as u64,
                Err((written, _)) => {
                    self.size += written as u64;
                    self.torn = written > 0 && data[written - 1] != b'\n';
                }
            }
        }
        self.len = 0;
    }

    /// Close the file (after a [`flush`](Self::flush)) and give back the scratch space
    /// for names (two [`NAME_LEN`] names).
    pub fn into_names(self) -> &'a mut [u8] {
        self.names
    }

    /// Shift the rotated files up by one and start a new, empty file.
    fn rotate(&mut self) {
        let (from, to) = self.names.split_at_mut(NAME_LEN);
        let mut renamed = false;
        for n in (1..self.rotation.max_files).rev() {
            let older = path_with_suffix(to, self.path, b".", Some(n));
            let newer = if n == 1 {
                self.path
            } else {
                path_with_suffix(from, self.path, b".", Some(n - 1))
            };
            // A missing older file (fewer rotations so far) is no error.
            renamed = sys::rename(newer, older).is_ok();
        }
        // With one file nothing is renamed: it is truncated. If the current file could
        // not be renamed, it is kept (appended to) rather than truncated: rotation will
        // be tried again before the next record.
        let _ = self.reopen(renamed || self.rotation.max_files == 1);
    }
}

impl Put for LogFile<'_> {
    fn put(&mut self, mut bytes: &[u8]) {
        while !bytes.is_empty() {
            if self.len == self.buf.len() {
                self.flush();
            }
            let n = bytes.len().min(self.buf.len() - self.len);
            self.buf[self.len..self.len + n].copy_from_slice(&bytes[..n]);
            self.len += n;
            bytes = &bytes[n..];
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::CString;

    const T: Time = Time {
        secs: 1_795_359_853,
        nanos: 0,
    };

    struct Fixture {
        dir: tempfile::TempDir,
        path: CString,
        buf: Vec<u8>,
        names: Vec<u8>,
    }

    fn fixture(buf_len: usize) -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let path = CString::new(
            dir.path()
                .join("c.log")
                .into_os_string()
                .into_encoded_bytes(),
        )
        .unwrap();
        Fixture {
            dir,
            path,
            buf: vec![0; buf_len],
            names: vec![0; 2 * NAME_LEN],
        }
    }

    fn read_lines(f: &Fixture, name: &str) -> Vec<serde_json::Value> {
        let text = std::fs::read_to_string(f.dir.path().join(name)).unwrap_or_default();
        text.lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    /// Log `line 0` … `line N-1` with the given limits, flushing now and then.
    fn write_numbered_lines(n: u32, max_size: u64, max_files: u32) -> Fixture {
        let mut f = fixture(8192);
        let rot = Rotation {
            max_size,
            max_files,
        };
        let (mut log, _) = LogFile::open(&f.path, rot, &mut f.buf, &mut f.names);
        for i in 0..n {
            log.record(Stream::Stdout, format!("line {i}\n").as_bytes(), T);
            if i % 7 == 0 {
                log.flush();
            }
        }
        log.flush();
        drop(log);
        f
    }

    #[test]
    fn records_are_appended_as_json_lines() {
        let mut f = fixture(64);
        std::fs::write(f.dir.path().join("c.log"), "").unwrap();
        let rot = Rotation {
            max_size: 1 << 20,
            max_files: 3,
        };
        let (mut log, err) = LogFile::open(&f.path, rot, &mut f.buf, &mut f.names);
        assert_eq!(err, None);
        log.record(Stream::Stdout, b"one\n", T);
        log.record(Stream::Stderr, &[b'x'; 200], T); // longer than the buffer
        log.flush();
        drop(log);
        let lines = read_lines(&f, "c.log");
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0]["log"], "one\n");
        assert_eq!(lines[0]["stream"], "stdout");
        assert_eq!(lines[1]["log"].as_str().unwrap().len(), 200);
        assert_eq!(lines[1]["stream"], "stderr");
        assert_eq!(lines[1]["time"], "2026-11-22T15:04:13.000000000Z");
    }

    #[test]
    fn rotation_keeps_max_files_and_never_exceeds_max_size() {
        let f = write_numbered_lines(100, 500, 3);
        assert!(!f.dir.path().join("c.log.3").exists());
        let mut all = Vec::new();
        for name in ["c.log.2", "c.log.1", "c.log"] {
            let len = std::fs::metadata(f.dir.path().join(name)).unwrap().len();
            assert!(len <= 500, "{name} has {len} bytes");
            all.extend(read_lines(&f, name));
        }
        let numbers: Vec<u32> = all
            .iter()
            .map(|v| v["log"].as_str().unwrap()[5..].trim().parse().unwrap())
            .collect();
        assert_eq!(*numbers.last().unwrap(), 99);
        assert!(numbers.windows(2).all(|w| w[1] == w[0] + 1), "{numbers:?}");
    }

    #[test]
    fn a_single_file_is_truncated() {
        let f = write_numbered_lines(20, 300, 1);
        assert!(!f.dir.path().join("c.log.1").exists());
        let lines = read_lines(&f, "c.log");
        assert_eq!(lines.last().unwrap()["log"], "line 19\n");
        assert!(std::fs::metadata(f.dir.path().join("c.log")).unwrap().len() <= 300);
    }

    #[test]
    fn an_unopenable_log_drops_records() {
        let mut f = fixture(64);
        let path = CString::new("/nonexistent-dir/c.log").unwrap();
        let rot = Rotation {
            max_size: 100,
            max_files: 2,
        };
        let (mut log, err) = LogFile::open(&path, rot, &mut f.buf, &mut f.names);
        assert!(err.is_some());
        for _ in 0..10 {
            log.record(Stream::Stdout, b"dropped\n", T);
        }
        log.flush();
    }

    #[test]
    fn suffixed_names() {
        let mut buf = [0u8; NAME_LEN];
        assert_eq!(
            path_with_suffix(&mut buf, c"/a/b", b".", Some(12)),
            c"/a/b.12"
        );
        assert_eq!(
            path_with_suffix(&mut buf, c"/a/b", b".tmp", None),
            c"/a/b.tmp"
        );
    }
}
