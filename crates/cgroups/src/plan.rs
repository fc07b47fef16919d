//! Turning OCI `linux.resources` into an ordered list of control-file writes.
//!
//! This is pure: where each controller lives is asked through `Host`, values are
//! validated and converted here (v1 and v2 spell most knobs differently), and
//! [`crate::Cgroup::apply`] only executes the list. The mapping follows runc's
//! `libcontainer/cgroups/fs` (v1) and `fs2` (v2), field by field:
//!
//! | OCI field                     | v1 file                          | v2 file                 |
//! |-------------------------------|----------------------------------|-------------------------|
//! | memory.limit                  | memory.limit_in_bytes            | memory.max              |
//! | memory.swap (memory+swap)     | memory.memsw.limit_in_bytes      | memory.swap.max (swap−limit) |
//! | memory.reservation            | memory.soft_limit_in_bytes       | memory.low              |
//! | memory.swappiness             | memory.swappiness                | ignored (no such knob)  |
//! | memory.disableOOMKiller       | memory.oom_control               | ignored (no such knob)  |
//! | cpu.shares                    | cpu.shares                       | cpu.weight (converted)  |
//! | cpu.quota / cpu.period        | cpu.cfs_quota_us / cfs_period_us | cpu.max                 |
//! | cpu.burst / cpu.idle          | cpu.cfs_burst_us / cpu.idle      | cpu.max.burst / cpu.idle|
//! | cpu.realtime{Runtime,Period}  | cpu.rt_runtime_us / rt_period_us | refused                 |
//! | cpu.cpus / cpu.mems           | cpuset.cpus / cpuset.mems        | same                    |
//! | pids.limit                    | pids.max                         | pids.max                |
//! | devices                       | devices.deny "a", then each rule | ignored (needs eBPF)    |
//! | hugepageLimits                | hugetlb.SIZE.limit_in_bytes (+ rsvd) | hugetlb.SIZE.max (+ rsvd) |
//! | blockIO.weight                | blkio.bfq.weight or blkio.weight | io.bfq.weight or io.weight |
//! | blockIO.throttle*             | blkio.throttle.*_device          | io.max                  |
//! | unified                       | refused                          | each key as a file      |
//!
//! As in runc, a numeric field set to 0 means "not set" (except `cpu.idle`/`cpu.burst`
//! and `memory.swappiness`, where 0 is a value). Deprecated `memory.kernel`/`kernelTCP`,
//! `useHierarchy` and `checkBeforeUpdate` are ignored; `network`, `rdma`,
//! `blockIO.leafWeight` and `blockIO.weightDevice` are refused as not supported yet.

use std::borrow::Cow;

use oci_spec::runtime::{
    LinuxBlockIo, LinuxCpu, LinuxDeviceCgroup, LinuxDeviceType, LinuxHugepageLimit, LinuxMemory,
    LinuxResources, LinuxThrottleDevice,
};

use crate::error::{Error, Result};
use crate::hierarchy::Version;

/// The controllers `apply` writes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Ctrl {
    Cpu,
    Cpuset,
    Memory,
    Pids,
    Devices,
    Blkio,
    Hugetlb,
}

impl Ctrl {
    /// The v1 controller name (as in mount options and `/proc/self/cgroup`).
    pub(crate) fn v1_name(self) -> &'static str {
        match self {
            Ctrl::Cpu => "cpu",
            Ctrl::Cpuset => "cpuset",
            Ctrl::Memory => "memory",
            Ctrl::Pids => "pids",
            Ctrl::Devices => "devices",
            Ctrl::Blkio => "blkio",
            Ctrl::Hugetlb => "hugetlb",
        }
    }

    /// The v2 controller name (as in `cgroup.controllers`).
    pub(crate) fn v2_name(self) -> &'static str {
        match self {
            Ctrl::Blkio => "io",
            c => c.v1_name(),
        }
    }

    /// A bit for sets of controllers.
    pub(crate) fn bit(self) -> u32 {
        1 << self as u32
    }
}

/// Which interface a controller is driven through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Flavor {
    V1,
    V2,
}

/// Where the host keeps each controller; implemented by `Cgroup`, faked in tests.
pub(crate) trait Host {
    /// V1, V2 or Hybrid.
    fn version(&self) -> Version;
    /// The interface that drives `c`, or `None` if it is not available.
    fn flavor(&self, c: Ctrl) -> Result<Option<Flavor>>;
    /// Is the v2 controller `name` (any, e.g. `rdma`) available in the container's
    /// cgroup? Only asked on V2.
    fn v2_has(&self, name: &str) -> Result<bool>;
}

/// Which directory a write goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Target {
    /// The container's directory in the v1 hierarchy of this controller.
    V1(Ctrl),
    /// The container's unified (v2) directory; the controller, when known, must be
    /// enabled in the parents (done lazily on Hybrid).
    V2(Option<Ctrl>),
}

/// What to do when a write fails.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum OnError {
    /// Return the error.
    Fail,
    /// `ENOENT` (the kernel lacks this knob): skip it.
    SkipIfMissing,
    /// `ENOENT`: write this file and value instead.
    Fallback(&'static str, String),
    /// `EINVAL`: run the next step first, then retry this one (a new memory limit above
    /// the current memory+swap limit, a new period that breaks the current quota).
    RetryAfterNext,
}

