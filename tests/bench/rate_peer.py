#!/usr/bin/python3
"""libtorrent peers for tests/bench/rate (upload-rate accuracy).

  rate_peer.py seed TORRENT DIR --listen 127.0.0.1:PORT --upload-limit B/s
      seeds DIR (seed mode: no hash check) with a per-torrent upload limit only
      (handle.set_upload_limit; no session limit), until SIGTERM/SIGINT.
  rate_peer.py probe TORRENT DIR --listen 127.0.0.1:PORT --peer ADDR:PORT --samples FILE
                [--skip S] [--window S] [--timeout S]
      leeches, writing "monotonic_seconds<TAB>total_payload_download" to FILE every 0.5 s.
      Exits 0 once `skip + window + 1` seconds have passed since the first payload byte
      (or the download completed), 1 on timeout or error.

Session settings come from tests/interop/lt_client.py (plain TCP, no DHT/LSD/UPnP/NAT-PMP,
encryption off). Must run with /usr/bin/python3 (Debian's python3-libtorrent).
"""
import argparse
import os
import signal
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "interop"))
import libtorrent as lt  # noqa: E402
import lt_client  # noqa: E402

STOP = False
INTERVAL = 0.5


def on_signal(_sig, _frm):
    global STOP
    STOP = True


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("mode", choices=["seed", "probe"])
    ap.add_argument("torrent")
    ap.add_argument("dir")
    ap.add_argument("--listen", required=True)
    ap.add_argument("--peer", action="append", default=[])
    ap.add_argument("--upload-limit", type=int, default=0)
    ap.add_argument("--samples")
    ap.add_argument("--skip", type=float, default=5.0)
    ap.add_argument("--window", type=float, default=20.0)
    ap.add_argument("--timeout", type=float, default=600.0)
    a = ap.parse_args()
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    os.makedirs(a.dir, exist_ok=True)

    # lt_client's session, without its session-wide limits: only the per-torrent limit applies.
    ses = lt_client.make_session(argparse.Namespace(listen=a.listen, upload_limit=0, download_limit=0))
    ti = lt.torrent_info(a.torrent)
    p = lt.add_torrent_params()
    p.ti = ti
    p.save_path = a.dir
    flags = p.flags & ~lt.torrent_flags.auto_managed & ~lt.torrent_flags.paused
    if a.mode == "seed":
        flags |= lt.torrent_flags.seed_mode
    p.flags = flags
    h = ses.add_torrent(p)
    if a.mode == "seed" and a.upload_limit:
        h.set_upload_limit(a.upload_limit)
    peers = [lt_client.parse_addr(x) for x in a.peer]
    lt_client.log("start mode=%s size=%d pieces=%d listen=%s upload_limit=%d" % (
        a.mode, ti.total_size(), ti.num_pieces(), a.listen, h.upload_limit()))

    start = time.monotonic()
    deadline = start + a.timeout
    if a.mode == "seed":
        last_progress = 0.0
        while not STOP and time.monotonic() < deadline:
            lt_client.drain(ses, h)
            now = time.monotonic()
            if now - last_progress >= 5:
                last_progress = now
                st = h.status()
                lt_client.log("progress state=%s up=%.3fMB/s total_up=%d peers=%d" % (
                    st.state, st.upload_rate / 1e6, st.total_payload_upload, st.num_peers))
            ses.wait_for_alert(200)
        return 0

    out = open(a.samples, "w")
    first = None
    last_dial = 0.0
    nxt = time.monotonic()
    rc = 1
    while not STOP:
        now = time.monotonic()
        if now > deadline:
            lt_client.log("TIMEOUT after %.1fs (first byte at %s)" % (now - start, first))
            break
        if now >= nxt:
            st = h.status()
            t = time.monotonic()
            got = st.total_payload_download
            out.write("%.6f\t%d\n" % (t, got))
            out.flush()
            nxt += INTERVAL
            if nxt < t:  # fell behind: do not fire a burst of catch-up samples
                nxt = t + INTERVAL
            if st.errc.value() != 0:
                lt_client.log("ERROR %s" % st.errc.message())
                break
            if first is None and got > 0:
                first = t
                lt_client.log("first payload byte")
            if first is not None and t - first >= a.skip + a.window + 1.0:
                lt_client.log("measured: %d bytes %.1fs after the first byte" % (got, t - first))
                rc = 0
                break
            if st.is_seeding:
                lt_client.log("download complete before the window closed")
                rc = 0
                break
        lt_client.drain(ses, h)
        last_dial = lt_client.connect_direct(h, peers, last_dial)
        ses.wait_for_alert(max(1, min(100, int((nxt - time.monotonic()) * 1000))))
    out.close()
    ses.pause()
    return rc


if __name__ == "__main__":
    sys.exit(main())
