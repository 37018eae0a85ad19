//! Bencode (BEP 3): a pure, bounded decoder and an encoder.
//!
//! The decoder borrows from its input and never recurses: nesting is tracked
//! on an explicit stack capped at [`MAX_DEPTH`], so hostile input such as
//! 100,000 nested lists yields an error instead of a stack overflow. Only the
//! canonical forms are accepted for integers and string lengths (no leading
//! zeros, no `-0`); dictionary keys may appear unsorted, because many real
//! torrents have them so, but never twice. Every [`Dict`] keeps its exact input
//! bytes so that the info-hash is computed over what the file said, never over
//! a re-encoding.

use std::collections::{BTreeMap, BTreeSet};

/// Deepest nesting of lists and dictionaries the decoder accepts.
///
/// Real torrents and BEP 9/10 messages nest a handful of levels; 64 leaves a
/// wide margin while keeping the work per byte and the drop depth of the
/// resulting [`Value`] small.
pub const MAX_DEPTH: usize = 64;

/// Why bytes are not valid bencode; positions are byte offsets into the input.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BencodeError {
    /// The input ended in the middle of a value.
    #[error("unexpected end of input at byte {offset}")]
    UnexpectedEof {
        /// Where more input was needed (the input length).
        offset: usize,
    },
    /// A byte that cannot start a value (or end a container) here.
    #[error("unexpected byte 0x{byte:02x} at byte {offset}")]
    UnexpectedByte {
        /// Position of the byte.
        offset: usize,
        /// The byte found.
        byte: u8,
    },
    /// An integer (`i...e`) is empty, has a leading zero, is `-0` or has a non-digit.
    #[error("invalid integer at byte {offset}: {reason}")]
    InvalidInteger {
        /// Position of the `i`.
        offset: usize,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// An integer does not fit in an `i64`.
    #[error("integer at byte {offset} does not fit in 64 bits")]
    IntegerOverflow {
        /// Position of the `i`.
        offset: usize,
    },
    /// A string length prefix is malformed (leading zero, missing `:`, too many digits).
    #[error("invalid string length at byte {offset}: {reason}")]
    InvalidLength {
        /// Position of the first digit.
        offset: usize,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A string claims more bytes than the input has left.
    #[error("string at byte {offset} claims {length} bytes but only {remaining} remain")]
    StringTooLong {
        /// Position of the length prefix.
        offset: usize,
        /// The claimed length.
        length: usize,
        /// Bytes actually left after the `:`.
        remaining: usize,
    },
    /// A dictionary key is not a byte string.
    #[error("dictionary key at byte {offset} is not a byte string")]
    KeyNotString {
        /// Position of the offending value.
        offset: usize,
    },
    /// A dictionary has a key with no value before its closing `e`.
    #[error("dictionary key {key:?} at byte {offset} has no value")]
    MissingValue {
        /// Position of the `e` that came too early.
        offset: usize,
        /// The key, lossily decoded for display.
        key: String,
    },
    /// A dictionary repeats a key.
    #[error("duplicate dictionary key {key:?} at byte {offset}")]
    DuplicateKey {
        /// Position of the second occurrence.
        offset: usize,
        /// The key, lossily decoded for display.
        key: String,
    },
    /// Lists and dictionaries nest deeper than [`MAX_DEPTH`].
    #[error("nesting deeper than {limit} levels at byte {offset}")]
    TooDeep {
        /// Position of the container that went too deep.
        offset: usize,
        /// The limit, [`MAX_DEPTH`].
        limit: usize,
    },
    /// Bytes follow a complete value where none were expected.
    #[error("trailing data after the value, at byte {offset}")]
    TrailingBytes {
        /// Position of the first extra byte.
        offset: usize,
    },
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

impl<'a> Value<'a> {
    /// The integer, if this is one.
    pub fn as_int(&self) -> Option<i64> {
        match self {
            Value::Int(n) => Some(*n),
            _ => None,
        }
    }

    /// The byte string, if this is one.
    pub fn as_bytes(&self) -> Option<&'a [u8]> {
        match self {
            Value::Bytes(b) => Some(b),
            _ => None,
        }
    }

    /// The byte string as UTF-8, if this is a byte string holding valid UTF-8.
    pub fn as_str(&self) -> Option<&'a str> {
        self.as_bytes().and_then(|b| std::str::from_utf8(b).ok())
    }

    /// The items, if this is a list.
    pub fn as_list(&self) -> Option<&[Value<'a>]> {
        match self {
            Value::List(items) => Some(items),
            _ => None,
        }
    }

    /// The dictionary, if this is one.
    pub fn as_dict(&self) -> Option<&Dict<'a>> {
        match self {
            Value::Dict(d) => Some(d),
            _ => None,
        }
    }

    /// A short name of the kind of value, for error messages.
    pub fn kind(&self) -> &'static str {
        match self {
            Value::Int(_) => "integer",
            Value::Bytes(_) => "byte string",
            Value::List(_) => "list",
            Value::Dict(_) => "dictionary",
        }
    }

    /// Copies this value into an [`Owned`] one (dictionary keys become sorted).
    pub fn to_owned_value(&self) -> Owned {
        match self {
            Value::Int(n) => Owned::Int(*n),
            Value::Bytes(b) => Owned::Bytes(b.to_vec()),
            Value::List(items) => Owned::List(items.iter().map(Value::to_owned_value).collect()),
            Value::Dict(d) => Owned::Dict(
                d.entries
                    .iter()
                    .map(|(k, v)| (k.to_vec(), v.to_owned_value()))
                    .collect(),
            ),
        }
    }
}

