//! Bencode decoding: never panics; what decodes re-encodes canonically and
//! decodes again to the same value; `decode_prefix` agrees with `decode`.
#![no_main]

use capwise_engine::bencode::{decode, decode_prefix, encode, Value};
use libfuzzer_sys::fuzz_target;

/// Every dictionary's `raw` is exactly the bytes it decodes from.
fn check_raw(value: &Value<'_>) {
    match value {
        Value::Dict(d) => {
            let again = decode(d.raw).expect("a dict's raw bytes decode on their own");
            assert_eq!(again, Value::Dict(d.clone()));
            for (_, v) in &d.entries {
                check_raw(v);
            }
        }
        Value::List(items) => items.iter().for_each(check_raw),
        _ => {}
    }
}

fuzz_target!(|data: &[u8]| {
    let whole = decode(data);
    if let Ok((value, used)) = decode_prefix(data) {
        assert!(used <= data.len());
        assert_eq!(decode(&data[..used]).as_ref(), Ok(&value));
        if used == data.len() {
            assert_eq!(whole.as_ref(), Ok(&value));
        } else {
            assert!(whole.is_err());
        }
    } else {
        assert!(whole.is_err());
    }
    let Ok(value) = whole else { return };
    check_raw(&value);
    let owned = value.to_owned_value();
    let bytes = encode(&owned);
    let again = decode(&bytes).expect("canonical encoding decodes");
    assert_eq!(again.to_owned_value(), owned);
    // Canonical form is a fixed point.
    assert_eq!(encode(&again.to_owned_value()), bytes);
});
