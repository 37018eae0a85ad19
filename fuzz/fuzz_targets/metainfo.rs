//! .torrent parsing and validation: never panics; a valid torrent's info-hash
//! is the SHA-1 of its exact `info` bytes, its geometry is consistent, and the
//! info dictionary parses alone as BEP 9 metadata to the same `Info`.
#![no_main]

use capwise_engine::magnet::Magnet;
use capwise_engine::metainfo::{InfoHash, Metainfo};
use libfuzzer_sys::fuzz_target;
use sha1::{Digest, Sha1};

fuzz_target!(|data: &[u8]| {
    let Ok(m) = Metainfo::from_bytes(data) else {
        return;
    };
    let sha: [u8; 20] = Sha1::digest(&m.info_bytes).into();
    assert_eq!(m.info_hash, InfoHash(sha));
    assert_eq!(m.info_hash, InfoHash::of(&m.info_bytes));

    let info = &m.info;
    let count = info.piece_count();
    assert_eq!(count as usize, info.piece_hashes.len());
    let sum: u64 = info.files.iter().map(|f| f.length).sum();
    assert_eq!(sum, info.total_length);
    let mut offset = 0;
    for f in &info.files {
        assert_eq!(f.offset, offset);
        offset += f.length;
    }
    assert_eq!(
        u64::from(count),
        info.total_length.div_ceil(info.piece_length)
    );
    let mut covered = 0;
    for i in 0..count {
        let range = info.piece_range(i).expect("piece in range");
        assert_eq!(range.start, covered);
        assert_eq!(range.end - range.start, info.piece_size(i));
        assert!(info.piece_size(i) > 0 && info.piece_size(i) <= info.piece_length);
        covered = range.end;
    }
    assert_eq!(covered, info.total_length);
    assert!(info.piece_range(count).is_none());

    let again = Metainfo::info_from_metadata(&m.info_bytes, m.info_hash)
        .expect("info bytes parse alone")
        .expect("and hash to the info-hash");
    assert_eq!(&again, info);

    // The magnet link of a torrent round-trips.
    let magnet = Magnet::from(&m);
    assert_eq!(Magnet::parse(&magnet.to_uri()).as_ref(), Ok(&magnet));
});
