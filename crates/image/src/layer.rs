//! A layer tarball (plain, gzip or zstd) unpacked into a directory in overlayfs form.
//!
//! Each layer is unpacked on its own, once, and later stacked as an overlay lower
//! directory; so the OCI whiteouts become overlayfs ones: `.wh.NAME` becomes a 0:0
//! character device `NAME`, and `.wh..wh..opq` the `trusted.overlay.opaque=y` xattr
//! on its directory (overlayfs(5), "whiteouts and opaque directories").
//!
//! Entries are unpacked with the `tar` crate's `unpack_in`, which refuses a path
//! whose parent resolves outside the destination (through `..` or a symlink, absolute
//! or relative); a `..` component is refused here first, with the entry named. The
//! digest of the uncompressed stream (the layer's diff ID) is computed on the way.

use std::fs;
use std::io::{self, BufRead, BufReader, Read};
use std::path::{Component, Path};

use nix::sys::stat::{mknod, Mode, SFlag};
use sha2::{Digest as _, Sha256};

use crate::digest::Digest;
use crate::error::{Context, Error, Result};

/// How a layer blob is compressed, from its first bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    /// A plain tar.
    None,
    /// gzip (`1f 8b`).
    Gzip,
    /// zstd (`28 b5 2f fd`).
    Zstd,
}

impl Compression {
    /// Sniff the compression of `head`, the start of the blob.
    pub fn detect(head: &[u8]) -> Compression {
        if head.starts_with(&[0x1f, 0x8b]) {
            Compression::Gzip
        } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
            Compression::Zstd
        } else {
            Compression::None
        }
    }

    /// The OCI media type of a layer with this compression.
    pub fn media_type(self) -> &'static str {
        match self {
            Compression::None => "application/vnd.oci.image.layer.v1.tar",
            Compression::Gzip => "application/vnd.oci.image.layer.v1.tar+gzip",
            Compression::Zstd => "application/vnd.oci.image.layer.v1.tar+zstd",
        }
    }
}

/// A reader that hashes what is read through it.
struct HashingReader<R> {
    inner: R,
    hasher: Sha256,
    len: u64,
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        self.len += n as u64;
        Ok(n)
    }
}

/// The uncompressed stream of a layer blob.
pub fn decompress<'a>(blob: impl Read + 'a, what: &str) -> Result<Box<dyn Read + 'a>> {
    let mut r = BufReader::with_capacity(1 << 16, blob);
    let head = r.fill_buf().step(|| format!("read {what}"))?;
    Ok(match Compression::detect(head) {
        Compression::None => Box::new(r),
        Compression::Gzip => Box::new(flate2::read::GzDecoder::new(r)),
        Compression::Zstd => {
            Box::new(zstd::Decoder::with_buffer(r).step(|| format!("start zstd on {what}"))?)
        }
    })
}

/// Unpack the layer `blob` (named `what` in errors) into `dest`, an empty
/// directory. Returns the diff ID (digest of the uncompressed tar) and its size.
pub fn unpack(blob: impl Read, dest: &Path, what: &str) -> Result<(Digest, u64)> {
    let stream = decompress(blob, what)?;
    let hashing = HashingReader {
        inner: stream,
        hasher: Sha256::new(),
        len: 0,
    };
    let mut archive = tar::Archive::new(hashing);
    archive.set_preserve_permissions(true);
    archive.set_preserve_ownerships(true);
    archive.set_preserve_mtime(true);
    archive.set_unpack_xattrs(true);
    archive.set_overwrite(true);
    let entries = archive.entries().map_err(|e| not_a_tar(what, e))?;
    for entry in entries {
        let mut entry = entry.map_err(|e| not_a_tar(what, e))?;
        let path = entry.path().map_err(|e| not_a_tar(what, e))?.into_owned();
        let shown = path.display().to_string();
        let refuse = |reason: &str| Error::UnsafeEntry {
            layer: what.to_owned(),
            path: shown.clone(),
            reason: reason.to_owned(),
        };
        if path.components().any(|c| c == Component::ParentDir) {
            return Err(refuse("'..' would climb out of the layer"));
        }
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if let Some(hidden) = name.strip_prefix(".wh.") {
            let parent = path.parent().unwrap_or(Path::new(""));
            whiteout(dest, parent, hidden).map_err(|e| refuse(&e))?;
            continue;
        }
        let kind = entry.header().entry_type();
        if matches!(
            kind,
            tar::EntryType::Char | tar::EntryType::Block | tar::EntryType::Fifo
        ) {
            device(dest, &path, &entry).map_err(|e| refuse(&e))?;
            continue;
        }
        match entry.unpack_in(dest) {
            Ok(true) => {}
            Ok(false) => return Err(refuse("the path leaves the layer")),
            Err(e) => return Err(refuse(&error_chain(&e))),
        }
    }
    // The tar's end-of-archive blocks and padding are part of the diff ID.
    let mut hashing = archive.into_inner();
    io::copy(&mut hashing, &mut io::sink()).map_err(|e| not_a_tar(what, e))?;
    Ok((Digest::from_hasher(hashing.hasher), hashing.len))
}

