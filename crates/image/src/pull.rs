//! `pull`: an image from a registry into the store, and `login`.
//!
//! A pull, step by step:
//! 1. the manifest named by the reference's tag or digest (Docker schema 2 or
//!    OCI); an image index or manifest list is resolved to this platform
//!    (linux and [`crate::import::arch`]) and that manifest fetched by digest.
//!    A manifest asked for by digest must have it, and one asked for by tag the
//!    `Docker-Content-Digest` the registry announces; by digest, a manifest
//!    already in the store is not fetched again;
//! 2. the config blob: the image id is its digest, its `rootfs.diff_ids` pair
//!    with the manifest's layers, and its os/architecture must be this platform;
//! 3. the layers, a few at a time ([`PullOptions::parallel`] threads): each blob
//!    not in the store is downloaded to `ingest/<hex>.partial` and goes into the
//!    store through [`Store::put_blob`], which checks its digest; then it is
//!    unpacked once with [`Store::unpack_blob`], which checks the diff ID.
//!    gzip, zstd and plain tar layers are all read (sniffed by their first bytes);
//! 4. the image is recorded under the reference.
//!
//! Interrupted downloads resume: the `.partial` file stays when a download fails
//! or the process dies, and the next pull asks for the rest with an HTTP `Range`.
//! Nothing in it is trusted until the whole blob's digest checks; when that
//! fails after a resume, the partial is discarded and the blob downloaded again
//! from the start once, and a second mismatch is [`Error::DigestMismatch`] with
//! nothing kept. A `.partial` is locked (flock) while written, so two pulls of
//! the same blob take turns and the second finds it in the store.

use std::fmt;
use std::fs::{self, File};
use std::io::{self, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread;

use serde::Deserialize;

use crate::auth::{self, Credentials};
use crate::digest::Digest;
use crate::error::{Context, Error, Result};
use crate::progress::{Done, Progress, Quiet};
use crate::reference::Reference;
use crate::registry::{is_insecure, Registry};
use crate::store::{Image, Layer, Store};

/// An OS and CPU architecture, as image indexes and configs name them.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Platform {
    /// `linux`.
    #[serde(default)]
    pub os: String,
    /// `amd64`, `arm64`... (the Go spelling).
    #[serde(default)]
    pub architecture: String,
    /// `v7`, `v8`..., when it matters.
    pub variant: Option<String>,
}

impl Platform {
    /// This machine: linux and [`crate::import::arch`].
    pub fn host() -> Platform {
        Platform {
            os: "linux".into(),
            architecture: crate::import::arch().into(),
            variant: None,
        }
    }

    /// Whether an image for `other` runs here: same os and architecture, and
    /// the same variant when this one names a variant.
    fn accepts(&self, other: &Platform) -> bool {
        self.os == other.os
            && self.architecture == other.architecture
            && (self.variant.is_none() || self.variant == other.variant)
    }
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        match &self.variant {
            Some(v) => write!(f, "/{v}"),
            None => Ok(()),
        }
    }
}

/// How to pull.
#[derive(Debug, Clone)]
pub struct PullOptions {
    /// Registries (`host` or `host:port`) spoken to over plain HTTP, besides
    /// loopback ones.
    pub insecure: Vec<String>,
    /// Docker's configuration directory, whose `config.json` credentials are
    /// used when onggi's own `auth.json` has none; `None` to not read it.
    pub docker_config: Option<PathBuf>,
    /// The platform to pull for.
    pub platform: Platform,
    /// How many layers download at once.
    pub parallel: usize,
}

impl Default for PullOptions {
    /// No insecure registries, Docker's config from `$DOCKER_CONFIG` or
    /// `~/.docker`, this platform, 3 layers at once.
    fn default() -> Self {
        PullOptions {
            insecure: Vec::new(),
            docker_config: auth::docker_config_dir(),
            platform: Platform::host(),
            parallel: 3,
        }
    }
}

/// A descriptor in a manifest or index.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Descriptor {
    #[serde(default)]
    media_type: String,
    digest: Digest,
    size: u64,
    platform: Option<Platform>,
}

