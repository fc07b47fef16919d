//! The command line, parsed by hand and without side effects (see the crate
//! documentation for the protocol).

use core::ffi::CStr;

use crate::json::{self, Put};
use crate::logfile::{Rotation, MAX_PATH};

/// Default `--log-max-size`: 10 MiB.
pub const DEFAULT_LOG_MAX_SIZE: u64 = 10 << 20;
/// Default `--log-max-files`.
pub const DEFAULT_LOG_MAX_FILES: u32 = 3;

/// The usage line.
pub const USAGE: &[u8] = b"usage: onggi-monitor --id ID --pid PID --exit-file FILE --log FILE\n\
    \x20     [--stdout-fd N] [--stderr-fd N] [--log-max-size BYTES] [--log-max-files N]\n\
    \x20     [--on-exit PROGRAM ARG...]\n";

/// What the monitor was asked to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config<'a> {
    /// The container's ID (for messages).
    pub id: &'a CStr,
    /// The container's init: a child of this process.
    pub pid: i32,
    /// Where to write the exit record (an absolute path).
    pub exit_file: &'a CStr,
    /// The log file (an absolute path).
    pub log: &'a CStr,
    /// Read end of the container's stdout pipe.
    pub stdout_fd: Option<i32>,
    /// Read end of the container's stderr pipe.
    pub stderr_fd: Option<i32>,
    /// Log size limits.
    pub rotation: Rotation,
    /// Index in argv of the `--on-exit` program; its arguments follow it.
    pub on_exit: Option<usize>,
}

