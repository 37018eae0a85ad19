#!/usr/bin/python3
"""ICMP echo probes, ping-style ("seq=N time=X ms" lines), for hosts without iputils-ping.

  rtt_probe.py DST [--count 20] [--interval 0.2] [--timeout 2]

Sends COUNT echo requests INTERVAL s apart from a raw socket (root) and prints each reply's
round-trip time; a probe unanswered within --timeout is counted lost. Bounded: at most
COUNT * INTERVAL + TIMEOUT seconds.
"""
import argparse
import os
import select
import socket
import struct
import sys
import time


def checksum(data):
    if len(data) % 2:
        data += b"\0"
    s = sum(struct.unpack("!%dH" % (len(data) // 2), data))
    s = (s >> 16) + (s & 0xFFFF)
    s += s >> 16
    return ~s & 0xFFFF


def echo_request(ident, seq):
    payload = struct.pack("!d", time.monotonic()) + b"capwise-yield".ljust(48, b".")
    header = struct.pack("!BBHHH", 8, 0, 0, ident, seq)
    return struct.pack("!BBHHH", 8, 0, checksum(header + payload), ident, seq) + payload


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("dst")
    ap.add_argument("--count", type=int, default=20)
    ap.add_argument("--interval", type=float, default=0.2)
    ap.add_argument("--timeout", type=float, default=2.0)
    a = ap.parse_args()
    sock = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
    ident = os.getpid() & 0xFFFF
    sent = {}
    received = 0
    start = time.monotonic()
    next_send = start
    seq = 0
    deadline = start + a.count * a.interval + a.timeout
    while time.monotonic() < deadline and (seq < a.count or len(sent) > 0):
        now = time.monotonic()
        if seq < a.count and now >= next_send:
            seq += 1
            sock.sendto(echo_request(ident, seq), (a.dst, 0))
            sent[seq] = now
            next_send += a.interval
        for s, t in list(sent.items()):
            if now - t > a.timeout:
                del sent[s]
        wait = max(0.0, min(next_send - now if seq < a.count else a.timeout, 0.05))
        ready, _, _ = select.select([sock], [], [], wait)
        if not ready:
            continue
        pkt = sock.recv(2048)
        ihl = (pkt[0] & 0x0F) * 4
        typ, _code, _sum, rid, rseq = struct.unpack("!BBHHH", pkt[ihl:ihl + 8])
        if typ == 0 and rid == ident and rseq in sent:
            rtt = (time.monotonic() - sent.pop(rseq)) * 1000
            received += 1
            print("seq=%d time=%.1f ms" % (rseq, rtt), flush=True)
    print("%d sent, %d received" % (seq, received), flush=True)
    return 0 if received else 1


if __name__ == "__main__":
    sys.exit(main())
