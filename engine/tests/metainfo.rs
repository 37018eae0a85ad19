//! Integration tests for .torrent parsing and creation.
//!
//! - Every fixture in `tests/fixtures/torrents/` is regenerated in memory and
//!   compared with the file on disk (set `CAPWISE_REGENERATE_FIXTURES=1` to
//!   rewrite them), then checked: malformed ones must be refused with a message
//!   naming the problem, legal ones must parse, and those whose paths cannot
//!   be created as they are load with the sanitized paths other clients use.
//! - A torrent created from a temporary tree is parsed back, its piece hashes
//!   checked against the data, and its info-hash compared with what
//!   transmission-show, aria2c and python libtorrent report (when installed).
//! - Property tests: parsing never panics on arbitrary or mutated input.

use std::path::{Path, PathBuf};
use std::process::Command;

use capwise_engine::bencode::{self, Owned};
use capwise_engine::create::{create_torrent, CreateOptions};
use capwise_engine::metainfo::{InfoHash, Metainfo};
use proptest::prelude::*;
use sha1::{Digest, Sha1};

const PIECE: i64 = 16384;

fn fixture_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/torrents")
}

/// Raw bencode byte string, for hand-written (possibly non-canonical) input.
fn bstr(bytes: &[u8]) -> Vec<u8> {
    let mut out = format!("{}:", bytes.len()).into_bytes();
    out.extend_from_slice(bytes);
    out
}

fn torrent(info: Owned) -> Vec<u8> {
    Owned::dict()
        .with("announce", "http://tracker.example/announce")
        .with("info", info)
        .build()
        .to_bytes()
}

fn single_info(name: &[u8], length: i64, piece_length: i64, pieces: usize) -> Owned {
    Owned::dict()
        .with("name", name.to_vec())
        .with("length", length)
        .with("piece length", piece_length)
        .with("pieces", vec![0xabu8; 20 * pieces])
        .build()
}

fn file(path: &[&[u8]], length: i64) -> Owned {
    Owned::dict()
        .with("length", length)
        .with("path", Owned::list(path.iter().map(|c| c.to_vec())))
        .build()
}

fn multi_info(files: Vec<Owned>, pieces: usize) -> Owned {
    Owned::dict()
        .with("name", "top")
        .with("files", files)
        .with("piece length", PIECE)
        .with("pieces", vec![0xcdu8; 20 * pieces])
        .build()
}

fn valid_single() -> Vec<u8> {
    torrent(single_info(b"file.bin", 40_000, PIECE, 3))
}

/// What a fixture must do.
enum Expect {
    /// Refused, and the message contains every one of these substrings.
    Refused(&'static [&'static str]),
    /// Accepted.
    Parses,
    /// Accepted, its files saved at these paths (a pad file's is empty).
    Loads(&'static [&'static str]),
}

