//! A container's cgroup: one directory per v1 hierarchy (plus the unified directory on
//! a hybrid host, when it is writable), or one directory on v2.
//!
//! The start path is `new` (pure) → `create` (mkdir) → `apply` (writes) → `add_pid`;
//! each does the fewest syscalls it can: `create` tries the leaf `mkdir` first and walks
//! up only on `ENOENT`; `apply` opens each control file once; nothing is read unless a
//! decision needs it (the parent's `cpuset.cpus`/`mems` for a new v1 cpuset directory,
//! the root's `cgroup.controllers` on v2).

use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use oci_spec::runtime::LinuxResources;

use crate::error::{Error, Result};
use crate::fs;
use crate::hierarchy::{Hierarchies, Mount, Version};
use crate::path;
use crate::plan::{self, Ctrl, Flavor, OnError, Target};

/// How long `destroy` keeps retrying `EBUSY` (a killed process may still be leaving).
const RMDIR_PATIENCE: Duration = Duration::from_millis(100);
/// How long `freeze` waits for `FROZEN`.
const FREEZE_PATIENCE: Duration = Duration::from_secs(5);

/// The container's directory in one v1 hierarchy.
#[derive(Debug)]
struct V1Dir {
    name: String,
    controllers: Vec<String>,
    path: PathBuf,
    /// Parents of `path` (within the cgroups path) that `create` made.
    owned_parents: AtomicUsize,
}

impl V1Dir {
    fn has(&self, controller: &str) -> bool {
        self.controllers.iter().any(|c| c == controller)
    }
}

/// The container's directory in the v2 hierarchy.
#[derive(Debug)]
struct UnifiedDir {
    /// The hierarchy's mount point (where `cgroup.subtree_control` enabling starts).
    mount: PathBuf,
    path: PathBuf,
    owned_parents: AtomicUsize,
    /// Hybrid: false once `mkdir` was refused (the unified tree is not ours to write).
    usable: AtomicBool,
    /// V2: the controllers usable in `path`; Hybrid: those of the hierarchy root.
    controllers: OnceLock<String>,
    /// Hybrid: controllers already enabled down to `path` (bits of [`Ctrl::bit`]).
    enabled: AtomicU32,
}

/// A container's cgroup.
#[derive(Debug)]
pub struct Cgroup {
    version: Version,
    /// Components in the cgroups path (the leaf and its parents up to the base).
    depth: usize,
    v1: Vec<V1Dir>,
    unified: Option<UnifiedDir>,
}

impl Cgroup {
    /// Resolve `cgroups_path` (OCI `linux.cgroupsPath`) in every hierarchy.
    ///
    /// Absolute (`/a/b`): from each hierarchy root. Relative (`a/b`): from the caller's
    /// own cgroup, found in `own_cgroup`, the contents of `/proc/self/cgroup` (not read
    /// at all for an absolute path). The systemd `slice:prefix:name` form is refused:
    /// systemd cgroups are not supported yet. Touches no file.
    pub fn new(h: &Hierarchies, cgroups_path: &str, own_cgroup: &str) -> Result<Cgroup> {
        let spec = path::parse(cgroups_path)?;
        let dir = |m: &Mount, v2: bool| -> Result<PathBuf> {
            if spec.relative {
                Ok(m.dir().join(path::own(own_cgroup, m, v2)?).join(spec.rel))
            } else {
                Ok(m.dir().join(spec.rel))
            }
        };
        let mut v1 = Vec::with_capacity(h.v1_mounts().len());
        for m in h.v1_mounts() {
            v1.push(V1Dir {
                name: m.name().to_owned(),
                controllers: m.controllers().to_vec(),
                path: dir(m, false)?,
                owned_parents: AtomicUsize::new(0),
            });
        }
        let unified = match h.unified() {
            Some(m) => Some(UnifiedDir {
                mount: m.dir().to_owned(),
                path: dir(m, true)?,
                owned_parents: AtomicUsize::new(0),
                usable: AtomicBool::new(true),
                controllers: OnceLock::new(),
                enabled: AtomicU32::new(0),
            }),
            None => None,
        };
        Ok(Cgroup {
            version: h.version(),
            depth: spec.depth,
            v1,
            unified,
        })
    }

    /// [`Cgroup::new`] for the calling process: reads `/proc/self/cgroup` only when
    /// `cgroups_path` is relative.
    pub fn for_self(h: &Hierarchies, cgroups_path: &str) -> Result<Cgroup> {
        let own = if cgroups_path.starts_with('/') {
            String::new()
        } else {
            fs::read(Path::new("/proc/self/cgroup"))?
        };
        Self::new(h, cgroups_path, &own)
    }

    /// The host's cgroup version.
    pub fn version(&self) -> Version {
        self.version
    }

    /// Whether this process may make the cgroup: the directory in each hierarchy it
    /// needs (v1 controllers; v2's one; hybrid's unified one is optional anyway), or
    /// its nearest existing ancestor, is writable. Root's always are; an
    /// unprivileged user's only where a cgroup is delegated to it. `Err` names the
    /// first directory that refuses.
    pub fn writable(&self) -> std::result::Result<(), PathBuf> {
        let mut dirs: Vec<&Path> = self.v1.iter().map(|d| d.path.as_path()).collect();
        if self.version == Version::V2 {
            dirs.extend(self.unified.as_ref().map(|u| u.path.as_path()));
        }
        for dir in dirs {
            let existing = dir.ancestors().find(|a| a.exists()).unwrap_or(dir);
            if nix::unistd::access(existing, nix::unistd::AccessFlags::W_OK).is_err() {
                return Err(existing.to_path_buf());
            }
        }
        Ok(())
    }

    /// `mkdir -p` in every hierarchy, remembering which parents were made (see
    /// [`Cgroup::owned_parents`]).
    ///
    /// v1 cpuset: a new directory starts with empty `cpuset.cpus`/`mems`, which refuses
    /// every task (`ENOSPC`), so each one made gets its parent's values, as runc does.
    /// v2: every controller of the root's `cgroup.controllers` is enabled in each
    /// parent's `cgroup.subtree_control`. Hybrid: the unified directory is skipped when
    /// `mkdir` is refused there.
    pub fn create(&self) -> Result<()> {
        for d in &self.v1 {
            let made = mkdir_p(&d.path, self.depth)?;
            d.owned_parents
                .fetch_max(made.saturating_sub(1), Ordering::Relaxed);
            if made > 0 && d.has("cpuset") {
                copy_cpuset(&d.path, made)?;
            }
        }
        let Some(u) = &self.unified else {
            return Ok(());
        };
        match mkdir_p(&u.path, self.depth) {
            Ok(made) => {
                u.owned_parents
                    .fetch_max(made.saturating_sub(1), Ordering::Relaxed);
            }
            Err(e) if self.version == Version::Hybrid && refused(&e) => {
                u.usable.store(false, Ordering::Relaxed);
                return Ok(());
            }
            Err(e) => return Err(e),
        }
        if self.version == Version::V2 {
            self.enable_all_v2(u)?;
        }
        Ok(())
    }

