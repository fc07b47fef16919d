//! Usage figures of a cgroup, for `events --stats`, `stats` and `top`.
//!
//! Each controller is read where it lives: its v1 hierarchy when it has one, else the
//! unified directory (v2, or hybrid for the controllers v1 lacks, e.g. `hugetlb`). The
//! files and their formats:
//!
//! | figure        | v1                                               | v2                          |
//! |---------------|--------------------------------------------------|-----------------------------|
//! | cpu usage     | cpuacct.usage (ns), cpuacct.stat (USER_HZ ticks) | cpu.stat `usage_usec` ...   |
//! | cpu throttling| cpu.stat `nr_periods nr_throttled throttled_time`| cpu.stat `throttled_usec`   |
//! | memory        | memory.{usage,limit,max_usage}_in_bytes, memory.memsw.usage_in_bytes, memory.stat `total_cache total_rss` | memory.{current,max,peak,swap.current}, memory.stat `file anon` |
//! | OOM           | memory.oom_control `oom_kill`                    | memory.events `oom oom_kill`|
//! | pids          | pids.current, pids.max                           | same                        |
//! | io            | blkio.throttle.io_service_bytes / io_serviced (`_recursive` first, then BFQ's) | io.stat |
//! | hugetlb       | hugetlb.SIZE.{usage,max_usage}_in_bytes, failcnt | hugetlb.SIZE.current, events|
//!
//! A missing file is not an error (the figure stays zero, a limit stays "none"), so
//! stats work on hosts without a controller and on a cgroup being removed; a file that
//! does not parse is [`Error::Parse`] naming it.

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};

use crate::cgroup::Cgroup;
use crate::error::{Error, Result};
use crate::fs;
use crate::hierarchy::Version;

/// Everything [`Cgroup::stats`] reports.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Stats {
    /// CPU time and throttling.
    pub cpu: CpuStats,
    /// Memory use and limit.
    pub memory: MemoryStats,
    /// Process count and limit.
    pub pids: PidsStats,
    /// Bytes and operations per block device, sorted by device number.
    pub io: Vec<IoEntry>,
    /// Per huge page size (`"2MB"`, `"1GB"`).
    pub hugetlb: BTreeMap<String, HugetlbStats>,
    /// Processes the OOM killer killed in the cgroup.
    pub oom_kills: u64,
}

/// CPU time and CFS throttling, in nanoseconds.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct CpuStats {
    /// Total CPU time.
    pub usage_ns: u64,
    /// CPU time in user mode (USER_HZ resolution on v1).
    pub user_ns: u64,
    /// CPU time in kernel mode (USER_HZ resolution on v1).
    pub system_ns: u64,
    /// Enforcement periods that have elapsed (with a quota set).
    pub periods: u64,
    /// Periods in which the cgroup was throttled.
    pub throttled_periods: u64,
    /// Total time throttled.
    pub throttled_ns: u64,
}

/// Memory use, in bytes.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct MemoryStats {
    /// Current use (page cache included).
    pub usage: u64,
    /// The limit; `u64::MAX` for none.
    pub limit: u64,
    /// The highest use seen (v1 `max_usage_in_bytes`, v2 `memory.peak`; 0 if unknown).
    pub max_usage: u64,
    /// Swap in use (v1: memory+swap use minus memory use).
    pub swap_usage: u64,
    /// Page cache (v1 `total_cache`, v2 `file`).
    pub cache: u64,
    /// Anonymous memory (v1 `total_rss`, v2 `anon`).
    pub rss: u64,
    /// Times the cgroup hit its limit and the OOM killer was invoked (v2 `oom`; v1 has
    /// no such counter and reports its `oom_kill` count).
    pub oom_events: u64,
}

impl Default for MemoryStats {
    fn default() -> Self {
        MemoryStats {
            usage: 0,
            limit: u64::MAX,
            max_usage: 0,
            swap_usage: 0,
            cache: 0,
            rss: 0,
            oom_events: 0,
        }
    }
}

/// Process count.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct PidsStats {
    /// Processes and threads in the cgroup.
    pub current: u64,
    /// The limit; 0 for none (`max`).
    pub limit: u64,
}

/// Block I/O of one device.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct IoEntry {
    /// Device major number.
    pub major: u64,
    /// Device minor number.
    pub minor: u64,
    /// Bytes read.
    pub read_bytes: u64,
    /// Bytes written.
    pub write_bytes: u64,
    /// Read operations.
    pub read_ios: u64,
    /// Write operations.
    pub write_ios: u64,
}

/// Huge pages of one size, in bytes.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct HugetlbStats {
    /// Current use.
    pub usage: u64,
    /// The highest use seen (v1 only; 0 on v2).
    pub max_usage: u64,
    /// Allocations refused by the limit (v1 `failcnt`, v2 `events` `max`).
    pub failcnt: u64,
}