/// Every fixture: file name, bytes, expectation.
fn fixtures() -> Vec<(&'static str, Vec<u8>, Expect)> {
    use Expect::*;
    // 100,000 nested lists; the decoder must stop at MAX_DEPTH, not recurse.
    let deep = vec![b'l'; 100_000];
    let valid = valid_single();
    let mut trailing = valid.clone();
    trailing.extend_from_slice(b"garbage");

    // `pieces` twice inside info: only a raw writer can produce this.
    let mut dup_pieces = b"d8:announce31:http://tracker.example/announce4:infod".to_vec();
    dup_pieces.extend(bstr(b"length"));
    dup_pieces.extend(b"i100e");
    dup_pieces.extend(bstr(b"name"));
    dup_pieces.extend(bstr(b"x"));
    dup_pieces.extend(bstr(b"piece length"));
    dup_pieces.extend(b"i16384e");
    dup_pieces.extend(bstr(b"pieces"));
    dup_pieces.extend(bstr(&[1; 20]));
    dup_pieces.extend(bstr(b"pieces"));
    dup_pieces.extend(bstr(&[2; 20]));
    dup_pieces.extend(b"ee");

    vec![
        (
            "path_traversal.torrent",
            torrent(multi_info(vec![file(&[b"..", b"etc", b"passwd"], 10)], 1)),
            Loads(&["top/etc/passwd"]),
        ),
        (
            "dot_component.torrent",
            torrent(multi_info(vec![file(&[b"a", b".", b"b"], 10)], 1)),
            Loads(&["top/a/b"]),
        ),
        (
            "absolute_path.torrent",
            torrent(multi_info(vec![file(&[b"/etc", b"passwd"], 10)], 1)),
            Loads(&["top/etc/passwd"]),
        ),
        (
            "separator_in_component.torrent",
            torrent(multi_info(vec![file(&[b"a/../../b"], 10)], 1)),
            Loads(&["top/a_.._.._b"]),
        ),
        (
            "backslash_in_component.torrent",
            torrent(multi_info(vec![file(&[b"..\\..\\evil.exe"], 10)], 1)),
            Loads(&["top/.._.._evil.exe"]),
        ),
        (
            "absolute_name.torrent",
            torrent(single_info(b"/etc/passwd", 10, PIECE, 1)),
            Loads(&["etc_passwd"]),
        ),
        (
            "drive_letter.torrent",
            torrent(multi_info(
                vec![file(&[b"ok", b"x"], 5), file(&[b"C:", b"Windows"], 5)],
                1,
            )),
            Loads(&["top/ok/x", "top/C_/Windows"]),
        ),
        (
            "nul_in_name.torrent",
            torrent(single_info(b"innocent\0.exe", 10, PIECE, 1)),
            Loads(&["innocent_.exe"]),
        ),
        (
            "empty_component.torrent",
            torrent(multi_info(vec![file(&[b"a", b"", b"b"], 10)], 1)),
            Loads(&["top/a/b"]),
        ),
        (
            "empty_path.torrent",
            torrent(multi_info(vec![file(&[], 10)], 1)),
            Loads(&["top/_"]),
        ),
        (
            "windows_reserved.torrent",
            torrent(multi_info(vec![file(&[b"dir", b"con.txt"], 10)], 1)),
            Loads(&["top/dir/_con.txt"]),
        ),
        (
            "duplicate_names.torrent",
            torrent(multi_info(
                vec![file(&[b"a", b"b"], 10), file(&[b"a", b"b"], 10)],
                1,
            )),
            Loads(&["top/a/b", "top/a/b (1)"]),
        ),
        (
            "duplicate_names_case.torrent",
            torrent(multi_info(
                vec![file(&[b"README"], 10), file(&[b"readme"], 10)],
                1,
            )),
            Loads(&["top/README", "top/readme (1)"]),
        ),
        (
            "file_and_directory.torrent",
            torrent(multi_info(
                vec![file(&[b"a"], 10), file(&[b"a", b"b"], 10)],
                1,
            )),
            Loads(&["top/a", "top/a (1)/b"]),
        ),
        (
            "zero_length.torrent",
            torrent(single_info(b"empty", 0, PIECE, 0)),
            Refused(&["total length is zero"]),
        ),
        (
            "negative_length.torrent",
            torrent(multi_info(vec![file(&[b"a"], 10), file(&[b"b"], -5)], 1)),
            Refused(&["info.files[1].length: negative value -5"]),
        ),
        (
            "negative_piece_length.torrent",
            torrent(single_info(b"x", 10, -16384, 1)),
            Refused(&["info.piece length: negative"]),
        ),
        (
            "overflowing_sizes.torrent",
            torrent(multi_info(
                vec![
                    file(&[b"a"], i64::MAX),
                    file(&[b"b"], i64::MAX),
                    file(&[b"c"], i64::MAX),
                ],
                1,
            )),
            Refused(&["info.files[2].length", "overflows"]),
        ),
        (
            "integer_overflow.torrent",
            b"d4:infod6:lengthi99999999999999999999999e4:name1:x12:piece lengthi16384e6:pieces0:ee"
                .to_vec(),
            Refused(&["does not fit in 64 bits"]),
        ),
        (
            "absurd_piece_count.torrent",
            torrent(single_info(b"huge", 1 << 50, PIECE, 1)),
            Refused(&["info.pieces", "more than the limit"]),
        ),
        (
            "piece_count_mismatch.torrent",
            torrent(single_info(b"x", 40_000, PIECE, 2)),
            Refused(&["info.pieces: 2 piece hashes but the total length needs 3"]),
        ),
        (
            "piece_length_not_power_of_two.torrent",
            torrent(single_info(b"x", 40_000, 20_000, 2)),
            Refused(&["info.piece length: 20000 is not a power of two"]),
        ),
        (
            "piece_length_too_small.torrent",
            torrent(single_info(b"x", 40_000, 8192, 5)),
            Refused(&["info.piece length: 8192"]),
        ),
        (
            "pieces_not_multiple_of_20.torrent",
            torrent(
                Owned::dict()
                    .with("name", "x")
                    .with("length", 10)
                    .with("piece length", PIECE)
                    .with("pieces", vec![0u8; 21])
                    .build(),
            ),
            Refused(&["info.pieces: length 21 is not a multiple of 20"]),
        ),
        (
            "missing_pieces.torrent",
            torrent(
                Owned::dict()
                    .with("name", "x")
                    .with("length", 10)
                    .with("piece length", PIECE)
                    .build(),
            ),
            Refused(&["info.pieces: missing"]),
        ),
        (
            "missing_info.torrent",
            Owned::dict()
                .with("announce", "http://t/")
                .build()
                .to_bytes(),
            Refused(&["info: missing"]),
        ),
        (
            "length_and_files.torrent",
            torrent(
                Owned::dict()
                    .with("name", "x")
                    .with("length", 10)
                    .with("files", vec![file(&[b"a"], 10)])
                    .with("piece length", PIECE)
                    .with("pieces", vec![0u8; 20])
                    .build(),
            ),
            Refused(&["both `length` and `files`"]),
        ),
        (
            "empty_files.torrent",
            torrent(multi_info(vec![], 0)),
            Refused(&["info.files: list is empty"]),
        ),
        (
            "wrong_type.torrent",
            torrent(single_info(b"x", 10, PIECE, 1).clone_with("length", Owned::from("ten"))),
            Refused(&["info.length: expected integer, found byte string"]),
        ),
        (
            "truncated.torrent",
            valid.get(..valid.len() / 2).unwrap_or_default().to_vec(),
            Refused(&["claims"]),
        ),
        ("trailing_garbage.torrent", trailing, Loads(&["file.bin"])),
        (
            "deep_nesting.torrent",
            deep,
            Refused(&["nesting deeper than 64 levels"]),
        ),
        (
            "non_utf8_name.torrent",
            torrent(single_info(b"caf\xe9.txt", 10, PIECE, 1)),
            Refused(&["info.name", "not valid UTF-8"]),
        ),
        (
            "non_utf8_path.torrent",
            torrent(multi_info(vec![file(&[b"dir", b"\xff\xfe"], 10)], 1)),
            Refused(&["info.files[0].path", "not valid UTF-8"]),
        ),
        (
            "duplicate_pieces_key.torrent",
            dup_pieces,
            Refused(&["duplicate dictionary key \"pieces\""]),
        ),
        ("unordered_info.torrent", unordered_info(), Parses),
        (
            "utf8_variant_path.torrent",
            torrent(multi_info(
                vec![Owned::dict()
                    .with("length", 10)
                    .with("path", Owned::list([b"caf\xe9".to_vec()]))
                    .with("path.utf-8", Owned::list(["café"]))
                    .build()],
                1,
            )),
            Parses,
        ),
        (
            "pad_files_and_empty_files.torrent",
            torrent(multi_info(
                vec![
                    file(&[b"a"], 10),
                    Owned::dict()
                        .with("attr", "p")
                        .with("length", PIECE - 10)
                        .with("path", Owned::list([".pad", "16374"]))
                        .build(),
                    file(&[b"empty"], 0),
                    file(&[b"b"], 10),
                ],
                2,
            )),
            Loads(&["top/a", "", "top/empty", "top/b"]),
        ),
        (
            "long_name.torrent",
            torrent(multi_info(vec![file(&[LONG_NAME.as_bytes()], 10)], 1)),
            Loads(&[LONG_NAME_SAVED]),
        ),
        (
            "bep47_symlink_and_bare_pad.torrent",
            torrent(multi_info(
                vec![
                    file(&[b"a"], 10),
                    Owned::dict()
                        .with("attr", "p")
                        .with("length", PIECE - 10)
                        .build(),
                    Owned::dict()
                        .with("attr", "l")
                        .with("length", 0)
                        .with("path", Owned::list(["link"]))
                        .with("symlink path", Owned::list(["..", "..", "etc", "passwd"]))
                        .build(),
                    file(&[b"b"], 10),
                ],
                2,
            )),
            Loads(&["top/a", "", "top/b"]),
        ),
        (
            "refused_characters.torrent",
            torrent(multi_info(
                vec![file(&[b"what? a: \"b\" <c>|*.txt"], 10)],
                1,
            )),
            Loads(&["top/what_ a_ _b_ _c___.txt"]),
        ),
    ]
}

