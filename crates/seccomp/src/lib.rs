//! OCI `linux.seccomp` profiles compiled to seccomp BPF.
//!
//! Three steps, each usable alone:
//! 1. [`parse`]: JSON to [`LinuxSeccomp`], with errors that name the JSON field
//!    (`linux.seccomp.syscalls[3].action: unknown action "SCMP_ACT_FOO"`).
//! 2. [`compile`]: libseccomp builds the filter (architectures, x32, multiplexed
//!    syscalls) and exports the classic-BPF program; [`compile_cached`] does this once
//!    per profile and keeps the program in a cache directory, so a cache hit never
//!    builds a libseccomp filter.
//! 3. [`load`]: one `seccomp(SECCOMP_SET_MODE_FILTER)` call in the calling thread.
//!
//! The rule semantics follow runc (`libcontainer/seccomp/patchbpf` and
//! `seccomp_linux.go`): syscall names unknown on this architecture are skipped; a rule
//! whose action equals the default action is skipped (libseccomp refuses it); a rule
//! whose arguments name one index more than once becomes one rule per argument (OR),
//! otherwise one rule with all argument conditions (AND); `SCMP_ACT_ERRNO` and
//! `SCMP_ACT_TRACE` without `errnoRet` return `EPERM`.
#![deny(missing_docs)]
#![forbid(unsafe_code)]

mod cache;
mod profile;

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::os::fd::OwnedFd;

use libseccomp::error::SeccompError;
use libseccomp::{
    ScmpAction, ScmpArch, ScmpArgCompare, ScmpCompareOp, ScmpFilterContext, ScmpSyscall,
};
use nix::errno::Errno;
use oci_spec::runtime::{
    Arch, LinuxSeccomp, LinuxSeccompAction, LinuxSeccompArg, LinuxSeccompFilterFlag,
    LinuxSeccompOperator,
};
use onggi_sys::seccomp as sys;

pub use cache::compile_cached;
pub use profile::{check_json, parse, resolve};

/// Where the profile sits in an OCI `config.json`; prefixes every field in errors.
const ROOT: &str = "linux.seccomp";

/// Errors of parsing, compiling, caching and loading a profile. Each names the JSON
/// field or the file it is about.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The JSON is not a seccomp profile (syntax, a missing or mistyped field).
    #[error("parse {field}")]
    Parse {
        /// The object that failed to parse.
        field: String,
        /// serde_json's error, with line and column.
        #[source]
        source: serde_json::Error,
    },
    /// An action, operator, architecture or flag that the OCI spec does not define.
    #[error("{field}: unknown {kind} {value}")]
    Unknown {
        /// The JSON field, e.g. `linux.seccomp.syscalls[3].action`.
        field: String,
        /// What the field holds: "action", "operator", "architecture", "flag".
        kind: &'static str,
        /// The value found, as JSON.
        value: String,
    },
    /// A value that is well-formed but not usable (argument index above 5, errno above 4095).
    #[error("{field}: {reason}")]
    Invalid {
        /// The JSON field.
        field: String,
        /// Why the value is refused.
        reason: &'static str,
    },
    /// libseccomp refused a step of building the filter.
    #[error("libseccomp: {step} ({field})")]
    Libseccomp {
        /// The step: "create the filter", "add architecture", "add rule for mkdir", ...
        step: String,
        /// The JSON field the step came from.
        field: String,
        /// libseccomp's error.
        #[source]
        source: SeccompError,
    },
    /// Exporting the BPF program into a memfd and reading it back failed.
    #[error("export the BPF program")]
    Export(#[source] std::io::Error),
    /// Creating, writing or renaming a cache file failed.
    #[error("{step} {path}")]
    Cache {
        /// What was being done: "create cache directory", "write", "rename".
        step: &'static str,
        /// The file or directory.
        path: std::path::PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// `seccomp(SECCOMP_SET_MODE_FILTER)` failed (`EACCES`: neither `no_new_privs` nor
    /// `CAP_SYS_ADMIN`; `EINVAL`: a flag this kernel does not know).
    #[error("seccomp(SECCOMP_SET_MODE_FILTER, {flags:#x})")]
    Load {
        /// The flags passed to the kernel.
        flags: u32,
        /// The errno.
        #[source]
        source: Errno,
    },
}

/// A compiled filter: the BPF program (a native-endian `struct sock_filter` array),
/// ready to load, and what [`load`] needs besides it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Compiled {
    bpf: Vec<u8>,
    flags: u32,
    notify: bool,
}

impl Compiled {
    /// The BPF program, 8 bytes per instruction.
    pub fn bpf(&self) -> &[u8] {
        &self.bpf
    }

    /// The profile's `SECCOMP_FILTER_FLAG_*` bits (`flags` in the profile), without the
    /// ones [`load`] adds for a listener.
    pub fn flags(&self) -> u32 {
        self.flags
    }

