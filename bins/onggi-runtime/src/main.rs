//! `onggi-runtime`: an OCI runtime with runc's command line, so podman
//! (`--runtime`), containerd (`ctr run --runc-binary`, a runtime handler's
//! `BinaryName`) and Kubernetes can drive it as they drive runc. All the work is in
//! the `onggi-runtime` library; this file parses arguments and reports errors.
#![forbid(unsafe_code)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use clap::{Args, Parser, Subcommand, ValueEnum};
use nix::sys::signal::Signal;
use onggi_runtime::{CreateOpts, ExecOpts, Runtime};

/// An OCI container runtime with runc's command line.
///
/// A container is a process in its own namespaces, on its own root filesystem,
/// limited by cgroups. onggi-runtime makes one from an OCI bundle (a directory with
/// config.json and a root filesystem) and drives its lifecycle:
///
///   onggi-runtime spec                       # write a default config.json here
///   onggi-runtime run mycontainer            # create + start, wait, delete
///   onggi-runtime create --bundle B c1       # set up; the process waits
///   onggi-runtime start c1                   # let it run
///   onggi-runtime state c1                   # status as JSON
///   onggi-runtime kill c1 TERM               # signal it
///   onggi-runtime delete c1                  # remove a stopped container
#[derive(Parser, Debug)]
#[command(name = "onggi-runtime", version = version(), about, verbatim_doc_comment)]
struct Cli {
    /// Directory for container state (tmpfs recommended) [default: /run/onggi-runtime;
    /// for a user other than root, $XDG_RUNTIME_DIR/onggi-runtime]
    #[arg(long, global = true, value_name = "DIR")]
    root: Option<PathBuf>,
    /// Also write errors and debug messages to FILE.
    #[arg(long, global = true, value_name = "FILE")]
    log: Option<PathBuf>,
    /// Format of --log: text or json (JSON lines, as containerd reads them).
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    /// Print debug messages.
    #[arg(long, global = true)]
    debug: bool,
    /// Print each kernel step of create/run as it is taken, to stderr: namespaces,
    /// cgroups and the values written, mounts, pivot_root, device nodes, the
    /// capabilities kept, seccomp, the exec.
    #[arg(long, global = true)]
    explain: bool,
    /// Manage cgroups through systemd (not supported yet: a clear error).
    #[arg(long, global = true)]
    systemd_cgroup: bool,
    /// Rootless mode: true, false or auto. With `spec`: write a spec for rootless
    /// containers (a user namespace mapping the caller).
    #[arg(long, global = true, value_name = "BOOL", num_args = 0..=1, default_missing_value = "true")]
    rootless: Option<String>,
    /// CRIU binary (accepted for runc compatibility; checkpointing is not supported).
    #[arg(long, global = true, hide = true)]
    criu: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, Debug, ValueEnum, PartialEq, Eq)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Clone, Copy, Debug, ValueEnum, PartialEq, Eq)]
enum ListFormat {
    Table,
    Json,
}

fn version() -> &'static str {
    concat!("version ", env!("CARGO_PKG_VERSION"), "\nspec: 1.2.0")
}

#[derive(Args, Debug)]
struct CreateArgs {
    /// The container's id, unique on this host under --root.
    id: String,
    /// The bundle: a directory holding config.json.
    #[arg(short, long, default_value = ".", value_name = "DIR")]
    bundle: PathBuf,
    /// Unix socket to receive the pty master when process.terminal is true.
    #[arg(long, value_name = "PATH")]
    console_socket: Option<PathBuf>,
    /// Write the init's PID to FILE.
    #[arg(long, value_name = "FILE")]
    pid_file: Option<PathBuf>,
    /// Use MS_MOVE + chroot instead of pivot_root (for a root on ramfs).
    #[arg(long)]
    no_pivot: bool,
    /// Keep the caller's session keyring instead of a new one.
    #[arg(long)]
    no_new_keyring: bool,
    /// Pass N more descriptors (3, 4, ...) to the container.
    #[arg(long, default_value_t = 0, value_name = "N")]
    preserve_fds: i32,
}