/// 86 three-byte characters and `.txt`: 262 bytes, more than a file name
/// may have on ext4, XFS or Btrfs.
const LONG_NAME: &str = "\u{65e5}\u{672c}\u{8a9e}\u{65e5}\u{672c}\u{8a9e}\u{65e5}\u{672c}\u{8a9e}\u{65e5}\u{672c}\u{8a9e}\u{65e5}\u{672c}\u{8a9e}\u{65e5}\u{672c}\u{8a9e}\u{65e5}\u{672c}\u{8a9e}\u{65e5}\u{672c}\u{8a9e}\u{65e5}\u{672c}\u{8a9e}\u{65e5}\u{672c}\u{8a9e}\u{65e5}\u{672c}\u{8a9e}\u{65e5}\u{672c}\u{8a9e}\u{65e5}\u{672c}\u{8a9e}\u{65e5}\u{672c}\u{8a9e}\u{65e5}\u{672c}\u{8a9e}\u{65e5}\u{672c}\u{8a9e}\u{65e5}\u{672c}\u{8a9e}\u{65e5}\u{672c}\u{8a9e}\u{65e5}\u{672c}\u{8a9e}\u{65e5}\u{672c}\u{8a9e}\u{65e5}\u{672c}\u{8a9e}\u{65e5}\u{672c}\u{8a9e}\u{65e5}\u{672c}\u{8a9e}\u{65e5}\u{672c}\u{8a9e}\u{65e5}\u{672c}\u{8a9e}\u{65e5}\u{672c}\u{8a9e}\u{65e5}\u{672c}\u{8a9e}\u{65e5}\u{672c}\u{8a9e}\u{65e5}\u{672c}.txt";
/// [`LONG_NAME`] cut to 83 characters (249 bytes) at a character boundary,
/// its extension kept: 253 bytes.
const LONG_NAME_SAVED: &str = "top/\u{65e5}\u{672c}\u{8a9e}\u{65e5}\u{672c}\u{8a9e}\u{65e5}\u{672c}\u{8a9e}\u{65e5}\u{672c}\u{8a9e}\u{65e5}\u{672c}\u{8a9e}\u{65e5}\u{672c}\u{8a9e}\u{65e5}\u{672c}\u{8a9e}\u{65e5}\u{672c}\u{8a9e}\u{65e5}\u{672c}\u{8a9e}\u{65e5}\u{672c}\u{8a9e}\u{65e5}\u{672c}\u{8a9e}\u{65e5}\u{672c}\u{8a9e}\u{65e5}\u{672c}\u{8a9e}\u{65e5}\u{672c}\u{8a9e}\u{65e5}\u{672c}\u{8a9e}\u{65e5}\u{672c}\u{8a9e}\u{65e5}\u{672c}\u{8a9e}\u{65e5}\u{672c}\u{8a9e}\u{65e5}\u{672c}\u{8a9e}\u{65e5}\u{672c}\u{8a9e}\u{65e5}\u{672c}\u{8a9e}\u{65e5}\u{672c}\u{8a9e}\u{65e5}\u{672c}\u{8a9e}\u{65e5}\u{672c}\u{8a9e}\u{65e5}\u{672c}\u{8a9e}\u{65e5}\u{672c}\u{8a9e}\u{65e5}\u{672c}\u{8a9e}\u{65e5}\u{672c}.txt";

