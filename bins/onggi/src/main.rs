//! `onggi`: Docker-style commands for people, daemonless. This is a thin command
//! line over the library crates; images live in `onggi-image`.
#![forbid(unsafe_code)]

use std::io::{IsTerminal, Read};
use std::path::PathBuf;
use std::process::ExitCode;

/// `println!` that ends the process quietly when stdout is a closed pipe
/// (`onggi images | head -1`), as C tools die of SIGPIPE.
macro_rules! out {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        if let Err(e) = writeln!(std::io::stdout().lock(), $($arg)*) {
            if e.kind() == std::io::ErrorKind::BrokenPipe {
                std::process::exit(0);
            }
        }
    }};
}

mod containers;
mod look;
mod more;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand, ValueEnum};
use onggi_image::{Listed, Reference, Store};

/// Containers as isolated processes, and the images they start from: Docker's
/// commands, without a daemon.
///
/// Images come from a root filesystem tarball (what `docker export` writes),
/// from `docker save`/`podman save` archives and OCI layouts, or from a registry;
/// each layer is stored once and shared by every container through overlayfs.
///
///   onggi import rootfs.tar busybox      # a tarball as an image named busybox
///   onggi load -i busybox.tar            # a docker/podman save archive or an OCI layout
///   onggi save -o out.tar busybox        # and back (--format oci-archive)
///   onggi images                         # what is in the store
///   onggi tag busybox mybox:1.0          # another name for it
///   onggi rmi mybox:1.0                  # remove the name (and the image with its last)
#[derive(Parser, Debug)]
#[command(name = "onggi", version, verbatim_doc_comment)]
struct Cli {
    /// Where images, containers and their metadata are stored.
    #[arg(
        long,
        global = true,
        env = "ONGGI_ROOT",
        default_value = "/var/lib/onggi",
        value_name = "DIR"
    )]
    root: PathBuf,
    /// Where runtime state lives (a tmpfs).
    #[arg(
        long,
        global = true,
        env = "ONGGI_RUN_ROOT",
        default_value = "/run/onggi",
        value_name = "DIR"
    )]
    run_root: PathBuf,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, Debug, ValueEnum, PartialEq, Eq)]
pub(crate) enum Format {
    Table,
    Json,
}

#[derive(Clone, Copy, Debug, ValueEnum, PartialEq, Eq)]
enum SaveAs {
    /// `docker save`'s format (manifest.json, uncompressed layer tars).
    DockerArchive,
    /// An OCI image layout in a tar (podman's `--format oci-archive`).
    OciArchive,
}

