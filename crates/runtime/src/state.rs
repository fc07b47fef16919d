//! Persistent container state under the runtime root (`--root`, default
//! `/run/onggi-runtime`): one directory per container holding `state.json`, the
//! `exec.fifo` that `start` writes to, and nothing else.
//!
//! Concurrency: every command takes `flock` on the container's directory: shared for
//! readers (`state`, `list`), exclusive for writers (`create`, `start`, `kill`,
//! `delete`). `create` makes the directory with `mkdir`, so two creates of one id
//! cannot both succeed.

use std::collections::HashMap;
use std::fs::{self, File};
use std::io::Write;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::unistd::Pid;
use oci_spec::runtime::{Hook, Process};
use serde::{Deserialize, Serialize};

use crate::error::{Context, Error, Result};
use crate::lifecycle::Status;

/// The OCI version we report.
pub const OCI_VERSION: &str = "1.2.0";

/// What `state.json` records about a container. Everything a later command needs is
/// here, so `start`, `exec` and `delete` never reread the bundle (which may be gone).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Record {
    /// The container id.
    pub id: String,
    /// The init process, in the runtime's PID namespace.
    pub pid: i32,
    /// The init process's start time (field 22 of /proc/PID/stat), to detect PID reuse.
    pub start_time: u64,
    /// The bundle directory (absolute).
    pub bundle: PathBuf,
    /// The root filesystem (absolute).
    pub rootfs: PathBuf,
    /// Creation time, RFC 3339.
    pub created: String,
    /// The user that created the container.
    pub owner: String,
    /// The spec's annotations.
    #[serde(default)]
    pub annotations: HashMap<String, String>,
    /// The cgroups path the container was placed in.
    pub cgroups_path: String,
    /// How many parents of the cgroup `create` made (removed with it when empty).
    #[serde(default)]
    pub cgroup_owned_parents: usize,
    /// Whether the container has its own PID namespace (else `kill --all`/delete must
    /// signal every process in the cgroup).
    pub own_pid_namespace: bool,
    /// The config's process, the defaults for `exec`.
    pub process: Option<Process>,
    /// The seccomp profile, applied to `exec`'d processes too.
    #[serde(default)]
    pub seccomp: Option<oci_spec::runtime::LinuxSeccomp>,
    /// Hooks to run after start.
    #[serde(default)]
    pub poststart: Vec<Hook>,
    /// Hooks to run after delete.
    #[serde(default)]
    pub poststop: Vec<Hook>,
    /// Whether the user's process has been started (`run` has no exec.fifo).
    #[serde(default)]
    pub started: bool,
}

/// The spec's state document, as printed by `state` and fed to hooks.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OciState {
    /// Spec version.
    pub oci_version: String,
    /// Container id.
    pub id: String,
    /// Lifecycle status.
    pub status: Status,
    /// Init PID (0 once stopped, like runc).
    pub pid: i32,
    /// Bundle directory.
    pub bundle: PathBuf,
    /// Root filesystem (runc prints it too).
    pub rootfs: PathBuf,
    /// Creation time.
    pub created: String,
    /// Owner.
    pub owner: String,
    /// Annotations.
    #[serde(default, skip_serializing_if = "HashMap::is_empty")]
    pub annotations: HashMap<String, String>,
}

impl Record {
    /// The spec's state document for this record in `status`.
    pub fn oci_state(&self, status: Status) -> OciState {
        OciState {
            oci_version: OCI_VERSION.to_string(),
            id: self.id.clone(),
            status,
            pid: if status == Status::Stopped {
                0
            } else {
                self.pid
            },
            bundle: self.bundle.clone(),
            rootfs: self.rootfs.clone(),
            created: self.created.clone(),
            owner: self.owner.clone(),
            annotations: self.annotations.clone(),
        }
    }
}

/// The runtime root: where the container directories live.
#[derive(Debug, Clone)]
pub struct Store {
    root: PathBuf,
}

/// A container directory held under `flock`; the lock is released on drop.
#[derive(Debug)]
pub struct Locked {
    /// The container id.
    pub id: String,
    /// The container's directory.
    pub dir: PathBuf,
    lock: File,
}

/// Check that `id` can name a directory and a cgroup: no `/`, not `.` or `..`, not empty.
pub fn validate_id(id: &str) -> Result<()> {
    let reason = if id.is_empty() {
        "it is empty"
    } else if id.contains('/') {
        "it contains '/'"
    } else if id == "." || id == ".." {
        "it is '.' or '..'"
    } else if id.len() > 1024 {
        "it is longer than 1024 bytes"
    } else if id.chars().any(|c| c.is_control() || c == '\0') {
        "it contains control characters"
    } else {
        return Ok(());
    };
    Err(Error::InvalidId {
        id: id.to_string(),
        reason,
    })
}