/// A legal torrent whose info dict has unsorted keys, so the info-hash must be
/// computed over the raw bytes (a re-encoding would sort them and differ).
fn unordered_info() -> Vec<u8> {
    let mut info = b"d".to_vec();
    info.extend(bstr(b"pieces"));
    info.extend(bstr(&[9; 20]));
    info.extend(bstr(b"name"));
    info.extend(bstr(b"unordered.bin"));
    info.extend(bstr(b"length"));
    info.extend(b"i1000e");
    info.extend(bstr(b"piece length"));
    info.extend(b"i16384e");
    info.extend(b"e");
    let mut out = b"d8:announce31:http://tracker.example/announce4:info".to_vec();
    out.extend(info);
    out.extend(b"e");
    out
}

trait CloneWith {
    fn clone_with(&self, key: &str, value: Owned) -> Owned;
}

impl CloneWith for Owned {
    fn clone_with(&self, key: &str, value: Owned) -> Owned {
        let mut out = self.clone();
        if let Owned::Dict(map) = &mut out {
            map.insert(key.as_bytes().to_vec(), value);
        }
        out
    }
}

#[test]
fn fixtures_are_refused_or_parsed_as_expected() {
    let dir = fixture_dir();
    let regenerate = std::env::var_os("CAPWISE_REGENERATE_FIXTURES").is_some();
    if regenerate {
        std::fs::create_dir_all(&dir).unwrap();
    }
    for (name, bytes, expect) in fixtures() {
        let path = dir.join(name);
        if regenerate {
            std::fs::write(&path, &bytes).unwrap();
        }
        let on_disk = std::fs::read(&path)
            .unwrap_or_else(|e| panic!("{name}: {e} (run with CAPWISE_REGENERATE_FIXTURES=1)"));
        assert!(
            on_disk == bytes,
            "{name} is stale; run with CAPWISE_REGENERATE_FIXTURES=1"
        );
        let result = Metainfo::from_bytes(&on_disk);
        match expect {
            Expect::Refused(needles) => {
                let message = match result {
                    Ok(m) => panic!("{name}: accepted but should be refused: {m:?}"),
                    Err(e) => e.to_string(),
                };
                for needle in needles {
                    assert!(
                        message.contains(needle),
                        "{name}: {message:?} lacks {needle:?}"
                    );
                }
                // Also through the crate error, as the agent will show it.
                let wrapped =
                    capwise_engine::Error::from(Metainfo::from_bytes(&on_disk).unwrap_err());
                assert!(wrapped.to_string().starts_with("invalid torrent: "));
            }
            Expect::Parses => {
                if let Err(e) = result {
                    panic!("{name}: refused but should parse: {e}");
                }
            }
            Expect::Loads(want) => {
                let m = result.unwrap_or_else(|e| panic!("{name}: refused but should load: {e}"));
                let got: Vec<String> = m.info.files.iter().map(|f| f.path.join("/")).collect();
                assert_eq!(got, *want, "{name}");
                for f in &m.info.files {
                    for c in &f.path {
                        assert!(
                            !c.is_empty() && c != "." && c != ".." && !c.contains(['/', '\0']),
                            "{name}: unsafe component {c:?}"
                        );
                        assert!(c.len() <= 255, "{name}: {} bytes", c.len());
                    }
                }
            }
        }
    }
}