    /// Whether a rule uses `SCMP_ACT_NOTIFY`: [`load`] then returns a listener fd, which
    /// the runtime sends to the agent at `listenerPath`.
    pub fn needs_listener(&self) -> bool {
        self.notify
    }
}

/// Compile a profile with libseccomp and export its BPF program.
///
/// Syscall names this architecture does not know are skipped, as runc does.
/// `SCMP_ACT_NOTIFY` requires `listenerPath`.
pub fn compile(s: &LinuxSeccomp) -> Result<Compiled, Error> {
    let default = action(
        s.default_action(),
        s.default_errno_ret(),
        &format!("{ROOT}.defaultErrnoRet"),
    )?;
    let mut ctx =
        ScmpFilterContext::new(default).map_err(|e| seccomp_err("create the filter", ROOT, e))?;
    // A binary tree by syscall number, not libseccomp's default list of ifs: the
    // kernel runs the filter once per syscall number and architecture when it is
    // loaded (to cache which ones are always allowed), so for an allow-list of ~350
    // syscalls (Docker's profile) this makes loading several times cheaper, and each
    // filtered syscall O(log n).
    ctx.set_ctl_optimize(2)
        .map_err(|e| seccomp_err("set the binary tree optimization", ROOT, e))?;
    for (i, arch) in s.architectures().iter().flatten().enumerate() {
        let field = format!("{ROOT}.architectures[{i}]");
        let arch = scmp_arch(*arch, &field)?;
        // Adding the native architecture again is refused (EEXIST) by libseccomp.
        if !ctx.is_arch_present(arch).unwrap_or(false) {
            ctx.add_arch(arch)
                .map_err(|e| seccomp_err("add architecture", &field, e))?;
        }
    }
    let mut notify = default == ScmpAction::Notify;
    for (i, rule) in s.syscalls().iter().flatten().enumerate() {
        let field = format!("{ROOT}.syscalls[{i}]");
        let act = action(
            rule.action(),
            rule.errno_ret(),
            &format!("{field}.errnoRet"),
        )?;
        if act == default {
            continue;
        }
        notify |= act == ScmpAction::Notify;
        let rules = conditions(rule.args().as_deref().unwrap_or_default(), &field)?;
        for name in rule.names() {
            let Ok(syscall) = ScmpSyscall::from_name(name) else {
                continue; // not a syscall on this architecture
            };
            for conds in &rules {
                ctx.add_rule_conditional(act, syscall, conds)
                    .map_err(|e| seccomp_err(&format!("add rule for {name}"), &field, e))?;
            }
        }
    }
    if notify && s.listener_path().is_none() {
        return Err(Error::Invalid {
            field: format!("{ROOT}.listenerPath"),
            reason: "required by SCMP_ACT_NOTIFY",
        });
    }
    let flags = s
        .flags()
        .iter()
        .flatten()
        .fold(0, |acc, f| acc | filter_flag(*f));
    Ok(Compiled {
        bpf: export(&ctx)?,
        flags,
        notify,
    })
}

/// Load the filter into the calling thread (and all threads with
/// `SECCOMP_FILTER_FLAG_TSYNC`): one `seccomp(SECCOMP_SET_MODE_FILTER)` call.
///
/// The caller must have set `no_new_privs` or hold `CAP_SYS_ADMIN`. Returns the
/// listener fd when the profile uses `SCMP_ACT_NOTIFY`.
pub fn load(c: &Compiled) -> Result<Option<OwnedFd>, Error> {
    let mut flags = c.flags;
    if c.notify {
        flags |= sys::FLAG_NEW_LISTENER;
        // TSYNC reports a failing thread by its id in the return value, which is where
        // NEW_LISTENER puts the fd; TSYNC_ESRCH makes the failure an errno instead.
        if flags & sys::FLAG_TSYNC != 0 {
            flags |= sys::FLAG_TSYNC_ESRCH;
        }
    }
    sys::set_mode_filter(&c.bpf, flags).map_err(|source| Error::Load { flags, source })
}

/// The libseccomp action for an OCI action and its `errnoRet` (at `errno_field`).
fn action(
    a: LinuxSeccompAction,
    errno_ret: Option<u32>,
    errno_field: &str,
) -> Result<ScmpAction, Error> {
    // The kernel's SECCOMP_RET_DATA is 16 bits; errno values above MAX_ERRNO (4095)
    // would not read as errors in user space.
    let errno = match errno_ret {
        None => Errno::EPERM as u16,
        Some(e) if e <= 4095 => e as u16,
        Some(_) => {
            return Err(Error::Invalid {
                field: errno_field.to_owned(),
                reason: "errno above 4095",
            })
        }
    };
    Ok(match a {
        LinuxSeccompAction::ScmpActKill | LinuxSeccompAction::ScmpActKillThread => {
            ScmpAction::KillThread
        }
        LinuxSeccompAction::ScmpActKillProcess => ScmpAction::KillProcess,
        LinuxSeccompAction::ScmpActTrap => ScmpAction::Trap,
        LinuxSeccompAction::ScmpActErrno => ScmpAction::Errno(i32::from(errno)),
        LinuxSeccompAction::ScmpActNotify => ScmpAction::Notify,
        LinuxSeccompAction::ScmpActTrace => ScmpAction::Trace(errno),
        LinuxSeccompAction::ScmpActLog => ScmpAction::Log,
        LinuxSeccompAction::ScmpActAllow => ScmpAction::Allow,
    })
}

