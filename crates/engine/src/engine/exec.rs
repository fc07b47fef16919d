//! `exec`: another process in a running container, with the container's own
//! process settings (env, cwd, user, capabilities, rlimits, seccomp and LSM
//! labels from its config.json) changed only where `-e`, `-u`, `-w` say.
//!
//! The runtime library runs it: it joins the container's namespaces and cgroup
//! from a fork of this process. In the foreground this process stays its parent,
//! forwards the signals it gets (SIGINT, SIGTERM...) and returns its exit code;
//! detached, it returns once the process runs. Its stdin is /dev/null (no `-i`),
//! and a detached one's stdout and stderr too, as Docker's.

use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};

use oci_spec::runtime::Process;
use onggi_runtime::ExecOpts;

use super::Engine;
use crate::db::{Record, State};
use crate::error::{Context, Error, Result};

/// What `exec` runs, and how.
#[derive(Debug, Clone, Default)]
pub struct ExecOptions {
    /// The program and its arguments.
    pub cmd: Vec<String>,
    /// `-e KEY=VALUE`, added to (or replacing in) the container's environment.
    pub env: Vec<String>,
    /// `-u USER[:GROUP]` (names from the container's /etc/passwd and /etc/group).
    pub user: Option<String>,
    /// `-w DIR`, absolute.
    pub workdir: Option<String>,
    /// `-d`: return once it runs.
    pub detach: bool,
}

/// The longest /etc/passwd or /etc/group read from a container.
const ID_FILE_LIMIT: u64 = 16 << 20;

impl Engine {
    /// `exec`: run `o.cmd` in the running container `what`; its exit code (128 +
    /// signal when killed), or 0 once it runs with `detach`.
    pub fn exec(&self, what: &str, o: &ExecOptions) -> Result<i32> {
        let rec = self.find(what)?;
        match rec.state {
            State::Running => {}
            State::Paused => {
                return Err(Error::WrongState {
                    id: rec.name,
                    reason: "it is paused; unpause it first".into(),
                })
            }
            _ => {
                return Err(Error::WrongState {
                    id: rec.name,
                    reason: "it is not running".into(),
                })
            }
        }
        let defaults = self.configured_process(&rec)?;
        let ids = match &o.user {
            Some(u) => Some(self.user_ids(&rec, u)?),
            None => None,
        };
        let process = exec_process(defaults, o, ids)?;
        let opts = ExecOpts {
            process: Some(process),
            console_socket: None,
            detach: o.detach,
            pid_file: None,
            preserve_fds: 0,
        };
        let _stdio = Stdio::redirect(o.detach)?;
        self.runtime.exec(&rec.id, &opts).map_err(exec_error)
    }

    /// The `process` of the container's config.json.
    fn configured_process(&self, rec: &Record) -> Result<Process> {
        let path = self.dir(&rec.id).join("config.json");
        let data = std::fs::read(&path).step(|| format!("read {}", path.display()))?;
        let mut spec: serde_json::Value = serde_json::from_slice(&data)
            .map_err(std::io::Error::other)
            .step(|| format!("parse {}", path.display()))?;
        serde_json::from_value(spec["process"].take())
            .map_err(std::io::Error::other)
            .step(|| format!("parse process in {}", path.display()))
    }

    /// `-u`'s user and group ids, names looked up in the container's own
    /// /etc/passwd and /etc/group (read inside its root: a symlink there cannot
    /// make us read the host's).
    fn user_ids(&self, rec: &Record, user: &str) -> Result<(u32, u32, Vec<u32>)> {
        let root = self.container_root(rec)?;
        let scratch = tempfile::tempdir().step(|| "make a temporary directory")?;
        let etc = scratch.path().join("etc");
        std::fs::create_dir(&etc).step(|| format!("create {}", etc.display()))?;
        for f in ["passwd", "group"] {
            let inside = Path::new("/etc").join(f);
            if let Ok(data) = super::files::read_in_root(&root, &inside, ID_FILE_LIMIT) {
                std::fs::write(etc.join(f), data)
                    .step(|| format!("write {}", etc.join(f).display()))?;
            }
        }
        let (uid, gid) =
            onggi_image::bundle::user_ids(user, scratch.path()).map_err(|e| Error::BadOption {
                flag: format!("-u {user}"),
                reason: onggi_runtime::error::one_line(&e).replace("image's", "container's"),
            })?;
        Ok((
            uid,
            gid,
            onggi_image::bundle::additional_gids(user, scratch.path()),
        ))
    }
}

/// The process `exec` runs: the container's `defaults` with `o`'s changes, and
/// `ids` for `-u`.
fn exec_process(
    mut p: Process,
    o: &ExecOptions,
    ids: Option<(u32, u32, Vec<u32>)>,
) -> Result<Process> {
    if o.cmd.is_empty() {
        return Err(Error::BadOption {
            flag: "exec".into(),
            reason: "no command given".into(),
        });
    }
    p.set_args(Some(o.cmd.clone()));
    p.set_command_line(None);
    p.set_terminal(Some(false));
    p.set_console_size(None);
    let mut env = p.env().clone().unwrap_or_default();
    for e in &o.env {
        let key = e.split('=').next().unwrap_or(e);
        env.retain(|old| old.split('=').next() != Some(key));
        env.push(e.clone());
    }
    p.set_env(Some(env));
    if let Some(w) = &o.workdir {
        if !w.starts_with('/') {
            return Err(Error::BadOption {
                flag: format!("-w {w}"),
                reason: "the working directory must be absolute".into(),
            });
        }
        p.set_cwd(PathBuf::from(w));
    }
    if let Some((uid, gid, more)) = ids {
        let user = p.user_mut();
        user.set_uid(uid);
        user.set_gid(gid);
        user.set_additional_gids((!more.is_empty()).then_some(more));
        user.set_username(None);
    }
    Ok(p)
}