impl Store {
    /// A store rooted at `root` (created on first use).
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Store { root: root.into() }
    }

    /// The root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Make the directory of a new container and lock it exclusively. Fails with
    /// [`Error::AlreadyExists`] if the id is taken.
    pub fn create_dir(&self, id: &str) -> Result<Locked> {
        validate_id(id)?;
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o711)
            .create(&self.root)
            .step(|| format!("create runtime root {}", self.root.display()))?;
        let dir = self.root.join(id);
        match fs::DirBuilder::new().mode(0o711).create(&dir) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                return Err(Error::AlreadyExists(id.to_string()))
            }
            Err(e) => return Err(e).step(|| format!("create state directory {}", dir.display())),
        }
        let lock = lock_dir(&dir, true)?;
        Ok(Locked {
            id: id.to_string(),
            dir,
            lock,
        })
    }

    /// Lock an existing container's directory (`exclusive` for writers).
    pub fn lock(&self, id: &str, exclusive: bool) -> Result<Locked> {
        validate_id(id)?;
        let dir = self.root.join(id);
        let lock = match lock_dir(&dir, exclusive) {
            Err(Error::Sys {
                source: Errno::ENOENT,
                ..
            }) => return Err(Error::NotFound(id.to_string())),
            other => other?,
        };
        Ok(Locked {
            id: id.to_string(),
            dir,
            lock,
        })
    }

    /// The ids of all containers, sorted.
    pub fn ids(&self) -> Result<Vec<String>> {
        let entries = match fs::read_dir(&self.root) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(e).step(|| format!("read runtime root {}", self.root.display())),
        };
        let mut ids: Vec<String> = entries
            .filter_map(|e| e.ok())
            .filter(|e| e.file_type().map(|t| t.is_dir()).unwrap_or(false))
            .filter_map(|e| e.file_name().into_string().ok())
            // .seccomp-cache and other runtime files, not containers.
            .filter(|n| !n.starts_with('.'))
            .collect();
        ids.sort();
        Ok(ids)
    }
}

/// `flock` the directory itself. The lock belongs to the open file description, so a
/// forked child that closes its inherited copy does not release the parent's lock
/// (std's `File::lock` never unlocks explicitly).
fn lock_dir(dir: &Path, exclusive: bool) -> Result<File> {
    let f = File::open(dir)
        .map_err(|e| Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO)))
        .step(|| format!("open state directory {}", dir.display()))?;
    let r = if exclusive { f.lock() } else { f.lock_shared() };
    r.step(|| format!("lock state directory {}", dir.display()))?;
    Ok(f)
}

impl Locked {
    /// Path of the exec fifo that `start` writes to.
    pub fn fifo_path(&self) -> PathBuf {
        self.dir.join("exec.fifo")
    }

    /// Read `state.json`.
    pub fn load(&self) -> Result<Record> {
        let path = self.dir.join("state.json");
        let data = match fs::read(&path) {
            Ok(d) => d,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(Error::State {
                    id: self.id.clone(),
                    reason: format!(
                        "{} is missing: the container is being created, or its create failed",
                        path.display()
                    ),
                })
            }
            Err(e) => return Err(e).step(|| format!("read {}", path.display())),
        };
        serde_json::from_slice(&data).map_err(|e| Error::State {
            id: self.id.clone(),
            reason: format!("{}: {e}", path.display()),
        })
    }

    /// Write `state.json` atomically (temporary file, then rename).
    pub fn save(&self, record: &Record) -> Result<()> {
        let path = self.dir.join("state.json");
        let tmp = self.dir.join(".state.json.tmp");
        let data = serde_json::to_vec(record).expect("a Record always serializes");
        let mut f = File::create(&tmp).step(|| format!("create {}", tmp.display()))?;
        f.write_all(&data)
            .step(|| format!("write {}", tmp.display()))?;
        drop(f);
        fs::rename(&tmp, &path).step(|| format!("rename {} to {}", tmp.display(), path.display()))
    }

    /// The status of the container described by `record`, derived from the live
    /// system: the init process (checked against its start time), the exec fifo, and
    /// the cgroup freezer (through `is_paused`, only asked when the process runs).
    pub fn status(&self, record: &Record, is_paused: impl FnOnce() -> bool) -> Status {
        if !process_alive(Pid::from_raw(record.pid), record.start_time) {
            return Status::Stopped;
        }
        if !record.started && self.fifo_path().exists() {
            return Status::Created;
        }
        if is_paused() {
            Status::Paused
        } else {
            Status::Running
        }
    }

    /// Remove the container's directory (the lock goes with it on drop): the files
    /// we know of, then the directory; a walk only if something else is in it.
    pub fn remove(&self) -> Result<()> {
        for name in ["state.json", "exec.fifo", ".state.json.tmp"] {
            let _ = fs::remove_file(self.dir.join(name));
        }
        match fs::remove_dir(&self.dir) {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(_) => {}
        }
        match fs::remove_dir_all(&self.dir) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e).step(|| format!("remove state directory {}", self.dir.display())),
        }
    }

    /// The lock's descriptor number, for a forked child to close (closing never
    /// unlocks while the parent's copy of the open file lives).
    pub fn lock_fd(&self) -> std::os::fd::RawFd {
        use std::os::fd::AsRawFd;
        self.lock.as_raw_fd()
    }
}

