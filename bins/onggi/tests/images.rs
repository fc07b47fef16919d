//! `onggi`'s image commands through the binary, on a store in a tempdir: import
//! (file, stdin, gzip), images (table and JSON), tag, rmi, image inspect, image
//! prune, and bad input that must leave nothing in the store.
//!
//! Importing unpacks layers as root would (ownership, device nodes): root only.

use std::fs;
use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_onggi");

struct T {
    dir: tempfile::TempDir,
}

#[derive(Debug)]
struct Out {
    code: i32,
    stdout: String,
    stderr: String,
}

impl T {
    fn new(test: &str) -> Option<T> {
        if !nix_is_root() {
            eprintln!("skipping {test}: unpacking layers needs root");
            return None;
        }
        Some(T {
            dir: tempfile::Builder::new()
                .prefix("onggi-cli-t-")
                .tempdir()
                .unwrap(),
        })
    }

    fn store(&self) -> PathBuf {
        self.dir.path().join("store")
    }

    fn onggi(&self, args: &[&str], stdin: Option<&[u8]>) -> Out {
        let mut child = Command::new(BIN)
            .arg("--root")
            .arg(self.store())
            .args(args)
            .stdin(if stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        if let Some(data) = stdin {
            child.stdin.take().unwrap().write_all(data).unwrap();
        }
        let o = child.wait_with_output().unwrap();
        Out {
            code: o.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        }
    }

    #[track_caller]
    fn ok(&self, args: &[&str]) -> Out {
        let o = self.onggi(args, None);
        assert_eq!(o.code, 0, "onggi {args:?}: {o:#?}");
        o
    }

    /// A busybox root filesystem as a tar (what `docker export` writes).
    fn rootfs_tar(&self) -> PathBuf {
        let tarball = self.dir.path().join("rootfs.tar");
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../../scripts/rootfs-tar.sh");
        let st = Command::new("bash")
            .arg(script)
            .arg(&tarball)
            .output()
            .unwrap();
        assert!(st.status.success(), "{st:?}");
        tarball
    }

    /// Import the busybox tarball as `name`; its image id.
    fn import_busybox(&self, name: &str) -> String {
        let tar = self.rootfs_tar();
        let o = self.ok(&["import", tar.to_str().unwrap(), name]);
        o.stdout.trim().to_owned()
    }

    fn count(&self, sub: &str) -> usize {
        fs::read_dir(self.store().join(sub))
            .map(|d| d.count())
            .unwrap_or(0)
    }
}

/// The effective uid is 0 (from /proc/self/status).
fn nix_is_root() -> bool {
    fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .map(|l| l.split_whitespace().nth(2) == Some("0"))
        })
        .unwrap_or(false)
}

fn json(o: &Out) -> Value {
    serde_json::from_str(&o.stdout).unwrap_or_else(|e| panic!("{e}: {o:#?}"))
}

#[test]
fn import_list_tag_inspect_remove_and_prune() {
    let Some(t) = T::new("lifecycle") else {
        return;
    };
    let id = t.import_busybox("busybox");
    assert!(id.starts_with("sha256:") && id.len() == 71, "{id}");
    // The same tarball gzipped, from stdin: another image (its blob differs), the same layer.
    let gz = gzip(&fs::read(t.dir.path().join("rootfs.tar")).unwrap());
    let o = t.onggi(&["import", "-", "localhost/bz:gz"], Some(&gz));
    assert_eq!(o.code, 0, "{o:#?}");
    assert_eq!(t.count("layers/sha256"), 1, "one layer, unpacked once");

    let table = t.ok(&["images"]).stdout;
    let lines: Vec<&str> = table.lines().collect();
    assert!(
        lines[0].starts_with("REPOSITORY") && lines[0].contains("IMAGE ID"),
        "{table}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("busybox ") && l.contains("latest") && l.contains(&id[7..19])),
        "{table}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("localhost/bz ") && l.contains(" gz ")),
        "{table}"
    );
    // Columns align: every row has its IMAGE ID where the header has it.
    let col = lines[0].find("IMAGE ID").unwrap();
    assert!(
        lines[1..]
            .iter()
            .all(|l| l[col..].chars().next().unwrap().is_ascii_hexdigit()),
        "{table}"
    );

    t.ok(&["tag", "busybox", "mybox:1.0"]);
    let list = json(&t.ok(&["images", "--format", "json"]));
    let names: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|i| i["names"].as_array().unwrap())
        .map(|n| n.as_str().unwrap())
        .collect();
    assert!(names.contains(&"docker.io/library/mybox:1.0"), "{names:?}");

    let inspect = json(&t.ok(&["image", "inspect", "mybox:1.0"]));
    assert_eq!(inspect[0]["Id"], id.as_str());
    assert_eq!(inspect[0]["Os"], "linux");
    assert_eq!(
        inspect[0]["RootFS"]["diff_ids"].as_array().unwrap().len(),
        1
    );

    // An id with two names needs -f; a name only untags; the last name deletes.
    let o = t.onggi(&["rmi", &id], None);
    assert!(o.code == 1 && o.stderr.contains("conflict"), "{o:#?}");
    assert!(t
        .ok(&["rmi", "mybox:1.0"])
        .stdout
        .contains("Untagged: mybox:1.0"));
    let o = t.ok(&["rmi", "busybox"]);
    assert!(o.stdout.contains("Deleted: sha256:"), "{o:#?}");
    // The gzip image still holds the layer; removing it frees everything.
    t.ok(&["rmi", "localhost/bz:gz"]);
    t.ok(&["image", "prune"]);
    assert_eq!(
        (
            t.count("blobs/sha256"),
            t.count("layers/sha256"),
            t.count("ingest")
        ),
        (0, 0, 0)
    );
}

