//! Linux security modules: the AppArmor profile and SELinux labels of a container.
//!
//! Where the LSM is present, the labels are applied the way runc applies them: the
//! process label is written to `/proc/self/attr/.../exec` just before execve (the
//! kernel switches at the exec), the SELinux label is also the key-creation label for
//! the session keyring, and `linux.mountLabel` becomes a `context=` option on the
//! filesystems the runtime mounts (tmpfs, devpts, mqueue). Where it is absent, runc
//! fails (writing the attribute gives EINVAL, or its validation refuses an SELinux
//! label); onggi refuses the same configurations at create, before anything is made,
//! with the field named.

use std::path::Path;

use crate::error::{invalid, Context, Result};
use crate::plan::ProcessPlan;

/// The LSMs this kernel has enabled.
#[derive(Debug, Clone, Copy)]
pub struct Lsms {
    /// AppArmor is enabled.
    pub apparmor: bool,
    /// SELinux is enabled (selinuxfs is mounted).
    pub selinux: bool,
}

impl Lsms {
    /// Look at the host: AppArmor's module parameter, SELinux's filesystem.
    pub fn detect() -> Lsms {
        let apparmor = std::fs::read("/sys/module/apparmor/parameters/enabled")
            .is_ok_and(|v| v.first() == Some(&b'Y'));
        let selinux = Path::new("/sys/fs/selinux/enforce").exists();
        Lsms { apparmor, selinux }
    }

    /// Refuse labels for an LSM this host does not have; `field` prefixes the
    /// process's fields. Looks at the host only when a label is set.
    pub fn check_host(p: &ProcessPlan, mount_label: Option<&str>, field: &str) -> Result<()> {
        if p.apparmor_profile.is_none() && p.selinux_label.is_none() && mount_label.is_none() {
            return Ok(());
        }
        Lsms::detect().check(p, mount_label, field)
    }

    /// Refuse labels for an LSM missing from `self`.
    pub fn check(&self, p: &ProcessPlan, mount_label: Option<&str>, field: &str) -> Result<()> {
        if p.apparmor_profile.is_some() && !self.apparmor {
            return Err(invalid(
                format!("{field}.apparmorProfile"),
                "AppArmor is not enabled on this host",
            ));
        }
        if p.selinux_label.is_some() && !self.selinux {
            return Err(invalid(
                format!("{field}.selinuxLabel"),
                "SELinux is not enabled on this host",
            ));
        }
        if mount_label.is_some() && !self.selinux {
            return Err(invalid(
                "linux.mountLabel",
                "SELinux is not enabled on this host",
            ));
        }
        Ok(())
    }
}

/// Make `label` the SELinux label of keys this process creates (its session
/// keyring, joined next).
pub fn set_keycreate_label(p: &ProcessPlan) -> Result<()> {
    match &p.selinux_label {
        Some(label) => write_attr("/proc/self/attr/keycreate", label),
        None => Ok(()),
    }
}

/// Label the process for its next execve: the AppArmor profile and the SELinux
/// process label, each where set.
pub fn set_exec_labels(p: &ProcessPlan) -> Result<()> {
    if let Some(profile) = &p.apparmor_profile {
        // Since Linux 5.8 each LSM has its own directory; older kernels only have
        // the shared file.
        let path = if Path::new("/proc/self/attr/apparmor/exec").exists() {
            "/proc/self/attr/apparmor/exec"
        } else {
            "/proc/self/attr/exec"
        };
        write_attr(path, &format!("exec {profile}"))?;
    }
    if let Some(label) = &p.selinux_label {
        write_attr("/proc/self/attr/exec", label)?;
    }
    Ok(())
}

fn write_attr(path: &str, value: &str) -> Result<()> {
    std::fs::write(path, value).step(|| format!("write {value:?} to {path}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_for_an_absent_lsm_are_refused_naming_the_field() {
        let none = Lsms {
            apparmor: false,
            selinux: false,
        };
        let raw = serde_json::from_str(r#"{"args":["true"],"cwd":"/","user":{"uid":0,"gid":0}}"#);
        let mut p = crate::plan::process_plan(&raw.unwrap()).unwrap();
        assert!(none.check(&p, None, "process").is_ok());
        p.apparmor_profile = Some("docker-default".into());
        let e = none.check(&p, None, "process").unwrap_err().to_string();
        assert!(
            e.contains("process.apparmorProfile") && e.contains("AppArmor"),
            "{e}"
        );
        p.apparmor_profile = None;
        p.selinux_label = Some("system_u:system_r:container_t:s0".into());
        let e = none.check(&p, None, "process").unwrap_err().to_string();
        assert!(e.contains("process.selinuxLabel"), "{e}");
        p.selinux_label = None;
        let e = none
            .check(&p, Some("x"), "process")
            .unwrap_err()
            .to_string();
        assert!(e.contains("linux.mountLabel"), "{e}");
        let both = Lsms {
            apparmor: true,
            selinux: true,
        };
        p.apparmor_profile = Some("docker-default".into());
        assert!(both.check(&p, Some("x"), "process").is_ok());
    }
}
