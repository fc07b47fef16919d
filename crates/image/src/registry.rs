//! A client of the OCI distribution API: `GET /v2/`, `/v2/<name>/manifests/<ref>`
//! and `/v2/<name>/blobs/<digest>` (with `Range` to resume), and the 401 dance of
//! the distribution spec's token flow.
//!
//! HTTP is `ureq` with rustls: a blocking client (pull runs its own few worker
//! threads, no async runtime needed), pure Rust TLS (no OpenSSL to link), and
//! the system's CA roots through `rustls-platform-verifier` (`/etc/ssl/certs` on
//! Debian), as Docker trusts them. Plain HTTP is used for `localhost`, 127.0.0.0/8
//! and `::1`, as Docker does, and for registries the caller lists as insecure.
//!
//! Authentication: a request goes out with whatever `Authorization` last worked
//! (none at first). On 401 the `WWW-Authenticate` challenge says how: `Basic`
//! resends with the user's credentials; `Bearer` asks the realm for a token
//! (`?service=...&scope=...`, with the credentials as basic auth when there are
//! any, anonymous otherwise) and resends with it. A second 401 is the answer.
//! Redirects (blob downloads often go to a CDN) drop the `Authorization` header.

use std::net::IpAddr;
use std::sync::Mutex;
use std::time::Duration;

use ureq::http::Response;
use ureq::tls::{RootCerts, TlsConfig};
use ureq::Body;

use crate::auth::{Challenge, Credentials, Scheme};
use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::reference::DEFAULT_REGISTRY;

/// The media types of manifests and indexes a pull accepts.
pub const MANIFEST_TYPES: [&str; 4] = [
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.v2+json",
];

/// The largest manifest read (the distribution spec suggests 4 MiB).
const MANIFEST_LIMIT: u64 = 4 << 20;

/// Whether `host` (`name[:port]`) is spoken to over plain HTTP: loopback, as
/// Docker does, or listed in `insecure`.
pub fn is_insecure(host: &str, insecure: &[String]) -> bool {
    if insecure.iter().any(|h| h == host) {
        return true;
    }
    let name = match host.rsplit_once(':') {
        Some((n, port)) if port.bytes().all(|b| b.is_ascii_digit()) => n,
        _ => host,
    };
    let name = name.trim_start_matches('[').trim_end_matches(']');
    if name == "localhost" || insecure.iter().any(|h| h == name) {
        return true;
    }
    match name.parse::<IpAddr>() {
        Ok(IpAddr::V4(ip)) => ip.is_loopback(),
        Ok(IpAddr::V6(ip)) => ip.is_loopback(),
        Err(_) => false,
    }
}

/// A manifest as fetched.
#[derive(Debug)]
pub struct Fetched {
    /// The body, exactly as sent (its digest is the manifest's).
    pub bytes: Vec<u8>,
    /// The `Content-Type`, without parameters.
    pub media_type: String,
    /// The `Docker-Content-Digest` header, when sent and valid.
    pub digest: Option<Digest>,
}

/// A blob download under way.
pub struct BlobStream {
    /// The body.
    pub body: ureq::BodyReader<'static>,
    /// Where in the blob the body starts: the offset asked for when the
    /// registry honoured the range, else 0.
    pub offset: u64,
}

/// One registry, for one pull or login: the HTTP agent, the credentials, and the
/// `Authorization` header that last worked.
pub struct Registry {
    host: String,
    base: String,
    agent: ureq::Agent,
    creds: Option<Credentials>,
    authorization: Mutex<Option<String>>,
}

impl Registry {
    /// A client of `host` (as references name it); `insecure` means plain HTTP.
    pub fn new(host: &str, insecure: bool, creds: Option<Credentials>) -> Registry {
        // Docker Hub's API is not at the name references use.
        let api_host = if host == DEFAULT_REGISTRY {
            "registry-1.docker.io"
        } else {
            host
        };
        let scheme = if insecure { "http" } else { "https" };
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .tls_config(
                TlsConfig::builder()
                    .root_certs(RootCerts::PlatformVerifier)
                    .build(),
            )
            .timeout_connect(Some(Duration::from_secs(30)))
            .timeout_recv_response(Some(Duration::from_secs(60)))
            // A stalled download fails (and the next pull resumes it) rather than hangs.
            .timeout_per_read(Some(Duration::from_secs(60)))
            .accept_encoding("identity")
            .build()
            .into();
        Registry {
            host: host.to_owned(),
            base: format!("{scheme}://{api_host}"),
            agent,
            creds,
            authorization: Mutex::new(None),
        }
    }

