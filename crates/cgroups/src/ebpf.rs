//! cgroup v2 device rules: an eBPF program attached to the container's cgroup.
//!
//! cgroup v2 has no `devices.allow` / `devices.deny`. On every open and mknod of a
//! device node, the kernel runs the `BPF_PROG_TYPE_CGROUP_DEVICE` programs attached to
//! the caller's cgroup and to its ancestors; each one gets a
//! `struct bpf_cgroup_dev_ctx { u32 access_type; u32 major; u32 minor; }`, where
//! `access_type` is `(access << 16) | type`, and the access is allowed when every one of
//! them returns 1. runc (`libcontainer/cgroups/devices/devicefilter.go`) and crun
//! (`src/libcrun/ebpf.c`) translate the spec's rules into such a program; so does this
//! module, in two steps:
//!
//! ```text
//! compile(rules) -> Vec<Insn>   pure: the rules → a program (tested here by running it)
//! apply(dir, rules)             load it, attach it with BPF_F_ALLOW_MULTI, then
//!                               detach the programs we attached before
//! ```
//!
//! # What the rules mean
//!
//! The rules are read in order and, for each access asked (read, write, mknod), the
//! last rule that matches the device and names that access decides it; an access no
//! rule decides is denied. A request for several accesses at once (an `open` with
//! `O_RDWR` asks for read and write) is allowed only when each of them is.
//!
//! * A rule of type `a` (or without a type) matches every device and every access,
//!   whatever its numbers and access say, as the v1 kernel and runc read it: it sets
//!   the default for everything before it. So `deny a` then allows is an allow-list,
//!   and `allow a` then denies a deny-list.
//! * `b` matches block devices, `c` and `u` character devices; `p` (a FIFO needs no
//!   permission) matches nothing. An unset or `-1` major or minor matches any number;
//!   an unset or empty access means `rwm` (both as in the v1 `devices.*` lines).
//! * Unlike the v1 kernel, where `deny c 1:3 w` after `allow c *:* rwm` silently does
//!   nothing (runc refuses such a rule), a narrower rule after a wider one takes
//!   effect: the program checks the rules last first.
//!
//! # The program
//!
//! ```text
//! r2 = type   r3 = access (the bits still undecided)   r4 = major   r5 = minor
//! if r3 == 0 goto default
//! for each rule after the last `a` rule, last first:
//!     if r2 != type goto next;  if r4 != major goto next;  if r5 != minor goto next
//!     allow rule:  r3 &= ~access;  if r3 == 0 goto allow
//!     deny rule:   if r3 & access goto deny
//!   next:
//! default: r0 = default; exit
//! ```
use std::fs::File;
use std::io;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::sys::resource::{getrlimit, setrlimit, Resource, RLIM_INFINITY};
use oci_spec::runtime::{LinuxDeviceCgroup, LinuxDeviceType};
use onggi_sys::bpf;

/// The name our programs are loaded with; [`apply`] replaces only programs of this
/// name, and leaves alone those that others (systemd, an admin) attached.
pub const PROG_NAME: &str = "onggi_devices";

/// The license string of our programs (as `MODULE_LICENSE` spells it; runc uses the
/// same). The program calls no helper, so a non-GPL license is fine.
const LICENSE: &std::ffi::CStr = c"Apache";

/// The spec field the rules come from, for error messages.
const DEVICES: &str = "linux.resources.devices";

/// Every way compiling or applying the device rules can fail.
#[derive(Debug, thiserror::Error)]
pub enum EbpfError {
    /// A rule has a malformed number or access.
    #[error("{DEVICES} rule {index}: {reason}")]
    Rule {
        /// The rule's index in the list.
        index: usize,
        /// What was wrong.
        reason: String,
    },
    /// So many rules that a jump across the program does not fit eBPF's 16-bit offset.
    #[error("{DEVICES}: {rules} rules make a device program too long")]
    TooLong {
        /// How many rules were compiled.
        rules: usize,
    },
    /// Opening the cgroup directory failed.
    #[error("open cgroup directory {}", path.display())]
    Open {
        /// The cgroup directory.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// `BPF_PROG_QUERY` on the cgroup directory failed.
    #[error("list the device programs attached to {}", path.display())]
    Query {
        /// The cgroup directory.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: Errno,
    },
    /// Opening or inspecting a program attached to the cgroup failed.
    #[error("inspect device program {id} attached to {}", path.display())]
    Inspect {
        /// The cgroup directory.
        path: PathBuf,
        /// The program's id.
        id: u32,
        /// The OS error.
        #[source]
        source: Errno,
    },
    /// The kernel refused the program; the source carries the verifier's log.
    #[error("load the device program for {}", path.display())]
    Load {
        /// The cgroup directory.
        path: PathBuf,
        /// The errno and the verifier log.
        #[source]
        source: bpf::LoadError,
    },
    /// Attaching the new program failed.
    #[error("attach the device program to {}", path.display())]
    Attach {
        /// The cgroup directory.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: Errno,
    },
    /// Detaching a program we attached before failed (the new one is attached).
    #[error("detach the old device program {id} from {}", path.display())]
    Detach {
        /// The cgroup directory.
        path: PathBuf,
        /// The old program's id.
        id: u32,
        /// The OS error.
        #[source]
        source: Errno,
    },
}

/// Compile `rules`, load the program, attach it to `cgroup_dir` (a cgroup v2
/// directory) with `BPF_F_ALLOW_MULTI`, and then detach the programs named
/// [`PROG_NAME`] that were attached there before, as runc does on `update`: the old
/// and the new program overlap for a moment (an access must pass both), so the
/// cgroup is never without a filter.
pub fn apply(cgroup_dir: &Path, rules: &[LinuxDeviceCgroup]) -> Result<(), EbpfError> {
    let code: Vec<u64> = compile(rules)?.iter().map(|i| i.encode()).collect();
    let path = || cgroup_dir.to_path_buf();
    let dir = File::open(cgroup_dir).map_err(|source| EbpfError::Open {
        path: path(),
        source,
    })?;
    // Before attaching, so that the new program is not among them.
    let old: Vec<(u32, OwnedFd)> = programs(&dir, cgroup_dir)?
        .into_iter()
        .filter_map(|p| match p.opened {
            Some((fd, name)) if name == PROG_NAME => Some((p.id, fd)),
            _ => None,
        })
        .collect();
    let prog = load(&code).map_err(|source| EbpfError::Load {
        path: path(),
        source,
    })?;
    bpf::attach_cgroup_device(&dir, &prog).map_err(|source| EbpfError::Attach {
        path: path(),
        source,
    })?;
    for (id, fd) in old {
        match bpf::detach_cgroup_device(&dir, &fd) {
            // ENOENT: a concurrent apply detached it already.
            Ok(()) | Err(Errno::ENOENT) => {}
            Err(source) => {
                return Err(EbpfError::Detach {
                    path: path(),
                    id,
                    source,
                })
            }
        }
    }
    Ok(())
}

/// A device program attached directly to a cgroup directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attached {
    /// The kernel's id of the program.
    pub id: u32,
    /// Its name ([`PROG_NAME`] for ours); `None` when we may not open it (an LSM
    /// policy can forbid that).
    pub name: Option<String>,
}

