//! The store: content-addressed blobs, unpacked layers, and the image index.
//!
//! ```text
//! ROOT/blobs/sha256/<hex>     every manifest, config and layer blob, by digest
//! ROOT/ingest/                blobs being written (verified, then renamed into blobs/)
//! ROOT/ingest/<hex>.partial   a download under way or interrupted (resumed by pull)
//! ROOT/layers/sha256/<hex>/   a layer unpacked in overlayfs form, by diff ID
//! ROOT/images.json            images by id (config digest) and the names that point at them
//! ROOT/images.lock            flock held while images.json is read-modified-written
//! ```
//!
//! A blob is only ever seen under its digest after the digest was checked; a layer
//! directory only after its unpack finished (it is unpacked under a temporary name
//! and renamed). So a killed command leaves at most temporaries, which nothing
//! trusts, and two commands adding the same blob or layer at once are both right.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::digest::{Digest, Hashing};
use crate::error::{Context, Error, Result};
use crate::reference::Reference;

/// One layer of an image, bottom first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Layer {
    /// The blob's digest (compressed, as stored).
    pub digest: Digest,
    /// The digest of the uncompressed tar (the config's `rootfs.diff_ids`).
    pub diff_id: Digest,
    /// The blob's size in bytes.
    pub size: u64,
    /// The blob's media type.
    pub media_type: String,
}

/// An image in the store.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Image {
    /// The image id: its config's digest, as Docker uses it.
    pub id: Digest,
    /// The manifest's digest.
    pub manifest: Digest,
    /// The layers, bottom first.
    pub layers: Vec<Layer>,
    /// When the image was made (the config's `created`), if it says.
    pub created: Option<String>,
    /// The uncompressed size of its layers.
    pub size: u64,
}

/// Content written into the store's ingest directory, not yet a blob.
#[derive(Debug)]
pub struct Ingested {
    tmp: tempfile::NamedTempFile,
    /// Its digest.
    pub digest: Digest,
    /// Its length.
    pub len: u64,
    blobs: PathBuf,
}

impl Ingested {
    /// The temporary file.
    pub fn path(&self) -> &Path {
        self.tmp.path()
    }

    /// Make it the blob of its digest (dropping it instead removes it).
    pub fn commit(self, what: &str) -> Result<Digest> {
        let dest = self.blobs.join(self.digest.hex());
        if !dest.exists() {
            self.tmp
                .as_file()
                .sync_all()
                .step(|| format!("sync {what}"))?;
            self.tmp
                .persist(&dest)
                .map_err(|e| e.error)
                .step(|| format!("move {what} to {}", dest.display()))?;
        }
        Ok(self.digest)
    }
}

/// images.json.
#[derive(Debug, Default, Serialize, Deserialize)]
struct Index {
    images: BTreeMap<String, Image>,
    /// Full reference (`docker.io/library/busybox:latest`) → image id.
    names: BTreeMap<String, Digest>,
}

/// An image and the names that point at it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Listed {
    /// The image.
    #[serde(flatten)]
    pub image: Image,
    /// Its names (full references), sorted.
    pub names: Vec<String>,
}

/// The store under one root directory.
#[derive(Debug, Clone)]
pub struct Store {
    root: PathBuf,
}

impl Store {
    /// Open (and make, if new) the store at `root`.
    pub fn open(root: &Path) -> Result<Store> {
        for dir in ["blobs/sha256", "ingest", "layers/sha256"] {
            let p = root.join(dir);
            fs::create_dir_all(&p).step(|| format!("create {}", p.display()))?;
        }
        Ok(Store {
            root: root.to_path_buf(),
        })
    }

    /// The store's root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Where blob `d` is (whether or not it is there).
    pub fn blob_path(&self, d: &Digest) -> PathBuf {
        self.root.join("blobs/sha256").join(d.hex())
    }

    /// Where a download of blob `d` is kept until its digest is checked: an
    /// interrupted pull resumes from it, nothing reads it as the blob.
    pub fn partial_path(&self, d: &Digest) -> PathBuf {
        self.root
            .join("ingest")
            .join(format!("{}.partial", d.hex()))
    }

    /// Whether blob `d` is in the store.
    pub fn has_blob(&self, d: &Digest) -> bool {
        self.blob_path(d).exists()
    }

    /// The whole blob `d`.
    pub fn read_blob(&self, d: &Digest) -> Result<Vec<u8>> {
        let p = self.blob_path(d);
        fs::read(&p).step(|| format!("read blob {d}"))
    }