/// One write of a value into a control file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Step {
    pub target: Target,
    pub file: Cow<'static, str>,
    pub value: String,
    /// The OCI field this write comes from (for errors).
    pub field: &'static str,
    pub on_error: OnError,
}

/// Build the writes for `r`, validating every set field.
pub(crate) fn plan(r: &LinuxResources, host: &dyn Host) -> Result<Vec<Step>> {
    let mut p = Planner {
        host,
        steps: Vec::with_capacity(16),
    };
    if let Some(m) = r.memory() {
        p.memory(m)?;
    }
    if let Some(c) = r.cpu() {
        p.cpu(c)?;
        p.cpuset(c)?;
    }
    if let Some(pids) = r.pids() {
        p.pids(pids.limit())?;
    }
    if let Some(d) = r.devices() {
        p.devices(d)?;
    }
    if let Some(h) = r.hugepage_limits() {
        p.hugetlb(h)?;
    }
    if let Some(b) = r.block_io() {
        p.block_io(b)?;
    }
    if let Some(n) = r.network() {
        if n.class_id().is_some() || n.priorities().as_ref().is_some_and(|v| !v.is_empty()) {
            return unsupported("linux.resources.network", "net_cls/net_prio");
        }
    }
    if r.rdma().as_ref().is_some_and(|m| !m.is_empty()) {
        return unsupported("linux.resources.rdma", "the rdma controller");
    }
    if let Some(u) = r.unified() {
        p.unified(u)?;
    }
    Ok(p.steps)
}

fn unsupported<T>(field: &'static str, reason: &'static str) -> Result<T> {
    Err(Error::Unsupported { field, reason })
}

fn invalid<T>(field: &'static str, reason: impl Into<String>) -> Result<T> {
    Err(Error::Invalid {
        field,
        reason: reason.into(),
    })
}

/// A byte count where -1 means unlimited.
fn check_bytes(field: &'static str, v: Option<i64>) -> Result<()> {
    match v {
        Some(n) if n < -1 => invalid(field, format!("{n} (must be -1 for unlimited, or >= 0)")),
        _ => Ok(()),
    }
}

/// -1 as v1 writes it, or as v2 writes it.
fn limit_str(n: i64, flavor: Flavor) -> String {
    match (n, flavor) {
        (-1, Flavor::V2) => "max".to_owned(),
        (n, _) => n.to_string(),
    }
}

struct Planner<'a> {
    host: &'a dyn Host,
    steps: Vec<Step>,
}

const MEM_LIMIT: &str = "linux.resources.memory.limit";
const MEM_SWAP: &str = "linux.resources.memory.swap";
const MEM_RESERVATION: &str = "linux.resources.memory.reservation";
const MEM_SWAPPINESS: &str = "linux.resources.memory.swappiness";
const MEM_OOM: &str = "linux.resources.memory.disableOOMKiller";
const CPU_SHARES: &str = "linux.resources.cpu.shares";
const CPU_QUOTA: &str = "linux.resources.cpu.quota";
const CPU_PERIOD: &str = "linux.resources.cpu.period";
const CPU_BURST: &str = "linux.resources.cpu.burst";
const CPU_IDLE: &str = "linux.resources.cpu.idle";
const CPU_RT_RUNTIME: &str = "linux.resources.cpu.realtimeRuntime";
const CPU_RT_PERIOD: &str = "linux.resources.cpu.realtimePeriod";
const CPU_CPUS: &str = "linux.resources.cpu.cpus";
const CPU_MEMS: &str = "linux.resources.cpu.mems";
const PIDS_LIMIT: &str = "linux.resources.pids.limit";
const DEVICES: &str = "linux.resources.devices";
const HUGEPAGES: &str = "linux.resources.hugepageLimits";
const BLKIO_WEIGHT: &str = "linux.resources.blockIO.weight";
const UNIFIED: &str = "linux.resources.unified";

