//! `load` and `save` against the real clients (root only: unpacking makes whiteout
//! devices and keeps owners): what podman and skopeo write we load, what we save
//! podman loads, and our own save → load keeps the image id. Hand-made archives
//! cover whiteouts and the bad inputs. podman runs on private storage in each
//! test's tempdir, with no network, and is reset when the test ends.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::process::Command;

use onggi_image::archive::{self, Loaded, SaveFormat};
use onggi_image::{import, Digest, Store};
use serde_json::json;

/// A tempdir holding stores, archives and podman's private storage, reset and
/// unmounted on drop (also when the test fails).
struct World {
    dir: tempfile::TempDir,
}

impl World {
    fn new(test: &str) -> Option<World> {
        if !nix::unistd::geteuid().is_root() {
            eprintln!("skipping {test}: unpacking layers makes whiteout devices and needs root");
            return None;
        }
        let dir = tempfile::Builder::new()
            .prefix("onggi-archive-t-")
            .tempdir()
            .unwrap();
        fs::create_dir(dir.path().join("tmp")).unwrap();
        Some(World { dir })
    }

    fn path(&self, p: &str) -> PathBuf {
        self.dir.path().join(p)
    }

    /// A new, empty store.
    fn store(&self, name: &str) -> Store {
        Store::open(&self.path(name)).unwrap()
    }

    /// The busybox root filesystem of scripts/mkbundle.sh (in `bundle/rootfs`), as a tar.
    fn busybox_tar(&self) -> PathBuf {
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../../scripts/mkbundle.sh");
        run(Command::new("bash").arg(script).arg(self.path("bundle")));
        self.rootfs_tar("busybox.tar")
    }

    /// `bundle/rootfs` as it is now, in the tar `name`.
    fn rootfs_tar(&self, name: &str) -> PathBuf {
        let tar = self.path(name);
        let rootfs = self.path("bundle/rootfs");
        run(Command::new("tar")
            .arg("-C")
            .arg(rootfs)
            .arg("-cf")
            .arg(&tar)
            .arg("."));
        tar
    }

    /// podman on this world's private storage; returns its stdout.
    fn podman(&self, args: &[&str]) -> String {
        let t = self.dir.path();
        let mut c = Command::new("podman");
        c.arg("--root")
            .arg(t.join("storage"))
            .arg("--runroot")
            .arg(t.join("run"))
            .arg("--tmpdir")
            .arg(t.join("tmp"))
            .args(["--storage-driver", "vfs", "--events-backend", "none"])
            .env("TMPDIR", t.join("tmp"))
            .args(args);
        run(&mut c)
    }

    fn skopeo(&self, src: &str, dest: &str) {
        run(Command::new("skopeo")
            .env("TMPDIR", self.path("tmp"))
            .args(["--insecure-policy", "copy", "-q", src, dest]));
    }

    /// skopeo's name for this world's podman storage.
    fn containers_storage(&self, image: &str) -> String {
        let t = self.dir.path().display();
        format!("containers-storage:[vfs@{t}/storage+{t}/run]{image}")
    }
}

impl Drop for World {
    fn drop(&mut self) {
        let t = self.dir.path();
        if t.join("storage").exists() {
            let _ = Command::new("podman")
                .arg("--root")
                .arg(t.join("storage"))
                .arg("--runroot")
                .arg(t.join("run"))
                .args(["--storage-driver", "vfs", "system", "reset", "-f"])
                .output();
        }
        let t = t.display().to_string();
        let script =
            format!("grep -o '{t}[^ ]*' /proc/self/mountinfo | sort -r | xargs -r -n1 umount -l");
        let _ = Command::new("sh").arg("-c").arg(script).status();
    }
}

