//! A directory of compiled filters, one file per profile.
//!
//! The file name is the key: SHA-256 of the cache format version, the libseccomp
//! version, the architecture and the serialized profile. A file is
//!
//! ```text
//! magic "ONGGISC2" | key (32) | payload length (u64 LE) | SHA-256 of payload (32) | payload
//! payload = flags (u32 LE) | needs listener (u8) | BPF program
//! ```
//!
//! and is trusted only when every part checks out; otherwise it is recompiled and
//! rewritten. Files are written to a temporary name and renamed, so a reader sees a
//! whole file or none. There is no fsync: a file torn by a crash fails the hash check.

use std::fs;
use std::io::{ErrorKind, Write};
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

use oci_spec::runtime::LinuxSeccomp;
use onggi_sys::seccomp::{INSN_LEN, MAX_INSNS};
use sha2::{Digest, Sha256};

use crate::{compile, Compiled, Error};

const MAGIC: &[u8; 8] = b"ONGGISC2";
const HEADER_LEN: usize = 8 + 32 + 8 + 32;

/// [`compile`], once per profile: the BPF program is kept in `cache_dir` (created
/// with mode 0700 if missing) and read back on the next call with the same profile,
/// libseccomp version and architecture. A cache hit does not build a libseccomp filter.
///
/// A corrupt or truncated cache file is ignored and rewritten. Failing to write the
/// cache is an error ([`Error::Cache`]); the caller may fall back to [`compile`].
pub fn compile_cached(s: &LinuxSeccomp, cache_dir: &Path) -> Result<Compiled, Error> {
    compile_cached_with(s, cache_dir, compile)
}

/// [`compile_cached`] with the compiler as a parameter, so that tests can tell a cache
/// hit from a compilation.
pub(crate) fn compile_cached_with(
    s: &LinuxSeccomp,
    cache_dir: &Path,
    compile: impl FnOnce(&LinuxSeccomp) -> Result<Compiled, Error>,
) -> Result<Compiled, Error> {
    let key = key(s);
    let path = cache_dir.join(format!("{}.bpf", hex(&key)));
    if let Some(hit) = fs::read(&path).ok().and_then(|bytes| decode(&key, &bytes)) {
        return Ok(hit);
    }
    let compiled = compile(s)?;
    store(cache_dir, &path, &encode(&key, &compiled))?;
    Ok(compiled)
}

/// The cache key of a profile on this host.
pub(crate) fn key(s: &LinuxSeccomp) -> [u8; 32] {
    let version = libseccomp::ScmpVersion::current()
        .map(|v| format!("{}.{}.{}", v.major, v.minor, v.micro))
        .unwrap_or_default();
    let mut h = Sha256::new();
    h.update(MAGIC);
    h.update(version.as_bytes());
    h.update(b"\0");
    h.update(std::env::consts::ARCH.as_bytes());
    h.update(b"\0");
    // Serializing a LinuxSeccomp cannot fail: every field is a string, number or list.
    h.update(serde_json::to_vec(s).unwrap_or_default());
    h.finalize().into()
}

fn encode(key: &[u8; 32], c: &Compiled) -> Vec<u8> {
    let mut payload = Vec::with_capacity(5 + c.bpf.len());
    payload.extend_from_slice(&c.flags.to_le_bytes());
    payload.push(u8::from(c.notify));
    payload.extend_from_slice(&c.bpf);
    let mut file = Vec::with_capacity(HEADER_LEN + payload.len());
    file.extend_from_slice(MAGIC);
    file.extend_from_slice(key);
    file.extend_from_slice(&(payload.len() as u64).to_le_bytes());
    file.extend_from_slice(&Sha256::digest(&payload));
    file.extend_from_slice(&payload);
    file
}

/// The compiled filter in a cache file, or `None` if any check fails.
fn decode(key: &[u8; 32], file: &[u8]) -> Option<Compiled> {
    let (header, payload) = file.split_at_checked(HEADER_LEN)?;
    let (magic, rest) = header.split_at(8);
    let (file_key, rest) = rest.split_at(32);
    let (len, hash) = rest.split_at(8);
    let len = u64::from_le_bytes(len.try_into().ok()?);
    if magic != MAGIC
        || file_key != key
        || len != payload.len() as u64
        || hash != Sha256::digest(payload).as_slice()
    {
        return None;
    }
    let (flags, rest) = payload.split_at_checked(4)?;
    let (&notify, bpf) = rest.split_first()?;
    if bpf.is_empty()
        || !bpf.len().is_multiple_of(INSN_LEN)
        || bpf.len() / INSN_LEN > MAX_INSNS
        || notify > 1
    {
        return None;
    }
    Some(Compiled {
        bpf: bpf.to_vec(),
        flags: u32::from_le_bytes(flags.try_into().ok()?),
        notify: notify == 1,
    })
}

/// Write `bytes` to `path` atomically: a temporary file in the same directory, renamed.
fn store(dir: &Path, path: &Path, bytes: &[u8]) -> Result<(), Error> {
    match fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
    {
        Err(e) if e.kind() != ErrorKind::AlreadyExists => {
            return Err(cache_err("create cache directory", dir, e))
        }
        _ => {}
    }
    // Unique per process: two runtimes filling the same entry each rename a whole file.
    let tmp: PathBuf = dir.join(format!(
        ".{}.{}.tmp",
        path.file_name().and_then(|n| n.to_str()).unwrap_or("entry"),
        std::process::id()
    ));
    let written = fs::File::create(&tmp).and_then(|mut f| f.write_all(bytes));
    if let Err(e) = written {
        let _ = fs::remove_file(&tmp);
        return Err(cache_err("write", &tmp, e));
    }
    fs::rename(&tmp, path).map_err(|e| {
        let _ = fs::remove_file(&tmp);
        cache_err("rename to", path, e)
    })
}

fn cache_err(step: &'static str, path: &Path, source: std::io::Error) -> Error {
    Error::Cache {
        step,
        path: path.to_owned(),
        source,
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