impl Planner<'_> {
    /// The interface for `ctrl`, or MissingController naming `field`.
    fn need(&self, ctrl: Ctrl, field: &'static str) -> Result<Flavor> {
        self.host
            .flavor(ctrl)?
            .ok_or_else(|| Error::MissingController {
                controller: match self.host.version() {
                    Version::V2 => ctrl.v2_name(),
                    _ => ctrl.v1_name(),
                }
                .to_owned(),
                field,
            })
    }

    fn push(
        &mut self,
        flavor: Flavor,
        ctrl: Ctrl,
        file: impl Into<Cow<'static, str>>,
        value: String,
        field: &'static str,
    ) {
        self.push_with(flavor, ctrl, file, value, field, OnError::Fail);
    }

    fn push_with(
        &mut self,
        flavor: Flavor,
        ctrl: Ctrl,
        file: impl Into<Cow<'static, str>>,
        value: String,
        field: &'static str,
        on_error: OnError,
    ) {
        let target = match flavor {
            Flavor::V1 => Target::V1(ctrl),
            Flavor::V2 => Target::V2(Some(ctrl)),
        };
        self.steps.push(Step {
            target,
            file: file.into(),
            value,
            field,
            on_error,
        });
    }

    fn memory(&mut self, m: &LinuxMemory) -> Result<()> {
        let limit = m.limit().filter(|&n| n != 0);
        let swap = m.swap().filter(|&n| n != 0);
        let reservation = m.reservation().filter(|&n| n != 0);
        let swappiness = m.swappiness();
        let oom_off = m.disable_oom_killer() == Some(true);
        check_bytes(MEM_LIMIT, limit)?;
        check_bytes(MEM_SWAP, swap)?;
        check_bytes(MEM_RESERVATION, reservation)?;
        if let (Some(l), Some(s)) = (limit, swap) {
            if l > 0 && s > 0 && s < l {
                return invalid(
                    MEM_SWAP,
                    format!("{s} is below memory.limit {l} (swap is the memory+swap limit)"),
                );
            }
        }
        if let Some(s) = swappiness.filter(|&s| s > 100) {
            return invalid(MEM_SWAPPINESS, format!("{s} (must be 0..=100)"));
        }
        let first = [
            (limit.is_some(), MEM_LIMIT),
            (swap.is_some(), MEM_SWAP),
            (reservation.is_some(), MEM_RESERVATION),
            (swappiness.is_some(), MEM_SWAPPINESS),
            (oom_off, MEM_OOM),
        ]
        .into_iter()
        .find(|(set, _)| *set);
        let Some((_, field)) = first else {
            return Ok(());
        };
        let fl = self.need(Ctrl::Memory, field)?;
        match fl {
            Flavor::V1 => {
                if let Some(l) = limit {
                    // A limit above the current memory+swap limit is refused (EINVAL)
                    // until memsw is raised: then write memsw first.
                    let on_error = if swap.is_some() {
                        OnError::RetryAfterNext
                    } else {
                        OnError::Fail
                    };
                    self.push_with(
                        fl,
                        Ctrl::Memory,
                        "memory.limit_in_bytes",
                        l.to_string(),
                        MEM_LIMIT,
                        on_error,
                    );
                }
                if let Some(s) = swap {
                    self.push(
                        fl,
                        Ctrl::Memory,
                        "memory.memsw.limit_in_bytes",
                        s.to_string(),
                        MEM_SWAP,
                    );
                }
                if let Some(r) = reservation {
                    self.push(
                        fl,
                        Ctrl::Memory,
                        "memory.soft_limit_in_bytes",
                        r.to_string(),
                        MEM_RESERVATION,
                    );
                }
                if let Some(s) = swappiness {
                    self.push(
                        fl,
                        Ctrl::Memory,
                        "memory.swappiness",
                        s.to_string(),
                        MEM_SWAPPINESS,
                    );
                }
                if oom_off {
                    self.push(
                        fl,
                        Ctrl::Memory,
                        "memory.oom_control",
                        "1".to_owned(),
                        MEM_OOM,
                    );
                }
            }
            Flavor::V2 => {
                if let Some(s) = swap {
                    // OCI swap is memory+swap; memory.swap.max is swap alone.
                    let v = match (s, limit) {
                        (-1, _) => "max".to_owned(),
                        (s, Some(l)) if l > 0 => (s - l).to_string(),
                        _ => {
                            return invalid(
                                MEM_SWAP,
                                "on cgroup v2 a swap limit needs a memory limit",
                            )
                        }
                    };
                    self.push(fl, Ctrl::Memory, "memory.swap.max", v, MEM_SWAP);
                }
                if let Some(l) = limit {
                    self.push(fl, Ctrl::Memory, "memory.max", limit_str(l, fl), MEM_LIMIT);
                }
                if let Some(r) = reservation {
                    self.push(
                        fl,
                        Ctrl::Memory,
                        "memory.low",
                        limit_str(r, fl),
                        MEM_RESERVATION,
                    );
                }
            }
        }
        Ok(())
    }

    fn cpu(&mut self, c: &LinuxCpu) -> Result<()> {
        let shares = c.shares().filter(|&n| n != 0);
        let quota = c.quota().filter(|&n| n != 0);
        let period = c.period().filter(|&n| n != 0);
        let rt_runtime = c.realtime_runtime().filter(|&n| n != 0);
        let rt_period = c.realtime_period().filter(|&n| n != 0);
        if let Some(s) = shares.filter(|s| !(2..=262_144).contains(s)) {
            return invalid(CPU_SHARES, format!("{s} (must be 2..=262144)"));
        }
        if let Some(q) = quota.filter(|&q| q != -1 && q < 1000) {
            return invalid(
                CPU_QUOTA,
                format!("{q} us (must be -1 for unlimited, or >= 1000)"),
            );
        }
        if let Some(p) = period.filter(|p| !(1000..=1_000_000).contains(p)) {
            return invalid(CPU_PERIOD, format!("{p} us (must be 1000..=1000000)"));
        }
        if let Some(i) = c.idle().filter(|i| !(0..=1).contains(i)) {
            return invalid(CPU_IDLE, format!("{i} (must be 0 or 1)"));
        }
        if let Some(r) = rt_runtime.filter(|&r| r < -1) {
            return invalid(CPU_RT_RUNTIME, format!("{r} (must be -1 or >= 0)"));
        }
        let first = [
            (shares.is_some(), CPU_SHARES),
            (quota.is_some(), CPU_QUOTA),
            (period.is_some(), CPU_PERIOD),
            (c.burst().is_some(), CPU_BURST),
            (c.idle().is_some(), CPU_IDLE),
            (rt_runtime.is_some(), CPU_RT_RUNTIME),
            (rt_period.is_some(), CPU_RT_PERIOD),
        ]
        .into_iter()
        .find(|(set, _)| *set);
        let Some((_, field)) = first else {
            return Ok(());
        };
        let fl = self.need(Ctrl::Cpu, field)?;
        match fl {
            Flavor::V1 => {
                if let Some(s) = shares {
                    self.push(fl, Ctrl::Cpu, "cpu.shares", s.to_string(), CPU_SHARES);
                }
                if let Some(p) = period {
                    let on_error = if quota.is_some() {
                        OnError::RetryAfterNext
                    } else {
                        OnError::Fail
                    };
                    self.push_with(
                        fl,
                        Ctrl::Cpu,
                        "cpu.cfs_period_us",
                        p.to_string(),
                        CPU_PERIOD,
                        on_error,
                    );
                }
                if let Some(q) = quota {
                    self.push(fl, Ctrl::Cpu, "cpu.cfs_quota_us", q.to_string(), CPU_QUOTA);
                }
                if let Some(b) = c.burst() {
                    self.push(fl, Ctrl::Cpu, "cpu.cfs_burst_us", b.to_string(), CPU_BURST);
                }
                if let Some(p) = rt_period {
                    self.push(
                        fl,
                        Ctrl::Cpu,
                        "cpu.rt_period_us",
                        p.to_string(),
                        CPU_RT_PERIOD,
                    );
                }
                if let Some(r) = rt_runtime {
                    self.push(
                        fl,
                        Ctrl::Cpu,
                        "cpu.rt_runtime_us",
                        r.to_string(),
                        CPU_RT_RUNTIME,
                    );
                }
            }
            Flavor::V2 => {
                if rt_runtime.is_some() || rt_period.is_some() {
                    let field = if rt_runtime.is_some() {
                        CPU_RT_RUNTIME
                    } else {
                        CPU_RT_PERIOD
                    };
                    return invalid(field, "realtime scheduling is not supported on cgroup v2");
                }
                if let Some(s) = shares {
                    // runc's linear map of [2, 262144] onto [1, 10000].
                    let w = 1 + ((s - 2) * 9999) / 262_142;
                    self.push(fl, Ctrl::Cpu, "cpu.weight", w.to_string(), CPU_SHARES);
                }
                if quota.is_some() || period.is_some() {
                    let p = period.unwrap_or(100_000);
                    let v = match quota {
                        Some(q) if q > 0 => format!("{q} {p}"),
                        _ => format!("max {p}"),
                    };
                    self.push(
                        fl,
                        Ctrl::Cpu,
                        "cpu.max",
                        v,
                        if quota.is_some() {
                            CPU_QUOTA
                        } else {
                            CPU_PERIOD
                        },
                    );
                }
                if let Some(b) = c.burst() {
                    self.push(fl, Ctrl::Cpu, "cpu.max.burst", b.to_string(), CPU_BURST);
                }
            }
        }
        if let Some(i) = c.idle() {
            self.push(fl, Ctrl::Cpu, "cpu.idle", i.to_string(), CPU_IDLE);
        }
        Ok(())
    }

    fn cpuset(&mut self, c: &LinuxCpu) -> Result<()> {
        let cpus = c.cpus().as_deref().map(str::trim).filter(|s| !s.is_empty());
        let mems = c.mems().as_deref().map(str::trim).filter(|s| !s.is_empty());
        for (v, field) in [(cpus, CPU_CPUS), (mems, CPU_MEMS)] {
            let Some(v) = v else { continue };
            if !v
                .bytes()
                .all(|b| b.is_ascii_digit() || b == b',' || b == b'-')
            {
                return invalid(field, format!("{v:?} (must be a list like \"0-3,5\")"));
            }
            let fl = self.need(Ctrl::Cpuset, field)?;
            let file = if field == CPU_CPUS {
                "cpuset.cpus"
            } else {
                "cpuset.mems"
            };
            self.push(fl, Ctrl::Cpuset, file, v.to_owned(), field);
        }
        Ok(())
    }

    fn pids(&mut self, limit: i64) -> Result<()> {
        let v = match limit {
            0 => return Ok(()),
            -1 => "max".to_owned(),
            n if n < -1 => {
                return invalid(
                    PIDS_LIMIT,
                    format!("{n} (must be -1 for unlimited, or > 0)"),
                )
            }
            n => n.to_string(),
        };
        let fl = self.need(Ctrl::Pids, PIDS_LIMIT)?;
        self.push(fl, Ctrl::Pids, "pids.max", v, PIDS_LIMIT);
        Ok(())
    }

    /// v1: deny everything, then each rule in order (runc's default-deny). v2 device
    /// rules need an eBPF program (not done yet): ignored there.
    fn devices(&mut self, rules: &[LinuxDeviceCgroup]) -> Result<()> {
        let mut lines = Vec::with_capacity(rules.len());
        for (i, rule) in rules.iter().enumerate() {
            if let Some(line) = device_rule(rule).map_err(|reason| Error::Invalid {
                field: DEVICES,
                reason: format!("rule {i}: {reason}"),
            })? {
                lines.push((rule.allow(), line));
            }
        }
        let fl = self.need(Ctrl::Devices, DEVICES)?;
        if fl == Flavor::V2 {
            return Ok(());
        }
        self.push(fl, Ctrl::Devices, "devices.deny", "a".to_owned(), DEVICES);
        for (allow, line) in lines {
            let file = if allow {
                "devices.allow"
            } else {
                "devices.deny"
            };
            self.push(fl, Ctrl::Devices, file, line, DEVICES);
        }
        Ok(())
    }

    fn hugetlb(&mut self, limits: &[LinuxHugepageLimit]) -> Result<()> {
        for l in limits {
            let size = l.page_size();
            let valid = size.len() > 2
                && ["KB", "MB", "GB"].iter().any(|u| size.ends_with(u))
                && size[..size.len() - 2].bytes().all(|b| b.is_ascii_digit());
            if !valid {
                return invalid(
                    HUGEPAGES,
                    format!("page size {size:?} (must be like \"2MB\", \"1GB\", \"64KB\")"),
                );
            }
            if l.limit() < 0 {
                return invalid(
                    HUGEPAGES,
                    format!("limit {} for {size} (must be >= 0)", l.limit()),
                );
            }
            let fl = self.need(Ctrl::Hugetlb, HUGEPAGES)?;
            let (limit_file, rsvd_file) = match fl {
                Flavor::V1 => (
                    format!("hugetlb.{size}.limit_in_bytes"),
                    format!("hugetlb.{size}.rsvd.limit_in_bytes"),
                ),
                Flavor::V2 => (
                    format!("hugetlb.{size}.max"),
                    format!("hugetlb.{size}.rsvd.max"),
                ),
            };
            let v = l.limit().to_string();
            self.push(fl, Ctrl::Hugetlb, limit_file, v.clone(), HUGEPAGES);
            // Reservation limits exist since Linux 5.7: set them too where they do.
            self.push_with(
                fl,
                Ctrl::Hugetlb,
                rsvd_file,
                v,
                HUGEPAGES,
                OnError::SkipIfMissing,
            );
        }
        Ok(())
    }

    fn block_io(&mut self, b: &LinuxBlockIo) -> Result<()> {
        if b.leaf_weight().is_some() {
            return unsupported(
                "linux.resources.blockIO.leafWeight",
                "CFQ-only, gone from current kernels",
            );
        }
        if b.weight_device().as_ref().is_some_and(|v| !v.is_empty()) {
            return unsupported("linux.resources.blockIO.weightDevice", "per-device weights");
        }
        if let Some(w) = b.weight().filter(|&w| w != 0) {
            if !(10..=1000).contains(&w) {
                return invalid(BLKIO_WEIGHT, format!("{w} (must be 10..=1000)"));
            }
            let fl = self.need(Ctrl::Blkio, BLKIO_WEIGHT)?;
            // BFQ's knob takes the OCI range as is; io.weight is 1..=10000.
            let (file, fallback) = match fl {
                Flavor::V1 => (
                    "blkio.bfq.weight",
                    OnError::Fallback("blkio.weight", w.to_string()),
                ),
                Flavor::V2 => {
                    let converted = 1 + (u32::from(w) - 10) * 9999 / 990;
                    (
                        "io.bfq.weight",
                        OnError::Fallback("io.weight", converted.to_string()),
                    )
                }
            };
            self.push_with(fl, Ctrl::Blkio, file, w.to_string(), BLKIO_WEIGHT, fallback);
        }
        let throttles: [(
            &Option<Vec<LinuxThrottleDevice>>,
            &'static str,
            &'static str,
            &'static str,
        ); 4] = [
            (
                b.throttle_read_bps_device(),
                "linux.resources.blockIO.throttleReadBpsDevice",
                "blkio.throttle.read_bps_device",
                "rbps",
            ),
            (
                b.throttle_write_bps_device(),
                "linux.resources.blockIO.throttleWriteBpsDevice",
                "blkio.throttle.write_bps_device",
                "wbps",
            ),
            (
                b.throttle_read_iops_device(),
                "linux.resources.blockIO.throttleReadIOPSDevice",
                "blkio.throttle.read_iops_device",
                "riops",
            ),
            (
                b.throttle_write_iops_device(),
                "linux.resources.blockIO.throttleWriteIOPSDevice",
                "blkio.throttle.write_iops_device",
                "wiops",
            ),
        ];
        for (devs, field, v1_file, v2_key) in throttles {
            let Some(devs) = devs.as_ref().filter(|d| !d.is_empty()) else {
                continue;
            };
            let fl = self.need(Ctrl::Blkio, field)?;
            for d in devs {
                if d.major() < 0 || d.minor() < 0 {
                    return invalid(
                        field,
                        format!("device {}:{} (numbers must be >= 0)", d.major(), d.minor()),
                    );
                }
                let (file, v) = match fl {
                    Flavor::V1 => (
                        v1_file,
                        format!("{}:{} {}\n", d.major(), d.minor(), d.rate()),
                    ),
                    Flavor::V2 => {
                        let rate = if d.rate() == 0 {
                            "max".to_owned()
                        } else {
                            d.rate().to_string()
                        };
                        (
                            "io.max",
                            format!("{}:{} {v2_key}={rate}\n", d.major(), d.minor()),
                        )
                    }
                };
                self.push(fl, Ctrl::Blkio, file, v, field);
            }
        }
        Ok(())
    }

    fn unified(&mut self, map: &std::collections::HashMap<String, String>) -> Result<()> {
        if map.is_empty() {
            return Ok(());
        }
        if self.host.version() != Version::V2 {
            return invalid(UNIFIED, "needs a cgroup v2 host");
        }
        let mut keys: Vec<&String> = map.keys().collect();
        keys.sort();
        for key in keys {
            let controller = match key.split_once('.') {
                Some((c, rest)) if !c.is_empty() && !rest.is_empty() && !key.contains('/') => c,
                _ => {
                    return invalid(
                        UNIFIED,
                        format!("key {key:?} is not a control file name like \"memory.high\""),
                    )
                }
            };
            if controller != "cgroup" && !self.host.v2_has(controller)? {
                return Err(Error::MissingController {
                    controller: controller.to_owned(),
                    field: UNIFIED,
                });
            }
            self.steps.push(Step {
                target: Target::V2(None),
                file: key.clone().into(),
                value: map[key].clone(),
                field: UNIFIED,
                on_error: OnError::Fail,
            });
        }
        Ok(())
    }
}

