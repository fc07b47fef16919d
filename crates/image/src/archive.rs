//! Images in and out of archives: `load` and `save`.
//!
//! [`load`] reads what `docker save` and `podman save` write, and what skopeo
//! writes to `oci:` and `oci-archive:`:
//!
//! ```text
//! docker-archive   a tar: manifest.json [{"Config","RepoTags","Layers"}], the
//!                  configs, the layer tars (plain or gzip; docker ≥ 25 puts them
//!                  under blobs/sha256/ beside an OCI index; manifest.json wins)
//! OCI image layout a directory, or a tar of one (oci-archive): oci-layout,
//!                  index.json → manifests (or nested indexes) → blobs/sha256/<hex>
//! ```
//!
//! A gzip- or zstd-compressed archive (`docker save | gzip`) is decompressed
//! first, as is one read from a pipe ([`load_reader`]), into the store's `ingest/`.
//! Every blob is stored with the digest it was announced with, so a truncated or
//! altered one is refused (`digest mismatch`), and every layer is checked against
//! the config's `rootfs.diff_ids` as it is unpacked. The images are recorded only
//! after all of them were checked: a bad archive leaves the index as it was (the
//! blobs that were verified stay, for `prune`).
//!
//! [`save`] writes a tar in either format; a docker-archive carries each layer as
//! an uncompressed `<diff-id>/layer.tar`, as docker writes them.

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Component, Path, PathBuf};

use oci_spec::image::{
    Descriptor, ImageConfiguration, ImageIndex, ImageIndexBuilder, ImageManifest, MediaType,
    OciLayout, ANNOTATION_REF_NAME,
};
use serde::{de::DeserializeOwned, Deserialize, Serialize};

use crate::digest::{Digest, Hashing};
use crate::error::{Context, Error, Result};
use crate::import::{self, media};
use crate::layer::{self, Compression};
use crate::reference::Reference;
use crate::store::{Image, Layer, Store};

/// The full image name containerd and docker put beside the OCI `ref.name`.
const ANNOTATION_CONTAINERD_NAME: &str = "io.containerd.image.name";
/// The largest JSON document (manifest.json, index.json, a manifest, a config) read.
const MAX_JSON: u64 = 32 << 20;
/// How deep image indexes may nest.
const MAX_NESTING: usize = 8;

/// An image that [`load`] recorded, with the names it pointed at it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Loaded {
    /// The image, as recorded in the store.
    pub image: Image,
    /// The names the archive gave it (none when it gave none).
    pub names: Vec<Reference>,
}

/// The archive format [`save`] writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SaveFormat {
    /// An OCI image layout in a tar (`podman save --format oci-archive`).
    OciArchive,
    /// Docker's format (`docker save`): manifest.json, configs, uncompressed layer tars.
    DockerArchive,
}

/// One entry of a docker-archive's manifest.json.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct DockerEntry {
    /// The config's file in the archive.
    config: String,
    /// The image's names (`busybox:latest`); `null` when it has none.
    #[serde(default)]
    repo_tags: Option<Vec<String>>,
    /// The layer tars' files, bottom first.
    layers: Vec<String>,
}

/// Load every image in the archive at `path`: a docker-archive or oci-archive tar
/// (possibly compressed), or an OCI image layout directory.
pub fn load(store: &Store, path: &Path) -> Result<Vec<Loaded>> {
    // No collection may remove what this adds before it is recorded.
    let _adding = store.adding()?;
    let shown = path.display().to_string();
    if path.is_dir() {
        return load_from(store, &Source::Dir(path.to_path_buf()));
    }
    let mut file = File::open(path).step(|| format!("open {shown}"))?;
    let mut head = [0u8; 4];
    let n = file.read(&mut head).step(|| format!("read {shown}"))?;
    if Compression::detect(&head[..n]) != Compression::None {
        file.rewind().step(|| format!("rewind {shown}"))?;
        return spool_and_load(store, &mut file, &shown);
    }
    load_from(store, &Source::tar(path, &shown)?)
}