    /// How many parents of the leaf (within the cgroups path) `create` made, the most
    /// over all hierarchies. `destroy` removes those parents when they end up empty.
    /// Persist it with the container state when `destroy` runs in another process.
    pub fn owned_parents(&self) -> usize {
        let dirs = self.v1.iter().map(|d| &d.owned_parents);
        let u = self.unified.iter().map(|u| &u.owned_parents);
        dirs.chain(u)
            .map(|n| n.load(Ordering::Relaxed))
            .max()
            .unwrap_or(0)
    }

    /// Restore [`Cgroup::owned_parents`] (from the container state) in every hierarchy,
    /// so that `destroy` removes them too. Capped at the parents the path has.
    pub fn set_owned_parents(&self, n: usize) {
        let n = n.min(self.depth - 1);
        for d in &self.v1 {
            d.owned_parents.store(n, Ordering::Relaxed);
        }
        if let Some(u) = &self.unified {
            u.owned_parents.store(n, Ordering::Relaxed);
        }
    }

    /// Write the OCI `linux.resources`. See [`crate::plan`] for the mapping of each field
    /// to v1 and v2 files. Every field is validated before the first write: a set field
    /// whose controller is absent is a [`Error::MissingController`], a value out of
    /// range is [`Error::Invalid`], and nothing is written then.
    ///
    /// Returns warnings: one sentence per set field that has no effect on this host
    /// (e.g. `memory.kernel`, or `memory.swappiness` on v2), naming the field.
    ///
    /// On v2, `devices` is validated but not written: device rules take an eBPF
    /// program, which the caller attaches (see [`Cgroup::device_rules_need_ebpf`]).
    pub fn apply(&self, r: &LinuxResources) -> Result<Vec<String>> {
        let plan = plan::plan(r, self)?;
        self.execute(plan)
    }

    /// Check `r` as [`Cgroup::apply`] would (ranges, controllers present), writing
    /// nothing: so that bad input is refused before anything is created.
    pub fn check(&self, r: &LinuxResources) -> Result<()> {
        plan::plan(r, self).map(drop)
    }

    /// `update` on a live container: [`Cgroup::apply`] with the new resources, after
    /// one check: with `memory.checkBeforeUpdate`, a memory limit below the current
    /// usage is refused ([`Error::Invalid`]) instead of being left to the kernel
    /// (which refuses it on v1 but OOM-kills on v2). On v1 the memory and memory+swap
    /// limits are written in whichever order keeps `limit <= memsw` (see
    /// [`crate::plan`]); v1 device rules are reset (deny all) and written again.
    pub fn update(&self, r: &LinuxResources) -> Result<Vec<String>> {
        let plan = plan::plan(r, self)?;
        if let Some(m) = r.memory() {
            let limit = m.limit().filter(|&l| l > 0);
            if let (Some(limit), Some(true)) = (limit, m.check_before_update()) {
                let usage = self.memory_usage()?;
                if usage > limit as u64 {
                    return Err(Error::Invalid {
                        field: "linux.resources.memory.limit",
                        reason: format!(
                            "{limit} is below the current usage {usage} (checkBeforeUpdate)"
                        ),
                    });
                }
            }
        }
        self.execute(plan)
    }

    /// On v2, `apply` does not enforce `linux.resources.devices`: the caller must attach
    /// the eBPF device program to [`Cgroup::unified_path`]. False on v1 and hybrid,
    /// where `apply` writes `devices.deny`/`devices.allow`.
    pub fn device_rules_need_ebpf(&self) -> bool {
        self.version == Version::V2
    }

    /// Run the writes of a plan: one `open` + `write` per file, and the few fallbacks
    /// and retries [`OnError`] describes.
    fn execute(&self, plan: plan::Plan) -> Result<Vec<String>> {
        let plan::Plan {
            steps,
            mut warnings,
        } = plan;
        let mut open: Option<(PathBuf, std::fs::File)> = None;
        // A file found missing whose fallback is written from then on (BFQ's weight
        // files on a kernel without BFQ): one failed open per file, not per step.
        let mut missing: Option<&str> = None;
        let mut i = 0;
        while i < steps.len() {
            let step = &steps[i];
            let dir = self.target_dir(step)?;
            // Once a file was found missing, its fallback is written straight away.
            let (file, value, known_missing) = match &step.on_error {
                OnError::Fallback(file, value) if missing == Some(&*step.file) => {
                    (*file, value.as_str(), true)
                }
                _ => (&*step.file, step.value.as_str(), false),
            };
            if let Err(e) = self.write_step(&mut open, dir, file, value) {
                match (&step.on_error, e.raw_os_error()) {
                    _ if known_missing => return Err(fs::write_error(dir.join(file), value, e)),
                    (OnError::SkipIfMissing, Some(libc::ENOENT)) => {}
                    (OnError::WarnIfMissing, Some(libc::ENOENT)) => warnings.push(format!(
                        "{}: this kernel has no {}, so that value is ignored",
                        step.field, step.file
                    )),
                    (OnError::Fallback(file, value), Some(libc::ENOENT)) => {
                        missing = Some(&step.file);
                        self.write_step(&mut open, dir, file, value)
                            .map_err(|e| fs::write_error(dir.join(file), value, e))?;
                    }
                    (OnError::RetryAfterNext, Some(libc::EINVAL)) if i + 1 < steps.len() => {
                        let next = &steps[i + 1];
                        let next_dir = self.target_dir(next)?;
                        open = None;
                        fs::write(next_dir.join(&*next.file), &next.value)?;
                        fs::write(dir.join(&*step.file), &step.value)?;
                        i += 1;
                    }
                    _ => return Err(fs::write_error(dir.join(&*step.file), &step.value, e)),
                }
            }
            i += 1;
        }
        Ok(warnings)
    }

    /// Write one step, reusing the open file when the previous step wrote the same
    /// file (device rules, throttles: one `open`, one `write` per rule).
    fn write_step(
        &self,
        open: &mut Option<(PathBuf, std::fs::File)>,
        dir: &Path,
        file: &str,
        value: &str,
    ) -> io::Result<()> {
        let path = dir.join(file);
        if let Some((p, f)) = open.as_mut() {
            if *p == path {
                return fs::write_value(f, value);
            }
        }
        *open = None;
        let mut f = fs::open_w(&path)?;
        fs::write_value(&mut f, value)?;
        *open = Some((path, f));
        Ok(())
    }

