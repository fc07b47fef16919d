//! Restart policies (`--restart`), Docker's, without a daemon.
//!
//! | policy | after the container's init exits, it is started again… |
//! | --- | --- |
//! | `no` (default) | never |
//! | `on-failure[:N]` | if the exit code is not 0, at most N times (no limit without N) |
//! | `always` | every time |
//! | `unless-stopped` | every time; Docker's difference (not restarted when its daemon starts, if stopped) is moot without a daemon |
//!
//! No policy restarts a run the user ended: `stop`, `rm`, and `kill` with SIGKILL or
//! SIGTERM mark the run (by its `started_at`) and its exit is left alone. The next
//! `start` is a new run, which the policy watches again (Docker: a manually stopped
//! container is not restarted until it is started again).
//!
//! # Who restarts
//! The container's monitor, once it has recorded the exit, executes
//! `onggi __exited ID` (same PID, single-threaded): [`Engine::exited`] records the
//! exit and says whether the policy wants a restart; [`Engine::restart_by_policy`]
//! waits out the back-off and starts the container under a new monitor.
//! A killed monitor runs no hook. The next command that looks at the container
//! (`ps`, `inspect`, `start`, `logs`…) finds the monitor dead, records the exit (137,
//! "its monitor died"), and runs that same hook in the background. So `always`
//! survives a killed monitor as soon as anything looks at the container; with no
//! daemon, nothing looks before that.
//!
//! Back-off: 100 ms before the first restart, doubled before each next one up to a
//! minute, and back to 100 ms after a run of 10 s or more (Docker's). A container
//! removed or stopped during the wait is not restarted.
//!
//! `restart_count` is the number of restarts since the user last started the
//! container; the basis resets at a user's `start`, the count itself at the first
//! exit after it (at once with `restart`).
//!
//! The policy's own state, `RUN/containers/<id>/restart.json` beside the exit file,
//! is read and written under the container's lock (`lock.rs`).

use std::fmt;
use std::fs;
use std::str::FromStr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use nix::sys::signal::Signal;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::Engine;
use crate::db::{Record, State};
use crate::error::{Context, Error, Result};

/// First wait before a restart.
const FIRST_DELAY: Duration = Duration::from_millis(100);
/// Longest wait before a restart.
const MAX_DELAY: Duration = Duration::from_secs(60);
/// A run at least this long was not a crash loop: the wait starts over.
const RESET_AFTER: Duration = Duration::from_secs(10);
/// How often a waiting restart looks whether the container was removed or stopped.
const WAIT_SLICE: Duration = Duration::from_millis(100);

/// `--restart`: what happens when the container's init exits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RestartPolicy {
    /// Never restart.
    #[default]
    No,
    /// Restart after a non-zero exit, at most `max_retries` times (`None`: no limit).
    OnFailure {
        /// The most restarts.
        max_retries: Option<u32>,
    },
    /// Always restart.
    Always,
    /// Always restart (Docker's difference is at daemon start; there is no daemon).
    UnlessStopped,
}

impl RestartPolicy {
    /// The policy stored with a container (`no` when none is).
    pub fn of(rec: &Record) -> RestartPolicy {
        rec.config["options"]["restart"]
            .as_str()
            .and_then(|s| s.parse().ok())
            .unwrap_or_default()
    }

    /// Whether a run that ended with `exit_code`, after `restarts` restarts by the
    /// policy, is started again.
    pub fn restarts_after(self, exit_code: i32, restarts: u32) -> bool {
        match self {
            RestartPolicy::No => false,
            RestartPolicy::OnFailure { max_retries } => {
                exit_code != 0 && max_retries.is_none_or(|m| restarts < m)
            }
            RestartPolicy::Always | RestartPolicy::UnlessStopped => true,
        }
    }
}

impl FromStr for RestartPolicy {
    type Err = Error;