/// `defer`: a subcommand's arguments are built only when it is used (building
/// them all is most of a start-up, and `run` starts the binary twice).
#[derive(Subcommand, Debug)]
#[command(defer = true)]
enum Command {
    #[command(flatten)]
    Container(containers::ContainerCommand),
    #[command(flatten)]
    More(more::MoreCommand),
    #[command(flatten)]
    Look(look::LookCommand),
    /// Import a root filesystem tarball (plain, gzip or zstd; `-` reads stdin) as
    /// an image of one layer, optionally named NAME[:TAG].
    Import {
        /// The tarball, or - for standard input.
        file: String,
        /// The image's name.
        name: Option<String>,
    },
    /// Load images from a `docker save`/`podman save` archive or an OCI layout
    /// (a directory, or a tar of one); every image and tag in it.
    Load {
        /// The archive or layout (standard input when not given).
        #[arg(short, long, value_name = "FILE")]
        input: Option<PathBuf>,
        /// Print only the loaded image ids.
        #[arg(short, long)]
        quiet: bool,
    },
    /// Save images to an archive that `onggi load`, `podman load` and `docker load` read.
    Save {
        /// Write to FILE (standard output when not given, if it is not a terminal).
        #[arg(short, long, value_name = "FILE")]
        output: Option<PathBuf>,
        /// The archive's format.
        #[arg(long, value_enum, default_value_t = SaveAs::DockerArchive)]
        format: SaveAs,
        /// Names or ids.
        #[arg(required = true)]
        images: Vec<String>,
    },
    /// Pull an image from a registry (plain HTTP for localhost and 127.0.0.0/8),
    /// its layers in parallel with a progress bar each.
    Pull {
        /// NAME[:TAG|@DIGEST], e.g. 127.0.0.1:5000/busybox:latest.
        reference: String,
        /// Talk plain HTTP to this registry too (repeatable).
        #[arg(long = "insecure-registry", value_name = "HOST[:PORT]")]
        insecure: Vec<String>,
        /// No progress bars; print only the image id.
        #[arg(short, long)]
        quiet: bool,
    },
    /// Save credentials for a registry, after checking them against it.
    Login {
        /// The registry, HOST[:PORT] (docker.io when not given).
        registry: Option<String>,
        /// User name.
        #[arg(short, long)]
        username: String,
        /// Password (prefer --password-stdin: a password on the command line is
        /// visible to every user of this machine).
        #[arg(short, long, conflicts_with = "password_stdin")]
        password: Option<String>,
        /// Read the password from standard input.
        #[arg(long)]
        password_stdin: bool,
        /// Talk plain HTTP to this registry.
        #[arg(long = "insecure-registry", value_name = "HOST[:PORT]")]
        insecure: Vec<String>,
    },
    /// List images: repository, tag, id, age, size.
    #[command(visible_alias = "ls")]
    Images {
        /// Only the image ids.
        #[arg(short, long)]
        quiet: bool,
        /// Output format.
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
    },
    /// Give an image another name.
    Tag {
        /// The image (name or id).
        source: String,
        /// The new name, NAME[:TAG].
        target: String,
    },
    /// Remove image names; an image goes with its last name (or by id).
    Rmi {
        /// Remove an image a container uses, or an id that has several names.
        #[arg(short, long)]
        force: bool,
        /// Names or ids.
        #[arg(required = true)]
        images: Vec<String>,
    },
    /// Commands on images: inspect, prune.
    Image {
        #[command(subcommand)]
        command: ImageCommand,
    },
}

#[derive(Subcommand, Debug)]
enum ImageCommand {
    /// Print images as JSON: id, names, manifest, layers, sizes, config, history.
    Inspect {
        /// Names or ids.
        #[arg(required = true)]
        images: Vec<String>,
    },
    /// Remove unnamed images no container uses, and every blob and layer no image
    /// refers to.
    Prune,
}

fn main() -> ExitCode {
    // The commands that fork containers seal the binary before clap runs, so the
    // re-execution pays for one parse (run() seals again, a no-op then, as the rule).
    let globals = onggi_runtime::exe::GlobalOptions {
        with_value: &["root", "run-root"],
        optional_value: &[],
    };
    let word = onggi_runtime::exe::subcommand_word(std::env::args_os(), globals);
    if matches!(word.as_deref(), Some("run" | "start" | "restart" | "exec")) {
        if let Err(e) = onggi_runtime::exe::ensure_sealed() {
            eprintln!("error: {}", onggi_runtime::error::one_line(&e));
            return ExitCode::from(125);
        }
    }
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            // Help and version are answers; a usage error is the engine's (Docker: 125).
            return match e.kind() {
                clap::error::ErrorKind::DisplayHelp | clap::error::ErrorKind::DisplayVersion => {
                    ExitCode::SUCCESS
                }
                _ => ExitCode::from(125),
            };
        }
    };
    match run(&cli) {
        Ok(code) => ExitCode::from(code),
        // The reader of our output went away (`onggi export c | head`): end as a
        // program killed by SIGPIPE does, quietly (Docker's CLI dies of it).
        Err(e) if broken_pipe(&e) => ExitCode::from(128 + 13),
        Err(e) => {
            eprintln!("error: {}", render(&e));
            // Docker's codes for the container commands (125, or 126/127 when the
            // program cannot be run); 1 for the others.
            let code = match (&cli.command, e.downcast_ref::<onggi_engine::Error>()) {
                (Command::Container(_) | Command::More(_) | Command::Look(_), Some(engine)) => {
                    engine.exit_code()
                }
                (Command::Container(_) | Command::More(_) | Command::Look(_), None) => 125,
                _ => 1,
            };
            ExitCode::from(code)
        }
    }
}

/// Whether writing our output failed because its reader is gone.
fn broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