    /// The registry's name, as references spell it.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// `GET /v2/`, authenticating when asked: whether the credentials (or
    /// anonymous access) are accepted.
    pub fn check(&self) -> Result<()> {
        self.get("/v2/", &[], "API version check (/v2/)", None)
            .map(|_| ())
    }

    /// The manifest `reference` (a tag or a digest) of `repo`.
    pub fn manifest(&self, repo: &str, reference: &str) -> Result<Fetched> {
        let sep = if reference.contains(':') { '@' } else { ':' };
        let object = format!("manifest {repo}{sep}{reference}");
        let accept = MANIFEST_TYPES.join(", ");
        let path = format!("/v2/{repo}/manifests/{reference}");
        let mut resp = self.get(&path, &[("Accept", &accept)], &object, Some(repo))?;
        let header = |name: &str| {
            resp.headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        let media_type = header("content-type")
            .map(|t| t.split(';').next().unwrap_or("").trim().to_owned())
            .unwrap_or_default();
        let digest = header("docker-content-digest").and_then(|d| d.parse().ok());
        let bytes = resp
            .body_mut()
            .with_config()
            .limit(MANIFEST_LIMIT)
            .read_to_vec()
            .map_err(|e| self.http_error(&format!("read {object}"), e))?;
        Ok(Fetched {
            bytes,
            media_type,
            digest,
        })
    }

    /// Blob `digest` of `repo`, from byte `from` on when the registry allows.
    pub fn blob(&self, repo: &str, digest: &Digest, from: u64) -> Result<BlobStream> {
        let object = format!("blob {repo}@{digest}");
        let path = format!("/v2/{repo}/blobs/{digest}");
        let range = format!("bytes={from}-");
        let headers: &[(&str, &str)] = if from > 0 { &[("Range", &range)] } else { &[] };
        let resp = self.get(&path, headers, &object, Some(repo))?;
        let resumed = resp.status().as_u16() == 206
            && resp
                .headers()
                .get("content-range")
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| v.starts_with(&format!("bytes {from}-")));
        Ok(BlobStream {
            body: resp.into_body().into_reader(),
            offset: if resumed { from } else { 0 },
        })
    }

    /// GET `path`, answering one 401 challenge; any status but 200/206 is an
    /// [`Error::Registry`] naming `object`.
    fn get(
        &self,
        path: &str,
        headers: &[(&str, &str)],
        object: &str,
        repo: Option<&str>,
    ) -> Result<Response<Body>> {
        let url = format!("{}{path}", self.base);
        let resp = self.send(&url, headers)?;
        if resp.status().as_u16() != 401 {
            return self.checked(resp, object);
        }
        let challenge = resp
            .headers()
            .get("www-authenticate")
            .and_then(|v| v.to_str().ok())
            .and_then(Challenge::parse);
        let Some(challenge) = challenge else {
            return self.checked(resp, object);
        };
        let authorization = match challenge.scheme {
            Scheme::Basic => match &self.creds {
                Some(c) => c.basic_header(),
                None => return Err(self.needs_login(object)),
            },
            Scheme::Bearer => format!("Bearer {}", self.token(&challenge, repo)?),
        };
        *self.authorization.lock().expect("auth lock") = Some(authorization);
        let resp = self.send(&url, headers)?;
        self.checked(resp, object)
    }

    /// One GET with the current `Authorization`.
    fn send(&self, url: &str, headers: &[(&str, &str)]) -> Result<Response<Body>> {
        let mut req = self.agent.get(url);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        if let Some(a) = self.authorization.lock().expect("auth lock").as_deref() {
            req = req.header("Authorization", a);
        }
        req.call()
            .map_err(|e| self.http_error(&format!("GET {url}"), e))
    }

