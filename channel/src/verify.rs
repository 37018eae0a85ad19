//! From untrusted bytes to a manifest a subscriber may act on.

use hex::FromHex;
use sha2::{Digest, Sha256};
use std::collections::HashSet;

use url::Url;

use crate::manifest::{open, signed_message};
use crate::{checks, ChannelError, Manifest, PublicKey, MAX_ITEMS, MAX_MANIFEST_BYTES};

/// What a subscriber trusts and remembers.
#[derive(Debug, Clone, Copy)]
pub struct Trust<'a> {
    /// The channel's public key, pinned at `subscribe`.
    pub key: &'a PublicKey,
    /// Where the manifest was fetched from: relative paths resolve against
    /// it, and absolute URLs must be on its host.
    pub manifest_url: &'a Url,
    /// The sequence of the last manifest accepted, if any.
    pub last_sequence: Option<u64>,
    /// Now, Unix seconds.
    pub now: u64,
}

/// Checks `bytes` against `trust`, in this order: size, envelope, key,
/// signature, body, expiry, sequence, then every item. The manifest is
/// returned with its info-hashes in lower case. The same sequence as the
/// last accepted one passes (a re-fetch of an unchanged manifest).
pub fn verify(bytes: &[u8], trust: &Trust<'_>) -> Result<Manifest, ChannelError> {
    verify_with_digest(bytes, trust).map(|(manifest, _)| manifest)
}

/// SHA-256 of a signed body: what makes two manifests of one sequence the
/// same publication (the envelope's whitespace may differ, the body not).
pub type BodyDigest = [u8; 32];

/// [`verify`], also returning the SHA-256 of the signed body bytes.
pub fn verify_with_digest(
    bytes: &[u8],
    trust: &Trust<'_>,
) -> Result<(Manifest, BodyDigest), ChannelError> {
    if bytes.len() > MAX_MANIFEST_BYTES {
        return Err(ChannelError::TooLarge {
            size: bytes.len(),
            limit: MAX_MANIFEST_BYTES,
        });
    }
    let opened = open(bytes)?;
    if opened.key != *trust.key {
        return Err(ChannelError::WrongKey {
            expected: trust.key.to_hex(),
            found: opened.key.to_hex(),
        });
    }
    if !trust
        .key
        .verifies(&signed_message(&opened.body), &opened.signature)
    {
        return Err(ChannelError::BadSignature {
            key: trust.key.to_hex(),
        });
    }
    // Only signed bytes are parsed from here on.
    let mut manifest: Manifest =
        serde_json::from_slice(&opened.body).map_err(|e| ChannelError::Body(e.to_string()))?;
    if !manifest.channel.eq_ignore_ascii_case(&trust.key.to_hex()) {
        return Err(ChannelError::Body(format!(
            "the body names channel {}, not its signer",
            manifest.channel
        )));
    }
    if manifest.published > manifest.expires {
        return Err(ChannelError::Body(
            "it expires before it was published".into(),
        ));
    }
    if trust.now >= manifest.expires {
        return Err(ChannelError::Expired {
            expires: manifest.expires,
            now: trust.now,
        });
    }
    if let Some(last) = trust.last_sequence {
        if manifest.sequence < last {
            return Err(ChannelError::Rollback {
                sequence: manifest.sequence,
                last,
            });
        }
    }
    check_items(&mut manifest, trust.manifest_url)?;
    if let Some(report) = &manifest.report {
        checks::report_url(report, trust.manifest_url)?;
    }
    let digest = Sha256::digest(&opened.body).into();
    Ok((manifest, digest))
}

pub(crate) fn info_hash(text: &str) -> Result<String, ChannelError> {
    <[u8; 20]>::from_hex(text)
        .ok()
        .map(hex::encode)
        .ok_or_else(|| ChannelError::Body(format!("info-hash {text:?} is not 40 hex digits")))
}