    /// The directory a step writes to; on Hybrid, enables the step's controller in the
    /// unified parents the first time.
    fn target_dir(&self, step: &plan::Step) -> Result<&Path> {
        match step.target {
            Target::V1(c) => self
                .v1_dir(c.v1_name())
                .map(|d| d.path.as_path())
                .ok_or_else(|| missing(c.v1_name(), step.field)),
            Target::V2(c) => {
                let u = self
                    .unified
                    .as_ref()
                    .ok_or_else(|| missing("unified", step.field))?;
                if self.version != Version::Hybrid {
                    return Ok(&u.path);
                }
                // A `unified` key: its controller is the file's prefix.
                let name = match c {
                    Some(c) => c.v2_name(),
                    None => step.file.split('.').next().unwrap_or_default(),
                };
                match c.or_else(|| Ctrl::from_v2_name(name)) {
                    Some(c) if u.enabled.load(Ordering::Relaxed) & c.bit() != 0 => {}
                    Some(c) => {
                        enable_in_parents(u, &format!("+{name}"))?;
                        u.enabled.fetch_or(c.bit(), Ordering::Relaxed);
                    }
                    None if name == "cgroup" => {}
                    // A controller apply does not know: enabled at every write (rare).
                    None => enable_in_parents(u, &format!("+{name}"))?,
                }
                Ok(&u.path)
            }
        }
    }

    /// Put a process in every hierarchy (`cgroup.procs` moves all its threads).
    pub fn add_pid(&self, pid: i32) -> Result<()> {
        let pid = pid.to_string();
        for d in &self.v1 {
            fs::write(d.path.join("cgroup.procs"), &pid)?;
        }
        if let Some(u) = self.usable_unified() {
            let path = u.path.join("cgroup.procs");
            match fs::write_raw(&path, &pid) {
                Ok(()) => {}
                // Hybrid: the unified tree is optional (not created, or not ours).
                Err(e)
                    if self.version == Version::Hybrid
                        && (fs::is(&e, libc::ENOENT) || refused_io(&e)) => {}
                Err(e) => return Err(fs::write_error(path, &pid, e)),
            }
        }
        Ok(())
    }

    /// The PIDs in the cgroup: from the pids hierarchy's (else the first v1
    /// hierarchy's) `cgroup.procs` on v1/hybrid, from the unified `cgroup.procs` on v2.
    pub fn pids(&self) -> Result<Vec<i32>> {
        let dir = match self.v1_dir("pids").or(self.v1.first()) {
            Some(d) => &d.path,
            None => {
                &self
                    .unified
                    .as_ref()
                    .ok_or_else(|| missing("cgroup.procs", "pids"))?
                    .path
            }
        };
        let path = dir.join("cgroup.procs");
        let text = fs::read(&path)?;
        text.lines()
            .map(|l| {
                l.trim().parse().map_err(|_| Error::Parse {
                    path: path.clone(),
                    reason: format!("{l:?} is not a PID"),
                })
            })
            .collect()
    }

    /// Freeze every process: v1 writes `FROZEN` to `freezer.state` and waits until it
    /// reads `FROZEN` (not `FREEZING`); v2 (or hybrid without a v1 freezer) writes `1` to
    /// `cgroup.freeze` and waits for `frozen 1` in `cgroup.events`.
    pub fn freeze(&self) -> Result<()> {
        match self.freezer()? {
            (dir, Flavor::V1) => {
                let state = dir.join("freezer.state");
                let start = Instant::now();
                let mut tries = 0u32;
                loop {
                    // Writing again re-attempts tasks that were busy (e.g. in vfork).
                    if tries.checked_rem(10) == Some(0) {
                        fs::write(state.clone(), "FROZEN")?;
                    }
                    let now = fs::read(&state)?;
                    if now.trim() == "FROZEN" {
                        return Ok(());
                    }
                    if start.elapsed() > FREEZE_PATIENCE {
                        return Err(Error::FreezeTimeout {
                            path: state,
                            state: now.trim().to_owned(),
                            waited_ms: start.elapsed().as_millis() as u64,
                        });
                    }
                    tries += 1;
                    std::thread::sleep(backoff(tries));
                }
            }
            (dir, Flavor::V2) => {
                fs::write(dir.join("cgroup.freeze"), "1")?;
                let events = dir.join("cgroup.events");
                let start = Instant::now();
                let mut tries = 0u32;
                loop {
                    let text = fs::read(&events)?;
                    if text.lines().any(|l| l.trim() == "frozen 1") {
                        return Ok(());
                    }
                    if start.elapsed() > FREEZE_PATIENCE {
                        return Err(Error::FreezeTimeout {
                            path: events,
                            state: text,
                            waited_ms: start.elapsed().as_millis() as u64,
                        });
                    }
                    tries += 1;
                    std::thread::sleep(backoff(tries));
                }
            }
        }
    }

    /// Resume every process: v1 `THAWED` to `freezer.state`, v2 `0` to `cgroup.freeze`.
    pub fn thaw(&self) -> Result<()> {
        match self.freezer()? {
            (dir, Flavor::V1) => fs::write(dir.join("freezer.state"), "THAWED"),
            (dir, Flavor::V2) => fs::write(dir.join("cgroup.freeze"), "0"),
        }
    }

    /// Is the cgroup frozen? (v1: `freezer.state` reads `FROZEN`; v2: `cgroup.freeze`
    /// reads `1`.)
    pub fn is_frozen(&self) -> Result<bool> {
        match self.freezer()? {
            (dir, Flavor::V1) => Ok(fs::read(&dir.join("freezer.state"))?.trim() == "FROZEN"),
            (dir, Flavor::V2) => Ok(fs::read(&dir.join("cgroup.freeze"))?.trim() == "1"),
        }
    }

    /// Remove the directories in every hierarchy: child cgroups first (deepest first),
    /// retrying `EBUSY` for up to ~100 ms; then the parents `create` made (see
    /// [`Cgroup::owned_parents`]) while they are empty. Missing directories are fine.
    /// Every hierarchy is attempted; the first error is returned.
    pub fn destroy(&self) -> Result<()> {
        let deadline = Instant::now() + RMDIR_PATIENCE;
        let mut first_err = None;
        let dirs = self.v1.iter().map(|d| (&d.path, &d.owned_parents));
        let unified = self.unified.iter().map(|u| (&u.path, &u.owned_parents));
        for (path, owned) in dirs.chain(unified) {
            let result = remove_tree(path, deadline)
                .and_then(|()| prune_parents(path, owned.load(Ordering::Relaxed)));
            if let Err(e) = result {
                first_err.get_or_insert(e);
            }
        }
        first_err.map_or(Ok(()), Err)
    }

