#!/usr/bin/python3
"""libtorrent as the background transfer of the yield benchmark, over one transport only.

  lt_peer.py seed TORRENT DIR --listen ADDR:PORT --transport utp|tcp [--max-seconds S]
  lt_peer.py get  TORRENT DIR --listen ADDR:PORT --transport utp|tcp --peer ADDR:PORT [--max-seconds S]

seed trusts DIR (seed mode, no hash check) and seeds; get dials --peer and downloads. Both run
until SIGTERM/SIGINT or --max-seconds. --transport utp turns libtorrent's TCP off in both
directions (LEDBAT is what is measured), tcp turns its uTP off (the contrast row). No DHT, LSD,
UPnP, NAT-PMP or encryption; libtorrent's own uTP settings are left at their defaults (target
delay 100 ms). Progress lines ("MONOTONIC down=N up=N peers=N utp_peers=N") every --progress-interval s.
Must run with /usr/bin/python3 (Debian's python3-libtorrent); tests/interop/lt_client.py is the
TCP-only harness client this one follows.
"""
import argparse
import signal
import sys
import time

import libtorrent as lt

STOP = False


def on_signal(_sig, _frm):
    global STOP
    STOP = True


def log(msg):
    print("%.3f %s" % (time.monotonic(), msg), flush=True)


def parse_addr(s):
    host, port = s.rsplit(":", 1)
    return host.strip("[]"), int(port)


def make_session(a):
    utp = a.transport == "utp"
    return lt.session({
        "listen_interfaces": a.listen,
        "enable_dht": False,
        "enable_lsd": False,
        "enable_upnp": False,
        "enable_natpmp": False,
        "enable_outgoing_utp": utp,
        "enable_incoming_utp": utp,
        "enable_outgoing_tcp": not utp,
        "enable_incoming_tcp": not utp,
        "out_enc_policy": int(lt.enc_policy.disabled),
        "in_enc_policy": int(lt.enc_policy.disabled),
        "allowed_enc_level": int(lt.enc_level.plaintext),
        "min_reconnect_time": 1,
        "peer_connect_timeout": 3,
        "alert_mask": int(lt.alert.category_t.error_notification
                          | lt.alert.category_t.status_notification
                          | lt.alert.category_t.connect_notification),
        "user_agent": "capwise-bench-yield/" + lt.__version__,
    })


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("mode", choices=["seed", "get"])
    ap.add_argument("torrent")
    ap.add_argument("dir")
    ap.add_argument("--listen", required=True)
    ap.add_argument("--transport", choices=["utp", "tcp"], required=True)
    ap.add_argument("--peer", default=None, help="ADDR:PORT to dial (get)")
    ap.add_argument("--max-seconds", type=float, default=900.0)
    ap.add_argument("--progress-interval", type=float, default=1.0)
    a = ap.parse_args()
    if a.mode == "get" and not a.peer:
        ap.error("get needs --peer")
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    ses = make_session(a)
    p = lt.add_torrent_params()
    p.ti = lt.torrent_info(a.torrent)
    p.save_path = a.dir
    flags = p.flags & ~lt.torrent_flags.auto_managed & ~lt.torrent_flags.paused
    if a.mode == "seed":
        flags |= lt.torrent_flags.seed_mode
    p.flags = flags | lt.torrent_flags.disable_pex
    h = ses.add_torrent(p)
    peer = parse_addr(a.peer) if a.peer else None
    log("start mode=%s transport=%s listen=%s peer=%s" % (a.mode, a.transport, a.listen, a.peer))
    deadline = time.monotonic() + a.max_seconds
    last_dial = last_log = 0.0
    while not STOP and time.monotonic() < deadline:
        now = time.monotonic()
        st = h.status()
        if peer and st.num_peers == 0 and now - last_dial >= 2.0:
            last_dial = now
            try:
                h.connect_peer(peer)
            except Exception as e:  # noqa: BLE001
                log("connect_peer failed: %s" % e)
        if now - last_log >= a.progress_interval:
            last_log = now
            # peer_info.flags bit 17 is utp_socket (libtorrent 2.0): proof of the transport in use
            utp = sum(1 for pi in h.get_peer_info() if int(pi.flags) & (1 << 17))
            log("down=%d up=%d peers=%d utp_peers=%d" % (st.total_payload_download, st.total_payload_upload,
                                                        st.num_peers, utp))
        for al in ses.pop_alerts():
            if isinstance(al, (lt.torrent_error_alert, lt.file_error_alert, lt.peer_error_alert,
                               lt.listen_failed_alert, lt.listen_succeeded_alert, lt.torrent_finished_alert)):
                log("alert %s: %s" % (type(al).__name__, al.message()))
        ses.wait_for_alert(100)
    log("stop")
    return 0


if __name__ == "__main__":
    sys.exit(main())