/// `defer`: a subcommand's arguments are built only when it is the one used (or
/// help is asked for): building all of them at every start was most of the
/// binary's start-up (heap and stack page faults).
#[derive(Subcommand, Debug)]
#[command(defer = true)]
enum Command {
    /// Create a container: set it up and leave its process waiting for `start`.
    Create(CreateArgs),
    /// Start the process of a created container.
    Start {
        /// Container id.
        id: String,
    },
    /// Create and start a container; in the foreground, wait for it and delete it.
    ///
    /// Signals sent to onggi-runtime are forwarded to the container; the exit code is
    /// the container's (128+N when killed by signal N).
    Run {
        #[command(flatten)]
        create: CreateArgs,
        /// Return once the container runs, leaving it running.
        #[arg(short, long)]
        detach: bool,
        /// Accepted for runc compatibility (onggi never becomes a subreaper here).
        #[arg(long, hide = true)]
        no_subreaper: bool,
        /// Do not delete the container after it exits (accepted; ignored).
        #[arg(long, hide = true)]
        keep: bool,
    },
    /// Print a container's state as the OCI spec's JSON.
    State {
        /// Container id.
        id: String,
    },
    /// Send a signal (default TERM) to a container's init.
    ///
    /// SIGNAL is a name (TERM, SIGTERM, kill) or a number (15).
    Kill {
        /// Container id.
        id: String,
        /// Signal name or number.
        #[arg(default_value = "SIGTERM")]
        signal: String,
        /// Signal every process in the container's cgroup.
        #[arg(short, long)]
        all: bool,
    },
    /// Delete a container (stopped or created; --force for a running one).
    Delete {
        /// Container id.
        id: String,
        /// Kill the container first if it still runs.
        #[arg(short, long)]
        force: bool,
    },
    /// List containers.
    List {
        /// Output format.
        #[arg(short, long, value_enum, default_value_t = ListFormat::Table)]
        format: ListFormat,
        /// Print only the ids.
        #[arg(short, long)]
        quiet: bool,
    },
    /// Run a new process inside a running container.
    ///
    /// Either --process FILE (an OCI process JSON) or a command line after the id;
    /// the defaults (env, cwd, user, capabilities) come from the container's config.
    Exec(ExecArgs),
    /// Freeze every process of a running container.
    Pause {
        /// Container id.
        id: String,
    },
    /// Thaw a paused container.
    Resume {
        /// Container id.
        id: String,
    },
    /// List the processes of a container.
    ///
    /// The table is the host's `ps` (default options -ef, or those given after the
    /// id) limited to the container's processes; json is the list of their PIDs.
    Ps {
        /// Container id.
        id: String,
        /// Options for ps (table format only).
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        ps_args: Vec<String>,
        /// Output format.
        #[arg(short, long, value_enum, default_value_t = ListFormat::Table)]
        format: ListFormat,
    },
    /// Change the resource limits of a container.
    ///
    /// From an OCI linux.resources JSON (--resources FILE, or - for stdin), or flags;
    /// only what is given changes. Sizes take k, m, g suffixes.
    Update(UpdateArgs),
    /// Show a container's resource usage and OOM events as JSON lines.
    ///
    /// With --stats, one {"type":"stats"} line and exit; else a stats line every
    /// --interval and an {"type":"oom"} line whenever the OOM killer strikes, until
    /// the container stops.
    Events {
        /// Container id.
        id: String,
        /// Print the statistics once and exit.
        #[arg(long)]
        stats: bool,
        /// Time between statistics lines, e.g. 5s, 500ms.
        #[arg(long, default_value = "5s", value_parser = parse_duration)]
        interval: std::time::Duration,
    },
    /// Write a default config.json (like runc spec) into the bundle directory.
    Spec {
        /// Where to write config.json.
        #[arg(short, long, default_value = ".", value_name = "DIR")]
        bundle: PathBuf,
    },
    /// Print the runtime's features document (runtime-spec features.md) as JSON.
    Features,
}

