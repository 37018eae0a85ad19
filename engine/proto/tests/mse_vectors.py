#!/usr/bin/env python3
"""Known-answer vectors for tests/mse_kat.rs, computed independently of the
Rust code (Python's pow, hashlib and a textbook RC4). Run once; the numbers
it prints are pasted into mse_kat.rs.

    python3 engine/proto/tests/mse_vectors.py
"""
import hashlib

P = int(
    "FFFFFFFFFFFFFFFFC90FDAA22168C234C4C6628B80DC1CD129024E088A67CC74020BBEA6"
    "3B139B22514A08798E3404DDEF9519B3CD3A431B302B0A6DF25F14374FE1356D6D51C245"
    "E485B576625E7EC6F44C42E9A63A36210000000000090563",
    16,
)
XA = bytes(range(1, 21))  # private keys: 20 bytes, big-endian
XB = bytes(range(0xA0, 0xB4))
INFO_HASH = bytes.fromhex("0123456789abcdef0123456789abcdef01234567")


def rc4_keystream(key, n, discard=1024):
    s = list(range(256))
    j = 0
    for i in range(256):
        j = (j + s[i] + key[i % len(key)]) & 0xFF
        s[i], s[j] = s[j], s[i]
    i = j = 0
    out = []
    for _ in range(discard + n):
        i = (i + 1) & 0xFF
        j = (j + s[i]) & 0xFF
        s[i], s[j] = s[j], s[i]
        out.append(s[(s[i] + s[j]) & 0xFF])
    return bytes(out[discard:])


def sha1(*parts):
    return hashlib.sha1(b"".join(parts)).digest()


def b96(n):
    return n.to_bytes(96, "big")


xa = int.from_bytes(XA, "big")
xb = int.from_bytes(XB, "big")
ya, yb = pow(2, xa, P), pow(2, xb, P)
s = pow(yb, xa, P)
assert s == pow(ya, xb, P)
key_a = sha1(b"keyA", b96(s), INFO_HASH)
key_b = sha1(b"keyB", b96(s), INFO_HASH)
req2_xor_req3 = bytes(
    x ^ y for x, y in zip(sha1(b"req2", INFO_HASH), sha1(b"req3", b96(s)))
)
print("YA", b96(ya).hex())
print("YB", b96(yb).hex())
print("S", b96(s).hex())
print("KEY_A", key_a.hex())
print("KEY_B", key_b.hex())
print("REQ1", sha1(b"req1", b96(s)).hex())
print("REQ2_XOR_REQ3", req2_xor_req3.hex())
print("STREAM_A", rc4_keystream(key_a, 16).hex())
print("STREAM_B", rc4_keystream(key_b, 16).hex())
