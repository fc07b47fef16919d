//! Container ids (64 random hex digits, as Docker's) and names (`--name`, or a
//! generated adjective_noun).

use std::io::Read;

use crate::error::{Context, Error, Result};

/// A new random id.
pub fn new_id() -> Result<String> {
    let mut b = [0u8; 32];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut b))
        .step(|| "read /dev/urandom for a container id")?;
    Ok(b.iter().map(|x| format!("{x:02x}")).collect())
}

const ADJECTIVES: &[&str] = &[
    "brave", "calm", "clever", "eager", "gentle", "happy", "jolly", "kind", "lucid", "merry",
    "nimble", "proud", "quiet", "sharp", "sleepy", "steady", "swift", "tender", "vivid", "wise",
];
const NOUNS: &[&str] = &[
    "onggi", "kimchi", "hanok", "gayageum", "hangul", "jangdok", "baduk", "dolmen", "magpie",
    "tiger", "pine", "crane", "lotus", "maple", "river", "harbor", "lantern", "kettle", "loom",
    "bell",
];

/// A name from the id's bits: adjective_noun_NN (checked for use by the caller).
pub fn generate(id: &str) -> String {
    let n = u64::from_str_radix(&id[..12], 16).unwrap_or(0);
    let a = ADJECTIVES[(n % ADJECTIVES.len() as u64) as usize];
    let b = NOUNS[((n >> 8) % NOUNS.len() as u64) as usize];
    format!("{a}_{b}_{}", (n >> 16) % 100)
}

/// `--name`: Docker's pattern, `[a-zA-Z0-9][a-zA-Z0-9_.-]+`.
pub fn check(name: &str) -> Result<()> {
    let ok = name.len() >= 2
        && name.len() <= 128
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(Error::BadOption {
            flag: format!("--name {name}"),
            reason: "a name is [a-zA-Z0-9][a-zA-Z0-9_.-]+".into(),
        })
    }
}