/// Where a controller's files are, and in which spelling.
#[derive(Clone, Copy)]
enum Dir<'a> {
    V1(&'a Path),
    V2(&'a Path),
}

/// v1 reports "no limit" as the largest page-aligned `i64` (9223372036854771712 with
/// 4 KiB pages); anything this large is no limit.
const V1_UNLIMITED: u64 = 1 << 62;

impl Cgroup {
    /// Read the usage figures of every controller (see the module doc for the files).
    /// Missing files leave their figures at zero; a malformed one is [`Error::Parse`].
    pub fn stats(&self) -> Result<Stats> {
        let mut s = Stats::default();
        self.cpu_stats(&mut s.cpu)?;
        s.oom_kills = self.memory_stats(&mut s.memory)?;
        if let Some(d) = self.stat_dir("pids") {
            pids_stats(d, &mut s.pids)?;
        }
        if let Some(d) = self.stat_dir("blkio") {
            s.io = io_stats(d)?;
        }
        if let Some(d) = self.stat_dir("hugetlb") {
            s.hugetlb = hugetlb_stats(d)?;
        }
        Ok(s)
    }

    /// The number of processes the OOM killer killed in the cgroup: one read of v1
    /// `memory.oom_control` or v2 `memory.events` (0 when there is no memory
    /// controller). Cheap enough to poll for OOM events.
    pub fn oom_kill_count(&self) -> Result<u64> {
        let (path, key) = match self.stat_dir("memory") {
            Some(Dir::V1(d)) => (d.join("memory.oom_control"), "oom_kill"),
            Some(Dir::V2(d)) => (d.join("memory.events"), "oom_kill"),
            None => return Ok(0),
        };
        match read_opt(&path)? {
            Some(text) => Ok(keyed(&path, &text, key)?.unwrap_or(0)),
            None => Ok(0),
        }
    }

    /// Current memory use (v1 `memory.usage_in_bytes`, v2 `memory.current`).
    pub(crate) fn memory_usage(&self) -> Result<u64> {
        let path = match self.stat_dir("memory") {
            Some(Dir::V1(d)) => d.join("memory.usage_in_bytes"),
            Some(Dir::V2(d)) => d.join("memory.current"),
            None => return Ok(0),
        };
        Ok(single(&path)?.unwrap_or(0))
    }

    /// The directory of a controller (by its v1 name): its v1 hierarchy, else the
    /// unified directory.
    fn stat_dir(&self, v1_name: &str) -> Option<Dir<'_>> {
        if self.version() != Version::V2 {
            if let Some(p) = self.path(v1_name) {
                return Some(Dir::V1(p));
            }
        }
        self.unified_path().map(Dir::V2)
    }

    fn cpu_stats(&self, s: &mut CpuStats) -> Result<()> {
        match self.stat_dir("cpuacct") {
            Some(Dir::V1(d)) => cpuacct_v1(d, s)?,
            // cpu.stat has the usage lines even without the cpu controller.
            Some(Dir::V2(d)) => cpu_stat_v2(d, s)?,
            None => {}
        }
        if let Some(Dir::V1(d)) = self.stat_dir("cpu") {
            cpu_stat_v1(d, s)?;
        }
        Ok(())
    }

    /// Fills `s`; returns the OOM kill count.
    fn memory_stats(&self, s: &mut MemoryStats) -> Result<u64> {
        match self.stat_dir("memory") {
            Some(Dir::V1(d)) => memory_v1(d, s),
            Some(Dir::V2(d)) => memory_v2(d, s),
            None => Ok(0),
        }
    }
}