/// [`load`] of a tar (possibly compressed) read from `r`, e.g. stdin, named `what`
/// in errors.
pub fn load_reader(store: &Store, r: &mut dyn Read, what: &str) -> Result<Vec<Loaded>> {
    let _adding = store.adding()?;
    spool_and_load(store, r, what)
}

/// Decompress `r` into the store's `ingest/` first: the formats need their files
/// in an order a stream does not promise.
fn spool_and_load(store: &Store, r: &mut dyn Read, what: &str) -> Result<Vec<Loaded>> {
    let ingest = store.root().join("ingest");
    let mut spool = tempfile::NamedTempFile::new_in(&ingest)
        .step(|| format!("create a temporary file for {what} in {}", ingest.display()))?;
    let mut tar = layer::decompress(r, what)?;
    io::copy(&mut tar, spool.as_file_mut()).step(|| format!("copy {what} into the store"))?;
    load_from(store, &Source::tar(spool.path(), what)?)
}

/// Load the images `src` holds, then record them all.
fn load_from(store: &Store, src: &Source) -> Result<Vec<Loaded>> {
    let found = if src.has("manifest.json") {
        docker_archive(store, src)?
    } else if src.has("index.json") {
        oci_layout(store, src)?
    } else {
        return Err(Error::Format {
            file: src.shown(""),
            reason: "neither a docker-archive (no manifest.json) nor an OCI image layout \
                     (no index.json)"
                .into(),
        });
    };
    let loaded = merge(found);
    for l in &loaded {
        store.add_image(&l.image, &l.names)?;
    }
    Ok(loaded)
}

/// One entry per image id, with the names of all entries for it.
fn merge(found: Vec<Loaded>) -> Vec<Loaded> {
    let mut out: Vec<Loaded> = Vec::new();
    for l in found {
        match out.iter_mut().find(|o| o.image.id == l.image.id) {
            Some(o) => {
                for n in l.names {
                    if !o.names.contains(&n) {
                        o.names.push(n);
                    }
                }
            }
            None => out.push(l),
        }
    }
    out
}

// ---- docker-archive ----

fn docker_archive(store: &Store, src: &Source) -> Result<Vec<Loaded>> {
    let entries: Vec<DockerEntry> = src.json("manifest.json")?;
    entries
        .iter()
        .map(|e| docker_image(store, src, e))
        .collect()
}

fn docker_image(store: &Store, src: &Source, e: &DockerEntry) -> Result<Loaded> {
    let tags = e.repo_tags.iter().flatten();
    let names = tags
        .map(|t| reference(t, &src.shown("manifest.json"), "RepoTags"))
        .collect::<Result<Vec<_>>>()?;
    let (id, config_size) = src.put(store, &e.config, digest_in_name(&e.config).as_ref())?;
    let config = Config::read(store, id, &src.shown(&e.config), e.layers.len())?;
    let layers = (e.layers.iter().zip(&config.diff_ids))
        .map(|(name, diff_id)| docker_layer(store, src, name, diff_id))
        .collect::<Result<Vec<_>>>()?;
    // A docker-archive has no manifest: write the OCI one for what was stored.
    let stored: Vec<Layer> = layers.iter().map(|(l, _)| l.clone()).collect();
    let manifest = import::manifest_json(&config.id, config_size as usize, &stored);
    let manifest = store.put_bytes(&manifest, "image manifest")?;
    let image = config.image(manifest, layers);
    Ok(Loaded { image, names })
}

