//! `onggi run`'s options, and the config.json they make with the image's config:
//! what Docker users write (`-e`, `-v`, `--memory`, `--cap-add`...) turned into
//! the OCI spec, checked before anything is made.

use std::path::Path;

use oci_spec::image::ImageConfiguration;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::error::{Error, Result};

/// The seccomp profile containers get unless `--security-opt seccomp=...` says
/// otherwise: containers-common's (podman's), in Docker's format.
pub const DEFAULT_SECCOMP: &str = "/usr/share/containers/seccomp.json";

/// Docker's default capabilities for a container.
pub const DEFAULT_CAPS: &[&str] = &[
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_MKNOD",
    "CAP_NET_RAW",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
    "CAP_AUDIT_WRITE",
];

/// A bind mount, `-v HOST:CONTAINER[:ro]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Volume {
    /// Absolute host path.
    pub host: String,
    /// Absolute path in the container.
    pub container: String,
    /// Read-only.
    pub read_only: bool,
}

impl Volume {
    /// Parse `-v`'s value.
    pub fn parse(v: &str) -> Result<Volume> {
        let bad = |why: &str| Error::BadOption {
            flag: format!("-v {v}"),
            reason: why.to_owned(),
        };
        let parts: Vec<&str> = v.split(':').collect();
        let (host, container, mode) = match parts.as_slice() {
            [h, c] => (*h, *c, ""),
            [h, c, m] => (*h, *c, *m),
            _ => return Err(bad("expected HOST:CONTAINER[:ro|rw]")),
        };
        if !host.starts_with('/') {
            return Err(bad(
                "the host path must be absolute (named volumes are not supported yet)",
            ));
        }
        if !container.starts_with('/') || container == "/" {
            return Err(bad("the container path must be absolute and not /"));
        }
        let read_only = match mode {
            "" | "rw" => false,
            "ro" => true,
            m => return Err(bad(&format!("unknown mode {m:?}: ro or rw"))),
        };
        if !Path::new(host).exists() {
            return Err(bad(&format!("{host} does not exist")));
        }
        Ok(Volume {
            host: host.to_owned(),
            container: container.to_owned(),
            read_only,
        })
    }
}

/// The network a container gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Network {
    /// A network namespace with only loopback.
    #[default]
    None,
    /// The host's network namespace.
    Host,
}

/// What `onggi run`/`create` is asked for, as it is stored with the container.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RunOptions {
    /// The command (replaces the image's Cmd).
    pub cmd: Vec<String>,
    /// `--entrypoint` (replaces the image's Entrypoint, and its Cmd unless a command is given).
    pub entrypoint: Option<String>,
    /// `-e`/`--env-file`, KEY=VALUE (a later KEY wins).
    pub env: Vec<String>,
    /// `-w`.
    pub workdir: Option<String>,
    /// `-u`.
    pub user: Option<String>,
    /// `-v`.
    pub volumes: Vec<Volume>,
    /// `--tmpfs PATH[:OPTIONS]`.
    pub tmpfs: Vec<String>,
    /// `--hostname` (default: the id's first 12 digits).
    pub hostname: Option<String>,
    /// `--memory`, bytes.
    pub memory: Option<i64>,
    /// `--cpus`.
    pub cpus: Option<f64>,
    /// `--pids-limit`.
    pub pids_limit: Option<i64>,
    /// `--cpuset-cpus`.
    pub cpuset_cpus: Option<String>,
    /// `--read-only`.
    pub read_only: bool,
    /// `--cap-add` (`ALL` for every one).
    pub cap_add: Vec<String>,
    /// `--cap-drop` (`ALL` for every one).
    pub cap_drop: Vec<String>,
    /// `--security-opt`.
    pub security_opt: Vec<String>,
    /// `--ulimit NAME=SOFT[:HARD]`.
    pub ulimits: Vec<String>,
    /// `--network`.
    pub network: Network,
    /// `-t`: the process gets a terminal.
    #[serde(default)]
    pub tty: bool,
    /// `-i`: the process's stdin stays open (detached: a pipe nobody writes to).
    #[serde(default)]
    pub interactive: bool,
    /// `--restart`: what happens when the container's init exits.
    #[serde(default)]
    pub restart: crate::engine::restart::RestartPolicy,
    /// `--init`: run the process under `onggi-init`, a reaper as PID 1.
    #[serde(default)]
    pub init: bool,
}