/// Read a file; `None` if it does not exist.
fn read_opt(path: &Path) -> Result<Option<String>> {
    match fs::read_raw(path) {
        Ok(text) => Ok(Some(text)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(Error::Read {
            path: path.to_owned(),
            source,
        }),
    }
}

fn parse_error(path: &Path, reason: String) -> Error {
    Error::Parse {
        path: path.to_owned(),
        reason,
    }
}

fn number(path: &Path, what: &str, v: &str) -> Result<u64> {
    v.parse()
        .map_err(|_| parse_error(path, format!("{what}: {v:?} is not a number")))
}

/// A file holding one number; `None` if missing.
fn single(path: &Path) -> Result<Option<u64>> {
    match read_opt(path)? {
        Some(text) => number(path, "value", text.trim()).map(Some),
        None => Ok(None),
    }
}

/// A limit file: a number, or `max` (→ `None`); missing → `Ok(None)` too.
fn limit(path: &Path) -> Result<Option<u64>> {
    match read_opt(path)? {
        Some(text) if text.trim() == "max" => Ok(None),
        Some(text) => number(path, "limit", text.trim()).map(Some),
        None => Ok(None),
    }
}

/// The value of `key` in a flat-keyed file (`key value` lines, e.g. `memory.stat`).
fn keyed(path: &Path, text: &str, key: &str) -> Result<Option<u64>> {
    for line in text.lines() {
        let mut f = line.split_whitespace();
        if f.next() == Some(key) {
            let v = f.next().unwrap_or("");
            return number(path, key, v).map(Some);
        }
    }
    Ok(None)
}

/// The given keys of a flat-keyed file, missing file or key → 0.
fn keyed_file<const N: usize>(path: &Path, keys: [&str; N]) -> Result<Option<[u64; N]>> {
    let Some(text) = read_opt(path)? else {
        return Ok(None);
    };
    let mut out = [0; N];
    for (o, k) in out.iter_mut().zip(keys) {
        *o = keyed(path, &text, k)?.unwrap_or(0);
    }
    Ok(Some(out))
}

/// The length of a USER_HZ tick in nanoseconds (`cpuacct.stat` counts in ticks).
fn tick_ns() -> u64 {
    let hz = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
        .ok()
        .flatten()
        .filter(|&hz| hz > 0)
        .unwrap_or(100);
    1_000_000_000 / hz as u64
}

fn cpuacct_v1(d: &Path, s: &mut CpuStats) -> Result<()> {
    s.usage_ns = single(&d.join("cpuacct.usage"))?.unwrap_or(0);
    if let Some([user, system]) = keyed_file(&d.join("cpuacct.stat"), ["user", "system"])? {
        let tick = tick_ns();
        s.user_ns = user.saturating_mul(tick);
        s.system_ns = system.saturating_mul(tick);
    }
    Ok(())
}

fn cpu_stat_v1(d: &Path, s: &mut CpuStats) -> Result<()> {
    let keys = ["nr_periods", "nr_throttled", "throttled_time"];
    if let Some([periods, throttled, ns]) = keyed_file(&d.join("cpu.stat"), keys)? {
        s.periods = periods;
        s.throttled_periods = throttled;
        s.throttled_ns = ns;
    }
    Ok(())
}

fn cpu_stat_v2(d: &Path, s: &mut CpuStats) -> Result<()> {
    let keys = [
        "usage_usec",
        "user_usec",
        "system_usec",
        "nr_periods",
        "nr_throttled",
        "throttled_usec",
    ];
    if let Some([usage, user, system, periods, throttled, t_us]) =
        keyed_file(&d.join("cpu.stat"), keys)?
    {
        s.usage_ns = usage.saturating_mul(1000);
        s.user_ns = user.saturating_mul(1000);
        s.system_ns = system.saturating_mul(1000);
        s.periods = periods;
        s.throttled_periods = throttled;
        s.throttled_ns = t_us.saturating_mul(1000);
    }
    Ok(())
}

fn memory_v1(d: &Path, s: &mut MemoryStats) -> Result<u64> {
    s.usage = single(&d.join("memory.usage_in_bytes"))?.unwrap_or(0);
    s.limit = match single(&d.join("memory.limit_in_bytes"))? {
        Some(l) if l < V1_UNLIMITED => l,
        _ => u64::MAX,
    };
    s.max_usage = single(&d.join("memory.max_usage_in_bytes"))?.unwrap_or(0);
    if let Some(memsw) = single(&d.join("memory.memsw.usage_in_bytes"))? {
        s.swap_usage = memsw.saturating_sub(s.usage);
    }
    let path = d.join("memory.stat");
    if let Some(text) = read_opt(&path)? {
        // total_* include child cgroups; plain names are this cgroup alone.
        let either = |total: &str, own: &str| -> Result<u64> {
            Ok(match keyed(&path, &text, total)? {
                Some(v) => v,
                None => keyed(&path, &text, own)?.unwrap_or(0),
            })
        };
        s.cache = either("total_cache", "cache")?;
        s.rss = either("total_rss", "rss")?;
    }
    let kills = keyed_file(&d.join("memory.oom_control"), ["oom_kill"])?.map_or(0, |[k]| k);
    s.oom_events = kills;
    Ok(kills)
}

fn memory_v2(d: &Path, s: &mut MemoryStats) -> Result<u64> {
    s.usage = single(&d.join("memory.current"))?.unwrap_or(0);
    s.limit = limit(&d.join("memory.max"))?.unwrap_or(u64::MAX);
    s.max_usage = single(&d.join("memory.peak"))?.unwrap_or(0);
    s.swap_usage = single(&d.join("memory.swap.current"))?.unwrap_or(0);
    if let Some([file, anon]) = keyed_file(&d.join("memory.stat"), ["file", "anon"])? {
        s.cache = file;
        s.rss = anon;
    }
    let events = keyed_file(&d.join("memory.events"), ["oom", "oom_kill"])?;
    let [oom, kills] = events.unwrap_or_default();
    s.oom_events = oom;
    Ok(kills)
}

fn pids_stats(d: Dir<'_>, s: &mut PidsStats) -> Result<()> {
    let (Dir::V1(d) | Dir::V2(d)) = d;
    s.current = single(&d.join("pids.current"))?.unwrap_or(0);
    s.limit = limit(&d.join("pids.max"))?.unwrap_or(0);
    Ok(())
}

fn io_stats(d: Dir<'_>) -> Result<Vec<IoEntry>> {
    let mut devs: BTreeMap<(u64, u64), IoEntry> = BTreeMap::new();
    match d {
        Dir::V1(d) => blkio_v1(d, &mut devs)?,
        Dir::V2(d) => {
            let path = d.join("io.stat");
            if let Some(text) = read_opt(&path)? {
                io_stat_v2(&path, &text, &mut devs)?;
            }
        }
    }
    Ok(devs.into_values().collect())
}

/// The first pair of v1 blkio stat files that has a device line: the throttle layer's
/// (every bio passes it), recursive first, then BFQ's.
fn blkio_v1(d: &Path, devs: &mut BTreeMap<(u64, u64), IoEntry>) -> Result<()> {
    const PAIRS: [(&str, &str); 4] = [
        (
            "blkio.throttle.io_service_bytes_recursive",
            "blkio.throttle.io_serviced_recursive",
        ),
        (
            "blkio.throttle.io_service_bytes",
            "blkio.throttle.io_serviced",
        ),
        (
            "blkio.bfq.io_service_bytes_recursive",
            "blkio.bfq.io_serviced_recursive",
        ),
        ("blkio.bfq.io_service_bytes", "blkio.bfq.io_serviced"),
    ];
    for (bytes, ios) in PAIRS {
        let bytes = d.join(bytes);
        let Some(text) = read_opt(&bytes)? else {
            continue;
        };
        if !blkio_rwstat(&bytes, &text, devs, |e| {
            (&mut e.read_bytes, &mut e.write_bytes)
        })? {
            continue;
        }
        let ios = d.join(ios);
        if let Some(text) = read_opt(&ios)? {
            blkio_rwstat(&ios, &text, devs, |e| (&mut e.read_ios, &mut e.write_ios))?;
        }
        return Ok(());
    }
    Ok(())
}

/// Parse a v1 rwstat file (`8:0 Read 4096` ... `8:0 Total 4096`, ending with a
/// `Total N` line) into the (read, write) fields `which` picks. Returns whether it had
/// any device line.
fn blkio_rwstat(
    path: &Path,
    text: &str,
    devs: &mut BTreeMap<(u64, u64), IoEntry>,
    which: impl Fn(&mut IoEntry) -> (&mut u64, &mut u64),
) -> Result<bool> {
    let mut any = false;
    for line in text.lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        let [dev, op, v] = f[..] else {
            continue; // "Total N", blank lines
        };
        let (major, minor) = device(path, dev)?;
        let v = number(path, op, v)?;
        let e = devs.entry((major, minor)).or_insert_with(|| IoEntry {
            major,
            minor,
            ..IoEntry::default()
        });
        any = true;
        let (r, w) = which(e);
        match op {
            "Read" => *r = v,
            "Write" => *w = v,
            _ => {}
        }
    }
    Ok(any)
}