/// The device programs attached directly to `cgroup_dir`, in the order they run.
pub fn attached(cgroup_dir: &Path) -> Result<Vec<Attached>, EbpfError> {
    let dir = File::open(cgroup_dir).map_err(|source| EbpfError::Open {
        path: cgroup_dir.to_path_buf(),
        source,
    })?;
    Ok(programs(&dir, cgroup_dir)?
        .into_iter()
        .map(|p| Attached {
            id: p.id,
            name: p.opened.map(|(_, name)| name),
        })
        .collect())
}

/// One program attached to a cgroup: its id and, when we may open it, a descriptor
/// and its name.
struct Program {
    id: u32,
    opened: Option<(OwnedFd, String)>,
}

/// The programs attached to `dir`, skipping those that vanished since the query.
fn programs(dir: &File, path: &Path) -> Result<Vec<Program>, EbpfError> {
    let ids = bpf::query_cgroup_device(dir).map_err(|source| EbpfError::Query {
        path: path.to_path_buf(),
        source,
    })?;
    let inspect = |id, source| EbpfError::Inspect {
        path: path.to_path_buf(),
        id,
        source,
    };
    let mut out = Vec::with_capacity(ids.len());
    for id in ids {
        let fd = match bpf::prog_fd_by_id(id) {
            Ok(fd) => fd,
            // Detached and freed since the query.
            Err(Errno::ENOENT) => continue,
            // Not ours to touch: another device program can only restrict further.
            Err(Errno::EPERM | Errno::EACCES) => {
                out.push(Program { id, opened: None });
                continue;
            }
            Err(e) => return Err(inspect(id, e)),
        };
        let name = bpf::prog_name(&fd).map_err(|e| inspect(id, e))?;
        out.push(Program {
            id,
            opened: Some((fd, name)),
        });
    }
    Ok(out)
}

/// `BPF_PROG_LOAD`. Before Linux 5.11 a program is charged to `RLIMIT_MEMLOCK` (often
/// 64 KiB), and the load fails with `EPERM` past it: then raise the limit for one more
/// attempt and put it back, as crun does (a raised limit would be inherited by the
/// processes we start).
fn load(code: &[u64]) -> Result<OwnedFd, bpf::LoadError> {
    let first = match bpf::prog_load_cgroup_device(code, LICENSE, PROG_NAME) {
        Err(e) if e.errno == Errno::EPERM => e,
        done => return done,
    };
    let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_MEMLOCK) else {
        return Err(first);
    };
    if setrlimit(Resource::RLIMIT_MEMLOCK, RLIM_INFINITY, RLIM_INFINITY).is_err() {
        return Err(first);
    }
    let again = bpf::prog_load_cgroup_device(code, LICENSE, PROG_NAME);
    // Lowering a limit is always permitted.
    let _ = setrlimit(Resource::RLIMIT_MEMLOCK, soft, hard);
    again
}

/// One eBPF instruction (`struct bpf_insn`): an opcode, two 4-bit registers, a 16-bit
/// jump offset and a 32-bit immediate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Insn {
    /// Class, size/operation and source bits (`BPF_LDX | BPF_W | BPF_MEM`, ...).
    pub code: u8,
    /// Destination register, 0..=10.
    pub dst: u8,
    /// Source register, 0..=10.
    pub src: u8,
    /// Jump offset in instructions, from the next one; or a load's byte offset.
    pub off: i16,
    /// Immediate operand.
    pub imm: i32,
}

