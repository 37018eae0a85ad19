//! The `Meta*` modes: a peer of a magnet link that lies in the ut_metadata
//! exchange (BEP 9). It handshakes with the extension bit (BEP 10), sends
//! its extension handshake (`m` with ut_metadata, and a `metadata_size`:
//! 4 GiB for [`Mode::MetaHugeSize`], the true size otherwise) and answers
//! every ut_metadata request the way its mode says: a 100-byte block, a
//! block of the right size but wrong bytes, or a reject.

use std::io;
use std::sync::atomic::Ordering;

use super::{Conn, End, Mode};

const MSG_EXTENDED: u8 = 20;
/// The extended message id we ask remotes to use for ut_metadata.
const OUR_UT_METADATA: u8 = 1;
const BLOCK: u64 = 16 * 1024;
const HUGE: u64 = 4 << 30;

pub(super) fn script(c: &mut Conn<'_>) -> io::Result<End> {
    let shared = c.shared;
    let shape = shared.shape;
    let mut reserved = [0u8; 8];
    reserved[5] |= 0x10;
    c.handshake_with(&shape.info_hash, reserved)?;
    let announced = match shared.mode {
        Mode::MetaHugeSize => HUGE,
        _ => shape.metadata_len,
    };
    let hello = format!("d1:md11:ut_metadatai{OUR_UT_METADATA}ee13:metadata_sizei{announced}ee");
    send_extended(c, 0, hello.as_bytes())?;
    // Their id for ut_metadata, from their extension handshake.
    let mut theirs = None;
    loop {
        let (id, payload) = match c.next_message()? {
            Ok(m) => m,
            Err(end) => return Ok(end),
        };
        if id != MSG_EXTENDED || payload.is_empty() {
            continue;
        }
        if payload[0] == 0 {
            theirs =
                int_after(&payload[1..], b"11:ut_metadatai").and_then(|v| u8::try_from(v).ok());
            continue;
        }
        if payload[0] != OUR_UT_METADATA || int_after(&payload[1..], b"8:msg_typei") != Some(0) {
            continue;
        }
        let Some(piece) = int_after(&payload[1..], b"5:piecei") else {
            continue;
        };
        shared.stats.requests.fetch_add(1, Ordering::SeqCst);
        let Some(to) = theirs else { continue };
        let right = shape
            .metadata_len
            .saturating_sub(piece as u64 * BLOCK)
            .min(BLOCK);
        let answer = match shared.mode {
            Mode::MetaWrongBlock => data(piece, announced, &[0x55; 100]),
            Mode::MetaBadHash if right > 0 => data(piece, announced, &vec![0xAA; right as usize]),
            Mode::MetaRejects | Mode::MetaBadHash => {
                format!("d8:msg_typei2e5:piecei{piece}ee").into_bytes()
            }
            // A huge size gets the peer dropped before anything is asked.
            _ => continue,
        };
        send_extended(c, to, &answer)?;
        shared.stats.pieces_sent.fetch_add(1, Ordering::SeqCst);
    }
}

fn data(piece: i64, total: u64, block: &[u8]) -> Vec<u8> {
    let mut m = format!("d8:msg_typei1e5:piecei{piece}e10:total_sizei{total}ee").into_bytes();
    m.extend_from_slice(block);
    m
}

fn send_extended(c: &mut Conn<'_>, id: u8, payload: &[u8]) -> io::Result<()> {
    let mut m = Vec::with_capacity(1 + payload.len());
    m.push(id);
    m.extend_from_slice(payload);
    c.send_msg(MSG_EXTENDED, &m)
}

/// The integer after `key` in a bencoded dictionary's bytes (`...KEYi42e...`).
fn int_after(bytes: &[u8], key: &[u8]) -> Option<i64> {
    let at = bytes.windows(key.len()).position(|w| w == key)? + key.len();
    let rest = &bytes[at..];
    let end = rest.iter().position(|&b| b == b'e')?;
    std::str::from_utf8(&rest[..end]).ok()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::super::HostilePeer;
    use super::*;
    use std::io::{Read, Write};
    use std::net::TcpStream;
    use std::time::Duration;

    const HASH: [u8; 20] = [9u8; 20];

    fn read_msg(s: &mut TcpStream) -> (u8, Vec<u8>) {
        let mut len = [0u8; 4];
        s.read_exact(&mut len).unwrap();
        let mut m = vec![0u8; u32::from_be_bytes(len) as usize];
        s.read_exact(&mut m).unwrap();
        (m[0], m[1..].to_vec())
    }

    /// Handshakes and reads its extension handshake.
    fn open(mode: Mode) -> (HostilePeer, TcpStream, Vec<u8>) {
        let p = HostilePeer::start_metadata(mode, HASH, 40_000, b"-CW").unwrap();
        let mut s = TcpStream::connect(p.addr()).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut h = vec![19u8];
        h.extend_from_slice(super::super::PSTR);
        h.extend_from_slice(&[0, 0, 0, 0, 0, 0x10, 0, 0]);
        h.extend_from_slice(&HASH);
        h.extend_from_slice(b"-CW0100-000000000001");
        s.write_all(&h).unwrap();
        let mut theirs = [0u8; 68];
        s.read_exact(&mut theirs).unwrap();
        assert_eq!(theirs[25] & 0x10, 0x10, "extension bit");
        let (id, hello) = read_msg(&mut s);
        assert_eq!((id, hello[0]), (MSG_EXTENDED, 0));
        (p, s, hello[1..].to_vec())
    }

    /// Sends our extension handshake (ut_metadata = 3) and a request for block 1; returns
    /// the answer.
    fn ask(mode: Mode) -> Vec<u8> {
        let (p, mut s, _) = open(mode);
        let mut send = |payload: &[u8]| {
            let mut m = ((payload.len() + 1) as u32).to_be_bytes().to_vec();
            m.push(MSG_EXTENDED);
            m.extend_from_slice(payload);
            s.write_all(&m).unwrap();
        };
        send(b"\x00d1:md11:ut_metadatai3eee");
        send(b"\x01d8:msg_typei0e5:piecei1ee");
        let (id, answer) = read_msg(&mut s);
        assert_eq!((id, answer[0]), (MSG_EXTENDED, 3));
        assert_eq!(p.counts().requests, 1);
        answer[1..].to_vec()
    }

    #[test]
    fn metadata_modes_lie_as_scripted() {
        let (_p, _s, hello) = open(Mode::MetaHugeSize);
        assert_eq!(int_after(&hello, b"13:metadata_sizei"), Some(4 << 30));
        let (_p, _s, hello) = open(Mode::MetaWrongBlock);
        assert_eq!(int_after(&hello, b"13:metadata_sizei"), Some(40_000));
        let answer = ask(Mode::MetaWrongBlock);
        assert_eq!(int_after(&answer, b"8:msg_typei"), Some(1));
        assert!(answer.ends_with(&[0x55; 100]));
        let answer = ask(Mode::MetaBadHash);
        let header = b"d8:msg_typei1e5:piecei1e10:total_sizei40000ee";
        assert!(answer.starts_with(header));
        assert_eq!(answer.len() - header.len(), 16 * 1024);
        assert_eq!(ask(Mode::MetaRejects), b"d8:msg_typei2e5:piecei1ee");
        assert!(HostilePeer::start_metadata(Mode::Silent, HASH, 40_000, b"").is_err());
    }
}
