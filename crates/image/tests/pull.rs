//! `pull` against real registries on loopback (root only): Debian's
//! `docker-registry`, started per test on a free 127.0.0.1 port with its storage
//! in a tempdir and killed by PID at the end, filled with `skopeo copy` from OCI
//! layouts written here around a busybox root filesystem (scripts/mkbundle.sh);
//! and, for the bearer-token flow and 500s, a tiny fake registry in a thread.
//!
//! Blob downloads are counted twice: by the `Progress` callbacks, and in the
//! registry's access log (`"GET /v2/<repo>/blobs/...`).

use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use onggi_image::import::arch;
use onggi_image::progress::{Done, Progress};
use onggi_image::pull::{login, pull, Platform, PullOptions};
use onggi_image::{Digest, Error, Image, Reference, Store};
use serde_json::{json, Value};

const GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
const PLAIN: &str = "application/vnd.oci.image.layer.v1.tar";
const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";

// ---- the registry -------------------------------------------------------------

/// A docker-registry process on 127.0.0.1, killed (by PID) and reaped on drop.
struct Registry {
    child: Child,
    port: u16,
    storage: PathBuf,
    log: PathBuf,
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Registry {
    /// Start one with its files under `dir`; with `htpasswd`, it asks for basic auth.
    fn start(dir: &Path, htpasswd: Option<&Path>) -> Registry {
        let port = free_port();
        let storage = dir.join("registry");
        let auth = htpasswd.map_or(String::new(), |p| {
            format!(
                "auth:\n  htpasswd:\n    realm: onggi-test\n    path: {}\n",
                p.display()
            )
        });
        let config = format!(
            "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {}\n  \
             delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:{port}\n{auth}",
            storage.display()
        );
        let config_path = dir.join("registry.yml");
        fs::write(&config_path, config).unwrap();
        let log = dir.join("registry.log");
        let out = fs::File::create(&log).unwrap();
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(&config_path)
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .expect("start docker-registry");
        let r = Registry {
            child,
            port,
            storage,
            log,
        };
        let deadline = Instant::now() + Duration::from_secs(15);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "docker-registry did not listen");
            thread::sleep(Duration::from_millis(50));
        }
        r
    }

    fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    fn reference(&self, name: &str) -> Reference {
        format!("{}/{name}", self.host()).parse().unwrap()
    }

    /// Blob GETs in the access log (HEADs and manifests not counted).
    fn blob_gets(&self) -> usize {
        let log = fs::read_to_string(&self.log).unwrap();
        log.lines()
            .filter(|l| l.contains("\"GET /v2/") && l.contains("/blobs/"))
            .count()
    }

    /// Every request in the access log.
    fn requests(&self) -> usize {
        let log = fs::read_to_string(&self.log).unwrap();
        log.lines()
            .filter(|l| l.contains("\" 20") || l.contains("\" 40"))
            .count()
    }

    /// Where the registry keeps blob `d`.
    fn blob_file(&self, d: &Digest) -> PathBuf {
        self.storage
            .join("docker/registry/v2/blobs/sha256")
            .join(&d.hex()[..2])
            .join(d.hex())
            .join("data")
    }

    /// `skopeo copy [extra] oci:LAYOUT:TAG docker://HOST/NAME`.
    fn copy(&self, layout: &Path, tag: &str, name: &str, extra: &[&str]) {
        let st = Command::new("skopeo")
            .args(["copy", "-q", "--dest-tls-verify=false"])
            .args(extra)
            .arg(format!("oci:{}:{tag}", layout.display()))
            .arg(format!("docker://{}/{name}", self.host()))
            .status()
            .unwrap();
        assert!(st.success(), "skopeo copy {tag} → {name}");
    }

    /// Push a blob with the distribution API (a monolithic upload).
    fn push_blob(&self, repo: &str, data: &[u8]) -> Digest {
        let d = Digest::of(data);
        let resp = ureq::post(&format!("http://{}/v2/{repo}/blobs/uploads/", self.host()))
            .send_empty()
            .unwrap();
        let loc = resp.headers()["location"].to_str().unwrap().to_owned();
        let loc = if loc.starts_with('/') {
            format!("http://{}{loc}", self.host())
        } else {
            loc
        };
        let sep = if loc.contains('?') { '&' } else { '?' };
        ureq::put(&format!("{loc}{sep}digest={d}"))
            .header("Content-Type", "application/octet-stream")
            .send(data)
            .unwrap();
        d
    }

    /// Push an OCI image of these layers (blob, media type, diff ID) as `repo:tag`.
    fn push_image(&self, repo: &str, tag: &str, layers: &[(Vec<u8>, &str, Digest)]) {
        let config = config_json(arch(), None, layers.iter().map(|l| &l.2));
        let config_d = self.push_blob(repo, &config);
        let mut descs = Vec::new();
        for (blob, mt, _) in layers {
            let d = self.push_blob(repo, blob);
            descs.push(json!({"mediaType": mt, "digest": d.to_string(), "size": blob.len()}));
        }
        let m = manifest_json(&config_d, config.len(), descs);
        ureq::put(&format!("http://{}/v2/{repo}/manifests/{tag}", self.host()))
            .header("Content-Type", OCI_MANIFEST)
            .send(&m[..])
            .unwrap();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

// ---- images -------------------------------------------------------------------

/// A layer tar of the directory `root`.
fn tar_dir(root: &Path) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    b.follow_symlinks(false);
    b.append_dir_all(".", root).unwrap();
    b.into_inner().unwrap()
}

