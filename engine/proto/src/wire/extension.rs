//! The extension protocol handshake (BEP 10).

use crate::bencode::{self, Owned};
use crate::ext::{member, metadata, pex, quic};

/// Our extension handshake: `m` (ut_metadata), listen port, how many
/// requests we accept, client name, and `metadata_size` when we have the
/// metadata (a torrent still fetching it announces ut_metadata without).
/// No ut_pex: see [`our_handshake_with_pex`].
pub fn our_handshake(
    listen_port: u16,
    request_queue: usize,
    metadata_size: Option<usize>,
) -> Vec<u8> {
    our_handshake_with_pex(listen_port, request_queue, metadata_size, false)
}

/// [`our_handshake`], announcing ut_pex (BEP 11) under [`pex::OUR_ID`]
/// when `ut_pex` is set (never for a private torrent, BEP 27).
pub fn our_handshake_with_pex(
    listen_port: u16,
    request_queue: usize,
    metadata_size: Option<usize>,
    ut_pex: bool,
) -> Vec<u8> {
    let pex = ut_pex.then_some((pex::EXTENSION_NAME, pex::OUR_ID));
    our_handshake_with(
        listen_port,
        request_queue,
        metadata_size,
        pex.as_slice(),
        None,
    )
}

/// [`our_handshake`], naming `extensions` (name, our id) in `m` besides
/// ut_metadata, and `capwise_member` with our nonce for this connection when
/// the torrent requires membership ([`crate::ext::member`]).
pub fn our_handshake_with(
    listen_port: u16,
    request_queue: usize,
    metadata_size: Option<usize>,
    extensions: &[(&str, u8)],
    member_nonce: Option<&[u8; member::NONCE_LEN]>,
) -> Vec<u8> {
    our_handshake_offering(
        listen_port,
        request_queue,
        metadata_size,
        extensions,
        member_nonce,
        None,
    )
}

/// [`our_handshake_with`], with our QUIC offer when we run a QUIC endpoint
/// ([`crate::ext::quic`]).
pub fn our_handshake_offering(
    listen_port: u16,
    request_queue: usize,
    metadata_size: Option<usize>,
    extensions: &[(&str, u8)],
    member_nonce: Option<&[u8; member::NONCE_LEN]>,
    quic_offer: Option<&quic::QuicOffer>,
) -> Vec<u8> {
    let mut dict = std::collections::BTreeMap::new();
    let mut m = Owned::dict().with(metadata::NAME, Owned::Int(metadata::OUR_ID.into()));
    for &(name, id) in extensions {
        m = m.with(name, Owned::Int(id.into()));
    }
    if let Some(nonce) = member_nonce {
        m = m.with(member::EXTENSION_NAME, Owned::Int(member::OUR_ID.into()));
        dict.insert(member::NONCE_KEY.to_vec(), Owned::Bytes(nonce.to_vec()));
    }
    let m = m.build();
    dict.insert(b"m".to_vec(), m);
    if let Some(offer) = quic_offer {
        dict.insert(quic::KEY.to_vec(), offer.to_bencode());
    }
    if let Some(size) = metadata_size {
        dict.insert(b"metadata_size".to_vec(), Owned::Int(size as i64));
    }
    if listen_port != 0 {
        dict.insert(b"p".to_vec(), Owned::Int(listen_port.into()));
    }
    dict.insert(b"reqq".to_vec(), Owned::Int(request_queue as i64));
    dict.insert(
        b"v".to_vec(),
        Owned::Bytes(
            concat!("capwise ", env!("CARGO_PKG_VERSION"))
                .as_bytes()
                .to_vec(),
        ),
    );
    bencode::encode(&Owned::Dict(dict))
}

/// The `reqq` a peer announced: how many requests it queues from us.
pub fn peer_request_queue(payload: &[u8]) -> Option<usize> {
    let value = bencode::decode(payload).ok()?;
    let reqq = value.as_dict()?.get(b"reqq")?.as_int()?;
    usize::try_from(reqq).ok()
}