#[derive(Args, Debug)]
struct UpdateArgs {
    /// Container id.
    id: String,
    /// linux.resources as JSON in FILE, or - for stdin.
    #[arg(short, long, value_name = "FILE")]
    resources: Option<PathBuf>,
    /// Memory limit in bytes (k, m, g suffixes).
    #[arg(long, value_name = "SIZE")]
    memory: Option<String>,
    /// Memory + swap limit; -1 for unlimited swap.
    #[arg(long, value_name = "SIZE", allow_hyphen_values = true)]
    memory_swap: Option<String>,
    /// Memory soft limit.
    #[arg(long, value_name = "SIZE")]
    memory_reservation: Option<String>,
    /// CPU shares (relative weight).
    #[arg(long, value_name = "N")]
    cpu_share: Option<u64>,
    /// CFS period in microseconds.
    #[arg(long, value_name = "USEC")]
    cpu_period: Option<u64>,
    /// CFS quota in microseconds per period (-1: none).
    #[arg(long, value_name = "USEC", allow_hyphen_values = true)]
    cpu_quota: Option<i64>,
    /// Realtime period in microseconds.
    #[arg(long, value_name = "USEC")]
    cpu_rt_period: Option<u64>,
    /// Realtime runtime in microseconds per period.
    #[arg(long, value_name = "USEC", allow_hyphen_values = true)]
    cpu_rt_runtime: Option<i64>,
    /// CPUs the container may use, e.g. 0-1,3.
    #[arg(long, value_name = "LIST")]
    cpuset_cpus: Option<String>,
    /// Memory nodes the container may use.
    #[arg(long, value_name = "LIST")]
    cpuset_mems: Option<String>,
    /// Maximum number of processes (-1 or 0: unlimited).
    #[arg(long, value_name = "N", allow_hyphen_values = true)]
    pids_limit: Option<i64>,
    /// Block IO weight, 10 to 1000.
    #[arg(long, value_name = "N")]
    blkio_weight: Option<u16>,
}

#[derive(Args, Debug)]
struct ExecArgs {
    /// Container id.
    id: String,
    /// The command and its arguments (unless --process).
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    command: Vec<String>,
    /// Path to a process.json (OCI process object).
    #[arg(short, long, value_name = "FILE")]
    process: Option<PathBuf>,
    /// Unix socket to receive the pty master when a terminal is allocated.
    #[arg(long, value_name = "PATH")]
    console_socket: Option<PathBuf>,
    /// Working directory inside the container.
    #[arg(long, value_name = "DIR")]
    cwd: Option<PathBuf>,
    /// Set an environment variable (KEY=value); repeatable.
    #[arg(short, long, value_name = "KEY=VALUE")]
    env: Vec<String>,
    /// Allocate a pseudo-terminal.
    #[arg(short, long)]
    tty: bool,
    /// User as UID[:GID].
    #[arg(short, long, value_name = "UID[:GID]")]
    user: Option<String>,
    /// Additional group ids; repeatable.
    #[arg(short = 'g', long, value_name = "GID")]
    additional_gids: Vec<u32>,
    /// Return once the process runs.
    #[arg(short, long)]
    detach: bool,
    /// Write the process's PID to FILE.
    #[arg(long, value_name = "FILE")]
    pid_file: Option<PathBuf>,
    /// Set no_new_privs for the process.
    #[arg(long)]
    no_new_privs: bool,
    /// Add a capability to the bounding, effective, permitted sets; repeatable.
    #[arg(short, long, value_name = "CAP")]
    cap: Vec<String>,
    /// Pass N more descriptors (3, 4, ...) to the process.
    #[arg(long, default_value_t = 0, value_name = "N")]
    preserve_fds: i32,
    /// Process SELinux label (accepted; SELinux is not supported).
    #[arg(long, hide = true)]
    process_label: Option<String>,
    /// AppArmor profile (accepted; AppArmor is not supported).
    #[arg(long, hide = true)]
    apparmor: Option<String>,
}

fn main() -> ExitCode {
    // Sealing re-executes the binary: done before clap, whose start-up (building the
    // whole command tree) is most of this binary's, the re-execution costs one
    // parse, not two. `seal_if_needed` below stays the rule; this is the fast path.
    if matches!(
        subcommand_word(std::env::args_os()).as_deref(),
        Some("create" | "run" | "exec")
    ) {
        if let Err(e) = onggi_runtime::exe::ensure_sealed() {
            eprintln!("error: {e}");
            return ExitCode::from(1);
        }
    }
    let cli = Cli::parse();
    let log = Logger::new(cli.log.clone(), cli.log_format);
    let result = seal_if_needed(&cli.command).and_then(|()| dispatch(&cli, &log));
    match result {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            let msg = render(&e);
            log.error(&msg);
            eprintln!("error: {msg}");
            ExitCode::from(1)
        }
    }
}