/// Store and unpack one layer tar of a docker-archive (plain or compressed).
fn docker_layer(store: &Store, src: &Source, name: &str, diff_id: &Digest) -> Result<(Layer, u64)> {
    let what = src.shown(name);
    let mut head = [0u8; 4];
    let n = src
        .open(name)?
        .read(&mut head)
        .step(|| format!("read {what}"))?;
    let compression = Compression::detect(&head[..n]);
    // An uncompressed layer tar is its own diff ID; a compressed one is named by
    // its digest only in docker's newer blobs/sha256/ layout.
    let expected = match compression {
        Compression::None => Some(diff_id.clone()),
        _ => digest_in_name(name),
    };
    let (digest, size) = src.put(store, name, expected.as_ref())?;
    if expected.is_none() && store.layer_path(diff_id).exists() {
        // unpack_blob skips a layer that is there already: check this blob here.
        check_diff_id(store, &digest, diff_id, &what)?;
    }
    let (_, unpacked) = store.unpack_blob(&digest, Some(diff_id), &what)?;
    let layer = Layer {
        digest,
        diff_id: diff_id.clone(),
        size,
        media_type: compression.media_type().to_owned(),
    };
    Ok((layer, unpacked))
}

/// The digest a file is named by: `<hex>.json` (docker's and podman's configs) or
/// `blobs/sha256/<hex>`.
fn digest_in_name(name: &str) -> Option<Digest> {
    let hex = name
        .strip_prefix("blobs/sha256/")
        .or_else(|| name.strip_suffix(".json"))?;
    format!("sha256:{hex}").parse().ok()
}

// ---- OCI image layout ----

fn oci_layout(store: &Store, src: &Source) -> Result<Vec<Loaded>> {
    let _: OciLayout = src.json("oci-layout")?;
    let index: ImageIndex = src.json("index.json")?;
    let shown = src.shown("index.json");
    let mut found = Vec::new();
    for desc in index.manifests().iter().filter(|d| runs_here(d)) {
        let names = ref_names(desc, &shown)?;
        let manifest = manifest_of(store, src, desc)?;
        found.push(oci_image(store, src, &manifest, names)?);
    }
    if found.is_empty() {
        return Err(Error::Format {
            file: shown,
            reason: format!("no image for linux/{}", import::arch()),
        });
    }
    Ok(found)
}

/// The names in a descriptor's annotations: containerd's full name, else the OCI
/// `ref.name` read as any other reference (`v1` is `docker.io/library/v1:latest`).
fn ref_names(desc: &Descriptor, shown: &str) -> Result<Vec<Reference>> {
    let annotations = desc.annotations().clone().unwrap_or_default();
    let name = [ANNOTATION_CONTAINERD_NAME, ANNOTATION_REF_NAME]
        .into_iter()
        .find_map(|k| Some((k, annotations.get(k)?)));
    name.map(|(k, v)| reference(v, shown, k))
        .into_iter()
        .collect()
}

/// Follow `desc` through image indexes (picking this platform's entry) to a manifest.
fn manifest_of(store: &Store, src: &Source, desc: &Descriptor) -> Result<Descriptor> {
    let mut desc = desc.clone();
    for _ in 0..MAX_NESTING {
        match kind(desc.media_type()) {
            Kind::Manifest => return Ok(desc),
            Kind::Index => {
                let (digest, shown) = src.put_described(store, &desc)?;
                let index: ImageIndex = parse(&store.read_blob(&digest)?, &shown)?;
                let here = index.manifests().iter().find(|d| runs_here(d));
                desc = here.cloned().ok_or_else(|| Error::Format {
                    file: shown,
                    reason: format!("no image for linux/{}", import::arch()),
                })?;
            }
            Kind::Other => {
                return Err(Error::Format {
                    file: src.shown(&blob_name(&src.digest(&desc)?)),
                    reason: format!("media type {} is not an image", desc.media_type()),
                })
            }
        }
    }
    Err(Error::Format {
        file: src.shown("index.json"),
        reason: format!("image indexes nest deeper than {MAX_NESTING}"),
    })
}