/// `--memory`'s value: a number with an optional b, k, m, g suffix.
pub fn parse_memory(v: &str) -> Result<i64> {
    let bad = |why: &str| Error::BadOption {
        flag: format!("--memory {v}"),
        reason: why.to_owned(),
    };
    let s = v.trim().to_ascii_lowercase();
    let (num, mult) = match s.char_indices().find(|(_, c)| c.is_ascii_alphabetic()) {
        Some((i, _)) => {
            let m = match &s[i..] {
                "b" => 1,
                "k" | "kb" => 1 << 10,
                "m" | "mb" => 1 << 20,
                "g" | "gb" => 1 << 30,
                u => return Err(bad(&format!("unknown unit {u:?}: b, k, m or g"))),
            };
            (&s[..i], m)
        }
        None => (s.as_str(), 1),
    };
    let n: i64 = num
        .parse()
        .map_err(|_| bad("not a size: a positive number with b, k, m or g"))?;
    if n <= 0 {
        return Err(bad("must be positive"));
    }
    n.checked_mul(mult).ok_or_else(|| bad("too large"))
}

/// Check the options that need no image (before anything is made).
pub fn check(o: &RunOptions) -> Result<()> {
    let bad = |flag: &str, why: String| {
        Err(Error::BadOption {
            flag: flag.to_owned(),
            reason: why,
        })
    };
    if let Some(c) = o.cpus {
        if !(c > 0.0 && c <= 1024.0) {
            return bad("--cpus", format!("{c} is not a number of CPUs above 0"));
        }
    }
    if let Some(p) = o.pids_limit {
        if p == 0 || p < -1 {
            return bad(
                "--pids-limit",
                format!("{p}: a positive limit, or -1 for none"),
            );
        }
    }
    for t in &o.tmpfs {
        if !t.starts_with('/') {
            return bad(
                "--tmpfs",
                format!("{t:?}: PATH[:OPTIONS] with an absolute path"),
            );
        }
    }
    for u in &o.ulimits {
        rlimit(u)?;
    }
    for c in o.cap_add.iter().chain(&o.cap_drop) {
        let name = cap_name(c);
        if name != "CAP_ALL" && !onggi_runtime::features::CAPABILITIES.contains(&name.as_str()) {
            return bad("--cap-add/--cap-drop", format!("unknown capability {c:?}"));
        }
    }
    for s in &o.security_opt {
        security_opt(s)?;
    }
    for e in &o.env {
        if e.starts_with('=') || e.is_empty() {
            return bad("-e", format!("{e:?}: KEY=VALUE"));
        }
    }
    Ok(())
}

fn cap_name(c: &str) -> String {
    let up = c.to_ascii_uppercase();
    if up.starts_with("CAP_") {
        up
    } else {
        format!("CAP_{up}")
    }
}

/// `--ulimit nofile=1024:2048` → (RLIMIT_NOFILE, soft, hard).
fn rlimit(u: &str) -> Result<(String, u64, u64)> {
    let bad = |why: &str| Error::BadOption {
        flag: format!("--ulimit {u}"),
        reason: why.to_owned(),
    };
    let (name, vals) = u
        .split_once('=')
        .ok_or_else(|| bad("expected NAME=SOFT[:HARD]"))?;
    let (soft, hard) = match vals.split_once(':') {
        Some((s, h)) => (s, h),
        None => (vals, vals),
    };
    let num = |s: &str| s.parse::<u64>().map_err(|_| bad("limits are numbers"));
    let (soft, hard) = (num(soft)?, num(hard)?);
    if soft > hard {
        return Err(bad("the soft limit is above the hard one"));
    }
    let known = [
        "core",
        "cpu",
        "data",
        "fsize",
        "locks",
        "memlock",
        "msgqueue",
        "nice",
        "nofile",
        "nproc",
        "rss",
        "rtprio",
        "rttime",
        "sigpending",
        "stack",
        "as",
    ];
    if !known.contains(&name) {
        return Err(bad(&format!("unknown limit {name:?}")));
    }
    Ok((format!("RLIMIT_{}", name.to_ascii_uppercase()), soft, hard))
}