/// The v1 `devices.allow`/`devices.deny` line for a rule (`c 1:3 rwm`), or `None` for a
/// rule the devices controller has no notion of (FIFOs need no permission).
fn device_rule(d: &LinuxDeviceCgroup) -> std::result::Result<Option<String>, String> {
    let typ = match d.typ().unwrap_or(LinuxDeviceType::A) {
        LinuxDeviceType::A => 'a',
        LinuxDeviceType::B => 'b',
        LinuxDeviceType::C | LinuxDeviceType::U => 'c',
        LinuxDeviceType::P => return Ok(None),
    };
    let num = |n: Option<i64>| match n {
        None | Some(-1) => Ok("*".to_owned()),
        Some(n) if n >= 0 => Ok(n.to_string()),
        Some(n) => Err(format!("device number {n} (must be >= 0)")),
    };
    let access = d
        .access()
        .as_deref()
        .filter(|a| !a.is_empty())
        .unwrap_or("rwm");
    if !access.bytes().all(|b| matches!(b, b'r' | b'w' | b'm')) {
        return Err(format!("access {access:?} (must be letters of \"rwm\")"));
    }
    // Each rule is one write(2); the newline makes a fixture file readable line by line
    // and is stripped by the kernel.
    Ok(Some(format!(
        "{typ} {}:{} {access}\n",
        num(d.major())?,
        num(d.minor())?
    )))
}

