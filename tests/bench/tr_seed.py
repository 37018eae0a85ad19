#!/usr/bin/python3
"""A transmission-daemon 3.00 seeder for tests/bench/run --seeder transmission.

  tr_seed.py WORK TORRENT DATA_DIR --peer-port P --rpc-port R

Starts `transmission-daemon -f` with its own config dir in WORK (plain TCP, no DHT/LPD/PEX/uTP,
no limits, bound to 127.0.0.1), adds TORRENT paused with its data in DATA_DIR, verifies it, starts
it, and prints "ready" once it seeds at 100% and the tracker has its announce. Then, until SIGTERM, it prints one line every 0.1 s:
"REALTIME UPLOADED" (wall-clock seconds, the torrent's uploadedEver payload bytes), so that the
benchmark can tell when a leecher's first and last bytes left the seeder. Must run with
/usr/bin/python3.
"""
import argparse
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request

STOP = False


def on_signal(_sig, _frm):
    global STOP
    STOP = True


def settings(peer_port, rpc_port, download_dir):
    return {
        "bind-address-ipv4": "127.0.0.1", "bind-address-ipv6": "::1", "blocklist-enabled": False,
        "dht-enabled": False, "lpd-enabled": False, "pex-enabled": False, "utp-enabled": False,
        "port-forwarding-enabled": False, "download-dir": download_dir, "incomplete-dir-enabled": False,
        "download-queue-enabled": False, "seed-queue-enabled": False, "queue-stalled-enabled": False,
        "idle-seeding-limit-enabled": False, "ratio-limit-enabled": False, "encryption": 0,
        "speed-limit-up-enabled": False, "speed-limit-down-enabled": False, "alt-speed-enabled": False,
        "message-level": 2, "peer-port": peer_port, "peer-port-random-on-start": False,
        "peer-limit-global": 200, "peer-limit-per-torrent": 50,
        "rpc-enabled": True, "rpc-bind-address": "127.0.0.1", "rpc-port": rpc_port,
        "rpc-authentication-required": False, "rpc-whitelist": "127.0.0.1", "rpc-whitelist-enabled": True,
        "rpc-host-whitelist-enabled": False, "start-added-torrents": True, "watch-dir-enabled": False,
        "rename-partial-files": False, "trash-original-torrent-files": False,
    }


class Rpc:
    def __init__(self, port):
        self.url = "http://127.0.0.1:%d/transmission/rpc" % port
        self.session_id = ""

    def call(self, method, arguments=None):
        body = json.dumps({"method": method, "arguments": arguments or {}}).encode()
        for _ in range(3):
            req = urllib.request.Request(self.url, data=body, headers={"X-Transmission-Session-Id": self.session_id})
            try:
                with urllib.request.urlopen(req, timeout=10) as r:
                    reply = json.load(r)
            except urllib.error.HTTPError as e:
                if e.code == 409:  # CSRF handshake: retry with the id it hands out
                    self.session_id = e.headers.get("X-Transmission-Session-Id", "")
                    continue
                raise
            if reply.get("result") != "success":
                raise RuntimeError("transmission %s: %s" % (method, reply.get("result")))
            return reply.get("arguments", {})
        raise RuntimeError("transmission %s: no session id" % method)


def wait_for(what, timeout, check, proc):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not STOP:
        if proc.poll() is not None:
            raise RuntimeError("transmission-daemon exited (%s) while waiting for %s" % (proc.returncode, what))
        try:
            if check():
                return
        except (OSError, RuntimeError):
            pass
        time.sleep(0.2)
    raise RuntimeError("timed out waiting for %s" % what)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("work")
    ap.add_argument("torrent")
    ap.add_argument("data_dir")
    ap.add_argument("--peer-port", type=int, required=True)
    ap.add_argument("--rpc-port", type=int, required=True)
    a = ap.parse_args()
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    config = os.path.join(a.work, "config")
    os.makedirs(config, exist_ok=True)
    with open(os.path.join(config, "settings.json"), "w") as f:
        json.dump(settings(a.peer_port, a.rpc_port, a.data_dir), f, indent=1)
    log = open(os.path.join(a.work, "daemon.log"), "w")
    proc = subprocess.Popen(["transmission-daemon", "-f", "-g", config], stdout=log, stderr=subprocess.STDOUT,
                            env=dict(os.environ, HOME=a.work))
    try:
        rpc = Rpc(a.rpc_port)
        wait_for("transmission RPC", 30, lambda: rpc.call("session-get") is not None, proc)
        rpc.call("torrent-add", {"filename": os.path.abspath(a.torrent), "download-dir": a.data_dir, "paused": True})
        rpc.call("torrent-verify")
        rpc.call("torrent-start")

        def seeding():
            ts = rpc.call("torrent-get", {"fields": ["status", "percentDone", "error", "errorString"]})["torrents"]
            if ts and ts[0].get("error"):
                raise SystemExit("transmission torrent error: %s" % ts[0].get("errorString"))
            return len(ts) == 1 and ts[0]["status"] == 6 and ts[0]["percentDone"] >= 1.0
        wait_for("transmission to seed", 600, seeding, proc)

        def announced():
            ts = rpc.call("torrent-get", {"fields": ["trackerStats"]})["torrents"]
            return any(t.get("lastAnnounceSucceeded") and t.get("lastAnnounceTime", 0) > 0
                       for t in ts[0].get("trackerStats", []))
        # a leecher started before this announce would get only stale peers from the tracker
        wait_for("transmission to announce", 120, announced, proc)
        print("ready", flush=True)
        while not STOP:
            if proc.poll() is not None:
                raise SystemExit("transmission-daemon exited (%s)" % proc.returncode)
            try:
                up = rpc.call("torrent-get", {"fields": ["uploadedEver"]})["torrents"][0]["uploadedEver"]
                print("%.3f %d" % (time.time(), up), flush=True)
            except (OSError, RuntimeError, IndexError, KeyError):
                pass
            time.sleep(0.1)
    finally:
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return 0


if __name__ == "__main__":
    sys.exit(main())
