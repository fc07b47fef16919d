//! The few file operations cgroups need, each a minimal number of syscalls and each
//! mapping its failure to the [`Error`] variant that names the path.
//!
//! Control files are opened write-only with `O_TRUNC` but never `O_CREAT`: on cgroupfs a
//! missing file means a missing knob (`ENOENT`), and on a tempdir fixture it must mean
//! the same thing.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// Open a control file for writing (`open(O_WRONLY|O_TRUNC|O_CLOEXEC)`).
pub(crate) fn open_w(path: &Path) -> io::Result<File> {
    OpenOptions::new().write(true).truncate(true).open(path)
}

/// One `write(2)` of `value` (cgroupfs treats each write as one command).
pub(crate) fn write_value(file: &mut File, value: &str) -> io::Result<()> {
    file.write_all(value.as_bytes())
}

/// Open, write once, close.
pub(crate) fn write_raw(path: &Path, value: &str) -> io::Result<()> {
    write_value(&mut open_w(path)?, value)
}

/// Who is told of each value written (`--explain`): set once by the caller.
static WATCHER: std::sync::OnceLock<fn(&Path, &str)> = std::sync::OnceLock::new();

/// Have `f` told of every value this crate writes (after it is written).
pub fn watch_writes(f: fn(&Path, &str)) {
    let _ = WATCHER.set(f);
}

/// [`write_raw`] with the error naming the file and the value.
pub(crate) fn write(path: PathBuf, value: &str) -> Result<()> {
    match write_raw(&path, value) {
        Ok(()) => {
            if let Some(f) = WATCHER.get() {
                f(&path, value);
            }
            Ok(())
        }
        Err(source) => Err(write_error(path, value, source)),
    }
}

/// Build [`Error::Write`].
pub(crate) fn write_error(path: PathBuf, value: &str, source: io::Error) -> Error {
    Error::Write {
        path,
        value: value.to_owned(),
        source,
    }
}

/// Read a whole (small, virtual) file: `open` + `read` until EOF + `close`, without the
/// `statx`/`lseek` that `fs::read_to_string` adds for its size hint.
pub(crate) fn read_raw(path: &Path) -> io::Result<String> {
    let mut file = File::open(path)?;
    let mut buf = Vec::with_capacity(256);
    let mut chunk = [0u8; 4096];
    loop {
        match file.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    String::from_utf8(buf).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
}

/// [`read_raw`] with the error naming the file.
pub(crate) fn read(path: &Path) -> Result<String> {
    read_raw(path).map_err(|source| Error::Read {
        path: path.to_owned(),
        source,
    })
}

/// Is this the given errno?
pub(crate) fn is(e: &io::Error, errno: i32) -> bool {
    e.raw_os_error() == Some(errno)
}
