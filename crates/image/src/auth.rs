//! Registry credentials and challenges.
//!
//! Credentials are read from two files in Docker's `config.json` format,
//! `{"auths":{"HOST":{"auth":"base64(user:password)"}}}`: first onggi's own
//! `<store root>/auth.json` (written by `login`, mode 0600), then Docker's
//! `config.json` in the directory `$DOCKER_CONFIG` or `~/.docker`. Docker writes
//! Docker Hub's key as `https://index.docker.io/v1/` and some tools write
//! `https://HOST/`; keys are compared without scheme and path. Credential helpers
//! (`credsStore`, `credHelpers`) are not run.
//!
//! A challenge is the `WWW-Authenticate` header of a 401 answer (RFC 7235 §4.1):
//! `Basic realm="..."`, or `Bearer realm="URL",service="...",scope="..."`, the
//! token-server flow of the distribution spec.

use std::collections::BTreeMap;
use std::fmt;
use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use serde::{Deserialize, Serialize};

use crate::error::{Context, Error, Result};
use crate::reference::DEFAULT_REGISTRY;

/// A user name and password for one registry.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    /// The user name.
    pub user: String,
    /// The password (or access token).
    pub password: String,
}

impl fmt::Debug for Credentials {
    /// The user only: a password is never printed.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Credentials({:?}, password hidden)", self.user)
    }
}

impl Credentials {
    /// The `Authorization` header value for basic auth (RFC 7617).
    pub fn basic_header(&self) -> String {
        format!("Basic {}", self.encoded())
    }

    /// `base64(user:password)`, as config.json stores it.
    fn encoded(&self) -> String {
        BASE64.encode(format!("{}:{}", self.user, self.password))
    }

    /// From config.json's `auth` field.
    fn decode(auth: &str) -> Option<Credentials> {
        let raw = BASE64.decode(auth.trim()).ok()?;
        let text = String::from_utf8(raw).ok()?;
        let (user, password) = text.split_once(':')?;
        Some(Credentials {
            user: user.to_owned(),
            password: password.to_owned(),
        })
    }
}

/// config.json / auth.json; other keys (Docker's `credsStore`...) are kept as they are.
#[derive(Debug, Default, Serialize, Deserialize)]
struct AuthFile {
    #[serde(default)]
    auths: BTreeMap<String, AuthEntry>,
    #[serde(flatten)]
    other: BTreeMap<String, serde_json::Value>,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct AuthEntry {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    auth: Option<String>,
    #[serde(flatten)]
    other: BTreeMap<String, serde_json::Value>,
}

/// Docker's configuration directory: `$DOCKER_CONFIG`, else `$HOME/.docker`.
pub fn docker_config_dir() -> Option<PathBuf> {
    if let Some(d) = std::env::var_os("DOCKER_CONFIG").filter(|d| !d.is_empty()) {
        return Some(PathBuf::from(d));
    }
    std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .map(|h| Path::new(&h).join(".docker"))
}

/// onggi's credentials file in the store at `store_root`.
pub fn auth_file(store_root: &Path) -> PathBuf {
    store_root.join("auth.json")
}

/// A config.json key as a registry host: `https://index.docker.io/v1/` → `docker.io`.
fn host_of_key(key: &str) -> &str {
    let k = key
        .strip_prefix("https://")
        .or_else(|| key.strip_prefix("http://"))
        .unwrap_or(key);
    let k = k.split('/').next().unwrap_or(k);
    match k {
        "index.docker.io" | "registry-1.docker.io" => DEFAULT_REGISTRY,
        other => other,
    }
}

/// Read an auth file; a missing one is empty.
fn read_file(path: &Path) -> Result<AuthFile> {
    match fs::read(path) {
        Ok(data) => serde_json::from_slice(&data).map_err(|e| Error::Format {
            file: path.display().to_string(),
            reason: e.to_string(),
        }),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(AuthFile::default()),
        Err(e) => Err(e).step(|| format!("read {}", path.display())),
    }
}

/// The credentials for `registry`: onggi's auth.json first, then Docker's
/// config.json in `docker_config` (when given).
pub fn lookup(
    store_root: &Path,
    docker_config: Option<&Path>,
    registry: &str,
) -> Result<Option<Credentials>> {
    let files = [
        Some(auth_file(store_root)),
        docker_config.map(|d| d.join("config.json")),
    ];
    for path in files.iter().flatten() {
        let file = read_file(path)?;
        let hit = file
            .auths
            .iter()
            .filter(|(k, _)| host_of_key(k) == registry)
            .find_map(|(_, e)| e.auth.as_deref().and_then(Credentials::decode));
        if hit.is_some() {
            return Ok(hit);
        }
    }
    Ok(None)
}

/// Save `creds` for `registry` in onggi's auth.json (0600, replaced atomically).
pub fn save(store_root: &Path, registry: &str, creds: &Credentials) -> Result<()> {
    let path = auth_file(store_root);
    let mut file = read_file(&path)?;
    file.auths.retain(|k, _| host_of_key(k) != registry);
    file.auths.insert(
        registry.to_owned(),
        AuthEntry {
            auth: Some(creds.encoded()),
            other: BTreeMap::new(),
        },
    );
    let data = serde_json::to_vec_pretty(&file).expect("auth file serializes");
    let tmp = path.with_extension("json.tmp");
    let mut out = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .step(|| format!("create {}", tmp.display()))?;
    out.write_all(&data)
        .and_then(|()| out.sync_all())
        .step(|| format!("write {}", tmp.display()))?;
    fs::rename(&tmp, &path).step(|| format!("rename {} to {}", tmp.display(), path.display()))
}

/// How a registry asks to be authenticated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    /// User and password on every request.
    Basic,
    /// A token from the realm's token server.
    Bearer,
}

