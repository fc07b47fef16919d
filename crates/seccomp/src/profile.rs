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