/// `--root`, or the default: root's under /run, a rootless user's under their
/// runtime directory (as runc does).
fn state_root(given: Option<&Path>) -> Result<PathBuf> {
    if let Some(dir) = given {
        return Ok(dir.to_path_buf());
    }
    if nix::unistd::geteuid().is_root() {
        return Ok(PathBuf::from("/run/onggi-runtime"));
    }
    match std::env::var_os("XDG_RUNTIME_DIR") {
        Some(dir) if !dir.is_empty() => Ok(PathBuf::from(dir).join("onggi-runtime")),
        _ => bail!("--root: not root and XDG_RUNTIME_DIR is not set: give a state directory this user can write"),
    }
}

/// The subcommand on a command line, found without clap (see
/// `onggi_runtime::exe::subcommand_word`).
fn subcommand_word(args: impl Iterator<Item = std::ffi::OsString>) -> Option<String> {
    let globals = onggi_runtime::exe::GlobalOptions {
        with_value: &["root", "log", "log-format", "criu"],
        optional_value: &[("rootless", &["true", "false", "auto", "1", "0"])],
    };
    onggi_runtime::exe::subcommand_word(args, globals)
}

/// The commands that fork a process into a container first re-execute the runtime
/// from a read-only copy of its binary (CVE-2019-5736; see `onggi_runtime::exe`).
fn seal_if_needed(command: &Command) -> Result<()> {
    if matches!(
        command,
        Command::Create(_) | Command::Run { .. } | Command::Exec(_)
    ) {
        onggi_runtime::exe::ensure_sealed()?;
    }
    Ok(())
}

/// The error and its causes on one line (see `onggi_runtime::error::one_line`).
fn render(e: &anyhow::Error) -> String {
    onggi_runtime::error::one_line(e.as_ref())
}

fn dispatch(cli: &Cli, log: &Logger) -> Result<u8> {
    // Commands without containers need no state directory.
    let needs_state = !matches!(cli.command, Command::Spec { .. } | Command::Features);
    let rt = Runtime {
        store: match needs_state {
            true => state_root(cli.root.as_deref())?,
            false => PathBuf::new(),
        },
        systemd_cgroup: cli.systemd_cgroup,
    };
    if cli.debug {
        log.debug(&format!("{:?}", cli.command));
    }
    if cli.explain {
        use std::os::fd::AsFd;
        let to = std::io::stderr().as_fd().try_clone_to_owned();
        onggi_runtime::explain::enable(to.context("--explain: duplicate stderr")?);
    }
    match &cli.command {
        Command::Create(a) => rt
            .create(&create_opts(a))
            .with_context(|| format!("create container {:?}", a.id))?,
        Command::Start { id } => rt.start(id)?,
        Command::Run { create, detach, .. } => {
            let code = rt
                .run(&create_opts(create), *detach)
                .with_context(|| format!("run container {:?}", create.id))?;
            return Ok(code.clamp(0, 255) as u8);
        }
        Command::State { id } => println!("{}", serde_json::to_string_pretty(&rt.state(id)?)?),
        Command::Kill { id, signal, all } => rt.kill(id, parse_signal(signal)?, *all)?,
        Command::Delete { id, force } => match rt.delete(id, *force) {
            // Deleting what is not there is what containerd does after a failed create.
            Err(onggi_runtime::Error::NotFound(_)) if *force => {}
            r => r?,
        },
        Command::List { format, quiet } => print_list(&rt, *format, *quiet)?,
        Command::Exec(a) => {
            let code = rt
                .exec(&a.id, &exec_opts(&rt, a)?)
                .with_context(|| format!("exec in container {:?}", a.id))?;
            return Ok(code.clamp(0, 255) as u8);
        }
        Command::Events {
            id,
            stats,
            interval,
        } => print_events(&rt, id, *stats, *interval)?,
        Command::Pause { id } => rt.pause(id)?,
        Command::Resume { id } => rt.resume(id)?,
        Command::Ps {
            id,
            ps_args,
            format,
        } => print_ps(&rt, id, ps_args, *format)?,
        Command::Update(a) => rt
            .update(&a.id, &update_resources(a)?)
            .with_context(|| format!("update container {:?}", a.id))?,
        Command::Spec { bundle } => write_spec(
            bundle,
            matches!(cli.rootless.as_deref(), Some("true" | "1")),
        )?,
        Command::Features => println!(
            "{}",
            serde_json::to_string_pretty(&onggi_runtime::features::features())?
        ),
    }
    Ok(0)
}

fn create_opts(a: &CreateArgs) -> CreateOpts {
    CreateOpts {
        id: a.id.clone(),
        bundle: a.bundle.clone(),
        pid_file: a.pid_file.clone(),
        console_socket: a.console_socket.clone(),
        no_pivot: a.no_pivot,
        no_new_keyring: a.no_new_keyring,
        preserve_fds: a.preserve_fds,
    }
}

