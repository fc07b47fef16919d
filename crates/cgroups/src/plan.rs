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
//! | memory.swappiness             | memory.swappiness                | warning (no such knob)  |
//! | memory.disableOOMKiller       | memory.oom_control               | warning (no such knob)  |
//! | memory.kernel / kernelTCP     | warning (obsolete since 5.4)     | warning                 |
//! | cpu.shares                    | cpu.shares                       | cpu.weight (converted)  |
//! | cpu.quota / cpu.period        | cpu.cfs_quota_us / cfs_period_us | cpu.max                 |
//! | cpu.burst / cpu.idle          | cpu.cfs_burst_us / cpu.idle      | cpu.max.burst / cpu.idle|
//! | cpu.realtime{Runtime,Period}  | cpu.rt_runtime_us / rt_period_us | refused                 |
//! | cpu.cpus / cpu.mems           | cpuset.cpus / cpuset.mems        | same                    |
//! | pids.limit                    | pids.max                         | pids.max                |
//! | devices                       | devices.deny "a", then each rule | none: the caller loads eBPF |
//! | hugepageLimits                | hugetlb.SIZE.limit_in_bytes (+ rsvd) | hugetlb.SIZE.max (+ rsvd) |
//! | blockIO.weight                | blkio.bfq.weight or blkio.weight | io.bfq.weight or io.weight |
//! | blockIO.leafWeight            | blkio.leaf_weight (CFQ)          | warning (no such knob)  |
//! | blockIO.weightDevice          | blkio.bfq.weight_device or blkio.weight_device (+ leaf_weight_device) | io.bfq.weight or io.weight, `MAJ:MIN W` |
//! | blockIO.throttle*             | blkio.throttle.*_device          | io.max, one line per device |
//! | network.classID               | net_cls.classid                  | refused (no net_cls)    |
//! | network.priorities            | net_prio.ifpriomap, one per interface | refused (no net_prio) |
//! | rdma                          | rdma.max `dev hca_handle=N hca_object=M` | same          |
//! | unified                       | refused; hybrid: the keys of the unified hierarchy's controllers | each key as a file |
//!
//! As in runc, a numeric field set to 0 means "not set" (except `cpu.idle`/`cpu.burst`
//! and `memory.swappiness`, where 0 is a value). A set field that has no effect on this
//! host (a v1-only knob on v2, the obsolete kernel-memory limits, CFQ's leaf weights on a
//! kernel without CFQ) is not an error: [`crate::Cgroup::apply`] returns a warning for
//! it, a sentence naming the field.
//! `useHierarchy` is ignored (current kernels treat it as always on);
//! `checkBeforeUpdate` is for [`crate::Cgroup::update`].

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};

use oci_spec::runtime::{
    LinuxBlockIo, LinuxCpu, LinuxDeviceCgroup, LinuxDeviceType, LinuxHugepageLimit,
    LinuxInterfacePriority, LinuxMemory, LinuxNetwork, LinuxRdma, LinuxResources,
    LinuxThrottleDevice, LinuxWeightDevice,
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
    NetCls,
    NetPrio,
    Rdma,
}

impl Ctrl {
    /// Every controller `apply` knows.
    pub(crate) const ALL: [Ctrl; 10] = [
        Ctrl::Cpu,
        Ctrl::Cpuset,
        Ctrl::Memory,
        Ctrl::Pids,
        Ctrl::Devices,
        Ctrl::Blkio,
        Ctrl::Hugetlb,
        Ctrl::NetCls,
        Ctrl::NetPrio,
        Ctrl::Rdma,
    ];

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
            Ctrl::NetCls => "net_cls",
            Ctrl::NetPrio => "net_prio",
            Ctrl::Rdma => "rdma",
        }
    }

    /// The controller a v2 name (the prefix of a control file) stands for, if `apply`
    /// knows it.
    pub(crate) fn from_v2_name(name: &str) -> Option<Ctrl> {
        Ctrl::ALL.iter().copied().find(|c| c.v2_name() == name)
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
    /// Is the v2 controller `name` (any, e.g. `misc`) available in the container's
    /// unified cgroup? Asked on V2 and Hybrid.
    fn v2_has(&self, name: &str) -> Result<bool>;
}

/// Which directory a write goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Target {
    /// The container's directory in the v1 hierarchy of this controller.
    V1(Ctrl),
    /// The container's unified (v2) directory; the controller must be enabled in the
    /// parents (done lazily on Hybrid). `None` for a `unified` key: its controller is the
    /// file name's prefix.
    V2(Option<Ctrl>),
}

/// What to do when a write fails.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum OnError {
    /// Return the error.
    Fail,
    /// `ENOENT` (the kernel lacks this knob): skip it.
    SkipIfMissing,
    /// `ENOENT`: skip it, and tell the caller (a knob set explicitly that this kernel
    /// dropped, e.g. CFQ's `blkio.leaf_weight`).
    WarnIfMissing,
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