/// A layer tar of files (`name` → content).
fn tar_files(files: &[(&str, &str)]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (name, content) in files {
        let mut h = tar::Header::new_gnu();
        h.set_mode(0o644);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(0);
        h.set_size(content.len() as u64);
        h.set_cksum();
        b.append_data(&mut h, name, content.as_bytes()).unwrap();
    }
    b.into_inner().unwrap()
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(data).unwrap();
    gz.finish().unwrap()
}

/// A layer as a layout or registry holds it: blob, media type, diff ID.
fn gz_layer(tar: &[u8]) -> (Vec<u8>, &'static str, Digest) {
    (gzip(tar), GZIP, Digest::of(tar))
}

fn config_json<'a>(
    arch: &str,
    variant: Option<&str>,
    diff_ids: impl Iterator<Item = &'a Digest>,
) -> Vec<u8> {
    let mut c = json!({
        "created": "2024-01-01T00:00:00Z",
        "architecture": arch,
        "os": "linux",
        "config": {"Cmd": ["sh"]},
        "rootfs": {"type": "layers", "diff_ids": diff_ids.map(|d| d.to_string()).collect::<Vec<_>>()},
    });
    if let Some(v) = variant {
        c["variant"] = json!(v);
    }
    serde_json::to_vec(&c).unwrap()
}

fn manifest_json(config: &Digest, config_size: usize, layers: Vec<Value>) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": config.to_string(), "size": config_size},
        "layers": layers,
    }))
    .unwrap()
}

/// An OCI image layout being written.
struct Layout {
    dir: PathBuf,
    tags: Vec<Value>,
}