    /// The container's directory in the hierarchy that holds `controller` (e.g.
    /// `"memory"`, `"name=systemd"`). On v2, the unified directory for any controller.
    pub fn path(&self, controller: &str) -> Option<&Path> {
        match self.version {
            Version::V2 => self.unified.as_ref().map(|u| u.path.as_path()),
            _ => self.v1_dir(controller).map(|d| d.path.as_path()),
        }
    }

    /// For each v1 hierarchy: (mount directory name relative to the cgroup root, e.g.
    /// `cpu,cpuacct`; the container's directory in it). Empty on v2.
    pub fn paths(&self) -> impl Iterator<Item = (&str, &Path)> {
        self.v1.iter().map(|d| (d.name.as_str(), d.path.as_path()))
    }

    /// The container's unified (v2) directory: the only one on v2; on hybrid, `None`
    /// once `create` found the unified hierarchy not writable.
    pub fn unified_path(&self) -> Option<&Path> {
        self.usable_unified().map(|u| u.path.as_path())
    }

    fn v1_dir(&self, controller: &str) -> Option<&V1Dir> {
        self.v1.iter().find(|d| d.has(controller))
    }

    fn usable_unified(&self) -> Option<&UnifiedDir> {
        self.unified
            .as_ref()
            .filter(|u| u.usable.load(Ordering::Relaxed))
    }

    /// Where freezing is done: the v1 freezer, else the unified `cgroup.freeze`.
    fn freezer(&self) -> Result<(&Path, Flavor)> {
        if let Some(d) = self.v1_dir("freezer") {
            return Ok((&d.path, Flavor::V1));
        }
        match self.usable_unified() {
            Some(u) => Ok((&u.path, Flavor::V2)),
            None => Err(missing("freezer", "freezer")),
        }
    }

    /// The controllers usable in the unified directory (read once): on V2 those of the
    /// directory itself (the root's when `create` ran), on Hybrid the hierarchy root's.
    fn v2_controllers<'a>(&self, u: &'a UnifiedDir) -> Result<std::borrow::Cow<'a, str>> {
        if let Some(c) = u.controllers.get() {
            return Ok(std::borrow::Cow::Borrowed(c));
        }
        let dir = if self.version == Version::V2 {
            &u.path
        } else {
            &u.mount
        };
        match fs::read(&dir.join("cgroup.controllers")) {
            Ok(text) => Ok(std::borrow::Cow::Borrowed(
                u.controllers.get_or_init(|| text),
            )),
            // Not created yet (`check` before `create`): what the hierarchy root offers is
            // what `create` will enable. Not cached: the leaf, once made, is the truth.
            Err(e) if e.errno() == Some(libc::ENOENT) && dir == &u.path => Ok(
                std::borrow::Cow::Owned(fs::read(&u.mount.join("cgroup.controllers"))?),
            ),
            Err(e) => Err(e),
        }
    }

    /// V2 `create`: enable every available controller in each parent, so the leaf gets
    /// them all (runc does the same). The first level that refuses the combined write
    /// is retried one controller at a time, keeping those that work.
    fn enable_all_v2(&self, u: &UnifiedDir) -> Result<()> {
        let root = fs::read(&u.mount.join("cgroup.controllers"))?;
        let all: Vec<&str> = root.split_whitespace().collect();
        if all.is_empty() {
            let _ = u.controllers.set(String::new());
            return Ok(());
        }
        let line = all
            .iter()
            .map(|c| format!("+{c}"))
            .collect::<Vec<_>>()
            .join(" ");
        let kept = match enable_in_parents(u, &line) {
            Ok(()) => root.trim().to_owned(),
            Err(_) => {
                let mut kept = Vec::new();
                for c in &all {
                    if enable_in_parents(u, &format!("+{c}")).is_ok() {
                        kept.push(*c);
                    }
                }
                kept.join(" ")
            }
        };
        let _ = u.controllers.set(kept);
        Ok(())
    }
}

/// Where `apply` finds each controller.
impl plan::Host for Cgroup {
    fn version(&self) -> Version {
        self.version
    }

    fn flavor(&self, c: Ctrl) -> Result<Option<Flavor>> {
        if self.version != Version::V2 && self.v1_dir(c.v1_name()).is_some() {
            return Ok(Some(Flavor::V1));
        }
        // Hybrid: a controller v1 lacks may be owned by the unified hierarchy
        // (hugetlb on some hosts); v2: device rules are accepted (and ignored).
        if self.version == Version::V2 && c == Ctrl::Devices {
            return Ok(Some(Flavor::V2));
        }
        if self.version == Version::V1 || c == Ctrl::Devices {
            return Ok(None);
        }
        let Some(u) = self.usable_unified() else {
            return Ok(None);
        };
        let have = self
            .v2_controllers(u)?
            .split_whitespace()
            .any(|n| n == c.v2_name());
        Ok(have.then_some(Flavor::V2))
    }

    fn v2_has(&self, name: &str) -> Result<bool> {
        let Some(u) = self.usable_unified() else {
            return Ok(false);
        };
        Ok(self
            .v2_controllers(u)?
            .split_whitespace()
            .any(|n| n == name))
    }
}

fn missing(controller: &str, field: &'static str) -> Error {
    Error::MissingController {
        controller: controller.to_owned(),
        field,
    }
}

/// `EACCES`, `EPERM`, `EROFS`: the hierarchy is not ours to write.
fn refused_io(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EACCES | libc::EPERM | libc::EROFS)
    )
}

fn refused(e: &Error) -> bool {
    matches!(e, Error::Mkdir { source, .. } if refused_io(source))
}

/// Sleep between polls: 1, 2, 4, 8, then 10 ms.
fn backoff(tries: u32) -> Duration {
    Duration::from_millis((1u64 << tries.min(4)).min(10))
}

/// Write `line` (`+cpu +memory`) to `cgroup.subtree_control` of every directory from
/// the hierarchy's mount point down to the leaf's parent, skipping the directories
/// that have them all enabled already: above a cgroup delegated to an unprivileged
/// user, they are the ones it cannot write.
fn enable_in_parents(u: &UnifiedDir, line: &str) -> Result<()> {
    let Ok(rel) = u.path.strip_prefix(&u.mount) else {
        return Ok(());
    };
    let mut dir = u.mount.clone();
    let mut comps = rel.components().peekable();
    while let Some(c) = comps.next() {
        let file = dir.join("cgroup.subtree_control");
        let enabled = fs::read_raw(&file).unwrap_or_default();
        let wanted = line.split_whitespace().map(|w| w.trim_start_matches('+'));
        if !wanted
            .clone()
            .all(|w| enabled.split_whitespace().any(|e| e == w))
        {
            fs::write(file, line)?;
        }
        if comps.peek().is_none() {
            break;
        }
        dir.push(c);
    }
    Ok(())
}

