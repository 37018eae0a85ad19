#!/usr/bin/python3
"""libtorrent seeder / leecher for the capwise interop harness and benchmark.

  lt_client.py seed TORRENT DIR --listen 127.0.0.1:PORT [--peer ADDR:PORT]... [--upload-limit B/s] [--no-pex]
      verifies DIR (unless --seed-mode), then seeds until killed (SIGTERM/SIGINT).
  lt_client.py get TORRENT DIR --listen 127.0.0.1:PORT [--peer ADDR:PORT]... [--download-limit B/s] [--timeout S]
      downloads into DIR, flushes the data to disk, exits 0; exits 1 on timeout or error.
  lt_client.py dht - - --listen 127.0.0.1:PORT [--dht-bootstrap ADDR:PORT] [--dht-nodes N]
      a DHT node and nothing else (a private bootstrap node), until killed; with --dht-nodes, N
      nodes on PORT, PORT+1, ... (the others joined through the first).

--dht-bootstrap ADDR:PORT turns libtorrent's DHT on, joined through that node, with the settings a
private DHT on loopback needs (no per-IP routing restrictions, no BEP 42 node-id enforcement, no
"dark internet" filter) and a 5 s announce interval.

Progress lines ("MONOTONIC progress ... payload_down=N payload_up=N", every --progress-interval s)
carry the torrent's payload byte counters since start; MONOTONIC is CLOCK_MONOTONIC seconds.

--encryption forced makes every connection RC4-encrypted (MSE/PE, both directions: libtorrent's
pe_forced in and out, pe_rc4 only, prefer_rc4); the default, disabled, speaks plaintext only and
refuses encrypted handshakes. Progress lines then also count the peers whose connection is RC4
("rc4_peers=N"), and a line "PEER ADDR rc4=0|1" tells it for each peer past its handshake.

TCP only (--utp-only: uTP only, TCP off), UPnP/NAT-PMP off, LSD off (--lsd turns local service
discovery on), DHT off unless asked for. Progress lines go to stdout.
Must run with /usr/bin/python3 (Debian's python3-libtorrent).
"""
import argparse
import os
import signal
import sys
import time

import libtorrent as lt

STOP = False
ENC_POLICY = {"disabled": lt.enc_policy.disabled, "forced": lt.enc_policy.forced}


def on_signal(_sig, _frm):
    global STOP
    STOP = True


def log(msg):
    print("%.3f %s" % (time.monotonic(), msg), flush=True)


def parse_addr(s):
    host, port = s.rsplit(":", 1)
    return host.strip("[]"), int(port)


def make_session(a):
    enc = getattr(a, "encryption", "disabled")
    s = {
        "listen_interfaces": a.listen,
        "enable_dht": False,
        "enable_lsd": bool(a.lsd),
        "enable_upnp": False,
        "enable_natpmp": False,
        "enable_outgoing_utp": False,
        "enable_incoming_utp": False,
        "out_enc_policy": int(ENC_POLICY[enc]),
        "in_enc_policy": int(ENC_POLICY[enc]),
        "allowed_enc_level": int(lt.enc_level.rc4 if enc == "forced" else lt.enc_level.plaintext),
        "prefer_rc4": enc == "forced",
        "allow_multiple_connections_per_ip": True,
        "min_reconnect_time": 1,
        "peer_connect_timeout": 3,
        "announce_to_all_trackers": True,
        "announce_to_all_tiers": True,
        "alert_mask": int(lt.alert.category_t.error_notification
                          | lt.alert.category_t.status_notification
                          | lt.alert.category_t.storage_notification
                          | lt.alert.category_t.tracker_notification
                          | lt.alert.category_t.connect_notification),
        "user_agent": "capwise-tests-libtorrent/" + lt.__version__,
    }
    if a.dht_bootstrap is not None or a.mode == "dht":
        s.update({
            "enable_dht": True,
            "dht_bootstrap_nodes": a.dht_bootstrap or "",
            "dht_restrict_routing_ips": False,
            "dht_restrict_search_ips": False,
            "dht_enforce_node_id": False,
            "dht_ignore_dark_internet": False,
            "dht_prefer_verified_node_ids": False,
            "dht_announce_interval": 5,
        })
        s["alert_mask"] |= int(lt.alert.category_t.dht_notification)
    if getattr(a, "utp_only", False):
        s.update({
            "enable_outgoing_utp": True,
            "enable_incoming_utp": True,
            "enable_outgoing_tcp": False,
            "enable_incoming_tcp": False,
        })
    if a.upload_limit:
        s["upload_rate_limit"] = a.upload_limit
    if a.download_limit:
        s["download_rate_limit"] = a.download_limit
    ses = lt.session(s)
    if a.upload_limit or a.download_limit:
        # Peers on 127.x are "local" and exempt from the session limits: put everybody in the global class.
        f = lt.ip_filter()
        f.add_rule("0.0.0.0", "255.255.255.255", 1 << lt.session.global_peer_class_id)
        ses.set_peer_class_filter(f)
    return ses