#[cfg(test)]
mod tests {
    use oci_spec::runtime::{
        LinuxBlockIoBuilder, LinuxCpuBuilder, LinuxDeviceCgroupBuilder, LinuxHugepageLimitBuilder,
        LinuxMemoryBuilder, LinuxPidsBuilder, LinuxResourcesBuilder, LinuxThrottleDeviceBuilder,
    };

    use super::*;

    /// A host with the given controllers.
    struct Fake {
        version: Version,
        have: &'static [Ctrl],
    }

    impl Host for Fake {
        fn version(&self) -> Version {
            self.version
        }
        fn flavor(&self, c: Ctrl) -> Result<Option<Flavor>> {
            let fl = if self.version == Version::V2 {
                Flavor::V2
            } else {
                Flavor::V1
            };
            Ok(self.have.contains(&c).then_some(fl))
        }
        fn v2_has(&self, name: &str) -> Result<bool> {
            Ok(self.have.iter().any(|c| c.v2_name() == name))
        }
    }

    const ALL: &[Ctrl] = &[
        Ctrl::Cpu,
        Ctrl::Cpuset,
        Ctrl::Memory,
        Ctrl::Pids,
        Ctrl::Devices,
        Ctrl::Blkio,
        Ctrl::Hugetlb,
    ];
    const V1: Fake = Fake {
        version: Version::V1,
        have: ALL,
    };
    const V2: Fake = Fake {
        version: Version::V2,
        have: ALL,
    };

