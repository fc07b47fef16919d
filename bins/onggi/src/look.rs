//! Looking into containers the seeds' way: top (processes and threads with their
//! PIDs inside and on the host), ns (namespaces and who shares them), tree (the
//! host's process tree with each container marked).

use anyhow::Result;
use clap::Subcommand;
use onggi_engine::Engine;
use onggi_inspect::ProcessInfo;

use crate::Format;

/// The commands of this module.
#[derive(Subcommand, Debug)]
pub enum LookCommand {
    /// Show a running container's processes: PID on the host and inside, user,
    /// state, CPU % (over the process's life, as ps), RSS, CPU time, command.
    Top {
        /// Every thread, as `ps -eLf` (LWP: the thread's id on the host and inside).
        #[arg(long)]
        threads: bool,
        /// Output format.
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
        /// Name or id.
        container: String,
    },
    /// Show a running container's namespaces (as `ls -l /proc/PID/ns` of its init)
    /// and whether the host or another container shares each.
    Ns {
        /// Output format.
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
        /// Name or id.
        container: String,
    },
    /// Show running containers' use of CPU, memory, processes, network and block
    /// I/O from their cgroups, refreshed every second like `docker stats` (Ctrl-C
    /// ends it). CPU % is one CPU's worth = 100, over the time since the last look.
    Stats {
        /// Print once and exit.
        #[arg(long)]
        no_stream: bool,
        /// Output format (json implies --no-stream).
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
        /// Names or ids (every running container when none).
        containers: Vec<String>,
    },
    /// Show the host's process tree like `ps afx`, each container's monitor and
    /// processes marked with its name; with CONTAINER, its monitor and below.
    Tree {
        /// Output format.
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
        /// Name or id.
        container: Option<String>,
    },
}

/// Run one of this module's commands.
pub fn run(engine: &Engine, cmd: &LookCommand) -> Result<u8> {
    match cmd {
        LookCommand::Top {
            threads,
            format,
            container,
        } => {
            let (_, procs) = engine.top(container, *threads)?;
            match format {
                Format::Json => out!("{}", serde_json::to_string_pretty(&procs)?),
                Format::Table => print!("{}", top_table(&procs, *threads)),
            }
        }
        LookCommand::Ns { format, container } => {
            let (_, ns) = engine.namespaces(container)?;
            match format {
                Format::Json => out!("{}", serde_json::to_string_pretty(&ns)?),
                Format::Table => {
                    let mut rows = vec![vec![
                        "NAMESPACE".into(),
                        "INODE".into(),
                        "SHARED WITH".into(),
                    ]];
                    for n in &ns {
                        let with = if n.shared_with.is_empty() {
                            "-".into()
                        } else {
                            n.shared_with.join(",")
                        };
                        rows.push(vec![n.ns.kind.clone(), n.ns.inode.to_string(), with]);
                    }
                    print!("{}", crate::table(&rows));
                }
            }
        }
        LookCommand::Stats {
            no_stream,
            format,
            containers,
        } => loop {
            let usage = engine.stats(containers)?;
            if *format == Format::Json {
                out!("{}", serde_json::to_string_pretty(&usage)?);
                break;
            }
            if !*no_stream {
                print!("\x1b[2J\x1b[H"); // clear the terminal, as docker stats does
            }
            print!("{}", stats_table(&usage));
            if *no_stream {
                break;
            }
            std::io::Write::flush(&mut std::io::stdout())?;
            std::thread::sleep(std::time::Duration::from_secs(1));
        },
        LookCommand::Tree { format, container } => {
            let lines = engine.tree(container.as_deref())?;
            match format {
                Format::Json => out!("{}", serde_json::to_string_pretty(&lines)?),
                Format::Table => {
                    // ps afxuww's columns (those /proc gives cheaply), and the container.
                    let users = Users::host();
                    let mut rows = vec![[
                        "USER",
                        "PID",
                        "%CPU",
                        "RSS",
                        "STAT",
                        "TIME",
                        "CONTAINER",
                        "COMMAND",
                    ]
                    .map(String::from)
                    .to_vec()];
                    for l in &lines {
                        let p = &l.line.process;
                        let mark =
                            l.container
                                .as_ref()
                                .map_or("".into(), |(n, role)| match *role {
                                    "monitor" => format!("{n} (monitor)"),
                                    _ => format!("{n} ({})", p.ns_pid),
                                });
                        let indent = if l.line.depth == 0 {
                            String::new()
                        } else {
                            format!("{}\\_ ", "  ".repeat(l.line.depth - 1))
                        };
                        rows.push(vec![
                            users.name(p.uid),
                            p.pid.to_string(),
                            format!("{:.1}", p.cpu_percent),
                            p.rss_kib.to_string(),
                            p.state.to_string(),
                            cpu_time(p.cpu_secs),
                            mark,
                            format!("{indent}{}", p.command),
                        ]);
                    }
                    print!("{}", crate::table(&rows));
                }
            }
        }
    }
    Ok(0)
}