/// What a `--security-opt` does.
enum SecurityOpt {
    NoNewPrivileges(bool),
    Seccomp(Option<String>),
}

fn security_opt(s: &str) -> Result<SecurityOpt> {
    let (k, v) = s.split_once(['=', ':']).unwrap_or((s, ""));
    match (k, v) {
        ("no-new-privileges", "" | "true") => Ok(SecurityOpt::NoNewPrivileges(true)),
        ("no-new-privileges", "false") => Ok(SecurityOpt::NoNewPrivileges(false)),
        ("seccomp", "unconfined") => Ok(SecurityOpt::Seccomp(None)),
        ("seccomp", path) if path.starts_with('/') => Ok(SecurityOpt::Seccomp(Some(path.to_owned()))),
        _ => Err(Error::BadOption {
            flag: format!("--security-opt {s}"),
            reason: "supported: no-new-privileges[=true|false], seccomp=unconfined, seccomp=/ABSOLUTE/profile.json".into(),
        }),
    }
}

/// The config.json of container `id` for `image_config` (root filesystem at
/// `rootfs`, relative to the bundle) and `o`.
pub fn config_json(
    image_config: &ImageConfiguration,
    rootfs: &Path,
    host_rootfs: &Path,
    id: &str,
    o: &RunOptions,
) -> Result<Value> {
    check(o)?;
    let mut config = image_config.clone();
    if let Some(ep) = &o.entrypoint {
        let mut c = config.config().clone().unwrap_or_default();
        c.set_entrypoint(Some(if ep.is_empty() {
            vec![]
        } else {
            vec![ep.clone()]
        }));
        c.set_cmd(None);
        config.set_config(Some(c));
    }
    let mut spec = onggi_image::bundle::config_json(&config, rootfs, &o.cmd)?;
    let p = &mut spec["process"];
    let mut env: Vec<String> = serde_json::from_value(p["env"].take()).unwrap_or_default();
    for e in &o.env {
        let key = e.split('=').next().unwrap_or(e);
        env.retain(|old| old.split('=').next() != Some(key));
        env.push(e.clone());
    }
    p["env"] = json!(env);
    if let Some(w) = &o.workdir {
        if !w.starts_with('/') {
            return Err(Error::BadOption {
                flag: format!("-w {w}"),
                reason: "the working directory must be absolute".into(),
            });
        }
        p["cwd"] = json!(w);
    }
    if let Some(u) = &o.user {
        let (uid, gid) = onggi_image::bundle::user_ids(u, host_rootfs)?;
        let more = onggi_image::bundle::additional_gids(u, host_rootfs);
        p["user"] = onggi_image::bundle::process_user(uid, gid, &more);
    }
    p["capabilities"] = capabilities(o);
    let caps: Vec<String> =
        serde_json::from_value(p["capabilities"]["bounding"].clone()).unwrap_or_default();
    p["terminal"] = json!(o.tty);
    // The default seccomp profile (podman's, where installed), for these capabilities.
    if let Ok(data) = std::fs::read(DEFAULT_SECCOMP) {
        let profile =
            onggi_seccomp::resolve(&data, &caps, onggi_image::import::arch()).map_err(|e| {
                Error::BadOption {
                    flag: format!("the default seccomp profile {DEFAULT_SECCOMP}"),
                    reason: e.to_string(),
                }
            })?;
        spec["linux"]["seccomp"] = serde_json::to_value(profile).expect("profile serializes");
    }
    let p = &mut spec["process"];
    p["noNewPrivileges"] = json!(false);
    let mut rlimits = vec![
        json!({ "type": "RLIMIT_NOFILE", "soft": 1048576u64.min(hard_nofile()), "hard": 1048576u64.min(hard_nofile()) }),
    ];
    for u in &o.ulimits {
        let (name, soft, hard) = rlimit(u)?;
        rlimits.retain(|r| r["type"] != name.as_str());
        rlimits.push(json!({ "type": name, "soft": soft, "hard": hard }));
    }
    p["rlimits"] = json!(rlimits);
    for s in &o.security_opt {
        match security_opt(s)? {
            SecurityOpt::NoNewPrivileges(b) => spec["process"]["noNewPrivileges"] = json!(b),
            SecurityOpt::Seccomp(None) => {
                spec["linux"].as_object_mut().map(|l| l.remove("seccomp"));
            }
            SecurityOpt::Seccomp(Some(path)) => {
                let data = std::fs::read(&path).map_err(|e| Error::BadOption {
                    flag: format!("--security-opt {s}"),
                    reason: format!("read {path}: {e}"),
                })?;
                let arch = onggi_image::import::arch();
                let profile =
                    onggi_seccomp::resolve(&data, &caps, arch).map_err(|e| Error::BadOption {
                        flag: format!("--security-opt {s}"),
                        reason: e.to_string(),
                    })?;
                spec["linux"]["seccomp"] =
                    serde_json::to_value(profile).expect("profile serializes");
            }
        }
    }
    spec["hostname"] = json!(o.hostname.clone().unwrap_or_else(|| id[..12].to_owned()));
    spec["root"]["readonly"] = json!(o.read_only);
    let mounts = spec["mounts"]
        .as_array_mut()
        .expect("the default spec has mounts");
    for v in &o.volumes {
        let mut options = vec!["rbind", "rprivate"];
        if v.read_only {
            options.push("ro");
        }
        mounts.push(json!({ "destination": v.container, "type": "bind", "source": v.host, "options": options }));
    }
    for t in &o.tmpfs {
        let (dest, opts) = t.split_once(':').unwrap_or((t, ""));
        let mut options = vec!["nosuid".to_owned(), "nodev".to_owned(), "noexec".to_owned()];
        options.extend(opts.split(',').filter(|s| !s.is_empty()).map(str::to_owned));
        mounts.push(
            json!({ "destination": dest, "type": "tmpfs", "source": "tmpfs", "options": options }),
        );
    }
    let linux = &mut spec["linux"];
    if o.network == Network::Host {
        if let Some(ns) = linux["namespaces"].as_array_mut() {
            ns.retain(|n| n["type"] != "network");
        }
    }
    let r = &mut linux["resources"];
    if let Some(m) = o.memory {
        r["memory"] = json!({ "limit": m });
    }
    if let Some(c) = o.cpus {
        r["cpu"]["quota"] = json!((c * 100_000.0).round() as i64);
        r["cpu"]["period"] = json!(100_000);
    }
    if let Some(cs) = &o.cpuset_cpus {
        r["cpu"]["cpus"] = json!(cs);
    }
    if let Some(p) = o.pids_limit {
        r["pids"] = json!({ "limit": p });
    }
    linux["cgroupsPath"] = json!(cgroups_path(id));
    Ok(spec)
}