impl Layout {
    fn new(dir: PathBuf) -> Layout {
        fs::create_dir_all(dir.join("blobs/sha256")).unwrap();
        fs::write(dir.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
        Layout {
            dir,
            tags: Vec::new(),
        }
    }

    fn blob(&self, data: &[u8]) -> Digest {
        let d = Digest::of(data);
        fs::write(self.dir.join("blobs/sha256").join(d.hex()), data).unwrap();
        d
    }

    /// An image manifest's descriptor (with its platform).
    fn image(
        &self,
        arch: &str,
        variant: Option<&str>,
        layers: &[(Vec<u8>, &str, Digest)],
    ) -> Value {
        let config = config_json(arch, variant, layers.iter().map(|l| &l.2));
        let config_d = self.blob(&config);
        let descs = layers
            .iter()
            .map(|(blob, mt, _)| {
                json!({"mediaType": mt, "digest": self.blob(blob).to_string(), "size": blob.len()})
            })
            .collect();
        let m = manifest_json(&config_d, config.len(), descs);
        let mut platform = json!({"os": "linux", "architecture": arch});
        if let Some(v) = variant {
            platform["variant"] = json!(v);
        }
        json!({"mediaType": OCI_MANIFEST, "digest": self.blob(&m).to_string(),
               "size": m.len(), "platform": platform})
    }

    /// An image index's descriptor.
    fn index(&self, manifests: Vec<Value>) -> Value {
        let ix = serde_json::to_vec(
            &json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": manifests}),
        )
        .unwrap();
        json!({"mediaType": OCI_INDEX, "digest": self.blob(&ix).to_string(), "size": ix.len()})
    }

    /// Name `desc` `tag` in index.json.
    fn tag(&mut self, mut desc: Value, tag: &str) {
        desc["annotations"] = json!({"org.opencontainers.image.ref.name": tag});
        self.tags.push(desc);
        let ix = json!({"schemaVersion": 2, "manifests": self.tags});
        fs::write(
            self.dir.join("index.json"),
            serde_json::to_vec(&ix).unwrap(),
        )
        .unwrap();
    }
}

fn digest_of(desc: &Value) -> Digest {
    desc["digest"].as_str().unwrap().parse().unwrap()
}

// ---- the world of one test ------------------------------------------------------

/// A tempdir with a registry, a busybox layer, an OCI layout and a store.
struct World {
    registry: Registry,
    store: Store,
    layout: Layout,
    busybox: (Vec<u8>, &'static str, Digest),
    // Last: removed after the registry is killed.
    dir: tempfile::TempDir,
}

fn have(tool: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// The world, or `None` (the test is skipped, with a note) without root or tools.
fn world(test: &str, htpasswd: bool) -> Option<World> {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("skipping {test}: unpacking layers (device nodes, ownership) needs root");
        return None;
    }
    let mut tools = vec!["docker-registry", "skopeo"];
    if htpasswd {
        tools.push("htpasswd");
    }
    if let Some(t) = tools.iter().find(|t| !have(t)) {
        eprintln!("skipping {test}: no {t} (apt-get install docker-registry skopeo apache2-utils)");
        return None;
    }
    let dir = tempfile::Builder::new()
        .prefix("onggi-pull-t-")
        .tempdir()
        .unwrap();
    let bundle = dir.path().join("bundle");
    let st = Command::new("bash")
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../scripts/mkbundle.sh"
        ))
        .arg(&bundle)
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(st.success(), "mkbundle.sh");
    let busybox = gz_layer(&tar_dir(&bundle.join("rootfs")));
    let htpasswd = htpasswd.then(|| {
        let out = Command::new("htpasswd")
            .args(["-Bbn", "alice", "s3cret"])
            .output()
            .unwrap();
        let p = dir.path().join("htpasswd");
        fs::write(&p, out.stdout).unwrap();
        p
    });
    Some(World {
        registry: Registry::start(dir.path(), htpasswd.as_deref()),
        store: Store::open(&dir.path().join("store")).unwrap(),
        layout: Layout::new(dir.path().join("layout")),
        busybox,
        dir,
    })
}

impl World {
    /// busybox as a one-layer image for this machine, tagged `tag` in the layout.
    fn busybox_image(&mut self, tag: &str) -> Value {
        let desc = self
            .layout
            .image(arch(), None, std::slice::from_ref(&self.busybox));
        self.layout.tag(desc.clone(), tag);
        desc
    }

    /// busybox pushed as `busybox:v1` (skopeo `extra` arguments); its reference.
    fn push_busybox(&mut self, extra: &[&str]) -> Reference {
        self.busybox_image("v1");
        self.copy("v1", "busybox:v1", extra);
        self.registry.reference("busybox:v1")
    }

    fn copy(&self, tag: &str, name: &str, extra: &[&str]) {
        self.registry.copy(&self.layout.dir, tag, name, extra);
    }