/// Run `c`; panic with its stderr when it fails. Returns its stdout.
fn run(c: &mut Command) -> String {
    let out = c.output().unwrap_or_else(|e| panic!("{c:?}: {e}"));
    assert!(
        out.status.success(),
        "{c:?}: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn names(l: &Loaded) -> Vec<String> {
    let mut v: Vec<String> = l.names.iter().map(|n| n.to_string()).collect();
    v.sort();
    v
}

fn diff_ids(l: &Loaded) -> Vec<Digest> {
    l.image.layers.iter().map(|l| l.diff_id.clone()).collect()
}

/// Load `path` into a new store: one image named `want`, busybox in its one layer.
fn load_busybox(w: &World, path: &Path, store: &str, want: &[&str]) -> Loaded {
    let s = w.store(store);
    let loaded = archive::load(&s, path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert_eq!(loaded.len(), 1, "{}", path.display());
    let l = loaded.into_iter().next().unwrap();
    assert_eq!(names(&l), want, "{}", path.display());
    assert_eq!(l.image.layers.len(), 1);
    let busybox = s.layer_path(&l.image.layers[0].diff_id).join("bin/busybox");
    assert!(busybox.is_file(), "{} not unpacked", busybox.display());
    assert_eq!(s.resolve(want[0]).unwrap().id, l.image.id);
    l
}

#[test]
fn what_podman_and_skopeo_write_loads() {
    let Some(w) = World::new("what_podman_and_skopeo_write_loads") else {
        return;
    };
    let tar = w.busybox_tar();
    w.podman(&["import", "-q", tar.to_str().unwrap(), "localhost/bb:v1"]);
    let p = |n: &str| w.path(n).display().to_string();
    w.podman(&["save", "-o", &p("docker.tar"), "localhost/bb:v1"]);
    w.podman(&[
        "save",
        "--format",
        "oci-archive",
        "-o",
        &p("oci.tar"),
        "localhost/bb:v1",
    ]);
    w.podman(&[
        "save",
        "--format",
        "oci-dir",
        "-o",
        &p("oci-dir"),
        "localhost/bb:v1",
    ]);
    w.skopeo(
        &w.containers_storage("localhost/bb:v1"),
        &format!("oci:{}:v1", p("layout")),
    );
    w.skopeo(
        &format!("docker-archive:{}", p("docker.tar")),
        &format!("oci-archive:{}:bb:v2", p("sk.tar")),
    );

    let full = ["docker.io/library/bb:v2"];
    let cases: [(&str, &[&str]); 5] = [
        ("docker.tar", &["localhost/bb:v1"]),
        ("oci.tar", &["localhost/bb:v1"]),
        ("oci-dir", &["localhost/bb:v1"]),
        // skopeo's oci: names only the tag; it reads as any name typed would.
        ("layout", &["docker.io/library/v1:latest"]),
        // skopeo compresses the layer (gzip): another blob, the same diff ID.
        ("sk.tar", &full),
    ];
    let mut seen = Vec::new();
    for (i, (file, want)) in cases.iter().enumerate() {
        let l = load_busybox(&w, &w.path(file), &format!("s{i}"), want);
        seen.push((file, l.image.id.clone(), diff_ids(&l)));
    }
    for (file, id, d) in &seen {
        assert_eq!((id, d), (&seen[0].1, &seen[0].2), "{file} vs docker.tar");
    }
    // A docker-archive through a pipe (gzip-compressed, as `docker save | gzip`).
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&fs::read(w.path("docker.tar")).unwrap())
        .unwrap();
    let gz = gz.finish().unwrap();
    let s = w.store("piped");
    let loaded = archive::load_reader(&s, &mut &gz[..], "stdin").unwrap();
    assert_eq!(diff_ids(&loaded[0]), seen[0].2);
    assert_eq!(fs::read_dir(s.root().join("ingest")).unwrap().count(), 0);
}

#[test]
fn a_multi_image_docker_archive_loads_every_image_and_tag() {
    let Some(w) = World::new("a_multi_image_docker_archive_loads_every_image_and_tag") else {
        return;
    };
    let tar = w.busybox_tar();
    let tar = tar.to_str().unwrap();
    w.podman(&["import", "-q", tar, "localhost/bb:v1"]);
    w.podman(&[
        "tag",
        "localhost/bb:v1",
        "localhost/bb:v2",
        "docker.io/library/bbx:latest",
    ]);
    // A second image: one more file.
    fs::write(w.path("bundle/rootfs/etc/motd"), "two\n").unwrap();
    let tar2 = w.rootfs_tar("two.tar");
    w.podman(&[
        "import",
        "-q",
        tar2.to_str().unwrap(),
        "localhost/two:latest",
    ]);
    let out = w.path("multi.tar").display().to_string();
    let images = [
        "localhost/bb:v1",
        "localhost/bb:v2",
        "bbx",
        "localhost/two:latest",
    ];
    w.podman(&[&["save", "-m", "-o", &out][..], &images].concat());

    let s = w.store("s");
    let mut loaded = archive::load(&s, Path::new(&out)).unwrap();
    loaded.sort_by_key(|l| l.names.len());
    let got: Vec<Vec<String>> = loaded.iter().map(names).collect();
    assert_eq!(
        got,
        [
            vec!["localhost/two:latest"],
            vec![
                "docker.io/library/bbx:latest",
                "localhost/bb:v1",
                "localhost/bb:v2"
            ],
        ]
    );
    let two = s.layer_path(&loaded[0].image.layers[0].diff_id);
    assert_eq!(fs::read_to_string(two.join("etc/motd")).unwrap(), "two\n");
    assert_eq!(s.images().unwrap().len(), 2);
}

// ---- hand-made archives ----

fn header(kind: tar::EntryType, mode: u32, size: usize) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(kind);
    h.set_mode(mode);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(0);
    h.set_size(size as u64);
    h.set_cksum();
    h
}

