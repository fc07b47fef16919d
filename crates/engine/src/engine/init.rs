//! `--init`: `onggi-init` as the container's PID 1, for programs that do not reap
//! the orphans the kernel hands to PID 1, nor expect to be PID 1 (which ignores
//! signals it has no handler for). Docker does the same with tini, bind-mounted at
//! `/sbin/docker-init`.
//!
//! The binary is installed next to `onggi`; it is bound read-only into the container
//! and put in front of the process's arguments: `onggi-init -- PROGRAM ARG...`. It
//! forwards signals to the program, reaps every child, and exits as the program did.

use std::path::Path;

use serde_json::{json, Value};

use crate::error::{Error, Result};

/// The init's name, beside `onggi`.
const BINARY: &str = "onggi-init";
/// Where the init appears in the container.
pub const IN_CONTAINER: &str = "/sbin/onggi-init";

/// With `init`, run `spec`'s process under `bin_dir/onggi-init`.
pub(crate) fn apply(mut spec: Value, init: bool, bin_dir: &Path) -> Result<Value> {
    if !init {
        return Ok(spec);
    }
    let host = bin_dir.join(BINARY);
    if !host.is_file() {
        return Err(Error::BadOption {
            flag: "--init".into(),
            reason: format!(
                "{} is missing (it is installed next to onggi)",
                host.display()
            ),
        });
    }
    let args = spec["process"]["args"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let mut with_init = vec![json!(IN_CONTAINER), json!("--")];
    with_init.extend(args);
    spec["process"]["args"] = json!(with_init);
    let mount = json!({
        "destination": IN_CONTAINER,
        "type": "bind",
        "source": host,
        "options": ["bind", "ro", "nosuid", "nodev"],
    });
    match spec["mounts"].as_array_mut() {
        Some(m) => m.push(mount),
        None => spec["mounts"] = json!([mount]),
    }
    Ok(spec)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_init_is_bound_read_only_and_runs_the_process() {
        let d = tempfile::tempdir().unwrap();
        let spec = json!({"process": {"args": ["sleep", "1"]}, "mounts": []});
        assert_eq!(apply(spec.clone(), false, d.path()).unwrap(), spec);
        let e = apply(spec.clone(), true, d.path()).unwrap_err().to_string();
        assert!(e.contains("--init") && e.contains("onggi-init"), "{e}");
        std::fs::write(d.path().join(BINARY), "").unwrap();
        let s = apply(spec, true, d.path()).unwrap();
        assert_eq!(
            s["process"]["args"],
            json!(["/sbin/onggi-init", "--", "sleep", "1"])
        );
        assert_eq!(s["mounts"][0]["destination"], IN_CONTAINER);
        assert_eq!(s["mounts"][0]["source"], json!(d.path().join(BINARY)));
        assert!(s["mounts"][0]["options"]
            .as_array()
            .unwrap()
            .contains(&json!("ro")));
    }
}