impl<'a> Dict<'a> {
    /// The value under `key`; keys are unique because the decoder refuses duplicates.
    pub fn get(&self, key: &[u8]) -> Option<&Value<'a>> {
        self.entries.iter().find(|(k, _)| *k == key).map(|(_, v)| v)
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the dictionary has no entries.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// Decodes exactly one value spanning the whole input; trailing bytes are an error.
pub fn decode(input: &[u8]) -> Result<Value<'_>, BencodeError> {
    let (value, end) = decode_prefix(input)?;
    if end != input.len() {
        return Err(BencodeError::TrailingBytes { offset: end });
    }
    Ok(value)
}

/// Decodes one value at the start of `input` and returns it with the number of
/// bytes it used; whatever follows is left alone (BEP 9 `data` messages append
/// the piece after the dictionary).
pub fn decode_prefix(input: &[u8]) -> Result<(Value<'_>, usize), BencodeError> {
    Decoder { input, pos: 0 }.run()
}

/// A container being filled, on the decoder's explicit stack.
enum Frame<'a> {
    List {
        items: Vec<Value<'a>>,
    },
    Dict {
        start: usize,
        entries: Vec<(&'a [u8], Value<'a>)>,
        /// A key read whose value has not been read yet.
        pending_key: Option<&'a [u8]>,
        /// All keys so far, built only once keys arrive out of order; while they
        /// are sorted, comparing with the last key suffices to catch duplicates.
        seen: Option<BTreeSet<&'a [u8]>>,
    },
}

struct Decoder<'a> {
    input: &'a [u8],
    pos: usize,
}

impl<'a> Decoder<'a> {
    fn peek(&self) -> Result<u8, BencodeError> {
        self.input
            .get(self.pos)
            .copied()
            .ok_or(BencodeError::UnexpectedEof { offset: self.pos })
    }