    /// A token from the challenge's realm for `repository:REPO:pull` (or the
    /// challenge's own scope).
    fn token(&self, challenge: &Challenge, repo: Option<&str>) -> Result<String> {
        let mut query = Vec::new();
        if let Some(s) = &challenge.service {
            query.push(format!("service={}", encode(s)));
        }
        let scope = challenge
            .scope
            .clone()
            .or_else(|| repo.map(|r| format!("repository:{r}:pull")));
        if let Some(s) = scope {
            query.push(format!("scope={}", encode(&s)));
        }
        let sep = if challenge.realm.contains('?') {
            '&'
        } else {
            '?'
        };
        let url = format!("{}{sep}{}", challenge.realm, query.join("&"));
        let mut req = self.agent.get(&url);
        if let Some(c) = &self.creds {
            req = req.header("Authorization", c.basic_header());
        }
        let object = format!("token from {}", challenge.realm);
        let resp = req
            .call()
            .map_err(|e| self.http_error(&format!("GET {url}"), e))?;
        if resp.status().as_u16() == 401 && self.creds.is_none() {
            return Err(self.needs_login(&object));
        }
        let mut resp = self.checked(resp, &object)?;
        let body = resp
            .body_mut()
            .with_config()
            .limit(1 << 20)
            .read_to_vec()
            .map_err(|e| self.http_error(&format!("read {object}"), e))?;
        let answer: TokenAnswer = serde_json::from_slice(&body).map_err(|e| Error::Format {
            file: object.clone(),
            reason: e.to_string(),
        })?;
        answer
            .token
            .or(answer.access_token)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| Error::Format {
                file: object,
                reason: "no token in the answer".into(),
            })
    }

    /// `resp` when its status is 200 or 206, else the registry's error.
    fn checked(&self, mut resp: Response<Body>, object: &str) -> Result<Response<Body>> {
        let status = resp.status();
        if status.as_u16() == 200 || status.as_u16() == 206 {
            return Ok(resp);
        }
        let body = resp
            .body_mut()
            .with_config()
            .limit(64 << 10)
            .read_to_string()
            .unwrap_or_default();
        let mut reason = registry_message(&body)
            .unwrap_or_else(|| status.canonical_reason().unwrap_or("").to_owned());
        if status.as_u16() == 401 {
            reason = match &self.creds {
                Some(c) => format!("{reason} (credentials of user {:?} refused)", c.user),
                None => format!("{reason} (no credentials for {}: log in first)", self.host),
            };
        }
        Err(Error::Registry {
            registry: self.host.clone(),
            object: object.to_owned(),
            status: status.as_u16(),
            reason,
        })
    }

    fn needs_login(&self, object: &str) -> Error {
        Error::Registry {
            registry: self.host.clone(),
            object: object.to_owned(),
            status: 401,
            reason: format!(
                "authentication required (no credentials for {}: log in first)",
                self.host
            ),
        }
    }

    fn http_error(&self, step: &str, e: ureq::Error) -> Error {
        Error::Http {
            step: format!("{}: {step}", self.host),
            source: Box::new(e),
        }
    }
}

/// A token server's answer (Docker's `token`, OAuth2's `access_token`).
#[derive(serde::Deserialize)]
struct TokenAnswer {
    token: Option<String>,
    access_token: Option<String>,
}

/// The first message of a distribution-spec error body
/// (`{"errors":[{"code":"...","message":"..."}]}`).
fn registry_message(body: &str) -> Option<String> {
    let v: serde_json::Value = serde_json::from_str(body).ok()?;
    let e = v.get("errors")?.get(0)?;
    let code = e.get("code").and_then(|c| c.as_str()).unwrap_or("");
    let msg = e.get("message").and_then(|m| m.as_str()).unwrap_or("");
    Some(format!("{code}: {msg}").trim_matches([' ', ':']).to_owned())
}

/// Percent-encode a query value (RFC 3986 unreserved characters pass).
fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_and_listed_registries_are_plain_http() {
        let none: &[String] = &[];
        for host in [
            "localhost",
            "localhost:5000",
            "127.0.0.1:5000",
            "127.9.8.7",
            "[::1]:5000",
        ] {
            assert!(is_insecure(host, none), "{host}");
        }
        for host in [
            "docker.io",
            "quay.io:443",
            "10.0.0.1:5000",
            "localhost.example",
        ] {
            assert!(!is_insecure(host, none), "{host}");
        }
        let listed = ["reg.lan:5000".to_string(), "other.lan".to_string()];
        assert!(is_insecure("reg.lan:5000", &listed));
        assert!(is_insecure("other.lan:8080", &listed));
        assert!(!is_insecure("reg.lan", &listed));
    }

    #[test]
    fn error_bodies_and_query_values() {
        let body =
            r#"{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown","detail":{}}]}"#;
        assert_eq!(
            registry_message(body).as_deref(),
            Some("MANIFEST_UNKNOWN: manifest unknown")
        );
        assert_eq!(registry_message("<html>"), None);
        assert_eq!(
            encode("repository:a/b:pull,push"),
            "repository%3Aa%2Fb%3Apull%2Cpush"
        );
    }
}