/// Why the command line was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArgError<'a> {
    /// `--help` was asked for.
    Help,
    /// A required option is missing.
    Missing(&'static str),
    /// An option is the last argument, without its value.
    NoValue(&'a CStr),
    /// An option's value does not parse or is out of range.
    BadValue(&'a CStr, &'a CStr),
    /// A path is relative (the monitor works in `/`) or too long.
    BadPath(&'a CStr, &'a CStr),
    /// An option is given twice.
    Repeated(&'a CStr),
    /// An unknown argument.
    Unknown(&'a CStr),
}

impl ArgError<'_> {
    /// Write the message (without a newline).
    pub fn describe(&self, out: &mut impl Put) {
        let (what, arg, value): (&[u8], &[u8], &[u8]) = match *self {
            ArgError::Help => (b"help requested", b"", b""),
            ArgError::Missing(opt) => (b"missing option ", opt.as_bytes(), b""),
            ArgError::NoValue(opt) => (b"no value for ", opt.to_bytes(), b""),
            ArgError::BadValue(opt, v) => (b"bad value for ", opt.to_bytes(), v.to_bytes()),
            ArgError::BadPath(opt, v) => (
                b"not an absolute path of at most 4000 bytes: ",
                opt.to_bytes(),
                v.to_bytes(),
            ),
            ArgError::Repeated(opt) => (b"option given twice: ", opt.to_bytes(), b""),
            ArgError::Unknown(arg) => (b"unknown argument: ", arg.to_bytes(), b""),
        };
        out.put(what);
        out.put(arg);
        if !value.is_empty() {
            out.put(b" ");
            json::put_escaped(out, value);
        }
    }
}

/// Parse `argv` (`argv[0]` first, which is skipped).
pub fn parse<'a>(argv: impl IntoIterator<Item = &'a CStr>) -> Result<Config<'a>, ArgError<'a>> {
    let mut id = None;
    let mut pid = None;
    let mut exit_file = None;
    let mut log = None;
    let mut stdout_fd = None;
    let mut stderr_fd = None;
    let mut max_size = None;
    let mut max_files = None;
    let mut on_exit = None;

    let mut args = argv.into_iter().enumerate().skip(1);
    while let Some((i, opt)) = args.next() {
        match opt.to_bytes() {
            b"--help" | b"-h" => return Err(ArgError::Help),
            b"--on-exit" => {
                if args.next().is_none() {
                    return Err(ArgError::NoValue(opt));
                }
                on_exit = Some(i + 1);
                break; // the rest of argv is the program's
            }
            _ => {}
        }
        let known = Opt::ALL.iter().find(|(name, _)| *name == opt.to_bytes());
        let &(_, which) = known.ok_or(ArgError::Unknown(opt))?;
        let (_, value) = args.next().ok_or(ArgError::NoValue(opt))?;
        let bad = ArgError::BadValue(opt, value);
        match which {
            Opt::Id => set(&mut id, opt, value)?,
            Opt::Pid => set(&mut pid, opt, number(value, 1, i32::MAX as u64).ok_or(bad)?)?,
            Opt::ExitFile => set(&mut exit_file, opt, path(opt, value)?)?,
            Opt::Log => set(&mut log, opt, path(opt, value)?)?,
            // 0-2 are the monitor's own /dev/null.
            Opt::StdoutFd => set(&mut stdout_fd, opt, number(value, 3, 1 << 20).ok_or(bad)?)?,
            Opt::StderrFd => set(&mut stderr_fd, opt, number(value, 3, 1 << 20).ok_or(bad)?)?,
            Opt::LogMaxSize => set(&mut max_size, opt, number(value, 1, u64::MAX).ok_or(bad)?)?,
            Opt::LogMaxFiles => set(&mut max_files, opt, number(value, 1, 99).ok_or(bad)?)?,
        }
    }
    if stdout_fd.is_some() && stdout_fd == stderr_fd {
        return Err(ArgError::Repeated(c"--stderr-fd"));
    }
    Ok(Config {
        id: id.ok_or(ArgError::Missing("--id"))?,
        pid: pid.ok_or(ArgError::Missing("--pid"))? as i32,
        exit_file: exit_file.ok_or(ArgError::Missing("--exit-file"))?,
        log: log.ok_or(ArgError::Missing("--log"))?,
        stdout_fd: stdout_fd.map(|fd| fd as i32),
        stderr_fd: stderr_fd.map(|fd| fd as i32),
        rotation: Rotation {
            max_size: max_size.unwrap_or(DEFAULT_LOG_MAX_SIZE),
            max_files: max_files.map_or(DEFAULT_LOG_MAX_FILES, |n| n as u32),
        },
        on_exit,
    })
}

/// The options that take a value.
#[derive(Debug, Clone, Copy)]
enum Opt {
    Id,
    Pid,
    ExitFile,
    Log,
    StdoutFd,
    StderrFd,
    LogMaxSize,
    LogMaxFiles,
}

impl Opt {
    const ALL: [(&'static [u8], Opt); 8] = [
        (b"--id", Opt::Id),
        (b"--pid", Opt::Pid),
        (b"--exit-file", Opt::ExitFile),
        (b"--log", Opt::Log),
        (b"--stdout-fd", Opt::StdoutFd),
        (b"--stderr-fd", Opt::StderrFd),
        (b"--log-max-size", Opt::LogMaxSize),
        (b"--log-max-files", Opt::LogMaxFiles),
    ];
}

fn set<'a, T>(slot: &mut Option<T>, opt: &'a CStr, value: T) -> Result<(), ArgError<'a>> {
    if slot.replace(value).is_some() {
        return Err(ArgError::Repeated(opt));
    }
    Ok(())
}

/// A decimal number in `min..=max`.
fn number(value: &CStr, min: u64, max: u64) -> Option<u64> {
    let digits = value.to_bytes();
    if digits.is_empty() || digits.len() > 20 {
        return None;
    }
    let mut n: u64 = 0;
    for &d in digits {
        if !d.is_ascii_digit() {
            return None;
        }
        n = n.checked_mul(10)?.checked_add(u64::from(d - b'0'))?;
    }
    (min..=max).contains(&n).then_some(n)
}