/// Store an image's manifest, config and layers, unpacking the layers.
fn oci_image(
    store: &Store,
    src: &Source,
    desc: &Descriptor,
    names: Vec<Reference>,
) -> Result<Loaded> {
    let (manifest, shown) = src.put_described(store, desc)?;
    let m: ImageManifest = parse(&store.read_blob(&manifest)?, &shown)?;
    let (id, shown) = src.put_described(store, m.config())?;
    let config = Config::read(store, id, &shown, m.layers().len())?;
    let layers = (m.layers().iter().zip(&config.diff_ids))
        .map(|(desc, diff_id)| oci_layer(store, src, desc, diff_id))
        .collect::<Result<Vec<_>>>()?;
    let image = config.image(manifest, layers);
    Ok(Loaded { image, names })
}

/// Store and unpack one layer blob of an OCI layout.
fn oci_layer(
    store: &Store,
    src: &Source,
    desc: &Descriptor,
    diff_id: &Digest,
) -> Result<(Layer, u64)> {
    let (digest, what) = src.put_described(store, desc)?;
    let (_, unpacked) = store.unpack_blob(&digest, Some(diff_id), &what)?;
    let layer = Layer {
        digest,
        diff_id: diff_id.clone(),
        size: desc.size(),
        media_type: desc.media_type().to_string(),
    };
    Ok((layer, unpacked))
}

/// What a descriptor points at.
enum Kind {
    Manifest,
    Index,
    Other,
}

fn kind(m: &MediaType) -> Kind {
    match m.as_ref() {
        media::MANIFEST | "application/vnd.docker.distribution.manifest.v2+json" => Kind::Manifest,
        "application/vnd.oci.image.index.v1+json"
        | "application/vnd.docker.distribution.manifest.list.v2+json" => Kind::Index,
        _ => Kind::Other,
    }
}

/// Whether the descriptor is for this machine (or says no platform).
fn runs_here(desc: &Descriptor) -> bool {
    match desc.platform() {
        None => true,
        Some(p) => p.os().to_string() == "linux" && p.architecture().to_string() == import::arch(),
    }
}

// ---- shared by both formats ----

/// What the image record takes from an image config.
struct Config {
    /// The config's digest: the image id.
    id: Digest,
    created: Option<String>,
    /// `rootfs.diff_ids`, one per layer.
    diff_ids: Vec<Digest>,
}

impl Config {
    /// Parse the stored config `id` (named `shown` in errors) of an image of
    /// `layers` layers.
    fn read(store: &Store, id: Digest, shown: &str, layers: usize) -> Result<Config> {
        let c: ImageConfiguration = parse(&store.read_blob(&id)?, shown)?;
        let bad = |reason: String| Error::Format {
            file: shown.to_owned(),
            reason,
        };
        let diff_ids = c.rootfs().diff_ids();
        if diff_ids.len() != layers {
            return Err(bad(format!(
                "rootfs.diff_ids has {} entries for {layers} layers",
                diff_ids.len()
            )));
        }
        let diff_ids = diff_ids
            .iter()
            .map(|d| {
                d.parse()
                    .map_err(|e: Error| bad(format!("rootfs.diff_ids: {e}")))
            })
            .collect::<Result<Vec<Digest>>>()?;
        let created = c.created().clone();
        Ok(Config {
            id,
            created,
            diff_ids,
        })
    }

    /// The image of this config, its manifest, and its layers with their unpacked sizes.
    fn image(self, manifest: Digest, layers: Vec<(Layer, u64)>) -> Image {
        let size = layers.iter().map(|(_, n)| n).sum();
        Image {
            id: self.id,
            manifest,
            layers: layers.into_iter().map(|(l, _)| l).collect(),
            created: self.created,
            size,
        }
    }
}

/// The uncompressed digest and size of stored layer blob `blob` must be `diff_id`.
fn check_diff_id(store: &Store, blob: &Digest, diff_id: &Digest, what: &str) -> Result<u64> {
    let file = File::open(store.blob_path(blob)).step(|| format!("open {what}"))?;
    let mut hashing = Hashing::new(io::sink());
    io::copy(&mut layer::decompress(file, what)?, &mut hashing)
        .step(|| format!("decompress {what}"))?;
    let (actual, len, _) = hashing.finish();
    if actual != *diff_id {
        return Err(Error::DigestMismatch {
            what: format!("{what} (uncompressed)"),
            expected: diff_id.to_string(),
            actual: actual.to_string(),
        });
    }
    Ok(len)
}