/// A layer tar: directories (`name/`), symlinks (`name -> target`), files.
fn layer_tar(entries: &[(&str, &str)]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (name, content) in entries {
        if let Some(dir) = name.strip_suffix('/') {
            let mut h = header(tar::EntryType::Directory, 0o755, 0);
            b.append_data(&mut h, dir, &[][..]).unwrap();
        } else if let Some(link) = name.strip_suffix(" ->") {
            let mut h = header(tar::EntryType::Symlink, 0o777, 0);
            b.append_link(&mut h, link, content).unwrap();
        } else {
            let mut h = header(tar::EntryType::Regular, 0o644, content.len());
            b.append_data(&mut h, name, content.as_bytes()).unwrap();
        }
    }
    b.into_inner().unwrap()
}

fn sha(data: &[u8]) -> String {
    Digest::of(data).to_string()
}

fn config_of(layers: &[Vec<u8>]) -> Vec<u8> {
    let diff_ids: Vec<String> = layers.iter().map(|l| sha(l)).collect();
    serde_json::to_vec(&json!({
        "architecture": import::arch(), "os": "linux",
        "rootfs": { "type": "layers", "diff_ids": diff_ids },
    }))
    .unwrap()
}

/// An OCI image layout at `dir` of one image of these (uncompressed) layer tars.
/// Returns the manifest.json a docker ≥ 25 would write beside it.
fn oci_layout(dir: &Path, layers: &[Vec<u8>], name: &str) -> String {
    let blobs = dir.join("blobs/sha256");
    fs::create_dir_all(&blobs).unwrap();
    let put = |data: &[u8], media: &str| {
        let d = Digest::of(data);
        fs::write(blobs.join(d.hex()), data).unwrap();
        json!({ "mediaType": media, "digest": d.to_string(), "size": data.len() })
    };
    let config = put(
        &config_of(layers),
        "application/vnd.oci.image.config.v1+json",
    );
    let layers: Vec<_> = layers
        .iter()
        .map(|l| put(l, "application/vnd.oci.image.layer.v1.tar"))
        .collect();
    let manifest = json!({ "schemaVersion": 2, "config": config, "layers": layers });
    let mut m = put(
        &serde_json::to_vec(&manifest).unwrap(),
        "application/vnd.oci.image.manifest.v1+json",
    );
    // Behind a nested index, as a multi-platform image is, beside another platform's
    // manifest (not there: it must not be read).
    m["platform"] = json!({ "os": "linux", "architecture": import::arch() });
    let mut other = m.clone();
    other["platform"]["architecture"] = json!("s390x");
    other["digest"] = json!(sha(b"not here"));
    let nested = json!({ "schemaVersion": 2, "manifests": [other, m] });
    let media = "application/vnd.oci.image.index.v1+json";
    let mut i = put(&serde_json::to_vec(&nested).unwrap(), media);
    i["annotations"] = json!({ "org.opencontainers.image.ref.name": name });
    let index = json!({ "schemaVersion": 2, "manifests": [i] });
    fs::write(dir.join("index.json"), index.to_string()).unwrap();
    fs::write(dir.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
    let path =
        |d: &serde_json::Value| format!("blobs/sha256/{}", &d["digest"].as_str().unwrap()[7..]);
    let layers: Vec<String> = layers.iter().map(path).collect();
    json!([{ "Config": path(&config), "RepoTags": [name], "Layers": layers }]).to_string()
}

/// A docker-archive of one image of these layer tars, as podman writes one.
fn docker_archive(layers: &[Vec<u8>], tag: &str) -> Vec<u8> {
    let config = config_of(layers);
    let mut b = tar::Builder::new(Vec::new());
    let mut add = |name: &str, data: &[u8]| {
        let mut h = header(tar::EntryType::Regular, 0o644, data.len());
        b.append_data(&mut h, name, data).unwrap();
    };
    let config_name = format!("{}.json", Digest::of(&config).hex());
    add(&config_name, &config);
    let mut names = Vec::new();
    for l in layers {
        let name = format!("{}.tar", Digest::of(l).hex());
        add(&name, l);
        names.push(name);
    }
    let manifest = json!([{ "Config": config_name, "RepoTags": [tag], "Layers": names }]);
    add("manifest.json", manifest.to_string().as_bytes());
    b.into_inner().unwrap()
}

/// The directory `dir` packed in a tar (an oci-archive of a layout).
fn tar_of_dir(dir: &Path) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    b.append_dir_all(".", dir).unwrap();
    b.into_inner().unwrap()
}