/// Create `leaf` and any of its last `depth - 1` parents that are missing. Returns how
/// many directories were made (0: the leaf existed). The leaf `mkdir` is tried first,
/// so an existing parent costs one syscall.
fn mkdir_p(leaf: &Path, depth: usize) -> Result<usize> {
    // A parent we just made can be removed by a concurrent destroy: start over then.
    for _ in 0..3 {
        // Walk up until a mkdir succeeds (or finds the directory there).
        let mut up = 0;
        let mut made = 0;
        loop {
            let dir = leaf.ancestors().nth(up).unwrap_or(leaf);
            match std::fs::create_dir(dir) {
                Ok(()) => {
                    made = 1;
                    break;
                }
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                    if up == 0 {
                        return Ok(0);
                    }
                    break;
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound && up + 1 < depth => up += 1,
                Err(source) => {
                    return Err(Error::Mkdir {
                        path: dir.to_owned(),
                        source,
                    })
                }
            }
        }
        // Then back down to the leaf.
        let mut restart = false;
        for k in (0..up).rev() {
            let dir = leaf.ancestors().nth(k).unwrap_or(leaf);
            match std::fs::create_dir(dir) {
                Ok(()) => made += 1,
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    restart = true;
                    break;
                }
                Err(source) => {
                    return Err(Error::Mkdir {
                        path: dir.to_owned(),
                        source,
                    })
                }
            }
        }
        if !restart {
            return Ok(made);
        }
    }
    Err(Error::Mkdir {
        path: leaf.to_owned(),
        source: io::Error::from_raw_os_error(libc::ENOENT),
    })
}

/// Give the `made` new cpuset directories ending at `leaf` the nearest non-empty
/// ancestor's `cpuset.cpus` and `cpuset.mems` (v1 starts them empty unless the
/// hierarchy has `clone_children`).
pub(crate) fn copy_cpuset(leaf: &Path, made: usize) -> Result<()> {
    let new_dirs: Vec<&Path> = leaf.ancestors().take(made).collect();
    for file in ["cpuset.cpus", "cpuset.mems"] {
        // Existing ancestors left empty by someone else get the value too.
        let mut fill: Vec<&Path> = Vec::new();
        let mut value = String::new();
        for anc in leaf.ancestors().skip(made) {
            let path = anc.join(file);
            match fs::read_raw(&path) {
                Ok(v) if !v.trim().is_empty() => {
                    value = v.trim().to_owned();
                    break;
                }
                Ok(_) => fill.push(anc),
                Err(e) if fs::is(&e, libc::ENOENT) => break, // above the hierarchy root
                Err(source) => return Err(Error::Read { path, source }),
            }
        }
        if value.is_empty() {
            continue;
        }
        for dir in fill.iter().rev().chain(new_dirs.iter().rev()) {
            fs::write(dir.join(file), &value)?;
        }
    }
    Ok(())
}

/// `rmdir` a cgroup directory; if it has child cgroups (`EBUSY` on cgroupfs,
/// `ENOTEMPTY` elsewhere) remove those first, then retry `EBUSY` until `deadline`.
fn remove_tree(dir: &Path, deadline: Instant) -> Result<()> {
    let err = match std::fs::remove_dir(dir) {
        Ok(()) => return Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => e,
    };
    if !(fs::is(&err, libc::EBUSY) || fs::is(&err, libc::ENOTEMPTY)) {
        return Err(Error::Rmdir {
            path: dir.to_owned(),
            source: err,
        });
    }
    let entries = std::fs::read_dir(dir).map_err(|source| Error::ReadDir {
        path: dir.to_owned(),
        source,
    })?;
    for entry in entries {
        let entry = entry.map_err(|source| Error::ReadDir {
            path: dir.to_owned(),
            source,
        })?;
        if entry.file_type().is_ok_and(|t| t.is_dir()) {
            remove_tree(&entry.path(), deadline)?;
        }
    }
    let mut tries = 0;
    loop {
        match std::fs::remove_dir(dir) {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) if fs::is(&e, libc::EBUSY) && Instant::now() < deadline => {
                tries += 1;
                std::thread::sleep(backoff(tries));
            }
            Err(source) => {
                return Err(Error::Rmdir {
                    path: dir.to_owned(),
                    source,
                })
            }
        }
    }
}

