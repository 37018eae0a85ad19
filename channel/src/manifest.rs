//! The manifest and its encoding.
//!
//! A manifest file is a small JSON envelope:
//!
//! ```json
//! {"capwise_channel":1,"key":"<64 hex>","signature":"<128 hex>","body":"<base64>"}
//! ```
//!
//! `body` is the base64 of the exact bytes that were signed (a JSON object,
//! [`Manifest`]). The signature covers [`SIGNING_CONTEXT`] followed by those
//! bytes, never a re-serialisation, so no JSON canonicalisation rules
//! (key order, number forms, escapes) have to agree between publisher and
//! subscriber, and a signature for something else (another protocol using
//! the same key) cannot pass as a manifest's.

use base64::Engine as _;
use hex::FromHex;
use serde::{Deserialize, Serialize};

use crate::{ChannelError, ChannelKey, PublicKey};

/// Largest manifest file accepted (envelope included): about 2000 items.
/// The bound is checked before any parsing.
pub const MAX_MANIFEST_BYTES: usize = 1024 * 1024;
/// Most items (and, separately, retired entries) in one manifest.
pub const MAX_ITEMS: usize = 4096;
/// Envelope format version.
pub const FORMAT: u64 = 1;
/// Prefix of every signed message (domain separation).
pub const SIGNING_CONTEXT: &[u8] = b"capwise-channel-manifest/1\n";

/// What a channel offers at one sequence number.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// The channel's public key, hex; must equal the envelope's key.
    pub channel: String,
    /// The channel's name, as its publisher calls it (informational).
    pub name: String,
    /// Grows with every publication; subscribers never accept a smaller one.
    pub sequence: u64,
    /// When it was published, Unix seconds.
    pub published: u64,
    /// After this (Unix seconds) subscribers refuse it: a frozen mirror is noticed.
    pub expires: u64,
    /// The torrents on offer.
    pub items: Vec<Item>,
    /// Torrents withdrawn: subscribers remove them.
    #[serde(default)]
    pub retired: Vec<Retired>,
    /// Where subscribers send their delivery reports ([`crate::report`]):
    /// an http(s) URL on the manifest's host, served by the publisher's
    /// agent. None: nobody asks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub report: Option<String>,
    /// The channel's membership public key, hex: the items' swarms admit
    /// only peers that prove they hold its secret (the token a subscriber
    /// is given out of band, `capwise channel token`). Absent: no
    /// membership is required.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub membership: Option<String>,
}

/// One torrent on offer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Item {
    /// BitTorrent v1 info-hash, 40 hex digits.
    pub info_hash: String,
    /// The torrent's name (its top file or directory), one path component.
    pub name: String,
    /// Total bytes of its data.
    pub size: u64,
    /// Where its .torrent is: a path relative to the manifest's directory,
    /// or an http(s) URL on the manifest's host.
    pub torrent: String,
    /// The web seeds its .torrent lists (BEP 19), each on the manifest's host.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub web_seeds: Vec<String>,
}

/// A torrent the channel withdrew.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Retired {
    /// Its info-hash, 40 hex digits.
    pub info_hash: String,
    /// Whether subscribers should delete its data too (default: keep it).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub delete_data: bool,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Envelope {
    capwise_channel: u64,
    key: String,
    signature: String,
    body: String,
}

impl Manifest {
    /// The membership public key, checked (a valid ed25519 point); `None`
    /// when the channel requires no membership.
    pub fn membership_key(&self) -> Result<Option<PublicKey>, ChannelError> {
        self.membership
            .as_deref()
            .map(PublicKey::from_hex)
            .transpose()
    }

    /// The manifest file: this manifest signed with `key`. Refuses a
    /// manifest that names another channel than `key`'s.
    pub fn sign(&self, key: &ChannelKey) -> Result<Vec<u8>, ChannelError> {
        let public = key.public();
        if self.channel != public.to_hex() {
            return Err(ChannelError::WrongKey {
                expected: public.to_hex(),
                found: self.channel.clone(),
            });
        }
        let body = serde_json::to_vec(self).map_err(|e| ChannelError::Body(e.to_string()))?;
        seal(&body, key)
    }
}

/// The manifest file for the exact `body` bytes, signed with `key`, whatever
/// they hold (tests and the fuzz target seal bodies no publisher would write).
pub fn seal(body: &[u8], key: &ChannelKey) -> Result<Vec<u8>, ChannelError> {
    seal_as(SIGNING_CONTEXT, body, key)
}

/// The envelope around `body` signed with `key` under `context` (a
/// manifest's or a delivery report's: a signature for one never passes as
/// the other's).
pub(crate) fn seal_as(
    context: &[u8],
    body: &[u8],
    key: &ChannelKey,
) -> Result<Vec<u8>, ChannelError> {
    let signature = key.sign(&signed_message_as(context, body));
    let envelope = Envelope {
        capwise_channel: FORMAT,
        key: key.public().to_hex(),
        signature: hex::encode(signature),
        body: base64::engine::general_purpose::STANDARD.encode(body),
    };
    let mut out =
        serde_json::to_vec_pretty(&envelope).map_err(|e| ChannelError::Body(e.to_string()))?;
    out.push(b'\n');
    Ok(out)
}

/// What a manifest's signature covers.
pub(crate) fn signed_message(body: &[u8]) -> Vec<u8> {
    signed_message_as(SIGNING_CONTEXT, body)
}

/// What a signature under `context` covers.
pub(crate) fn signed_message_as(context: &[u8], body: &[u8]) -> Vec<u8> {
    let mut message = Vec::with_capacity(context.len() + body.len());
    message.extend_from_slice(context);
    message.extend_from_slice(body);
    message
}

/// An envelope taken apart: key, signature, body bytes. No trust yet.
pub(crate) struct Opened {
    pub key: PublicKey,
    pub signature: [u8; 64],
    pub body: Vec<u8>,
}

/// Parses the envelope (after the size bound was checked).
pub(crate) fn open(bytes: &[u8]) -> Result<Opened, ChannelError> {
    let envelope: Envelope =
        serde_json::from_slice(bytes).map_err(|e| ChannelError::Envelope(e.to_string()))?;
    if envelope.capwise_channel != FORMAT {
        return Err(ChannelError::Envelope(format!(
            "format {} (this capwise reads format {FORMAT})",
            envelope.capwise_channel
        )));
    }
    let key = <[u8; 32]>::from_hex(&envelope.key)
        .ok()
        .map(PublicKey)
        .ok_or_else(|| ChannelError::Envelope("key is not 64 hex digits".into()))?;
    let signature = <[u8; 64]>::from_hex(&envelope.signature)
        .ok()
        .ok_or_else(|| ChannelError::Envelope("signature is not 128 hex digits".into()))?;
    let body = base64::engine::general_purpose::STANDARD
        .decode(envelope.body.as_bytes())
        .map_err(|e| ChannelError::Envelope(format!("body is not base64: {e}")))?;
    Ok(Opened {
        key,
        signature,
        body,
    })
}
