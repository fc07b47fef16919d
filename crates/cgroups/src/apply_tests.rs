//! `Cgroup::apply` on tempdir fixtures: every control file it can write, on v1, v2 and
//! hybrid, with and without the optional knobs (BFQ, rsvd, CFQ leaf weights).
//!
//! A fixture file holds what was written through one open: consecutive writes to the
//! same file are concatenated (cgroupfs takes each `write(2)` as one command).

use std::collections::HashMap;
use std::path::Path;

use oci_spec::runtime::{
    LinuxBlockIoBuilder, LinuxCpuBuilder, LinuxDeviceCgroupBuilder, LinuxDeviceType,
    LinuxHugepageLimitBuilder, LinuxInterfacePriorityBuilder, LinuxMemoryBuilder,
    LinuxNetworkBuilder, LinuxPidsBuilder, LinuxRdmaBuilder, LinuxResources, LinuxResourcesBuilder,
    LinuxThrottleDevice, LinuxThrottleDeviceBuilder, LinuxWeightDeviceBuilder,
};
use tempfile::TempDir;

use crate::hierarchy::tests::{HYBRID, V2};
use crate::testutil::{cat, detect, empty_files, files, leaf, V1_ALL};
use crate::{Cgroup, Error};

fn throttle(major: i64, minor: i64, rate: u64) -> Vec<LinuxThrottleDevice> {
    vec![LinuxThrottleDeviceBuilder::default()
        .major(major)
        .minor(minor)
        .rate(rate)
        .build()
        .unwrap()]
}

/// Every field of `linux.resources` set (realtime only when `rt`).
#[allow(deprecated)] // memory.kernel: set to check that it is reported as ignored
fn everything(rt: bool) -> LinuxResources {
    let memory = LinuxMemoryBuilder::default()
        .limit(64i64 << 20)
        .swap(128i64 << 20)
        .reservation(32i64 << 20)
        .swappiness(10u64)
        .disable_oom_killer(true)
        .kernel(1i64 << 20)
        .kernel_tcp(1i64 << 20)
        .build()
        .unwrap();
    let mut cpu = LinuxCpuBuilder::default()
        .shares(512u64)
        .quota(20_000i64)
        .period(100_000u64)
        .burst(5_000u64)
        .idle(0i64)
        .cpus("0-1")
        .mems("0");
    if rt {
        cpu = cpu
            .realtime_period(1_000_000u64)
            .realtime_runtime(950_000i64);
    }
    let devices = vec![
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
    ];
    let hugepages = vec![LinuxHugepageLimitBuilder::default()
        .page_size("2MB")
        .limit(4i64 << 20)
        .build()
        .unwrap()];
    let block_io = LinuxBlockIoBuilder::default()
        .weight(500u16)
        .leaf_weight(300u16)
        .weight_device(vec![LinuxWeightDeviceBuilder::default()
            .major(8)
            .minor(0)
            .weight(600u16)
            .leaf_weight(200u16)
            .build()
            .unwrap()])
        .throttle_read_bps_device(throttle(8, 0, 1 << 20))
        .throttle_write_bps_device(throttle(8, 0, 2 << 20))
        .throttle_read_iops_device(throttle(8, 16, 100))
        .throttle_write_iops_device(throttle(8, 16, 200))
        .build()
        .unwrap();
    let prio = |name: &str, priority: u32| {
        LinuxInterfacePriorityBuilder::default()
            .name(name)
            .priority(priority)
            .build()
            .unwrap()
    };
    let network = LinuxNetworkBuilder::default()
        .class_id(0x10_0001u32)
        .priorities(vec![prio("eth0", 5), prio("lo", 1)])
        .build()
        .unwrap();
    let rdma = HashMap::from([
        (
            "mlx4_0".to_owned(),
            LinuxRdmaBuilder::default()
                .hca_handles(2u32)
                .hca_objects(2000u32)
                .build()
                .unwrap(),
        ),
        (
            "mlx5_1".to_owned(),
            LinuxRdmaBuilder::default()
                .hca_objects(9u32)
                .build()
                .unwrap(),
        ),
    ]);
    LinuxResourcesBuilder::default()
        .memory(memory)
        .cpu(cpu.build().unwrap())
        .pids(LinuxPidsBuilder::default().limit(10).build().unwrap())
        .devices(devices)
        .hugepage_limits(hugepages)
        .block_io(block_io)
        .network(network)
        .rdma(rdma)
        .build()
        .unwrap()
}