    fn from_str(s: &str) -> Result<RestartPolicy> {
        let bad = |why: &str| Error::BadOption {
            flag: format!("--restart {s}"),
            reason: why.to_owned(),
        };
        let (name, max) = match s.split_once(':') {
            Some((n, m)) => (n, Some(m)),
            None => (s, None),
        };
        let policy = match name {
            "no" => RestartPolicy::No,
            "always" => RestartPolicy::Always,
            "unless-stopped" => RestartPolicy::UnlessStopped,
            "on-failure" => {
                let max_retries = match max {
                    None => None,
                    Some(m) => match m.parse::<u32>() {
                        // Docker: 0 is no limit.
                        Ok(0) => None,
                        Ok(n) => Some(n),
                        Err(_) => return Err(bad("the most retries is a number")),
                    },
                };
                return Ok(RestartPolicy::OnFailure { max_retries });
            }
            _ => return Err(bad("no, on-failure[:N], always or unless-stopped")),
        };
        match max {
            None => Ok(policy),
            Some(_) => Err(bad("only on-failure takes a number of retries")),
        }
    }
}

impl fmt::Display for RestartPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RestartPolicy::No => f.write_str("no"),
            RestartPolicy::OnFailure { max_retries: None } => f.write_str("on-failure"),
            RestartPolicy::OnFailure {
                max_retries: Some(n),
            } => write!(f, "on-failure:{n}"),
            RestartPolicy::Always => f.write_str("always"),
            RestartPolicy::UnlessStopped => f.write_str("unless-stopped"),
        }
    }
}

impl Serialize for RestartPolicy {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for RestartPolicy {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        String::deserialize(d)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

/// The wait before the next restart: `previous` is the wait before the run that
/// just ended (`None` when the user started that run), which lasted `ran`.
pub fn backoff(previous: Option<Duration>, ran: Duration) -> Duration {
    match previous {
        Some(p) if ran < RESET_AFTER => (p * 2).clamp(FIRST_DELAY, MAX_DELAY),
        _ => FIRST_DELAY,
    }
}

/// `RUN/containers/<id>/restart.json`.
#[derive(Debug, Default, Serialize, Deserialize)]
struct PolicyState {
    /// `started_at` of the run the user ended.
    stopped_run: Option<String>,
    /// `started_at` of the last run the policy started…
    policy_run: Option<String>,
    /// …when it started it (ms since the epoch)…
    policy_started_ms: u64,
    /// …and the wait before it (ms).
    delay_ms: u64,
}

/// A restart the policy wants.
#[derive(Debug, Clone, Copy)]
struct Due {
    /// Restarts by the policy before this one.
    restarts: u32,
    /// The wait before it.
    delay: Duration,
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

impl Engine {
    /// Whether the exited container `rec` is due to be started again by its policy.
    pub(crate) fn restart_due(&self, rec: &Record) -> Result<bool> {
        Ok(self.due(rec)?.is_some())
    }

    fn due(&self, rec: &Record) -> Result<Option<Due>> {
        let policy = RestartPolicy::of(rec);
        if rec.state != State::Exited || policy == RestartPolicy::No {
            return Ok(None);
        }
        let st = self.policy_state(&rec.id)?;
        let this_run = |run: &Option<String>| run.is_some() && *run == rec.started_at;
        if this_run(&st.stopped_run) {
            return Ok(None);
        }
        let by_policy = this_run(&st.policy_run);
        let restarts = if by_policy { rec.restart_count } else { 0 };
        if !policy.restarts_after(rec.exit_code.unwrap_or(0), restarts) {
            return Ok(None);
        }
        let ran = Duration::from_millis(now_ms().saturating_sub(st.policy_started_ms));
        let previous = by_policy.then(|| Duration::from_millis(st.delay_ms));
        Ok(Some(Due {
            restarts,
            delay: backoff(previous, ran),
        }))
    }

