//! Resume data: never panics. The piece and file counts the caller expects are
//! taken from the header (or from the input's first bytes), and the first byte
//! optionally asks for a correct checksum, so the fuzzer gets past both
//! checks; whatever decodes encodes back to the same bytes.
#![no_main]

use capwise_engine::storage::ResumeData;
use libfuzzer_sys::fuzz_target;
use sha1::{Digest, Sha1};

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let mut bytes = rest.to_vec();
    if mode & 1 == 1 {
        let sum: [u8; 20] = Sha1::digest(&bytes).into();
        bytes.extend_from_slice(&sum);
    }
    let header_u32 = |at: usize| {
        bytes
            .get(at..at + 4)
            .map_or(0, |b| u32::from_le_bytes(b.try_into().unwrap()))
    };
    let (pieces, files) = if mode & 2 == 0 {
        (header_u32(30), header_u32(34) as usize)
    } else {
        (u32::from(mode >> 2), usize::from(mode >> 5))
    };
    if let Ok(resume) = ResumeData::decode(&bytes, pieces, files) {
        assert_eq!(resume.pieces.len(), pieces);
        assert_eq!(resume.files.len(), files);
        assert_eq!(resume.encode(), bytes);
    }
});
