#!/usr/bin/env python3
"""A flood of half-open MSE handshakes (issue 13's Diffie-Hellman bound).

Opens RATE TCP connections a second, from SOURCES loopback addresses in turn, to HOST:PORT for SECS seconds. Each sends
what an MSE initiator sends first, a 96-byte public key Ya and 0-512 bytes of
PadA (random bytes: the responder cannot tell them from a real key, so it must
do its exponentiations), then nothing. At most OPEN stay open; the oldest is
closed to make room. While it runs, samples the CPU time of process PID from
/proc/PID/stat. Prints one line of `key=value` figures:
  made, refused (connect failed), dropped_by_peer, cpu_pct (of one core), secs.
Bounded: SECS, RATE and OPEN bound the loop's count, time and sockets.
"""

import argparse
import os
import random
import socket
import time


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    # utime and stime: fields 14 and 15 of stat(5); index 11, 12 after the name.
    return (int(fields[11]) + int(fields[12])) / ticks


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--pid", type=int, required=True)
    ap.add_argument("--rate", type=int, default=1000)
    ap.add_argument("--secs", type=float, default=10.0)
    ap.add_argument("--open", type=int, default=800)
    ap.add_argument("--sources", type=int, default=1,
                    help="source addresses 127.0.1.1 .. 127.0.1.N, in turn (N <= 250)")
    args = ap.parse_args()

    rng = random.Random(7)
    conns = []
    made = refused = dropped = 0
    start = time.monotonic()
    cpu0 = cpu_seconds(args.pid)
    interval = 1.0 / args.rate
    next_at = start
    deadline = start + args.secs
    while time.monotonic() < deadline and made + refused < int(args.rate * args.secs) + 1:
        now = time.monotonic()
        if now < next_at:
            time.sleep(min(next_at - now, 0.01))
            continue
        next_at += interval
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        s.settimeout(1.0)
        try:
            s.bind((f"127.0.1.{1 + (made + refused) % min(args.sources, 250)}", 0))
            s.connect((args.host, args.port))
            s.sendall(rng.randbytes(96 + rng.randrange(513)))
            s.setblocking(False)
        except OSError:
            refused += 1
            s.close()
            continue
        made += 1
        conns.append(s)
        if len(conns) > args.open:
            old = conns.pop(0)
            try:
                if old.recv(4096, socket.MSG_PEEK) == b"":
                    dropped += 1
            except BlockingIOError:
                pass
            except OSError:
                dropped += 1
            old.close()
    secs = time.monotonic() - start
    cpu = cpu_seconds(args.pid) - cpu0
    for s in conns:
        s.close()
    print(f"made={made} refused={refused} dropped_by_peer={dropped} "
          f"cpu_pct={100.0 * cpu / secs:.1f} secs={secs:.1f}")


if __name__ == "__main__":
    main()