#[test]
fn a_whiteout_loads_in_overlay_form() {
    let Some(w) = World::new("a_whiteout_loads_in_overlay_form") else {
        return;
    };
    let lower = layer_tar(&[("etc/", ""), ("etc/gone", "x"), ("etc/kept", "y")]);
    let upper = layer_tar(&[("etc/", ""), ("etc/.wh.gone", "")]);
    let layers = [lower.clone(), upper.clone()];
    let docker_manifest = oci_layout(&w.path("layout"), &layers, "localhost/wh:1");
    fs::write(w.path("layout.tar"), tar_of_dir(&w.path("layout"))).unwrap();
    // docker ≥ 25: the same layout, and a manifest.json naming its blobs.
    fs::write(w.path("layout/manifest.json"), docker_manifest).unwrap();
    fs::write(w.path("docker25.tar"), tar_of_dir(&w.path("layout"))).unwrap();
    fs::remove_file(w.path("layout/manifest.json")).unwrap();
    for (i, path) in ["layout", "layout.tar", "docker25.tar"].iter().enumerate() {
        let s = w.store(&format!("s{i}"));
        let loaded = archive::load(&s, &w.path(path)).unwrap();
        assert_eq!(names(&loaded[0]), ["localhost/wh:1"]);
        assert_eq!(
            diff_ids(&loaded[0]),
            [Digest::of(&lower), Digest::of(&upper)]
        );
        let gone = s.layer_path(&Digest::of(&upper)).join("etc/gone");
        let m = fs::symlink_metadata(&gone).unwrap();
        assert!(m.file_type().is_char_device(), "{path}: {m:?}");
        assert_eq!((m.rdev(), m.uid(), m.gid()), (0, 0, 0), "{path}");
        let kept = s.layer_path(&Digest::of(&lower)).join("etc/kept");
        assert_eq!(fs::read_to_string(kept).unwrap(), "y");
    }
}