/// The caller's hard limit on open files (containers cannot be given more).
fn hard_nofile() -> u64 {
    nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE)
        .map_or(1024, |(_, h)| h)
}

/// Docker's default capabilities with `--cap-add`/`--cap-drop` applied, in the
/// bounding, effective and permitted sets.
fn capabilities(o: &RunOptions) -> Value {
    let all = onggi_runtime::features::CAPABILITIES;
    // As Docker: `--cap-drop ALL` empties the set first, then come the additions,
    // then the other drops.
    let drop_all = o.cap_drop.iter().any(|c| cap_name(c) == "CAP_ALL");
    let mut caps: Vec<String> = match drop_all {
        true => Vec::new(),
        false => DEFAULT_CAPS.iter().map(|c| c.to_string()).collect(),
    };
    for c in &o.cap_add {
        let c = cap_name(c);
        if c == "CAP_ALL" {
            caps = all.iter().map(|c| c.to_string()).collect();
        } else if !caps.contains(&c) {
            caps.push(c);
        }
    }
    for c in &o.cap_drop {
        let c = cap_name(c);
        caps.retain(|x| *x != c);
    }
    // Only what this host's bounding set has can be granted.
    caps.retain(|c| {
        c.parse::<caps::Capability>()
            .is_ok_and(|cap| caps::has_cap(None, caps::CapSet::Bounding, cap).unwrap_or(false))
    });
    json!({ "bounding": caps, "effective": caps, "permitted": caps })
}