    fn files_in_ingest(&self) -> Vec<String> {
        fs::read_dir(self.store.root().join("ingest"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect()
    }
}

fn opts() -> PullOptions {
    PullOptions {
        docker_config: None,
        ..PullOptions::default()
    }
}

/// Pull with the test options, no progress wanted.
fn quiet_pull(store: &Store, r: &Reference) -> Result<Image, Error> {
    pull(store, r, &opts(), &Count::default())
}

/// The content of `path` in the topmost layer of `image` that has it.
fn file_in(store: &Store, image: &Image, path: &str) -> Option<String> {
    image.layers.iter().rev().find_map(|l| {
        let data = fs::read(store.layer_path(&l.diff_id).join(path)).ok()?;
        Some(String::from_utf8_lossy(&data).into_owned())
    })
}

/// Progress that counts: downloads started (with their offsets), bytes, and
/// how each layer ended; and how many downloads ran at once at most.
#[derive(Default)]
struct Count {
    starts: Mutex<Vec<(Digest, u64, u64)>>,
    bytes: AtomicU64,
    done: Mutex<Vec<(Digest, Done)>>,
    active: AtomicUsize,
    max_active: AtomicUsize,
}

impl Progress for Count {
    fn start(&self, layer: &Digest, total: u64, from: u64) {
        self.starts
            .lock()
            .unwrap()
            .push((layer.clone(), total, from));
        let now = self.active.fetch_add(1, Ordering::SeqCst) + 1;
        self.max_active.fetch_max(now, Ordering::SeqCst);
        thread::sleep(Duration::from_millis(20));
    }
    fn advance(&self, _: &Digest, bytes: u64) {
        self.bytes.fetch_add(bytes, Ordering::SeqCst);
    }
    fn done(&self, layer: &Digest, how: Done) {
        if how == Done::Downloaded {
            self.active.fetch_sub(1, Ordering::SeqCst);
        }
        self.done.lock().unwrap().push((layer.clone(), how));
    }
}

impl Count {
    fn starts(&self) -> Vec<(Digest, u64, u64)> {
        self.starts.lock().unwrap().clone()
    }
    fn done(&self) -> Vec<Done> {
        self.done.lock().unwrap().iter().map(|d| d.1).collect()
    }
}

// ---- tests ----------------------------------------------------------------------

#[test]
fn pull_by_tag_and_digest_and_a_second_pull_downloads_nothing() {
    let Some(mut w) = world("pull_by_tag_and_digest", false) else {
        return;
    };
    let t0 = Instant::now();
    let desc = w.busybox_image("v1");
    w.copy("v1", "busybox:v1", &[]);
    w.copy("v1", "busybox:schema2", &["--format", "v2s2"]);
    let copied = t0.elapsed();

    let t1 = Instant::now();
    let count = Count::default();
    let r = w.registry.reference("busybox:v1");
    let image = pull(&w.store, &r, &opts(), &count).unwrap();
    let first = t1.elapsed();
    assert_eq!(
        image.manifest,
        digest_of(&desc),
        "the OCI manifest as pushed"
    );
    assert_eq!(count.starts().len(), 1);
    assert_eq!(count.bytes.load(Ordering::SeqCst), w.busybox.0.len() as u64);
    assert_eq!(count.done(), [Done::Downloaded]);
    assert!(file_in(&w.store, &image, "etc/hostname").is_some());
    assert_eq!(w.store.resolve(&r.to_string()).unwrap().id, image.id);
    assert_eq!(w.registry.blob_gets(), 2, "config and layer");
    assert!(w.files_in_ingest().is_empty());

    // Again by tag: the manifest is asked for, no blob.
    let again = Count::default();
    let t2 = Instant::now();
    let img = pull(&w.store, &r, &opts(), &again).unwrap();
    assert_eq!(
        (&img.id, &img.manifest, &img.layers),
        (&image.id, &image.manifest, &image.layers)
    );
    let second = t2.elapsed();
    assert!(again.starts().is_empty());
    assert_eq!(again.done(), [Done::AlreadyPresent]);
    assert_eq!(w.registry.blob_gets(), 2);

    // By digest: the manifest is in the store, so nothing at all is asked.
    let before = w.registry.requests();
    let by_digest = w.registry.reference(&format!("busybox@{}", image.manifest));
    let img = quiet_pull(&w.store, &by_digest).unwrap();
    assert_eq!((img.id, w.registry.requests()), (image.id.clone(), before));
    assert_eq!(
        w.store.resolve(&by_digest.to_string()).unwrap().id,
        image.id
    );

    // Docker schema 2 (skopeo converted it): same config and layer, other manifest.
    let s2 = quiet_pull(&w.store, &w.registry.reference("busybox:schema2")).unwrap();
    assert_eq!(s2.id, image.id);
    assert_ne!(s2.manifest, image.manifest);
    assert_eq!(w.registry.blob_gets(), 2, "nothing new to download");

    // By digest into a fresh store: the manifest's digest is checked.
    let fresh = Store::open(&w.dir.path().join("store2")).unwrap();
    let img = quiet_pull(&fresh, &by_digest).unwrap();
    assert_eq!(img.manifest, image.manifest);
    eprintln!("timings: skopeo copies {copied:?}, first pull {first:?}, second pull {second:?}");
}

#[test]
fn an_index_resolves_to_this_platform_and_others_are_refused() {
    let Some(mut w) = world("an_index_resolves", false) else {
        return;
    };
    let other = if arch() == "amd64" { "arm64" } else { "amd64" };
    let marker = |a: &str| gz_layer(&tar_files(&[("etc/arch", a)]));
    let here = w
        .layout
        .image(arch(), None, &[w.busybox.clone(), marker(arch())]);
    let there = w.layout.image(other, Some("v8"), &[marker(other)]);
    let index = w.layout.index(vec![there.clone(), here.clone()]);
    w.layout.tag(index, "multi");
    w.copy("multi", "multi:v1", &["--all"]);

    let image = quiet_pull(&w.store, &w.registry.reference("multi:v1")).unwrap();
    assert_eq!(image.manifest, digest_of(&here));
    assert_eq!(
        file_in(&w.store, &image, "etc/arch").as_deref(),
        Some(arch())
    );

    // A platform the index does not have: the error names what it has.
    let s390 = PullOptions {
        platform: Platform {
            os: "linux".into(),
            architecture: "s390x".into(),
            variant: None,
        },
        ..opts()
    };
    let e = pull(
        &w.store,
        &w.registry.reference("multi:v1"),
        &s390,
        &Count::default(),
    )
    .unwrap_err();
    assert!(matches!(e, Error::NoPlatform { .. }), "{e}");
    let msg = e.to_string();
    assert!(
        msg.contains("linux/s390x")
            && msg.contains(&format!("linux/{other}/v8"))
            && msg.contains(&format!("linux/{}", arch())),
        "{msg}"
    );

    // The other platform's manifest by digest: refused, naming its platform.
    let r = w
        .registry
        .reference(&format!("multi@{}", digest_of(&there)));
    let e = quiet_pull(&w.store, &r).unwrap_err();
    assert!(matches!(e, Error::NoPlatform { .. }), "{e}");
    assert!(
        e.to_string().contains(&format!("it has: linux/{other}/v8")),
        "{e}"
    );
    assert!(w.store.resolve(&r.to_string()).is_err());
}

#[test]
fn zstd_and_uncompressed_layers_and_at_most_n_downloads_at_once() {
    let Some(mut w) = world("zstd_and_uncompressed", false) else {
        return;
    };
    // zstd: skopeo recompresses (into a registry that has no gzip copy yet).
    w.busybox_image("v1");
    w.copy("v1", "zstd:v1", &["--dest-compress-format", "zstd"]);
    let image = quiet_pull(&w.store, &w.registry.reference("zstd:v1")).unwrap();
    assert_eq!(
        image.layers[0].media_type,
        "application/vnd.oci.image.layer.v1.tar+zstd"
    );
    assert!(file_in(&w.store, &image, "bin/busybox").is_some());

    // Uncompressed layers (pushed with the API: skopeo compresses for registries),
    // over a gzip one, five layers, two at a time.
    let mut layers = vec![w.busybox.clone()];
    for i in 0..4 {
        let t = tar_files(&[(&format!("etc/layer{i}"), &"x".repeat(100_000 + i))]);
        let d = Digest::of(&t);
        layers.push((t, PLAIN, d));
    }
    w.registry.push_image("plain", "v1", &layers);
    let count = Count::default();
    let two = PullOptions {
        parallel: 2,
        ..opts()
    };
    let image = pull(&w.store, &w.registry.reference("plain:v1"), &two, &count).unwrap();
    assert_eq!(image.layers.len(), 5);
    assert_eq!(image.layers[1].media_type, PLAIN);
    assert_eq!(
        file_in(&w.store, &image, "etc/layer3").unwrap().len(),
        100_003
    );
    let max = count.max_active.load(Ordering::SeqCst);
    assert!((1..=2).contains(&max), "{max} downloads at once");
    // The gzip busybox blob is not the zstd one: all five are downloaded.
    assert_eq!(count.starts().len(), 5);
}

/// The exit status of a child that died half-way through a pull.
const DIED: i32 = 86;

/// Progress that ends the process, running no destructor and flushing no
/// buffer (as a kill would), once `.0` bytes arrived.
struct DieAfter(u64, AtomicU64);

impl Progress for DieAfter {
    fn start(&self, _: &Digest, _: u64, _: u64) {}
    fn advance(&self, _: &Digest, bytes: u64) {
        if self.1.fetch_add(bytes, Ordering::SeqCst) + bytes >= self.0 {
            std::process::exit(DIED);
        }
    }
    fn done(&self, _: &Digest, _: Done) {}
}

#[test]
fn a_killed_pull_resumes_with_a_range_request() {
    // In the child: pull, and die half-way.
    if let Ok(spec) = std::env::var("ONGGI_PULL_TEST_CHILD") {
        let (root, r) = spec.split_once(' ').unwrap();
        let store = Store::open(Path::new(root)).unwrap();
        let _ = pull(
            &store,
            &r.parse().unwrap(),
            &opts(),
            &DieAfter(600_000, AtomicU64::new(0)),
        );
        panic!("the pull should have aborted");
    }
    let Some(mut w) = world("a_killed_pull_resumes", false) else {
        return;
    };
    let r = w.push_busybox(&[]);
    let st = Command::new(std::env::current_exe().unwrap())
        .args([
            "a_killed_pull_resumes_with_a_range_request",
            "--exact",
            "--nocapture",
        ])
        .env(
            "ONGGI_PULL_TEST_CHILD",
            format!("{} {r}", w.store.root().display()),
        )
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert_eq!(st.code(), Some(DIED), "the child died half-way");
    let layer = &w.busybox;
    let blob = Digest::of(&layer.0);
    let partial = w.store.partial_path(&blob);
    let had = fs::metadata(&partial).expect("a partial download").len();
    assert!(had > 0 && had < layer.0.len() as u64, "{had}");
    assert!(!w.store.has_blob(&blob));

    let count = Count::default();
    let image = pull(&w.store, &r, &opts(), &count).unwrap();
    let total = layer.0.len() as u64;
    assert_eq!(
        count.starts(),
        [(blob.clone(), total, had)],
        "resumed at {had}"
    );
    assert_eq!(count.bytes.load(Ordering::SeqCst), total - had);
    assert!(w.store.has_blob(&blob) && !partial.exists());
    assert_eq!(image.layers[0].digest, blob);

    // A planted partial whose bytes are wrong: found out, discarded, downloaded again.
    let fresh = Store::open(&w.dir.path().join("store2")).unwrap();
    fs::write(fresh.partial_path(&blob), vec![0u8; 1000]).unwrap();
    let count = Count::default();
    pull(&fresh, &r, &opts(), &count).unwrap();
    let starts: Vec<u64> = count.starts().iter().map(|s| s.2).collect();
    assert_eq!(starts, [1000, 0]);
    assert!(fresh.has_blob(&blob) && !fresh.partial_path(&blob).exists());
}

#[test]
fn a_corrupted_blob_is_a_digest_mismatch_and_nothing_is_kept() {
    let Some(mut w) = world("a_corrupted_blob", false) else {
        return;
    };
    let r = w.push_busybox(&[]);
    let blob = Digest::of(&w.busybox.0);
    let data = w.registry.blob_file(&blob);
    let mut bytes = fs::read(&data).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xff;
    fs::write(&data, bytes).unwrap();

    let e = quiet_pull(&w.store, &r).unwrap_err();
    assert!(matches!(e, Error::DigestMismatch { .. }), "{e}");
    let msg = e.to_string();
    assert!(
        msg.contains(&blob.to_string()) && msg.contains("busybox"),
        "{msg}"
    );
    assert!(!w.store.has_blob(&blob));
    assert!(w.files_in_ingest().is_empty(), "{:?}", w.files_in_ingest());
    assert!(!w.store.layer_path(&w.busybox.2).exists());
    assert!(w.store.images().unwrap().is_empty());
}

#[test]
fn unknown_tags_and_repositories_are_404s_naming_them() {
    let Some(mut w) = world("unknown_tags", false) else {
        return;
    };
    w.push_busybox(&[]);
    for name in ["busybox:nope", "nothere:v1"] {
        let e = quiet_pull(&w.store, &w.registry.reference(name)).unwrap_err();
        let Error::Registry { status, .. } = &e else {
            panic!("{name}: {e}");
        };
        assert_eq!(*status, 404);
        let (repo, tag) = name.split_once(':').unwrap();
        let msg = e.to_string();
        assert!(
            msg.contains(&w.registry.host()) && msg.contains(&format!("{repo}:{tag}")),
            "{msg}"
        );
        assert!(
            msg.contains("MANIFEST_UNKNOWN") || msg.contains("NAME_UNKNOWN"),
            "{msg}"
        );
    }
    // Nobody listening: the error names the registry and the request.
    let closed = format!("127.0.0.1:{}/busybox:v1", free_port());
    let e = quiet_pull(&w.store, &closed.parse().unwrap()).unwrap_err();
    assert!(matches!(e, Error::Http { .. }), "{e}");
    assert!(e.to_string().contains("GET http://127.0.0.1:"), "{e}");
    assert!(w.store.images().unwrap().is_empty());
}

#[test]
fn a_registry_with_htpasswd_needs_login_and_then_pulls() {
    let Some(mut w) = world("a_registry_with_htpasswd", true) else {
        return;
    };
    let r = w.push_busybox(&["--dest-creds", "alice:s3cret"]);
    let host = w.registry.host();

    let e = quiet_pull(&w.store, &r).unwrap_err();
    let msg = e.to_string();
    assert!(matches!(e, Error::Registry { status: 401, .. }), "{msg}");
    assert!(
        msg.contains(&host) && msg.contains("busybox:v1") && msg.contains("log in"),
        "{msg}"
    );

    let e = login(w.store.root(), &host, "alice", "wrong", &opts()).unwrap_err();
    assert!(matches!(e, Error::Registry { status: 401, .. }), "{e}");
    assert!(e.to_string().contains("\"alice\" refused"), "{e}");
    assert!(!w.store.root().join("auth.json").exists());

    login(w.store.root(), &host, "alice", "s3cret", &opts()).unwrap();
    let image = quiet_pull(&w.store, &r).unwrap();
    assert!(file_in(&w.store, &image, "bin/busybox").is_some());

    // Credentials from Docker's config.json (DOCKER_CONFIG) work too.
    let docker = w.dir.path().join("docker");
    fs::create_dir(&docker).unwrap();
    let auth = base64_of("alice:s3cret");
    fs::write(
        docker.join("config.json"),
        json!({"auths": {format!("http://{host}"): {"auth": auth}}}).to_string(),
    )
    .unwrap();
    let fresh = Store::open(&w.dir.path().join("store2")).unwrap();
    let with_docker = PullOptions {
        docker_config: Some(docker),
        ..opts()
    };
    pull(&fresh, &r, &with_docker, &Count::default()).unwrap();
}

fn base64_of(s: &str) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(s)
}

// ---- a fake registry with a bearer token server --------------------------------

/// A one-image registry in a thread on 127.0.0.1: `/token` hands out a token to
/// alice (basic auth); the API wants `Bearer <token>`; `broken` answers 500.
struct Fake {
    port: u16,
    stop: Arc<AtomicBool>,
    thread: Option<thread::JoinHandle<()>>,
}

impl Drop for Fake {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(("127.0.0.1", self.port));
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

const TOKEN: &str = "tok-7f3a";

impl Fake {
    fn start(blobs: Vec<Vec<u8>>, manifest: Vec<u8>) -> Fake {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let stop = Arc::new(AtomicBool::new(false));
        let stop2 = stop.clone();
        let thread = thread::spawn(move || {
            for conn in listener.incoming() {
                if stop2.load(Ordering::SeqCst) {
                    return;
                }
                if let Ok(c) = conn {
                    let _ = serve(c, port, &blobs, &manifest);
                }
            }
        });
        Fake {
            port,
            stop,
            thread: Some(thread),
        }
    }
}

/// One request, one answer, and the connection closed.
fn serve(conn: TcpStream, port: u16, blobs: &[Vec<u8>], manifest: &[u8]) -> std::io::Result<()> {
    conn.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut reader = BufReader::new(conn.try_clone()?);
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let path = line.split(' ').nth(1).unwrap_or("").to_owned();
    let mut authorization = String::new();
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h)? == 0 || h.trim().is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            if k.eq_ignore_ascii_case("authorization") {
                authorization = v.trim().to_owned();
            }
        }
    }
    let alice = format!("Basic {}", base64_of("alice:pw"));
    let (status, extra, body): (&str, String, Vec<u8>) = if path.starts_with("/token") {
        if authorization == alice {
            (
                "200 OK",
                String::new(),
                format!(r#"{{"token":"{TOKEN}"}}"#).into_bytes(),
            )
        } else {
            ("401 Unauthorized", String::new(), b"{}".to_vec())
        }
    } else if authorization != format!("Bearer {TOKEN}") {
        // As Docker Hub: no scope in the challenge of /v2/.
        let scope = match path.as_str() {
            "/v2/" => String::new(),
            _ => ",scope=\"repository:app:pull\"".to_owned(),
        };
        let challenge = format!(
            "WWW-Authenticate: Bearer realm=\"http://127.0.0.1:{port}/token\",service=\"fake\"{scope}\r\n"
        );
        (
            "401 Unauthorized",
            challenge,
            br#"{"errors":[{"code":"UNAUTHORIZED","message":"token needed"}]}"#.to_vec(),
        )
    } else if path.starts_with("/v2/broken/") {
        ("500 Internal Server Error", String::new(), b"oops".to_vec())
    } else if path == "/v2/" {
        ("200 OK", String::new(), b"{}".to_vec())
    } else if path == "/v2/app/manifests/v1" {
        (
            "200 OK",
            format!("Content-Type: {OCI_MANIFEST}\r\n"),
            manifest.to_vec(),
        )
    } else if let Some(b) = blobs
        .iter()
        .find(|b| path == format!("/v2/app/blobs/{}", Digest::of(b)))
    {
        ("200 OK", String::new(), b.clone())
    } else {
        ("404 Not Found", String::new(), b"{}".to_vec())
    };
    let mut conn = conn;
    write!(
        conn,
        "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n{extra}\r\n",
        body.len()
    )?;
    conn.write_all(&body)?;
    conn.shutdown(std::net::Shutdown::Both)
}