#[test]
fn saved_archives_round_trip_through_podman_and_us() {
    let Some(w) = World::new("saved_archives_round_trip_through_podman_and_us") else {
        return;
    };
    let tar = w.busybox_tar();
    let s = w.store("s");
    // One image with a plain layer, one with a gzip layer (saved uncompressed, as docker does).
    let plain =
        import::import(&s, &mut fs::File::open(&tar).unwrap(), "busybox.tar", None).unwrap();
    s.tag(
        &plain.id.to_string(),
        &"localhost/plain:v1".parse().unwrap(),
    )
    .unwrap();
    let gz = w.path("extra.tar.gz");
    fs::write(w.path("bundle/rootfs/etc/extra"), "1").unwrap();
    let script = format!(
        "tar -C {}/bundle/rootfs -c . | gzip > {}",
        w.dir.path().display(),
        gz.display()
    );
    run(Command::new("sh").arg("-c").arg(script));
    let name = "localhost/gz:v2".parse().unwrap();
    let gzipped = import::import(
        &s,
        &mut fs::File::open(&gz).unwrap(),
        "extra.tar.gz",
        Some(&name),
    )
    .unwrap();
    assert!(gzipped.layers[0].media_type.ends_with("+gzip"));

    let both = ["localhost/plain:v1", "localhost/gz:v2"];
    for format in [SaveFormat::DockerArchive, SaveFormat::OciArchive] {
        // Ours, in a fresh store: the same image ids and names.
        let path = w.path(&format!("{format:?}.tar"));
        archive::save(&s, &both, &mut fs::File::create(&path).unwrap(), format).unwrap();
        let s2 = w.store(&format!("{format:?}.store"));
        let mut back = archive::load(&s2, &path).unwrap();
        back.sort_by_key(names);
        let ids: Vec<_> = back.iter().map(|l| l.image.id.clone()).collect();
        assert_eq!(ids, [gzipped.id.clone(), plain.id.clone()], "{format:?}");
        assert_eq!(names(&back[0]), ["localhost/gz:v2"], "{format:?}");
        assert!(s2
            .layer_path(&gzipped.layers[0].diff_id)
            .join("etc/extra")
            .is_file());
        if format == SaveFormat::OciArchive {
            // An OCI archive keeps the blobs as they are: the same manifest too.
            assert_eq!(back[0].image.manifest, gzipped.manifest);
        }
        // podman's. podman 4 loads an oci-archive of one image only.
        let one = ["localhost/gz:v2"];
        let for_podman = if format == SaveFormat::OciArchive {
            &one[..]
        } else {
            &both[..]
        };
        let path = w.path(&format!("{format:?}-podman.tar"));
        archive::save(
            &s,
            for_podman,
            &mut fs::File::create(&path).unwrap(),
            format,
        )
        .unwrap();
        w.podman(&["load", "-q", "-i", path.to_str().unwrap()]);
        let listed = w.podman(&["images", "--format", "{{.Repository}}:{{.Tag}} {{.ID}}"]);
        for (n, id) in [
            ("localhost/gz:v2", &gzipped.id),
            ("localhost/plain:v1", &plain.id),
        ] {
            let line = format!("{n} {}", id.short());
            assert_eq!(
                listed.contains(&line),
                for_podman.contains(&n),
                "{format:?}: {line} in {listed}"
            );
        }
        w.podman(&["rmi", "-a", "-f"]);
    }
    // By id: no name.
    let mut out = Vec::new();
    archive::save(&s, &[plain.id.short()], &mut out, SaveFormat::DockerArchive).unwrap();
    let back = archive::load_reader(&w.store("by-id"), &mut &out[..], "saved by id").unwrap();
    assert_eq!(
        (back[0].image.id.clone(), back[0].names.len()),
        (plain.id.clone(), 0)
    );
}

// ---- bad input ----

/// Load `path` into `s`: it must fail with a message holding every one of `want`,
/// and leave the image index as it was.
fn refused(s: &Store, path: &Path, want: &[&str]) {
    let before = s.images().unwrap();
    let e = match archive::load(s, path) {
        Ok(l) => panic!("{} loaded: {l:?}", path.display()),
        Err(e) => e.to_string(),
    };
    for w in want {
        assert!(e.contains(w), "{}: wanted {w:?} in: {e}", path.display());
    }
    assert_eq!(s.images().unwrap(), before, "{}", path.display());
}