fn path<'a>(opt: &'a CStr, value: &'a CStr) -> Result<&'a CStr, ArgError<'a>> {
    let p = value.to_bytes();
    if p.first() != Some(&b'/') || p.len() > MAX_PATH {
        return Err(ArgError::BadPath(opt, value));
    }
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::CString;

    fn parse_strs(args: &[&str]) -> Result<Config<'static>, String> {
        let owned: Vec<&'static CStr> = std::iter::once("onggi-monitor")
            .chain(args.iter().copied())
            .map(|a| &*Box::leak(CString::new(a).unwrap().into_boxed_c_str()))
            .collect();
        parse(owned).map_err(|e| {
            let mut v = Vec::new();
            e.describe(&mut v);
            String::from_utf8(v).unwrap()
        })
    }

    const BASE: [&str; 8] = [
        "--id",
        "c1",
        "--pid",
        "42",
        "--exit-file",
        "/run/c1/exit",
        "--log",
        "/var/c1.log",
    ];

    fn with(extra: &[&'static str]) -> Vec<&'static str> {
        BASE.iter().chain(extra).copied().collect()
    }

    #[test]
    fn minimal_command_line_gets_defaults() {
        let c = parse_strs(&BASE).unwrap();
        assert_eq!(c.id, c"c1");
        assert_eq!(c.pid, 42);
        assert_eq!(c.exit_file, c"/run/c1/exit");
        assert_eq!(c.log, c"/var/c1.log");
        assert_eq!((c.stdout_fd, c.stderr_fd), (None, None));
        assert_eq!(
            c.rotation,
            Rotation {
                max_size: 10 << 20,
                max_files: 3
            }
        );
        assert_eq!(c.on_exit, None);
    }

    #[test]
    fn all_options_and_on_exit_takes_the_rest() {
        let c = parse_strs(&with(&[
            "--stdout-fd",
            "3",
            "--stderr-fd",
            "4",
            "--log-max-size",
            "1000",
            "--log-max-files",
            "5",
            "--on-exit",
            "/bin/sh",
            "-c",
            "--pid 7",
        ]))
        .unwrap();
        assert_eq!((c.stdout_fd, c.stderr_fd), (Some(3), Some(4)));
        assert_eq!(
            c.rotation,
            Rotation {
                max_size: 1000,
                max_files: 5
            }
        );
        // argv[0] + 8 base + 8 options + "--on-exit" → the program is argv[18].
        assert_eq!(c.on_exit, Some(18));
        assert_eq!(c.pid, 42);
    }

    #[test]
    fn refusals_name_the_option() {
        let cases: [(&[&str], &str); 11] = [
            (&["--id", "c1"], "missing option --pid"),
            (&["--pid"], "no value for --pid"),
            (&["--pid", "0"], "bad value for --pid 0"),
            (&["--pid", "12x"], "bad value for --pid 12x"),
            (
                &["--pid", "99999999999999999999999"],
                "bad value for --pid 99999999999999999999999",
            ),
            (&["--stdout-fd", "1"], "bad value for --stdout-fd 1"),
            (
                &["--log-max-files", "100"],
                "bad value for --log-max-files 100",
            ),
            (
                &["--log", "rel/x"],
                "not an absolute path of at most 4000 bytes: --log rel/x",
            ),
            (&["--id", "a", "--id", "b"], "option given twice: --id"),
            (&["--verbose"], "unknown argument: --verbose"),
            (&["--on-exit"], "no value for --on-exit"),
        ];
        for (args, msg) in cases {
            assert_eq!(parse_strs(args).unwrap_err(), msg, "{args:?}");
        }
        assert_eq!(
            parse_strs(&with(&["--bogus", "1"])).unwrap_err(),
            "unknown argument: --bogus"
        );
        assert_eq!(
            parse_strs(&with(&["--stdout-fd", "3", "--stderr-fd", "3"])).unwrap_err(),
            "option given twice: --stderr-fd"
        );
        assert_eq!(parse_strs(&["--help"]).unwrap_err(), "help requested");
    }

    #[test]
    fn values_are_escaped_in_messages() {
        assert_eq!(
            parse_strs(&["--pid", "4\n2"]).unwrap_err(),
            "bad value for --pid 4\\n2"
        );
    }
}