/// save → rmi → load gives the same image back, in both formats, from a file and
/// from standard input.
#[test]
fn saved_images_load_again() {
    let Some(t) = T::new("saveload") else {
        return;
    };
    let id = t.import_busybox("busybox:1");
    for format in ["docker-archive", "oci-archive"] {
        let out = t.dir.path().join(format!("{format}.tar"));
        t.ok(&[
            "save",
            "-o",
            out.to_str().unwrap(),
            "--format",
            format,
            "busybox:1",
        ]);
        t.ok(&["rmi", "busybox:1"]);
        let o = t.ok(&["load", "-i", out.to_str().unwrap()]);
        assert!(
            o.stdout.contains("Loaded image: busybox:1"),
            "{format}: {o:#?}"
        );
        assert_eq!(
            t.ok(&["images", "-q"]).stdout.trim(),
            &id[7..19],
            "{format}: the same image id"
        );
        t.ok(&["rmi", "busybox:1"]);
        let o = t.onggi(&["load", "-q"], Some(&fs::read(&out).unwrap()));
        assert_eq!(
            (o.code, o.stdout.trim()),
            (0, id.as_str()),
            "{format} from stdin: {o:#?}"
        );
    }
    let o = t.onggi(
        &[
            "save",
            "-o",
            t.dir.path().join("x.tar").to_str().unwrap(),
            "nothere",
        ],
        None,
    );
    assert!(o.code == 1 && o.stderr.contains("nothere"), "{o:#?}");
    assert!(!t.dir.path().join("x.tar").exists(), "no half archive");
}

/// Debian's docker-registry on a loopback port of its own, killed on drop.
struct Registry {
    child: std::process::Child,
    port: u16,
}

impl Registry {
    fn start(dir: &std::path::Path) -> Registry {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let config = dir.join("registry.yml");
        let yaml = format!(
            "version: 0.1\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: 127.0.0.1:{port}\n",
            dir.join("registry").display()
        );
        fs::write(&config, yaml).unwrap();
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("docker-registry (apt-get install docker-registry)");
        for _ in 0..200 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        Registry { child, port }
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// pull through the command line: what skopeo pushed to a local registry comes
/// back under its registry name; a second pull finds it up to date; an unknown tag
/// is a clear error.
#[test]
fn pull_from_a_local_registry() {
    let Some(t) = T::new("pull") else {
        return;
    };
    let id = t.import_busybox("busybox");
    let saved = t.dir.path().join("saved.tar");
    t.ok(&["save", "-o", saved.to_str().unwrap(), "busybox"]);
    let reg = Registry::start(t.dir.path());
    let remote = format!("127.0.0.1:{}/busybox:latest", reg.port);
    let st = Command::new("skopeo")
        .args(["copy", "-q", "--dest-tls-verify=false"])
        .arg(format!("docker-archive:{}", saved.display()))
        .arg(format!("docker://{remote}"))
        .status()
        .expect("skopeo");
    assert!(st.success());
    t.ok(&["rmi", "busybox"]);
    let o = t.ok(&["pull", &remote]);
    assert!(o.stdout.contains("Downloaded newer image"), "{o:#?}");
    assert_eq!(
        t.ok(&["pull", "-q", &remote]).stdout.trim(),
        id,
        "the same config, the same id"
    );
    assert!(t
        .ok(&["pull", &remote])
        .stdout
        .contains("Image is up to date"));
    let o = t.onggi(
        &["pull", &format!("127.0.0.1:{}/busybox:nope", reg.port)],
        None,
    );
    assert!(
        o.code == 1 && o.stderr.contains("busybox:nope") && o.stderr.contains("404"),
        "{o:#?}"
    );
}

#[test]
fn bad_input_is_named_and_leaves_nothing() {
    let Some(t) = T::new("bad") else {
        return;
    };
    let o = t.onggi(
        &["import", "-", "x"],
        Some(b"this is not a tar archive, just text\n"),
    );
    assert!(
        o.code == 1 && o.stderr.contains("standard input") && o.stderr.contains("not a valid"),
        "{o:#?}"
    );
    let o = t.onggi(&["import", "/nonexistent.tar"], None);
    assert!(
        o.code == 1 && o.stderr.contains("/nonexistent.tar"),
        "{o:#?}"
    );
    let o = t.onggi(&["import", "-", "Bad:Name!"], Some(b""));
    assert!(
        o.code == 1 && o.stderr.contains("invalid reference"),
        "{o:#?}"
    );
    let o = t.onggi(&["rmi", "nothere"], None);
    assert!(
        o.code == 1 && o.stderr.contains("no such image: nothere"),
        "{o:#?}"
    );
    assert_eq!(
        (
            t.count("blobs/sha256"),
            t.count("layers/sha256"),
            t.count("ingest")
        ),
        (0, 0, 0)
    );
    assert_eq!(t.ok(&["images", "-q"]).stdout, "");
}

/// gzip(1) of `data`.
fn gzip(data: &[u8]) -> Vec<u8> {
    let mut c = Command::new("gzip")
        .arg("-c")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = c.stdin.take().unwrap();
    let data = data.to_vec();
    let w = std::thread::spawn(move || stdin.write_all(&data));
    let o = c.wait_with_output().unwrap();
    w.join().unwrap().unwrap();
    o.stdout
}