/// The error and its causes on one line (see `onggi_runtime::error::one_line`).
fn render(e: &anyhow::Error) -> String {
    onggi_runtime::error::one_line(e.as_ref())
}

fn run(cli: &Cli) -> Result<u8> {
    if let Command::Container(c) = &cli.command {
        use containers::ContainerCommand as C;
        // The engine forks container inits: seal the binary first (CVE-2019-5736).
        // (`create` only records the container: its init is forked by `start`.)
        if matches!(c, C::Run { .. } | C::Start { .. } | C::Restart { .. }) {
            onggi_runtime::exe::ensure_sealed()?;
        }
        return containers::run(&open_engine(cli)?, c);
    }
    if let Command::Look(l) = &cli.command {
        return look::run(&open_engine(cli)?, l);
    }
    if let Command::More(m) = &cli.command {
        // exec forks into a container: seal the binary first (CVE-2019-5736).
        if more::forks(m) {
            onggi_runtime::exe::ensure_sealed()?;
        }
        return more::run(&open_engine(cli)?, m);
    }
    run_image_command(cli).map(|()| 0)
}

/// The engine on the roots the command line gives, with `onggi-monitor` beside us.
fn open_engine(cli: &Cli) -> Result<onggi_engine::Engine> {
    let installed = onggi_runtime::exe::installed_path()?;
    let bin_dir = installed.parent().map(PathBuf::from).unwrap_or_default();
    let roots = onggi_engine::Roots {
        data: cli.root.clone(),
        run: cli.run_root.clone(),
    };
    Ok(onggi_engine::Engine::open(roots, bin_dir)?)
}

fn run_image_command(cli: &Cli) -> Result<()> {
    let store = Store::open(&cli.root)
        .with_context(|| format!("open the image store {}", cli.root.display()))?;
    match &cli.command {
        Command::Container(_) | Command::More(_) | Command::Look(_) => {
            unreachable!("handled by run")
        }
        Command::Import { file, name } => import(&store, file, name.as_deref()),
        Command::Load { input, quiet } => load(&store, input.as_deref(), *quiet),
        Command::Save {
            output,
            format,
            images,
        } => save(&store, output.as_deref(), *format, images),
        Command::Pull {
            reference,
            insecure,
            quiet,
        } => pull(&store, reference, insecure, *quiet),
        Command::Login {
            registry,
            username,
            password,
            password_stdin,
            insecure,
        } => login(
            &cli.root,
            registry.as_deref(),
            username,
            password.as_deref(),
            *password_stdin,
            insecure,
        ),
        Command::Images { quiet, format } => images(&store, *quiet, *format),
        Command::Tag { source, target } => {
            let target: Reference = target.parse()?;
            store.tag(source, &target)?;
            Ok(())
        }
        Command::Rmi { force, images } => rmi(&store, images, *force),
        Command::Image { command } => match command {
            ImageCommand::Inspect { images } => inspect(&store, images),
            ImageCommand::Prune => {
                let p = store.prune()?;
                for id in &p.images {
                    out!("Deleted: {id}");
                }
                out!(
                    "Total reclaimed space: {} ({} blobs, {} layers)",
                    human_size(p.bytes),
                    p.blobs,
                    p.layers
                );
                Ok(())
            }
        },
    }
}

fn import(store: &Store, file: &str, name: Option<&str>) -> Result<()> {
    let name: Option<Reference> = name.map(str::parse).transpose()?;
    let image = if file == "-" {
        if std::io::stdin().is_terminal() {
            anyhow::bail!("import -: standard input is a terminal; pipe a tarball in");
        }
        let mut stdin = std::io::stdin().lock();
        onggi_image::import::import(
            store,
            &mut stdin as &mut dyn Read,
            "standard input",
            name.as_ref(),
        )?
    } else {
        let mut f = std::fs::File::open(file).with_context(|| format!("open {file}"))?;
        onggi_image::import::import(store, &mut f, file, name.as_ref())?
    };
    out!("{}", image.id);
    Ok(())
}