// Opcode parts (include/uapi/linux/bpf_common.h, bpf.h).
const BPF_LDX: u8 = 0x01;
const BPF_ALU: u8 = 0x04;
const BPF_JMP: u8 = 0x05;
const BPF_ALU64: u8 = 0x07;
const BPF_W: u8 = 0x00;
const BPF_MEM: u8 = 0x60;
const BPF_K: u8 = 0x00;
const BPF_X: u8 = 0x08;
const BPF_AND: u8 = 0x50;
const BPF_RSH: u8 = 0x70;
const BPF_MOV: u8 = 0xb0;
const BPF_JEQ: u8 = 0x10;
const BPF_JSET: u8 = 0x40;
const BPF_JNE: u8 = 0x50;
const BPF_EXIT: u8 = 0x90;

// Registers: R0 the return value, R1 the context on entry, R2..R5 the fields.
const R0: u8 = 0;
const R1: u8 = 1;
const R_TYPE: u8 = 2;
const R_ACCESS: u8 = 3;
const R_MAJOR: u8 = 4;
const R_MINOR: u8 = 5;

// `enum bpf_devcg_*` in linux/bpf.h.
const DEV_BLOCK: i32 = 1;
const DEV_CHAR: i32 = 2;
const ACC_MKNOD: u32 = 1;
const ACC_READ: u32 = 2;
const ACC_WRITE: u32 = 4;
const ACC_ALL: u32 = ACC_MKNOD | ACC_READ | ACC_WRITE;

impl Insn {
    const fn new(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> Insn {
        Insn {
            code,
            dst,
            src,
            off,
            imm,
        }
    }

    /// `dst = *(u32 *)(src + off)`
    const fn ldx_w(dst: u8, src: u8, off: i16) -> Insn {
        Insn::new(BPF_LDX | BPF_W | BPF_MEM, dst, src, off, 0)
    }
    /// `dst = (u32)dst & imm` (32-bit: the upper half is cleared)
    const fn and32(dst: u8, imm: i32) -> Insn {
        Insn::new(BPF_ALU | BPF_AND | BPF_K, dst, 0, 0, imm)
    }
    /// `dst = (u32)dst >> imm`
    const fn rsh32(dst: u8, imm: i32) -> Insn {
        Insn::new(BPF_ALU | BPF_RSH | BPF_K, dst, 0, 0, imm)
    }
    /// `dst = (u32)imm` (zero-extended)
    const fn mov32(dst: u8, imm: i32) -> Insn {
        Insn::new(BPF_ALU | BPF_MOV | BPF_K, dst, 0, 0, imm)
    }
    /// `dst = (s64)imm` (sign-extended)
    const fn mov64(dst: u8, imm: i32) -> Insn {
        Insn::new(BPF_ALU64 | BPF_MOV | BPF_K, dst, 0, 0, imm)
    }
    /// `if dst == (s64)imm goto +off`
    const fn jeq(dst: u8, imm: i32, off: i16) -> Insn {
        Insn::new(BPF_JMP | BPF_JEQ | BPF_K, dst, 0, off, imm)
    }
    /// `if dst != (s64)imm goto +off`
    const fn jne(dst: u8, imm: i32, off: i16) -> Insn {
        Insn::new(BPF_JMP | BPF_JNE | BPF_K, dst, 0, off, imm)
    }
    /// `if dst != src goto +off`
    const fn jne_reg(dst: u8, src: u8, off: i16) -> Insn {
        Insn::new(BPF_JMP | BPF_JNE | BPF_X, dst, src, off, 0)
    }
    /// `if dst & (s64)imm goto +off`
    const fn jset(dst: u8, imm: i32, off: i16) -> Insn {
        Insn::new(BPF_JMP | BPF_JSET | BPF_K, dst, 0, off, imm)
    }
    /// `return r0`
    const fn exit() -> Insn {
        Insn::new(BPF_JMP | BPF_EXIT, 0, 0, 0, 0)
    }

    /// The 8 bytes of the `struct bpf_insn`, in memory order, as a native u64 (what
    /// `BPF_PROG_LOAD` reads).
    pub fn encode(self) -> u64 {
        // The register byte is two bitfields, `dst_reg:4, src_reg:4`: the first is the
        // low nibble on little-endian machines and the high one on big-endian ones.
        let regs = if cfg!(target_endian = "little") {
            (self.dst & 0xf) | (self.src << 4)
        } else {
            (self.dst << 4) | (self.src & 0xf)
        };
        let mut b = [0u8; 8];
        b[0] = self.code;
        b[1] = regs;
        b[2..4].copy_from_slice(&self.off.to_ne_bytes());
        b[4..8].copy_from_slice(&self.imm.to_ne_bytes());
        u64::from_ne_bytes(b)
    }
}

/// One rule that can decide something: a device type, numbers (`None` = any), the
/// accesses it names, and its action.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Rule {
    typ: i32,
    major: Option<u32>,
    minor: Option<u32>,
    access: u32,
    allow: bool,
}

/// How a spec rule reads: every device (type `a`), some devices, or none (`p`).
enum Parsed {
    All { allow: bool },
    Some(Rule),
    Nothing,
}

