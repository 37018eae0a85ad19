#!/usr/bin/python3
"""Create a .torrent for the capwise interop harness with libtorrent, or show a torrent's info-hash.

  make_torrent.py PATH OUT --tracker URL [--tracker URL2] --piece-size N [--pad-files]
                                                                          -> prints the v1 info-hash (hex)
  make_torrent.py --info-hash FILE.torrent                                -> prints the v1 info-hash (hex)

Must run with /usr/bin/python3 (Debian's python3-libtorrent).
"""
import argparse
import os
import sys

import libtorrent as lt


def v1_hash(ti):
    return str(ti.info_hashes().v1) if hasattr(ti, "info_hashes") else str(ti.info_hash())


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("path", nargs="?")
    ap.add_argument("out", nargs="?")
    ap.add_argument("--tracker", action="append", default=[])
    ap.add_argument("--piece-size", type=int, default=256 * 1024)
    ap.add_argument("--info-hash", metavar="TORRENT")
    # BEP 47 pad files after every file but the last, as libtorrent makes them for v2 alignment.
    ap.add_argument("--pad-files", action="store_true")
    a = ap.parse_args()
    if a.info_hash:
        print(v1_hash(lt.torrent_info(a.info_hash)))
        return 0
    if not a.path or not a.out:
        ap.error("PATH and OUT are required")
    path = os.path.abspath(a.path)
    fs = lt.file_storage()
    lt.add_files(fs, path)
    if fs.num_files() == 0:
        ap.error("no files under " + path)
    # v1-only torrent: capwise speaks BitTorrent v1.
    flags = lt.create_torrent.v1_only
    if a.pad_files:
        flags |= lt.create_torrent.canonical_files
    t = lt.create_torrent(fs, a.piece_size, flags=flags)
    for tier, url in enumerate(a.tracker):
        t.add_tracker(url, tier)
    t.set_creator("capwise-tests")
    lt.set_piece_hashes(t, os.path.dirname(path))
    data = lt.bencode(t.generate())
    with open(a.out, "wb") as f:
        f.write(data)
    print(v1_hash(lt.torrent_info(a.out)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
