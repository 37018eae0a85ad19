#!/usr/bin/env python3
"""Writes the small, committed seed corpora under fuzz/seeds/<target>/.

The .torrent seeds come from engine/tests/fixtures/torrents (hostile cases)
and from `capwise create` (real torrents, copied into fuzz/seeds/created/);
the rest are spelled here: tracker replies, UDP packets, handshakes, resume
files, network files and recorded peer-wire streams in the wire_stream
target's input format (see fuzz_targets/wire_stream.rs). The fuzz targets
themselves check that every seed message re-encodes byte for byte with the
crate's codec.

Run from the repository root: python3 fuzz/seeds/make_seeds.py
"""
import hashlib
import os
import shutil
import struct

ROOT = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(ROOT))
FIXTURES = os.path.join(REPO, "engine", "tests", "fixtures", "torrents")
CREATED = os.path.join(ROOT, "created")


def out(target, name, data):
    d = os.path.join(ROOT, target)
    os.makedirs(d, exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def ben(v):
    if isinstance(v, int):
        return b"i%de" % v
    if isinstance(v, str):
        v = v.encode()
    if isinstance(v, bytes):
        return b"%d:%s" % (len(v), v)
    if isinstance(v, list):
        return b"l" + b"".join(ben(x) for x in v) + b"e"
    if isinstance(v, dict):
        items = sorted((k.encode() if isinstance(k, str) else k, x) for k, x in v.items())
        return b"d" + b"".join(ben(k) + ben(x) for k, x in items) + b"e"
    raise TypeError(v)


# --- torrents: fixtures (small ones) and real created torrents ------------
torrents = {}
for name in sorted(os.listdir(FIXTURES)):
    data = open(os.path.join(FIXTURES, name), "rb").read()
    if len(data) <= 4096:
        torrents["fixture_" + name] = data
for name in sorted(os.listdir(CREATED)):
    torrents["created_" + name] = open(os.path.join(CREATED, name), "rb").read()
for name, data in torrents.items():
    out("metainfo", name, data)
    out("bencode", name, data)

# --- tracker replies ------------------------------------------------------
v4 = bytes([192, 168, 1, 2]) + struct.pack(">H", 6881) + bytes([10, 0, 0, 1]) + struct.pack(">H", 51413)
v6 = bytes(15) + b"\x01" + struct.pack(">H", 6881)
replies = {
    "compact": ben({"interval": 1800, "min interval": 60, "complete": 5, "incomplete": 3, "peers": v4}),
    "dict_peers": ben({"interval": 900, "peers": [{"ip": "10.1.2.3", "port": 6881, "peer id": "A" * 20},
                                                   {"ip": "::1", "port": 6882}]}),
    "peers6": ben({"interval": 1800, "peers": b"", "peers6": v6}),
    "failure": ben({"failure reason": "unregistered torrent"}),
    "warning": ben({"interval": 60, "warning message": "slow down", "peers": v4}),
    "no_interval": ben({"peers": v4[:6]}),
}
for name, data in replies.items():
    out("http_tracker", name, data)
    out("bencode", "tracker_" + name, data)

# --- UDP tracker packets (BEP 15) -----------------------------------------
tid = 0x12345678
out("udp_tracker", "connect", struct.pack(">IIQ", 0, tid, 0x41727101980))
out("udp_tracker", "announce_v4", struct.pack(">IIIII", 1, tid, 1800, 3, 5) + v4)
out("udp_tracker", "announce_v6", struct.pack(">IIIII", 1, tid, 1800, 0, 1) + v6)
out("udp_tracker", "announce_empty", struct.pack(">IIIII", 1, tid, 120, 0, 0))
out("udp_tracker", "error", struct.pack(">II", 3, tid) + b"torrent not registered")

# --- handshakes -----------------------------------------------------------
proto = b"\x13BitTorrent protocol"
ours = bytearray(8)
ours[5] |= 0x10
ours[7] |= 0x04
out("handshake", "fast_ext", proto + bytes(ours) + bytes(range(20)) + b"-CW0001-abcdefghijkl")
out("handshake", "plain", proto + bytes(8) + b"\xaa" * 20 + b"-qB4650-012345678901")

# --- extension handshakes (BEP 10) ----------------------------------------
ext = {
    "capwise": ben({"m": {}, "reqq": 4000, "v": "capwise 0.1.0"}),
    "libtorrent": ben({"m": {"ut_metadata": 2, "ut_pex": 1, "lt_donthave": 7}, "metadata_size": 31235,
                       "p": 6881, "reqq": 500, "v": "libTorrent 2.0.9", "yourip": b"\x7f\x00\x00\x01"}),
    "negative_reqq": ben({"m": {}, "reqq": -1}),
    "huge_reqq": ben({"m": {}, "reqq": 2 ** 62}),
}
for name, data in ext.items():
    out("extension_handshake", name, data)
    out("bencode", "ext_" + name, data)
out("bencode", "nested", b"l" * 60 + b"i0e" + b"e" * 60)
out("bencode", "too_deep", b"l" * 70 + b"e" * 70)

# --- magnet URIs ----------------------------------------------------------
magnets = {
    "hex": "magnet:?xt=urn:btih:c9e15763f722f23e98a29decdfae341b98d53056&dn=Some+Name&tr=udp%3A%2F%2Ftracker.example%3A1337&xl=1048576",
    "base32": "magnet:?xt=urn:btih:ZHQVOY7XELZD5GFCTXW56LRUDOMNKMCW&dn=x",
    "numbered": "magnet:?xt.1=urn:btih:c9e15763f722f23e98a29decdfae341b98d53056&tr.1=http://a/ann&tr.2=http://b/ann",
    "v2": "magnet:?xt=urn:btmh:1220caf1e1c30e81cb361b9ee167c4aa64228a7fa4fa9f6105232b28ad099f3a302e&xt=urn:btih:c9e15763f722f23e98a29decdfae341b98d53056",
    "utf8": "magnet:?xt=urn:btih:c9e15763f722f23e98a29decdfae341b98d53056&dn=%E6%97%A5%E6%9C%AC%20%2B",
}
for name, data in magnets.items():
    out("magnet", name, data)

# --- resume data (format in engine/src/storage/resume.rs) -----------------
def resume(pieces, bitfield, stamps):
    body = b"CWRESUME" + struct.pack("<H", 1) + bytes(range(20)) + struct.pack("<II", pieces, len(stamps))
    body += bitfield
    for length, secs, nanos in stamps:
        body += struct.pack("<QqI", length, secs, nanos)
    return body + hashlib.sha1(body).digest()

# First byte: the target's mode (bit 0: append a fresh checksum, bit 1: counts from mode).
out("resume", "valid", b"\x00" + resume(10, b"\xff\xc0", [(40000, 1700000000, 5), (0, -1, 0)]))
out("resume", "valid_unsummed", b"\x01" + resume(10, b"\xff\xc0", [(40000, 1700000000, 5)])[:-20])
out("resume", "no_files", b"\x00" + resume(3, b"\xa0", []))

# --- network files --------------------------------------------------------
nets = {
    "hotspot": 'id = "pixel-hotspot"\nname = "Pixel hotspot"\nkind = "wifi"\nmetered = "yes"\nroaming = false\ninterface = "wlan0"\n',
    "flag": 'id = "home"\nmetered = false\nkind = "ethernet"\n',
    "guess": 'id = "cafe"\nmetered = "guess-yes"\nkind = "cellular"\nroaming = true\n',
    "minimal": 'id = "x"\n',
}
for name, data in nets.items():
    out("network_file", name, data)

# --- recorded peer-wire streams (wire_stream's input format) --------------
def msg(mid=None, payload=b""):
    if mid is None:
        return struct.pack(">I", 0)
    return struct.pack(">IB", 1 + len(payload), mid) + payload

def chunks(peer, stream, size):
    ops = b""
    for i in range(0, len(stream), size):
        part = stream[i:i + size]
        ops += bytes([(peer << 4) | 0, len(part)]) + part
    return ops

ext_hs = msg(20, b"\x00" + ext["libtorrent"])
# flags 0x3D: two peers, both speak BEP 6 and BEP 10; 4 pieces of 16 KiB,
# the last 371 bytes; max_len 16 KiB + 9; we have piece 0.
header = bytes([0x3D, 3, 0, 10, 0]) + b"\x80"
seeder = ext_hs + msg(0x0E) + msg(1) + msg(None)
ops = chunks(0, seeder, 7)
ops += bytes([0x06, 0x11] * 6)        # answer six requests
ops += bytes([0x08, 0x01, 0x08, 0x00])  # one piece verifies, one fails
ops += bytes([0x07, 40])              # ten seconds pass
leecher = ext_hs + msg(0x0F) + msg(2) + msg(6, struct.pack(">III", 0, 0, 16384)) \
    + msg(8, struct.pack(">III", 0, 0, 16384)) + msg(4, struct.pack(">I", 2)) + msg(9, struct.pack(">H", 6881))
ops += chunks(1, leecher, 5)
ops += bytes([0x09, 0x00, 0x09, 0x01, 0x07, 200, 0x0B, 0x0A])
out("wire_stream", "fast_peers", header + ops)

# flags 0x01: two peers, no extensions; a plain bitfield peer sends the tail
# piece unasked (371 bytes of data), then a bad message id.
header = bytes([0x01, 3, 0, 10, 0]) + b"\x00"
plain = msg(5, b"\xf0") + msg(1) + msg(7, struct.pack(">II", 3, 0) + b"\x5a" * 371) + msg(21, b"x")
out("wire_stream", "plain_peer", header + chunks(0, plain, 200))

# A small max_len (0x80 | 8): the bitfield fits, a request is too long.
header = bytes([0x00, 7, 1, 0x80, 0x88]) + b"\x00"
out("wire_stream", "small_max_len", header + chunks(0, msg(5, b"\xff") + msg(6, struct.pack(">III", 0, 0, 16384)), 3))

# ut_pex (BEP 11) payloads: IPv4 and IPv6 with flags, dropped only, and a
# short added.f (flags missing for the second peer).
v4 = bytes([44, 0, 0, 1, 0x1a, 0xe1, 10, 0, 0, 2, 0, 80])
v6 = bytes(range(1, 17)) + b"\xc8\xd5"
out("ut_pex", "both_families", ben({"added": v4, "added.f": b"\x02\x10",
                                    "added6": v6, "added6.f": b"\x05",
                                    "dropped": bytes([1, 1, 1, 1, 1, 0]), "dropped6": v6}))
out("ut_pex", "dropped_only", ben({"added": b"", "dropped": v4}))
out("ut_pex", "short_flags", ben({"added": v4, "added.f": b"\x01"}))

# LSD (BEP 14) packets: libtorrent's shape on both groups, two info-hashes,
# and a bare-LF one with odd header case.
ih1 = "ab" * 20
ih2 = "0123456789abcdef0123456789ABCDEF01234567"
out("lsd", "libtorrent_v4", "BT-SEARCH * HTTP/1.1\r\nHost: 239.192.152.143:6771\r\n"
    "Port: 6881\r\nInfohash: %s\r\ncookie: 5a3b\r\n\r\n\r\n" % ih1)
out("lsd", "two_hashes_v6", "BT-SEARCH * HTTP/1.1\r\nHost: [ff15::efc0:988f]:6771\r\n"
    "Port: 51413\r\nInfohash: %s\r\nInfohash: %s\r\n\r\n\r\n" % (ih1, ih2))
out("lsd", "lf_case", "bt-search * http/1.1\nPORT: 1\ninfohash: %s\nCOOKIE: x\n\n" % ih2)

# ut_metadata (BEP 9), in the ut_metadata target's input format: a length
# byte, an extension handshake, then messages each with a 2-byte length.
def framed(b):
    return struct.pack(">H", len(b)) + b
hello = b"d1:md11:ut_metadatai2ee13:metadata_sizei20000ee"
block0 = b"d8:msg_typei1e5:piecei0e10:total_sizei20000ee" + b"\xaa" * 16384
out("ut_metadata", "two_blocks", bytes([len(hello)]) + hello + framed(block0)
    + framed(b"d8:msg_typei2e5:piecei1ee"))
huge = b"d1:md11:ut_metadatai2ee13:metadata_sizei4294967296ee"
out("ut_metadata", "huge_size", bytes([len(huge)]) + huge)