fn parse(rule: &LinuxDeviceCgroup) -> Result<Parsed, String> {
    let allow = rule.allow();
    let typ = match rule.typ().unwrap_or(LinuxDeviceType::A) {
        LinuxDeviceType::A => return Ok(Parsed::All { allow }),
        LinuxDeviceType::B => DEV_BLOCK,
        LinuxDeviceType::C | LinuxDeviceType::U => DEV_CHAR,
        LinuxDeviceType::P => return Ok(Parsed::Nothing),
    };
    let number = |what: &str, n: Option<i64>| match n {
        None | Some(-1) => Ok(None),
        Some(n) => u32::try_from(n)
            .map(Some)
            .map_err(|_| format!("{what} {n} (must be -1 or 0..={})", u32::MAX)),
    };
    let mut access = 0;
    for b in rule.access().as_deref().unwrap_or("").bytes() {
        access |= match b {
            b'm' => ACC_MKNOD,
            b'r' => ACC_READ,
            b'w' => ACC_WRITE,
            _ => {
                let access = rule.access().as_deref().unwrap_or("");
                return Err(format!("access {access:?} (must be letters of \"rwm\")"));
            }
        };
    }
    Ok(Parsed::Some(Rule {
        typ,
        major: number("major", rule.major())?,
        minor: number("minor", rule.minor())?,
        access: if access == 0 { ACC_ALL } else { access },
        allow,
    }))
}

/// Where a jump goes: the next rule's block, or one of the two exits.
#[derive(Clone, Copy)]
enum Label {
    Next,
    Exit(bool),
}

/// Instructions under construction, with the jumps whose offsets are not known yet.
#[derive(Default)]
struct Asm {
    insns: Vec<Insn>,
    to_next: Vec<usize>,
    to_exit: [Vec<usize>; 2],
}

impl Asm {
    fn push(&mut self, insn: Insn) {
        self.insns.push(insn);
    }

    fn jump(&mut self, insn: Insn, to: Label) {
        match to {
            Label::Next => self.to_next.push(self.insns.len()),
            Label::Exit(allow) => self.to_exit[usize::from(allow)].push(self.insns.len()),
        }
        self.insns.push(insn);
    }

    /// Point the jumps in `from` at the instruction about to be pushed.
    fn land(&mut self, from: Vec<usize>) -> Result<(), ()> {
        let here = self.insns.len();
        for at in from {
            self.insns[at].off = i16::try_from(here - at - 1).map_err(drop)?;
        }
        Ok(())
    }

    /// `if (device matches) { allow: clear the accesses, all clear → allow;
    /// deny: any of them asked → deny }`
    fn rule(&mut self, r: &Rule) -> Result<(), ()> {
        self.jump(Insn::jne(R_TYPE, r.typ, 0), Label::Next);
        for (reg, n) in [(R_MAJOR, r.major), (R_MINOR, r.minor)] {
            match n.map(|n| (n, i32::try_from(n))) {
                None => {}
                Some((_, Ok(imm))) => self.jump(Insn::jne(reg, imm, 0), Label::Next),
                // An immediate is sign-extended to 64 bits, the loaded field is not:
                // compare numbers from 2^31 through a zero-extended register instead.
                Some((n, Err(_))) => {
                    self.push(Insn::mov32(R1, n as i32));
                    self.jump(Insn::jne_reg(reg, R1, 0), Label::Next);
                }
            }
        }
        if r.allow {
            self.push(Insn::and32(R_ACCESS, !r.access as i32));
            self.jump(Insn::jeq(R_ACCESS, 0, 0), Label::Exit(true));
        } else {
            self.jump(Insn::jset(R_ACCESS, r.access as i32, 0), Label::Exit(false));
        }
        let next = std::mem::take(&mut self.to_next);
        self.land(next)
    }

    /// `r0 = allow; exit`, the target of the jumps to that exit.
    fn exit(&mut self, allow: bool) -> Result<(), ()> {
        let from = std::mem::take(&mut self.to_exit[usize::from(allow)]);
        self.land(from)?;
        self.push(Insn::mov64(R0, i32::from(allow)));
        self.push(Insn::exit());
        Ok(())
    }
}

/// Compile the spec's device rules (see the module doc for what they mean) into a
/// `BPF_PROG_TYPE_CGROUP_DEVICE` program.
pub fn compile(rules: &[LinuxDeviceCgroup]) -> Result<Vec<Insn>, EbpfError> {
    let mut default_allow = false;
    let mut live: Vec<Rule> = Vec::new();
    for (index, rule) in rules.iter().enumerate() {
        match parse(rule).map_err(|reason| EbpfError::Rule { index, reason })? {
            // Decides everything: the rules before it no longer matter.
            Parsed::All { allow } => {
                default_allow = allow;
                live.clear();
            }
            // A rule with the default's action that no earlier rule needs overriding
            // changes nothing (the emulator in runc drops these too).
            Parsed::Some(r) if live.is_empty() && r.allow == default_allow => {}
            Parsed::Some(r) => live.push(r),
            Parsed::Nothing => {}
        }
    }
    let mut a = Asm::default();
    if !live.is_empty() {
        let too_long = |()| EbpfError::TooLong { rules: live.len() };
        a.push(Insn::ldx_w(R_TYPE, R1, 0));
        a.push(Insn::and32(R_TYPE, 0xffff));
        a.push(Insn::ldx_w(R_ACCESS, R1, 0));
        a.push(Insn::rsh32(R_ACCESS, 16));
        a.push(Insn::ldx_w(R_MAJOR, R1, 4));
        a.push(Insn::ldx_w(R_MINOR, R1, 8));
        // The kernel never asks for no access; give such a request the default.
        a.jump(Insn::jeq(R_ACCESS, 0, 0), Label::Exit(default_allow));
        for r in live.iter().rev() {
            a.rule(r).map_err(too_long)?;
        }
        a.exit(default_allow).map_err(too_long)?;
        if !a.to_exit[usize::from(!default_allow)].is_empty() {
            a.exit(!default_allow).map_err(too_long)?;
        }
    } else {
        a.exit(default_allow)
            .map_err(|()| EbpfError::TooLong { rules: 0 })?;
    }
    Ok(a.insns)
}