    fn run(mut self) -> Result<(Value<'a>, usize), BencodeError> {
        let mut stack: Vec<Frame<'a>> = Vec::new();
        loop {
            let byte = self.peek()?;
            let offset = self.pos;
            let completed = match stack.last_mut() {
                Some(Frame::Dict {
                    start,
                    entries,
                    pending_key: pending @ None,
                    seen,
                }) => {
                    if byte == b'e' {
                        let raw = self.input.get(*start..offset + 1).unwrap_or_default();
                        let entries = std::mem::take(entries);
                        stack.pop();
                        self.pos += 1;
                        Value::Dict(Dict { entries, raw })
                    } else if byte.is_ascii_digit() {
                        let key = self.string()?;
                        check_key(key, offset, entries, seen)?;
                        *pending = Some(key);
                        continue;
                    } else {
                        return Err(BencodeError::KeyNotString { offset });
                    }
                }
                top => match byte {
                    b'e' => match top {
                        Some(Frame::List { items }) => {
                            let items = std::mem::take(items);
                            stack.pop();
                            self.pos += 1;
                            Value::List(items)
                        }
                        Some(Frame::Dict {
                            pending_key: Some(key),
                            ..
                        }) => {
                            return Err(BencodeError::MissingValue {
                                offset,
                                key: String::from_utf8_lossy(key).into_owned(),
                            });
                        }
                        _ => return Err(BencodeError::UnexpectedByte { offset, byte }),
                    },
                    b'i' => Value::Int(self.integer()?),
                    b'0'..=b'9' => Value::Bytes(self.string()?),
                    b'l' | b'd' => {
                        if stack.len() >= MAX_DEPTH {
                            return Err(BencodeError::TooDeep {
                                offset,
                                limit: MAX_DEPTH,
                            });
                        }
                        self.pos += 1;
                        stack.push(if byte == b'l' {
                            Frame::List { items: Vec::new() }
                        } else {
                            Frame::Dict {
                                start: offset,
                                entries: Vec::new(),
                                pending_key: None,
                                seen: None,
                            }
                        });
                        continue;
                    }
                    _ => return Err(BencodeError::UnexpectedByte { offset, byte }),
                },
            };
            match stack.last_mut() {
                None => return Ok((completed, self.pos)),
                Some(Frame::List { items }) => items.push(completed),
                Some(Frame::Dict {
                    entries,
                    pending_key,
                    ..
                }) => match pending_key.take() {
                    Some(key) => entries.push((key, completed)),
                    // Unreachable: a dict frame without a pending key reads keys
                    // above and never produces a value. Kept as an error, not a panic.
                    None => return Err(BencodeError::KeyNotString { offset }),
                },
            }
        }
    }

    /// Reads `i<digits>e` at `self.pos`.
    fn integer(&mut self) -> Result<i64, BencodeError> {
        let offset = self.pos;
        let invalid = |reason| BencodeError::InvalidInteger { offset, reason };
        let rest = self.input.get(offset + 1..).unwrap_or_default();
        let Some(len) = rest.iter().position(|&b| b == b'e') else {
            return Err(BencodeError::UnexpectedEof {
                offset: self.input.len(),
            });
        };
        let text = rest.get(..len).unwrap_or_default();
        let (negative, digits) = match text.split_first() {
            Some((b'-', digits)) => (true, digits),
            _ => (false, text),
        };
        if digits.is_empty() {
            return Err(invalid("no digits"));
        }
        if !digits.iter().all(u8::is_ascii_digit) {
            return Err(invalid("not a decimal number"));
        }
        if digits.len() > 1 && digits.first() == Some(&b'0') {
            return Err(invalid("leading zero"));
        }
        if negative && digits == b"0" {
            return Err(invalid("negative zero"));
        }
        // Accumulate towards the sign so that i64::MIN is representable.
        let mut value: i64 = 0;
        for &d in digits {
            let d = i64::from(d - b'0');
            value = value
                .checked_mul(10)
                .and_then(|v| {
                    if negative {
                        v.checked_sub(d)
                    } else {
                        v.checked_add(d)
                    }
                })
                .ok_or(BencodeError::IntegerOverflow { offset })?;
        }
        self.pos = offset + 1 + len + 1;
        Ok(value)
    }

    /// Reads `<len>:<bytes>` at `self.pos`, checking the length against what is left.
    fn string(&mut self) -> Result<&'a [u8], BencodeError> {
        let offset = self.pos;
        let invalid = |reason| BencodeError::InvalidLength { offset, reason };
        let rest = self.input.get(offset..).unwrap_or_default();
        let digits_len = rest.iter().take_while(|b| b.is_ascii_digit()).count();
        match rest.get(digits_len) {
            None => {
                return Err(BencodeError::UnexpectedEof {
                    offset: self.input.len(),
                })
            }
            Some(b':') => {}
            Some(_) => return Err(invalid("expected ':' after the length")),
        }
        let digits = rest.get(..digits_len).unwrap_or_default();
        if digits.len() > 1 && digits.first() == Some(&b'0') {
            return Err(invalid("leading zero"));
        }
        let mut length: usize = 0;
        for &d in digits {
            length = length
                .checked_mul(10)
                .and_then(|v| v.checked_add(usize::from(d - b'0')))
                .ok_or(invalid("length does not fit in memory"))?;
        }
        let data_start = offset + digits_len + 1;
        let remaining = self.input.len().saturating_sub(data_start);
        if length > remaining {
            return Err(BencodeError::StringTooLong {
                offset,
                length,
                remaining,
            });
        }
        let bytes = self
            .input
            .get(data_start..data_start + length)
            .unwrap_or_default();
        self.pos = data_start + length;
        Ok(bytes)
    }
}