/// An image name from an archive (`field` of the file `shown`).
fn reference(name: &str, shown: &str, field: &str) -> Result<Reference> {
    name.parse().map_err(|e| Error::Format {
        file: shown.to_owned(),
        reason: format!("{field}: {e}"),
    })
}

fn parse<T: DeserializeOwned>(data: &[u8], shown: &str) -> Result<T> {
    serde_json::from_slice(data).map_err(|e| Error::Format {
        file: shown.to_owned(),
        reason: format!("does not parse: {e}"),
    })
}

fn blob_name(d: &Digest) -> String {
    format!("blobs/sha256/{}", d.hex())
}

// ---- where an archive's files are read from ----

/// An OCI layout directory, or a tar file scanned once for where each entry's
/// data is (the formats refer to their files by name, in no promised order).
enum Source {
    Dir(PathBuf),
    Tar {
        file: PathBuf,
        shown: String,
        entries: HashMap<String, Entry>,
    },
}

/// A tar entry: where its data is, or the entry it links to.
enum Entry {
    Data { offset: u64, size: u64 },
    Link(String),
}

impl Source {
    /// Scan the tar `file`, named `shown` in errors.
    fn tar(file: &Path, shown: &str) -> Result<Source> {
        let f = File::open(file).step(|| format!("open {shown}"))?;
        let not_a_tar = |e: io::Error| Error::Format {
            file: shown.to_owned(),
            reason: format!("not a tar archive: {e}"),
        };
        let mut archive = tar::Archive::new(io::BufReader::new(f));
        let mut entries = HashMap::new();
        for e in archive.entries_with_seek().map_err(not_a_tar)? {
            let e = e.map_err(not_a_tar)?;
            let name = clean(&e.path().map_err(not_a_tar)?);
            let target = e.link_name().map_err(not_a_tar)?;
            let entry = match (e.header().entry_type(), target) {
                (tar::EntryType::Symlink, Some(t)) => Entry::Link(clean(&parent(&name).join(t))),
                (tar::EntryType::Link, Some(t)) => Entry::Link(clean(&t)),
                (tar::EntryType::Regular | tar::EntryType::Continuous, _) => Entry::Data {
                    offset: e.raw_file_position(),
                    size: e.size(),
                },
                _ => continue,
            };
            entries.insert(name, entry);
        }
        Ok(Source::Tar {
            file: file.to_path_buf(),
            shown: shown.to_owned(),
            entries,
        })
    }

    /// The file `name` as errors show it: its path, or `ARCHIVE: NAME`.
    fn shown(&self, name: &str) -> String {
        match self {
            Source::Dir(d) => d.join(name).display().to_string(),
            Source::Tar { shown, .. } if name.is_empty() => shown.clone(),
            Source::Tar { shown, .. } => format!("{shown}: {name}"),
        }
    }

    fn has(&self, name: &str) -> bool {
        match self {
            Source::Dir(d) => d.join(name).is_file(),
            Source::Tar { entries, .. } => entries.contains_key(name),
        }
    }

    /// The content of the file `name`.
    fn open(&self, name: &str) -> Result<Box<dyn Read>> {
        let missing = || Error::Format {
            file: self.shown(name),
            reason: "missing from the archive".into(),
        };
        let shown = self.shown(name);
        match self {
            Source::Dir(d) => {
                let climbs = Path::new(name)
                    .components()
                    .any(|c| !matches!(c, Component::Normal(_)));
                if climbs || !self.has(name) {
                    return Err(missing());
                }
                let f = File::open(d.join(name)).step(|| format!("open {shown}"))?;
                Ok(Box::new(f))
            }
            Source::Tar { file, entries, .. } => {
                let (offset, size) = find(entries, name).ok_or_else(missing)?;
                let mut f = File::open(file).step(|| format!("open {shown}"))?;
                f.seek(SeekFrom::Start(offset))
                    .step(|| format!("seek to {shown}"))?;
                Ok(Box::new(f.take(size)))
            }
        }
    }