def drain(ses, handle, want=None):
    """Log interesting alerts; return True if an alert of type `want` was seen."""
    seen = False
    for al in ses.pop_alerts():
        if want is not None and isinstance(al, want):
            seen = True
        if isinstance(al, (lt.torrent_error_alert, lt.file_error_alert, lt.tracker_error_alert,
                           lt.listen_failed_alert, lt.peer_error_alert, lt.tracker_reply_alert,
                           lt.listen_succeeded_alert, lt.torrent_finished_alert, lt.hash_failed_alert,
                           lt.lsd_error_alert)):
            log("alert %s: %s" % (type(al).__name__, al.message()))
    return seen


def tell_peers(handle, told):
    """One "PEER ADDR rc4=0|1" line per peer address, once its handshake is done: whether that
    connection is RC4-encrypted (MSE/PE)."""
    for p in handle.get_peer_info():
        addr = "%s:%d" % (p.ip[0], p.ip[1])
        if addr in told or p.flags & (lt.peer_info.handshake | lt.peer_info.connecting):
            continue
        told.add(addr)
        log("PEER %s rc4=%d" % (addr, 1 if p.flags & lt.peer_info.rc4_encrypted else 0))
    return told


def connect_direct(handle, peers, last):
    now = time.monotonic()
    if not peers or now - last < 2.0:
        return last
    connected = {(p.ip[0], p.ip[1]) for p in handle.get_peer_info()}
    for p in peers:
        if p not in connected:
            try:
                handle.connect_peer(p)
            except Exception as e:  # noqa: BLE001
                log("connect_peer %s failed: %s" % (p, e))
    return now