#[test]
fn unordered_info_is_hashed_from_raw_bytes() {
    let bytes = std::fs::read(fixture_dir().join("unordered_info.torrent")).unwrap();
    let m = Metainfo::from_bytes(&bytes).unwrap();
    let start = bytes.windows(6).position(|w| w == b"4:info").unwrap() + 6;
    let raw = &bytes[start..bytes.len() - 1];
    assert_eq!(m.info_bytes, raw);
    assert_eq!(m.info_hash, InfoHash(Sha1::digest(raw).into()));
    let reencoded = bencode::decode(raw).unwrap().to_owned_value().to_bytes();
    assert_ne!(m.info_hash, InfoHash(Sha1::digest(&reencoded).into()));
    assert_eq!(m.info.name, "unordered.bin");
    assert_eq!(m.info.total_length, 1000);
}

#[test]
fn utf8_variant_and_pad_files() {
    let m = Metainfo::from_bytes(
        &std::fs::read(fixture_dir().join("utf8_variant_path.torrent")).unwrap(),
    )
    .unwrap();
    assert_eq!(m.info.files[0].path, vec!["top", "café"]);
    let m = Metainfo::from_bytes(
        &std::fs::read(fixture_dir().join("pad_files_and_empty_files.torrent")).unwrap(),
    )
    .unwrap();
    let offsets: Vec<u64> = m.info.files.iter().map(|f| f.offset).collect();
    assert_eq!(offsets, vec![0, 10, 16384, 16384]);
    // BEP 47: the pad file is kept in the layout but never created.
    assert!(m.info.files[1].pad && m.info.files[1].path.is_empty());
}

#[test]
fn trackers_from_announce_list_skip_empty_tiers_and_junk() {
    let bytes = Owned::dict()
        .with("announce", "http://fallback/")
        .with(
            "announce-list",
            vec![
                Owned::list(["udp://a/", "udp://b/"]),
                Owned::List(vec![]),
                Owned::List(vec![
                    Owned::Int(3),
                    Owned::from(""),
                    Owned::from("http://c/"),
                ]),
                Owned::from("not a tier"),
            ],
        )
        .with("comment", "hello")
        .with("created by", "test")
        .with("creation date", 1_700_000_000)
        .with("info", single_info(b"x", 10, PIECE, 1))
        .build()
        .to_bytes();
    let m = Metainfo::from_bytes(&bytes).unwrap();
    assert_eq!(
        m.trackers,
        vec![vec!["udp://a/", "udp://b/"], vec!["http://c/"]]
    );
    assert_eq!(m.comment.as_deref(), Some("hello"));
    assert_eq!(m.created_by.as_deref(), Some("test"));
    assert_eq!(m.creation_date, Some(1_700_000_000));

    let none = torrent(single_info(b"x", 10, PIECE, 1));
    let none = bencode::decode(&none).unwrap().to_owned_value();
    let Owned::Dict(mut map) = none else { panic!() };
    map.remove(b"announce".as_slice());
    let m = Metainfo::from_bytes(&Owned::Dict(map).to_bytes()).unwrap();
    assert!(m.trackers.is_empty());
}

