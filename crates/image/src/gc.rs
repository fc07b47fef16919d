//! What keeps an image's content alive, and the collection of the rest.
//!
//! ```text
//! ROOT/holds/<image hex>/<holder>   a container using the image (the engine makes
//!                                   one per container and removes it with it)
//! ROOT/gc.lock                      shared by every command that adds content (import,
//!                                   load, pull) for its whole run; exclusive for a
//!                                   collection
//! ```
//!
//! So a collection never removes a blob a running pull has written but not yet
//! recorded, and `rmi` of an image a container uses is refused (or, forced, leaves
//! the image unnamed but in place until the container is gone).

use std::fs::{self, File};
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::digest::Digest;
use crate::error::{Context, Error, Result};
use crate::store::Store;

/// A held `gc.lock`; released on drop.
#[derive(Debug)]
pub struct GcLock(#[allow(dead_code)] File);

/// What `rmi` did.
#[derive(Debug, Default, Serialize)]
pub struct Removal {
    /// Names removed.
    pub untagged: Vec<String>,
    /// The image removed, if it was.
    pub deleted: Option<Digest>,
}

/// What a collection removed.
#[derive(Debug, Default, Serialize)]
pub struct Pruned {
    /// Images removed (unnamed and unused).
    pub images: Vec<Digest>,
    /// Blobs removed.
    pub blobs: usize,
    /// Unpacked layers removed.
    pub layers: usize,
    /// Bytes freed in blobs.
    pub bytes: u64,
}

impl Store {
    fn gc_lock(&self, exclusive: bool) -> Result<GcLock> {
        let path = self.root().join("gc.lock");
        let f = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .step(|| format!("open {}", path.display()))?;
        if exclusive { f.lock() } else { f.lock_shared() }
            .step(|| format!("lock {}", path.display()))?;
        Ok(GcLock(f))
    }

    /// Hold off collections while content is being added; keep the guard for the
    /// whole command.
    pub fn adding(&self) -> Result<GcLock> {
        self.gc_lock(false)
    }

    fn holds_dir(&self, image: &Digest) -> PathBuf {
        self.root().join("holds").join(image.hex())
    }

    /// Record that `holder` (a container id) uses `image`.
    pub fn hold(&self, image: &Digest, holder: &str) -> Result<()> {
        let dir = self.holds_dir(image);
        fs::create_dir_all(&dir).step(|| format!("create {}", dir.display()))?;
        File::create(dir.join(holder)).step(|| format!("hold image {image} for {holder}"))?;
        Ok(())
    }

    /// `holder` no longer uses `image`.
    pub fn release(&self, image: &Digest, holder: &str) -> Result<()> {
        let dir = self.holds_dir(image);
        match fs::remove_file(dir.join(holder)) {
            Ok(()) => {
                let _ = fs::remove_dir(&dir);
                Ok(())
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e).step(|| format!("release image {image} from {holder}")),
        }
    }

    /// Who uses `image`.
    pub fn holders(&self, image: &Digest) -> Vec<String> {
        let mut v: Vec<String> = fs::read_dir(self.holds_dir(image))
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }

    /// `rmi`: remove a name, or an image by id. Refused for an image a container
    /// uses, and for an id with several names, unless `force`. Then collect.
    pub fn remove_image(&self, what: &str, force: bool) -> Result<Removal> {
        let image = self.resolve(what)?;
        let listed = self.images()?;
        let names = listed
            .iter()
            .find(|l| l.image.id == image.id)
            .map(|l| l.names.clone())
            .unwrap_or_default();
        let by_name = what
            .parse::<crate::Reference>()
            .is_ok_and(|r| names.contains(&r.to_string()));
        let holders = self.holders(&image.id);
        let last_name = !by_name || names.len() == 1;
        if !force && last_name && !holders.is_empty() {
            return Err(Error::InUse {
                image: what.to_owned(),
                holders,
            });
        }
        if !force && !by_name && names.len() > 1 {
            return Err(Error::Conflict(format!(
                "image {} is named {}: remove the names, or force",
                image.id.short(),
                names.join(", ")
            )));
        }
        let (untagged, deleted) = self.remove_names(what, !holders.is_empty())?;
        if deleted.is_some() {
            self.collect()?;
        }
        Ok(Removal { untagged, deleted })
    }

    /// `image prune`: remove the images without a name that no container uses,
    /// then every blob and layer no image refers to.
    pub fn prune(&self) -> Result<Pruned> {
        let mut images = Vec::new();
        for l in self.images()? {
            if l.names.is_empty() && self.holders(&l.image.id).is_empty() {
                self.remove_names(&l.image.id.to_string(), false)?;
                images.push(l.image.id);
            }
        }
        let mut p = self.collect()?;
        p.images = images;
        Ok(p)
    }

    /// Remove every blob and unpacked layer no image in the index refers to, and
    /// what killed commands left in ingest/, under the exclusive gc lock.
    pub fn collect(&self) -> Result<Pruned> {
        let _lock = self.gc_lock(true)?;
        let mut blobs = std::collections::HashSet::new();
        let mut layers = std::collections::HashSet::new();
        for l in self.images()? {
            blobs.insert(l.image.id.hex().to_owned());
            blobs.insert(l.image.manifest.hex().to_owned());
            for layer in &l.image.layers {
                blobs.insert(layer.digest.hex().to_owned());
                layers.insert(layer.diff_id.hex().to_owned());
            }
        }
        let mut p = Pruned::default();
        for (path, name) in entries(&self.root().join("blobs/sha256"))? {
            if !blobs.contains(&name) {
                p.bytes += fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
                fs::remove_file(&path).step(|| format!("remove {}", path.display()))?;
                p.blobs += 1;
            }
        }
        for (path, name) in entries(&self.root().join("layers/sha256"))? {
            if !layers.contains(&name) {
                fs::remove_dir_all(&path).step(|| format!("remove {}", path.display()))?;
                p.layers += 1;
            }
        }
        for (path, _) in entries(&self.root().join("ingest"))? {
            let _ = fs::remove_file(&path).or_else(|_| fs::remove_dir_all(&path));
        }
        Ok(p)
    }
}

fn entries(dir: &Path) -> Result<Vec<(PathBuf, String)>> {
    let rd = match fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e).step(|| format!("read {}", dir.display())),
    };
    Ok(rd
        .flatten()
        .map(|e| (e.path(), e.file_name().to_string_lossy().into_owned()))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{Image, Layer};

    fn image(store: &Store, tag: &str, content: &[u8]) -> Image {
        let blob = store.put_bytes(content, "layer").unwrap();
        let image = Image {
            id: store
                .put_bytes(&[content, b"-config"].concat(), "config")
                .unwrap(),
            manifest: store
                .put_bytes(&[content, b"-manifest"].concat(), "manifest")
                .unwrap(),
            layers: vec![Layer {
                digest: blob.clone(),
                diff_id: blob,
                size: content.len() as u64,
                media_type: String::new(),
            }],
            created: None,
            size: 0,
        };
        store.add_image(&image, &[tag.parse().unwrap()]).unwrap();
        image
    }

    #[test]
    fn rmi_refuses_what_a_container_uses_unless_forced_and_collects_the_rest() {
        let d = tempfile::tempdir().unwrap();
        let s = Store::open(d.path()).unwrap();
        let a = image(&s, "a", b"aaa");
        let b = image(&s, "b", b"bbb");
        s.tag("a", &"a2".parse().unwrap()).unwrap();
        // An id with two names needs force; one name just untags.
        assert!(matches!(
            s.remove_image(&a.id.to_string(), false),
            Err(Error::Conflict(_))
        ));
        let r = s.remove_image("a2", false).unwrap();
        assert_eq!((r.untagged.len(), r.deleted), (1, None));
        // Used by a container: refused; forced: unnamed but kept until released.
        s.hold(&a.id, "c1").unwrap();
        let e = s.remove_image("a", false).unwrap_err().to_string();
        assert!(e.contains("c1"), "{e}");
        let r = s.remove_image("a", true).unwrap();
        assert_eq!(r.deleted, None);
        assert!(s.has_blob(&a.layers[0].digest));
        assert_eq!(s.prune().unwrap().images.len(), 0, "held images stay");
        s.release(&a.id, "c1").unwrap();
        let p = s.prune().unwrap();
        assert_eq!((p.images, p.blobs), (vec![a.id.clone()], 3));
        assert!(!s.has_blob(&a.layers[0].digest) && s.has_blob(&b.layers[0].digest));
        // The last name of an unused image: gone with its content at once.
        let r = s.remove_image("b", false).unwrap();
        assert_eq!(r.deleted, Some(b.id.clone()));
        assert!(!s.has_blob(&b.id));
    }
}