#[test]
fn the_bearer_token_flow_and_a_500_against_a_fake_registry() {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("skipping the_bearer_token_flow: unpacking layers needs root");
        return;
    }
    let tar = tar_files(&[("hello", "world")]);
    let layer = gzip(&tar);
    let config = config_json(arch(), None, [Digest::of(&tar)].iter());
    let m = manifest_json(
        &Digest::of(&config),
        config.len(),
        vec![
            json!({"mediaType": GZIP, "digest": Digest::of(&layer).to_string(), "size": layer.len()}),
        ],
    );
    let fake = Fake::start(vec![config, layer], m);
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let host = format!("127.0.0.1:{}", fake.port);
    let r: Reference = format!("{host}/app:v1").parse().unwrap();

    // Anonymous: the token server says no.
    let e = quiet_pull(&store, &r).unwrap_err();
    assert!(matches!(e, Error::Registry { status: 401, .. }), "{e}");
    assert!(
        e.to_string().contains(&host) && e.to_string().contains("log in"),
        "{e}"
    );

    let e = login(store.root(), &host, "alice", "wrong", &opts()).unwrap_err();
    assert!(matches!(e, Error::Registry { status: 401, .. }), "{e}");
    login(store.root(), &host, "alice", "pw", &opts()).unwrap();
    let image = quiet_pull(&store, &r).unwrap();
    assert_eq!(
        fs::read_to_string(store.layer_path(&image.layers[0].diff_id).join("hello")).unwrap(),
        "world"
    );

    let broken: Reference = format!("{host}/broken:v1").parse().unwrap();
    let e = quiet_pull(&store, &broken).unwrap_err();
    assert!(matches!(e, Error::Registry { status: 500, .. }), "{e}");
    assert!(
        e.to_string()
            .contains(&format!("{host}: manifest broken:v1")),
        "{e}"
    );
}
