//! The extension protocol handshake (BEP 10).

use crate::bencode::{self, Owned};

/// Our extension handshake: listen port, how many requests we accept, client name.
pub fn our_handshake(listen_port: u16, request_queue: usize) -> Vec<u8> {
    let mut dict = std::collections::BTreeMap::new();
    dict.insert(b"m".to_vec(), Owned::Dict(Default::default()));
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