/// `stats`'s table: docker stats's columns.
fn stats_table(usage: &[onggi_engine::engine::inspect::Usage]) -> String {
    let size = |n: u64| crate::human_size(n);
    let mut rows = vec![[
        "CONTAINER ID",
        "NAME",
        "CPU %",
        "MEM USAGE / LIMIT",
        "MEM %",
        "NET I/O",
        "BLOCK I/O",
        "PIDS",
    ]
    .map(String::from)
    .to_vec()];
    for u in usage {
        rows.push(vec![
            u.id[..12].to_owned(),
            u.name.clone(),
            format!("{:.2}%", u.cpu_percent),
            format!(
                "{} / {}",
                binary_size(u.memory_usage),
                binary_size(u.memory_limit)
            ),
            format!("{:.2}%", u.memory_percent),
            format!("{} / {}", size(u.net_rx), size(u.net_tx)),
            format!("{} / {}", size(u.block_read), size(u.block_write)),
            u.pids.to_string(),
        ]);
    }
    crate::table(&rows)
}

/// Bytes in binary units with four significant digits, as docker stats shows
/// memory (go-units' BytesSize): `508KiB`, `1.98MiB`, `64MiB`.
fn binary_size(n: u64) -> String {
    let units = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let (mut v, mut u) = (n as f64, 0);
    while v >= 1024.0 && u < units.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    let decimals = match v {
        v if v >= 1000.0 => 0,
        v if v >= 100.0 => 1,
        v if v >= 10.0 => 2,
        _ => 3,
    };
    let s = format!("{v:.decimals$}");
    let s = if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.')
    } else {
        &s
    };
    format!("{s}{}", units[u])
}

/// `top`'s table: ps's columns, with the PIDs both ways.
fn top_table(procs: &[ProcessInfo], threads: bool) -> String {
    let users = Users::host();
    let mut head: Vec<String> = ["USER", "PID", "CPID", "PPID"].map(String::from).to_vec();
    if threads {
        head.extend(["LWP", "CLWP", "NLWP"].map(String::from));
    }
    head.extend(["STAT", "%CPU", "RSS", "TIME", "COMMAND"].map(String::from));
    let mut rows = vec![head];
    for p in procs {
        let mut r = vec![
            users.name(p.uid),
            p.pid.to_string(),
            p.ns_pid.to_string(),
            p.ppid.to_string(),
        ];
        if threads {
            r.extend([
                p.tid.to_string(),
                p.ns_tid.to_string(),
                p.threads.to_string(),
            ]);
        }
        r.extend([
            p.state.to_string(),
            format!("{:.1}", p.cpu_percent),
            p.rss_kib.to_string(),
            cpu_time(p.cpu_secs),
            p.command.clone(),
        ]);
        rows.push(r);
    }
    crate::table(&rows)
}

/// CPU time as ps's TIME column, HH:MM:SS.
fn cpu_time(secs: f64) -> String {
    let t = secs as u64;
    format!("{:02}:{:02}:{:02}", t / 3600, t / 60 % 60, t % 60)
}

/// User names from the host's /etc/passwd, as `ps` on the host shows them.
struct Users(Vec<(u32, String)>);

impl Users {
    fn host() -> Users {
        let text = std::fs::read_to_string("/etc/passwd").unwrap_or_default();
        Users(
            text.lines()
                .filter_map(|l| {
                    let f: Vec<&str> = l.split(':').collect();
                    Some((f.get(2)?.parse().ok()?, f.first()?.to_string()))
                })
                .collect(),
        )
    }

    fn name(&self, uid: u32) -> String {
        self.0
            .iter()
            .find(|(u, _)| *u == uid)
            .map_or_else(|| uid.to_string(), |(_, n)| n.clone())
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn memory_reads_like_docker_stats() {
        let said: Vec<String> = [0, 1000, 520_192, 2_076_672, 67_108_864, 25_276_502_016]
            .map(super::binary_size)
            .to_vec();
        assert_eq!(
            said,
            ["0B", "1000B", "508KiB", "1.98MiB", "64MiB", "23.54GiB"]
        );
    }
}