/// An error and its sources on one line (the tar crate wraps the OS error).
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut msg = e.to_string();
    let mut cur = e.source();
    while let Some(s) = cur {
        msg.push_str(": ");
        msg.push_str(&s.to_string());
        cur = s.source();
    }
    msg
}

fn not_a_tar(what: &str, e: io::Error) -> Error {
    Error::Format {
        file: what.to_owned(),
        reason: format!("not a valid (compressed) tar archive: {e}"),
    }
}

/// The directory `parent` of the layer, made if missing, checked to be inside `dest`.
fn inside(dest: &Path, parent: &Path) -> std::result::Result<std::path::PathBuf, String> {
    let dir = dest.join(parent);
    fs::create_dir_all(&dir).map_err(|e| format!("create its directory: {e}"))?;
    let real = dir.canonicalize().map_err(|e| e.to_string())?;
    let root = dest.canonicalize().map_err(|e| e.to_string())?;
    if !real.starts_with(&root) {
        return Err("its directory resolves outside the layer (through a symlink)".into());
    }
    Ok(real)
}

/// `.wh.NAME` → a 0:0 character device NAME; `.wh..wh..opq` → the opaque xattr.
fn whiteout(dest: &Path, parent: &Path, hidden: &str) -> std::result::Result<(), String> {
    let dir = inside(dest, parent)?;
    if hidden == ".wh..opq" {
        return xattr::set(&dir, "trusted.overlay.opaque", b"y")
            .map_err(|e| format!("mark the directory opaque (trusted.overlay.opaque): {e}"));
    }
    if hidden.is_empty() || hidden.contains('/') {
        return Err("a whiteout must name a file".into());
    }
    let target = dir.join(hidden);
    let _ = fs::remove_file(&target);
    mknod(&target, SFlag::S_IFCHR, Mode::empty(), 0)
        .map_err(|e| format!("make the overlay whiteout (mknod 0:0): {e}"))
}

