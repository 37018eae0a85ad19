#!/usr/bin/python3
"""The yield benchmark's table, from what tests/bench/yield/run left in WORK.

  report.py WORK --rows lt-utp,capwise-utp,lt-tcp --rate-bps N [--rate 10mbit --delay-ms 20 ...]

Per row (WORK/ROW/): marks (phase name, wall clock), rx (B's interface: wall clock, rx bytes,
every 0.5 s), alone.json / with.json (iperf3 -J of the foreground without / with the
background), alone.ping / with.ping (ping B->A beside it). Goals (issue 13): the foreground keeps
>= 90% of its throughput alone, and the background carries >= 80% of the link again within 5 s
of the foreground's end. "The link" is the rate B's interface received during the foreground
alone (wire bytes: what the shaped link really delivers), printed beside the nominal tbf rate.
Exits 1 if a row that ran left no usable figures.
"""
import argparse
import json
import os
import re
import statistics
import sys

KEEP_GOAL = 0.90
TAKE_BACK_SHARE = 0.80
TAKE_BACK_SECONDS = 5.0
# Ethernet frame bytes per TCP payload byte for full-size segments with timestamps (1514/1448):
# turns the foreground's goodput into the wire bytes it took on B's interface.
WIRE_PER_TCP_PAYLOAD = 1514 / 1448
NAMES = {"lt-utp": "libtorrent uTP", "capwise-utp": "capwise uTP", "lt-tcp": "libtorrent TCP",
         "capwise-tcp": "capwise TCP"}


def read_marks(d):
    marks = {}
    with open(os.path.join(d, "marks")) as f:
        for line in f:
            k, v = line.split()
            marks[k] = float(v)
    return marks


def read_rx(d):
    out = []
    with open(os.path.join(d, "rx")) as f:
        for line in f:
            parts = line.split()
            if len(parts) == 2:
                out.append((float(parts[0]), int(parts[1])))
    return out


def rate_bps(rx, t0, t1):
    """B's receive rate between the samples nearest t0 and t1, bit/s."""
    inside = [s for s in rx if t0 <= s[0] <= t1]
    if len(inside) < 2:
        return float("nan")
    (ta, ba), (tb, bb) = inside[0], inside[-1]
    return (bb - ba) * 8 / (tb - ta)


def take_back_seconds(rx, t_end, link_bps, horizon):
    """Seconds from t_end to the end of the first 1 s window (two 0.5 s samples) whose mean rate
    is >= TAKE_BACK_SHARE of the link; None if not within horizon."""
    after = [s for s in rx if s[0] >= t_end]
    for i in range(len(after) - 2):
        (ta, ba), (tb, bb) = after[i], after[i + 2]
        if tb - t_end > horizon:
            break
        if (bb - ba) * 8 / (tb - ta) >= TAKE_BACK_SHARE * link_bps:
            return tb - t_end
    return None


def iperf_bps(path):
    try:
        with open(path) as f:
            j = json.load(f)
        return float(j["end"]["sum_received"]["bits_per_second"])
    except (OSError, ValueError, KeyError):
        return float("nan")


def iperf_second_half_bps(path):
    """Mean of the receiver's per-second intervals (--get-server-output; the client's own are
    what it wrote into its socket buffer) in the second half of the run: the steady state, once
    a delay-based background has had time to react."""
    try:
        with open(path) as f:
            server = json.load(f)["server_output_json"]
        # the receiver's last interval is the few ms after the sender's end: not a second's rate
        iv = [float(i["sum"]["bits_per_second"]) for i in server["intervals"] if i["sum"]["seconds"] >= 0.5]
    except (OSError, ValueError, KeyError, TypeError):
        return float("nan")
    half = iv[len(iv) // 2:]
    return sum(half) / len(half) if half else float("nan")


def iperf_mean_rtt_ms(path):
    """The sender's smoothed RTT (TCP_INFO) averaged by iperf3: a cross-check of the probes."""
    try:
        with open(path) as f:
            return float(json.load(f)["end"]["streams"][0]["sender"]["mean_rtt"]) / 1000
    except (OSError, ValueError, KeyError, IndexError):
        return float("nan")


def ping_ms(path):
    try:
        with open(path) as f:
            return [float(m.group(1)) for m in re.finditer(r"time=([0-9.]+) ms", f.read())]
    except OSError:
        return []


def delay_line_stats(path):
    """(wall clock, line, worst lateness ms since the previous line) per counter line of
    delay_line.py: how much of the RTT was the emulator's own jitter."""
    out = []
    try:
        with open(path) as f:
            for line in f:
                m = re.match(r"delay line: at ([0-9.]+) .*\(([0-9.]+) ms since the last line\)", line)
                if m:
                    out.append((float(m.group(1)), line.strip(), float(m.group(2))))
    except OSError:
        pass
    return out


def count_lines(path):
    try:
        with open(path) as f:
            return sum(1 for line in f if line.strip())
    except OSError:
        return 0


def pct(xs, q):
    if not xs:
        return float("nan")
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))]


def mbit(x):
    return "%.2f" % (x / 1e6) if x == x else "n/a"