    /// Copy `r` into the store; when `expected` is given, the content must have
    /// that digest (else nothing is kept). Returns the digest and size.
    pub fn put_blob(
        &self,
        r: &mut dyn Read,
        expected: Option<&Digest>,
        what: &str,
    ) -> Result<(Digest, u64)> {
        let ingested = self.ingest(r, what)?;
        if let Some(want) = expected.filter(|w| **w != ingested.digest) {
            return Err(Error::DigestMismatch {
                what: what.to_owned(),
                expected: want.to_string(),
                actual: ingested.digest.to_string(),
            });
        }
        let len = ingested.len;
        Ok((ingested.commit(what)?, len))
    }

    /// Copy `r` into a temporary file of the store, hashing it: it becomes a blob
    /// only by [`Ingested::commit`], so content that turns out bad leaves nothing.
    pub fn ingest(&self, r: &mut dyn Read, what: &str) -> Result<Ingested> {
        let tmp = tempfile::NamedTempFile::new_in(self.root.join("ingest")).step(|| {
            format!(
                "create a temporary file for {what} in {}",
                self.root.display()
            )
        })?;
        let mut w = Hashing::new(io::BufWriter::new(tmp));
        io::copy(r, &mut w).step(|| format!("write {what} into the store"))?;
        let (digest, len, buf) = w.finish();
        let tmp = buf
            .into_inner()
            .map_err(|e| e.into_error())
            .step(|| format!("write {what}"))?;
        Ok(Ingested {
            tmp,
            digest,
            len,
            blobs: self.root.join("blobs/sha256"),
        })
    }

    /// [`Store::put_blob`] of bytes in memory.
    pub fn put_bytes(&self, data: &[u8], what: &str) -> Result<Digest> {
        self.put_blob(&mut &data[..], None, what).map(|(d, _)| d)
    }

    /// Where the layer with diff ID `diff_id` is unpacked (whether or not it is).
    pub fn layer_path(&self, diff_id: &Digest) -> PathBuf {
        self.root.join("layers/sha256").join(diff_id.hex())
    }

    /// Unpack the stored layer blob once (a no-op when it already is), checking
    /// that its uncompressed digest is `diff_id`. Returns the uncompressed size.
    pub fn unpack_layer(&self, layer: &Layer) -> Result<u64> {
        let what = format!("layer {}", layer.digest);
        self.unpack_blob(&layer.digest, Some(&layer.diff_id), &what)
            .map(|(_, size)| size)
    }

    /// Unpack blob `blob` as a layer, under its diff ID; `expected` is the diff ID
    /// it must have (skipping the work when that layer is there already). Returns
    /// the diff ID and the uncompressed size.
    pub fn unpack_blob(
        &self,
        blob: &Digest,
        expected: Option<&Digest>,
        what: &str,
    ) -> Result<(Digest, u64)> {
        if let Some(d) = expected {
            let dest = self.layer_path(d);
            if dest.exists() {
                return Ok((d.clone(), dir_size(&dest)));
            }
        }
        self.unpack_file(&self.blob_path(blob), expected, what)
    }