    fn writes(r: &LinuxResources, host: &Fake) -> Vec<(String, String)> {
        plan(r, host)
            .unwrap()
            .into_iter()
            .map(|s| (s.file.into_owned(), s.value))
            .collect()
    }

    fn pairs(v: &[(&str, &str)]) -> Vec<(String, String)> {
        v.iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    }

    fn memory(limit: i64, swap: i64) -> LinuxResources {
        let m = LinuxMemoryBuilder::default()
            .limit(limit)
            .swap(swap)
            .build()
            .unwrap();
        LinuxResourcesBuilder::default().memory(m).build().unwrap()
    }

    #[test]
    fn empty_resources_write_nothing() {
        assert!(plan(&LinuxResources::default(), &V1).unwrap().is_empty());
        let none = Fake {
            version: Version::V1,
            have: &[],
        };
        assert!(plan(&LinuxResources::default(), &none).unwrap().is_empty());
    }

    #[test]
    fn memory_v1_and_v2() {
        let r = memory(64 << 20, 128 << 20);
        assert_eq!(
            writes(&r, &V1),
            pairs(&[
                ("memory.limit_in_bytes", "67108864"),
                ("memory.memsw.limit_in_bytes", "134217728")
            ])
        );
        assert_eq!(plan(&r, &V1).unwrap()[0].on_error, OnError::RetryAfterNext);
        assert_eq!(
            writes(&r, &V2),
            pairs(&[("memory.swap.max", "67108864"), ("memory.max", "67108864")])
        );
        assert_eq!(
            writes(&memory(-1, -1), &V2),
            pairs(&[("memory.swap.max", "max"), ("memory.max", "max")])
        );
    }