/// Refuses `key` if the dictionary already has it.
fn check_key<'a>(
    key: &'a [u8],
    offset: usize,
    entries: &[(&'a [u8], Value<'a>)],
    seen: &mut Option<BTreeSet<&'a [u8]>>,
) -> Result<(), BencodeError> {
    let duplicate = || BencodeError::DuplicateKey {
        offset,
        key: String::from_utf8_lossy(key).into_owned(),
    };
    if let Some(seen) = seen {
        return if seen.insert(key) {
            Ok(())
        } else {
            Err(duplicate())
        };
    }
    match entries.last() {
        Some((last, _)) if key == *last => Err(duplicate()),
        Some((last, _)) if key < *last => {
            // First out-of-order key: from now on track every key in a set.
            let mut set: BTreeSet<&'a [u8]> = entries.iter().map(|(k, _)| *k).collect();
            if !set.insert(key) {
                return Err(duplicate());
            }
            *seen = Some(set);
            Ok(())
        }
        _ => Ok(()),
    }
}

/// Encodes `value` canonically (dictionary keys sorted).
pub fn encode(value: &Owned) -> Vec<u8> {
    let mut out = Vec::new();
    value.encode_into(&mut out);
    out
}

impl Owned {
    /// Appends the canonical encoding of this value to `out`.
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        match self {
            Owned::Int(n) => {
                out.push(b'i');
                out.extend_from_slice(n.to_string().as_bytes());
                out.push(b'e');
            }
            Owned::Bytes(b) => encode_bytes(b, out),
            Owned::List(items) => {
                out.push(b'l');
                for item in items {
                    item.encode_into(out);
                }
                out.push(b'e');
            }
            Owned::Dict(map) => {
                out.push(b'd');
                for (key, value) in map {
                    encode_bytes(key, out);
                    value.encode_into(out);
                }
                out.push(b'e');
            }
        }
    }

    /// The canonical encoding of this value.
    pub fn to_bytes(&self) -> Vec<u8> {
        encode(self)
    }

    /// Starts building a dictionary: `Owned::dict().with("a", 1).build()`.
    pub fn dict() -> DictBuilder {
        DictBuilder::default()
    }

    /// A list from anything convertible into values.
    pub fn list<T: Into<Owned>>(items: impl IntoIterator<Item = T>) -> Owned {
        Owned::List(items.into_iter().map(Into::into).collect())
    }
}

fn encode_bytes(bytes: &[u8], out: &mut Vec<u8>) {
    out.extend_from_slice(bytes.len().to_string().as_bytes());
    out.push(b':');
    out.extend_from_slice(bytes);
}

/// Builds an [`Owned::Dict`] fluently; see [`Owned::dict`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DictBuilder {
    map: BTreeMap<Vec<u8>, Owned>,
}

impl DictBuilder {
    /// Sets `key` to `value` (replacing an earlier value under the same key).
    pub fn with(mut self, key: impl AsRef<[u8]>, value: impl Into<Owned>) -> Self {
        self.map.insert(key.as_ref().to_vec(), value.into());
        self
    }

    /// Sets `key` to `value` when there is one; `None` leaves the key out.
    pub fn with_opt(self, key: impl AsRef<[u8]>, value: Option<impl Into<Owned>>) -> Self {
        match value {
            Some(value) => self.with(key, value),
            None => self,
        }
    }

    /// The finished dictionary.
    pub fn build(self) -> Owned {
        Owned::Dict(self.map)
    }
}

impl From<DictBuilder> for Owned {
    fn from(builder: DictBuilder) -> Self {
        builder.build()
    }
}

impl From<i64> for Owned {
    fn from(n: i64) -> Self {
        Owned::Int(n)
    }
}

impl From<i32> for Owned {
    fn from(n: i32) -> Self {
        Owned::Int(i64::from(n))
    }
}

impl From<u32> for Owned {
    fn from(n: u32) -> Self {
        Owned::Int(i64::from(n))
    }
}

impl From<&str> for Owned {
    fn from(s: &str) -> Self {
        Owned::Bytes(s.as_bytes().to_vec())
    }
}

