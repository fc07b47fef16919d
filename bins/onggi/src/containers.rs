//! The container commands: run, create, start, stop, kill, rm, ps, logs, wait,
//! inspect, and the monitor's exit hook.

use std::io::{BufRead, Write};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::{Args, Subcommand};
use onggi_engine::engine::restart::RestartPolicy;
use onggi_engine::spec::{Network, Volume};
use onggi_engine::{Engine, Record, RunOptions, State};

/// `run`/`create` options, as Docker spells them.
#[derive(Args, Debug, Clone)]
pub struct RunArgs {
    /// Name the container (default: a generated adjective_noun).
    #[arg(long)]
    name: Option<String>,
    /// Set an environment variable, KEY=VALUE (repeatable).
    #[arg(short, long = "env", value_name = "KEY=VALUE")]
    env: Vec<String>,
    /// Read KEY=VALUE lines from FILE (# comments and blank lines skipped).
    #[arg(long, value_name = "FILE")]
    env_file: Vec<PathBuf>,
    /// Working directory inside the container.
    #[arg(short, long)]
    workdir: Option<String>,
    /// User: UID[:GID] or NAME[:GROUP] from the image.
    #[arg(short, long)]
    user: Option<String>,
    /// Bind mount HOST:CONTAINER[:ro] (repeatable).
    #[arg(short, long = "volume", value_name = "HOST:CONTAINER[:ro]")]
    volume: Vec<String>,
    /// Mount a tmpfs at PATH[:OPTIONS] (repeatable).
    #[arg(long, value_name = "PATH[:OPTIONS]")]
    tmpfs: Vec<String>,
    /// The container's hostname (default: its id's first 12 digits).
    #[arg(long)]
    hostname: Option<String>,
    /// Replace the image's entrypoint.
    #[arg(long)]
    entrypoint: Option<String>,
    /// Memory limit (e.g. 64m, 1g).
    #[arg(short, long, allow_hyphen_values = true)]
    memory: Option<String>,
    /// CPUs (e.g. 0.5 for half a CPU).
    #[arg(long)]
    cpus: Option<f64>,
    /// Most processes at once (-1: no limit).
    #[arg(long, allow_hyphen_values = true)]
    pids_limit: Option<i64>,
    /// CPUs the container may run on (e.g. 0-1, 0,2).
    #[arg(long)]
    cpuset_cpus: Option<String>,
    /// Mount the root filesystem read-only.
    #[arg(long)]
    read_only: bool,
    /// Add a capability (or ALL).
    #[arg(long)]
    cap_add: Vec<String>,
    /// Drop a capability (or ALL).
    #[arg(long)]
    cap_drop: Vec<String>,
    /// no-new-privileges[=true|false], seccomp=unconfined|/path/profile.json.
    #[arg(long)]
    security_opt: Vec<String>,
    /// NAME=SOFT[:HARD], e.g. nofile=1024:2048 (repeatable).
    #[arg(long)]
    ulimit: Vec<String>,
    /// none (only loopback, the default until bridge networking) or host.
    #[arg(long, default_value = "none", value_parser = ["none", "host"])]
    network: String,
    /// Keep stdin open: the container reads this command's standard input (with
    /// -d: a pipe nobody writes to, so a shell waits instead of exiting).
    #[arg(short, long)]
    interactive: bool,
    /// Give the container a terminal: this command's, relayed; with -d a pty whose
    /// output goes to the log (`onggi run -dit busybox sh`, then `onggi exec`).
    #[arg(short, long)]
    tty: bool,
    /// no, on-failure[:N], always or unless-stopped: start the container again when
    /// it exits (not after stop, kill or rm).
    #[arg(long, default_value = "no", value_name = "POLICY")]
    restart: String,
    /// Run an init (onggi-init) as PID 1: it reaps orphans and forwards signals.
    #[arg(long)]
    init: bool,
    /// The image.
    image: String,
    /// The command and its arguments (default: the image's).
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    command: Vec<String>,
}