/// Deterministic pseudo-random bytes (xorshift), so data differs between pieces.
fn pseudo_random(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// A missing reference client: a note, or a failure where `scripts/test`
/// installed them (`CAPWISE_REQUIRE_TOOLS`), so that CI cannot pass by skipping.
fn missing_tool(note: &str) {
    assert!(
        std::env::var_os("CAPWISE_REQUIRE_TOOLS").is_none(),
        "{note} (CAPWISE_REQUIRE_TOOLS is set)"
    );
    println!("note: {note}");
}

/// Info-hash as reported by external clients, when they are installed.
fn external_info_hashes(torrent: &Path) -> Vec<(&'static str, String)> {
    let mut found = Vec::new();
    if !Path::new("/usr/bin/transmission-show").exists() {
        missing_tool("/usr/bin/transmission-show not found; skipping external client checks");
        return found;
    }
    let out = Command::new("/usr/bin/transmission-show")
        .arg(torrent)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "transmission-show failed: {text} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let hash = text
        .lines()
        .find_map(|l| {
            l.trim()
                .strip_prefix("Hash:")
                .or_else(|| l.trim().strip_prefix("Hash v1:"))
        })
        .unwrap_or_else(|| panic!("no Hash line in transmission-show output:\n{text}"));
    found.push(("transmission-show", hash.trim().to_lowercase()));

    match Command::new("/usr/bin/python3")
        .arg("-c")
        .arg("import sys, libtorrent as lt; print(lt.torrent_info(sys.argv[1]).info_hash())")
        .arg(torrent)
        .output()
    {
        Ok(out) if out.status.success() => found.push((
            "libtorrent",
            String::from_utf8_lossy(&out.stdout).trim().to_lowercase(),
        )),
        Ok(out) => missing_tool(&format!(
            "python libtorrent unavailable or failed, skipping: {}",
            String::from_utf8_lossy(&out.stderr)
        )),
        Err(e) => missing_tool(&format!(
            "/usr/bin/python3 not runnable, skipping libtorrent: {e}"
        )),
    }

    if let Ok(out) = Command::new("aria2c").arg("-S").arg(torrent).output() {
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "aria2c -S failed: {text}");
        if let Some(hash) = text
            .lines()
            .find_map(|l| l.trim().strip_prefix("Info Hash:"))
        {
            found.push(("aria2c", hash.trim().to_lowercase()));
        }
    } else {
        missing_tool("aria2c not found, skipping");
    }
    found
}

#[test]
fn created_torrent_round_trips_and_loads_in_reference_clients() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("My Share");
    let files: &[(&str, usize)] = &[
        ("b/deeper/c.bin", 50_000),
        ("a.txt", 1000),
        ("b/empty", 0),
        ("b/sub.dat", 100_000),
        ("z", 17),
        ("b/deeper/A-upper", 16384),
    ];
    for (i, (rel, len)) in files.iter().enumerate() {
        let path = root.join(rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, pseudo_random(*len, i as u64 + 1)).unwrap();
    }
    // Symlinks inside the tree are skipped.
    std::os::unix::fs::symlink(root.join("a.txt"), root.join("link-to-a")).unwrap();

    let opts = CreateOptions {
        path: root.clone(),
        trackers: vec![
            "udp://tracker.example:6969/announce".into(),
            "http://t2.example/announce".into(),
        ],
        piece_length: Some(16384),
        private: true,
        comment: Some("capwise test".into()),
        created_by: None,
        web_seeds: Vec::new(),
    };
    let bytes = create_torrent(&opts).unwrap();
    let m = Metainfo::from_bytes(&bytes).unwrap();

    assert_eq!(m.info.name, "My Share");
    let paths: Vec<String> = m.info.files.iter().map(|f| f.path.join("/")).collect();
    assert_eq!(
        paths,
        [
            "My Share/a.txt",
            "My Share/b/deeper/A-upper",
            "My Share/b/deeper/c.bin",
            "My Share/b/empty",
            "My Share/b/sub.dat",
            "My Share/z",
        ]
    );
    assert!(m.info.private);
    assert_eq!(
        m.trackers,
        vec![
            vec!["udp://tracker.example:6969/announce"],
            vec!["http://t2.example/announce"]
        ]
    );
    assert_eq!(m.comment.as_deref(), Some("capwise test"));
    assert!(m.created_by.as_deref().unwrap().starts_with("capwise/"));
    assert!(m.creation_date.unwrap() > 1_600_000_000);

    // Piece hashes against the concatenated data, read independently.
    let mut data = Vec::new();
    for f in &m.info.files {
        let disk = tmp.path().join(f.path.join("/"));
        let content = std::fs::read(&disk).unwrap();
        assert_eq!(content.len() as u64, f.length);
        assert_eq!(data.len() as u64, f.offset);
        data.extend(content);
    }
    assert_eq!(data.len() as u64, m.info.total_length);
    assert_eq!(m.piece_count() as usize, data.len().div_ceil(16384));
    for (i, chunk) in data.chunks(16384).enumerate() {
        let want: [u8; 20] = Sha1::digest(chunk).into();
        assert_eq!(m.piece_hash(i as u32), Some(&want), "piece {i}");
    }

    // The same tree gives the same info-hash (sorted walk, no timestamps in info).
    let again = Metainfo::from_bytes(&create_torrent(&opts).unwrap()).unwrap();
    assert_eq!(again.info_hash, m.info_hash);

    let torrent_path = tmp.path().join("share.torrent");
    std::fs::write(&torrent_path, &bytes).unwrap();
    for (tool, hash) in external_info_hashes(&torrent_path) {
        assert_eq!(
            hash,
            m.info_hash.to_hex(),
            "{tool} disagrees on the info-hash"
        );
        println!("{tool} agrees: {hash}");
    }
}