def ms(x):
    return "%.0f" % x if x == x else "n/a"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("work")
    ap.add_argument("--rows", required=True)
    ap.add_argument("--rate-bps", type=float, required=True)
    ap.add_argument("--rate", default="")
    ap.add_argument("--delay-ms", default="")
    ap.add_argument("--cc", default="")
    ap.add_argument("--bg-cc", default="")
    ap.add_argument("--fg-seconds", default="")
    ap.add_argument("--payload-mib", default="")
    a = ap.parse_args()
    idle = ping_ms(os.path.join(a.work, "idle.ping"))
    print()
    print("capwise yield benchmark: tbf %s toward B (queue <= 400 ms), %s ms delay each way, idle RTT %s ms (median), "
          "foreground iperf3 A->B %s s (TCP %s), TCP backgrounds on %s, payload %s MiB"
          % (a.rate, a.delay_ms, ms(pct(idle, 0.5)), a.fg_seconds, a.cc, a.bg_cc, a.payload_mib))
    print()
    print("| background | fg alone Mbit/s | fg with bg Mbit/s | kept (goal >= 90%) | RTT alone ms median/p90 "
          "| RTT with bg ms median/p90 | RTT inflation ms | bg alone Mbit/s (RTT ms) | bg beside fg Mbit/s "
          "| s to 80% of link after fg (goal <= 5) |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    verdicts = []
    failed = 0
    lines = delay_line_stats(os.path.join(a.work, "delay_line.log"))
    for row in a.rows.split(","):
        d = os.path.join(a.work, row)
        name = NAMES.get(row, row)
        skipped = os.path.join(d, "skipped")
        if os.path.exists(skipped):
            with open(skipped) as f:
                print("| %s | %s |" % (name, f.read().strip()) + " |" * 8)
            continue
        try:
            marks, rx = read_marks(d), read_rx(d)
            alone_bps = iperf_bps(os.path.join(d, "alone.json"))
            with_bps = iperf_bps(os.path.join(d, "with.json"))
            # the first 2 s of a phase are TCP's slow start and the queue filling
            link_bps = rate_bps(rx, marks["alone_start"] + 2, marks["alone_end"])
            bg_alone = rate_bps(rx, marks["bg_flowing"], marks["warm_end"])
            total_with = rate_bps(rx, marks["with_start"] + 2, marks["with_end"])
            bg_beside = total_with - with_bps * WIRE_PER_TCP_PAYLOAD
            horizon = marks["after_end"] - marks["with_end"]
            back = take_back_seconds(rx, marks["with_end"], link_bps, horizon)
        except (OSError, KeyError, ValueError) as e:
            print("| %s | failed: %s |" % (name, e) + " |" * 8)
            failed += 1
            continue
        rtt_alone, rtt_with = ping_ms(os.path.join(d, "alone.ping")), ping_ms(os.path.join(d, "with.ping"))
        rtt_bg = ping_ms(os.path.join(d, "bg.ping"))
        kept = with_bps / alone_bps if alone_bps > 0 else float("nan")
        inflation = pct(rtt_with, 0.5) - pct(rtt_alone, 0.5)
        back_s = "%.1f" % back if back is not None else "not within %.0f s" % horizon
        note = " (leecher exited early)" if os.path.exists(os.path.join(d, "leecher-exited")) else ""
        tcp = count_lines(os.path.join(d, "tcp-established"))
        if row.endswith("-utp") and tcp:
            note += " (but %d TCP connections on A: not uTP only)" % tcp
        print("| %s%s | %s | %s | %.0f%% | %s / %s | %s / %s | %+.0f | %s (%s) | %s | %s |" % (
            name, note, mbit(alone_bps), mbit(with_bps), kept * 100,
            ms(pct(rtt_alone, 0.5)), ms(pct(rtt_alone, 0.9)), ms(pct(rtt_with, 0.5)), ms(pct(rtt_with, 0.9)),
            inflation, mbit(bg_alone), ms(pct(rtt_bg, 0.5)), mbit(bg_beside), back_s))
        ok_keep = kept >= KEEP_GOAL
        ok_back = back is not None and back <= TAKE_BACK_SECONDS
        steady = (iperf_second_half_bps(os.path.join(d, "with.json"))
                  / iperf_second_half_bps(os.path.join(d, "alone.json")))
        jitter = max((w for t, _, w in lines if marks["alone_start"] <= t <= marks["after_end"] + 5), default=float("nan"))
        verdicts.append("%s: delay line at most %s ms late during the row; foreground kept %.0f%% (%s; %.0f%% over the second half), link taken back %s (%s); "
                        "iperf3's mean RTT alone / with: %s / %s ms" % (
                            name, ms(jitter), kept * 100, "ok" if ok_keep else "below 90%", steady * 100,
                            "in %.1f s" % back if back is not None else "not in time", "ok" if ok_back else "over 5 s",
                            ms(iperf_mean_rtt_ms(os.path.join(d, "alone.json"))),
                            ms(iperf_mean_rtt_ms(os.path.join(d, "with.json")))))
        print("|  | link as B received it during fg alone: %s Mbit/s wire (nominal %s) |" % (
            mbit(link_bps), mbit(a.rate_bps)) + " |" * 8)
    print()
    for v in verdicts:
        print(v)
    if lines:
        print(lines[-1][1])
    # The goals are figures to read, not a test (nothing timed fails CI); a row that produced
    # no figures is a broken harness, and that does.
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