    /// Parse the JSON file `name`.
    fn json<T: DeserializeOwned>(&self, name: &str) -> Result<T> {
        let shown = self.shown(name);
        let mut data = Vec::new();
        self.open(name)?
            .take(MAX_JSON + 1)
            .read_to_end(&mut data)
            .step(|| format!("read {shown}"))?;
        if data.len() as u64 > MAX_JSON {
            return Err(Error::Format {
                file: shown,
                reason: format!("larger than {MAX_JSON} bytes"),
            });
        }
        parse(&data, &shown)
    }

    /// Copy the file `name` into the store, checking its digest when `expected`.
    fn put(&self, store: &Store, name: &str, expected: Option<&Digest>) -> Result<(Digest, u64)> {
        store.put_blob(&mut self.open(name)?, expected, &self.shown(name))
    }

    /// Copy the blob `desc` points at into the store, checking digest and size.
    /// Returns its digest and how errors name it.
    fn put_described(&self, store: &Store, desc: &Descriptor) -> Result<(Digest, String)> {
        let digest = self.digest(desc)?;
        let name = blob_name(&digest);
        let (_, size) = self.put(store, &name, Some(&digest))?;
        let shown = self.shown(&name);
        if size != desc.size() {
            return Err(Error::Format {
                file: shown,
                reason: format!("{size} bytes, where its descriptor says {}", desc.size()),
            });
        }
        Ok((digest, shown))
    }

    fn digest(&self, desc: &Descriptor) -> Result<Digest> {
        desc.digest()
            .to_string()
            .parse()
            .map_err(|e| Error::Format {
                file: self.shown(""),
                reason: format!("a descriptor's digest: {e}"),
            })
    }
}

/// Where the data of `name` is, through up to a few links.
fn find(entries: &HashMap<String, Entry>, name: &str) -> Option<(u64, u64)> {
    let mut name = name.to_owned();
    for _ in 0..MAX_NESTING {
        match entries.get(&name)? {
            Entry::Data { offset, size } => return Some((*offset, *size)),
            Entry::Link(target) => name = target.clone(),
        }
    }
    None
}

/// A path inside an archive as `a/b/c`: no `.`, `..` resolved, never above the top.
fn clean(p: &Path) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for c in p.components() {
        match c {
            Component::Normal(s) => parts.push(s.to_str().unwrap_or("\u{fffd}")),
            Component::ParentDir => {
                parts.pop();
            }
            _ => {}
        }
    }
    parts.join("/")
}

fn parent(name: &str) -> PathBuf {
    Path::new(name)
        .parent()
        .unwrap_or(Path::new(""))
        .to_path_buf()
}

// ---- save ----

/// The tar being written.
type Out<'a> = tar::Builder<&'a mut dyn Write>;

/// Write the images `images` (names or ids) to `out` as a tar in `format`. An
/// image given by name carries that name; one given by id, none.
pub fn save(store: &Store, images: &[&str], out: &mut dyn Write, format: SaveFormat) -> Result<()> {
    // No collection may remove the blobs of an image removed meanwhile while they are read.
    let _reading = store.adding()?;
    let chosen = choose(store, images)?;
    let mut tar = tar::Builder::new(out);
    match format {
        SaveFormat::OciArchive => save_oci(store, &chosen, &mut tar)?,
        SaveFormat::DockerArchive => save_docker(store, &chosen, &mut tar)?,
    }
    tar.into_inner().step(|| "finish the archive")?;
    Ok(())
}

/// The images named, each with the names it was asked for by.
fn choose(store: &Store, images: &[&str]) -> Result<Vec<Loaded>> {
    let mut chosen = Vec::new();
    for what in images {
        let image = store.resolve(what)?;
        let by_name = what.parse::<Reference>().ok().filter(|r| {
            r.tag.is_some()
                && store
                    .resolve(&r.to_string())
                    .is_ok_and(|i| i.id == image.id)
        });
        chosen.push(Loaded {
            image,
            names: by_name.into_iter().collect(),
        });
    }
    Ok(merge(chosen))
}