impl From<String> for Owned {
    fn from(s: String) -> Self {
        Owned::Bytes(s.into_bytes())
    }
}

impl From<&String> for Owned {
    fn from(s: &String) -> Self {
        Owned::Bytes(s.as_bytes().to_vec())
    }
}

impl From<&[u8]> for Owned {
    fn from(b: &[u8]) -> Self {
        Owned::Bytes(b.to_vec())
    }
}

impl From<Vec<u8>> for Owned {
    fn from(b: Vec<u8>) -> Self {
        Owned::Bytes(b)
    }
}

impl<const N: usize> From<[u8; N]> for Owned {
    fn from(b: [u8; N]) -> Self {
        Owned::Bytes(b.to_vec())
    }
}

impl From<Vec<Owned>> for Owned {
    fn from(items: Vec<Owned>) -> Self {
        Owned::List(items)
    }
}

impl From<BTreeMap<Vec<u8>, Owned>> for Owned {
    fn from(map: BTreeMap<Vec<u8>, Owned>) -> Self {
        Owned::Dict(map)
    }
}

impl From<&Value<'_>> for Owned {
    fn from(value: &Value<'_>) -> Self {
        value.to_owned_value()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn err(input: &[u8]) -> BencodeError {
        decode(input).expect_err("should be refused")
    }

    #[test]
    fn decodes_scalars() {
        assert_eq!(decode(b"i42e").unwrap(), Value::Int(42));
        assert_eq!(decode(b"i-42e").unwrap(), Value::Int(-42));
        assert_eq!(decode(b"i0e").unwrap(), Value::Int(0));
        assert_eq!(
            decode(b"i9223372036854775807e").unwrap(),
            Value::Int(i64::MAX)
        );
        assert_eq!(
            decode(b"i-9223372036854775808e").unwrap(),
            Value::Int(i64::MIN)
        );
        assert_eq!(decode(b"4:spam").unwrap(), Value::Bytes(b"spam"));
        assert_eq!(decode(b"0:").unwrap(), Value::Bytes(b""));
    }

    #[test]
    fn refuses_bad_integers() {
        assert!(matches!(
            err(b"i-0e"),
            BencodeError::InvalidInteger {
                reason: "negative zero",
                ..
            }
        ));
        assert!(matches!(
            err(b"i03e"),
            BencodeError::InvalidInteger {
                reason: "leading zero",
                ..
            }
        ));
        assert!(matches!(
            err(b"i-03e"),
            BencodeError::InvalidInteger {
                reason: "leading zero",
                ..
            }
        ));
        assert!(matches!(
            err(b"ie"),
            BencodeError::InvalidInteger {
                reason: "no digits",
                ..
            }
        ));
        assert!(matches!(
            err(b"i-e"),
            BencodeError::InvalidInteger {
                reason: "no digits",
                ..
            }
        ));
        assert!(matches!(err(b"i1x2e"), BencodeError::InvalidInteger { .. }));
        assert!(matches!(err(b"i+1e"), BencodeError::InvalidInteger { .. }));
        assert_eq!(
            err(b"i9223372036854775808e"),
            BencodeError::IntegerOverflow { offset: 0 }
        );
        assert_eq!(
            err(b"i-9223372036854775809e"),
            BencodeError::IntegerOverflow { offset: 0 }
        );
        assert_eq!(err(b"i12"), BencodeError::UnexpectedEof { offset: 3 });
    }

    #[test]
    fn refuses_bad_strings() {
        assert_eq!(
            err(b"5:abc"),
            BencodeError::StringTooLong {
                offset: 0,
                length: 5,
                remaining: 3
            }
        );
        assert!(matches!(err(b"03:abc"), BencodeError::InvalidLength { .. }));
        assert!(matches!(err(b"3x:abc"), BencodeError::InvalidLength { .. }));
        assert!(matches!(
            err(b"99999999999999999999999:a"),
            BencodeError::InvalidLength { .. }
        ));
        assert_eq!(err(b"3"), BencodeError::UnexpectedEof { offset: 1 });
    }

    #[test]
    fn decodes_containers_with_raw_bytes() {
        let input = b"d3:fool1:ai1ee3:bard1:xi0eee";
        let v = decode(input).unwrap();
        let d = v.as_dict().unwrap();
        assert_eq!(d.raw, input);
        let bar = d.get(b"bar").unwrap().as_dict().unwrap();
        assert_eq!(bar.raw, b"d1:xi0ee");
        assert_eq!(d.get(b"foo").unwrap().as_list().unwrap().len(), 2);
        assert_eq!(d.get(b"nope"), None);
    }

    #[test]
    fn dict_keys_unsorted_ok_duplicates_refused() {
        let v = decode(b"d1:bi1e1:ai2ee").unwrap();
        assert_eq!(v.as_dict().unwrap().get(b"a").unwrap().as_int(), Some(2));
        assert_eq!(
            err(b"d1:ai1e1:ai2ee"),
            BencodeError::DuplicateKey {
                offset: 7,
                key: "a".into()
            }
        );
        // A duplicate that is only detectable once keys went out of order.
        assert!(matches!(
            err(b"d1:ai1e1:ci1e1:bi1e1:ci1ee"),
            BencodeError::DuplicateKey { .. }
        ));
        assert!(matches!(
            err(b"d1:ci1e1:ai1e1:ai1ee"),
            BencodeError::DuplicateKey { .. }
        ));
        assert_eq!(err(b"di1ei2ee"), BencodeError::KeyNotString { offset: 1 });
        assert!(matches!(err(b"d1:ae"), BencodeError::MissingValue { .. }));
    }

    #[test]
    fn depth_is_bounded_without_recursion() {
        let deep = vec![b'l'; 100_000];
        assert_eq!(
            err(&deep),
            BencodeError::TooDeep {
                offset: MAX_DEPTH,
                limit: MAX_DEPTH
            }
        );
        let mut ok = vec![b'l'; MAX_DEPTH];
        ok.extend(vec![b'e'; MAX_DEPTH]);
        assert!(decode(&ok).is_ok());
    }

    #[test]
    fn trailing_and_prefix() {
        assert_eq!(err(b"i1ei2e"), BencodeError::TrailingBytes { offset: 3 });
        let (v, used) = decode_prefix(b"d1:ai1eeXYZ").unwrap();
        assert_eq!(used, 8);
        assert_eq!(v.as_dict().unwrap().get(b"a").unwrap().as_int(), Some(1));
        assert_eq!(err(b""), BencodeError::UnexpectedEof { offset: 0 });
        assert!(matches!(
            err(b"e"),
            BencodeError::UnexpectedByte { byte: b'e', .. }
        ));
        assert!(matches!(
            err(b"x"),
            BencodeError::UnexpectedByte { byte: b'x', .. }
        ));
    }

    #[test]
    fn encodes_sorted() {
        let v = Owned::dict()
            .with("zz", 1)
            .with("a", "x")
            .with("m", Owned::list(["p", "q"]))
            .with_opt("none", None::<i64>)
            .build();
        assert_eq!(encode(&v), b"d1:a1:x1:ml1:p1:qe2:zzi1ee");
        assert_eq!(encode(&Owned::Int(-7)), b"i-7e");
    }

    fn arb_owned() -> impl Strategy<Value = Owned> {
        let leaf = prop_oneof![
            any::<i64>().prop_map(Owned::Int),
            proptest::collection::vec(any::<u8>(), 0..16).prop_map(Owned::Bytes),
        ];
        leaf.prop_recursive(6, 64, 8, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..8).prop_map(Owned::List),
                proptest::collection::btree_map(
                    proptest::collection::vec(any::<u8>(), 0..8),
                    inner,
                    0..8
                )
                .prop_map(Owned::Dict),
            ]
        })
    }

    proptest! {
        #[test]
        fn encode_decode_round_trip(value in arb_owned()) {
            let bytes = encode(&value);
            let decoded = decode(&bytes).unwrap();
            prop_assert_eq!(decoded.to_owned_value(), value);
        }

        #[test]
        fn decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
            let _ = decode(&bytes);
            let _ = decode_prefix(&bytes);
        }

        #[test]
        fn decode_never_panics_on_bencode_like_bytes(
            bytes in proptest::collection::vec(
                prop_oneof![Just(b'i'), Just(b'l'), Just(b'd'), Just(b'e'), Just(b':'),
                            Just(b'-'), Just(b'0'), Just(b'1'), Just(b'2'), any::<u8>()],
                0..256)
        ) {
            let _ = decode(&bytes);
        }
    }
}