#[test]
fn bad_archives_are_refused_naming_the_file() {
    let Some(w) = World::new("bad_archives_are_refused_naming_the_file") else {
        return;
    };
    let s = w.store("s");
    // Something loaded already: it must stay as it is.
    let good = layer_tar(&[("etc/", ""), ("etc/ok", "1")]);
    let ok = w.path("ok.tar");
    fs::write(&ok, docker_archive(&[good], "localhost/ok:1")).unwrap();
    archive::load(&s, &ok).unwrap();

    let file = |name: &str, data: &[u8]| {
        let p = w.path(name);
        fs::write(&p, data).unwrap();
        p
    };
    let text = file("text.tar", &b"this is a text file, not a tar\n".repeat(40));
    refused(&s, &text, &["text.tar", "not a tar archive"]);
    refused(
        &s,
        &file("empty.tar", b""),
        &["empty.tar", "neither a docker-archive"],
    );

    let mut b = tar::Builder::new(Vec::new());
    let json = br#"[{"Config": 12, "#;
    let mut h = header(tar::EntryType::Regular, 0o644, json.len());
    b.append_data(&mut h, "manifest.json", &json[..]).unwrap();
    let bad_json = file("bad-json.tar", &b.into_inner().unwrap());
    refused(
        &s,
        &bad_json,
        &["bad-json.tar: manifest.json", "does not parse"],
    );

    // A layer with one byte flipped, then cut short: its digest is not the diff ID.
    let layer = layer_tar(&[("etc/", ""), ("etc/data", &"z".repeat(3000))]);
    let mut archive = docker_archive(std::slice::from_ref(&layer), "localhost/bad:1");
    let at = find(&archive, b"zzzz");
    archive[at] = b'Z';
    let flipped = file("flipped.tar", &archive);
    let layer_name = format!("{}.tar", Digest::of(&layer).hex());
    refused(
        &s,
        &flipped,
        &["flipped.tar", &layer_name, "digest mismatch"],
    );

    // The same in an OCI layout directory, and a blob missing.
    let dir = w.path("layout");
    oci_layout(&dir, std::slice::from_ref(&layer), "localhost/bad:2");
    let blob = dir.join("blobs/sha256").join(Digest::of(&layer).hex());
    fs::write(&blob, &layer[..layer.len() - 700]).unwrap();
    refused(&s, &dir, &[&blob.display().to_string(), "digest mismatch"]);
    fs::remove_file(&blob).unwrap();
    refused(&s, &dir, &[&blob.display().to_string(), "missing"]);

    // Layers that climb out: a '..' entry, a file through an absolute symlink.
    let mut dotdot = layer_tar(&[("xx/evil", "x")]);
    dotdot[..6].copy_from_slice(b"../evi");
    fix_checksum(&mut dotdot);
    let symlink = layer_tar(&[("link ->", "/tmp"), ("link/evil", "x")]);
    for (name, layer, why) in [
        ("dotdot.tar", dotdot, "climb out"),
        ("symlink.tar", symlink, "link/evil"),
    ] {
        let p = file(name, &docker_archive(&[layer], "localhost/evil:1"));
        refused(&s, &p, &[name, why]);
    }
    assert!(!s.root().join("layers/sha256/evil").exists() && !Path::new("/tmp/evil").exists());
    let listed = s.images().unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].names, ["localhost/ok:1"]);
}

fn find(hay: &[u8], needle: &[u8]) -> usize {
    hay.windows(needle.len()).position(|w| w == needle).unwrap()
}

/// Recompute the first header's checksum (after patching its name).
fn fix_checksum(t: &mut [u8]) {
    t[148..156].copy_from_slice(b"        ");
    let sum: u32 = t[..512].iter().map(|&b| u32::from(b)).sum();
    t[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
}
