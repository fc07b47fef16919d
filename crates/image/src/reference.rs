//! Image references as Docker reads them: `busybox`, `busybox:1.36`,
//! `127.0.0.1:5000/team/app@sha256:...`. A name without a registry is Docker Hub's
//! (`docker.io`), and a one-component path there is under `library/`; the tag
//! defaults to `latest`.

use std::fmt;
use std::str::FromStr;

use crate::digest::Digest;
use crate::error::{Error, Result};

/// Docker Hub, the registry of names that do not say one.
pub const DEFAULT_REGISTRY: &str = "docker.io";

/// A parsed image reference.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Reference {
    /// `docker.io`, `localhost:5000`, `127.0.0.1:5000`...
    pub registry: String,
    /// `library/busybox`, `team/app`.
    pub repository: String,
    /// `latest` unless given; `None` when only a digest was given.
    pub tag: Option<String>,
    /// `@sha256:...`, if given.
    pub digest: Option<Digest>,
}

impl Reference {
    /// `registry/repository`, the name images are listed under.
    pub fn name(&self) -> String {
        format!("{}/{}", self.registry, self.repository)
    }

    /// The name as Docker prints it: without `docker.io/` and `library/`.
    pub fn familiar_name(&self) -> String {
        if self.registry == DEFAULT_REGISTRY {
            let repo = self
                .repository
                .strip_prefix("library/")
                .unwrap_or(&self.repository);
            repo.to_owned()
        } else {
            self.name()
        }
    }

    /// The same name with another tag (and no digest).
    pub fn with_tag(&self, tag: &str) -> Reference {
        Reference {
            tag: Some(tag.to_owned()),
            digest: None,
            ..self.clone()
        }
    }
}

impl fmt::Display for Reference {
    /// The full form, `docker.io/library/busybox:latest`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.name())?;
        if let Some(t) = &self.tag {
            write!(f, ":{t}")?;
        }
        if let Some(d) = &self.digest {
            write!(f, "@{d}")?;
        }
        Ok(())
    }
}

impl FromStr for Reference {
    type Err = Error;

    fn from_str(s: &str) -> Result<Reference> {
        let bad = |why: &str| Error::BadReference {
            reference: s.to_owned(),
            reason: why.to_owned(),
        };
        let (rest, digest) = match s.split_once('@') {
            Some((r, d)) => (
                r,
                Some(
                    d.parse::<Digest>()
                        .map_err(|_| bad("the digest is not sha256:<64 hex digits>"))?,
                ),
            ),
            None => (s, None),
        };
        // A tag is after the last ':' that follows the last '/' (a registry port comes before it).
        let last_slash = rest.rfind('/').map_or(0, |i| i + 1);
        let (name, tag) = match rest[last_slash..].rfind(':') {
            Some(i) => (&rest[..last_slash + i], Some(&rest[last_slash + i + 1..])),
            None => (rest, None),
        };
        if let Some(t) = tag {
            let ok = !t.is_empty()
                && t.len() <= 128
                && t.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b))
                && !t.starts_with(['.', '-']);
            if !ok {
                return Err(bad(
                    "a tag is 1-128 of [A-Za-z0-9_.-], not starting with . or -",
                ));
            }
        }
        let (registry, repository) = match name.split_once('/') {
            Some((first, path)) if first.contains(['.', ':']) || first == "localhost" => {
                (first.to_owned(), path.to_owned())
            }
            _ => (DEFAULT_REGISTRY.to_owned(), name.to_owned()),
        };
        let repository = if registry == DEFAULT_REGISTRY && !repository.contains('/') {
            format!("library/{repository}")
        } else {
            repository
        };
        let component_ok = |c: &str| {
            !c.is_empty()
                && c.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b))
                && c.starts_with(|ch: char| ch.is_ascii_alphanumeric())
                && c.ends_with(|ch: char| ch.is_ascii_alphanumeric())
        };
        if repository.is_empty() || !repository.split('/').all(component_ok) {
            return Err(bad(
                "a repository is lowercase letters, digits and . _ - between slashes",
            ));
        }
        let tag = match (tag, &digest) {
            (Some(t), _) => Some(t.to_owned()),
            (None, Some(_)) => None,
            (None, None) => Some("latest".to_owned()),
        };
        Ok(Reference {
            registry,
            repository,
            tag,
            digest,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(s: &str) -> Reference {
        s.parse().unwrap()
    }

    #[test]
    fn docker_hub_names_get_their_defaults() {
        assert_eq!(r("busybox").to_string(), "docker.io/library/busybox:latest");
        assert_eq!(r("busybox").familiar_name(), "busybox");
        assert_eq!(r("busybox:1.36").tag.as_deref(), Some("1.36"));
        assert_eq!(r("team/app").to_string(), "docker.io/team/app:latest");
        assert_eq!(r("team/app").familiar_name(), "team/app");
    }

    #[test]
    fn registries_ports_and_digests() {
        let x = r("127.0.0.1:5000/team/app:v1");
        assert_eq!(
            (x.registry.as_str(), x.repository.as_str(), x.tag.as_deref()),
            ("127.0.0.1:5000", "team/app", Some("v1"))
        );
        assert_eq!(x.familiar_name(), "127.0.0.1:5000/team/app");
        let y = r("localhost/busybox");
        assert_eq!(
            (y.registry.as_str(), y.repository.as_str()),
            ("localhost", "busybox")
        );
        let d = format!("sha256:{}", "a".repeat(64));
        let z = r(&format!("localhost:5000/b@{d}"));
        assert_eq!((z.tag, z.digest.map(|d| d.to_string())), (None, Some(d)));
        assert_eq!(r("localhost:5000/b").tag.as_deref(), Some("latest"));
    }

    #[test]
    fn bad_references_say_why() {
        for bad in [
            "",
            "Busybox",
            "busybox:",
            "busybox:-x",
            "a//b",
            "busybox@sha256:12",
            "/x",
        ] {
            let e = bad.parse::<Reference>().unwrap_err().to_string();
            assert!(e.contains(&format!("{bad:?}")), "{e}");
        }
    }
}