/// What a peer's extension handshake says about ut_metadata: the message
/// id it wants for it (none, or 0: it does not speak it, or stopped) and
/// `metadata_size` as given (unchecked; see `ext::metadata`).
pub fn peer_ut_metadata(payload: &[u8]) -> (Option<u8>, Option<i64>) {
    let Ok(value) = bencode::decode(payload) else {
        return (None, None);
    };
    let Some(dict) = value.as_dict() else {
        return (None, None);
    };
    let id = dict
        .get(b"m")
        .and_then(|m| m.as_dict())
        .and_then(|m| m.get(metadata::NAME))
        .and_then(|v| v.as_int())
        .and_then(|id| u8::try_from(id).ok())
        .filter(|&id| id != 0);
    let size = dict.get(b"metadata_size").and_then(|v| v.as_int());
    (id, size)
}

/// The message id a peer's extension handshake gives ut_pex (none, or 0:
/// it does not speak it, or stopped).
pub fn peer_ut_pex(payload: &[u8]) -> Option<u8> {
    let value = bencode::decode(payload).ok()?;
    let id = value
        .as_dict()?
        .get(b"m")?
        .as_dict()?
        .get(pex::EXTENSION_NAME.as_bytes())?
        .as_int()?;
    u8::try_from(id).ok().filter(|&id| id != 0)
}

/// The message id a peer's extension handshake gives extension `name`
/// (none, or 0: it does not speak it, or stopped).
pub fn peer_extension_id(payload: &[u8], name: &str) -> Option<u8> {
    let value = bencode::decode(payload).ok()?;
    let id = value
        .as_dict()?
        .get(b"m")?
        .as_dict()?
        .get(name.as_bytes())?
        .as_int()?;
    u8::try_from(id).ok().filter(|&id| id != 0)
}

/// The listen port (`p`) a peer's extension handshake gives, if any.
pub fn peer_listen_port(payload: &[u8]) -> Option<u16> {
    let value = bencode::decode(payload).ok()?;
    let p = value.as_dict()?.get(b"p")?.as_int()?;
    u16::try_from(p).ok().filter(|&p| p != 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn our_handshake_announces_ut_metadata_and_the_size_when_known() {
        assert_eq!(
            peer_ut_metadata(&our_handshake(6881, 250, Some(1234))),
            (Some(metadata::OUR_ID), Some(1234))
        );
        assert_eq!(
            peer_ut_metadata(&our_handshake(0, 250, None)),
            (Some(metadata::OUR_ID), None)
        );
        assert_eq!(peer_request_queue(&our_handshake(0, 250, None)), Some(250));
    }

    #[test]
    fn ut_pex_is_announced_only_when_asked() {
        assert_eq!(peer_ut_pex(&our_handshake(6881, 250, None)), None);
        assert_eq!(
            peer_ut_pex(&our_handshake_with_pex(6881, 250, None, true)),
            Some(pex::OUR_ID)
        );
        assert_eq!(
            peer_listen_port(&our_handshake(6881, 250, None)),
            Some(6881)
        );
        assert_eq!(peer_listen_port(&our_handshake(0, 250, None)), None);
        assert_eq!(peer_ut_pex(b"d1:md6:ut_pexi0eee"), None);
        assert_eq!(peer_listen_port(b"d1:pi70000ee"), None);
        assert_eq!(peer_ut_pex(b"garbage"), None);
    }

    #[test]
    fn a_peer_without_ut_metadata_or_with_id_zero_has_none() {
        assert_eq!(peer_ut_metadata(b"d1:md6:ut_pexi1eee"), (None, None));
        assert_eq!(
            peer_ut_metadata(b"d1:md11:ut_metadatai0ee13:metadata_sizei5ee"),
            (None, Some(5))
        );
        assert_eq!(peer_ut_metadata(b"garbage"), (None, None));
    }
}