    /// Start the exited container `id` again if its restart policy wants it, after
    /// the back-off (what the exit hook does when [`Engine::exited`] says so). The
    /// new run's record, or `None` if the container was stopped, started, removed or
    /// changed meanwhile, or the policy wants no restart.
    pub fn restart_by_policy(&self, id: &str) -> Result<Option<Record>> {
        let rec = self.db.find(id)?;
        let Some(due) = self.due(&rec)? else {
            return Ok(None);
        };
        if !self.wait_unless_ended(&rec, due.delay)? {
            return Ok(None);
        }
        let _lock = self.lock(&rec.id)?;
        let now = self.db.find(&rec.id)?;
        if now.finished_at != rec.finished_at || self.due(&now)?.is_none() {
            return Ok(None);
        }
        let mut started = self.start(&rec.id)?;
        started.restart_count = due.restarts + 1;
        self.db.update(&started)?;
        self.update_policy_state(&rec.id, |st| {
            st.policy_run = started.started_at.clone();
            st.policy_started_ms = now_ms();
            st.delay_ms = due.delay.as_millis() as u64;
        })?;
        Ok(Some(started))
    }

    /// Sleep `delay`; false as soon as the container is removed or its run ended by
    /// the user.
    fn wait_unless_ended(&self, rec: &Record, delay: Duration) -> Result<bool> {
        let until = std::time::Instant::now() + delay;
        loop {
            if !self.dir(&rec.id).exists() {
                return Ok(false);
            }
            let st = self.policy_state(&rec.id)?;
            if st.stopped_run.is_some() && st.stopped_run == rec.started_at {
                return Ok(false);
            }
            let left = until.saturating_duration_since(std::time::Instant::now());
            if left.is_zero() {
                return Ok(true);
            }
            std::thread::sleep(left.min(WAIT_SLICE));
        }
    }

    /// `restart`: stop (SIGTERM, SIGKILL after `timeout`), then start; the restart
    /// count starts over.
    pub fn restart(&self, what: &str, timeout: Duration) -> Result<Record> {
        let rec = self.stop(what, timeout)?;
        let mut rec = self.start(&rec.id)?;
        if rec.restart_count != 0 {
            rec.restart_count = 0;
            self.db.update(&rec)?;
        }
        Ok(rec)
    }

    /// The user ends the container's current run (`stop`, `rm`, or `kill` with
    /// `signal`, which ends it only if it is SIGKILL or SIGTERM): the restart policy
    /// leaves that run's exit alone.
    pub(crate) fn ended_by_user(&self, id: &str, signal: Option<Signal>) -> Result<()> {
        if signal.is_some_and(|s| s != Signal::SIGKILL && s != Signal::SIGTERM) {
            return Ok(());
        }
        if RestartPolicy::of(&self.db.find(id)?) == RestartPolicy::No {
            return Ok(());
        }
        let _lock = match self.lock(id) {
            Err(Error::NoSuchContainer(_)) => return Ok(()), // nothing left to restart
            l => l?,
        };
        // The run current now: a restart may have begun since the caller looked.
        let rec = self.db.find(id)?;
        self.update_policy_state(id, |st| st.stopped_run = rec.started_at.clone())
    }

    /// A container whose monitor died ran no exit hook: run it now, in the
    /// background, if it has work (a restart policy, `--rm`). Its exit status is
    /// not awaited: the hook outlives a short-lived caller.
    pub(crate) fn run_exit_hook(&self, rec: &Record) {
        if rec.config["auto_remove"] != true && RestartPolicy::of(rec) == RestartPolicy::No {
            return;
        }
        use std::os::unix::process::CommandExt;
        let _ = std::process::Command::new(self.bin_dir.join("onggi"))
            .arg("--root")
            .arg(&self.roots.data)
            .arg("--run-root")
            .arg(&self.roots.run)
            .args(["__exited", &rec.id])
            // As the monitor runs it: no environment, no terminal, its own group.
            .env_clear()
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .process_group(0)
            .spawn();
    }