const KERNEL_WARNINGS: [&str; 2] = [
    "linux.resources.memory.kernel is ignored: kernel memory limits are obsolete since Linux 5.4",
    "linux.resources.memory.kernelTCP is ignored: kernel memory limits are obsolete since Linux 5.4",
];

/// The v1 fixture: every file `everything` writes; `bfq` picks BFQ's weight files
/// over CFQ's (whose leaf weights exist then).
fn v1_fixture(root: &Path, bfq: bool) {
    let l = |m| leaf(root, m);
    empty_files(
        &l("memory"),
        &[
            "memory.limit_in_bytes",
            "memory.memsw.limit_in_bytes",
            "memory.soft_limit_in_bytes",
            "memory.swappiness",
            "memory.oom_control",
        ],
    );
    empty_files(
        &l("cpu,cpuacct"),
        &[
            "cpu.shares",
            "cpu.cfs_period_us",
            "cpu.cfs_quota_us",
            "cpu.cfs_burst_us",
            "cpu.idle",
            "cpu.rt_period_us",
            "cpu.rt_runtime_us",
        ],
    );
    empty_files(&l("cpuset"), &["cpuset.cpus", "cpuset.mems"]);
    empty_files(&l("pids"), &["pids.max"]);
    empty_files(&l("devices"), &["devices.allow", "devices.deny"]);
    empty_files(
        &l("hugetlb"),
        &[
            "hugetlb.2MB.limit_in_bytes",
            "hugetlb.2MB.rsvd.limit_in_bytes",
        ],
    );
    let throttles = [
        "blkio.throttle.read_bps_device",
        "blkio.throttle.write_bps_device",
        "blkio.throttle.read_iops_device",
        "blkio.throttle.write_iops_device",
    ];
    empty_files(&l("blkio"), &throttles);
    if bfq {
        empty_files(
            &l("blkio"),
            &["blkio.bfq.weight", "blkio.bfq.weight_device"],
        );
    } else {
        empty_files(
            &l("blkio"),
            &[
                "blkio.weight",
                "blkio.weight_device",
                "blkio.leaf_weight",
                "blkio.leaf_weight_device",
            ],
        );
    }
    empty_files(
        &l("net_cls,net_prio"),
        &["net_cls.classid", "net_prio.ifpriomap"],
    );
    empty_files(&l("rdma"), &["rdma.max"]);
}

