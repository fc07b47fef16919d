//! Parsing a profile from JSON, with errors that name the field.
//!
//! oci-spec's enums reject an unknown action with serde's message (line and column,
//! no field). [`check_json`] first walks the fields that hold enum values, so the user
//! reads `linux.seccomp.syscalls[3].action: unknown action "SCMP_ACT_FOO"` instead.

use oci_spec::runtime::{
    Arch, LinuxSeccomp, LinuxSeccompAction, LinuxSeccompFilterFlag, LinuxSeccompOperator,
};
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::{Error, ROOT};

/// Parse a `linux.seccomp` object (or a standalone profile such as podman's
/// `seccomp.json`; fields that OCI does not define are ignored).
pub fn parse(json: &[u8]) -> Result<LinuxSeccomp, Error> {
    let value: Value = serde_json::from_slice(json).map_err(|source| Error::Parse {
        field: ROOT.to_owned(),
        source,
    })?;
    check_json(&value)?;
    serde_json::from_value(value).map_err(|source| Error::Parse {
        field: ROOT.to_owned(),
        source,
    })
}

/// Check that every action, operator, architecture and flag of a `linux.seccomp`
/// JSON object is one the OCI spec defines; the error names the first field that is not.
pub fn check_json(seccomp: &Value) -> Result<(), Error> {
    check::<LinuxSeccompAction>(
        seccomp.get("defaultAction"),
        &format!("{ROOT}.defaultAction"),
        "action",
    )?;
    for (i, arch) in items(seccomp, "architectures") {
        check::<Arch>(
            Some(arch),
            &format!("{ROOT}.architectures[{i}]"),
            "architecture",
        )?;
    }
    for (i, flag) in items(seccomp, "flags") {
        check::<LinuxSeccompFilterFlag>(Some(flag), &format!("{ROOT}.flags[{i}]"), "flag")?;
    }
    for (i, rule) in items(seccomp, "syscalls") {
        let field = format!("{ROOT}.syscalls[{i}]");
        check::<LinuxSeccompAction>(rule.get("action"), &format!("{field}.action"), "action")?;
        for (j, arg) in items(rule, "args") {
            check::<LinuxSeccompOperator>(
                arg.get("op"),
                &format!("{field}.args[{j}].op"),
                "operator",
            )?;
        }
    }
    Ok(())
}

/// The elements of the array `obj[key]`, with their indices; none if it is absent or
/// not an array (serde reports that one later).
fn items<'a>(obj: &'a Value, key: &str) -> impl Iterator<Item = (usize, &'a Value)> {
    obj.get(key)
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .enumerate()
}

/// `value` deserializes as a `T` (a missing field is serde's to report).
fn check<T: DeserializeOwned>(
    value: Option<&Value>,
    field: &str,
    kind: &'static str,
) -> Result<(), Error> {
    match value {
        Some(v) if serde_json::from_value::<T>(v.clone()).is_err() => Err(Error::Unknown {
            field: field.to_owned(),
            kind,
            value: v.to_string(),
        }),
        _ => Ok(()),
    }
}

/// A profile in the Docker / containers-common format (moby's default.json,
/// `/usr/share/containers/seccomp.json`) resolved for one container, as Docker and
/// podman resolve it: its `archMap` gives the architectures for `arch` (Go's name:
/// `amd64`), and each syscall rule is kept only when the container has every
/// capability of its `includes.caps` and none of its `excludes.caps`, and `arch`
/// matches its `includes.arches`/`excludes.arches`. An OCI profile (no such
/// fields) comes out as [`parse`] reads it.
pub fn resolve(json: &[u8], caps: &[String], arch: &str) -> Result<LinuxSeccomp, Error> {
    let mut v: Value = serde_json::from_slice(json).map_err(|source| Error::Parse {
        field: ROOT.to_owned(),
        source,
    })?;
    let scmp_arch = match arch {
        "amd64" => "SCMP_ARCH_X86_64",
        "arm64" => "SCMP_ARCH_AARCH64",
        "386" => "SCMP_ARCH_X86",
        "ppc64le" => "SCMP_ARCH_PPC64LE",
        "s390x" => "SCMP_ARCH_S390X",
        other => other,
    };
    if let Some(map) = v.get("archMap").and_then(Value::as_array).cloned() {
        let archs: Vec<Value> = map
            .iter()
            .filter(|m| m["architecture"] == scmp_arch)
            .flat_map(|m| {
                let mut a = vec![m["architecture"].clone()];
                a.extend(
                    m["subArchitectures"]
                        .as_array()
                        .cloned()
                        .unwrap_or_default(),
                );
                a
            })
            .collect();
        v["architectures"] = Value::Array(archs);
    }
    let has = |c: &Value| c.as_str().is_some_and(|c| caps.iter().any(|x| x == c));
    let list = |rule: &Value, side: &str, key: &str| -> Vec<Value> {
        rule.get(side)
            .and_then(|s| s.get(key))
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default()
    };
    if let Some(rules) = v.get_mut("syscalls").and_then(Value::as_array_mut) {
        rules.retain(|r| {
            let inc_caps = list(r, "includes", "caps");
            let inc_arch = list(r, "includes", "arches");
            let exc_caps = list(r, "excludes", "caps");
            let exc_arch = list(r, "excludes", "arches");
            inc_caps.iter().all(has)
                && (inc_arch.is_empty() || inc_arch.iter().any(|a| a == arch))
                && !exc_caps.iter().any(has)
                && !exc_arch.iter().any(|a| a == arch)
        });
        for r in rules.iter_mut() {
            if let Some(o) = r.as_object_mut() {
                o.remove("includes");
                o.remove("excludes");
                o.remove("comment");
            }
        }
    }
    for k in ["archMap", "defaultErrno"] {
        v.as_object_mut().map(|o| o.remove(k));
    }
    check_json(&v)?;
    serde_json::from_value(v).map_err(|source| Error::Parse {
        field: ROOT.to_owned(),
        source,
    })
}