/// An image manifest or an index (`manifests` set), OCI or Docker.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Manifest {
    schema_version: u32,
    config: Option<Descriptor>,
    #[serde(default)]
    layers: Vec<Descriptor>,
    manifests: Option<Vec<Descriptor>>,
}

/// The parts of an image config a pull reads.
#[derive(Debug, Deserialize)]
struct Config {
    created: Option<String>,
    #[serde(flatten)]
    platform: Platform,
    rootfs: RootFs,
}

#[derive(Debug, Deserialize)]
struct RootFs {
    diff_ids: Vec<Digest>,
}

/// Pull `reference` into `store`, reporting layer by layer to `progress`, and
/// name the image by it. The image's id is its config's digest.
pub fn pull(
    store: &Store,
    reference: &Reference,
    opts: &PullOptions,
    progress: &dyn Progress,
) -> Result<Image> {
    let _adding = store.adding()?;
    let registry = connect(store.root(), &reference.registry, opts)?;
    let puller = Puller {
        store,
        registry: &registry,
        reference,
    };
    // 1. The manifest for this platform (through the index when it is one).
    let (manifest_digest, manifest) = puller.platform_manifest(&opts.platform)?;
    // 2. The config: the image id, the diff IDs, the platform it is for.
    let config_desc = manifest.config.as_ref().ok_or_else(|| Error::Format {
        file: format!("manifest {manifest_digest} of {reference}"),
        reason: "it has no config".into(),
    })?;
    puller.download(&config_desc.digest, config_desc.size, &Quiet)?;
    let config: Config = parse_json(
        &store.read_blob(&config_desc.digest)?,
        &format!("config {} of {reference}", config_desc.digest),
    )?;
    check_platform(reference, &config.platform, &opts.platform)?;
    // 3. The layers, downloaded and unpacked a few at a time.
    let layers = pair_layers(reference, &manifest, &config)?;
    let size = puller.fetch_layers(&layers, opts.parallel, progress)?;
    // 4. The image, under the reference.
    let image = Image {
        id: config_desc.digest.clone(),
        manifest: manifest_digest,
        layers,
        created: config.created,
        size,
    };
    store.add_image(&image, std::slice::from_ref(reference))?;
    Ok(image)
}

/// Log in to `registry` (`host[:port]`, `docker.io`) as `user`: check the
/// credentials with `GET /v2/` (through the registry's auth flow), then save them
/// in `<store_root>/auth.json`. A registry that lets anyone in accepts any.
pub fn login(
    store_root: &Path,
    registry: &str,
    user: &str,
    password: &str,
    opts: &PullOptions,
) -> Result<()> {
    let creds = Credentials {
        user: user.to_owned(),
        password: password.to_owned(),
    };
    let client = Registry::new(
        registry,
        is_insecure(registry, &opts.insecure),
        Some(creds.clone()),
    );
    client.check()?;
    fs::create_dir_all(store_root).step(|| format!("create {}", store_root.display()))?;
    auth::save(store_root, registry, &creds)
}

/// A client of `host` with its saved credentials, if any.
fn connect(store_root: &Path, host: &str, opts: &PullOptions) -> Result<Registry> {
    let creds = auth::lookup(store_root, opts.docker_config.as_deref(), host)?;
    Ok(Registry::new(
        host,
        is_insecure(host, &opts.insecure),
        creds,
    ))
}

fn parse_json<T: serde::de::DeserializeOwned>(data: &[u8], what: &str) -> Result<T> {
    serde_json::from_slice(data).map_err(|e| Error::Format {
        file: what.to_owned(),
        reason: e.to_string(),
    })
}

/// The index entry for `platform`, or the error listing what the index has.
fn choose<'a>(
    reference: &Reference,
    index: &'a [Descriptor],
    platform: &Platform,
) -> Result<&'a Descriptor> {
    let found = index
        .iter()
        .find(|d| d.platform.as_ref().is_some_and(|p| platform.accepts(p)));
    found.ok_or_else(|| {
        let available: Vec<String> = index
            .iter()
            .filter_map(|d| d.platform.as_ref())
            .filter(|p| p.os != "unknown")
            .map(|p| p.to_string())
            .collect();
        Error::NoPlatform {
            reference: reference.to_string(),
            wanted: platform.to_string(),
            available: if available.is_empty() {
                "no platform".into()
            } else {
                available.join(", ")
            },
        }
    })
}