impl RunArgs {
    fn options(&self) -> Result<RunOptions> {
        let mut env = Vec::new();
        for f in &self.env_file {
            let text = std::fs::read_to_string(f)
                .with_context(|| format!("--env-file {}", f.display()))?;
            env.extend(
                text.lines()
                    .map(str::trim)
                    .filter(|l| !l.is_empty() && !l.starts_with('#'))
                    .map(str::to_owned),
            );
        }
        for e in &self.env {
            // -e KEY takes KEY's value from here, as docker does.
            match e.contains('=') {
                true => env.push(e.clone()),
                false => {
                    if let Ok(v) = std::env::var(e) {
                        env.push(format!("{e}={v}"));
                    }
                }
            }
        }
        Ok(RunOptions {
            cmd: self.command.clone(),
            entrypoint: self.entrypoint.clone(),
            env,
            workdir: self.workdir.clone(),
            user: self.user.clone(),
            volumes: self
                .volume
                .iter()
                .map(|v| Volume::parse(v))
                .collect::<Result<_, _>>()?,
            tmpfs: self.tmpfs.clone(),
            hostname: self.hostname.clone(),
            memory: self
                .memory
                .as_deref()
                .map(onggi_engine::spec::parse_memory)
                .transpose()?,
            cpus: self.cpus,
            pids_limit: self.pids_limit,
            cpuset_cpus: self.cpuset_cpus.clone(),
            read_only: self.read_only,
            cap_add: self.cap_add.clone(),
            cap_drop: self.cap_drop.clone(),
            security_opt: self.security_opt.clone(),
            ulimits: self.ulimit.clone(),
            network: if self.network == "host" {
                Network::Host
            } else {
                Network::None
            },
            tty: self.tty,
            interactive: self.interactive,
            restart: self.restart.parse()?,
            init: self.init,
        })
    }
}

/// The container commands.
#[derive(Subcommand, Debug)]
pub enum ContainerCommand {
    /// Create and start a container; in the foreground, print its output and exit
    /// with its exit code.
    Run {
        /// Run in the background and print the container's id.
        #[arg(short, long)]
        detach: bool,
        /// Remove the container when it exits.
        #[arg(long)]
        rm: bool,
        /// Print each kernel step of starting it to stderr as it is taken: the
        /// overlay, namespaces, cgroups and the values written, mounts, pivot_root,
        /// device nodes, the capabilities kept, seccomp, the exec.
        #[arg(long)]
        explain: bool,
        #[command(flatten)]
        args: Box<RunArgs>,
    },
    /// Create a container without starting it; print its id.
    Create {
        #[command(flatten)]
        args: Box<RunArgs>,
    },
    /// Start created or stopped containers.
    Start {
        /// Print the container's output until it stops, and exit with its exit code.
        #[arg(short, long)]
        attach: bool,
        /// Names or ids.
        #[arg(required = true)]
        containers: Vec<String>,
    },
    /// Stop containers: SIGTERM, then SIGKILL after the timeout.
    Stop {
        /// Seconds to wait before SIGKILL.
        #[arg(short, long, default_value_t = 10)]
        time: u64,
        /// Names or ids.
        #[arg(required = true)]
        containers: Vec<String>,
    },
    /// Send a signal to containers' init (default SIGKILL).
    Kill {
        /// The signal, by name or number.
        #[arg(short, long, default_value = "KILL")]
        signal: String,
        /// Names or ids.
        #[arg(required = true)]
        containers: Vec<String>,
    },
    /// Remove containers (-f: running ones too).
    Rm {
        /// Kill a running container first.
        #[arg(short, long)]
        force: bool,
        /// Names or ids.
        #[arg(required = true)]
        containers: Vec<String>,
    },
    /// List containers (-a: stopped ones too).
    Ps {
        /// All containers, not only running ones.
        #[arg(short, long)]
        all: bool,
        /// Only ids.
        #[arg(short, long)]
        quiet: bool,
        /// Output format.
        #[arg(long, value_enum, default_value_t = crate::Format::Table)]
        format: crate::Format,
    },
    /// Print a container's output.
    Logs {
        /// Keep printing new output until the container stops.
        #[arg(short, long)]
        follow: bool,
        /// Only the last N lines.
        #[arg(long, value_name = "N")]
        tail: Option<usize>,
        /// Prefix each line with its time.
        #[arg(short, long)]
        timestamps: bool,
        /// Name or id.
        container: String,
    },
    /// Wait for containers to stop; print their exit codes.
    Wait {
        /// Names or ids.
        #[arg(required = true)]
        containers: Vec<String>,
    },
    /// Print containers as JSON.
    Inspect {
        /// Names or ids.
        #[arg(required = true)]
        containers: Vec<String>,
    },
    /// Restart containers: stop (SIGTERM, then SIGKILL after the timeout), then start.
    Restart {
        /// Seconds to wait before SIGKILL.
        #[arg(short, long, default_value_t = 10)]
        time: u64,
        /// Names or ids.
        #[arg(required = true)]
        containers: Vec<String>,
    },
    /// (internal) The monitor's hook after a container's init exited.
    #[command(name = "__exited", hide = true)]
    Exited {
        /// The container id.
        id: String,
    },
}