    fn policy_file(&self, id: &str) -> std::path::PathBuf {
        self.exit_file(id).with_file_name("restart.json")
    }

    fn policy_state(&self, id: &str) -> Result<PolicyState> {
        let path = self.policy_file(id);
        match fs::read(&path) {
            Ok(data) => Ok(serde_json::from_slice(&data).unwrap_or_default()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(PolicyState::default()),
            Err(e) => Err(e).step(|| format!("read {}", path.display())),
        }
    }

    /// Change the policy state (the caller holds the container's lock); written
    /// whole, then renamed over the old one.
    fn update_policy_state(&self, id: &str, change: impl FnOnce(&mut PolicyState)) -> Result<()> {
        let mut st = self.policy_state(id)?;
        change(&mut st);
        let path = self.policy_file(id);
        let dir = path.parent().expect("the file is in a directory");
        fs::create_dir_all(dir).step(|| format!("create {}", dir.display()))?;
        let tmp = path.with_extension("json.tmp");
        fs::write(&tmp, serde_json::to_vec(&st).expect("the state serializes"))
            .step(|| format!("write {}", tmp.display()))?;
        fs::rename(&tmp, &path).step(|| format!("rename {} to {}", tmp.display(), path.display()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policies_parse_print_and_refuse_what_docker_refuses() {
        for (s, p) in [
            ("no", RestartPolicy::No),
            ("always", RestartPolicy::Always),
            ("unless-stopped", RestartPolicy::UnlessStopped),
            ("on-failure", RestartPolicy::OnFailure { max_retries: None }),
            (
                "on-failure:3",
                RestartPolicy::OnFailure {
                    max_retries: Some(3),
                },
            ),
        ] {
            assert_eq!(s.parse::<RestartPolicy>().unwrap(), p);
            assert_eq!(p.to_string(), s);
            assert_eq!(serde_json::to_value(p).unwrap(), s);
            assert_eq!(
                serde_json::from_value::<RestartPolicy>(s.into()).unwrap(),
                p
            );
        }
        assert_eq!(
            "on-failure:0".parse::<RestartPolicy>().unwrap(),
            RestartPolicy::OnFailure { max_retries: None }
        );
        for bad in ["sometimes", "always:3", "on-failure:x", "on-failure:-1", ""] {
            let e = bad.parse::<RestartPolicy>().unwrap_err().to_string();
            assert!(e.contains("--restart"), "{bad}: {e}");
        }
    }

    #[test]
    fn each_policy_decides_on_the_exit_code_and_the_count() {
        let three = RestartPolicy::OnFailure {
            max_retries: Some(3),
        };
        assert!(!RestartPolicy::No.restarts_after(1, 0));
        assert!(!three.restarts_after(0, 0), "a clean exit is not a failure");
        assert!(three.restarts_after(1, 0) && three.restarts_after(137, 2));
        assert!(!three.restarts_after(1, 3), "at most three restarts");
        let unlimited = RestartPolicy::OnFailure { max_retries: None };
        assert!(unlimited.restarts_after(1, 1000));
        for p in [RestartPolicy::Always, RestartPolicy::UnlessStopped] {
            assert!(p.restarts_after(0, 1000) && p.restarts_after(1, 0));
        }
    }

    #[test]
    fn the_backoff_doubles_to_a_minute_and_starts_over_after_a_long_run() {
        let ms = Duration::from_millis;
        let short = ms(50);
        assert_eq!(backoff(None, short), ms(100), "after a user's start");
        assert_eq!(backoff(Some(ms(100)), short), ms(200));
        assert_eq!(backoff(Some(ms(200)), short), ms(400));
        assert_eq!(backoff(Some(ms(40_000)), short), MAX_DELAY);
        assert_eq!(backoff(Some(MAX_DELAY), short), MAX_DELAY);
        assert_eq!(backoff(Some(ms(6400)), Duration::from_secs(10)), ms(100));
    }
}
