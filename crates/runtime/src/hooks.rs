//! OCI hooks: run a program with the container's state on its stdin, bounded by its
//! timeout. Hooks run in whatever namespaces the caller is in: the runtime's for
//! createRuntime/prestart/poststart/poststop, the container's for
//! createContainer/startContainer.

use std::io::Write;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use oci_spec::runtime::Hook;

use crate::error::{Error, Result};

/// Run `hooks` in order, each with `state` (the spec's state JSON) on stdin. The first
/// failure stops the list and is returned.
pub fn run_all(kind: &'static str, hooks: &[Hook], state: &[u8]) -> Result<()> {
    for h in hooks {
        run(kind, h, state)?;
    }
    Ok(())
}

/// Run `hooks` in order; failures are reported on stderr and the rest still run
/// (the spec's rule for poststart and poststop).
pub fn run_all_warn(kind: &'static str, hooks: &[Hook], state: &[u8]) {
    for h in hooks {
        if let Err(e) = run(kind, h, state) {
            eprintln!("warning: {e}");
        }
    }
}

fn run(kind: &'static str, h: &Hook, state: &[u8]) -> Result<()> {
    let fail = |reason: String| Error::Hook {
        kind,
        path: h.path().clone(),
        reason,
    };
    let mut cmd = Command::new(h.path());
    let args = h.args().clone().unwrap_or_default();
    if let Some((arg0, rest)) = args.split_first() {
        cmd.arg0(arg0).args(rest);
    }
    cmd.env_clear();
    for kv in h.env().iter().flatten() {
        if let Some((k, v)) = kv.split_once('=') {
            cmd.env(k, v);
        }
    }
    cmd.stdin(Stdio::piped());
    let mut child = cmd.spawn().map_err(|e| fail(format!("spawn: {e}")))?;
    if let Some(mut stdin) = child.stdin.take() {
        // A hook that exits without reading its stdin gives EPIPE: not our failure.
        match stdin.write_all(state) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {}
            Err(e) => return Err(fail(format!("write state to stdin: {e}"))),
        }
    }
    let deadline = h
        .timeout()
        .map(|t| Instant::now() + Duration::from_secs(t as u64));
    let mut nap = Duration::from_micros(200);
    loop {
        match child.try_wait() {
            Ok(Some(st)) if st.success() => return Ok(()),
            Ok(Some(st)) => return Err(fail(format!("exited with {st}"))),
            Ok(None) => {}
            Err(e) => return Err(fail(format!("wait: {e}"))),
        }
        if deadline.is_some_and(|d| Instant::now() >= d) {
            let _ = child.kill();
            let _ = child.wait();
            return Err(fail(format!(
                "timed out after {} s",
                h.timeout().unwrap_or(0)
            )));
        }
        std::thread::sleep(nap);
        nap = (nap * 2).min(Duration::from_millis(20));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hook(json: &str) -> Hook {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn state_reaches_stdin_and_failures_name_the_hook() {
        let t = tempfile::tempdir().unwrap();
        let out = t.path().join("out");
        let h = hook(&format!(
            r#"{{"path":"/bin/sh","args":["sh","-c","cat > {} && test \"$X\" = y"],"env":["X=y"]}}"#,
            out.display()
        ));
        run_all("poststart", &[h], b"{\"id\":\"c\"}").unwrap();
        assert_eq!(std::fs::read_to_string(&out).unwrap(), "{\"id\":\"c\"}");
        let bad = hook(r#"{"path":"/bin/sh","args":["sh","-c","exit 3"]}"#);
        let e = run_all("createRuntime", &[bad], b"{}")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("createRuntime hook /bin/sh") && e.contains('3'),
            "{e}"
        );
    }

    #[test]
    fn timeout_kills_the_hook() {
        let slow = hook(r#"{"path":"/bin/sleep","args":["sleep","10"],"timeout":1}"#);
        let t0 = Instant::now();
        let e = run_all("prestart", &[slow], b"{}").unwrap_err().to_string();
        assert!(e.contains("timed out"), "{e}");
        assert!(t0.elapsed() < Duration::from_secs(5));
    }
}
