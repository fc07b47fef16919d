//! An OCI bundle for an image: runc's default config.json with the image config's
//! command, environment, working directory and user.

use std::path::Path;

use oci_spec::image::ImageConfiguration;
use serde_json::{json, Value};

use crate::error::{Error, Result};
use crate::store::{Image, Store};

/// The PATH a container gets when its image sets none (Docker's).
pub const DEFAULT_PATH: &str = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// The image's config document.
pub fn image_config(store: &Store, image: &Image) -> Result<ImageConfiguration> {
    let data = store.read_blob(&image.id)?;
    serde_json::from_slice(&data).map_err(|e| Error::Format {
        file: format!("config of image {}", image.id),
        reason: e.to_string(),
    })
}

/// The config.json for a container of `image` whose root filesystem is `rootfs`
/// (a path relative to the bundle, or absolute), running `args` (the image's `Cmd`
/// when empty) after the image's `Entrypoint`, as `docker run IMAGE ARGS` does.
pub fn config_json(config: &ImageConfiguration, rootfs: &Path, args: &[String]) -> Result<Value> {
    let c = config.config().clone().unwrap_or_default();
    let mut argv: Vec<String> = c.entrypoint().clone().unwrap_or_default();
    if args.is_empty() {
        argv.extend(c.cmd().clone().unwrap_or_default());
    } else {
        argv.extend(args.iter().cloned());
    }
    if argv.is_empty() {
        return Err(Error::Format {
            file: "image config".into(),
            reason: "it has no Cmd or Entrypoint: give a command to run".into(),
        });
    }
    let mut env: Vec<String> = c.env().clone().unwrap_or_default();
    if !env.iter().any(|e| e.starts_with("PATH=")) {
        env.insert(0, DEFAULT_PATH.to_owned());
    }
    let cwd = c
        .working_dir()
        .clone()
        .filter(|w| w.starts_with('/'))
        .unwrap_or_else(|| "/".into());
    let user = c.user().as_deref().unwrap_or("");
    let (uid, gid) = user_ids(user, rootfs)?;
    let mut spec = onggi_runtime::default_spec::default_spec();
    spec["root"] = json!({ "path": rootfs, "readonly": false });
    spec["process"]["args"] = json!(argv);
    spec["process"]["env"] = json!(env);
    spec["process"]["cwd"] = json!(cwd);
    spec["process"]["terminal"] = json!(false);
    spec["process"]["user"] = process_user(uid, gid, &additional_gids(user, rootfs));
    Ok(spec)
}

/// `USER` as the image gives it (`1000`, `1000:1000`, `app`, `app:staff`), with
/// names looked up in the root filesystem's /etc/passwd and /etc/group.
pub fn user_ids(user: &str, rootfs: &Path) -> Result<(u32, u32)> {
    if user.is_empty() {
        return Ok((0, 0));
    }
    let (u, g) = match user.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (user, None),
    };
    // An entry whose name (or, for a number, whose id) is `key`: (id, primary group).
    let lookup = |file: &str, key: &str| -> Option<(u32, u32)> {
        let text = std::fs::read_to_string(rootfs.join(file)).ok()?;
        text.lines().find_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            if f.first() != Some(&key) && f.get(2) != Some(&key) {
                return None;
            }
            let id = f.get(2)?.parse().ok()?;
            let group = f.get(3).and_then(|g| g.parse().ok()).unwrap_or(0);
            Some((id, group))
        })
    };
    let unknown = |what: &str| Error::Format {
        file: "image config".into(),
        reason: format!("User {user:?}: no {what} in the image's /etc/passwd or /etc/group"),
    };
    let (uid, primary) = match u.parse::<u32>() {
        Ok(n) => (n, lookup("etc/passwd", u).map_or(0, |(_, g)| g)),
        Err(_) => lookup("etc/passwd", u).ok_or_else(|| unknown(u))?,
    };
    let gid = match g {
        None => primary,
        Some(g) => match g.parse::<u32>() {
            Ok(n) => n,
            Err(_) => lookup("etc/group", g)
                .map(|(id, _)| id)
                .ok_or_else(|| unknown(g))?,
        },
    };
    Ok((uid, gid))
}