#[cfg(test)]
mod tests {
    use oci_spec::runtime::LinuxDeviceCgroupBuilder;

    use super::*;

    fn rule(
        allow: bool,
        typ: Option<LinuxDeviceType>,
        major: Option<i64>,
        minor: Option<i64>,
        access: Option<&str>,
    ) -> LinuxDeviceCgroup {
        let mut r = LinuxDeviceCgroupBuilder::default()
            .allow(allow)
            .build()
            .unwrap();
        r.set_typ(typ);
        r.set_major(major);
        r.set_minor(minor);
        r.set_access(access.map(str::to_owned));
        r
    }

    fn deny_all() -> LinuxDeviceCgroup {
        rule(false, Some(LinuxDeviceType::A), None, None, Some("rwm"))
    }
    fn allow_all() -> LinuxDeviceCgroup {
        rule(true, None, None, None, None)
    }
    fn c(allow: bool, major: Option<i64>, minor: Option<i64>, access: &str) -> LinuxDeviceCgroup {
        rule(allow, Some(LinuxDeviceType::C), major, minor, Some(access))
    }
    fn b(allow: bool, major: Option<i64>, minor: Option<i64>, access: &str) -> LinuxDeviceCgroup {
        rule(allow, Some(LinuxDeviceType::B), major, minor, Some(access))
    }

    /// runc's default rules (libcontainer/specconv): deny all, then the usual nodes.
    fn runc_default() -> Vec<LinuxDeviceCgroup> {
        let mut v = vec![deny_all()];
        for (major, minor) in [
            (1, 3),
            (1, 5),
            (1, 7),
            (1, 8),
            (1, 9),
            (5, 0),
            (5, 1),
            (5, 2),
        ] {
            v.push(c(true, Some(major), Some(minor), "rwm"));
        }
        v.push(c(true, Some(136), None, "rwm"));
        v.push(c(true, Some(10), Some(200), "rwm"));
        v.push(c(true, None, None, "m"));
        v.push(b(true, None, None, "m"));
        v
    }

    const PROLOGUE: [Insn; 6] = [
        Insn::ldx_w(2, 1, 0),
        Insn::and32(2, 0xffff),
        Insn::ldx_w(3, 1, 0),
        Insn::rsh32(3, 16),
        Insn::ldx_w(4, 1, 4),
        Insn::ldx_w(5, 1, 8),
    ];

    fn with_prologue(body: &[Insn]) -> Vec<Insn> {
        PROLOGUE.iter().chain(body).copied().collect()
    }

    // ---- the encoding, checked against bytes written out by hand ----

    #[test]
    #[cfg(target_endian = "little")]
    fn encoding_matches_the_kernel_layout() {
        // code | regs << 8 | off << 16 | imm << 32, with dst in the low nibble of regs.
        assert_eq!(Insn::exit().encode(), 0x95);
        assert_eq!(Insn::mov64(0, 1).encode(), 0x0000_0001_0000_00b7);
        assert_eq!(Insn::ldx_w(4, 1, 4).encode(), 0x0000_0000_0004_1461);
        assert_eq!(Insn::and32(2, 0xffff).encode(), 0x0000_ffff_0000_0254);
        assert_eq!(Insn::jne(2, 2, 7).encode(), 0x0000_0002_0007_0255);
        assert_eq!(Insn::jne_reg(4, 1, 3).encode(), 0x0000_0000_0003_145d);
        assert_eq!(Insn::and32(3, -7).encode(), 0xffff_fff9_0000_0354);
        assert_eq!(Insn::jset(3, 4, 2).encode(), 0x0000_0004_0002_0345);
    }

    // ---- the compiler's output for a few rule sets ----

    #[test]
    fn no_rules_deny_everything() {
        let want = vec![Insn::mov64(0, 0), Insn::exit()];
        assert_eq!(compile(&[]).unwrap(), want);
        assert_eq!(compile(&[deny_all()]).unwrap(), want);
        // A deny with nothing to override is dropped.
        assert_eq!(compile(&[c(false, Some(1), Some(3), "rwm")]).unwrap(), want);
        // A FIFO rule decides nothing.
        let fifo = rule(true, Some(LinuxDeviceType::P), Some(1), Some(1), Some("rw"));
        assert_eq!(compile(&[fifo]).unwrap(), want);
    }

    #[test]
    fn allow_all_is_two_instructions() {
        let want = vec![Insn::mov64(0, 1), Insn::exit()];
        assert_eq!(compile(&[allow_all()]).unwrap(), want);
        // Whatever came before the last `a` rule no longer matters; `a` ignores the
        // access and numbers it is given, like the v1 kernel.
        let rules = [
            c(true, Some(1), Some(3), "r"),
            rule(true, None, Some(1), None, Some("r")),
        ];
        assert_eq!(compile(&rules).unwrap(), want);
    }