    #[test]
    fn memory_ranges() {
        let bad = |r: LinuxResources, field: &str| {
            let e = plan(&r, &V1).unwrap_err();
            assert!(
                matches!(&e, Error::Invalid { field: f, .. } if *f == field),
                "{e}"
            );
        };
        bad(memory(-2, 0), MEM_LIMIT);
        bad(memory(100 << 20, 50 << 20), MEM_SWAP);
        let m = LinuxMemoryBuilder::default()
            .swappiness(101u64)
            .build()
            .unwrap();
        bad(
            LinuxResourcesBuilder::default().memory(m).build().unwrap(),
            MEM_SWAPPINESS,
        );
        let e = plan(&memory(-1, 1 << 30), &V2).unwrap_err();
        assert!(
            matches!(
                e,
                Error::Invalid {
                    field: MEM_SWAP,
                    ..
                }
            ),
            "{e}"
        );
    }

    #[test]
    fn memory_extras_v1_only() {
        let m = LinuxMemoryBuilder::default()
            .reservation(32i64 << 20)
            .swappiness(10u64)
            .disable_oom_killer(true)
            .build()
            .unwrap();
        let r = LinuxResourcesBuilder::default().memory(m).build().unwrap();
        assert_eq!(
            writes(&r, &V1),
            pairs(&[
                ("memory.soft_limit_in_bytes", "33554432"),
                ("memory.swappiness", "10"),
                ("memory.oom_control", "1")
            ])
        );
        assert_eq!(writes(&r, &V2), pairs(&[("memory.low", "33554432")]));
    }

    #[test]
    fn cpu_v1_and_v2() {
        let c = LinuxCpuBuilder::default()
            .shares(1024u64)
            .quota(50_000i64)
            .period(100_000u64)
            .cpus("0-1")
            .mems("0")
            .build()
            .unwrap();
        let r = LinuxResourcesBuilder::default().cpu(c).build().unwrap();
        assert_eq!(
            writes(&r, &V1),
            pairs(&[
                ("cpu.shares", "1024"),
                ("cpu.cfs_period_us", "100000"),
                ("cpu.cfs_quota_us", "50000"),
                ("cpuset.cpus", "0-1"),
                ("cpuset.mems", "0")
            ])
        );
        assert_eq!(
            writes(&r, &V2),
            pairs(&[
                ("cpu.weight", "39"),
                ("cpu.max", "50000 100000"),
                ("cpuset.cpus", "0-1"),
                ("cpuset.mems", "0")
            ])
        );
        let c = LinuxCpuBuilder::default().quota(-1i64).build().unwrap();
        let r = LinuxResourcesBuilder::default().cpu(c).build().unwrap();
        assert_eq!(writes(&r, &V2), pairs(&[("cpu.max", "max 100000")]));
    }

    #[test]
    fn cpu_ranges() {
        let bad = |c: LinuxCpu, field: &str| {
            let r = LinuxResourcesBuilder::default().cpu(c).build().unwrap();
            let e = plan(&r, &V1).unwrap_err();
            assert!(
                matches!(&e, Error::Invalid { field: f, .. } if *f == field),
                "{e}"
            );
            assert!(e.to_string().contains(field), "{e}");
        };
        bad(
            LinuxCpuBuilder::default().shares(1u64).build().unwrap(),
            CPU_SHARES,
        );
        bad(
            LinuxCpuBuilder::default()
                .shares(300_000u64)
                .build()
                .unwrap(),
            CPU_SHARES,
        );
        bad(
            LinuxCpuBuilder::default().quota(500i64).build().unwrap(),
            CPU_QUOTA,
        );
        bad(
            LinuxCpuBuilder::default().period(999u64).build().unwrap(),
            CPU_PERIOD,
        );
        bad(
            LinuxCpuBuilder::default().idle(2i64).build().unwrap(),
            CPU_IDLE,
        );
        bad(
            LinuxCpuBuilder::default().cpus("0-1; rm").build().unwrap(),
            CPU_CPUS,
        );
        let c = LinuxCpuBuilder::default()
            .realtime_runtime(1000i64)
            .build()
            .unwrap();
        let r = LinuxResourcesBuilder::default().cpu(c).build().unwrap();
        assert!(matches!(
            plan(&r, &V2).unwrap_err(),
            Error::Invalid {
                field: CPU_RT_RUNTIME,
                ..
            }
        ));
    }

    #[test]
    fn pids() {
        let r = |n: i64| {
            LinuxResourcesBuilder::default()
                .pids(LinuxPidsBuilder::default().limit(n).build().unwrap())
                .build()
                .unwrap()
        };
        assert_eq!(writes(&r(10), &V1), pairs(&[("pids.max", "10")]));
        assert_eq!(writes(&r(-1), &V2), pairs(&[("pids.max", "max")]));
        assert!(writes(&r(0), &V1).is_empty());
        assert!(matches!(
            plan(&r(-5), &V1).unwrap_err(),
            Error::Invalid {
                field: PIDS_LIMIT,
                ..
            }
        ));
    }

    #[test]
    fn missing_controller_names_the_field() {
        let host = Fake {
            version: Version::V1,
            have: &[Ctrl::Memory],
        };
        let r = LinuxResourcesBuilder::default()
            .pids(LinuxPidsBuilder::default().limit(5).build().unwrap())
            .build()
            .unwrap();
        let e = plan(&r, &host).unwrap_err();
        assert!(
            matches!(&e, Error::MissingController { controller, field: PIDS_LIMIT } if controller == "pids"),
            "{e}"
        );
        assert_eq!(
            e.to_string(),
            "linux.resources.pids.limit is set but the pids cgroup controller is not available"
        );
    }