fn check_items(manifest: &mut Manifest, manifest_url: &Url) -> Result<(), ChannelError> {
    if manifest.items.len() > MAX_ITEMS || manifest.retired.len() > MAX_ITEMS {
        return Err(ChannelError::Body(format!(
            "more than {MAX_ITEMS} items or retired entries"
        )));
    }
    let mut hashes = HashSet::new();
    let mut names = HashSet::new();
    for item in &mut manifest.items {
        item.info_hash = info_hash(&item.info_hash)?;
        checks::item_name(&item.name)?;
        checks::torrent_url(item, manifest_url)?;
        for seed in &item.web_seeds {
            checks::same_host_url(&item.name, seed, manifest_url)?;
        }
        if !hashes.insert(item.info_hash.clone()) {
            return Err(ChannelError::Body(format!(
                "info-hash {} is listed twice",
                item.info_hash
            )));
        }
        // Two items with one name would download into the same place.
        if !names.insert(item.name.clone()) {
            return Err(ChannelError::Body(format!(
                "name {:?} is listed twice",
                item.name
            )));
        }
    }
    for retired in &mut manifest.retired {
        retired.info_hash = info_hash(&retired.info_hash)?;
        if hashes.contains(&retired.info_hash) {
            return Err(ChannelError::Body(format!(
                "info-hash {} is both offered and retired",
                retired.info_hash
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{ChannelKey, Item, Retired};

    const NOW: u64 = 1_800_000_000;

    fn key() -> ChannelKey {
        ChannelKey::from_seed([1; 32])
    }

    fn url() -> Url {
        Url::parse("http://hq.example:8080/ch/manifest.json").unwrap()
    }

    fn item(n: u8) -> Item {
        Item {
            info_hash: hex::encode([n; 20]),
            name: format!("file{n}"),
            size: 1000 + u64::from(n),
            torrent: format!("file{n}.torrent"),
            web_seeds: vec!["http://hq.example:8080/ch/".into()],
        }
    }

    fn manifest(sequence: u64) -> Manifest {
        Manifest {
            channel: key().public().to_hex(),
            name: "images".into(),
            sequence,
            published: NOW - 10,
            expires: NOW + 3600,
            items: vec![item(1), item(2)],
            retired: vec![Retired {
                info_hash: hex::encode([9; 20]),
                delete_data: false,
            }],
            report: None,
            membership: None,
        }
    }

    fn check(bytes: &[u8], last: Option<u64>) -> Result<Manifest, ChannelError> {
        let public = key().public();
        let url = url();
        verify(
            bytes,
            &Trust {
                key: &public,
                manifest_url: &url,
                last_sequence: last,
                now: NOW,
            },
        )
    }

    fn signed(m: &Manifest) -> Vec<u8> {
        m.sign(&key()).unwrap()
    }

    #[test]
    fn a_good_manifest_passes_and_round_trips() {
        let m = manifest(3);
        assert_eq!(check(&signed(&m), None), Ok(m.clone()));
        assert_eq!(check(&signed(&m), Some(3)), Ok(m.clone()));
        assert_eq!(check(&signed(&m), Some(2)), Ok(m));
    }

    #[test]
    fn a_tampered_body_is_a_bad_signature() {
        let bytes = signed(&manifest(3));
        let text = String::from_utf8(bytes).unwrap();
        let envelope: serde_json::Value = serde_json::from_str(&text).unwrap();
        use base64::Engine as _;
        let b64 = base64::engine::general_purpose::STANDARD;
        let body = b64.decode(envelope["body"].as_str().unwrap()).unwrap();
        let altered = String::from_utf8(body).unwrap().replace("file1", "filX");
        let mut envelope = envelope;
        envelope["body"] = b64.encode(altered).into();
        let tampered = serde_json::to_vec(&envelope).unwrap();
        assert!(matches!(
            check(&tampered, None),
            Err(ChannelError::BadSignature { .. })
        ));
        // A flipped signature bit too.
        let mut envelope: serde_json::Value = serde_json::from_str(&text).unwrap();
        let mut sig = envelope["signature"].as_str().unwrap().to_owned();
        let flipped = if sig.starts_with('0') { "1" } else { "0" };
        sig.replace_range(0..1, flipped);
        envelope["signature"] = sig.into();
        assert!(matches!(
            check(&serde_json::to_vec(&envelope).unwrap(), None),
            Err(ChannelError::BadSignature { .. })
        ));
    }

    #[test]
    fn another_channel_is_the_wrong_key() {
        let other = ChannelKey::from_seed([2; 32]);
        let mut m = manifest(3);
        m.channel = other.public().to_hex();
        let bytes = m.sign(&other).unwrap();
        assert!(matches!(
            check(&bytes, None),
            Err(ChannelError::WrongKey { .. })
        ));
        // And signing a manifest naming another channel is refused at the source.
        assert!(manifest(3).sign(&other).is_err());
    }

    #[test]
    fn an_older_sequence_is_a_rollback() {
        assert_eq!(
            check(&signed(&manifest(3)), Some(4)),
            Err(ChannelError::Rollback {
                sequence: 3,
                last: 4
            })
        );
    }

    #[test]
    fn an_expired_manifest_is_refused() {
        let mut m = manifest(3);
        m.expires = NOW;
        assert!(matches!(
            check(&signed(&m), None),
            Err(ChannelError::Expired { .. })
        ));
        m.published = NOW + 1;
        assert!(matches!(
            check(&signed(&m), None),
            Err(ChannelError::Body(_))
        ));
    }

    #[test]
    fn item_paths_that_leave_the_directory_are_refused() {
        for path in [
            "/etc/x.torrent",
            "../x.torrent",
            "a\\x.torrent",
            "",
            "a/../../x",
        ] {
            let mut m = manifest(3);
            m.items[0].torrent = path.into();
            assert!(
                matches!(check(&signed(&m), None), Err(ChannelError::BadPath { .. })),
                "{path:?}"
            );
        }
        let mut m = manifest(3);
        m.items[0].name = "../etc".into();
        assert!(matches!(
            check(&signed(&m), None),
            Err(ChannelError::BadPath { .. })
        ));
    }

    #[test]
    fn urls_on_other_hosts_are_refused() {
        let mut m = manifest(3);
        m.items[0].web_seeds = vec!["http://10.0.0.1/admin/".into()];
        assert!(matches!(
            check(&signed(&m), None),
            Err(ChannelError::ForeignHost { .. })
        ));
        let mut m = manifest(3);
        m.items[1].torrent = "http://169.254.169.254/x.torrent".into();
        assert!(matches!(
            check(&signed(&m), None),
            Err(ChannelError::ForeignHost { .. })
        ));
    }

    #[test]
    fn a_manifest_too_large_is_refused_before_parsing() {
        let huge = vec![b' '; MAX_MANIFEST_BYTES + 1];
        assert!(matches!(
            check(&huge, None),
            Err(ChannelError::TooLarge { .. })
        ));
        let mut m = manifest(3);
        m.items = (0..=MAX_ITEMS)
            .map(|i| Item {
                info_hash: format!("{i:040x}"),
                name: format!("f{i}"),
                size: 1,
                torrent: format!("f{i}.torrent"),
                web_seeds: vec![],
            })
            .collect();
        assert!(check(&signed(&m), None).is_err());
    }

    #[test]
    fn malformed_items_are_refused() {
        let mut m = manifest(3);
        m.items[1].info_hash = m.items[0].info_hash.clone();
        assert!(matches!(
            check(&signed(&m), None),
            Err(ChannelError::Body(_))
        ));
        let mut m = manifest(3);
        m.items[1].name = m.items[0].name.clone();
        assert!(matches!(
            check(&signed(&m), None),
            Err(ChannelError::Body(_))
        ));
        let mut m = manifest(3);
        m.items[0].info_hash = "xyz".into();
        assert!(matches!(
            check(&signed(&m), None),
            Err(ChannelError::Body(_))
        ));
        let mut m = manifest(3);
        m.retired[0].info_hash = m.items[0].info_hash.clone();
        assert!(matches!(
            check(&signed(&m), None),
            Err(ChannelError::Body(_))
        ));
    }

    #[test]
    fn garbage_is_an_envelope_error() {
        for junk in [
            &b""[..],
            b"{}",
            b"[1]",
            b"\xff\xfe",
            b"{\"capwise_channel\":2,\"key\":\"\",\"signature\":\"\",\"body\":\"\"}",
        ] {
            assert!(matches!(check(junk, None), Err(ChannelError::Envelope(_))));
        }
    }
}