/// Parse the start time (field 22) out of the contents of `/proc/PID/stat`.
/// The command name (field 2) may contain spaces and parentheses, so fields are
/// counted after the last `)`.
pub fn parse_start_time(stat: &str) -> Option<(char, u64)> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_ascii_whitespace();
    let state = fields.next()?.chars().next()?;
    // `state` was field 3; field 22 is 19 further on.
    let start = fields.nth(18)?.parse().ok()?;
    Some((state, start))
}

/// Read (state, start time) of a process from `proc_root/PID/stat`.
pub fn read_start_time(proc_root: &Path, pid: Pid) -> Option<(char, u64)> {
    let stat = fs::read_to_string(proc_root.join(pid.to_string()).join("stat")).ok()?;
    parse_start_time(&stat)
}

/// Whether `pid` is alive, is not a zombie, and started at `start_time` (so it is the
/// same process and not a reuse of its PID).
pub fn process_alive(pid: Pid, start_time: u64) -> bool {
    if pid.as_raw() <= 0 {
        return false;
    }
    match read_start_time(Path::new("/proc"), pid) {
        Some((state, start)) => start == start_time && state != 'Z' && state != 'X',
        None => false,
    }
}

/// Now as RFC 3339 with nanoseconds in UTC, like runc's `created` field.
pub fn rfc3339_now() -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    rfc3339(now.as_secs() as i64, now.subsec_nanos())
}

/// Format a Unix time as RFC 3339 UTC (civil-from-days, Howard Hinnant's algorithm).
pub fn rfc3339(secs: i64, nanos: u32) -> String {
    let days = secs.div_euclid(86_400);
    let sod = secs.rem_euclid(86_400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = if m <= 2 { y + 1 } else { y };
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{nanos:09}Z",
        sod / 3600,
        (sod % 3600) / 60,
        sod % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_validated() {
        assert!(validate_id("abc-1_2.3").is_ok());
        for bad in ["", "a/b", ".", "..", "x\ny"] {
            assert!(
                matches!(validate_id(bad), Err(Error::InvalidId { .. })),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn start_time_survives_odd_command_names() {
        let stat =
            "1234 (a) b (c)) S 1 1234 1234 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 98765 1000 10";
        assert_eq!(parse_start_time(stat), Some(('S', 98765)));
        assert_eq!(parse_start_time("garbage"), None);
    }

    #[test]
    fn rfc3339_known_dates() {
        assert_eq!(rfc3339(0, 0), "1970-01-01T00:00:00.000000000Z");
        assert_eq!(rfc3339(1_709_164_800, 5), "2024-02-29T00:00:00.000000005Z");
    }

    #[test]
    fn create_twice_is_refused_and_lock_load_save_roundtrip() {
        let tmp = tempfile::tempdir().unwrap();
        let store = Store::new(tmp.path().join("root"));
        let locked = store.create_dir("c1").unwrap();
        assert!(matches!(
            store.create_dir("c1"),
            Err(Error::AlreadyExists(_))
        ));
        let rec = Record {
            id: "c1".into(),
            pid: std::process::id() as i32,
            start_time: read_start_time(Path::new("/proc"), Pid::this()).unwrap().1,
            bundle: "/b".into(),
            rootfs: "/b/rootfs".into(),
            created: rfc3339_now(),
            owner: "root".into(),
            annotations: HashMap::new(),
            cgroups_path: "/onggi/c1".into(),
            cgroup_owned_parents: 1,
            own_pid_namespace: true,
            process: None,
            seccomp: None,
            poststart: vec![],
            poststop: vec![],
            started: true,
        };
        locked.save(&rec).unwrap();
        assert_eq!(locked.load().unwrap().id, "c1");
        // This process is alive, so the status follows from `started` and the pause probe.
        assert_eq!(locked.status(&rec, || false), Status::Running);
        assert_eq!(locked.status(&rec, || true), Status::Paused);
        let reused = Record {
            start_time: rec.start_time + 1,
            ..rec.clone()
        };
        assert_eq!(locked.status(&reused, || false), Status::Stopped);
        drop(locked);
        assert_eq!(store.ids().unwrap(), vec!["c1".to_string()]);
        let l = store.lock("c1", true).unwrap();
        l.remove().unwrap();
        assert!(matches!(store.lock("nope", false), Err(Error::NotFound(_))));
    }
}