/// Run a container command; the exit code.
pub fn run(engine: &Engine, cmd: &ContainerCommand) -> Result<u8> {
    match cmd {
        ContainerCommand::Run {
            detach,
            rm,
            explain,
            args,
        } => {
            if *explain {
                use std::os::fd::AsFd;
                let to = std::io::stderr().as_fd().try_clone_to_owned();
                onggi_runtime::explain::enable(to.context("--explain: duplicate stderr")?);
            }
            run_container(engine, args, *detach, *rm)
        }
        ContainerCommand::Create { args } => {
            let rec = engine.create(&args.image, args.name.as_deref(), &args.options()?, false)?;
            out!("{}", rec.id);
            Ok(0)
        }
        ContainerCommand::Start { attach, containers } => match (attach, &containers[..]) {
            (true, [c]) => start_attached(engine, c),
            (true, _) => anyhow::bail!("start -a: one container at a time"),
            (false, _) => each(containers, |c| engine.start(c).map(|r| out!("{}", r.name))),
        },
        ContainerCommand::Restart { time, containers } => {
            // Starting forks containers' inits: seal the binary first (CVE-2019-5736).
            onggi_runtime::exe::ensure_sealed()?;
            each(containers, |c| {
                engine
                    .restart(c, Duration::from_secs(*time))
                    .map(|_| out!("{c}"))
            })
        }
        ContainerCommand::Stop { time, containers } => each(containers, |c| {
            engine
                .stop(c, Duration::from_secs(*time))
                .map(|_| out!("{c}"))
        }),
        ContainerCommand::Kill { signal, containers } => {
            let sig = parse_signal(signal)?;
            each(containers, |c| engine.kill(c, sig).map(|_| out!("{c}")))
        }
        ContainerCommand::Rm { force, containers } => each(containers, |c| {
            engine.remove(c, *force).map(|_| out!("{c}"))
        }),
        ContainerCommand::Ps { all, quiet, format } => ps(engine, *all, *quiet, *format),
        ContainerCommand::Logs {
            follow,
            tail,
            timestamps,
            container,
        } => logs(engine, container, *follow, *tail, *timestamps),
        ContainerCommand::Wait { containers } => each(containers, |c| {
            engine
                .wait_exit(c, None)
                .map(|r| out!("{}", r.exit_code.unwrap_or(0)))
        }),
        ContainerCommand::Inspect { containers } => {
            let mut docs = Vec::new();
            for c in containers {
                docs.push(inspect(engine, &engine.find(c)?)?);
            }
            out!("{}", serde_json::to_string_pretty(&docs)?);
            Ok(0)
        }
        ContainerCommand::Exited { id } => {
            if engine.exited(id)? {
                // The restart policy's start forks the container's init: seal first.
                // (A re-execution runs this command again; the exit is recorded by then.)
                onggi_runtime::exe::ensure_sealed()?;
                engine.restart_by_policy(id)?;
            }
            Ok(0)
        }
    }
}

/// Apply `f` to each container, saying every failure; exit code 1 if one failed.
fn each(containers: &[String], mut f: impl FnMut(&str) -> onggi_engine::Result<()>) -> Result<u8> {
    let mut code = 0;
    for c in containers {
        if let Err(e) = f(c) {
            eprintln!("error: {}", onggi_runtime::error::one_line(&e));
            code = 1;
        }
    }
    Ok(code)
}