#[test]
fn created_single_file_torrent() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("single.bin");
    let content = pseudo_random(3 * 1024 * 1024 + 5, 42);
    std::fs::write(&path, &content).unwrap();
    let opts = CreateOptions {
        path: path.clone(),
        trackers: vec!["http://only.example/announce".into()],
        ..Default::default()
    };
    let bytes = create_torrent(&opts).unwrap();
    let m = Metainfo::from_bytes(&bytes).unwrap();
    assert_eq!(m.info.files.len(), 1);
    assert_eq!(m.info.files[0].path, vec!["single.bin"]);
    assert!(!m.info.is_multi_file());
    assert_eq!(m.info.piece_length, 16384);
    assert_eq!(m.trackers, vec![vec!["http://only.example/announce"]]);
    assert!(!bytes.windows(13).any(|w| w == b"announce-list"));
    for (i, chunk) in content.chunks(m.info.piece_length as usize).enumerate() {
        let want: [u8; 20] = Sha1::digest(chunk).into();
        assert_eq!(m.piece_hash(i as u32), Some(&want));
    }
    let torrent_path = tmp.path().join("single.torrent");
    std::fs::write(&torrent_path, &bytes).unwrap();
    for (tool, hash) in external_info_hashes(&torrent_path) {
        assert_eq!(
            hash,
            m.info_hash.to_hex(),
            "{tool} disagrees on the info-hash"
        );
    }
}

#[test]
fn create_refuses_empty_and_unsafe_trees() {
    let tmp = tempfile::tempdir().unwrap();
    let empty = tmp.path().join("empty");
    std::fs::create_dir_all(empty.join("only/dirs")).unwrap();
    let err = create_torrent(&CreateOptions {
        path: empty,
        ..Default::default()
    })
    .unwrap_err();
    assert!(
        err.to_string().contains("directory contains no files"),
        "{err}"
    );

    let zero = tmp.path().join("zero");
    std::fs::create_dir_all(&zero).unwrap();
    std::fs::write(zero.join("a"), b"").unwrap();
    let err = create_torrent(&CreateOptions {
        path: zero,
        ..Default::default()
    })
    .unwrap_err();
    assert!(err.to_string().contains("total length is zero"), "{err}");

    let reserved = tmp.path().join("reserved");
    std::fs::create_dir_all(&reserved).unwrap();
    std::fs::write(reserved.join("aux.txt"), b"x").unwrap();
    let err = create_torrent(&CreateOptions {
        path: reserved,
        ..Default::default()
    })
    .unwrap_err();
    assert!(err.to_string().contains("reserved device name"), "{err}");

    let case = tmp.path().join("case");
    std::fs::create_dir_all(&case).unwrap();
    std::fs::write(case.join("Read"), b"x").unwrap();
    std::fs::write(case.join("read"), b"y").unwrap();
    let err = create_torrent(&CreateOptions {
        path: case,
        ..Default::default()
    })
    .unwrap_err();
    assert!(err.to_string().contains("is saved as"), "{err}");
    assert!(err.to_string().contains("read (1)"), "{err}");

    let missing = tmp.path().join("does-not-exist");
    let err = create_torrent(&CreateOptions {
        path: missing.clone(),
        ..Default::default()
    })
    .unwrap_err();
    assert!(
        matches!(err, capwise_engine::Error::Io { ref path, .. } if *path == missing),
        "{err}"
    );

    let one = tmp.path().join("one");
    std::fs::write(&one, b"x").unwrap();
    let err = create_torrent(&CreateOptions {
        path: one,
        piece_length: Some(3000),
        ..Default::default()
    })
    .unwrap_err();
    assert!(err.to_string().contains("piece length"), "{err}");
}