#[test]
fn v1_every_file() {
    let tmp = TempDir::new().unwrap();
    let root = tmp.path();
    v1_fixture(root, true);
    let cg = Cgroup::new(&detect(root, V1_ALL), "/onggi/c1", "").unwrap();
    let warnings = cg.apply(&everything(true)).unwrap();
    // blkio.leaf_weight(_device) are CFQ's, missing next to BFQ's files.
    assert_eq!(
        warnings,
        [
            KERNEL_WARNINGS[0],
            KERNEL_WARNINGS[1],
            "linux.resources.blockIO.leafWeight: this kernel has no blkio.leaf_weight, \
             so that value is ignored",
            "linux.resources.blockIO.weightDevice: this kernel has no \
             blkio.leaf_weight_device, so that value is ignored",
        ]
    );
    let f = |m: &str, file: &str| cat(leaf(root, m).join(file));
    assert_eq!(f("memory", "memory.limit_in_bytes"), "67108864");
    assert_eq!(f("memory", "memory.memsw.limit_in_bytes"), "134217728");
    assert_eq!(f("memory", "memory.soft_limit_in_bytes"), "33554432");
    assert_eq!(f("memory", "memory.swappiness"), "10");
    assert_eq!(f("memory", "memory.oom_control"), "1");
    let cpu = "cpu,cpuacct";
    assert_eq!(f(cpu, "cpu.shares"), "512");
    assert_eq!(f(cpu, "cpu.cfs_period_us"), "100000");
    assert_eq!(f(cpu, "cpu.cfs_quota_us"), "20000");
    assert_eq!(f(cpu, "cpu.cfs_burst_us"), "5000");
    assert_eq!(f(cpu, "cpu.idle"), "0");
    assert_eq!(f(cpu, "cpu.rt_period_us"), "1000000");
    assert_eq!(f(cpu, "cpu.rt_runtime_us"), "950000");
    assert_eq!(f("cpuset", "cpuset.cpus"), "0-1");
    assert_eq!(f("cpuset", "cpuset.mems"), "0");
    assert_eq!(f("pids", "pids.max"), "10");
    assert_eq!(f("devices", "devices.deny"), "aa *:* rwm\n");
    assert_eq!(f("devices", "devices.allow"), "c 1:3 rwm\n");
    assert_eq!(f("hugetlb", "hugetlb.2MB.limit_in_bytes"), "4194304");
    assert_eq!(f("hugetlb", "hugetlb.2MB.rsvd.limit_in_bytes"), "4194304");
    assert_eq!(f("blkio", "blkio.bfq.weight"), "500");
    assert_eq!(f("blkio", "blkio.bfq.weight_device"), "8:0 600\n");
    assert_eq!(
        f("blkio", "blkio.throttle.read_bps_device"),
        "8:0 1048576\n"
    );
    assert_eq!(
        f("blkio", "blkio.throttle.write_bps_device"),
        "8:0 2097152\n"
    );
    assert_eq!(f("blkio", "blkio.throttle.read_iops_device"), "8:16 100\n");
    assert_eq!(f("blkio", "blkio.throttle.write_iops_device"), "8:16 200\n");
    let net = "net_cls,net_prio";
    assert_eq!(f(net, "net_cls.classid"), "1048577");
    assert_eq!(f(net, "net_prio.ifpriomap"), "eth0 5\nlo 1\n");
    assert_eq!(
        f("rdma", "rdma.max"),
        "mlx4_0 hca_handle=2 hca_object=2000\nmlx5_1 hca_object=9\n"
    );
}

#[test]
fn v1_without_bfq_writes_cfq_files_and_leaf_weights() {
    let tmp = TempDir::new().unwrap();
    let root = tmp.path();
    v1_fixture(root, false);
    // Neither rsvd hugetlb limits (before 5.7) nor realtime knobs are needed.
    std::fs::remove_file(leaf(root, "hugetlb").join("hugetlb.2MB.rsvd.limit_in_bytes")).unwrap();
    let cg = Cgroup::new(&detect(root, V1_ALL), "/onggi/c1", "").unwrap();
    assert_eq!(cg.apply(&everything(false)).unwrap(), KERNEL_WARNINGS);
    let f = |file: &str| cat(leaf(root, "blkio").join(file));
    assert_eq!(f("blkio.weight"), "500");
    assert_eq!(f("blkio.weight_device"), "8:0 600\n");
    assert_eq!(f("blkio.leaf_weight"), "300");
    assert_eq!(f("blkio.leaf_weight_device"), "8:0 200\n");
    assert_eq!(
        cat(leaf(root, "hugetlb").join("hugetlb.2MB.limit_in_bytes")),
        "4194304"
    );
}

#[test]
fn v1_missing_controllers_name_the_field_and_write_nothing() {
    let tmp = TempDir::new().unwrap();
    let root = tmp.path();
    v1_fixture(root, true);
    // A host without net_cls/net_prio (like the development host).
    let mi: String = V1_ALL
        .lines()
        .filter(|l| !l.contains("net_cls"))
        .map(|l| format!("{l}\n"))
        .collect();
    let cg = Cgroup::new(&detect(root, &mi), "/onggi/c1", "").unwrap();
    let e = cg.apply(&everything(false)).unwrap_err();
    assert!(
        matches!(&e, Error::MissingController { controller, field } if controller == "net_cls" && *field == "linux.resources.network.classID"),
        "{e}"
    );
    // Validation comes first: memory, cpu, ... were not written.
    assert_eq!(cat(leaf(root, "memory").join("memory.limit_in_bytes")), "");
    assert_eq!(cat(leaf(root, "pids").join("pids.max")), "");
}

