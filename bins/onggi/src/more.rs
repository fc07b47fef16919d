//! The commands on running containers' processes and on containers' files: exec,
//! pause, unpause, export, cp.

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use clap::Subcommand;
use onggi_engine::engine::exec::ExecOptions;
use onggi_engine::engine::files::CopyPath;
use onggi_engine::Engine;

/// The commands of this module.
#[derive(Subcommand, Debug)]
pub enum MoreCommand {
    /// Run a command in a running container, with its environment, user and
    /// working directory unless told otherwise; exit with the command's code.
    Exec {
        /// Run it in the background (its output is discarded).
        #[arg(short, long)]
        detach: bool,
        /// Set an environment variable, KEY=VALUE (KEY alone: this shell's value).
        #[arg(short, long = "env", value_name = "KEY=VALUE")]
        env: Vec<String>,
        /// User: UID[:GID] or NAME[:GROUP] from the container's /etc/passwd.
        #[arg(short, long)]
        user: Option<String>,
        /// Working directory inside the container (absolute).
        #[arg(short, long)]
        workdir: Option<String>,
        /// Name or id.
        container: String,
        /// The command and its arguments.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true, required = true)]
        command: Vec<String>,
    },
    /// Freeze every process of running containers.
    Pause {
        /// Names or ids.
        #[arg(required = true)]
        containers: Vec<String>,
    },
    /// Thaw paused containers.
    Unpause {
        /// Names or ids.
        #[arg(required = true)]
        containers: Vec<String>,
    },
    /// Write a container's root filesystem as a tar (what `onggi import` reads).
    Export {
        /// Write to FILE (standard output when not given, if it is not a terminal).
        #[arg(short, long, value_name = "FILE")]
        output: Option<PathBuf>,
        /// Name or id.
        container: String,
    },
    /// Copy files between a container (running or not) and the host:
    /// `cp CONTAINER:SRC DEST` or `cp SRC CONTAINER:DEST`. A directory is copied
    /// into an existing directory or becomes a new one; `SRC/.` copies its contents.
    /// `-` is a tar stream: `cp CONTAINER:SRC -` writes SRC as a tar to standard
    /// output, `cp - CONTAINER:DIR` unpacks one from standard input into DIR.
    Cp {
        /// Keep the files' owners (else: root in the container, you on the host).
        #[arg(short, long)]
        archive: bool,
        /// CONTAINER:PATH, a host path, or - (a tar on standard input).
        src: String,
        /// CONTAINER:PATH, a host path, or - (a tar on standard output).
        dst: String,
    },
}

/// Whether `cmd` forks a process into a container (the binary must be sealed first).
pub fn forks(cmd: &MoreCommand) -> bool {
    matches!(cmd, MoreCommand::Exec { .. })
}

/// Run a command of this module; the exit code.
pub fn run(engine: &Engine, cmd: &MoreCommand) -> Result<u8> {
    match cmd {
        MoreCommand::Exec {
            detach,
            env,
            user,
            workdir,
            container,
            command,
        } => {
            let o = ExecOptions {
                cmd: command.clone(),
                env: env_values(env),
                user: user.clone(),
                workdir: workdir.clone(),
                detach: *detach,
            };
            let code = engine.exec(container, &o)?;
            Ok(code.clamp(0, 255) as u8)
        }
        MoreCommand::Pause { containers } => each(containers, |c| engine.pause(c).map(drop)),
        MoreCommand::Unpause { containers } => each(containers, |c| engine.unpause(c).map(drop)),
        MoreCommand::Export { output, container } => {
            export(engine, container, output.as_deref()).map(|()| 0)
        }
        MoreCommand::Cp { archive, src, dst } => {
            let (from, to) = (CopyPath::parse(src), CopyPath::parse(dst));
            match (src.as_str(), dst.as_str(), &from, &to) {
                ("-", _, _, CopyPath::Container { container, path }) => {
                    engine.copy_from_tar(&mut std::io::stdin().lock(), container, path)?
                }
                (_, "-", CopyPath::Container { container, path }, _) => {
                    let mut out = std::io::stdout().lock();
                    engine.copy_to_tar(container, path, &mut out)?;
                    out.flush()?;
                }
                ("-", _, _, _) | (_, "-", _, _) => {
                    anyhow::bail!("cp: with -, the other side must be CONTAINER:PATH")
                }
                _ => engine.copy(&from, &to, *archive)?,
            }
            Ok(0)
        }
    }
}

/// `-e` values: `KEY=VALUE` as is, `KEY` with this process's value (skipped when unset).
fn env_values(env: &[String]) -> Vec<String> {
    env.iter()
        .filter_map(|e| match e.contains('=') {
            true => Some(e.clone()),
            false => std::env::var(e).ok().map(|v| format!("{e}={v}")),
        })
        .collect()
}

/// Apply `f` to each container, printing its name as given when done and saying
/// every failure; exit code 1 if one failed.
fn each(containers: &[String], mut f: impl FnMut(&str) -> onggi_engine::Result<()>) -> Result<u8> {
    let mut code = 0;
    for c in containers {
        match f(c) {
            Ok(()) => out!("{c}"),
            Err(e) => {
                eprintln!("error: {}", onggi_runtime::error::one_line(&e));
                code = 1;
            }
        }
    }
    Ok(code)
}

fn export(engine: &Engine, container: &str, output: Option<&Path>) -> Result<()> {
    match output {
        Some(path) => {
            // Written beside the target and renamed: a failed export leaves no half tar.
            let dir = path
                .parent()
                .filter(|p| !p.as_os_str().is_empty())
                .unwrap_or(Path::new("."));
            // 0666 less the umask, as a file made by `>` or `docker export -o`.
            let tmp = tempfile::Builder::new()
                .prefix(".onggi-export")
                .permissions(std::os::unix::fs::PermissionsExt::from_mode(0o666))
                .tempfile_in(dir)
                .with_context(|| format!("create a file beside {}", path.display()))?;
            let mut w = std::io::BufWriter::new(tmp);
            engine.export(container, &mut w)?;
            let tmp = w
                .into_inner()
                .map_err(|e| e.into_error())
                .with_context(|| format!("write {}", path.display()))?;
            tmp.persist(path)
                .with_context(|| format!("write {}", path.display()))?;
        }
        None => {
            if std::io::stdout().is_terminal() {
                anyhow::bail!("export: standard output is a terminal; give -o FILE or redirect it");
            }
            let mut w = std::io::BufWriter::new(std::io::stdout().lock());
            engine.export(container, &mut w)?;
            w.flush().context("write the tar to standard output")?;
        }
    }
    Ok(())
}