/// `MAJ:MIN`.
fn device(path: &Path, dev: &str) -> Result<(u64, u64)> {
    let (major, minor) = dev
        .split_once(':')
        .ok_or_else(|| parse_error(path, format!("{dev:?} is not a MAJ:MIN device")))?;
    Ok((number(path, "major", major)?, number(path, "minor", minor)?))
}

/// v2 `io.stat`: `8:16 rbytes=1459200 wbytes=314773504 rios=192 wios=353 dbytes=0 dios=0`;
/// unknown keys are skipped.
fn io_stat_v2(path: &Path, text: &str, devs: &mut BTreeMap<(u64, u64), IoEntry>) -> Result<()> {
    for line in text.lines() {
        let mut f = line.split_whitespace();
        let Some(dev) = f.next() else { continue };
        let (major, minor) = device(path, dev)?;
        let e = devs.entry((major, minor)).or_insert_with(|| IoEntry {
            major,
            minor,
            ..IoEntry::default()
        });
        for kv in f {
            let Some((k, v)) = kv.split_once('=') else {
                continue;
            };
            let field = match k {
                "rbytes" => &mut e.read_bytes,
                "wbytes" => &mut e.write_bytes,
                "rios" => &mut e.read_ios,
                "wios" => &mut e.write_ios,
                _ => continue,
            };
            *field = number(path, k, v)?;
        }
    }
    Ok(())
}