/// An image for another platform is refused (a config that does not say is taken).
fn check_platform(reference: &Reference, has: &Platform, wanted: &Platform) -> Result<()> {
    if has.os.is_empty() || has.architecture.is_empty() || wanted.accepts(has) {
        return Ok(());
    }
    Err(Error::NoPlatform {
        reference: reference.to_string(),
        wanted: wanted.to_string(),
        available: has.to_string(),
    })
}

/// The manifest's layers with the config's diff IDs, bottom first.
fn pair_layers(reference: &Reference, m: &Manifest, config: &Config) -> Result<Vec<Layer>> {
    let bad = |reason: String| Error::Format {
        file: format!("manifest of {reference}"),
        reason,
    };
    let diff_ids = &config.rootfs.diff_ids;
    if m.layers.len() != diff_ids.len() {
        return Err(bad(format!(
            "{} layers but the config has {} diff IDs",
            m.layers.len(),
            diff_ids.len()
        )));
    }
    let mut layers = Vec::with_capacity(diff_ids.len());
    for (d, diff_id) in m.layers.iter().zip(diff_ids) {
        if !d.media_type.contains("tar") || d.media_type.contains("encrypted") {
            return Err(bad(format!(
                "layer {} has media type {:?}, not a (gzip, zstd or plain) tar",
                d.digest, d.media_type
            )));
        }
        layers.push(Layer {
            digest: d.digest.clone(),
            diff_id: diff_id.clone(),
            size: d.size,
            media_type: d.media_type.clone(),
        });
    }
    Ok(layers)
}

/// One pull's store, registry and reference.
struct Puller<'a> {
    store: &'a Store,
    registry: &'a Registry,
    reference: &'a Reference,
}

