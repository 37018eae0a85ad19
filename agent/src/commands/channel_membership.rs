//! A channel's membership secret: `<state dir>/channels/NAME.member`
//! (0600), made with the channel (or at its next publication, for a
//! channel made before). Its public key goes into every manifest; the
//! secret is the token subscribers are given out of band
//! (`capwise channel token NAME`), with which their agents prove membership
//! in the items' swarms (`capwise_proto::ext::member`).

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use capwise_engine::ext::member::MembershipKey;

use crate::cli_channel::ChannelTokenArgs;

fn member_path(state_dir: Option<&Path>, name: &str) -> Result<PathBuf> {
    Ok(super::key_path(state_dir, name)?.with_extension("member"))
}

/// The membership public key as the manifest carries it (64 hex digits).
pub fn public_hex(key: &MembershipKey) -> String {
    capwise_channel::PublicKey(key.public()).to_hex()
}

fn load(path: &Path) -> Result<Option<MembershipKey>> {
    match std::fs::read_to_string(path) {
        Ok(text) => MembershipKey::from_hex(&text)
            .map(Some)
            .with_context(|| format!("{} is not a membership secret", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
    }
}

/// The channel's membership secret, made (0600, never overwritten) if the
/// channel has none yet. The channel itself must exist.
pub fn load_or_create(state_dir: Option<&Path>, name: &str) -> Result<MembershipKey> {
    super::load_key(state_dir, name)?;
    let path = member_path(state_dir, name)?;
    if let Some(key) = load(&path)? {
        return Ok(key);
    }
    match super::new_secret_file(&path) {
        Ok(seed) => Ok(MembershipKey::from_seed(seed)),
        // Made meanwhile by another publish: take that one.
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            load(&path)?.context("the membership secret vanished")
        }
        Err(e) => Err(e).with_context(|| format!("cannot create {}", path.display())),
    }
}

/// `capwise channel token NAME`
pub fn token(args: &ChannelTokenArgs) -> Result<()> {
    let key = load_or_create(args.state_dir.as_deref(), &args.name)?;
    println!("{}", key.to_hex());
    Ok(())
}