/// One entry per page size, found by listing the directory (`hugetlb.2MB.usage_in_bytes`
/// on v1, `hugetlb.2MB.current` on v2; the `rsvd` files are skipped).
fn hugetlb_stats(d: Dir<'_>) -> Result<BTreeMap<String, HugetlbStats>> {
    let (dir, suffix) = match d {
        Dir::V1(d) => (d, ".usage_in_bytes"),
        Dir::V2(d) => (d, ".current"),
    };
    let mut out = BTreeMap::new();
    for size in hugetlb_sizes(dir, suffix)? {
        let file = |name: &str| dir.join(format!("hugetlb.{size}.{name}"));
        let s = match d {
            Dir::V1(_) => HugetlbStats {
                usage: single(&file("usage_in_bytes"))?.unwrap_or(0),
                max_usage: single(&file("max_usage_in_bytes"))?.unwrap_or(0),
                failcnt: single(&file("failcnt"))?.unwrap_or(0),
            },
            Dir::V2(_) => HugetlbStats {
                usage: single(&file("current"))?.unwrap_or(0),
                max_usage: 0,
                failcnt: keyed_file(&file("events"), ["max"])?.map_or(0, |[m]| m),
            },
        };
        out.insert(size, s);
    }
    Ok(out)
}

/// The page sizes with a `hugetlb.<size><suffix>` file in `dir`.
fn hugetlb_sizes(dir: &Path, suffix: &str) -> Result<Vec<String>> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => {
            return Err(Error::ReadDir {
                path: PathBuf::from(dir),
                source,
            })
        }
    };
    let mut sizes = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|source| Error::ReadDir {
            path: dir.to_owned(),
            source,
        })?;
        let name = entry.file_name();
        let Some(size) = name
            .to_str()
            .and_then(|n| n.strip_prefix("hugetlb."))
            .and_then(|n| n.strip_suffix(suffix))
        else {
            continue;
        };
        if !size.is_empty() && !size.contains('.') {
            sizes.push(size.to_owned());
        }
    }
    Ok(sizes)
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use tempfile::TempDir;

    use super::*;
    use crate::hierarchy::tests::{HYBRID, V2};
    use crate::testutil::{detect, files, leaf, V1_ALL};

    /// Copied from the development host (Linux 6.18, v1 memory cgroup of a busy
    /// process), except `cache`/`rss`, lowered to show that `total_*` (which counts
    /// child cgroups too) wins.
    const V1_MEMORY_STAT: &str = "\
cache 671000000
rss 2000000
rss_huge 0
shmem 0
mapped_file 35557376
dirty 37412864
writeback 0
workingset_refault_anon 0
workingset_refault_file 309671
swap 0
swapcached 0
pgpgin 1150732
pgpgout 1005776
pgfault 1065154
pgmajfault 1079
inactive_anon 2187264
active_anon 8192
inactive_file 316768256
active_file 355012608
unevictable 0
hierarchical_memory_limit 9223372036854771712
hierarchical_memsw_limit 9223372036854771712
total_cache 671780864
total_rss 2306048
total_rss_huge 0
total_shmem 0
total_mapped_file 35557376
total_dirty 37412864
total_writeback 0
total_swap 0
total_pgpgin 1150732
total_pgpgout 1005776
total_pgfault 1065154
total_pgmajfault 1079
total_unevictable 0
";

    /// The rwstat format of `blkio.throttle.io_service_bytes` (block/blk-cgroup.c).
    const V1_IO_BYTES: &str = "\
8:16 Read 4096
8:16 Write 0
8:16 Sync 4096
8:16 Async 0
8:16 Discard 0
8:16 Total 4096
8:0 Read 1105920
8:0 Write 8192
8:0 Sync 1114112
8:0 Async 0
8:0 Discard 0
8:0 Total 1114112
Total 1118208
";

    const V1_IO_SERVICED: &str = "\
8:0 Read 270
8:0 Write 2
8:0 Sync 272
8:0 Async 0
8:0 Discard 0
8:0 Total 272
8:16 Read 1
8:16 Write 0
8:16 Sync 1
8:16 Async 0
8:16 Discard 0
8:16 Total 1
Total 273
";

    /// A v1 container directory in every hierarchy, with realistic stat files.
    fn v1_fixture(root: &Path) {
        files(
            &leaf(root, "cpu,cpuacct"),
            &[
                ("cpuacct.usage", "2744561410721\n"),
                ("cpuacct.stat", "user 200571\nsystem 73885\n"),
                (
                    "cpu.stat",
                    "nr_periods 120\nnr_throttled 7\nthrottled_time 31000000\nnr_bursts 0\nburst_time 0\n",
                ),
            ],
        );
        files(
            &leaf(root, "memory"),
            &[
                ("memory.usage_in_bytes", "682274816\n"),
                ("memory.max_usage_in_bytes", "992206848\n"),
                ("memory.limit_in_bytes", "9223372036854771712\n"),
                ("memory.memsw.usage_in_bytes", "682278912\n"),
                ("memory.stat", V1_MEMORY_STAT),
                (
                    "memory.oom_control",
                    "oom_kill_disable 0\nunder_oom 0\noom_kill 2\n",
                ),
            ],
        );
        files(
            &leaf(root, "pids"),
            &[("pids.current", "3\n"), ("pids.max", "max\n")],
        );
        files(
            &leaf(root, "blkio"),
            &[
                // The recursive files have no device line yet: skipped.
                ("blkio.throttle.io_service_bytes_recursive", "Total 0\n"),
                ("blkio.throttle.io_serviced_recursive", "Total 0\n"),
                ("blkio.throttle.io_service_bytes", V1_IO_BYTES),
                ("blkio.throttle.io_serviced", V1_IO_SERVICED),
            ],
        );
        files(
            &leaf(root, "hugetlb"),
            &[
                ("hugetlb.2MB.usage_in_bytes", "4194304\n"),
                ("hugetlb.2MB.max_usage_in_bytes", "8388608\n"),
                ("hugetlb.2MB.failcnt", "1\n"),
                ("hugetlb.2MB.limit_in_bytes", "9223372036854771712\n"),
                ("hugetlb.2MB.rsvd.usage_in_bytes", "0\n"),
                ("hugetlb.1GB.usage_in_bytes", "0\n"),
                ("hugetlb.1GB.max_usage_in_bytes", "0\n"),
                ("hugetlb.1GB.failcnt", "0\n"),
            ],
        );
    }

    fn tick() -> u64 {
        tick_ns()
    }

    #[test]
    fn v1_every_figure() {
        let tmp = TempDir::new().unwrap();
        v1_fixture(tmp.path());
        let cg = Cgroup::new(&detect(tmp.path(), V1_ALL), "/onggi/c1", "").unwrap();
        let s = cg.stats().unwrap();
        assert_eq!(
            s.cpu,
            CpuStats {
                usage_ns: 2_744_561_410_721,
                user_ns: 200_571 * tick(),
                system_ns: 73_885 * tick(),
                periods: 120,
                throttled_periods: 7,
                throttled_ns: 31_000_000,
            }
        );
        assert_eq!(
            s.memory,
            MemoryStats {
                usage: 682_274_816,
                limit: u64::MAX,
                max_usage: 992_206_848,
                swap_usage: 4096,
                cache: 671_780_864,
                rss: 2_306_048,
                oom_events: 2,
            }
        );
        assert_eq!(s.oom_kills, 2);
        assert_eq!(cg.oom_kill_count().unwrap(), 2);
        assert_eq!(
            s.pids,
            PidsStats {
                current: 3,
                limit: 0
            }
        );
        assert_eq!(
            s.io,
            [
                IoEntry {
                    major: 8,
                    minor: 0,
                    read_bytes: 1_105_920,
                    write_bytes: 8192,
                    read_ios: 270,
                    write_ios: 2,
                },
                IoEntry {
                    major: 8,
                    minor: 16,
                    read_bytes: 4096,
                    write_bytes: 0,
                    read_ios: 1,
                    write_ios: 0,
                },
            ]
        );
        assert_eq!(s.hugetlb.len(), 2, "{:?}", s.hugetlb);
        assert_eq!(
            s.hugetlb["2MB"],
            HugetlbStats {
                usage: 4_194_304,
                max_usage: 8_388_608,
                failcnt: 1,
            }
        );
        assert_eq!(s.hugetlb["1GB"], HugetlbStats::default());
        assert_eq!(cg.memory_usage().unwrap(), 682_274_816);
    }

    #[test]
    fn v1_limits_and_fallbacks() {
        let tmp = TempDir::new().unwrap();
        let root = tmp.path();
        files(
            &leaf(root, "memory"),
            &[
                ("memory.usage_in_bytes", "100\n"),
                ("memory.limit_in_bytes", "67108864\n"),
                // Plain names only (no total_*), no memsw file (no swap accounting).
                ("memory.stat", "cache 10\nrss 20\n"),
            ],
        );
        files(&leaf(root, "pids"), &[("pids.max", "10\n")]);
        files(
            &leaf(root, "blkio"),
            &[
                ("blkio.throttle.io_service_bytes", "Total 0\n"),
                (
                    "blkio.bfq.io_service_bytes_recursive",
                    "8:0 Read 5\n8:0 Write 6\nTotal 11\n",
                ),
                (
                    "blkio.bfq.io_serviced_recursive",
                    "8:0 Read 1\n8:0 Write 2\nTotal 3\n",
                ),
            ],
        );
        let cg = Cgroup::new(&detect(root, V1_ALL), "/onggi/c1", "").unwrap();
        let s = cg.stats().unwrap();
        assert_eq!(s.memory.limit, 64 << 20);
        assert_eq!(
            (s.memory.cache, s.memory.rss, s.memory.swap_usage),
            (10, 20, 0)
        );
        assert_eq!(s.pids.limit, 10);
        assert_eq!(
            s.io,
            [IoEntry {
                major: 8,
                minor: 0,
                read_bytes: 5,
                write_bytes: 6,
                read_ios: 1,
                write_ios: 2,
            }]
        );
        assert_eq!(s.cpu, CpuStats::default());
    }

    #[test]
    fn missing_files_are_zero_and_no_limit() {
        let tmp = TempDir::new().unwrap();
        for template in [V1_ALL, V2, HYBRID] {
            let cg = Cgroup::new(&detect(tmp.path(), template), "/onggi/c1", "").unwrap();
            let s = cg.stats().unwrap();
            assert_eq!(s, Stats::default(), "{template}");
            assert_eq!(s.memory.limit, u64::MAX);
            assert_eq!(cg.oom_kill_count().unwrap(), 0);
        }
    }

    #[test]
    fn parse_errors_name_the_file() {
        let cases: [(&str, &str, &str); 6] = [
            ("memory", "memory.usage_in_bytes", "lots\n"),
            ("memory", "memory.stat", "total_cache x\n"),
            ("memory", "memory.oom_control", "oom_kill -1\n"),
            ("cpu,cpuacct", "cpuacct.stat", "user 1.5\n"),
            ("pids", "pids.max", "none\n"),
            (
                "blkio",
                "blkio.throttle.io_service_bytes_recursive",
                "8-0 Read 1\n",
            ),
        ];
        for (mount, file, content) in cases {
            let tmp = TempDir::new().unwrap();
            files(&leaf(tmp.path(), mount), &[(file, content)]);
            let cg = Cgroup::new(&detect(tmp.path(), V1_ALL), "/onggi/c1", "").unwrap();
            let e = cg.stats().unwrap_err();
            assert!(
                matches!(&e, Error::Parse { path, .. } if path.ends_with(file)),
                "{file}: {e}"
            );
            assert!(e.to_string().contains(file), "{e}");
        }
    }

    /// A v2 container directory; formats from Documentation/admin-guide/cgroup-v2.rst.
    fn v2_fixture(dir: &Path) {
        files(
            dir,
            &[
                (
                    "cpu.stat",
                    "usage_usec 1234567\nuser_usec 1000000\nsystem_usec 234567\n\
                     core_sched.force_idle_usec 0\nnr_periods 10\nnr_throttled 2\n\
                     throttled_usec 5000\nnr_bursts 0\nburst_usec 0\n",
                ),
                ("memory.current", "52428800\n"),
                ("memory.max", "67108864\n"),
                ("memory.peak", "60000000\n"),
                ("memory.swap.current", "4096\n"),
                (
                    "memory.stat",
                    "anon 20971520\nfile 31457280\nkernel 1048576\nkernel_stack 65536\n\
                     pagetables 131072\nsock 0\nshmem 0\nfile_mapped 0\nfile_dirty 0\n",
                ),
                (
                    "memory.events",
                    "low 0\nhigh 0\nmax 12\noom 3\noom_kill 2\noom_group_kill 0\n",
                ),
                ("pids.current", "4\n"),
                ("pids.max", "100\n"),
                (
                    "io.stat",
                    "8:16 rbytes=1459200 wbytes=314773504 rios=192 wios=353 dbytes=0 dios=0\n\
                     8:0 rbytes=90430464 wbytes=299008000 rios=8950 wios=1252 dbytes=50331648 dios=3021\n",
                ),
                ("hugetlb.2MB.current", "2097152\n"),
                ("hugetlb.2MB.events", "max 4\n"),
                ("hugetlb.2MB.max", "max\n"),
                ("hugetlb.2MB.rsvd.current", "0\n"),
            ],
        );
    }

    #[test]
    fn v2_every_figure() {
        let tmp = TempDir::new().unwrap();
        let cg = Cgroup::new(&detect(tmp.path(), V2), "/onggi/c1", "").unwrap();
        v2_fixture(cg.unified_path().unwrap());
        let s = cg.stats().unwrap();
        assert_eq!(
            s.cpu,
            CpuStats {
                usage_ns: 1_234_567_000,
                user_ns: 1_000_000_000,
                system_ns: 234_567_000,
                periods: 10,
                throttled_periods: 2,
                throttled_ns: 5_000_000,
            }
        );
        assert_eq!(
            s.memory,
            MemoryStats {
                usage: 52_428_800,
                limit: 67_108_864,
                max_usage: 60_000_000,
                swap_usage: 4096,
                cache: 31_457_280,
                rss: 20_971_520,
                oom_events: 3,
            }
        );
        assert_eq!(s.oom_kills, 2);
        assert_eq!(cg.oom_kill_count().unwrap(), 2);
        assert_eq!(
            s.pids,
            PidsStats {
                current: 4,
                limit: 100
            }
        );
        assert_eq!(s.io.len(), 2);
        assert_eq!(
            s.io[0],
            IoEntry {
                major: 8,
                minor: 0,
                read_bytes: 90_430_464,
                write_bytes: 299_008_000,
                read_ios: 8950,
                write_ios: 1252,
            }
        );
        assert_eq!((s.io[1].minor, s.io[1].write_ios), (16, 353));
        assert_eq!(
            s.hugetlb,
            BTreeMap::from([(
                "2MB".to_owned(),
                HugetlbStats {
                    usage: 2_097_152,
                    max_usage: 0,
                    failcnt: 4,
                }
            )])
        );
        assert_eq!(cg.memory_usage().unwrap(), 52_428_800);
    }

    #[test]
    fn v2_max_and_parse_errors() {
        let tmp = TempDir::new().unwrap();
        let cg = Cgroup::new(&detect(tmp.path(), V2), "/onggi/c1", "").unwrap();
        let dir = cg.unified_path().unwrap();
        files(dir, &[("memory.max", "max\n"), ("pids.max", "max\n")]);
        let s = cg.stats().unwrap();
        assert_eq!((s.memory.limit, s.pids.limit), (u64::MAX, 0));
        for (file, content) in [
            ("io.stat", "8:0 rbytes=many\n"),
            ("cpu.stat", "usage_usec\n"),
            ("memory.events", "oom_kill 1e3\n"),
            ("hugetlb.2MB.current", "?\n"),
        ] {
            files(dir, &[(file, content)]);
            let e = cg.stats().unwrap_err();
            assert!(
                matches!(&e, Error::Parse { path, .. } if path.ends_with(file)),
                "{file}: {e}"
            );
            std::fs::remove_file(dir.join(file)).unwrap();
        }
    }

    #[test]
    fn hybrid_reads_v1_controllers_and_unified_hugetlb() {
        let tmp = TempDir::new().unwrap();
        let root = tmp.path();
        files(
            &leaf(root, "cpuacct"),
            &[
                ("cpuacct.usage", "5000\n"),
                ("cpuacct.stat", "user 1\nsystem 2\n"),
            ],
        );
        files(
            &leaf(root, "cpu"),
            &[(
                "cpu.stat",
                "nr_periods 3\nnr_throttled 1\nthrottled_time 9\n",
            )],
        );
        files(&leaf(root, "pids"), &[("pids.current", "1\n")]);
        // The unified directory has cpu.stat and pids-less files too: v1 wins.
        files(
            &leaf(root, "unified"),
            &[
                ("cpu.stat", "usage_usec 999\nuser_usec 999\nsystem_usec 0\n"),
                ("hugetlb.1GB.current", "1073741824\n"),
                ("hugetlb.1GB.events", "max 0\n"),
            ],
        );
        let cg = Cgroup::new(&detect(root, HYBRID), "/onggi/c1", "").unwrap();
        let s = cg.stats().unwrap();
        assert_eq!(s.cpu.usage_ns, 5000);
        assert_eq!((s.cpu.user_ns, s.cpu.system_ns), (tick(), 2 * tick()));
        assert_eq!((s.cpu.periods, s.cpu.throttled_ns), (3, 9));
        assert_eq!(s.pids.current, 1);
        assert_eq!(s.hugetlb["1GB"].usage, 1 << 30);
    }

    #[test]
    fn serializes_with_the_field_names() {
        let mut s = Stats::default();
        s.io.push(IoEntry {
            major: 8,
            read_bytes: 1,
            ..IoEntry::default()
        });
        s.hugetlb.insert("2MB".to_owned(), HugetlbStats::default());
        let v = serde_json::to_value(&s).unwrap();
        assert_eq!(v["memory"]["limit"], u64::MAX);
        assert_eq!(v["io"][0]["read_bytes"], 1);
        assert_eq!(v["hugetlb"]["2MB"]["failcnt"], 0);
        assert_eq!(v["cpu"]["throttled_ns"], 0);
        assert_eq!(v["pids"]["limit"], 0);
        assert_eq!(v["oom_kills"], 0);
    }
}