/// The supplementary groups of `user` (as [`user_ids`] takes it): the groups of
/// /etc/group that list the user's name as a member, as Docker and runc give them,
/// unless the user is given with an explicit group. Empty when nothing is found.
pub fn additional_gids(user: &str, rootfs: &Path) -> Vec<u32> {
    if user.is_empty() || user.contains(':') {
        return Vec::new();
    }
    let read = |f: &str| std::fs::read_to_string(rootfs.join(f)).unwrap_or_default();
    // A number names the user whose id it is.
    let passwd = read("etc/passwd");
    let name = passwd.lines().find_map(|l| {
        let f: Vec<&str> = l.split(':').collect();
        (f.first() == Some(&user) || f.get(2) == Some(&user)).then(|| f[0].to_owned())
    });
    let Some(name) = name else {
        return Vec::new();
    };
    let mut gids: Vec<u32> = read("etc/group")
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            let members = f.get(3)?;
            members
                .split(',')
                .any(|m| m.trim() == name)
                .then(|| f.get(2)?.parse().ok())?
        })
        .collect();
    gids.sort_unstable();
    gids.dedup();
    gids
}

/// `process.user` of a spec: ids, and `additionalGids` when there are any.
pub fn process_user(uid: u32, gid: u32, additional: &[u32]) -> Value {
    let mut u = json!({ "uid": uid, "gid": gid });
    if !additional.is_empty() {
        u["additionalGids"] = json!(additional);
    }
    u
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(c: Value) -> ImageConfiguration {
        serde_json::from_value(json!({"architecture": "amd64", "os": "linux", "config": c,
            "rootfs": {"type": "layers", "diff_ids": []}}))
        .unwrap()
    }

    #[test]
    fn command_env_cwd_and_user_come_from_the_image() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir(d.path().join("etc")).unwrap();
        std::fs::write(
            d.path().join("etc/passwd"),
            "root:x:0:0::/root:/bin/sh\napp:x:1000:1001::/:/bin/sh\n",
        )
        .unwrap();
        std::fs::write(
            d.path().join("etc/group"),
            "root:x:0:\nstaff:x:50:\nwheel:x:10:root,app\naudio:x:29:bob, app\n",
        )
        .unwrap();
        let c = config(
            json!({"Entrypoint": ["/bin/tini", "--"], "Cmd": ["httpd"], "Env": ["A=b"],
            "WorkingDir": "/srv", "User": "app:staff"}),
        );
        let s = config_json(&c, d.path(), &[]).unwrap();
        assert_eq!(s["process"]["args"], json!(["/bin/tini", "--", "httpd"]));
        assert_eq!(s["process"]["env"], json!([DEFAULT_PATH, "A=b"]));
        assert_eq!(
            (s["process"]["cwd"].clone(), s["process"]["user"].clone()),
            (json!("/srv"), json!({"uid": 1000, "gid": 50}))
        );
        let s = config_json(&c, d.path(), &["sh".into()]).unwrap();
        assert_eq!(s["process"]["args"], json!(["/bin/tini", "--", "sh"]));
        let s = config_json(
            &config(json!({"Cmd": ["sh"], "User": "1000"})),
            d.path(),
            &[],
        )
        .unwrap();
        // By number or by name, the user gets the groups that list it as a member
        // (an explicit group, as in "app:staff" above, gives none).
        assert_eq!(
            s["process"]["user"],
            json!({"uid": 1000, "gid": 1001, "additionalGids": [10, 29]})
        );
        assert_eq!(additional_gids("app", d.path()), [10, 29]);
        assert_eq!(additional_gids("root", d.path()), [10]);
        assert!(additional_gids("app:staff", d.path()).is_empty());
        assert!(additional_gids("4242", d.path()).is_empty());
        let e = config_json(&config(json!({})), d.path(), &[])
            .unwrap_err()
            .to_string();
        assert!(e.contains("no Cmd or Entrypoint"), "{e}");
        let e = config_json(
            &config(json!({"Cmd": ["sh"], "User": "nobody"})),
            d.path(),
            &[],
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("\"nobody\""), "{e}");
    }
}