/// The v2 fixture: root controllers, the parents' subtree_control, and the leaf files
/// `everything` writes there (BFQ's weight file when `bfq`, else `io.weight`).
fn v2_fixture(root: &Path, bfq: bool) -> std::path::PathBuf {
    files(
        root,
        &[
            (
                "cgroup.controllers",
                "cpuset cpu io memory hugetlb pids rdma misc\n",
            ),
            ("cgroup.subtree_control", ""),
        ],
    );
    files(&root.join("onggi"), &[("cgroup.subtree_control", "")]);
    let l = root.join("onggi/c1");
    empty_files(
        &l,
        &[
            "memory.max",
            "memory.swap.max",
            "memory.low",
            "memory.high",
            "cpu.weight",
            "cpu.max",
            "cpu.max.burst",
            "cpu.idle",
            "cpuset.cpus",
            "cpuset.mems",
            "pids.max",
            "hugetlb.2MB.max",
            "hugetlb.2MB.rsvd.max",
            "io.max",
            "rdma.max",
            "misc.max",
            "cgroup.max.depth",
        ],
    );
    empty_files(&l, &[if bfq { "io.bfq.weight" } else { "io.weight" }]);
    l
}

/// `everything` without the v1-only fields, plus `unified` keys.
fn everything_v2() -> LinuxResources {
    let mut r = everything(false);
    r.set_network(None);
    r.set_unified(Some(HashMap::from([
        ("memory.high".to_owned(), "50331648".to_owned()),
        ("misc.max".to_owned(), "res_a 1".to_owned()),
        ("cgroup.max.depth".to_owned(), "3".to_owned()),
    ])));
    r
}

#[test]
fn v2_every_file() {
    let tmp = TempDir::new().unwrap();
    let root = tmp.path();
    let l = v2_fixture(root, true);
    let cg = Cgroup::new(&detect(root, V2), "/onggi/c1", "").unwrap();
    cg.create().unwrap();
    assert!(cg.device_rules_need_ebpf());
    let warnings = cg.apply(&everything_v2()).unwrap();
    assert_eq!(&warnings[..2], KERNEL_WARNINGS);
    assert_eq!(
        &warnings[2..],
        [
            "linux.resources.memory.swappiness is ignored: cgroup v2 has no per-cgroup swappiness",
            "linux.resources.memory.disableOOMKiller is ignored: cgroup v2 cannot disable the OOM killer",
            "linux.resources.blockIO.leafWeight is ignored: cgroup v2 has no leaf weights",
            "linux.resources.blockIO.weightDevice[0].leafWeight is ignored: cgroup v2 has no leaf weights",
        ]
    );
    let f = |file: &str| cat(l.join(file));
    assert_eq!(f("memory.max"), "67108864");
    assert_eq!(f("memory.swap.max"), "67108864"); // memory+swap 128M minus memory 64M
    assert_eq!(f("memory.low"), "33554432");
    assert_eq!(f("cpu.weight"), "20"); // shares 512
    assert_eq!(f("cpu.max"), "20000 100000");
    assert_eq!(f("cpu.max.burst"), "5000");
    assert_eq!(f("cpu.idle"), "0");
    assert_eq!(f("cpuset.cpus"), "0-1");
    assert_eq!(f("cpuset.mems"), "0");
    assert_eq!(f("pids.max"), "10");
    assert_eq!(f("hugetlb.2MB.max"), "4194304");
    assert_eq!(f("hugetlb.2MB.rsvd.max"), "4194304");
    assert_eq!(f("io.bfq.weight"), "5008:0 600\n"); // "500", then "8:0 600\n"
    assert_eq!(
        f("io.max"),
        "8:0 rbps=1048576 wbps=2097152\n8:16 riops=100 wiops=200\n"
    );
    assert_eq!(
        f("rdma.max"),
        "mlx4_0 hca_handle=2 hca_object=2000\nmlx5_1 hca_object=9\n"
    );
    assert_eq!(f("memory.high"), "50331648");
    assert_eq!(f("misc.max"), "res_a 1");
    assert_eq!(f("cgroup.max.depth"), "3");
    // No device file is written on v2 (the caller attaches the eBPF program).
    assert!(!l.join("devices.allow").exists());
}