    /// [`Store::unpack_blob`] of a file that is not (yet) a blob of the store.
    pub fn unpack_file(
        &self,
        path: &Path,
        expected: Option<&Digest>,
        what: &str,
    ) -> Result<(Digest, u64)> {
        let tmp = tempfile::Builder::new()
            .prefix(".unpack-")
            .tempdir_in(self.root.join("layers/sha256"))
            .step(|| format!("create a directory to unpack {what}"))?;
        let file = File::open(path).step(|| format!("open {what}"))?;
        let (diff_id, _) = crate::layer::unpack(file, tmp.path(), what)?;
        // The size of what was unpacked, as for a layer found already unpacked.
        let size = dir_size(tmp.path());
        if let Some(want) = expected.filter(|w| **w != diff_id) {
            return Err(Error::DigestMismatch {
                what: format!("{what} (uncompressed)"),
                expected: want.to_string(),
                actual: diff_id.to_string(),
            });
        }
        let dest = self.layer_path(&diff_id);
        if dest.exists() {
            return Ok((diff_id, size));
        }
        let tmp = tmp.keep();
        // The tempdir is 0700; an overlay lower directory must be readable by all.
        fs::set_permissions(&tmp, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .step(|| format!("chmod {}", tmp.display()))?;
        match fs::rename(&tmp, &dest) {
            Ok(()) => Ok((diff_id, size)),
            // Another command unpacked it meanwhile: keep theirs.
            Err(_) if dest.exists() => {
                let _ = fs::remove_dir_all(&tmp);
                Ok((diff_id, size))
            }
            Err(e) => Err(e).step(|| format!("move unpacked {what} to {}", dest.display())),
        }
    }

    /// Run `f` on the index under the lock, and save what it leaves when `write`.
    fn with_index<T>(&self, write: bool, f: impl FnOnce(&mut Index) -> Result<T>) -> Result<T> {
        let lock_path = self.root.join("images.lock");
        let lock = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .step(|| format!("open {}", lock_path.display()))?;
        if write {
            lock.lock()
        } else {
            lock.lock_shared()
        }
        .step(|| format!("lock {}", lock_path.display()))?;
        let path = self.root.join("images.json");
        let mut index: Index = match fs::read(&path) {
            Ok(data) => serde_json::from_slice(&data).map_err(|e| Error::Format {
                file: path.display().to_string(),
                reason: e.to_string(),
            })?,
            Err(e) if e.kind() == io::ErrorKind::NotFound => Index::default(),
            Err(e) => return Err(e).step(|| format!("read {}", path.display())),
        };
        let out = f(&mut index)?;
        if write {
            let tmp = path.with_extension("json.tmp");
            let mut file = File::create(&tmp).step(|| format!("write {}", tmp.display()))?;
            file.write_all(&serde_json::to_vec_pretty(&index).expect("index serializes"))
                .and_then(|()| file.sync_all())
                .step(|| format!("write {}", tmp.display()))?;
            fs::rename(&tmp, &path)
                .step(|| format!("rename {} to {}", tmp.display(), path.display()))?;
        }
        Ok(out)
    }

    /// Record `image` and point `names` at it (a name moves from any image it named).
    pub fn add_image(&self, image: &Image, names: &[Reference]) -> Result<()> {
        self.with_index(true, |ix| {
            ix.images.insert(image.id.hex().to_owned(), image.clone());
            for n in names {
                ix.names.insert(n.to_string(), image.id.clone());
            }
            Ok(())
        })
    }

    /// Every image with its names, newest first.
    pub fn images(&self) -> Result<Vec<Listed>> {
        self.with_index(false, |ix| {
            let mut out: Vec<Listed> = ix
                .images
                .values()
                .map(|image| Listed {
                    names: ix
                        .names
                        .iter()
                        .filter(|(_, id)| **id == image.id)
                        .map(|(n, _)| n.clone())
                        .collect(),
                    image: image.clone(),
                })
                .collect();
            out.sort_by(|a, b| b.image.created.cmp(&a.image.created));
            Ok(out)
        })
    }

    /// The image a name (`busybox`, `busybox:1.36`, a full reference) or an id
    /// (`sha256:...`, or a prefix of its hex of at least 4 digits) points at.
    pub fn resolve(&self, what: &str) -> Result<Image> {
        self.with_index(false, |ix| find(ix, what).cloned())
    }

    /// Point `new` at the image `src` names.
    pub fn tag(&self, src: &str, new: &Reference) -> Result<()> {
        self.with_index(true, |ix| {
            let id = find(ix, src)?.id.clone();
            ix.names.insert(new.to_string(), id);
            Ok(())
        })
    }

    /// Remove the name `what`; when it is an id, or the image's last name, remove
    /// the image from the index too (its blobs and layers go at prune). Returns the
    /// names removed and the id of the image removed, if it was.
    pub fn remove(&self, what: &str) -> Result<(Vec<String>, Option<Digest>)> {
        self.remove_names(what, false)
    }

    /// [`Store::remove`]; with `keep`, the image stays in the index even without a
    /// name (dangling, `<none>`), as for an image a container still uses.
    pub fn remove_names(&self, what: &str, keep: bool) -> Result<(Vec<String>, Option<Digest>)> {
        self.with_index(true, |ix| {
            let id = find(ix, what)?.id.clone();
            let by_name = what
                .parse::<Reference>()
                .ok()
                .map(|r| r.to_string())
                .filter(|n| ix.names.contains_key(n));
            let untagged: Vec<String> = match by_name {
                Some(n) => {
                    ix.names.remove(&n);
                    vec![n]
                }
                None => {
                    let all: Vec<String> = ix
                        .names
                        .iter()
                        .filter(|(_, i)| **i == id)
                        .map(|(n, _)| n.clone())
                        .collect();
                    for n in &all {
                        ix.names.remove(n);
                    }
                    all
                }
            };
            let still_named = ix.names.values().any(|i| *i == id);
            let removed = (!still_named && !keep).then(|| {
                ix.images.remove(id.hex());
                id
            });
            Ok((untagged, removed))
        })
    }
}

fn find<'a>(ix: &'a Index, what: &str) -> Result<&'a Image> {
    if let Ok(r) = what.parse::<Reference>() {
        if let Some(id) = ix.names.get(&r.to_string()) {
            if let Some(img) = ix.images.get(id.hex()) {
                return Ok(img);
            }
        }
    }
    let hex = what.strip_prefix("sha256:").unwrap_or(what);
    if hex.len() >= 4 && hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        let mut hits = ix.images.iter().filter(|(k, _)| k.starts_with(hex));
        if let Some((_, img)) = hits.next() {
            if hits.next().is_some() {
                return Err(Error::Ambiguous(what.to_owned()));
            }
            return Ok(img);
        }
    }
    Err(Error::NotFound(what.to_owned()))
}