    #[test]
    fn allow_one_char_device() {
        let rules = [deny_all(), c(true, Some(1), Some(3), "rw")];
        let want = with_prologue(&[
            Insn::jeq(3, 0, 5), // 6: no access asked → 12 (default)
            Insn::jne(2, 2, 4), // 7: not char → 12
            Insn::jne(4, 1, 3), // 8: major != 1 → 12
            Insn::jne(5, 3, 2), // 9: minor != 3 → 12
            Insn::and32(3, !6), // 10: read and write are decided
            Insn::jeq(3, 0, 2), // 11: nothing else asked → 14 (allow)
            Insn::mov64(0, 0),  // 12: default: deny
            Insn::exit(),       // 13
            Insn::mov64(0, 1),  // 14: allow
            Insn::exit(),       // 15
        ]);
        assert_eq!(compile(&rules).unwrap(), want);
    }

    #[test]
    fn deny_list_checks_the_last_rule_first() {
        let rules = [
            allow_all(),
            b(false, Some(8), None, "w"),
            c(false, None, Some(7), ""),
        ];
        let want = with_prologue(&[
            Insn::jeq(3, 0, 6), // 6: no access asked → 13 (default)
            // c *:7 rwm, the last rule
            Insn::jne(2, 2, 2),  // 7: not char → 10
            Insn::jne(5, 7, 1),  // 8: minor != 7 → 10
            Insn::jset(3, 7, 5), // 9: any access → 15 (deny)
            // b 8:* w
            Insn::jne(2, 1, 2),  // 10: not block → 13
            Insn::jne(4, 8, 1),  // 11: major != 8 → 13
            Insn::jset(3, 4, 2), // 12: write asked → 15 (deny)
            Insn::mov64(0, 1),   // 13: default: allow
            Insn::exit(),        // 14
            Insn::mov64(0, 0),   // 15: deny
            Insn::exit(),        // 16
        ]);
        assert_eq!(compile(&rules).unwrap(), want);
    }

    #[test]
    fn numbers_from_2_pow_31_go_through_a_register() {
        let rules = [c(true, Some(3_000_000_000), None, "r")];
        let want = with_prologue(&[
            Insn::jeq(3, 0, 5),                      // 6 → 12 (default)
            Insn::jne(2, 2, 4),                      // 7 → 12
            Insn::mov32(1, 3_000_000_000u32 as i32), // 8: r1 = 3e9, zero-extended
            Insn::jne_reg(4, 1, 2),                  // 9 → 12
            Insn::and32(3, !2),                      // 10
            Insn::jeq(3, 0, 2),                      // 11 → 14 (allow)
            Insn::mov64(0, 0),                       // 12: default: deny
            Insn::exit(),                            // 13
            Insn::mov64(0, 1),                       // 14: allow
            Insn::exit(),                            // 15
        ]);
        assert_eq!(compile(&rules).unwrap(), want);
    }

    #[test]
    fn malformed_rules_are_refused_with_their_index() {
        let cases = [
            (c(true, Some(1), Some(3), "rwx"), "access"),
            (c(true, Some(-2), Some(3), "r"), "major -2"),
            (c(true, Some(1), Some(1 << 32), "r"), "minor 4294967296"),
        ];
        for (bad, want) in cases {
            let e = compile(&[deny_all(), bad]).unwrap_err();
            let msg = e.to_string();
            assert!(matches!(e, EbpfError::Rule { index: 1, .. }), "{msg}");
            assert!(msg.contains(want) && msg.contains(DEVICES), "{msg}");
        }
    }

    #[test]
    fn too_many_rules_is_an_error_not_a_wrong_jump() {
        // 5 instructions a rule: the first block's jump to the exits is past i16::MAX.
        let many: Vec<_> = (0..7000).map(|i| c(true, Some(i), Some(0), "r")).collect();
        assert!(matches!(
            compile(&many),
            Err(EbpfError::TooLong { rules: 7000 })
        ));
        let some: Vec<_> = (0..1000).map(|i| c(true, Some(i), Some(0), "r")).collect();
        let prog = compile(&some).unwrap();
        assert!(run(&prog, 2, 999, 0, ACC_READ));
        assert!(!run(&prog, 2, 1000, 0, ACC_READ));
    }

    // ---- running the programs ----

    /// What a register holds, for the interpreter: the context pointer or a number.
    #[derive(Clone, Copy, Debug)]
    enum Val {
        Ctx,
        Num(u64),
    }