/// A parsed `WWW-Authenticate` challenge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Challenge {
    /// Basic or Bearer.
    pub scheme: Scheme,
    /// For Bearer, the token server's URL.
    pub realm: String,
    /// The `service` parameter, if any.
    pub service: Option<String>,
    /// The `scope` parameter, if any.
    pub scope: Option<String>,
}

impl Challenge {
    /// Parse the first challenge of a `WWW-Authenticate` header; `None` for a
    /// scheme other than Basic or Bearer, or a Bearer without a realm.
    pub fn parse(header: &str) -> Option<Challenge> {
        let header = header.trim();
        let (scheme, rest) = header.split_once(' ').unwrap_or((header, ""));
        let scheme = match scheme.to_ascii_lowercase().as_str() {
            "basic" => Scheme::Basic,
            "bearer" => Scheme::Bearer,
            _ => return None,
        };
        let params = parse_params(rest);
        let get = |k: &str| params.get(k).cloned();
        let realm = get("realm").unwrap_or_default();
        if scheme == Scheme::Bearer && realm.is_empty() {
            return None;
        }
        Some(Challenge {
            scheme,
            realm,
            service: get("service"),
            scope: get("scope"),
        })
    }
}

/// `k1="v1", k2=v2` → a map with lowercase keys; quoted values may hold commas
/// and backslash escapes.
fn parse_params(s: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut chars = s.chars().peekable();
    loop {
        while chars.next_if(|c| *c == ',' || c.is_whitespace()).is_some() {}
        let key: String =
            std::iter::from_fn(|| chars.next_if(|c| *c != '=' && *c != ',')).collect();
        if key.is_empty() || chars.next() != Some('=') {
            return out;
        }
        let mut value = String::new();
        if chars.next_if_eq(&'"').is_some() {
            while let Some(c) = chars.next() {
                match c {
                    '"' => break,
                    '\\' => value.extend(chars.next()),
                    c => value.push(c),
                }
            }
        } else {
            value.extend(std::iter::from_fn(|| chars.next_if(|c| *c != ',')));
        }
        out.insert(key.trim().to_ascii_lowercase(), value.trim().to_owned());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_challenges_parse_with_quoted_commas() {
        let c = Challenge::parse(
            r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:team/app:pull,push""#,
        )
        .unwrap();
        assert_eq!(c.scheme, Scheme::Bearer);
        assert_eq!(c.realm, "https://auth.docker.io/token");
        assert_eq!(c.service.as_deref(), Some("registry.docker.io"));
        assert_eq!(c.scope.as_deref(), Some("repository:team/app:pull,push"));
        let c = Challenge::parse(r#"bearer  realm=http://127.0.0.1:1/t , Service="a\"b""#).unwrap();
        assert_eq!(
            (c.realm.as_str(), c.service.as_deref(), c.scope),
            ("http://127.0.0.1:1/t", Some("a\"b"), None)
        );
    }

    #[test]
    fn basic_and_unknown_challenges() {
        let c = Challenge::parse(r#"Basic realm="Registry Realm""#).unwrap();
        assert_eq!(
            (c.scheme, c.realm.as_str()),
            (Scheme::Basic, "Registry Realm")
        );
        assert_eq!(Challenge::parse("Negotiate abc"), None);
        assert_eq!(Challenge::parse("Bearer service=x"), None, "no realm");
        assert_eq!(Challenge::parse(""), None);
    }

    #[test]
    fn credentials_are_found_in_onggi_then_docker_files() {
        let store = tempfile::tempdir().unwrap();
        let docker = tempfile::tempdir().unwrap();
        let alice = Credentials {
            user: "alice".into(),
            password: "s3:cret".into(),
        };
        let hub = format!(
            r#"{{"auths":{{"https://index.docker.io/v1/":{{"auth":"{}"}}}},"credsStore":"x"}}"#,
            alice.encoded()
        );
        fs::write(docker.path().join("config.json"), hub).unwrap();
        let found = lookup(store.path(), Some(docker.path()), "docker.io").unwrap();
        assert_eq!(
            found.as_ref(),
            Some(&alice),
            "Docker Hub's key, a ':' in the password"
        );
        assert_eq!(lookup(store.path(), None, "docker.io").unwrap(), None);
        let bob = Credentials {
            user: "bob".into(),
            password: "pw".into(),
        };
        save(store.path(), "docker.io", &bob).unwrap();
        save(store.path(), "127.0.0.1:5000", &alice).unwrap();
        let found = lookup(store.path(), Some(docker.path()), "docker.io").unwrap();
        assert_eq!(found, Some(bob), "onggi's file first");
        let mode = fs::metadata(auth_file(store.path())).unwrap().permissions();
        assert_eq!(
            std::os::unix::fs::PermissionsExt::mode(&mode) & 0o777,
            0o600
        );
        assert!(!format!("{alice:?}").contains("s3"), "no password in Debug");
    }
}