fn run_container(engine: &Engine, args: &RunArgs, detach: bool, rm: bool) -> Result<u8> {
    let opts = args.options()?;
    if rm && opts.restart != RestartPolicy::No {
        anyhow::bail!("conflicting options: --restart and --rm");
    }
    let rec = engine.create(&args.image, args.name.as_deref(), &opts, rm && detach)?;
    if !detach && (args.tty || args.interactive) {
        // Attached: this process is the container's parent and its terminal's relay.
        let code = engine.run_attached(&rec);
        if rm {
            let _ = engine.remove(&rec.id, true);
        }
        return Ok(code?.clamp(0, 255) as u8);
    }
    let rec = match engine.start(&rec.id) {
        Ok(r) => r,
        Err(e) => {
            let _ = engine.remove(&rec.id, true);
            return Err(e.into());
        }
    };
    if detach {
        out!("{}", rec.id);
        return Ok(0);
    }
    let done = follow_to_exit(engine, &rec.id, 0)?;
    if rm {
        engine.remove(&rec.id, true)?;
    }
    Ok(done.exit_code.unwrap_or(0).clamp(0, 255) as u8)
}

/// `start -a`: start the container and print what it writes from now on until it
/// stops; its exit code.
fn start_attached(engine: &Engine, what: &str) -> Result<u8> {
    let (rec, log) = engine.log_path(what)?;
    let from = std::fs::metadata(&log).map_or(0, |m| m.len());
    engine.start(&rec.id)?;
    let done = follow_to_exit(engine, &rec.id, from)?;
    Ok(done.exit_code.unwrap_or(0).clamp(0, 255) as u8)
}