    /// Run an encoded program on one request, as the kernel would; panic on anything
    /// the verifier would refuse (an unknown opcode, a read of an unset register, a
    /// backward or out-of-range jump, a context read out of bounds).
    fn run_encoded(code: &[u64], typ: u32, major: u32, minor: u32, access: u32) -> u64 {
        let mut ctx = [0u8; 12];
        ctx[0..4].copy_from_slice(&((access << 16) | typ).to_ne_bytes());
        ctx[4..8].copy_from_slice(&major.to_ne_bytes());
        ctx[8..12].copy_from_slice(&minor.to_ne_bytes());
        let mut reg: [Option<Val>; 11] = [None; 11];
        reg[1] = Some(Val::Ctx);
        let num = |reg: &[Option<Val>; 11], r: u8| match reg[r as usize] {
            Some(Val::Num(n)) => n,
            other => panic!("read of r{r} = {other:?}"),
        };
        let mut pc = 0usize;
        for _ in 0..code.len() {
            let b = code[pc].to_ne_bytes();
            let (dst, src) = if cfg!(target_endian = "little") {
                (b[1] & 0xf, b[1] >> 4)
            } else {
                (b[1] >> 4, b[1] & 0xf)
            };
            let off = i16::from_ne_bytes([b[2], b[3]]);
            let imm = i32::from_ne_bytes([b[4], b[5], b[6], b[7]]);
            let simm = imm as i64 as u64;
            assert!(dst <= 10 && src <= 10);
            // Some(value) for an ALU op or a load, None for a jump (`taken`).
            let (value, taken) = match b[0] {
                0x61 => {
                    assert!(
                        matches!(reg[src as usize], Some(Val::Ctx)),
                        "load from r{src}"
                    );
                    assert!((0..=8).contains(&off) && off % 4 == 0, "ctx offset {off}");
                    let o = off as usize;
                    let w = u32::from_ne_bytes(ctx[o..o + 4].try_into().unwrap());
                    (Some(w.into()), false)
                }
                0x54 => (Some((num(&reg, dst) as u32 & imm as u32).into()), false),
                0x74 => (Some((num(&reg, dst) as u32 >> imm).into()), false),
                0xb4 => (Some((imm as u32).into()), false),
                0xb7 => (Some(simm), false),
                0x15 => (None, num(&reg, dst) == simm),
                0x55 => (None, num(&reg, dst) != simm),
                0x5d => (None, num(&reg, dst) != num(&reg, src)),
                0x45 => (None, num(&reg, dst) & simm != 0),
                0x95 => return num(&reg, 0),
                op => panic!("opcode {op:#x} at {pc}"),
            };
            if let Some(v) = value {
                reg[dst as usize] = Some(Val::Num(v));
            }
            if taken {
                assert!(off >= 0, "backward jump at {pc}");
                pc += off as usize;
            }
            pc += 1;
            assert!(pc < code.len(), "ran off the end");
        }
        panic!("no exit")
    }

    fn run(prog: &[Insn], typ: u32, major: u32, minor: u32, access: u32) -> bool {
        let code: Vec<u64> = prog.iter().map(|i| i.encode()).collect();
        match run_encoded(&code, typ, major, minor, access) {
            0 => false,
            1 => true,
            r => panic!("returned {r}"),
        }
    }

    /// The rules read the plain way: for each access bit asked, the last rule that
    /// matches the device and names it decides; a request for nothing gets the last
    /// `a` rule's action. Nothing decided means deny.
    fn reference(
        rules: &[LinuxDeviceCgroup],
        typ: u32,
        major: u32,
        minor: u32,
        access: u32,
    ) -> bool {
        let is_all = |r: &LinuxDeviceCgroup| matches!(r.typ(), None | Some(LinuxDeviceType::A));
        let number = |want: Option<i64>, got: u32| {
            matches!(want, None | Some(-1)) || want == Some(got.into())
        };
        let covers = |r: &LinuxDeviceCgroup, bit: u32| {
            if is_all(r) {
                return true;
            }
            let t = match r.typ() {
                Some(LinuxDeviceType::B) => 1,
                Some(LinuxDeviceType::C | LinuxDeviceType::U) => 2,
                _ => return false,
            };
            let letters = r
                .access()
                .as_deref()
                .filter(|a| !a.is_empty())
                .unwrap_or("rwm");
            let letter = match bit {
                0 => 'm',
                1 => 'r',
                2 => 'w',
                _ => return false,
            };
            t == typ
                && number(r.major(), major)
                && number(r.minor(), minor)
                && letters.contains(letter)
        };
        if access == 0 {
            return rules
                .iter()
                .rev()
                .find(|r| is_all(r))
                .is_some_and(|r| r.allow());
        }
        (0..32).filter(|bit| access & (1 << bit) != 0).all(|bit| {
            rules
                .iter()
                .rev()
                .find(|r| covers(r, bit))
                .is_some_and(|r| r.allow())
        })
    }

