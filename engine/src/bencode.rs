//! Bencode (BEP 3): a pure, bounded decoder and an encoder.
//! CONTRACT (filled in by the metainfo work): see the signatures below.

use std::collections::BTreeMap;

/// Why bytes are not valid bencode; positions are byte offsets into the input.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BencodeError {
    /// Placeholder until the decoder lands.
    #[error("unexpected end of input at byte {0}")]
    UnexpectedEof(usize),
}

/// A decoded value borrowing from the input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value<'a> {
    /// `i...e`
    Int(i64),
    /// `N:...`
    Bytes(&'a [u8]),
    /// `l...e`
    List(Vec<Value<'a>>),
    /// `d...e`, with the raw bytes of the whole dict (for the info-hash).
    Dict(Dict<'a>),
}

/// A decoded dictionary: entries in input order, and its exact input bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dict<'a> {
    /// Key/value pairs in the order they appeared.
    pub entries: Vec<(&'a [u8], Value<'a>)>,
    /// The dictionary's exact bytes in the input, `d` through `e`.
    pub raw: &'a [u8],
}

/// An owned value for building messages and torrents; dict keys sort on encode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Owned {
    /// Integer.
    Int(i64),
    /// Byte string.
    Bytes(Vec<u8>),
    /// List.
    List(Vec<Owned>),
    /// Dictionary (BTreeMap keeps keys sorted, as bencode requires).
    Dict(BTreeMap<Vec<u8>, Owned>),
}