/// Print the container's log from byte `offset` on as it grows, until the
/// container stops; its record then.
fn follow_to_exit(engine: &Engine, id: &str, offset: u64) -> Result<Record> {
    let (_, log) = engine.log_path(id)?;
    let mut follower = Follower::new(log);
    follower.offset = offset;
    loop {
        follower.pump(false)?;
        let r = engine.find(id)?;
        if !matches!(r.state, State::Running | State::Paused) {
            follower.pump(false)?;
            return Ok(r);
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// Reads a container's JSON log as it grows and prints it.
struct Follower {
    path: PathBuf,
    offset: u64,
    timestamps: bool,
}

impl Follower {
    fn new(path: PathBuf) -> Follower {
        Follower {
            path,
            offset: 0,
            timestamps: false,
        }
    }

    /// Print the whole lines written since the last call.
    fn pump(&mut self, _final: bool) -> Result<()> {
        use std::io::{Seek, SeekFrom};
        let Ok(mut f) = std::fs::File::open(&self.path) else {
            return Ok(());
        };
        f.seek(SeekFrom::Start(self.offset))?;
        let mut r = std::io::BufReader::new(f);
        let (mut out, mut err) = (std::io::stdout().lock(), std::io::stderr().lock());
        let mut line = String::new();
        loop {
            line.clear();
            let n = r.read_line(&mut line)?;
            if n == 0 || !line.ends_with('\n') {
                break;
            }
            self.offset += n as u64;
            Engine::copy_log_lines(&line, self.timestamps, &mut out, &mut err);
        }
        let _ = out.flush();
        Ok(())
    }
}

fn logs(
    engine: &Engine,
    container: &str,
    follow: bool,
    tail: Option<usize>,
    timestamps: bool,
) -> Result<u8> {
    let (rec, path) = engine.log_path(container)?;
    // Rotated files first, oldest first: container.log.2, .1, then the live one.
    let mut files: Vec<PathBuf> = (1..10)
        .map(|i| path.with_extension(format!("log.{i}")))
        .filter(|p| p.exists())
        .collect();
    files.reverse();
    let mut lines: Vec<String> = Vec::new();
    for f in &files {
        lines.extend(
            std::fs::read_to_string(f)
                .unwrap_or_default()
                .lines()
                .map(str::to_owned),
        );
    }
    let live = std::fs::read_to_string(&path).unwrap_or_default();
    let whole = live.rfind('\n').map_or(0, |i| i + 1);
    lines.extend(live[..whole].lines().map(str::to_owned));
    let skip = tail.map_or(0, |n| lines.len().saturating_sub(n));
    {
        let (mut out, mut err) = (std::io::stdout().lock(), std::io::stderr().lock());
        for l in &lines[skip..] {
            Engine::copy_log_lines(l, timestamps, &mut out, &mut err);
        }
    }
    if follow && matches!(rec.state, State::Running | State::Paused) {
        let mut f = Follower {
            path,
            offset: whole as u64,
            timestamps,
        };
        loop {
            f.pump(false)?;
            if !matches!(engine.find(&rec.id)?.state, State::Running | State::Paused) {
                f.pump(true)?;
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    Ok(0)
}

fn ps(engine: &Engine, all: bool, quiet: bool, format: crate::Format) -> Result<u8> {
    let list = engine.list(all)?;
    if format == crate::Format::Json {
        out!("{}", serde_json::to_string_pretty(&list)?);
        return Ok(0);
    }
    if quiet {
        for r in &list {
            out!("{}", &r.id[..12]);
        }
        return Ok(0);
    }
    let mut rows = vec![[
        "CONTAINER ID",
        "IMAGE",
        "COMMAND",
        "CREATED",
        "STATUS",
        "NAMES",
    ]
    .map(String::from)
    .to_vec()];
    for r in &list {
        let cmd = command_of(r);
        let cmd = if cmd.chars().count() > 20 {
            format!("\"{}…\"", cmd.chars().take(19).collect::<String>())
        } else {
            format!("\"{cmd}\"")
        };
        rows.push(vec![
            r.id[..12].to_owned(),
            r.image_ref.clone(),
            cmd,
            crate::ago(&r.created),
            status(r),
            r.name.clone(),
        ]);
    }
    out!("{}", crate::table(&rows).trim_end());
    Ok(0)
}

fn command_of(r: &Record) -> String {
    let o = &r.config["options"];
    let mut words: Vec<String> = o["entrypoint"]
        .as_str()
        .map(|s| vec![s.to_owned()])
        .unwrap_or_default();
    words.extend(
        o["cmd"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|v| v.as_str().map(str::to_owned)),
    );
    words.join(" ")
}

/// Docker's STATUS column.
fn status(r: &Record) -> String {
    match r.state {
        State::Created => "Created".into(),
        State::Running | State::Paused => {
            let started = r.started_at.as_deref().unwrap_or(&r.created);
            let up =
                crate::since(started).map_or_else(|| started.to_owned(), crate::human_duration);
            let paused = if r.state == State::Paused {
                " (Paused)"
            } else {
                ""
            };
            format!("Up {up}{paused}")
        }
        State::Exited => format!(
            "Exited ({}) {}",
            r.exit_code.unwrap_or(0),
            crate::ago(r.finished_at.as_deref().unwrap_or(&r.created))
        ),
    }
}

fn inspect(engine: &Engine, r: &Record) -> Result<serde_json::Value> {
    let (_, log) = engine.log_path(&r.id)?;
    let config_path = log.with_file_name("config.json");
    let spec: serde_json::Value = std::fs::read(&config_path)
        .ok()
        .and_then(|d| serde_json::from_slice(&d).ok())
        .unwrap_or(serde_json::Value::Null);
    Ok(serde_json::json!({
        "Id": r.id,
        "Name": r.name,
        "Created": r.created,
        "Image": r.image,
        "ImageRef": r.image_ref,
        "State": {
            "Status": r.state,
            "Running": r.state == State::Running,
            "Paused": r.state == State::Paused,
            "Pid": r.pid.unwrap_or(0),
            "MonitorPid": r.monitor_pid.unwrap_or(0),
            "ExitCode": r.exit_code.unwrap_or(0),
            "Error": r.exit_cause.clone().unwrap_or_default(),
            "StartedAt": r.started_at,
            "FinishedAt": r.finished_at,
        },
        "RestartCount": r.restart_count,
        "LogPath": log,
        "Config": r.config,
        "Spec": spec,
    }))
}

/// A signal by name (KILL, SIGKILL) or number.
fn parse_signal(s: &str) -> Result<nix::sys::signal::Signal> {
    use std::str::FromStr;
    if let Ok(n) = s.parse::<i32>() {
        return Ok(nix::sys::signal::Signal::try_from(n)?);
    }
    let name = if s.to_ascii_uppercase().starts_with("SIG") {
        s.to_ascii_uppercase()
    } else {
        format!("SIG{}", s.to_ascii_uppercase())
    };
    nix::sys::signal::Signal::from_str(&name).with_context(|| format!("unknown signal {s:?}"))
}