fn load(store: &Store, input: Option<&std::path::Path>, quiet: bool) -> Result<()> {
    let loaded = match input {
        Some(path) => onggi_image::archive::load(store, path)?,
        None => {
            if std::io::stdin().is_terminal() {
                anyhow::bail!(
                    "load: standard input is a terminal; give -i FILE or pipe an archive in"
                );
            }
            let mut stdin = std::io::stdin().lock();
            onggi_image::archive::load_reader(store, &mut stdin as &mut dyn Read, "standard input")?
        }
    };
    for l in &loaded {
        if quiet {
            out!("{}", l.image.id);
            continue;
        }
        if l.names.is_empty() {
            out!("Loaded image ID: {}", l.image.id);
        }
        for n in &l.names {
            out!(
                "Loaded image: {}:{}",
                n.familiar_name(),
                n.tag.as_deref().unwrap_or("latest")
            );
        }
    }
    Ok(())
}

fn save(
    store: &Store,
    output: Option<&std::path::Path>,
    format: SaveAs,
    images: &[String],
) -> Result<()> {
    use onggi_image::archive::SaveFormat;
    let format = match format {
        SaveAs::DockerArchive => SaveFormat::DockerArchive,
        SaveAs::OciArchive => SaveFormat::OciArchive,
    };
    let names: Vec<&str> = images.iter().map(String::as_str).collect();
    match output {
        Some(path) => {
            // Written beside the target and renamed: a failed save leaves no half archive.
            let dir = path
                .parent()
                .filter(|p| !p.as_os_str().is_empty())
                .unwrap_or(std::path::Path::new("."));
            let mut tmp = tempfile::NamedTempFile::new_in(dir)
                .with_context(|| format!("create a file beside {}", path.display()))?;
            onggi_image::archive::save(store, &names, tmp.as_file_mut(), format)?;
            tmp.persist(path)
                .with_context(|| format!("write {}", path.display()))?;
        }
        None => {
            if std::io::stdout().is_terminal() {
                anyhow::bail!("save: standard output is a terminal; give -o FILE or redirect it");
            }
            let mut stdout = std::io::stdout().lock();
            onggi_image::archive::save(store, &names, &mut stdout, format)?;
        }
    }
    Ok(())
}

fn pull(store: &Store, reference: &str, insecure: &[String], quiet: bool) -> Result<()> {
    use onggi_image::progress::{ProgressBars, Quiet};
    let reference: Reference = reference.parse()?;
    let opts = onggi_image::pull::PullOptions {
        insecure: insecure.to_vec(),
        ..Default::default()
    };
    let before = store.resolve(&reference.to_string()).ok().map(|i| i.id);
    let image = if quiet {
        onggi_image::pull::pull(store, &reference, &opts, &Quiet)?
    } else {
        out!("Pulling {reference}");
        onggi_image::pull::pull(store, &reference, &opts, &ProgressBars::new())?
    };
    if quiet {
        out!("{}", image.id);
    } else if before.as_ref() == Some(&image.id) {
        out!("Digest: {}", image.manifest);
        out!("Status: Image is up to date for {reference}");
    } else {
        out!("Digest: {}", image.manifest);
        out!("Status: Downloaded newer image for {reference}");
    }
    Ok(())
}

fn login(
    root: &std::path::Path,
    registry: Option<&str>,
    user: &str,
    password: Option<&str>,
    from_stdin: bool,
    insecure: &[String],
) -> Result<()> {
    let password = match (password, from_stdin) {
        (Some(p), _) => p.to_owned(),
        (None, true) => {
            let mut p = String::new();
            std::io::stdin()
                .read_to_string(&mut p)
                .context("read the password from standard input")?;
            p.trim_end_matches(['\n', '\r']).to_owned()
        }
        (None, false) => anyhow::bail!("login: give the password with --password-stdin (or -p)"),
    };
    let registry = registry.unwrap_or(onggi_image::reference::DEFAULT_REGISTRY);
    let opts = onggi_image::pull::PullOptions {
        insecure: insecure.to_vec(),
        ..Default::default()
    };
    onggi_image::pull::login(root, registry, user, &password, &opts)?;
    out!("Login Succeeded");
    Ok(())
}

