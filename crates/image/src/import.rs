//! Images from tarballs: `import` of a root filesystem tar (what `docker export`
//! writes) as a one-layer image.

use std::io::Read;

use serde_json::json;

use crate::digest::Digest;
use crate::error::Result;
use crate::layer::Compression;
use crate::reference::Reference;
use crate::store::{Image, Layer, Store};

/// The OCI media types this module writes.
pub mod media {
    /// An image manifest.
    pub const MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
    /// An image config.
    pub const CONFIG: &str = "application/vnd.oci.image.config.v1+json";
}

/// Import the root filesystem tar `r` (plain, gzip or zstd; named `what` in
/// errors) as an image with one layer, named `name` when given.
pub fn import(
    store: &Store,
    r: &mut dyn Read,
    what: &str,
    name: Option<&Reference>,
) -> Result<Image> {
    let _adding = store.adding()?;
    // Unpacked from the ingested file first: a tarball that is not one leaves
    // nothing in the store.
    let ingested = store.ingest(r, what)?;
    let head = {
        let mut b = [0u8; 4];
        let n = std::fs::File::open(ingested.path())
            .and_then(|mut f| f.read(&mut b))
            .unwrap_or(0);
        b[..n].to_vec()
    };
    let media_type = Compression::detect(&head).media_type().to_owned();
    let (diff_id, unpacked) = store.unpack_file(ingested.path(), None, what)?;
    let size = ingested.len;
    let blob = ingested.commit(what)?;
    let layer = Layer {
        digest: blob,
        diff_id,
        size,
        media_type,
    };
    let created = onggi_runtime::state::rfc3339_now();
    let config = json!({
        "created": created,
        "architecture": arch(),
        "os": "linux",
        "config": { "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"] },
        "rootfs": { "type": "layers", "diff_ids": [layer.diff_id.to_string()] },
        "history": [{ "created": created, "created_by": format!("onggi import {what}") }],
    });
    let config = serde_json::to_vec(&config).expect("config serializes");
    let config_digest = store.put_bytes(&config, "image config")?;
    let manifest = manifest_json(&config_digest, config.len(), std::slice::from_ref(&layer));
    let manifest_digest = store.put_bytes(&manifest, "image manifest")?;
    let image = Image {
        id: config_digest,
        manifest: manifest_digest,
        layers: vec![layer],
        created: Some(created),
        size: unpacked,
    };
    let names: Vec<Reference> = name.into_iter().cloned().collect();
    store.add_image(&image, &names)?;
    Ok(image)
}

/// An OCI image manifest for a config and layers.
pub fn manifest_json(config: &Digest, config_size: usize, layers: &[Layer]) -> Vec<u8> {
    let m = json!({
        "schemaVersion": 2,
        "mediaType": media::MANIFEST,
        "config": { "mediaType": media::CONFIG, "digest": config.to_string(), "size": config_size },
        "layers": layers.iter().map(|l| json!({
            "mediaType": l.media_type, "digest": l.digest.to_string(), "size": l.size,
        })).collect::<Vec<_>>(),
    });
    serde_json::to_vec(&m).expect("manifest serializes")
}

/// This machine's architecture in the OCI (Go) spelling.
pub fn arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        "powerpc64" => "ppc64le",
        other => other,
    }
}