/// Remove up to `owned` parents of `leaf`, nearest first, stopping at the first one
/// still in use (another container's cgroup is in it).
fn prune_parents(leaf: &Path, owned: usize) -> Result<()> {
    for dir in leaf.ancestors().skip(1).take(owned) {
        match std::fs::remove_dir(dir) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            // Still in use: another container's cgroup is in it.
            Err(e)
                if matches!(
                    e.raw_os_error(),
                    Some(libc::EBUSY | libc::ENOTEMPTY | libc::EEXIST)
                ) =>
            {
                return Ok(())
            }
            Err(source) => {
                return Err(Error::Rmdir {
                    path: dir.to_owned(),
                    source,
                })
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::fs as stdfs;

    use oci_spec::runtime::{
        LinuxCpuBuilder, LinuxDeviceCgroupBuilder, LinuxDeviceType, LinuxHugepageLimitBuilder,
        LinuxMemoryBuilder, LinuxPidsBuilder, LinuxResourcesBuilder,
    };
    use tempfile::TempDir;

    use super::*;
    use crate::hierarchy::tests::{HYBRID, V1, V2};

    /// `template` (a mountinfo sample) with its mount points moved under `root`.
    fn detect(root: &Path, template: &str) -> Hierarchies {
        let mi = template.replace("/sys/fs/cgroup", root.to_str().unwrap());
        Hierarchies::detect(root, &mi).unwrap()
    }

    /// Make `dir` and the given control files in it.
    fn files(dir: &Path, files: &[(&str, &str)]) {
        stdfs::create_dir_all(dir).unwrap();
        for (f, content) in files {
            stdfs::write(dir.join(f), content).unwrap();
        }
    }

    fn cat(path: impl AsRef<Path>) -> String {
        stdfs::read_to_string(path).unwrap()
    }

    fn memory_and_pids() -> LinuxResources {
        let m = LinuxMemoryBuilder::default()
            .limit(64i64 << 20)
            .swap(128i64 << 20)
            .swappiness(0u64)
            .build()
            .unwrap();
        LinuxResourcesBuilder::default()
            .memory(m)
            .pids(LinuxPidsBuilder::default().limit(10).build().unwrap())
            .build()
            .unwrap()
    }

    #[test]
    fn absolute_and_relative_paths_in_every_hierarchy() {
        let h = Hierarchies::detect(Path::new("/sys/fs/cgroup"), HYBRID).unwrap();
        let cg = Cgroup::new(&h, "/onggi/c1", "garbage that is not read").unwrap();
        assert_eq!(
            cg.path("memory"),
            Some(Path::new("/sys/fs/cgroup/memory/onggi/c1"))
        );
        assert_eq!(
            cg.path("name=systemd"),
            Some(Path::new("/sys/fs/cgroup/systemd/onggi/c1"))
        );
        assert_eq!(
            cg.unified_path(),
            Some(Path::new("/sys/fs/cgroup/unified/onggi/c1"))
        );
        assert_eq!(cg.paths().count(), 9);
        assert!(cg.paths().any(
            |(name, p)| name == "cpuacct" && p == Path::new("/sys/fs/cgroup/cpuacct/onggi/c1")
        ));

        let own = "9:name=systemd:/\n8:pids:/\n7:blkio:/\n6:freezer:/\n5:devices:/\n\
                   4:memory:/process_api/de8c\n3:cpuset:/\n2:cpuacct:/\n1:cpu:/\n0::/\n";
        let cg = Cgroup::new(&h, "onggi/c1", own).unwrap();
        assert_eq!(
            cg.path("memory"),
            Some(Path::new("/sys/fs/cgroup/memory/process_api/de8c/onggi/c1"))
        );
        assert_eq!(
            cg.path("pids"),
            Some(Path::new("/sys/fs/cgroup/pids/onggi/c1"))
        );

        let e = Cgroup::new(&h, "system.slice:onggi:c1", own).unwrap_err();
        assert!(matches!(e, Error::SystemdPath { .. }), "{e}");

        let h = Hierarchies::detect(Path::new("/sys/fs/cgroup"), V2).unwrap();
        let cg = Cgroup::new(&h, "/onggi/c1", "").unwrap();
        assert_eq!(
            cg.path("memory"),
            Some(Path::new("/sys/fs/cgroup/onggi/c1"))
        );
        assert_eq!(cg.paths().count(), 0);
        let cg = Cgroup::new(&h, "c1", "0::/user.slice/x.scope\n").unwrap();
        assert_eq!(
            cg.unified_path(),
            Some(Path::new("/sys/fs/cgroup/user.slice/x.scope/c1"))
        );
    }

    #[test]
    fn apply_writes_every_v1_file_and_hybrid_hugetlb() {
        let tmp = TempDir::new().unwrap();
        let root = tmp.path();
        let h = detect(root, HYBRID);
        let leaf = |m: &str| root.join(m).join("onggi/c1");
        files(
            &leaf("memory"),
            &[
                ("memory.limit_in_bytes", ""),
                ("memory.memsw.limit_in_bytes", ""),
                ("memory.swappiness", ""),
            ],
        );
        files(&leaf("pids"), &[("pids.max", "")]);
        files(
            &leaf("cpu"),
            &[
                ("cpu.shares", ""),
                ("cpu.cfs_period_us", ""),
                ("cpu.cfs_quota_us", ""),
            ],
        );
        files(&leaf("cpuset"), &[("cpuset.cpus", ""), ("cpuset.mems", "")]);
        files(
            &leaf("devices"),
            &[("devices.allow", ""), ("devices.deny", "")],
        );
        files(&leaf("blkio"), &[("blkio.weight", "")]); // no BFQ: falls back
        files(
            &root.join("unified"),
            &[
                ("cgroup.controllers", "hugetlb\n"),
                ("cgroup.subtree_control", ""),
            ],
        );
        files(
            &root.join("unified/onggi"),
            &[("cgroup.subtree_control", "")],
        );
        files(&leaf("unified"), &[("hugetlb.2MB.max", "")]); // no rsvd file: skipped

        let mut r = memory_and_pids();
        r.set_cpu(Some(
            LinuxCpuBuilder::default()
                .shares(512u64)
                .quota(20_000i64)
                .period(100_000u64)
                .cpus("0")
                .mems("0")
                .build()
                .unwrap(),
        ));
        r.set_devices(Some(vec![
            LinuxDeviceCgroupBuilder::default()
                .allow(false)
                .access("rwm")
                .build()
                .unwrap(),
            LinuxDeviceCgroupBuilder::default()
                .allow(true)
                .typ(LinuxDeviceType::C)
                .major(1)
                .minor(3)
                .access("rwm")
                .build()
                .unwrap(),
            LinuxDeviceCgroupBuilder::default()
                .allow(true)
                .typ(LinuxDeviceType::C)
                .major(1)
                .minor(5)
                .access("rw")
                .build()
                .unwrap(),
        ]));
        r.set_hugepage_limits(Some(vec![LinuxHugepageLimitBuilder::default()
            .page_size("2MB")
            .limit(4i64 << 20)
            .build()
            .unwrap()]));
        r.set_block_io(Some(
            oci_spec::runtime::LinuxBlockIoBuilder::default()
                .weight(300u16)
                .build()
                .unwrap(),
        ));

        let cg = Cgroup::new(&h, "/onggi/c1", "").unwrap();
        cg.apply(&r).unwrap();
        assert_eq!(
            cat(leaf("memory").join("memory.limit_in_bytes")),
            "67108864"
        );
        assert_eq!(
            cat(leaf("memory").join("memory.memsw.limit_in_bytes")),
            "134217728"
        );
        assert_eq!(cat(leaf("memory").join("memory.swappiness")), "0");
        assert_eq!(cat(leaf("pids").join("pids.max")), "10");
        assert_eq!(cat(leaf("cpu").join("cpu.shares")), "512");
        assert_eq!(cat(leaf("cpu").join("cpu.cfs_period_us")), "100000");
        assert_eq!(cat(leaf("cpu").join("cpu.cfs_quota_us")), "20000");
        assert_eq!(cat(leaf("cpuset").join("cpuset.cpus")), "0");
        assert_eq!(cat(leaf("cpuset").join("cpuset.mems")), "0");
        // One open per run of writes to the same file: both deny writes are kept.
        assert_eq!(cat(leaf("devices").join("devices.deny")), "aa *:* rwm\n");
        assert_eq!(
            cat(leaf("devices").join("devices.allow")),
            "c 1:3 rwm\nc 1:5 rw\n"
        );
        assert_eq!(cat(leaf("blkio").join("blkio.weight")), "300");
        assert_eq!(cat(leaf("unified").join("hugetlb.2MB.max")), "4194304");
        assert_eq!(cat(root.join("unified/cgroup.subtree_control")), "+hugetlb");
        assert_eq!(
            cat(root.join("unified/onggi/cgroup.subtree_control")),
            "+hugetlb"
        );
    }

    #[test]
    fn v2_create_enables_controllers_then_apply_writes() {
        let tmp = TempDir::new().unwrap();
        let root = tmp.path();
        let h = detect(root, V2);
        files(
            root,
            &[
                ("cgroup.controllers", "cpuset cpu io memory pids\n"),
                ("cgroup.subtree_control", ""),
            ],
        );
        files(&root.join("onggi"), &[("cgroup.subtree_control", "")]);
        let leaf = root.join("onggi/c1");
        files(
            &leaf,
            &[
                ("memory.max", ""),
                ("memory.swap.max", ""),
                ("pids.max", ""),
                ("cpu.weight", ""),
                ("cpu.max", ""),
                ("io.weight", ""),
            ],
        );
        let cg = Cgroup::new(&h, "/onggi/c1", "").unwrap();
        cg.create().unwrap();
        let all = "+cpuset +cpu +io +memory +pids";
        assert_eq!(cat(root.join("cgroup.subtree_control")), all);
        assert_eq!(cat(root.join("onggi/cgroup.subtree_control")), all);
        assert!(stdfs::read_dir(&leaf)
            .unwrap()
            .all(|e| e.unwrap().file_name() != "cgroup.subtree_control"));

        let mut r = memory_and_pids();
        r.set_cpu(Some(
            LinuxCpuBuilder::default()
                .shares(1024u64)
                .quota(50_000i64)
                .build()
                .unwrap(),
        ));
        // Device rules are not written on v2 (the caller attaches an eBPF program).
        r.set_devices(Some(vec![LinuxDeviceCgroupBuilder::default()
            .allow(false)
            .build()
            .unwrap()]));
        r.set_block_io(Some(
            oci_spec::runtime::LinuxBlockIoBuilder::default()
                .weight(1000u16)
                .build()
                .unwrap(),
        ));
        cg.apply(&r).unwrap();
        assert_eq!(cat(leaf.join("memory.max")), "67108864");
        assert_eq!(cat(leaf.join("memory.swap.max")), "67108864");
        assert_eq!(cat(leaf.join("pids.max")), "10");
        assert_eq!(cat(leaf.join("cpu.weight")), "39");
        assert_eq!(cat(leaf.join("cpu.max")), "50000 100000");
        assert_eq!(cat(leaf.join("io.weight")), "10000");

        // hugetlb is not among the controllers: the field is named.
        r.set_hugepage_limits(Some(vec![LinuxHugepageLimitBuilder::default()
            .page_size("2MB")
            .limit(1i64)
            .build()
            .unwrap()]));
        let e = cg.apply(&r).unwrap_err();
        assert!(
            matches!(&e, Error::MissingController { controller, field } if controller == "hugetlb" && *field == "linux.resources.hugepageLimits"),
            "{e}"
        );
    }

    #[test]
    fn v2_apply_without_create_reads_the_leaf_controllers() {
        let tmp = TempDir::new().unwrap();
        let h = detect(tmp.path(), V2);
        let leaf = tmp.path().join("onggi/c1");
        files(
            &leaf,
            &[("cgroup.controllers", "memory\n"), ("memory.max", "")],
        );
        let cg = Cgroup::new(&h, "/onggi/c1", "").unwrap();
        cg.apply(&memory_and_pids()).unwrap_err(); // memory.swap.max is missing
        let m = LinuxMemoryBuilder::default().limit(-1i64).build().unwrap();
        cg.apply(&LinuxResourcesBuilder::default().memory(m).build().unwrap())
            .unwrap();
        assert_eq!(cat(leaf.join("memory.max")), "max");
        let pids = LinuxResourcesBuilder::default()
            .pids(LinuxPidsBuilder::default().limit(3).build().unwrap())
            .build()
            .unwrap();
        assert!(matches!(
            cg.apply(&pids).unwrap_err(),
            Error::MissingController { .. }
        ));
    }

    #[test]
    fn v2_check_before_create_uses_the_roots_controllers_and_writes_nothing() {
        let tmp = TempDir::new().unwrap();
        let h = detect(tmp.path(), V2);
        files(tmp.path(), &[("cgroup.controllers", "cpu pids\n")]);
        let cg = Cgroup::new(&h, "/onggi/c1", "").unwrap();
        let pids = LinuxResourcesBuilder::default()
            .pids(LinuxPidsBuilder::default().limit(3).build().unwrap())
            .build()
            .unwrap();
        cg.check(&pids).unwrap();
        let m = LinuxMemoryBuilder::default()
            .limit(1 << 20)
            .build()
            .unwrap();
        let memory = LinuxResourcesBuilder::default().memory(m).build().unwrap();
        assert!(matches!(
            cg.check(&memory).unwrap_err(),
            Error::MissingController { .. }
        ));
        assert!(!tmp.path().join("onggi").exists(), "check wrote something");
    }

    #[test]
    fn write_errors_name_the_file_and_value() {
        let tmp = TempDir::new().unwrap();
        let h = detect(tmp.path(), V1);
        files(
            &tmp.path().join("memory/onggi/c1"),
            &[
                ("memory.limit_in_bytes", ""),
                ("memory.memsw.limit_in_bytes", ""),
            ],
        );
        let cg = Cgroup::new(&h, "/onggi/c1", "").unwrap();
        let e = cg.apply(&memory_and_pids()).unwrap_err();
        // swappiness is missing from the fixture.
        let msg = e.to_string();
        assert!(matches!(e, Error::Write { .. }), "{msg}");
        assert!(
            msg.contains("memory/onggi/c1/memory.swappiness") && msg.contains("\"0\""),
            "{msg}"
        );
        assert_eq!(e.errno(), Some(libc::ENOENT));
    }

    #[test]
    fn missing_v1_controller_names_the_field() {
        let tmp = TempDir::new().unwrap();
        let mi = format!(
            "1 0 0:1 / {}/memory rw - cgroup cgroup rw,memory\n",
            tmp.path().display()
        );
        let h = Hierarchies::detect(tmp.path(), &mi).unwrap();
        let cg = Cgroup::new(&h, "/onggi/c1", "").unwrap();
        let r = LinuxResourcesBuilder::default()
            .pids(LinuxPidsBuilder::default().limit(10).build().unwrap())
            .build()
            .unwrap();
        let e = cg.apply(&r).unwrap_err();
        assert_eq!(
            e.to_string(),
            "linux.resources.pids.limit is set but the pids cgroup controller is not available"
        );
        // Range errors come before any write.
        let r = LinuxResourcesBuilder::default()
            .pids(LinuxPidsBuilder::default().limit(-7).build().unwrap())
            .build()
            .unwrap();
        assert!(matches!(
            cg.apply(&r).unwrap_err(),
            Error::Invalid {
                field: "linux.resources.pids.limit",
                ..
            }
        ));
    }

    #[test]
    fn add_pid_and_pids() {
        let tmp = TempDir::new().unwrap();
        let h = detect(tmp.path(), HYBRID);
        let cg = Cgroup::new(&h, "/onggi/c1", "").unwrap();
        for (_, p) in cg.paths() {
            files(p, &[("cgroup.procs", "")]);
        }
        // Hybrid: no unified directory is fine.
        cg.add_pid(4321).unwrap();
        for (_, p) in cg.paths() {
            assert_eq!(cat(p.join("cgroup.procs")), "4321");
        }
        stdfs::write(cg.path("pids").unwrap().join("cgroup.procs"), "1\n22\n").unwrap();
        assert_eq!(cg.pids().unwrap(), [1, 22]);
        stdfs::write(cg.path("pids").unwrap().join("cgroup.procs"), "x\n").unwrap();
        assert!(matches!(cg.pids().unwrap_err(), Error::Parse { .. }));
    }

    #[test]
    fn freeze_and_thaw_v1_and_v2() {
        let tmp = TempDir::new().unwrap();
        let h = detect(tmp.path(), V1);
        let cg = Cgroup::new(&h, "/onggi/c1", "").unwrap();
        let state = cg.path("freezer").unwrap().join("freezer.state");
        files(state.parent().unwrap(), &[("freezer.state", "THAWED")]);
        assert!(!cg.is_frozen().unwrap());
        cg.freeze().unwrap();
        assert_eq!(cat(&state), "FROZEN");
        assert!(cg.is_frozen().unwrap());
        cg.thaw().unwrap();
        assert_eq!(cat(&state), "THAWED");

        let tmp = TempDir::new().unwrap();
        let h = detect(tmp.path(), V2);
        let cg = Cgroup::new(&h, "/onggi/c1", "").unwrap();
        let dir = cg.unified_path().unwrap().to_owned();
        files(
            &dir,
            &[
                ("cgroup.freeze", "0"),
                ("cgroup.events", "populated 1\nfrozen 1\n"),
            ],
        );
        cg.freeze().unwrap();
        assert!(cg.is_frozen().unwrap());
        cg.thaw().unwrap();
        assert_eq!(cat(dir.join("cgroup.freeze")), "0");
        assert!(!cg.is_frozen().unwrap());
    }

    /// A v1 fixture of bare directories (rmdir works on them) with two hierarchies.
    fn bare_v1(root: &Path) -> Hierarchies {
        let mi = format!(
            "1 0 0:1 / {r}/memory rw - cgroup cgroup rw,memory\n2 0 0:2 / {r}/pids rw - cgroup cgroup rw,pids\n",
            r = root.display()
        );
        files(&root.join("memory"), &[]);
        files(&root.join("pids"), &[]);
        Hierarchies::detect(root, &mi).unwrap()
    }

    #[test]
    fn create_then_destroy_removes_the_parents_it_made() {
        let tmp = TempDir::new().unwrap();
        let h = bare_v1(tmp.path());
        let cg = Cgroup::new(&h, "/onggi/c1", "").unwrap();
        cg.create().unwrap();
        assert!(
            tmp.path().join("memory/onggi/c1").is_dir()
                && tmp.path().join("pids/onggi/c1").is_dir()
        );
        assert_eq!(cg.owned_parents(), 1);
        cg.create().unwrap(); // idempotent
                              // A child cgroup (made inside the container) goes first.
        stdfs::create_dir_all(tmp.path().join("memory/onggi/c1/sub/subsub")).unwrap();
        cg.destroy().unwrap();
        for m in ["memory", "pids"] {
            assert!(!tmp.path().join(m).join("onggi").exists(), "{m}/onggi left");
            assert!(tmp.path().join(m).is_dir());
        }
        cg.destroy().unwrap(); // missing is fine
    }

    #[test]
    fn destroy_keeps_parents_it_did_not_make_or_that_are_in_use() {
        let tmp = TempDir::new().unwrap();
        let h = bare_v1(tmp.path());
        stdfs::create_dir_all(tmp.path().join("memory/onggi")).unwrap();
        let cg = Cgroup::new(&h, "/onggi/c1", "").unwrap();
        cg.create().unwrap();
        cg.destroy().unwrap();
        assert!(
            tmp.path().join("memory/onggi").is_dir(),
            "pre-existing parent removed"
        );
        assert!(
            !tmp.path().join("pids/onggi").exists(),
            "parent made by create kept"
        );

        // Another container's cgroup keeps the parent.
        let a = Cgroup::new(&h, "/onggi/a", "").unwrap();
        let b = Cgroup::new(&h, "/onggi/b", "").unwrap();
        a.create().unwrap();
        b.create().unwrap();
        a.destroy().unwrap();
        assert!(tmp.path().join("pids/onggi/b").is_dir());
        b.destroy().unwrap();
    }

    #[test]
    fn owned_parents_can_be_restored_in_another_process() {
        let tmp = TempDir::new().unwrap();
        let h = bare_v1(tmp.path());
        let made = Cgroup::new(&h, "/onggi/x/c1", "").unwrap();
        made.create().unwrap();
        assert_eq!(made.owned_parents(), 2);
        let later = Cgroup::new(&h, "/onggi/x/c1", "").unwrap();
        later.set_owned_parents(made.owned_parents());
        later.destroy().unwrap();
        assert!(!tmp.path().join("memory/onggi").exists());
        // Without it only the leaf goes.
        made.create().unwrap();
        Cgroup::new(&h, "/onggi/x/c1", "")
            .unwrap()
            .destroy()
            .unwrap();
        assert!(
            tmp.path().join("memory/onggi/x").is_dir()
                && !tmp.path().join("memory/onggi/x/c1").exists()
        );
    }

    #[test]
    fn create_fails_naming_the_directory() {
        let tmp = TempDir::new().unwrap();
        let h = bare_v1(tmp.path());
        stdfs::remove_dir(tmp.path().join("pids")).unwrap();
        let e = Cgroup::new(&h, "/onggi/c1", "")
            .unwrap()
            .create()
            .unwrap_err();
        assert!(
            matches!(&e, Error::Mkdir { path, .. } if path.ends_with("pids/onggi")),
            "{e}"
        );
    }

    #[test]
    fn new_cpuset_dirs_get_the_parent_cpus_and_mems() {
        let tmp = TempDir::new().unwrap();
        let root = tmp.path().join("cpuset");
        files(&root, &[("cpuset.cpus", "0-3\n"), ("cpuset.mems", "0\n")]);
        files(
            &root.join("onggi"),
            &[("cpuset.cpus", ""), ("cpuset.mems", "")],
        );
        files(
            &root.join("onggi/c1"),
            &[("cpuset.cpus", ""), ("cpuset.mems", "")],
        );
        copy_cpuset(&root.join("onggi/c1"), 1).unwrap();
        // The empty existing parent is filled too, top-down.
        assert_eq!(cat(root.join("onggi/cpuset.cpus")), "0-3");
        assert_eq!(cat(root.join("onggi/c1/cpuset.cpus")), "0-3");
        assert_eq!(cat(root.join("onggi/c1/cpuset.mems")), "0");
    }
}