/// A signal by name (TERM, SIGTERM, term) or number.
fn parse_signal(s: &str) -> Result<Signal> {
    if let Ok(n) = s.parse::<i32>() {
        return Signal::try_from(n)
            .with_context(|| format!("signal {n}: not a valid signal number"));
    }
    let up = s.to_ascii_uppercase();
    let name = if up.starts_with("SIG") {
        up
    } else {
        format!("SIG{up}")
    };
    name.parse::<Signal>()
        .map_err(|_| anyhow::anyhow!("signal {s:?}: unknown signal name"))
}

fn print_list(rt: &Runtime, format: ListFormat, quiet: bool) -> Result<()> {
    let list = rt.list()?;
    let mut out = std::io::stdout().lock();
    if quiet {
        for c in &list {
            writeln!(out, "{}", c.id)?;
        }
        return Ok(());
    }
    match format {
        ListFormat::Json => writeln!(out, "{}", serde_json::to_string(&list)?)?,
        ListFormat::Table => {
            let rows: Vec<[String; 6]> = list
                .iter()
                .map(|c| {
                    [
                        c.id.clone(),
                        c.pid.to_string(),
                        c.status.to_string(),
                        c.bundle.display().to_string(),
                        c.created.clone(),
                        c.owner.clone(),
                    ]
                })
                .collect();
            let header = ["ID", "PID", "STATUS", "BUNDLE", "CREATED", "OWNER"].map(String::from);
            let mut widths = header.clone().map(|h| h.len());
            for r in &rows {
                for (w, cell) in widths.iter_mut().zip(r) {
                    *w = (*w).max(cell.len());
                }
            }
            for r in std::iter::once(&header).chain(&rows) {
                let line: Vec<String> = r
                    .iter()
                    .zip(widths)
                    .map(|(c, w)| format!("{c:<w$}"))
                    .collect();
                writeln!(out, "{}", line.join("   ").trim_end())?;
            }
        }
    }
    Ok(())
}