fn save_oci(store: &Store, chosen: &[Loaded], tar: &mut Out) -> Result<()> {
    append_dir(tar, "blobs/")?;
    append_dir(tar, "blobs/sha256/")?;
    let mut written = HashSet::new();
    let mut manifests = Vec::new();
    for l in chosen {
        let image = &l.image;
        let layers = image.layers.iter().map(|l| &l.digest);
        for d in [&image.manifest, &image.id].into_iter().chain(layers) {
            if written.insert(d.clone()) {
                append_blob(tar, store, d)?;
            }
        }
        manifests.extend(index_entries(store, l)?);
    }
    let index = ImageIndexBuilder::default()
        .schema_version(2u32)
        .media_type(MediaType::ImageIndex)
        .manifests(manifests)
        .build()
        .expect("an index with its required fields builds");
    let index = serde_json::to_vec(&index).expect("an index serializes");
    let layout = br#"{"imageLayoutVersion":"1.0.0"}"#;
    append_file(tar, "oci-layout", layout.len() as u64, &mut &layout[..])?;
    append_file(tar, "index.json", index.len() as u64, &mut &index[..])
}

/// index.json's descriptors of one image: one per name (in `ref.name`, and in
/// containerd's annotation, which docker reads), or one without a name.
fn index_entries(store: &Store, l: &Loaded) -> Result<Vec<Descriptor>> {
    let manifest = store.read_blob(&l.image.manifest)?;
    #[derive(Deserialize)]
    struct MediaTypeOnly {
        #[serde(rename = "mediaType")]
        media_type: Option<String>,
    }
    let media = parse::<MediaTypeOnly>(&manifest, &format!("manifest {}", l.image.manifest))?
        .media_type
        .unwrap_or_else(|| media::MANIFEST.to_owned());
    let digest: oci_spec::image::Digest = l.image.manifest.to_string().parse().expect("sha256");
    let desc = Descriptor::new(media.as_str().into(), manifest.len() as u64, digest);
    if l.names.is_empty() {
        return Ok(vec![desc]);
    }
    let named = l.names.iter().map(|n| {
        let mut d = desc.clone();
        let name = n.to_string();
        let a =
            [ANNOTATION_REF_NAME, ANNOTATION_CONTAINERD_NAME].map(|k| (k.to_owned(), name.clone()));
        d.set_annotations(Some(a.into_iter().collect()));
        d
    });
    Ok(named.collect())
}

fn save_docker(store: &Store, chosen: &[Loaded], tar: &mut Out) -> Result<()> {
    let mut written = HashSet::new();
    let mut entries = Vec::new();
    for l in chosen {
        let config = format!("{}.json", l.image.id.hex());
        let data = store.read_blob(&l.image.id)?;
        append_file(tar, &config, data.len() as u64, &mut &data[..])?;
        let mut layers = Vec::new();
        for layer in &l.image.layers {
            let name = format!("{}/layer.tar", layer.diff_id.hex());
            if written.insert(layer.diff_id.clone()) {
                append_layer_tar(tar, store, layer, &name)?;
            }
            layers.push(name);
        }
        let tags = l.names.iter().filter_map(|n| {
            let tag = n.tag.as_ref()?;
            Some(format!("{}:{tag}", n.familiar_name()))
        });
        entries.push(DockerEntry {
            config,
            repo_tags: Some(tags.collect::<Vec<_>>()).filter(|t| !t.is_empty()),
            layers,
        });
    }
    let manifest = serde_json::to_vec(&entries).expect("manifest.json serializes");
    append_file(
        tar,
        "manifest.json",
        manifest.len() as u64,
        &mut &manifest[..],
    )
}