impl Puller<'_> {
    fn repo(&self) -> &str {
        &self.reference.repository
    }

    /// The image manifest for `platform`: the reference's, or the one its index
    /// lists for the platform.
    fn platform_manifest(&self, platform: &Platform) -> Result<(Digest, Manifest)> {
        let r = self.reference;
        let (name, expected) = match (&r.digest, &r.tag) {
            (Some(d), _) => (d.to_string(), Some(d)),
            (None, Some(t)) => (t.clone(), None),
            (None, None) => ("latest".to_owned(), None),
        };
        let (digest, m) = self.manifest(&name, expected)?;
        let Some(index) = &m.manifests else {
            return Ok((digest, m));
        };
        let entry = choose(r, index, platform)?;
        let (digest, m) = self.manifest(&entry.digest.to_string(), Some(&entry.digest))?;
        if m.manifests.is_some() {
            return Err(Error::Format {
                file: format!("manifest {digest} of {r}"),
                reason: "an index inside an index".into(),
            });
        }
        Ok((digest, m))
    }

    /// Manifest `name` (tag or digest), checked against the digest it must have
    /// (`expected`, else the one the registry announces) and kept in the store.
    fn manifest(&self, name: &str, expected: Option<&Digest>) -> Result<(Digest, Manifest)> {
        let what = format!("manifest {}/{}:{name}", self.registry.host(), self.repo());
        let bytes = match expected {
            Some(d) if self.store.has_blob(d) => self.store.read_blob(d)?,
            _ => {
                let fetched = self.registry.manifest(self.repo(), name)?;
                let want = expected.or(fetched.digest.as_ref());
                let want = want.cloned().unwrap_or_else(|| Digest::of(&fetched.bytes));
                self.store
                    .put_blob(&mut &fetched.bytes[..], Some(&want), &what)?;
                fetched.bytes
            }
        };
        let m: Manifest = parse_json(&bytes, &what)?;
        if m.schema_version != 2 {
            return Err(Error::Format {
                file: what,
                reason: format!(
                    "schema version {}: only Docker schema 2 and OCI manifests are pulled",
                    m.schema_version
                ),
            });
        }
        Ok((Digest::of(&bytes), m))
    }

    /// Download and unpack `layers`, `parallel` at a time; the unpacked size.
    fn fetch_layers(
        &self,
        layers: &[Layer],
        parallel: usize,
        progress: &dyn Progress,
    ) -> Result<u64> {
        let next = AtomicUsize::new(0);
        let failed = AtomicBool::new(false);
        let worker = || -> Result<u64> {
            let mut size = 0;
            while !failed.load(Ordering::Relaxed) {
                let Some(layer) = layers.get(next.fetch_add(1, Ordering::Relaxed)) else {
                    break;
                };
                match self.fetch_layer(layer, progress) {
                    Ok(n) => size += n,
                    Err(e) => {
                        // The others finish their layer and take no more.
                        failed.store(true, Ordering::Relaxed);
                        return Err(e);
                    }
                }
            }
            Ok(size)
        };
        let threads = parallel.clamp(1, layers.len().max(1));
        let sizes: Vec<Result<u64>> = thread::scope(|s| {
            let handles: Vec<_> = (0..threads).map(|_| s.spawn(worker)).collect();
            handles
                .into_iter()
                .map(|h| h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
                .collect()
        });
        sizes.into_iter().sum()
    }

    /// One layer in the store, downloaded if missing and unpacked if not yet.
    fn fetch_layer(&self, layer: &Layer, progress: &dyn Progress) -> Result<u64> {
        let how = self.download(&layer.digest, layer.size, progress)?;
        let what = format!("layer {} of {}", layer.digest, self.reference);
        let (_, size) = self
            .store
            .unpack_blob(&layer.digest, Some(&layer.diff_id), &what)?;
        progress.done(&layer.digest, how);
        Ok(size)
    }

    /// Blob `digest` (`size` bytes) in the store: already there, or downloaded
    /// (resuming a partial download) and verified.
    fn download(&self, digest: &Digest, size: u64, progress: &dyn Progress) -> Result<Done> {
        if self.store.has_blob(digest) {
            return Ok(Done::AlreadyPresent);
        }
        let path = self.store.partial_path(digest);
        let mut file = File::options()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .step(|| format!("open {}", path.display()))?;
        // Another pull of this blob holds the lock until its blob is stored.
        file.lock().step(|| format!("lock {}", path.display()))?;
        if self.store.has_blob(digest) {
            return Ok(Done::AlreadyPresent);
        }
        let what = format!("blob {}/{}@{digest}", self.registry.host(), self.repo());
        let had = file.metadata().map(|m| m.len()).unwrap_or(0);
        self.fill(&file, digest, size, &what, progress)?;
        let mut verdict = self.verify(&mut file, digest, &what);
        if had > 0 && matches!(verdict, Err(Error::DigestMismatch { .. })) {
            // What an earlier pull left may be what was wrong: start again, once.
            file.set_len(0)
                .step(|| format!("truncate {}", path.display()))?;
            self.fill(&file, digest, size, &what, progress)?;
            verdict = self.verify(&mut file, digest, &what);
        }
        // Stored or refused: either way the partial has served.
        let _ = fs::remove_file(&path);
        verdict.map(|()| Done::Downloaded)
    }

    /// Complete the partial download `file` of blob `digest` from the registry.
    /// On failure, what arrived stays for the next pull to resume from.
    fn fill(
        &self,
        file: &File,
        digest: &Digest,
        size: u64,
        what: &str,
        progress: &dyn Progress,
    ) -> Result<()> {
        let mut have = file
            .metadata()
            .step(|| format!("stat partial {what}"))?
            .len();
        if have > size {
            have = 0;
        }
        if have == size {
            return Ok(());
        }
        let stream = self.registry.blob(self.repo(), digest, have)?;
        // Without a range answer the body is the whole blob.
        let from = stream.offset;
        let mut at: &File = file;
        file.set_len(from)
            .and_then(|()| at.seek(SeekFrom::Start(from)))
            .step(|| format!("rewind partial {what}"))?;
        progress.start(digest, size, from);
        let mut body = stream.body.take(size - from);
        let mut out = BufWriter::with_capacity(1 << 18, file);
        let mut buf = vec![0u8; 1 << 16];
        loop {
            let n = body.read(&mut buf).step(|| format!("download {what}"))?;
            if n == 0 {
                break;
            }
            out.write_all(&buf[..n])
                .step(|| format!("write partial {what}"))?;
            progress.advance(digest, n as u64);
        }
        out.flush().step(|| format!("write partial {what}"))?;
        let got = file
            .metadata()
            .step(|| format!("stat partial {what}"))?
            .len();
        if got != size {
            let step = format!("download {what}: {got} of {size} bytes arrived");
            return Err(io::Error::from(io::ErrorKind::UnexpectedEof)).step(|| step);
        }
        Ok(())
    }

    /// The finished partial `file` into the store, if its digest is `digest`.
    fn verify(&self, file: &mut File, digest: &Digest, what: &str) -> Result<()> {
        file.rewind().step(|| format!("rewind partial {what}"))?;
        self.store.put_blob(file, Some(digest), what).map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn desc(os: &str, arch: &str, variant: Option<&str>) -> Descriptor {
        Descriptor {
            media_type: crate::registry::MANIFEST_TYPES[2].into(),
            digest: Digest::of(format!("{os}{arch}").as_bytes()),
            size: 1,
            platform: Some(Platform {
                os: os.into(),
                architecture: arch.into(),
                variant: variant.map(str::to_owned),
            }),
        }
    }

    fn amd64() -> Platform {
        Platform {
            os: "linux".into(),
            architecture: "amd64".into(),
            variant: None,
        }
    }

    #[test]
    fn an_index_resolves_to_the_platform_or_names_what_it_has() {
        let r: Reference = "localhost:5000/app:v1".parse().unwrap();
        let index = [
            desc("linux", "arm64", Some("v8")),
            desc("linux", "amd64", None),
            desc("unknown", "unknown", None),
        ];
        assert_eq!(
            choose(&r, &index, &amd64()).unwrap().digest,
            index[1].digest
        );
        let arm = Platform {
            architecture: "arm64".into(),
            variant: Some("v8".into()),
            ..amd64()
        };
        assert_eq!(choose(&r, &index, &arm).unwrap().digest, index[0].digest);
        let s390 = Platform {
            architecture: "s390x".into(),
            ..amd64()
        };
        let e = choose(&r, &index, &s390).unwrap_err().to_string();
        assert_eq!(
            e,
            "localhost:5000/app:v1: no image for linux/s390x; it has: linux/arm64/v8, linux/amd64"
        );
    }

    #[test]
    fn layers_pair_with_diff_ids_and_must_be_tars() {
        let r: Reference = "localhost/app".parse().unwrap();
        let layer = |mt: &str| {
            format!(
                r#"{{"mediaType":"{mt}","digest":"{}","size":3}}"#,
                Digest::of(b"l")
            )
        };
        let manifest = |mt: &str| -> Manifest {
            let json = format!(
                r#"{{"schemaVersion":2,"config":{{"digest":"{}","size":2}},"layers":[{}]}}"#,
                Digest::of(b"c"),
                layer(mt)
            );
            serde_json::from_str(&json).unwrap()
        };
        let config: Config = serde_json::from_str(&format!(
            r#"{{"architecture":"amd64","os":"linux","rootfs":{{"type":"layers","diff_ids":["{}"]}}}}"#,
            Digest::of(b"d")
        ))
        .unwrap();
        let docker = "application/vnd.docker.image.rootfs.diff.tar.gzip";
        let layers = pair_layers(&r, &manifest(docker), &config).unwrap();
        assert_eq!(layers[0].diff_id, Digest::of(b"d"));
        let e = pair_layers(&r, &manifest("application/x-helm"), &config).unwrap_err();
        assert!(
            e.to_string().contains("not a (gzip, zstd or plain) tar"),
            "{e}"
        );
        let none: Config = serde_json::from_str(r#"{"rootfs":{"diff_ids":[]}}"#).unwrap();
        let e = pair_layers(&r, &manifest(docker), &none).unwrap_err();
        assert!(
            e.to_string().contains("1 layers but the config has 0"),
            "{e}"
        );
        check_platform(&r, &config.platform, &amd64()).unwrap();
        let e = check_platform(
            &r,
            &config.platform,
            &Platform {
                architecture: "arm64".into(),
                ..amd64()
            },
        )
        .unwrap_err();
        assert!(e.to_string().contains("it has: linux/amd64"), "{e}");
    }
}