/// A device node or FIFO entry.
fn device<R: Read>(
    dest: &Path,
    path: &Path,
    entry: &tar::Entry<'_, R>,
) -> std::result::Result<(), String> {
    let h = entry.header();
    let parent = inside(dest, path.parent().unwrap_or(Path::new("")))?;
    let target = parent.join(path.file_name().ok_or("no file name")?);
    let kind = match h.entry_type() {
        tar::EntryType::Char => SFlag::S_IFCHR,
        tar::EntryType::Block => SFlag::S_IFBLK,
        _ => SFlag::S_IFIFO,
    };
    let major = h.device_major().ok().flatten().unwrap_or(0) as u64;
    let minor = h.device_minor().ok().flatten().unwrap_or(0) as u64;
    let mode = Mode::from_bits_truncate(h.mode().unwrap_or(0o644));
    let _ = fs::remove_file(&target);
    mknod(&target, kind, mode, nix::sys::stat::makedev(major, minor))
        .map_err(|e| format!("mknod: {e}"))?;
    let uid = h.uid().ok().map(|u| nix::unistd::Uid::from_raw(u as u32));
    let gid = h.gid().ok().map(|g| nix::unistd::Gid::from_raw(g as u32));
    nix::unistd::chown(&target, uid, gid).map_err(|e| format!("chown: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header() -> tar::Header {
        let mut h = tar::Header::new_gnu();
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(0);
        h
    }

    fn tar_of(entries: &[(&str, &[u8])], links: &[(&str, &str)]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for (name, data) in entries {
            let mut h = header();
            h.set_size(data.len() as u64);
            h.set_mode(0o644);
            h.set_cksum();
            b.append_data(&mut h, name, *data).unwrap();
        }
        for (name, target) in links {
            let mut h = header();
            h.set_entry_type(tar::EntryType::Symlink);
            h.set_size(0);
            h.set_mode(0o777);
            b.append_link(&mut h, name, target).unwrap();
        }
        b.into_inner().unwrap()
    }

    #[test]
    fn plain_gzip_and_zstd_give_the_same_files_and_diff_id() {
        let t = tar_of(&[("etc/hostname", b"box\n"), ("bin/sh", b"#!")], &[]);
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        io::Write::write_all(&mut gz, &t).unwrap();
        let gz = gz.finish().unwrap();
        let zst = zstd::encode_all(&t[..], 1).unwrap();
        for blob in [t.clone(), gz, zst] {
            let d = tempfile::tempdir().unwrap();
            let (diff, len) = unpack(&blob[..], d.path(), "layer").unwrap();
            assert_eq!((diff, len), (Digest::of(&t), t.len() as u64));
            assert_eq!(fs::read(d.path().join("etc/hostname")).unwrap(), b"box\n");
        }
    }

    #[test]
    fn paths_that_climb_out_are_refused() {
        let d = tempfile::tempdir().unwrap();
        let dest = d.path().join("layer");
        fs::create_dir(&dest).unwrap();
        // '..' in the entry itself (the tar crate's builder refuses to write one, so
        // patch the name in the header).
        let mut t = tar_of(&[("xx/evil", b"x")], &[]);
        t[..6].copy_from_slice(b"../evi");
        // The header checksum: the sum of its bytes with the field itself as spaces.
        t[148..156].copy_from_slice(b"        ");
        let sum: u32 = t[..512].iter().map(|&b| u32::from(b)).sum();
        t[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
        let e = unpack(&t[..], &dest, "l1").unwrap_err().to_string();
        assert!(e.contains("l1") && e.contains("climb out"), "{e}");
        // A file written through an absolute symlink, and through one that climbs.
        for target in ["/tmp", "../.."] {
            let t = tar_of(&[("link/file", b"x")], &[("link", target)]);
            let t = reorder_links_first(t);
            let e = unpack(&t[..], &dest, "l2").unwrap_err().to_string();
            assert!(e.contains("link/file"), "{target}: {e}");
        }
        assert!(!d.path().join("evil").exists() && !Path::new("/tmp/file").exists());
    }

    /// The builder above appends links last; put the symlink before the file.
    fn reorder_links_first(t: Vec<u8>) -> Vec<u8> {
        let mut a = tar::Archive::new(&t[..]);
        let mut files = Vec::new();
        let mut links = Vec::new();
        for e in a.entries().unwrap() {
            let mut e = e.unwrap();
            let h = e.header().clone();
            let mut data = Vec::new();
            e.read_to_end(&mut data).unwrap();
            if h.entry_type() == tar::EntryType::Symlink {
                links.push((h, data));
            } else {
                files.push((h, data));
            }
        }
        let mut b = tar::Builder::new(Vec::new());
        for (h, data) in links.into_iter().chain(files) {
            b.append(&h, &data[..]).unwrap();
        }
        b.into_inner().unwrap()
    }

    #[test]
    fn not_a_tar_is_a_format_error() {
        let d = tempfile::tempdir().unwrap();
        let e = unpack(
            &b"this is not a tar archive at all, just text"[..],
            d.path(),
            "x.tar",
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("x.tar") && e.contains("not a valid"), "{e}");
    }
}