/// Bytes in the regular files under `dir`.
fn dir_size(dir: &Path) -> u64 {
    let mut total = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).into_iter().flatten().flatten() {
            match e.file_type() {
                Ok(t) if t.is_dir() => stack.push(e.path()),
                Ok(t) if t.is_file() => total += e.metadata().map(|m| m.len()).unwrap_or(0),
                _ => {}
            }
        }
    }
    total
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blobs_are_stored_by_digest_and_checked() {
        let d = tempfile::tempdir().unwrap();
        let s = Store::open(d.path()).unwrap();
        let digest = s.put_bytes(b"hello", "greeting").unwrap();
        assert_eq!(digest, Digest::of(b"hello"));
        assert_eq!(s.read_blob(&digest).unwrap(), b"hello");
        let wrong = Digest::of(b"other");
        let e = s
            .put_blob(&mut &b"hello"[..], Some(&wrong), "blob x")
            .unwrap_err()
            .to_string();
        assert!(e.contains("blob x") && e.contains("mismatch"), "{e}");
        assert!(!s.has_blob(&wrong));
        assert_eq!(
            fs::read_dir(d.path().join("ingest")).unwrap().count(),
            0,
            "no temporary left"
        );
    }

    /// Two commands unpacking the same layer at once both succeed, and one copy
    /// stays (the rename race has one winner; the loser's copy is removed).
    #[test]
    fn the_same_layer_unpacked_twice_at_once_is_kept_once() {
        let d = tempfile::tempdir().unwrap();
        let s = Store::open(d.path()).unwrap();
        let mut b = tar::Builder::new(Vec::new());
        for i in 0..200 {
            let mut h = tar::Header::new_gnu();
            let data = format!("file {i}\n");
            h.set_size(data.len() as u64);
            h.set_mode(0o644);
            h.set_uid(nix::unistd::geteuid().as_raw().into());
            h.set_gid(nix::unistd::getegid().as_raw().into());
            h.set_mtime(0);
            h.set_cksum();
            b.append_data(&mut h, format!("f{i}"), data.as_bytes())
                .unwrap();
        }
        let blob = s.put_bytes(&b.into_inner().unwrap(), "layer").unwrap();
        let results: Vec<_> = std::thread::scope(|sc| {
            let t: Vec<_> = (0..2)
                .map(|_| sc.spawn(|| s.unpack_blob(&blob, None, "layer")))
                .collect();
            t.into_iter().map(|h| h.join().unwrap()).collect()
        });
        let ids: Vec<Digest> = results.into_iter().map(|r| r.unwrap().0).collect();
        assert_eq!(ids[0], ids[1]);
        let names: Vec<_> = fs::read_dir(d.path().join("layers/sha256"))
            .unwrap()
            .flatten()
            .map(|e| e.file_name())
            .collect();
        assert_eq!(
            names,
            vec![std::ffi::OsString::from(ids[0].hex())],
            "one layer, no temporaries"
        );
    }

    #[test]
    fn names_ids_and_prefixes_resolve() {
        let d = tempfile::tempdir().unwrap();
        let s = Store::open(d.path()).unwrap();
        let img = |c: &[u8]| Image {
            id: Digest::of(c),
            manifest: Digest::of(b"m"),
            layers: vec![],
            created: None,
            size: 0,
        };
        let a = img(b"a");
        let b = img(b"b");
        s.add_image(&a, &["busybox".parse().unwrap()]).unwrap();
        s.add_image(&b, &["localhost:5000/app:v1".parse().unwrap()])
            .unwrap();
        assert_eq!(s.resolve("busybox").unwrap().id, a.id);
        assert_eq!(
            s.resolve("docker.io/library/busybox:latest").unwrap().id,
            a.id
        );
        assert_eq!(s.resolve(&a.id.to_string()).unwrap().id, a.id);
        assert_eq!(s.resolve(&b.id.hex()[..6]).unwrap().id, b.id);
        assert!(matches!(s.resolve("nothere"), Err(Error::NotFound(_))));
        s.tag("busybox", &"mine:1".parse().unwrap()).unwrap();
        assert_eq!(
            s.images()
                .unwrap()
                .iter()
                .find(|l| l.image.id == a.id)
                .unwrap()
                .names
                .len(),
            2
        );
        // Untag one name: the image stays; remove by id: every name goes, and the image.
        let (gone, removed) = s.remove("mine:1").unwrap();
        assert_eq!(
            (gone, removed),
            (vec!["docker.io/library/mine:1".to_string()], None)
        );
        let (gone, removed) = s.remove(&a.id.to_string()).unwrap();
        assert_eq!((gone.len(), removed), (1, Some(a.id.clone())));
        assert!(s.resolve("busybox").is_err());
    }
}