/// The cgroup (`linux.cgroupsPath`) of container `id`.
pub fn cgroups_path(id: &str) -> String {
    format!("/onggi/{id}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image() -> ImageConfiguration {
        serde_json::from_value(json!({"architecture": "amd64", "os": "linux",
            "config": {"Entrypoint": ["/init"], "Cmd": ["serve"], "Env": ["PATH=/bin", "A=image"]},
            "rootfs": {"type": "layers", "diff_ids": []}}))
        .unwrap()
    }

    #[test]
    fn sizes_volumes_and_limits_parse_or_say_why() {
        assert_eq!(parse_memory("64m").unwrap(), 64 << 20);
        assert_eq!(parse_memory("1g").unwrap(), 1 << 30);
        assert_eq!(parse_memory("4096").unwrap(), 4096);
        for bad in ["-1", "0", "12x", "m", ""] {
            assert!(
                parse_memory(bad)
                    .unwrap_err()
                    .to_string()
                    .contains("--memory"),
                "{bad}"
            );
        }
        let v = Volume::parse("/tmp:/data:ro").unwrap();
        assert_eq!(
            (v.host.as_str(), v.container.as_str(), v.read_only),
            ("/tmp", "/data", true)
        );
        for bad in [
            "/tmp",
            "name:/data",
            "/tmp:data",
            "/tmp:/data:rx",
            "/nonexistent-x:/d",
        ] {
            assert!(Volume::parse(bad).is_err(), "{bad}");
        }
        let o = RunOptions {
            cpus: Some(0.0),
            ..Default::default()
        };
        assert!(check(&o).unwrap_err().to_string().contains("--cpus"));
        let o = RunOptions {
            ulimits: vec!["nofile=10:5".into()],
            ..Default::default()
        };
        assert!(check(&o).unwrap_err().to_string().contains("soft limit"));
        let o = RunOptions {
            cap_add: vec!["NOT_A_CAP".into()],
            ..Default::default()
        };
        assert!(check(&o).unwrap_err().to_string().contains("NOT_A_CAP"));
        let o = RunOptions {
            security_opt: vec!["apparmor=x".into()],
            ..Default::default()
        };
        assert!(check(&o).is_err());
    }

    #[test]
    fn options_become_the_spec() {
        let d = tempfile::tempdir().unwrap();
        let id = "0123456789abcdef".repeat(4);
        let o = RunOptions {
            cmd: vec!["sh".into()],
            env: vec!["A=mine".into(), "B=2".into()],
            workdir: Some("/srv".into()),
            memory: Some(64 << 20),
            cpus: Some(0.5),
            pids_limit: Some(20),
            cap_drop: vec!["ALL".into()],
            cap_add: vec!["net_bind_service".into()],
            ulimits: vec!["nproc=10:20".into()],
            network: Network::Host,
            read_only: true,
            tmpfs: vec!["/run:size=1m".into()],
            ..Default::default()
        };
        let s = config_json(&image(), Path::new("rootfs"), d.path(), &id, &o).unwrap();
        assert_eq!(s["process"]["args"], json!(["/init", "sh"]));
        assert_eq!(s["process"]["env"], json!(["PATH=/bin", "A=mine", "B=2"]));
        assert_eq!(s["process"]["cwd"], "/srv");
        assert_eq!(s["hostname"], &id[..12]);
        assert_eq!(s["root"]["readonly"], true);
        assert_eq!(s["linux"]["resources"]["memory"]["limit"], 64 << 20);
        assert_eq!(s["linux"]["resources"]["cpu"]["quota"], 50_000);
        assert_eq!(s["linux"]["resources"]["pids"]["limit"], 20);
        assert_eq!(
            s["process"]["capabilities"]["bounding"],
            json!(["CAP_NET_BIND_SERVICE"])
        );
        assert!(s["process"]["rlimits"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["type"] == "RLIMIT_NPROC" && r["hard"] == 20));
        assert!(!s["linux"]["namespaces"]
            .as_array()
            .unwrap()
            .iter()
            .any(|n| n["type"] == "network"));
        assert!(s["mounts"]
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m["destination"] == "/run" && m["type"] == "tmpfs"));
        let o = RunOptions {
            entrypoint: Some("/bin/sh".into()),
            ..Default::default()
        };
        let s = config_json(&image(), Path::new("rootfs"), d.path(), &id, &o).unwrap();
        assert_eq!(
            s["process"]["args"],
            json!(["/bin/sh"]),
            "--entrypoint drops the image's Cmd"
        );
    }
}