#[test]
fn v2_without_bfq_converts_weights_for_io_weight() {
    let tmp = TempDir::new().unwrap();
    let root = tmp.path();
    let l = v2_fixture(root, false);
    let cg = Cgroup::new(&detect(root, V2), "/onggi/c1", "").unwrap();
    cg.create().unwrap();
    cg.apply(&everything_v2()).unwrap();
    // One open for both fallback writes: io.bfq.weight is tried once.
    assert_eq!(cat(l.join("io.weight")), "49508:0 5960\n");
}

#[test]
fn v2_refuses_v1_only_fields_by_name() {
    let tmp = TempDir::new().unwrap();
    let root = tmp.path();
    let l = v2_fixture(root, true);
    let cg = Cgroup::new(&detect(root, V2), "/onggi/c1", "").unwrap();
    cg.create().unwrap();
    let e = cg.apply(&everything(false)).unwrap_err();
    assert!(
        matches!(&e, Error::Invalid { field, .. } if *field == "linux.resources.network.classID"),
        "{e}"
    );
    let e = cg.apply(&everything(true)).unwrap_err();
    assert!(
        matches!(&e, Error::Invalid { field, .. } if *field == "linux.resources.cpu.realtimeRuntime"),
        "{e}"
    );
    assert_eq!(cat(l.join("memory.max")), "");
}

#[test]
fn hybrid_unified_keys_enable_their_controller() {
    let tmp = TempDir::new().unwrap();
    let root = tmp.path();
    let h = detect(root, HYBRID);
    files(
        &root.join("unified"),
        &[
            ("cgroup.controllers", "hugetlb misc\n"),
            ("cgroup.subtree_control", ""),
        ],
    );
    files(
        &root.join("unified/onggi"),
        &[("cgroup.subtree_control", "")],
    );
    let l = leaf(root, "unified");
    empty_files(&l, &["misc.max", "cgroup.max.depth"]);
    let cg = Cgroup::new(&h, "/onggi/c1", "").unwrap();
    let r = |k: &str, v: &str| {
        LinuxResourcesBuilder::default()
            .unified(HashMap::from([(k.to_owned(), v.to_owned())]))
            .build()
            .unwrap()
    };
    cg.apply(&r("misc.max", "res_a 2")).unwrap();
    assert_eq!(cat(l.join("misc.max")), "res_a 2");
    assert_eq!(cat(root.join("unified/cgroup.subtree_control")), "+misc");
    assert_eq!(
        cat(root.join("unified/onggi/cgroup.subtree_control")),
        "+misc"
    );
    cg.apply(&r("cgroup.max.depth", "2")).unwrap();
    assert_eq!(cat(l.join("cgroup.max.depth")), "2");
    // memory is a v1 controller here: the key is named.
    let e = cg.apply(&r("memory.high", "1")).unwrap_err();
    assert!(e.to_string().contains("\"memory.high\""), "{e}");
}

#[test]
fn update_checks_usage_before_lowering_the_limit() {
    let tmp = TempDir::new().unwrap();
    let root = tmp.path();
    v1_fixture(root, true);
    files(
        &leaf(root, "memory"),
        &[("memory.usage_in_bytes", "104857600\n")],
    );
    let cg = Cgroup::new(&detect(root, V1_ALL), "/onggi/c1", "").unwrap();
    let r = |limit: i64, check: bool| {
        let m = LinuxMemoryBuilder::default()
            .limit(limit)
            .check_before_update(check)
            .build()
            .unwrap();
        LinuxResourcesBuilder::default().memory(m).build().unwrap()
    };
    let e = cg.update(&r(64 << 20, true)).unwrap_err();
    assert!(
        matches!(&e, Error::Invalid { field, reason } if *field == "linux.resources.memory.limit" && reason.contains("104857600")),
        "{e}"
    );
    assert_eq!(cat(leaf(root, "memory").join("memory.limit_in_bytes")), "");
    // Without the check, the write is left to the kernel.
    cg.update(&r(64 << 20, false)).unwrap();
    assert_eq!(
        cat(leaf(root, "memory").join("memory.limit_in_bytes")),
        "67108864"
    );
    cg.update(&r(200 << 20, true)).unwrap();
    assert_eq!(
        cat(leaf(root, "memory").join("memory.limit_in_bytes")),
        "209715200"
    );
}