/// `ps`: JSON, the PIDs; a table, the host's ps limited to them.
fn print_ps(rt: &Runtime, id: &str, ps_args: &[String], format: ListFormat) -> Result<()> {
    let pids = rt.pids(id)?;
    if format == ListFormat::Json {
        println!("{}", serde_json::to_string(&pids)?);
        return Ok(());
    }
    let args: Vec<&str> = if ps_args.is_empty() {
        vec!["-ef"]
    } else {
        ps_args.iter().map(String::as_str).collect()
    };
    let out = std::process::Command::new("ps")
        .args(&args)
        .output()
        .context("run ps")?;
    if !out.status.success() {
        bail!(
            "ps {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let mut lines = text.lines();
    let header = lines.next().unwrap_or_default();
    let col = header
        .split_whitespace()
        .position(|h| h == "PID")
        .context("ps: no PID column in its output")?;
    println!("{header}");
    for line in lines {
        let pid = line
            .split_whitespace()
            .nth(col)
            .and_then(|p| p.parse::<i32>().ok());
        if pid.is_some_and(|p| pids.contains(&p)) {
            println!("{line}");
        }
    }
    Ok(())
}

/// `events`: JSON lines as runc prints them ({"type", "id", "data"}).
fn print_events(rt: &Runtime, id: &str, once: bool, interval: std::time::Duration) -> Result<()> {
    let line = |kind: &str, data: Option<serde_json::Value>| {
        let mut v = serde_json::json!({"type": kind, "id": id});
        if let Some(d) = data {
            v["data"] = d;
        }
        v.to_string()
    };
    if once {
        println!(
            "{}",
            line("stats", Some(serde_json::to_value(rt.stats(id)?)?))
        );
        return Ok(());
    }
    let mut out = std::io::stdout();
    rt.events(id, interval, &mut |ev| {
        let text = match ev {
            onggi_runtime::container::Event::Stats(st) => {
                line("stats", serde_json::to_value(*st).ok())
            }
            onggi_runtime::container::Event::Oom => line("oom", None),
        };
        // A closed stdout (the reader went away) ends the stream.
        writeln!(out, "{text}").and_then(|()| out.flush()).is_ok()
    })?;
    Ok(())
}

/// A duration like 5s, 500ms, 2m, or plain seconds.
fn parse_duration(s: &str) -> Result<std::time::Duration, String> {
    let (num, unit) = s
        .find(|c: char| c.is_ascii_alphabetic())
        .map(|i| s.split_at(i))
        .unwrap_or((s, "s"));
    let n: f64 = num
        .parse()
        .map_err(|_| format!("{s:?} is not a duration (e.g. 5s, 500ms)"))?;
    let secs = match unit {
        "ms" => n / 1000.0,
        "s" => n,
        "m" => n * 60.0,
        "h" => n * 3600.0,
        _ => return Err(format!("{s:?}: unknown unit {unit:?} (ms, s, m, h)")),
    };
    if !(secs > 0.0 && secs.is_finite()) {
        return Err(format!("{s:?}: the interval must be positive"));
    }
    Ok(std::time::Duration::from_secs_f64(secs))
}

/// A size with an optional k/m/g suffix (powers of 1024), or -1.
fn parse_size(flag: &str, v: &str) -> Result<i64> {
    let v = v.trim();
    let (num, mult) = match v.char_indices().last() {
        Some((i, c)) if c.is_ascii_alphabetic() => {
            let mult = match c.to_ascii_lowercase() {
                'b' => 1,
                'k' => 1 << 10,
                'm' => 1 << 20,
                'g' => 1 << 30,
                't' => 1 << 40,
                _ => bail!("{flag} {v}: unknown size suffix {c:?}"),
            };
            (&v[..i], mult)
        }
        _ => (v, 1),
    };
    let n: i64 = num
        .parse()
        .with_context(|| format!("{flag} {v}: not a size"))?;
    if n == -1 {
        return Ok(-1);
    }
    if n < 0 {
        bail!("{flag} {v}: a size cannot be negative (use -1 for unlimited)");
    }
    n.checked_mul(mult)
        .with_context(|| format!("{flag} {v}: too large"))
}

/// The resources `update` writes: the --resources JSON, with the flags on top.
fn update_resources(a: &UpdateArgs) -> Result<oci_spec::runtime::LinuxResources> {
    use oci_spec::runtime::{LinuxCpu, LinuxMemory, LinuxPids};
    let mut r: oci_spec::runtime::LinuxResources = match &a.resources {
        Some(p) => {
            let data = if p.as_os_str() == "-" {
                let mut v = Vec::new();
                std::io::Read::read_to_end(&mut std::io::stdin(), &mut v)
                    .context("read --resources from stdin")?;
                v
            } else {
                std::fs::read(p).with_context(|| format!("read --resources {}", p.display()))?
            };
            serde_json::from_slice(&data)
                .with_context(|| format!("parse --resources {}", p.display()))?
        }
        None => serde_json::from_str("{}").expect("an empty object parses"),
    };
    if a.memory.is_some() || a.memory_swap.is_some() || a.memory_reservation.is_some() {
        let mut m = r
            .memory()
            .unwrap_or_else(|| serde_json::from_str::<LinuxMemory>("{}").expect("parses"));
        if let Some(v) = &a.memory {
            m.set_limit(Some(parse_size("--memory", v)?));
        }
        if let Some(v) = &a.memory_swap {
            m.set_swap(Some(parse_size("--memory-swap", v)?));
        }
        if let Some(v) = &a.memory_reservation {
            m.set_reservation(Some(parse_size("--memory-reservation", v)?));
        }
        r.set_memory(Some(m));
    }
    let cpu_flags = a.cpu_share.is_some()
        || a.cpu_period.is_some()
        || a.cpu_quota.is_some()
        || a.cpu_rt_period.is_some()
        || a.cpu_rt_runtime.is_some()
        || a.cpuset_cpus.is_some()
        || a.cpuset_mems.is_some();
    if cpu_flags {
        let mut c = r
            .cpu()
            .clone()
            .unwrap_or_else(|| serde_json::from_str::<LinuxCpu>("{}").expect("parses"));
        if a.cpu_share.is_some() {
            c.set_shares(a.cpu_share);
        }
        if a.cpu_period.is_some() {
            c.set_period(a.cpu_period);
        }
        if a.cpu_quota.is_some() {
            c.set_quota(a.cpu_quota);
        }
        if a.cpu_rt_period.is_some() {
            c.set_realtime_period(a.cpu_rt_period);
        }
        if a.cpu_rt_runtime.is_some() {
            c.set_realtime_runtime(a.cpu_rt_runtime);
        }
        if a.cpuset_cpus.is_some() {
            c.set_cpus(a.cpuset_cpus.clone());
        }
        if a.cpuset_mems.is_some() {
            c.set_mems(a.cpuset_mems.clone());
        }
        r.set_cpu(Some(c));
    }
    if let Some(n) = a.pids_limit {
        let mut p = serde_json::from_str::<LinuxPids>(r#"{"limit":0}"#).expect("parses");
        p.set_limit(if n <= 0 { -1 } else { n });
        r.set_pids(Some(p));
    }
    if let Some(w) = a.blkio_weight {
        let mut b = r
            .block_io()
            .clone()
            .unwrap_or_else(|| serde_json::from_str("{}").expect("parses"));
        b.set_weight(Some(w));
        r.set_block_io(Some(b));
    }
    Ok(r)
}

/// The exec process: from --process, or the container's process with the flags'
/// changes (as runc builds it).
fn exec_opts(rt: &Runtime, a: &ExecArgs) -> Result<ExecOpts> {
    use oci_spec::runtime::Process;
    let process: Process = match &a.process {
        Some(path) => {
            let data = std::fs::read(path)
                .with_context(|| format!("read --process {}", path.display()))?;
            serde_json::from_slice(&data)
                .with_context(|| format!("parse --process {}", path.display()))?
        }
        None => {
            if a.command.is_empty() {
                bail!("exec needs a command after the container id, or --process FILE");
            }
            let mut p = rt.container_process(&a.id)?.unwrap_or_default();
            p.set_args(Some(a.command.clone()));
            p.set_terminal(Some(a.tty));
            if let Some(cwd) = &a.cwd {
                p.set_cwd(cwd.clone());
            }
            let mut env = p.env().clone().unwrap_or_default();
            for kv in &a.env {
                let key = kv.split('=').next().unwrap_or(kv);
                env.retain(|e| e.split('=').next() != Some(key));
                env.push(kv.clone());
            }
            p.set_env(Some(env));
            if let Some(u) = &a.user {
                let (uid, gid) = match u.split_once(':') {
                    Some((u, g)) => (
                        u.parse().context("--user: uid must be a number")?,
                        g.parse().context("--user: gid must be a number")?,
                    ),
                    None => (u.parse().context("--user: uid must be a number")?, 0),
                };
                p.user_mut().set_uid(uid);
                p.user_mut().set_gid(gid);
            }
            if !a.additional_gids.is_empty() {
                p.user_mut()
                    .set_additional_gids(Some(a.additional_gids.clone()));
            }
            if a.no_new_privs {
                p.set_no_new_privileges(Some(true));
            }
            if !a.cap.is_empty() {
                add_caps(&mut p, &a.cap)?;
            }
            p
        }
    };
    Ok(ExecOpts {
        process: Some(process),
        console_socket: a.console_socket.clone(),
        detach: a.detach,
        pid_file: a.pid_file.clone(),
        preserve_fds: a.preserve_fds,
    })
}

/// `exec --cap`: add capabilities to the bounding, effective and permitted sets.
fn add_caps(p: &mut oci_spec::runtime::Process, caps: &[String]) -> Result<()> {
    use oci_spec::runtime::{Capability, LinuxCapabilities};
    let mut added = Vec::new();
    for name in caps {
        let bare = name.trim_start_matches("CAP_");
        let cap: Capability = bare
            .parse()
            .map_err(|_| anyhow::anyhow!("--cap {name}: unknown capability"))?;
        added.push(cap);
    }
    let mut c = p.capabilities().clone().unwrap_or_else(|| {
        serde_json::from_str::<LinuxCapabilities>("{}").expect("an empty object parses")
    });
    let with = |set: &Option<oci_spec::runtime::Capabilities>| {
        let mut s = set.clone().unwrap_or_default();
        s.extend(added.iter().copied());
        Some(s)
    };
    let (b, e, pm) = (with(c.bounding()), with(c.effective()), with(c.permitted()));
    c.set_bounding(b);
    c.set_effective(e);
    c.set_permitted(pm);
    p.set_capabilities(Some(c));
    Ok(())
}

fn write_spec(bundle: &Path, rootless: bool) -> Result<()> {
    let path = bundle.join("config.json");
    if path.exists() {
        bail!("{} already exists; remove it first", path.display());
    }
    let spec = if rootless {
        onggi_runtime::default_spec::default_spec_rootless(
            nix::unistd::getuid().as_raw(),
            nix::unistd::getgid().as_raw(),
        )
    } else {
        onggi_runtime::default_spec::default_spec()
    };
    std::fs::write(&path, serde_json::to_string_pretty(&spec)? + "\n")
        .with_context(|| format!("write {}", path.display()))
}

/// Errors (and with --debug, debug messages) to the --log file, as text or as the
/// JSON lines containerd's shim parses (`{"level","msg","time"}`).
struct Logger {
    file: Option<PathBuf>,
    format: LogFormat,
}

impl Logger {
    fn new(file: Option<PathBuf>, format: LogFormat) -> Self {
        Logger { file, format }
    }

    fn write(&self, level: &str, msg: &str) {
        let Some(path) = &self.file else { return };
        let time = onggi_runtime::state::rfc3339_now();
        let line = match self.format {
            LogFormat::Json => {
                serde_json::json!({"level": level, "msg": msg, "time": time}).to_string()
            }
            LogFormat::Text => format!("{time} {level}: {msg}"),
        };
        if let Ok(mut f) = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
        {
            let _ = writeln!(f, "{line}");
        }
    }

    fn error(&self, msg: &str) {
        self.write("error", msg);
    }

    fn debug(&self, msg: &str) {
        self.write("debug", msg);
        eprintln!("debug: {msg}");
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn subcommand_word_skips_global_options_and_their_values() {
        let words =
            |line: &str| subcommand_word(line.split_whitespace().map(std::ffi::OsString::from));
        assert_eq!(words("rt run -b x c").as_deref(), Some("run"));
        assert_eq!(
            words("rt --root /r --log l --log-format json exec c true").as_deref(),
            Some("exec")
        );
        assert_eq!(
            words("rt --root=/r --debug create c").as_deref(),
            Some("create")
        );
        assert_eq!(words("rt --rootless true run c").as_deref(), Some("run"));
        assert_eq!(words("rt --rootless run c").as_deref(), Some("run"));
        assert_eq!(
            words("rt --systemd-cgroup state c").as_deref(),
            Some("state")
        );
        assert_eq!(words("rt --version"), None);
    }

    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn options_after_the_id_and_signals() {
        let cli = Cli::try_parse_from([
            "onggi-runtime",
            "create",
            "c1",
            "--bundle",
            "/b",
            "--root",
            "/r",
        ])
        .unwrap();
        assert_eq!(cli.root, Some(PathBuf::from("/r")));
        assert!(
            matches!(cli.command, Command::Create(ref a) if a.id == "c1" && a.bundle == Path::new("/b"))
        );
        for s in ["TERM", "SIGTERM", "term", "15"] {
            assert_eq!(parse_signal(s).unwrap(), Signal::SIGTERM, "{s}");
        }
        assert!(parse_signal("NOPE").is_err());
        assert!(parse_signal("99").is_err());
    }

    #[test]
    fn durations_parse() {
        assert_eq!(
            parse_duration("5s").unwrap(),
            std::time::Duration::from_secs(5)
        );
        assert_eq!(
            parse_duration("250ms").unwrap(),
            std::time::Duration::from_millis(250)
        );
        assert_eq!(
            parse_duration("2").unwrap(),
            std::time::Duration::from_secs(2)
        );
        assert!(parse_duration("0s").is_err());
        assert!(parse_duration("5y").is_err());
    }

    #[test]
    fn sizes_take_suffixes() {
        assert_eq!(parse_size("--memory", "64m").unwrap(), 64 << 20);
        assert_eq!(parse_size("--memory", "1G").unwrap(), 1 << 30);
        assert_eq!(parse_size("--memory", "4096").unwrap(), 4096);
        assert_eq!(parse_size("--memory-swap", "-1").unwrap(), -1);
        assert!(parse_size("--memory", "-5")
            .unwrap_err()
            .to_string()
            .contains("negative"));
        assert!(parse_size("--memory", "12q")
            .unwrap_err()
            .to_string()
            .contains("suffix"));
    }

    #[test]
    fn causes_are_rendered_once() {
        let io = std::io::Error::from_raw_os_error(2);
        let e = anyhow::Error::new(onggi_runtime::Error::ReadConfig {
            path: "/b/config.json".into(),
            source: io,
        })
        .context("create container \"c\"");
        assert_eq!(
            render(&e),
            "create container \"c\": read /b/config.json: No such file or directory (os error 2)"
        );
    }
}