/// A layer as docker writes it: the uncompressed tar (checked against its diff ID).
fn append_layer_tar(tar: &mut Out, store: &Store, layer: &Layer, name: &str) -> Result<()> {
    let what = format!("layer {}", layer.digest);
    let len = check_diff_id(store, &layer.digest, &layer.diff_id, &what)?;
    let blob = File::open(store.blob_path(&layer.digest)).step(|| format!("open {what}"))?;
    append_file(tar, name, len, &mut layer::decompress(blob, &what)?)
}

fn append_blob(tar: &mut Out, store: &Store, d: &Digest) -> Result<()> {
    let path = store.blob_path(d);
    let file = File::open(&path).step(|| format!("open blob {d}"))?;
    let len = file.metadata().step(|| format!("stat blob {d}"))?.len();
    append_file(tar, &blob_name(d), len, &mut io::BufReader::new(file))
}

fn append_file(tar: &mut Out, name: &str, size: u64, data: &mut dyn Read) -> Result<()> {
    let mut h = header(tar::EntryType::Regular, 0o644);
    h.set_size(size);
    tar.append_data(&mut h, name, data)
        .step(|| format!("write {name} into the archive"))
}

fn append_dir(tar: &mut Out, name: &str) -> Result<()> {
    let mut h = header(tar::EntryType::Directory, 0o755);
    tar.append_data(&mut h, name, io::empty())
        .step(|| format!("write {name} into the archive"))
}

fn header(kind: tar::EntryType, mode: u32) -> tar::Header {
    let mut h = tar::Header::new_ustar();
    h.set_entry_type(kind);
    h.set_mode(mode);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(0);
    h.set_size(0);
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn archive_paths_resolve_through_links_and_never_climb() {
        assert_eq!(clean(Path::new("./a/./b/../c")), "a/c");
        assert_eq!(clean(Path::new("/../../etc/passwd")), "etc/passwd");
        // podman's docker-archive: <v1 id>/layer.tar -> ../<diff id>.tar
        let mut entries = HashMap::new();
        let link = clean(&parent("v1/layer.tar").join("../d.tar"));
        entries.insert("v1/layer.tar".to_owned(), Entry::Link(link));
        entries.insert(
            "d.tar".to_owned(),
            Entry::Data {
                offset: 512,
                size: 7,
            },
        );
        entries.insert("loop".to_owned(), Entry::Link("loop".to_owned()));
        assert_eq!(find(&entries, "v1/layer.tar"), Some((512, 7)));
        assert_eq!(find(&entries, "loop"), None);
        assert_eq!(find(&entries, "missing"), None);
    }

    #[test]
    fn content_named_files_announce_their_digest() {
        let d = Digest::of(b"x");
        assert_eq!(
            digest_in_name(&format!("{}.json", d.hex())),
            Some(d.clone())
        );
        assert_eq!(
            digest_in_name(&format!("blobs/sha256/{}", d.hex())),
            Some(d.clone())
        );
        assert_eq!(digest_in_name(&format!("{}.tar", d.hex())), None);
        assert_eq!(digest_in_name("abc/layer.tar"), None);
    }

    #[test]
    fn one_image_listed_twice_is_loaded_once_with_both_names() {
        let image = |c: &[u8]| Image {
            id: Digest::of(c),
            manifest: Digest::of(b"m"),
            layers: vec![],
            created: None,
            size: 0,
        };
        let l = |c: &[u8], n: &str| Loaded {
            image: image(c),
            names: vec![n.parse().unwrap()],
        };
        let merged = merge(vec![
            l(b"a", "x:1"),
            l(b"b", "y"),
            l(b"a", "x:2"),
            l(b"a", "x:1"),
        ]);
        let names: Vec<Vec<String>> = merged
            .iter()
            .map(|l| l.names.iter().map(|n| n.to_string()).collect())
            .collect();
        assert_eq!(
            names,
            [
                vec!["docker.io/library/x:1", "docker.io/library/x:2"],
                vec!["docker.io/library/y:latest"]
            ]
        );
    }
}