fn images(store: &Store, quiet: bool, format: Format) -> Result<()> {
    let list = store.images()?;
    if format == Format::Json {
        out!("{}", serde_json::to_string_pretty(&list)?);
        return Ok(());
    }
    if quiet {
        for l in &list {
            out!("{}", l.image.id.short());
        }
        return Ok(());
    }
    let mut rows = vec![["REPOSITORY", "TAG", "IMAGE ID", "CREATED", "SIZE"]
        .map(String::from)
        .to_vec()];
    for l in &list {
        for (repo, tag) in repo_tags(l) {
            rows.push(vec![
                repo,
                tag,
                l.image.id.short().to_owned(),
                l.image
                    .created
                    .as_deref()
                    .map(ago)
                    .unwrap_or_else(|| "N/A".into()),
                human_size(l.image.size),
            ]);
        }
    }
    out!("{}", table(&rows).trim_end());
    Ok(())
}

/// (repository, tag) for each name, `<none>` for an unnamed image.
fn repo_tags(l: &Listed) -> Vec<(String, String)> {
    if l.names.is_empty() {
        return vec![("<none>".into(), "<none>".into())];
    }
    l.names
        .iter()
        .filter_map(|n| n.parse::<Reference>().ok())
        .map(|r| {
            (
                r.familiar_name(),
                r.tag.clone().unwrap_or_else(|| "<none>".into()),
            )
        })
        .collect()
}

fn rmi(store: &Store, images: &[String], force: bool) -> Result<()> {
    let mut failed = None;
    for what in images {
        match store.remove_image(what, force) {
            Ok(r) => {
                for n in &r.untagged {
                    out!(
                        "Untagged: {}",
                        n.parse::<Reference>()
                            .map(|r| format!("{}:{}", r.familiar_name(), r.tag.unwrap_or_default()))
                            .unwrap_or_else(|_| n.clone())
                    );
                }
                if let Some(id) = &r.deleted {
                    out!("Deleted: {id}");
                }
            }
            Err(e) => {
                eprintln!("error: {e}");
                failed = Some(e);
            }
        }
    }
    match failed {
        // Every failure was said; the exit code says one happened.
        Some(_) => std::process::exit(1),
        None => Ok(()),
    }
}

fn inspect(store: &Store, images: &[String]) -> Result<()> {
    let mut out = Vec::new();
    for what in images {
        let image = store.resolve(what)?;
        let listed = store.images()?;
        let names = listed
            .iter()
            .find(|l| l.image.id == image.id)
            .map(|l| l.names.clone())
            .unwrap_or_default();
        let config: serde_json::Value = serde_json::from_slice(&store.read_blob(&image.id)?)
            .with_context(|| format!("parse the config of {what}"))?;
        let manifest: serde_json::Value =
            serde_json::from_slice(&store.read_blob(&image.manifest)?)
                .with_context(|| format!("parse the manifest of {what}"))?;
        out.push(serde_json::json!({
            "Id": image.id.to_string(),
            "RepoTags": names,
            "Created": image.created,
            "Size": image.size,
            "Architecture": config["architecture"],
            "Os": config["os"],
            "Config": config["config"],
            "RootFS": config["rootfs"],
            "History": config["history"],
            "Manifest": { "Digest": image.manifest.to_string(), "Document": manifest },
            "Layers": image.layers,
            "UsedBy": store.holders(&image.id),
        }));
    }
    out!("{}", serde_json::to_string_pretty(&out)?);
    Ok(())
}

