#!/usr/bin/python3
"""A delay line on a TUN device: every packet the kernel routes into DEV comes back out of DEV,
unchanged, DELAY ms later, and the kernel forwards it on by its destination.

  delay_line.py DEV --delay-ms 20 [--max-seconds 900] [--max-queued 20000]

This kernel has no netem. A TCP or UDP relay would split the end-to-end flows (two congestion
controllers, an RTT that means nothing), so the delay is added to the IP packets themselves.
DEV must exist (`ip tuntap add dev DEV mode tun`) and be up; the router's policy routing sends
the traffic to be delayed into it. Packets beyond --max-queued waiting are dropped (bounded
memory); the line exits after --max-seconds (bounded time) or on SIGTERM/SIGINT. Every 5 s it
prints its counters, with how late (past their due time) packets left: the line's own jitter,
which would otherwise pass for queueing delay.
"""
import argparse
import collections
import errno
import fcntl
import gc
import os
import select
import signal
import struct
import sys
import time

TUNSETIFF = 0x400454CA
IFF_TUN = 0x0001
IFF_NO_PI = 0x1000
READS_PER_WAKEUP = 512
LATE = 0.005
STATS_EVERY = 5.0

STOP = False


def on_signal(_sig, _frm):
    global STOP
    STOP = True


def open_tun(name):
    fd = os.open("/dev/net/tun", os.O_RDWR | os.O_NONBLOCK)
    fcntl.ioctl(fd, TUNSETIFF, struct.pack("16sH", name.encode(), IFF_TUN | IFF_NO_PI))
    return fd


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("dev")
    ap.add_argument("--delay-ms", type=float, default=20.0)
    ap.add_argument("--max-seconds", type=float, default=900.0)
    ap.add_argument("--max-queued", type=int, default=20000)
    a = ap.parse_args()
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    fd = open_tun(a.dev)
    # No reference cycles are made here: the cyclic collector's pauses would only add jitter.
    gc.disable()
    delay = a.delay_ms / 1000.0
    deadline = time.monotonic() + a.max_seconds
    # One constant delay for every packet: release times are in arrival order, so a FIFO will do.
    line = collections.deque()
    passed = dropped = late = 0
    worst_lateness = recent_worst = 0.0   # how much later than due a packet left: the line's own jitter
    print("delay line on %s: %.1f ms" % (a.dev, a.delay_ms), flush=True)

    def stats():
        nonlocal recent_worst
        print("delay line: at %.3f %d packets passed, %d dropped, %d more than %.0f ms late, worst %.1f ms late "
              "(%.1f ms since the last line)" % (time.time(), passed, dropped, late, LATE * 1000,
                                                 worst_lateness * 1000, recent_worst * 1000), flush=True)
        recent_worst = 0.0

    next_stats = time.monotonic() + STATS_EVERY
    while not STOP:
        now = time.monotonic()
        if now >= deadline:
            break
        if now >= next_stats:
            stats()
            next_stats = now + STATS_EVERY
        while line and line[0][0] <= now:
            due, pkt = line.popleft()
            lateness = now - due
            worst_lateness = max(worst_lateness, lateness)
            recent_worst = max(recent_worst, lateness)
            late += lateness > LATE
            try:
                os.write(fd, pkt)
                passed += 1
            except OSError as e:
                if e.errno not in (errno.EAGAIN, errno.EINVAL, errno.EIO):
                    raise
                dropped += 1
        timeout = min(line[0][0] - now, 0.5) if line else 0.5
        try:
            ready, _, _ = select.select([fd], [], [], max(timeout, 0.0))
        except InterruptedError:
            continue
        if not ready:
            continue
        arrived = time.monotonic()
        for _ in range(READS_PER_WAKEUP):
            try:
                pkt = os.read(fd, 65535)
            except BlockingIOError:
                break
            if len(line) >= a.max_queued:
                dropped += 1
            else:
                line.append((arrived + delay, pkt))
    stats()
    return 0


if __name__ == "__main__":
    sys.exit(main())