/// The libseccomp architecture, by the OCI name (`SCMP_ARCH_X86_64`).
fn scmp_arch(arch: Arch, field: &str) -> Result<ScmpArch, Error> {
    let name = serde_json::to_value(arch)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default();
    name.parse().map_err(|_| Error::Unknown {
        field: field.to_owned(),
        kind: "architecture",
        value: format!("{name:?}"),
    })
}

/// The argument conditions of one rule, as a list of rules (runc's semantics): one
/// rule with every condition, unless an index repeats; then one rule per condition.
fn conditions(args: &[LinuxSeccompArg], field: &str) -> Result<Vec<Vec<ScmpArgCompare>>, Error> {
    let mut conds = Vec::with_capacity(args.len());
    for (j, arg) in args.iter().enumerate() {
        if arg.index() > 5 {
            return Err(Error::Invalid {
                field: format!("{field}.args[{j}].index"),
                reason: "a syscall has arguments 0 to 5",
            });
        }
        let op = match arg.op() {
            LinuxSeccompOperator::ScmpCmpNe => ScmpCompareOp::NotEqual,
            LinuxSeccompOperator::ScmpCmpLt => ScmpCompareOp::Less,
            LinuxSeccompOperator::ScmpCmpLe => ScmpCompareOp::LessOrEqual,
            LinuxSeccompOperator::ScmpCmpEq => ScmpCompareOp::Equal,
            LinuxSeccompOperator::ScmpCmpGe => ScmpCompareOp::GreaterEqual,
            LinuxSeccompOperator::ScmpCmpGt => ScmpCompareOp::Greater,
            // OCI: `value` is the mask, `valueTwo` the value compared after masking.
            LinuxSeccompOperator::ScmpCmpMaskedEq => {
                conds.push(ScmpArgCompare::new(
                    arg.index() as u32,
                    ScmpCompareOp::MaskedEqual(arg.value()),
                    arg.value_two().unwrap_or(0),
                ));
                continue;
            }
        };
        conds.push(ScmpArgCompare::new(arg.index() as u32, op, arg.value()));
    }
    let mut indices: Vec<usize> = args.iter().map(|a| a.index()).collect();
    indices.sort_unstable();
    indices.dedup();
    if indices.len() == args.len() {
        Ok(vec![conds])
    } else {
        Ok(conds.into_iter().map(|c| vec![c]).collect())
    }
}

/// The kernel's `SECCOMP_FILTER_FLAG_*` bit for an OCI flag.
fn filter_flag(f: LinuxSeccompFilterFlag) -> u32 {
    match f {
        LinuxSeccompFilterFlag::SeccompFilterFlagLog => sys::FLAG_LOG,
        LinuxSeccompFilterFlag::SeccompFilterFlagTsync => sys::FLAG_TSYNC,
        LinuxSeccompFilterFlag::SeccompFilterFlagSpecAllow => sys::FLAG_SPEC_ALLOW,
        LinuxSeccompFilterFlag::SeccompFilterFlagWaitKillableRecv => sys::FLAG_WAIT_KILLABLE_RECV,
    }
}

/// Export the BPF program through a memfd: `seccomp_export_bpf` writes to an fd, and
/// `seccomp_export_bpf_mem` needs libseccomp 2.6 (Debian 12 ships 2.5.4).
fn export(ctx: &ScmpFilterContext) -> Result<Vec<u8>, Error> {
    let fd =
        nix::sys::memfd::memfd_create("onggi-seccomp-bpf", nix::sys::memfd::MFdFlags::MFD_CLOEXEC)
            .map_err(|e| Error::Export(e.into()))?;
    ctx.export_bpf(&fd)
        .map_err(|e| Error::Export(std::io::Error::other(e)))?;
    let mut file = File::from(fd);
    let mut bpf = Vec::new();
    file.seek(SeekFrom::Start(0))
        .and_then(|_| file.read_to_end(&mut bpf))
        .map_err(Error::Export)?;
    Ok(bpf)
}

fn seccomp_err(step: &str, field: &str, source: SeccompError) -> Error {
    Error::Libseccomp {
        step: step.to_owned(),
        field: field.to_owned(),
        source,
    }
}

#[cfg(test)]
mod tests;