/// Docker's exit codes for a program that cannot be run: 127 not found, 126 not
/// executable; any other failure is the engine's.
fn exec_error(e: onggi_runtime::Error) -> Error {
    if let onggi_runtime::Error::Init(message) = &e {
        let m = message.to_ascii_lowercase();
        if m.starts_with("exec: ") {
            if m.contains("not found") || m.contains("no such file") {
                return Error::Exec {
                    code: 127,
                    message: message.clone(),
                };
            }
            if m.contains("permission denied") || m.contains("is a directory") {
                return Error::Exec {
                    code: 126,
                    message: message.clone(),
                };
            }
        }
    }
    e.into()
}

/// This process's stdin (and with `all` its stdout and stderr) on /dev/null for
/// as long as it lives, for the exec'd process to inherit; then restored.
struct Stdio {
    saved: Vec<(u8, OwnedFd)>,
}

impl Stdio {
    fn redirect(all: bool) -> Result<Stdio> {
        use nix::unistd::{dup2_stderr, dup2_stdin, dup2_stdout};
        let null = std::fs::File::options()
            .read(true)
            .write(true)
            .open("/dev/null")
            .step(|| "open /dev/null")?;
        let mut me = Stdio { saved: Vec::new() };
        let fds: &[u8] = if all { &[0, 1, 2] } else { &[0] };
        for &fd in fds {
            let copy = match fd {
                0 => std::io::stdin().as_fd().try_clone_to_owned(),
                1 => std::io::stdout().as_fd().try_clone_to_owned(),
                _ => std::io::stderr().as_fd().try_clone_to_owned(),
            };
            // A closed descriptor stays closed... and is then /dev/null for the process.
            if let Ok(copy) = copy {
                me.saved.push((fd, copy));
            }
            match fd {
                0 => dup2_stdin(&null),
                1 => dup2_stdout(&null),
                _ => dup2_stderr(&null),
            }
            .step(|| format!("put /dev/null on descriptor {fd}"))?;
        }
        Ok(me)
    }
}

impl Drop for Stdio {
    fn drop(&mut self) {
        use nix::unistd::{dup2_stderr, dup2_stdin, dup2_stdout};
        for (fd, copy) in &self.saved {
            let _ = match fd {
                0 => dup2_stdin(copy),
                1 => dup2_stdout(copy),
                _ => dup2_stderr(copy),
            };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn defaults() -> Process {
        serde_json::from_value(serde_json::json!({
            "terminal": true,
            "consoleSize": {"height": 24, "width": 80},
            "user": {"uid": 0, "gid": 0, "additionalGids": [10]},
            "args": ["/init"],
            "env": ["PATH=/bin", "A=from-run", "B=b"],
            "cwd": "/srv",
            "capabilities": {"bounding": ["CAP_KILL"], "effective": ["CAP_KILL"], "permitted": ["CAP_KILL"]},
            "noNewPrivileges": true
        }))
        .unwrap()
    }

    #[test]
    fn exec_keeps_the_containers_settings_unless_told() {
        let o = ExecOptions {
            cmd: vec!["sh".into(), "-c".into(), "env".into()],
            ..Default::default()
        };
        let p = exec_process(defaults(), &o, None).unwrap();
        assert_eq!(p.args().as_deref(), Some(&o.cmd[..]));
        assert_eq!(p.cwd(), Path::new("/srv"));
        assert_eq!(
            p.env().as_ref().unwrap(),
            &["PATH=/bin", "A=from-run", "B=b"]
        );
        assert_eq!(p.user().additional_gids().as_deref(), Some(&[10][..]));
        assert_eq!(p.terminal(), Some(false), "no terminal (not -t)");
        assert_eq!(p.console_size(), None);
        assert_eq!(p.no_new_privileges(), Some(true));
        assert_eq!(p.capabilities(), defaults().capabilities());
    }

    #[test]
    fn flags_override_env_cwd_and_user() {
        let o = ExecOptions {
            cmd: vec!["id".into()],
            env: vec!["A=from-exec".into(), "C=c".into()],
            workdir: Some("/tmp".into()),
            user: Some("1000".into()),
            detach: false,
        };
        let p = exec_process(defaults(), &o, Some((1000, 100, vec![]))).unwrap();
        assert_eq!(
            p.env().as_ref().unwrap(),
            &["PATH=/bin", "B=b", "A=from-exec", "C=c"]
        );
        assert_eq!(p.cwd(), Path::new("/tmp"));
        assert_eq!((p.user().uid(), p.user().gid()), (1000, 100));
        assert_eq!(p.user().additional_gids(), &None);
        let p = exec_process(defaults(), &o, Some((1000, 100, vec![10, 29]))).unwrap();
        assert_eq!(p.user().additional_gids(), &Some(vec![10, 29]));
        let relative = ExecOptions {
            workdir: Some("tmp".into()),
            ..o.clone()
        };
        assert!(exec_process(defaults(), &relative, None).is_err());
        let empty = ExecOptions::default();
        assert!(exec_process(defaults(), &empty, None).is_err());
    }

    #[test]
    fn programs_that_cannot_run_get_dockers_codes() {
        let code = |m: &str| exec_error(onggi_runtime::Error::Init(m.into())).exit_code();
        assert_eq!(
            code("exec: \"nope\": executable file not found in $PATH"),
            127
        );
        assert_eq!(code("exec: \"/x\": stat: no such file or directory"), 127);
        assert_eq!(code("exec: \"/etc\": EACCES: Permission denied"), 126);
        assert_eq!(code("join the container's pid namespace: EPERM"), 125);
    }
}