/// Rows as columns padded to their widest cell, three spaces apart (as docker).
pub(crate) fn table(rows: &[Vec<String>]) -> String {
    let cols = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..cols)
        .map(|c| {
            rows.iter()
                .filter_map(|r| r.get(c))
                .map(|s| s.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for r in rows {
        let line: Vec<String> = r
            .iter()
            .enumerate()
            .map(|(c, s)| format!("{s:<w$}", w = widths[c]))
            .collect();
        out.push_str(line.join("   ").trim_end());
        out.push('\n');
    }
    out
}

/// Bytes as Docker prints them (SI units: 1.2MB).
fn human_size(n: u64) -> String {
    let units = ["B", "kB", "MB", "GB", "TB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1000.0 && u < units.len() - 1 {
        v /= 1000.0;
        u += 1;
    }
    if u == 0 {
        format!("{n}B")
    } else {
        format!("{v:.3}")
            .trim_end_matches('0')
            .trim_end_matches('.')
            .to_owned()
            + units[u]
    }
}

/// An RFC 3339 UTC time as "N units ago".
pub(crate) fn ago(created: &str) -> String {
    match since(created) {
        Some(s) => human_duration(s) + " ago",
        None => created.to_owned(),
    }
}

/// Seconds from an RFC 3339 time to now (0 for a time ahead of the clock).
pub(crate) fn since(time: &str) -> Option<i64> {
    let then = parse_rfc3339(time)?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    Some((now - then).max(0))
}

/// A duration in seconds the way Docker says it (go-units' HumanDuration): "Less
/// than a second", "5 seconds", "About a minute", "3 hours", "2 weeks"...
pub(crate) fn human_duration(s: i64) -> String {
    let (minutes, hours) = (s / 60, (s + 1800) / 3600);
    match s {
        0 => "Less than a second".into(),
        1 => "1 second".into(),
        2..=59 => format!("{s} seconds"),
        _ if minutes == 1 => "About a minute".into(),
        _ if minutes < 60 => format!("{minutes} minutes"),
        _ if hours == 1 => "About an hour".into(),
        _ if hours < 48 => format!("{hours} hours"),
        _ if hours < 24 * 7 * 2 => format!("{} days", hours / 24),
        _ if hours < 24 * 30 * 2 => format!("{} weeks", hours / 24 / 7),
        _ if hours < 24 * 365 * 2 => format!("{} months", hours / 24 / 30),
        _ => format!("{} years", s / 3600 / 24 / 365),
    }
}

/// Seconds since the epoch of `YYYY-MM-DDTHH:MM:SS[.frac](Z|±HH:MM)`.
fn parse_rfc3339(s: &str) -> Option<i64> {
    let num = |a: usize, b: usize| s.get(a..b)?.parse::<i64>().ok();
    let (y, mo, d, h, mi, sec) = (
        num(0, 4)?,
        num(5, 7)?,
        num(8, 10)?,
        num(11, 13)?,
        num(14, 16)?,
        num(17, 19)?,
    );
    let rest = &s[19..];
    let rest = rest.trim_start_matches(|c: char| c == '.' || c.is_ascii_digit());
    let offset = match rest {
        "Z" | "" => 0,
        o if o.len() == 6 => {
            let sign = if o.starts_with('-') { -1 } else { 1 };
            sign * (o[1..3].parse::<i64>().ok()? * 3600 + o[4..6].parse::<i64>().ok()? * 60)
        }
        _ => return None,
    };
    // Days from the civil date (Howard Hinnant's algorithm).
    let y = if mo <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (if mo > 2 { mo - 3 } else { mo + 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(days * 86400 + h * 3600 + mi * 60 + sec - offset)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_times_and_tables_read_like_docker() {
        assert_eq!(human_size(999), "999B");
        assert_eq!(human_size(1_234_567), "1.235MB");
        assert_eq!(human_size(4_400_000), "4.4MB");
        assert_eq!(parse_rfc3339("1970-01-02T00:00:01Z"), Some(86401));
        let said: Vec<String> = [
            0,
            1,
            42,
            90,
            59 * 60,
            5399,
            3 * 3600,
            47 * 3600,
            13 * 86400,
            59 * 86400,
            400 * 86400,
            800 * 86400,
        ]
        .into_iter()
        .map(human_duration)
        .collect();
        assert_eq!(
            said,
            [
                "Less than a second",
                "1 second",
                "42 seconds",
                "About a minute",
                "59 minutes",
                "About an hour",
                "3 hours",
                "47 hours",
                "13 days",
                "8 weeks",
                "13 months",
                "2 years"
            ]
        );
        assert_eq!(
            parse_rfc3339("2026-11-22T15:00:00.123456789Z"),
            parse_rfc3339("2026-11-22T16:00:00+01:00")
        );
        let t = table(&[
            vec!["A".into(), "BB".into()],
            vec!["ccc".into(), "d".into()],
        ]);
        assert_eq!(t, "A     BB\nccc   d\n");
        Cli::parse_from(["onggi", "images", "--format", "json"]);
    }
}