    fn rule(
        allow: bool,
        typ: LinuxDeviceType,
        major: Option<i64>,
        minor: Option<i64>,
        access: &str,
    ) -> LinuxDeviceCgroup {
        let mut b = LinuxDeviceCgroupBuilder::default()
            .allow(allow)
            .typ(typ)
            .access(access);
        if let Some(m) = major {
            b = b.major(m);
        }
        if let Some(m) = minor {
            b = b.minor(m);
        }
        b.build().unwrap()
    }

    #[test]
    fn devices_default_deny_then_rules_v1_ignored_v2() {
        let rules = vec![
            rule(false, LinuxDeviceType::A, None, None, "rwm"),
            rule(true, LinuxDeviceType::C, Some(1), Some(3), "rwm"),
            rule(true, LinuxDeviceType::C, Some(136), None, ""),
            rule(true, LinuxDeviceType::P, Some(1), Some(1), "rw"),
        ];
        let r = LinuxResourcesBuilder::default()
            .devices(rules)
            .build()
            .unwrap();
        assert_eq!(
            writes(&r, &V1),
            pairs(&[
                ("devices.deny", "a"),
                ("devices.deny", "a *:* rwm\n"),
                ("devices.allow", "c 1:3 rwm\n"),
                ("devices.allow", "c 136:* rwm\n")
            ])
        );
        assert!(writes(&r, &V2).is_empty());
        let bad = vec![rule(true, LinuxDeviceType::C, Some(1), Some(3), "rwx")];
        let r = LinuxResourcesBuilder::default()
            .devices(bad)
            .build()
            .unwrap();
        let e = plan(&r, &V1).unwrap_err();
        assert!(
            e.to_string().contains("rule 0") && e.to_string().contains(DEVICES),
            "{e}"
        );
    }

    #[test]
    fn hugetlb_and_blkio() {
        let h = vec![LinuxHugepageLimitBuilder::default()
            .page_size("2MB")
            .limit(1i64 << 21)
            .build()
            .unwrap()];
        let b = LinuxBlockIoBuilder::default()
            .weight(500u16)
            .throttle_read_bps_device(vec![LinuxThrottleDeviceBuilder::default()
                .major(8)
                .minor(0)
                .rate(1u64 << 20)
                .build()
                .unwrap()])
            .build()
            .unwrap();
        let r = LinuxResourcesBuilder::default()
            .hugepage_limits(h)
            .block_io(b)
            .build()
            .unwrap();
        let steps = plan(&r, &V1).unwrap();
        assert_eq!(
            steps
                .iter()
                .map(|s| (s.file.to_string(), s.value.clone()))
                .collect::<Vec<_>>(),
            pairs(&[
                ("hugetlb.2MB.limit_in_bytes", "2097152"),
                ("hugetlb.2MB.rsvd.limit_in_bytes", "2097152"),
                ("blkio.bfq.weight", "500"),
                ("blkio.throttle.read_bps_device", "8:0 1048576\n")
            ])
        );
        assert_eq!(steps[1].on_error, OnError::SkipIfMissing);
        assert_eq!(
            steps[2].on_error,
            OnError::Fallback("blkio.weight", "500".into())
        );
        let v2 = plan(&r, &V2).unwrap();
        assert_eq!(v2[0].file, "hugetlb.2MB.max");
        assert_eq!(
            v2[2].on_error,
            OnError::Fallback("io.weight", "4950".into())
        );
        assert_eq!(v2[3].value, "8:0 rbps=1048576\n");

        let bad = vec![LinuxHugepageLimitBuilder::default()
            .page_size("2M")
            .limit(1i64)
            .build()
            .unwrap()];
        let r = LinuxResourcesBuilder::default()
            .hugepage_limits(bad)
            .build()
            .unwrap();
        assert!(matches!(
            plan(&r, &V1).unwrap_err(),
            Error::Invalid {
                field: HUGEPAGES,
                ..
            }
        ));
        let r = LinuxResourcesBuilder::default()
            .block_io(LinuxBlockIoBuilder::default().weight(5u16).build().unwrap())
            .build()
            .unwrap();
        assert!(matches!(
            plan(&r, &V1).unwrap_err(),
            Error::Invalid {
                field: BLKIO_WEIGHT,
                ..
            }
        ));
    }

    #[test]
    fn unified_only_on_v2() {
        let mut m = std::collections::HashMap::new();
        m.insert("memory.high".to_owned(), "100M".to_owned());
        let r = LinuxResourcesBuilder::default()
            .unified(m.clone())
            .build()
            .unwrap();
        assert_eq!(writes(&r, &V2), pairs(&[("memory.high", "100M")]));
        assert!(matches!(
            plan(&r, &V1).unwrap_err(),
            Error::Invalid { field: UNIFIED, .. }
        ));
        m.insert("../escape".to_owned(), "1".to_owned());
        let r = LinuxResourcesBuilder::default().unified(m).build().unwrap();
        assert!(matches!(
            plan(&r, &V2).unwrap_err(),
            Error::Invalid { field: UNIFIED, .. }
        ));
    }
}