/// Hashes 64 MiB (or `CAPWISE_HASH_BENCH_MIB`) and prints the throughput; a
/// smoke check that hashing runs in parallel and is not pathologically slow.
#[test]
fn create_hashing_throughput() {
    let mib: u64 = std::env::var("CAPWISE_HASH_BENCH_MIB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(64);
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("bulk");
    std::fs::create_dir_all(&dir).unwrap();
    let block = pseudo_random(1 << 20, 7);
    let files = mib.div_ceil(16);
    for f in 0..files {
        let mut content = Vec::with_capacity(16 << 20);
        for i in 0..16.min(mib - f * 16) {
            content.extend(block.iter().map(|b| b ^ i as u8 ^ f as u8));
        }
        std::fs::write(dir.join(format!("part{f:04}")), content).unwrap();
    }
    let started = std::time::Instant::now();
    let bytes = create_torrent(&CreateOptions {
        path: dir,
        ..Default::default()
    })
    .unwrap();
    let elapsed = started.elapsed();
    let m = Metainfo::from_bytes(&bytes).unwrap();
    assert_eq!(m.info.total_length, mib << 20);
    println!(
        "hashed {mib} MiB in {elapsed:?} ({:.0} MB/s), {} pieces of {} bytes",
        mib as f64 * 1.048576 / elapsed.as_secs_f64(),
        m.piece_count(),
        m.info.piece_length
    );
}

proptest! {
    // Integration tests have no lib.rs for proptest to persist failures next to.
    #![proptest_config(ProptestConfig { failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn from_bytes_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = Metainfo::from_bytes(&bytes);
    }

    #[test]
    fn from_bytes_never_panics_on_mutated_torrents(
        edits in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..8),
        cut in any::<usize>(),
    ) {
        let mut bytes = torrent(multi_info(
            vec![file(&[b"a", b"b"], 20_000), file(&[b"c"], 0), file(&[b"d"], 30_000)],
            4,
        ));
        for (at, byte) in edits {
            let len = bytes.len();
            if let Some(b) = bytes.get_mut(at % len) {
                *b = byte;
            }
        }
        let keep = cut % (bytes.len() + 1);
        bytes.truncate(keep.max(bytes.len() / 2));
        let _ = Metainfo::from_bytes(&bytes);
    }
}

#[test]
fn magnet_from_torrent_round_trips() {
    use capwise_engine::magnet::Magnet;
    let m = Metainfo::from_bytes(&valid_single()).unwrap();
    let magnet = Magnet::from(&m);
    let parsed = Magnet::parse(&magnet.to_uri()).unwrap();
    assert_eq!(parsed.info_hash, m.info_hash);
    assert_eq!(parsed.display_name.as_deref(), Some("file.bin"));
    assert_eq!(parsed.trackers, vec!["http://tracker.example/announce"]);
    assert_eq!(parsed.exact_length, Some(40_000));
}

/// The fuzz corpus's .torrent seeds (fuzz/seeds/metainfo: every fixture, and
/// torrents made by real clients): each is refused or loads with the fuzz
/// target's invariants, and every path it loads with can be created as is,
/// inside the download directory, once.
#[test]
fn fuzz_seeds_load_with_safe_distinct_paths_or_are_refused() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/seeds/metainfo");
    let mut loaded = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let bytes = std::fs::read(&path).unwrap();
        let Ok(m) = Metainfo::from_bytes(&bytes) else {
            continue;
        };
        loaded += 1;
        let name = path.display();
        let mut offset = 0;
        let mut seen = std::collections::HashSet::new();
        for f in &m.info.files {
            assert_eq!(f.offset, offset, "{name}");
            offset += f.length;
            if f.pad {
                continue;
            }
            assert!(!f.path.is_empty(), "{name}");
            for c in &f.path {
                assert!(
                    !c.is_empty() && c != "." && c != ".." && !c.contains(['/', '\\', '\0']),
                    "{name}: unsafe component {c:?}"
                );
                assert!(c.len() <= 255, "{name}: {} bytes", c.len());
            }
            assert!(
                seen.insert(f.path.join("/").to_lowercase()),
                "{name}: {:?} twice",
                f.path
            );
        }
        assert_eq!(offset, m.info.total_length, "{name}");
        let again = Metainfo::info_from_metadata(&m.info_bytes, m.info_hash)
            .unwrap()
            .unwrap();
        assert_eq!(again, m.info, "{name}");
    }
    assert!(loaded >= 20, "only {loaded} seeds loaded");
}

#[test]
fn metadata_becomes_a_metainfo_only_when_its_hash_is_the_info_hash() {
    let info = single_info(b"a.bin", 3 * PIECE, PIECE, 3).to_bytes();
    let hash = InfoHash::of(&info);
    let trackers = vec![vec!["http://t.example/announce".to_string()]];
    let m = Metainfo::from_info_bytes(&info, hash, trackers.clone()).unwrap();
    assert_eq!(
        (m.info_hash, m.name(), &m.trackers),
        (hash, "a.bin", &trackers)
    );
    // Stored as a .torrent, it parses back to the same torrent.
    let back = Metainfo::from_bytes(&m.to_torrent_bytes()).unwrap();
    assert_eq!(back.info_hash, hash);
    assert_eq!(back.trackers, trackers);
    assert_eq!(back.info_bytes, info);
    let bare = Metainfo::from_info_bytes(&info, hash, Vec::new()).unwrap();
    assert_eq!(
        Metainfo::from_bytes(&bare.to_torrent_bytes())
            .unwrap()
            .info_hash,
        hash
    );
    assert_eq!(
        Metainfo::from_info_bytes(&info, InfoHash([0; 20]), trackers),
        Err(capwise_engine::metainfo::MetainfoError::InfoHashMismatch)
    );
}