/// The writes for a `LinuxResources`, and the set fields that have no effect.
#[derive(Debug, Default)]
pub(crate) struct Plan {
    /// In order; see [`OnError`] for the few that depend on what the kernel says.
    pub steps: Vec<Step>,
    /// One sentence per set field that is ignored on this host, naming the field.
    pub warnings: Vec<String>,
}

/// Build the writes for `r`, validating every set field first: an error here means
/// nothing is written.
pub(crate) fn plan(r: &LinuxResources, host: &dyn Host) -> Result<Plan> {
    let mut p = Planner {
        host,
        plan: Plan {
            steps: Vec::with_capacity(16),
            warnings: Vec::new(),
        },
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
        p.network(n)?;
    }
    if let Some(rdma) = r.rdma() {
        p.rdma(rdma)?;
    }
    if let Some(u) = r.unified() {
        p.unified(u)?;
    }
    Ok(p.plan)
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

/// A block I/O weight: 10..=1000 (0 is "not set" and filtered out before).
fn check_weight(field: &'static str, w: Option<u16>) -> Result<()> {
    match w {
        Some(w) if !(10..=1000).contains(&w) => invalid(field, format!("{w} (must be 10..=1000)")),
        _ => Ok(()),
    }
}

/// A device number pair in `blockIO`.
fn check_device(field: &'static str, major: i64, minor: i64) -> Result<()> {
    if major < 0 || minor < 0 {
        return invalid(
            field,
            format!("device {major}:{minor} (numbers must be >= 0)"),
        );
    }
    Ok(())
}

/// The four `blockIO` throttles: (devices, OCI field, v1 file, `io.max` key).
type Throttles<'a> = [(
    &'a [LinuxThrottleDevice],
    &'static str,
    &'static str,
    &'static str,
); 4];

fn throttles(b: &LinuxBlockIo) -> Throttles<'_> {
    fn devs(d: &Option<Vec<LinuxThrottleDevice>>) -> &[LinuxThrottleDevice] {
        d.as_deref().unwrap_or_default()
    }
    [
        (
            devs(b.throttle_read_bps_device()),
            "linux.resources.blockIO.throttleReadBpsDevice",
            "blkio.throttle.read_bps_device",
            "rbps",
        ),
        (
            devs(b.throttle_write_bps_device()),
            "linux.resources.blockIO.throttleWriteBpsDevice",
            "blkio.throttle.write_bps_device",
            "wbps",
        ),
        (
            devs(b.throttle_read_iops_device()),
            "linux.resources.blockIO.throttleReadIOPSDevice",
            "blkio.throttle.read_iops_device",
            "riops",
        ),
        (
            devs(b.throttle_write_iops_device()),
            "linux.resources.blockIO.throttleWriteIOPSDevice",
            "blkio.throttle.write_iops_device",
            "wiops",
        ),
    ]
}