def run_dht_nodes(a):
    """--dht-nodes N DHT nodes: the first on --listen, the others on the next ports of the same
    address, joined through the first. Clients that want a populated routing table before they
    announce (Transmission: at least 9 nodes, 4 of them answering) get one."""
    host, port = parse_addr(a.listen)
    sessions = [make_session(a)]
    for i in range(1, a.dht_nodes):
        b = argparse.Namespace(**vars(a))
        b.listen = "%s:%d" % (host if ":" not in host else "[%s]" % host, port + i)
        b.dht_bootstrap = a.listen
        sessions.append(make_session(b))
    # libtorrent never puts its bootstrap routers in the routing table: introduce every node to
    # every other one, so that a find_node to any of them answers with the rest.
    for i, ses in enumerate(sessions):
        for j in range(len(sessions)):
            if i != j:
                ses.add_dht_node((host, port + j))
    log("start mode=dht listen=%s nodes=%d" % (a.listen, len(sessions)))
    last = 0.0
    while not STOP:
        for ses in sessions:
            for al in ses.pop_alerts():
                if isinstance(al, lt.dht_announce_alert):
                    log("alert dht_announce_alert: %s" % al.message())
        if time.monotonic() - last >= a.progress_interval:
            last = time.monotonic()
            log("dht nodes=%s" % ",".join(str(ses.status().dht_nodes) for ses in sessions))
        sessions[0].wait_for_alert(100)
    return 0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("mode", choices=["seed", "get", "dht"])
    ap.add_argument("torrent")
    ap.add_argument("dir")
    ap.add_argument("--listen", default="127.0.0.1:0")
    ap.add_argument("--peer", action="append", default=[], help="ADDR:PORT to dial directly (repeatable)")
    ap.add_argument("--upload-limit", type=int, default=0, help="bytes/s, 0 = unlimited")
    ap.add_argument("--download-limit", type=int, default=0, help="bytes/s, 0 = unlimited")
    ap.add_argument("--seed-mode", action="store_true", help="seeder: trust the data, skip the initial hash check")
    ap.add_argument("--no-pex", action="store_true", help="no peer exchange for the torrent")
    ap.add_argument("--dht-bootstrap", default=None, help="ADDR:PORT: DHT on, joined through it")
    ap.add_argument("--dht-nodes", type=int, default=1, help="dht mode: this many nodes on consecutive ports")
    ap.add_argument("--timeout", type=float, default=600.0, help="give up after this many seconds")
    ap.add_argument("--progress-interval", type=float, default=1.0)
    ap.add_argument("--lsd", action="store_true", help="local service discovery (BEP 14) on")
    ap.add_argument("--utp-only", action="store_true",
                    help="uTP in and out, TCP off (enable_outgoing/incoming_tcp = False)")
    ap.add_argument("--encryption", choices=sorted(ENC_POLICY), default="disabled",
                    help="disabled: plaintext only; forced: RC4-encrypted (MSE/PE) only")
    a = ap.parse_args()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    if a.mode == "dht":
        return run_dht_nodes(a)
    os.makedirs(a.dir, exist_ok=True)
    ses = make_session(a)
    # A magnet link (get only): the metadata comes from peers (BEP 9).
    if a.torrent.startswith("magnet:"):
        ti = None
        p = lt.parse_magnet_uri(a.torrent)
    else:
        ti = lt.torrent_info(a.torrent)
        p = lt.add_torrent_params()
        p.ti = ti
    p.save_path = a.dir
    flags = p.flags & ~lt.torrent_flags.auto_managed & ~lt.torrent_flags.paused
    if a.mode == "seed" and a.seed_mode:
        flags |= lt.torrent_flags.seed_mode
    if a.no_pex:
        # This peer neither tells nor learns peers through ut_pex.
        flags |= lt.torrent_flags.disable_pex
    p.flags = flags
    h = ses.add_torrent(p)
    if a.upload_limit:
        h.set_upload_limit(a.upload_limit)
    if a.download_limit:
        h.set_download_limit(a.download_limit)
    peers = [parse_addr(x) for x in a.peer]
    if ti is not None:
        total = ti.total_size()
        log("start mode=%s name=%s size=%d pieces=%d listen=%s" % (a.mode, ti.name(), total, ti.num_pieces(), a.listen))
    else:
        total = 0
        log("start mode=%s magnet listen=%s" % (a.mode, a.listen))

    # Wake at least twice per progress interval (at most every 100 ms).
    poll_ms = max(1, min(100, int(a.progress_interval * 500)))
    start = time.monotonic()
    deadline = start + a.timeout
    last_dial = 0.0
    last_progress = 0.0
    announced_seed = False
    # Milestones for tests/bench/magnet: the metadata in, the first piece verified.
    told_metadata = ti is not None
    told_first_piece = False
    told_peers = set()
    while not STOP:
        now = time.monotonic()
        if now > deadline:
            log("TIMEOUT after %.1fs" % (now - start))
            return 1
        drain(ses, h)
        st = h.status()
        if st.errc.value() != 0:
            log("ERROR %s" % st.errc.message())
            return 1
        last_dial = connect_direct(h, peers, last_dial)
        if not told_metadata and st.has_metadata:
            told_metadata = True
            log("METADATA")
        if not told_first_piece and st.num_pieces > 0:
            told_first_piece = True
            log("FIRST_PIECE")
        if now - last_progress >= a.progress_interval:
            last_progress = now
            rc4 = sum(1 for p in h.get_peer_info() if p.flags & lt.peer_info.rc4_encrypted)
            log("progress state=%s done=%d/%d (%.1f%%) down=%.1fMB/s up=%.1fMB/s peers=%d"
                " payload_down=%d payload_up=%d rc4_peers=%d" % (
                    st.state, st.total_wanted_done, st.total_wanted, st.progress * 100,
                    st.download_rate / 1e6, st.upload_rate / 1e6, st.num_peers,
                    st.total_payload_download, st.total_payload_upload, rc4))
        told_peers = tell_peers(h, told_peers)
        if st.is_seeding:
            if a.mode == "get":
                break
            if not announced_seed:
                announced_seed = True
                log("SEEDING")
        ses.wait_for_alert(poll_ms)

    if a.mode == "seed":
        log("stopping (signal)")
        return 0
    if STOP:
        log("stopping (signal) before the download completed")
        return 1
    # Finished: make sure every byte is on disk before reporting success.
    h.save_resume_data(lt.save_resume_flags_t.flush_disk_cache)
    flush_deadline = time.monotonic() + 60
    while time.monotonic() < flush_deadline:
        if drain(ses, h, (lt.save_resume_data_alert, lt.save_resume_data_failed_alert)):
            break
        ses.wait_for_alert(100)
    h.pause()
    ses.pause()
    elapsed = time.monotonic() - start
    if ti is None:
        total = h.status().total_wanted
    log("DONE %d bytes in %.2fs (%.1f MB/s)" % (total, elapsed, total / elapsed / 1e6))
    return 0


if __name__ == "__main__":
    sys.exit(main())