    /// xorshift64*: enough randomness for test cases, no dependency.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
        }
        fn pick<T: Copy>(&mut self, from: &[T]) -> T {
            from[(self.next() % from.len() as u64) as usize]
        }
    }

    const NUMBERS: [u32; 12] = [
        0,
        1,
        3,
        5,
        7,
        8,
        136,
        200,
        4095,
        (1 << 20) - 1,
        (1 << 31) + 7,
        u32::MAX,
    ];

    fn random_rule(rng: &mut Rng) -> LinuxDeviceCgroup {
        use LinuxDeviceType::*;
        let typ = rng.pick(&[
            None,
            Some(A),
            Some(B),
            Some(B),
            Some(C),
            Some(C),
            Some(C),
            Some(U),
            Some(P),
        ]);
        let number = |rng: &mut Rng| match rng.next() % 3 {
            0 => rng.pick(&[None, Some(-1)]),
            _ => Some(i64::from(rng.pick(&NUMBERS))),
        };
        let major = number(rng);
        let minor = number(rng);
        let access = rng.pick(&[
            None,
            Some(""),
            Some("r"),
            Some("w"),
            Some("m"),
            Some("rw"),
            Some("rm"),
            Some("wm"),
            Some("rwm"),
            Some("mwr"),
        ]);
        rule(rng.next() & 1 == 0, typ, major, minor, access)
    }

    /// Requests near the rules' numbers, plus odd ones the kernel never sends (type 0
    /// or 3, no access, access bits past `w`).
    fn random_request(rng: &mut Rng) -> (u32, u32, u32, u32) {
        let typ = rng.pick(&[1, 1, 2, 2, 2, 0, 3]);
        let number = |rng: &mut Rng| {
            if rng.next() & 7 == 0 {
                rng.next() as u32
            } else {
                rng.pick(&NUMBERS)
            }
        };
        let (major, minor) = (number(rng), number(rng));
        let access = match rng.next() % 16 {
            0 => 0,
            1 => 8 | (rng.next() as u32 & 7),
            2 => 0x8000,
            _ => 1 + (rng.next() % 7) as u32,
        };
        (typ, major, minor, access)
    }

    #[test]
    fn random_rule_sets_decide_like_the_reference() {
        let mut rng = Rng(0x0dd5_eed0_0e66_0001);
        for case in 0..3000 {
            let n = (rng.next() % 9) as usize;
            let mut rules: Vec<_> = (0..n).map(|_| random_rule(&mut rng)).collect();
            // Half of the sets start the way real specs do.
            if case % 2 == 0 {
                rules.insert(
                    0,
                    if case % 4 == 0 {
                        deny_all()
                    } else {
                        allow_all()
                    },
                );
            }
            let prog = compile(&rules).unwrap();
            for _ in 0..200 {
                let (t, ma, mi, acc) = random_request(&mut rng);
                assert_eq!(
                    run(&prog, t, ma, mi, acc),
                    reference(&rules, t, ma, mi, acc),
                    "request type {t} {ma}:{mi} access {acc:#x}\nrules {rules:#?}\nprogram {prog:#?}"
                );
            }
        }
    }

    #[test]
    fn runc_default_rules() {
        let rules = runc_default();
        let prog = compile(&rules).unwrap();
        let (m, r, w) = (ACC_MKNOD, ACC_READ, ACC_WRITE);
        let cases = [
            // (type, major, minor, access, allowed)
            (2, 1, 3, r | w, true), // /dev/null, O_RDWR
            (2, 1, 3, m, true),
            (2, 1, 5, r, true),         // /dev/zero
            (2, 1, 9, r, true),         // /dev/urandom
            (2, 5, 2, r | w, true),     // /dev/ptmx
            (2, 136, 7, r | w, true),   // /dev/pts/7
            (2, 10, 200, r | w, true),  // /dev/net/tun
            (2, 1, 4, r, false),        // /dev/port
            (2, 1, 1, r, false),        // /dev/mem
            (2, 1, 1, m, true),         // mknod of anything char is allowed...
            (2, 1, 1, r | m, false),    // ...but not with a read
            (2, 10, 229, r | w, false), // /dev/fuse
            (2, 4, 0, w, false),        // /dev/tty0
            (1, 8, 0, r, false),        // /dev/sda
            (1, 8, 0, m, true),
            (1, 1, 3, r, false), // a block device with /dev/null's numbers
        ];
        for (t, ma, mi, acc, want) in cases {
            assert_eq!(
                run(&prog, t, ma, mi, acc),
                want,
                "type {t} {ma}:{mi} access {acc}"
            );
            assert_eq!(
                reference(&rules, t, ma, mi, acc),
                want,
                "reference: type {t} {ma}:{mi} access {acc}"
            );
        }
        // Every combination near these numbers.
        let numbers = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 136, 200, 229, u32::MAX];
        for t in 0..4 {
            for ma in numbers {
                for mi in numbers {
                    for acc in 0..16 {
                        assert_eq!(
                            run(&prog, t, ma, mi, acc),
                            reference(&rules, t, ma, mi, acc)
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn a_narrower_rule_after_a_wider_one_takes_effect() {
        // v1 would ignore the deny (and runc refuses it); here it holds.
        let rules = [
            deny_all(),
            c(true, None, None, "rwm"),
            c(false, Some(1), Some(3), "w"),
        ];
        let prog = compile(&rules).unwrap();
        assert!(run(&prog, 2, 1, 3, ACC_READ));
        assert!(!run(&prog, 2, 1, 3, ACC_WRITE));
        assert!(!run(&prog, 2, 1, 3, ACC_READ | ACC_WRITE));
        assert!(run(&prog, 2, 1, 5, ACC_READ | ACC_WRITE));
        assert!(!run(&prog, 1, 1, 3, ACC_READ));
    }

    #[test]
    fn split_accesses_add_up() {
        // read from one rule and write from another allow an O_RDWR open.
        let rules = [
            deny_all(),
            c(true, Some(1), None, "r"),
            c(true, None, Some(3), "w"),
        ];
        let prog = compile(&rules).unwrap();
        assert!(run(&prog, 2, 1, 3, ACC_READ | ACC_WRITE));
        assert!(!run(&prog, 2, 1, 4, ACC_READ | ACC_WRITE));
        assert!(run(&prog, 2, 1, 4, ACC_READ));
    }
}
