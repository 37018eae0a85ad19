#!/usr/bin/python3
"""Print "WALLCLOCK RX_BYTES" for interface DEV every INTERVAL s (from /proc/net/dev of the
network namespace it runs in), for at most MAX_SECONDS or until SIGTERM/SIGINT.

  sample_rx.py DEV [--interval 0.5] [--max-seconds 600]

The receiver's interface counters see every byte that crossed the shaped link toward it, from
any client, so the background's share is measured the same way for libtorrent and capwise.
"""
import argparse
import signal
import sys
import time

STOP = False


def on_signal(_sig, _frm):
    global STOP
    STOP = True


def rx_bytes(dev):
    with open("/proc/net/dev") as f:
        for line in f.readlines()[2:]:
            name, _, rest = line.partition(":")
            if name.strip() == dev:
                return int(rest.split()[0])
    raise SystemExit("no interface %s in /proc/net/dev" % dev)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("dev")
    ap.add_argument("--interval", type=float, default=0.5)
    ap.add_argument("--max-seconds", type=float, default=600.0)
    a = ap.parse_args()
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    start = time.monotonic()
    for i in range(int(a.max_seconds / a.interval) + 1):
        if STOP:
            break
        print("%.3f %d" % (time.time(), rx_bytes(a.dev)), flush=True)
        # sleep to the next tick of a fixed grid, so that late wakeups do not add up
        time.sleep(max(0.0, start + (i + 1) * a.interval - time.monotonic()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