struct Planner<'a> {
    host: &'a dyn Host,
    plan: Plan,
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
const MEM_KERNEL: &str = "linux.resources.memory.kernel";
const MEM_KERNEL_TCP: &str = "linux.resources.memory.kernelTCP";
const BLKIO_WEIGHT: &str = "linux.resources.blockIO.weight";
const BLKIO_LEAF_WEIGHT: &str = "linux.resources.blockIO.leafWeight";
const BLKIO_WEIGHT_DEVICE: &str = "linux.resources.blockIO.weightDevice";
const NET_CLASSID: &str = "linux.resources.network.classID";
const NET_PRIORITIES: &str = "linux.resources.network.priorities";
const RDMA: &str = "linux.resources.rdma";
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
        self.plan.steps.push(Step {
            target,
            file: file.into(),
            value,
            field,
            on_error,
        });
    }

    fn warn(&mut self, field: &'static str, why: &str) {
        self.plan
            .warnings
            .push(format!("{field} is ignored: {why}"));
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
        #[allow(deprecated)] // read only to say that it is ignored
        let kernel = m.kernel().filter(|&n| n != 0);
        if kernel.is_some() {
            self.warn(
                MEM_KERNEL,
                "kernel memory limits are obsolete since Linux 5.4",
            );
        }
        if m.kernel_tcp().filter(|&n| n != 0).is_some() {
            self.warn(
                MEM_KERNEL_TCP,
                "kernel memory limits are obsolete since Linux 5.4",
            );
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
            Flavor::V1 => self.memory_v1(limit, swap, reservation, swappiness, oom_off),
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
                if swappiness.is_some() {
                    self.warn(MEM_SWAPPINESS, "cgroup v2 has no per-cgroup swappiness");
                }
                if oom_off {
                    self.warn(MEM_OOM, "cgroup v2 cannot disable the OOM killer");
                }
            }
        }
        Ok(())
    }

    /// The v1 memory writes. The kernel keeps `limit <= memsw limit` at every step, so
    /// the order depends on the current values, which are not read (no extra syscall on
    /// the start path): the limit goes first, which is right when lowering, and when
    /// the kernel refuses it (`EINVAL`: above the current memsw limit, i.e. raising)
    /// memsw is written first and the limit again ([`OnError::RetryAfterNext`]).
    fn memory_v1(
        &mut self,
        limit: Option<i64>,
        swap: Option<i64>,
        reservation: Option<i64>,
        swappiness: Option<u64>,
        oom_off: bool,
    ) {
        let fl = Flavor::V1;
        if limit == Some(-1) && swap.is_none() {
            // Unlimited memory means unlimited memory+swap too (as runc does); written
            // first so that the limit is never above it. Absent without swap accounting.
            self.push_with(
                fl,
                Ctrl::Memory,
                "memory.memsw.limit_in_bytes",
                "-1".to_owned(),
                MEM_LIMIT,
                OnError::SkipIfMissing,
            );
        }
        if let Some(l) = limit {
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

    /// v1: deny everything, then each rule in order (runc's default-deny). v2: the rules
    /// are validated but nothing is written; they take an eBPF program, which the caller
    /// loads (see [`crate::Cgroup::device_rules_need_ebpf`]).
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
        let weight = b.weight().filter(|&w| w != 0);
        let leaf = b.leaf_weight().filter(|&w| w != 0);
        check_weight(BLKIO_WEIGHT, weight)?;
        check_weight(BLKIO_LEAF_WEIGHT, leaf)?;
        let devices: &[LinuxWeightDevice] = b.weight_device().as_deref().unwrap_or_default();
        for d in devices {
            check_device(BLKIO_WEIGHT_DEVICE, d.major(), d.minor())?;
            check_weight(BLKIO_WEIGHT_DEVICE, d.weight().filter(|&w| w != 0))?;
            check_weight(BLKIO_WEIGHT_DEVICE, d.leaf_weight().filter(|&w| w != 0))?;
        }
        let throttles = throttles(b);
        for (devs, field, _, _) in &throttles {
            for d in *devs {
                check_device(field, d.major(), d.minor())?;
            }
        }
        let first = [
            (weight.is_some(), BLKIO_WEIGHT),
            (leaf.is_some(), BLKIO_LEAF_WEIGHT),
            (!devices.is_empty(), BLKIO_WEIGHT_DEVICE),
        ]
        .into_iter()
        .chain(throttles.iter().map(|(d, f, _, _)| (!d.is_empty(), *f)))
        .find(|(set, _)| *set);
        let Some((_, field)) = first else {
            return Ok(());
        };
        match self.need(Ctrl::Blkio, field)? {
            Flavor::V1 => self.blkio_v1(weight, leaf, devices, &throttles),
            Flavor::V2 => self.io_v2(weight, leaf, devices, &throttles),
        }
        Ok(())
    }

    /// v1: BFQ's knobs take the OCI range as they are; without BFQ (`ENOENT`) the
    /// CFQ-era names are written instead. CFQ's leaf weights exist on no kernel since
    /// 5.0: a warning, not an error, when they are missing.
    fn blkio_v1(
        &mut self,
        weight: Option<u16>,
        leaf: Option<u16>,
        devices: &[LinuxWeightDevice],
        throttles: &Throttles<'_>,
    ) {
        let fl = Flavor::V1;
        if let Some(w) = weight {
            let v = w.to_string();
            let fallback = OnError::Fallback("blkio.weight", v.clone());
            self.push_with(
                fl,
                Ctrl::Blkio,
                "blkio.bfq.weight",
                v,
                BLKIO_WEIGHT,
                fallback,
            );
        }
        if let Some(w) = leaf {
            let v = w.to_string();
            let on_error = OnError::WarnIfMissing;
            self.push_with(
                fl,
                Ctrl::Blkio,
                "blkio.leaf_weight",
                v,
                BLKIO_LEAF_WEIGHT,
                on_error,
            );
        }
        for d in devices {
            let dev = format!("{}:{}", d.major(), d.minor());
            if let Some(w) = d.weight().filter(|&w| w != 0) {
                let v = format!("{dev} {w}\n");
                let fallback = OnError::Fallback("blkio.weight_device", v.clone());
                let file = "blkio.bfq.weight_device";
                self.push_with(fl, Ctrl::Blkio, file, v, BLKIO_WEIGHT_DEVICE, fallback);
            }
            if let Some(w) = d.leaf_weight().filter(|&w| w != 0) {
                let v = format!("{dev} {w}\n");
                let (file, on_error) = ("blkio.leaf_weight_device", OnError::WarnIfMissing);
                self.push_with(fl, Ctrl::Blkio, file, v, BLKIO_WEIGHT_DEVICE, on_error);
            }
        }
        for (devs, field, file, _) in throttles {
            for d in *devs {
                let v = format!("{}:{} {}\n", d.major(), d.minor(), d.rate());
                self.push(fl, Ctrl::Blkio, *file, v, field);
            }
        }
    }

    /// v2: `io.bfq.weight` takes the OCI range; `io.weight` (without BFQ) is 1..=10000.
    /// The four throttles of a device make one `io.max` line.
    fn io_v2(
        &mut self,
        weight: Option<u16>,
        leaf: Option<u16>,
        devices: &[LinuxWeightDevice],
        throttles: &Throttles<'_>,
    ) {
        let fl = Flavor::V2;
        let io_weight = |w: u16| 1 + (u32::from(w) - 10) * 9999 / 990;
        if let Some(w) = weight {
            let fallback = OnError::Fallback("io.weight", io_weight(w).to_string());
            let v = w.to_string();
            self.push_with(fl, Ctrl::Blkio, "io.bfq.weight", v, BLKIO_WEIGHT, fallback);
        }
        if leaf.is_some() {
            self.warn(BLKIO_LEAF_WEIGHT, "cgroup v2 has no leaf weights");
        }
        for (i, d) in devices.iter().enumerate() {
            let dev = format!("{}:{}", d.major(), d.minor());
            if let Some(w) = d.weight().filter(|&w| w != 0) {
                let fallback = OnError::Fallback("io.weight", format!("{dev} {}\n", io_weight(w)));
                let v = format!("{dev} {w}\n");
                self.push_with(
                    fl,
                    Ctrl::Blkio,
                    "io.bfq.weight",
                    v,
                    BLKIO_WEIGHT_DEVICE,
                    fallback,
                );
            }
            if d.leaf_weight().is_some_and(|w| w != 0) {
                self.plan.warnings.push(format!(
                    "{BLKIO_WEIGHT_DEVICE}[{i}].leafWeight is ignored: cgroup v2 has no leaf weights"
                ));
            }
        }
        // Device -> (first field that sets it, "rbps=1 wiops=2").
        let mut lines: BTreeMap<(i64, i64), (&'static str, String)> = BTreeMap::new();
        for (devs, field, _, key) in throttles {
            for d in *devs {
                let rate = match d.rate() {
                    0 => "max".to_owned(),
                    r => r.to_string(),
                };
                let (_, line) = lines
                    .entry((d.major(), d.minor()))
                    .or_insert_with(|| (field, String::new()));
                if !line.is_empty() {
                    line.push(' ');
                }
                line.push_str(&format!("{key}={rate}"));
            }
        }
        for ((major, minor), (field, line)) in lines {
            let v = format!("{major}:{minor} {line}\n");
            self.push(fl, Ctrl::Blkio, "io.max", v, field);
        }
    }

    /// v1 only: `net_cls.classid` and one `net_prio.ifpriomap` write per interface.
    fn network(&mut self, n: &LinuxNetwork) -> Result<()> {
        let prios: &[LinuxInterfacePriority] = n.priorities().as_deref().unwrap_or_default();
        for p in prios {
            let name = p.name();
            if name.is_empty()
                || name.len() > 15
                || name
                    .bytes()
                    .any(|b| b.is_ascii_whitespace() || b == b'/' || b == 0)
            {
                return invalid(
                    NET_PRIORITIES,
                    format!("interface name {name:?} (1 to 15 bytes, no space or '/')"),
                );
            }
        }
        let class_id = n.class_id().filter(|&c| c != 0);
        let v2 = self.host.version() == Version::V2;
        if let Some(c) = class_id {
            if v2 {
                return invalid(NET_CLASSID, "cgroup v2 has no net_cls controller");
            }
            let fl = self.need(Ctrl::NetCls, NET_CLASSID)?;
            self.push(
                fl,
                Ctrl::NetCls,
                "net_cls.classid",
                c.to_string(),
                NET_CLASSID,
            );
        }
        if !prios.is_empty() {
            if v2 {
                return invalid(NET_PRIORITIES, "cgroup v2 has no net_prio controller");
            }
            let fl = self.need(Ctrl::NetPrio, NET_PRIORITIES)?;
            for p in prios {
                let v = format!("{} {}\n", p.name(), p.priority());
                self.push(fl, Ctrl::NetPrio, "net_prio.ifpriomap", v, NET_PRIORITIES);
            }
        }
        Ok(())
    }

    /// `rdma.max`, one `dev hca_handle=N hca_object=M` write per device (v1 and v2 spell
    /// it the same); a device with neither limit is skipped.
    fn rdma(&mut self, map: &HashMap<String, LinuxRdma>) -> Result<()> {
        let mut devs: Vec<(&String, &LinuxRdma)> = map.iter().collect();
        devs.sort_by(|a, b| a.0.cmp(b.0));
        let mut lines = Vec::with_capacity(devs.len());
        for (dev, l) in devs {
            if dev.is_empty() || dev.bytes().any(|b| b.is_ascii_whitespace() || b == 0) {
                return invalid(RDMA, format!("device name {dev:?} (non-empty, no space)"));
            }
            let mut line = dev.clone();
            for (key, v) in [
                ("hca_handle", l.hca_handles()),
                ("hca_object", l.hca_objects()),
            ] {
                let Some(v) = v else { continue };
                if v > i32::MAX as u32 {
                    return invalid(RDMA, format!("{dev}: {key} {v} (must be <= {})", i32::MAX));
                }
                line.push_str(&format!(" {key}={v}"));
            }
            if line.len() > dev.len() {
                lines.push(line + "\n");
            }
        }
        if lines.is_empty() {
            return Ok(());
        }
        let fl = self.need(Ctrl::Rdma, RDMA)?;
        for line in lines {
            self.push(fl, Ctrl::Rdma, "rdma.max", line, RDMA);
        }
        Ok(())
    }

    /// Each key is a file of the unified directory. V2: its controller must be
    /// available. Hybrid: its controller must live in the unified hierarchy (not in a
    /// v1 one); `cgroup.*` keys are always there. V1: refused.
    fn unified(&mut self, map: &HashMap<String, String>) -> Result<()> {
        if map.is_empty() {
            return Ok(());
        }
        let version = self.host.version();
        if version == Version::V1 {
            return invalid(UNIFIED, "needs a cgroup v2 (or hybrid) host");
        }
        let mut keys: Vec<&String> = map.keys().collect();
        keys.sort();
        for key in keys {
            let controller = match key.split_once('.') {
                Some((c, rest))
                    if !c.is_empty() && !rest.is_empty() && !key.contains(['/', '\0']) =>
                {
                    c
                }
                _ => {
                    return invalid(
                        UNIFIED,
                        format!("key {key:?} is not a control file name like \"memory.high\""),
                    )
                }
            };
            if controller != "cgroup" && !self.host.v2_has(controller)? {
                if version == Version::Hybrid {
                    return invalid(
                        UNIFIED,
                        format!(
                            "key {key:?}: the {controller} controller is not in the cgroup v2 \
                             hierarchy of this hybrid host"
                        ),
                    );
                }
                return Err(Error::MissingController {
                    controller: controller.to_owned(),
                    field: UNIFIED,
                });
            }
            self.plan.steps.push(Step {
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
        LinuxInterfacePriorityBuilder, LinuxMemoryBuilder, LinuxNetworkBuilder, LinuxPidsBuilder,
        LinuxRdmaBuilder, LinuxResourcesBuilder, LinuxThrottleDeviceBuilder,
        LinuxWeightDeviceBuilder,
    };

    use super::*;

    /// A host with the given controllers (hybrid: `have` in v1, `unified` in v2).
    struct Fake {
        version: Version,
        have: &'static [Ctrl],
        unified: &'static [&'static str],
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
            match self.version {
                Version::V2 => Ok(self.have.iter().any(|c| c.v2_name() == name)),
                _ => Ok(self.unified.contains(&name)),
            }
        }
    }

    const ALL: &[Ctrl] = &Ctrl::ALL;
    const V1: Fake = Fake {
        version: Version::V1,
        have: ALL,
        unified: &[],
    };
    const V2: Fake = Fake {
        version: Version::V2,
        have: ALL,
        unified: &[],
    };

    fn writes(r: &LinuxResources, host: &Fake) -> Vec<(String, String)> {
        plan(r, host)
            .unwrap()
            .steps
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
        assert!(plan(&LinuxResources::default(), &V1)
            .unwrap()
            .steps
            .is_empty());
        let none = Fake {
            version: Version::V1,
            have: &[],
            unified: &[],
        };
        assert!(plan(&LinuxResources::default(), &none)
            .unwrap()
            .steps
            .is_empty());
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
        assert_eq!(
            plan(&r, &V1).unwrap().steps[0].on_error,
            OnError::RetryAfterNext
        );
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
            unified: &[],
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
        let steps = plan(&r, &V1).unwrap().steps;
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
        let v2 = plan(&r, &V2).unwrap().steps;
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

    fn invalid_field(r: &LinuxResources, host: &Fake) -> &'static str {
        match plan(r, host).unwrap_err() {
            Error::Invalid { field, .. } => field,
            e => panic!("not Invalid: {e}"),
        }
    }

    fn network(class_id: u32, prios: &[(&str, u32)]) -> LinuxResources {
        let prios = prios
            .iter()
            .map(|(n, p)| {
                LinuxInterfacePriorityBuilder::default()
                    .name(*n)
                    .priority(*p)
                    .build()
                    .unwrap()
            })
            .collect::<Vec<_>>();
        let mut n = LinuxNetworkBuilder::default().class_id(class_id);
        if !prios.is_empty() {
            n = n.priorities(prios);
        }
        LinuxResourcesBuilder::default()
            .network(n.build().unwrap())
            .build()
            .unwrap()
    }

    #[test]
    fn network_is_v1_only() {
        let r = network(0x10_0001, &[("eth0", 5), ("lo", 1)]);
        assert_eq!(
            writes(&r, &V1),
            pairs(&[
                ("net_cls.classid", "1048577"),
                ("net_prio.ifpriomap", "eth0 5\n"),
                ("net_prio.ifpriomap", "lo 1\n")
            ])
        );
        // classID 0 is "not set", as in runc.
        assert!(writes(&network(0, &[]), &V1).is_empty());
        assert_eq!(invalid_field(&r, &V2), NET_CLASSID);
        assert_eq!(
            invalid_field(&network(0, &[("eth0", 1)]), &V2),
            NET_PRIORITIES
        );
        for bad in ["", "a b", "../x", "sixteen_chars_xx"] {
            assert_eq!(
                invalid_field(&network(0, &[(bad, 1)]), &V1),
                NET_PRIORITIES,
                "{bad:?}"
            );
        }
        let no_net = Fake {
            version: Version::Hybrid,
            have: &[Ctrl::NetPrio],
            unified: &["hugetlb"],
        };
        let e = plan(&network(7, &[]), &no_net).unwrap_err();
        assert!(
            matches!(&e, Error::MissingController { controller, field: NET_CLASSID } if controller == "net_cls"),
            "{e}"
        );
        assert_eq!(writes(&network(0, &[("eth0", 2)]), &no_net).len(), 1);
    }

    fn rdma(devs: &[(&str, Option<u32>, Option<u32>)]) -> LinuxResources {
        let map = devs
            .iter()
            .map(|(d, h, o)| {
                let mut b = LinuxRdmaBuilder::default();
                if let Some(h) = h {
                    b = b.hca_handles(*h);
                }
                if let Some(o) = o {
                    b = b.hca_objects(*o);
                }
                (d.to_string(), b.build().unwrap())
            })
            .collect::<HashMap<_, _>>();
        LinuxResourcesBuilder::default().rdma(map).build().unwrap()
    }

    #[test]
    fn rdma_one_line_per_device_on_v1_and_v2() {
        let r = rdma(&[
            ("mlx5_1", Some(3), None),
            ("mlx4_0", Some(2), Some(2000)),
            ("hfi1_0", None, None),
        ]);
        let want = pairs(&[
            ("rdma.max", "mlx4_0 hca_handle=2 hca_object=2000\n"),
            ("rdma.max", "mlx5_1 hca_handle=3\n"),
        ]);
        assert_eq!(writes(&r, &V1), want);
        assert_eq!(writes(&r, &V2), want);
        assert!(writes(&rdma(&[("x", None, None)]), &V1).is_empty());
        assert_eq!(invalid_field(&rdma(&[("a b", Some(1), None)]), &V1), RDMA);
        assert_eq!(
            invalid_field(&rdma(&[("a", Some(u32::MAX), None)]), &V2),
            RDMA
        );
        let none = Fake {
            version: Version::V2,
            have: &[Ctrl::Memory],
            unified: &[],
        };
        assert!(matches!(
            plan(&rdma(&[("mlx4_0", Some(1), None)]), &none).unwrap_err(),
            Error::MissingController { field: RDMA, .. }
        ));
    }

    fn weight_device(
        major: i64,
        minor: i64,
        w: Option<u16>,
        leaf: Option<u16>,
    ) -> LinuxWeightDevice {
        let mut b = LinuxWeightDeviceBuilder::default()
            .major(major)
            .minor(minor);
        if let Some(w) = w {
            b = b.weight(w);
        }
        if let Some(l) = leaf {
            b = b.leaf_weight(l);
        }
        b.build().unwrap()
    }

    fn throttle(major: i64, minor: i64, rate: u64) -> Vec<LinuxThrottleDevice> {
        vec![LinuxThrottleDeviceBuilder::default()
            .major(major)
            .minor(minor)
            .rate(rate)
            .build()
            .unwrap()]
    }

    fn full_block_io() -> LinuxResources {
        let b = LinuxBlockIoBuilder::default()
            .weight(500u16)
            .leaf_weight(300u16)
            .weight_device(vec![
                weight_device(8, 0, Some(600), Some(200)),
                weight_device(8, 16, None, None),
            ])
            .throttle_read_bps_device(throttle(8, 16, 1 << 20))
            .throttle_write_bps_device(throttle(8, 0, 2 << 20))
            .throttle_read_iops_device(throttle(8, 0, 100))
            .throttle_write_iops_device(throttle(8, 0, 0))
            .build()
            .unwrap();
        LinuxResourcesBuilder::default()
            .block_io(b)
            .build()
            .unwrap()
    }

    #[test]
    fn block_io_v1_every_file_with_bfq_first() {
        let p = plan(&full_block_io(), &V1).unwrap();
        let got: Vec<_> = p
            .steps
            .iter()
            .map(|s| (s.file.to_string(), s.value.clone(), s.on_error.clone()))
            .collect();
        let fb = |f: &'static str, v: &str| OnError::Fallback(f, v.to_owned());
        assert_eq!(
            got,
            [
                ("blkio.bfq.weight", "500", fb("blkio.weight", "500")),
                ("blkio.leaf_weight", "300", OnError::WarnIfMissing),
                (
                    "blkio.bfq.weight_device",
                    "8:0 600\n",
                    fb("blkio.weight_device", "8:0 600\n")
                ),
                (
                    "blkio.leaf_weight_device",
                    "8:0 200\n",
                    OnError::WarnIfMissing
                ),
                (
                    "blkio.throttle.read_bps_device",
                    "8:16 1048576\n",
                    OnError::Fail
                ),
                (
                    "blkio.throttle.write_bps_device",
                    "8:0 2097152\n",
                    OnError::Fail
                ),
                (
                    "blkio.throttle.read_iops_device",
                    "8:0 100\n",
                    OnError::Fail
                ),
                ("blkio.throttle.write_iops_device", "8:0 0\n", OnError::Fail),
            ]
            .map(|(f, v, o)| (f.to_owned(), v.to_owned(), o))
        );
        assert!(p.warnings.is_empty());
    }

    #[test]
    fn block_io_v2_converts_weights_and_joins_io_max_lines() {
        let p = plan(&full_block_io(), &V2).unwrap();
        let got: Vec<_> = p
            .steps
            .iter()
            .map(|s| (s.file.to_string(), s.value.clone(), s.on_error.clone()))
            .collect();
        let fb = |v: &str| OnError::Fallback("io.weight", v.to_owned());
        assert_eq!(
            got,
            [
                ("io.bfq.weight", "500", fb("4950")),
                ("io.bfq.weight", "8:0 600\n", fb("8:0 5960\n")),
                (
                    "io.max",
                    "8:0 wbps=2097152 riops=100 wiops=max\n",
                    OnError::Fail
                ),
                ("io.max", "8:16 rbps=1048576\n", OnError::Fail),
            ]
            .map(|(f, v, o)| (f.to_owned(), v.to_owned(), o))
        );
        assert_eq!(
            p.warnings,
            [
                "linux.resources.blockIO.leafWeight is ignored: cgroup v2 has no leaf weights",
                "linux.resources.blockIO.weightDevice[0].leafWeight is ignored: cgroup v2 has no leaf weights",
            ]
        );
    }

    #[test]
    fn block_io_ranges() {
        let r = |b: LinuxBlockIo| {
            LinuxResourcesBuilder::default()
                .block_io(b)
                .build()
                .unwrap()
        };
        let wd = |w, l| {
            r(LinuxBlockIoBuilder::default()
                .weight_device(vec![weight_device(8, 0, w, l)])
                .build()
                .unwrap())
        };
        assert_eq!(invalid_field(&wd(Some(5), None), &V1), BLKIO_WEIGHT_DEVICE);
        assert_eq!(
            invalid_field(&wd(None, Some(1001)), &V2),
            BLKIO_WEIGHT_DEVICE
        );
        let neg = r(LinuxBlockIoBuilder::default()
            .weight_device(vec![weight_device(-1, 0, Some(100), None)])
            .build()
            .unwrap());
        assert_eq!(invalid_field(&neg, &V1), BLKIO_WEIGHT_DEVICE);
        let leaf = r(LinuxBlockIoBuilder::default()
            .leaf_weight(1u16)
            .build()
            .unwrap());
        assert_eq!(invalid_field(&leaf, &V1), BLKIO_LEAF_WEIGHT);
        let t = r(LinuxBlockIoBuilder::default()
            .throttle_write_iops_device(throttle(8, -2, 1))
            .build()
            .unwrap());
        assert_eq!(
            invalid_field(&t, &V2),
            "linux.resources.blockIO.throttleWriteIOPSDevice"
        );
        let none = Fake {
            version: Version::V1,
            have: &[],
            unified: &[],
        };
        assert!(matches!(
            plan(&wd(Some(100), None), &none).unwrap_err(),
            Error::MissingController {
                field: BLKIO_WEIGHT_DEVICE,
                ..
            }
        ));
    }

    #[test]
    #[allow(deprecated)] // LinuxMemoryBuilder::kernel
    fn ignored_memory_fields_are_warnings() {
        let m = LinuxMemoryBuilder::default()
            .kernel(1i64 << 20)
            .kernel_tcp(1i64 << 20)
            .swappiness(10u64)
            .disable_oom_killer(true)
            .build()
            .unwrap();
        let r = LinuxResourcesBuilder::default().memory(m).build().unwrap();
        let p = plan(&r, &V1).unwrap();
        assert_eq!(
            p.warnings,
            [
                "linux.resources.memory.kernel is ignored: kernel memory limits are obsolete since Linux 5.4",
                "linux.resources.memory.kernelTCP is ignored: kernel memory limits are obsolete since Linux 5.4",
            ]
        );
        assert_eq!(p.steps.len(), 2); // swappiness, oom_control
        let p = plan(&r, &V2).unwrap();
        assert!(p.steps.is_empty());
        assert_eq!(p.warnings.len(), 4);
        assert!(
            p.warnings[2].starts_with(MEM_SWAPPINESS),
            "{:?}",
            p.warnings
        );
        assert!(p.warnings[3].starts_with(MEM_OOM), "{:?}", p.warnings);
    }

    #[test]
    fn unlimited_memory_lifts_memsw_first_on_v1() {
        let m = LinuxMemoryBuilder::default().limit(-1i64).build().unwrap();
        let r = LinuxResourcesBuilder::default().memory(m).build().unwrap();
        let steps = plan(&r, &V1).unwrap().steps;
        assert_eq!(
            steps
                .iter()
                .map(|s| (s.file.to_string(), s.value.clone(), s.on_error.clone()))
                .collect::<Vec<_>>(),
            [
                (
                    "memory.memsw.limit_in_bytes".to_owned(),
                    "-1".to_owned(),
                    OnError::SkipIfMissing
                ),
                (
                    "memory.limit_in_bytes".to_owned(),
                    "-1".to_owned(),
                    OnError::Fail
                ),
            ]
        );
        // With a swap limit given, it is written as given (after the limit, or before
        // it when the kernel refuses the limit).
        let steps = plan(&memory(-1, -1), &V1).unwrap().steps;
        assert_eq!(steps.len(), 2);
        assert_eq!(steps[0].on_error, OnError::RetryAfterNext);
    }

    #[test]
    fn unified_on_hybrid_only_for_unified_controllers() {
        let hybrid = Fake {
            version: Version::Hybrid,
            have: ALL,
            unified: &["hugetlb", "misc"],
        };
        let r = |k: &str, v: &str| {
            let m = HashMap::from([(k.to_owned(), v.to_owned())]);
            LinuxResourcesBuilder::default().unified(m).build().unwrap()
        };
        let steps = plan(&r("misc.max", "res_a 1"), &hybrid).unwrap().steps;
        assert_eq!(steps[0].target, Target::V2(None));
        assert_eq!((&*steps[0].file, &*steps[0].value), ("misc.max", "res_a 1"));
        assert_eq!(writes(&r("cgroup.max.depth", "3"), &hybrid).len(), 1);
        let e = plan(&r("memory.high", "1M"), &hybrid).unwrap_err();
        assert!(
            matches!(&e, Error::Invalid { field: UNIFIED, reason } if reason.contains("\"memory.high\"")),
            "{e}"
        );
        assert!(e.to_string().contains("memory.high"), "{e}");
        assert_eq!(invalid_field(&r("misc.max", "x"), &V1), UNIFIED);
        let e = plan(&r("misc.max", "x"), &V2).unwrap_err();
        assert!(
            matches!(&e, Error::MissingController { controller, field: UNIFIED } if controller == "misc"),
            "{e}"
        );
    }

    #[test]
    fn one_bad_field_anywhere_means_no_steps() {
        // Valid memory and cpu, then a bad unified key: the whole plan is refused, so
        // apply writes nothing.
        let mut r = memory(64 << 20, 128 << 20);
        r.set_cpu(Some(
            LinuxCpuBuilder::default().shares(1024u64).build().unwrap(),
        ));
        r.set_unified(Some(HashMap::from([("bad".to_owned(), "1".to_owned())])));
        assert_eq!(invalid_field(&r, &V2), UNIFIED);
        let mut r = memory(64 << 20, 128 << 20);
        r.set_rdma(rdma(&[("mlx4_0", Some(1), None)]).rdma().clone());
        let only_memory = Fake {
            version: Version::V1,
            have: &[Ctrl::Memory],
            unified: &[],
        };
        assert!(matches!(
            plan(&r, &only_memory).unwrap_err(),
            Error::MissingController { field: RDMA, .. }
        ));
    }
}
