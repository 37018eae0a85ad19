//! Storage against real files in temporary directories.

use std::fs;
use std::io;
use std::os::unix::fs::symlink;
use std::path::Path;
use std::time::{Duration, Instant, SystemTime};

use capwise_engine::bitfield::Bitfield;
use capwise_engine::metainfo::{FileEntry, Info};
use capwise_engine::storage::{
    load_resume, recheck_plan, resume_check, save_resume, Allocation, ResumeData, Storage,
    StorageError,
};
use capwise_engine::Error;
use sha1::{Digest, Sha1};

const PL: u64 = 16 * 1024;

/// Lengths chosen so piece 0 spans three files with an empty one among them,
/// and later pieces cross the `sub/` directory boundary.
const FILES: &[(&str, u64)] = &[
    ("a", 10_000),
    ("empty", 0),
    ("b", 3_000),
    ("sub/c", 5_000),
    ("sub/d", 30_000),
    ("e", 40_000),
];

fn torrent(files: &[(&str, u64)], piece_length: u64, seed: u8) -> (Info, Vec<u8>) {
    let mut entries = Vec::new();
    let mut offset = 0;
    for (name, length) in files {
        let mut path = vec!["t".to_string()];
        path.extend(name.split('/').map(String::from));
        entries.push(FileEntry {
            path,
            length: *length,
            offset,
            pad: false,
        });
        offset += length;
    }
    let data: Vec<u8> = (0..offset)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect();
    let piece_hashes = data
        .chunks(piece_length as usize)
        .map(|c| Sha1::digest(c).into())
        .collect::<Vec<[u8; 20]>>();
    let info = Info {
        name: "t".into(),
        piece_length,
        piece_hashes,
        files: entries,
        total_length: offset,
        private: false,
        notes: Vec::new(),
    };
    (info, data)
}

fn piece(data: &[u8], i: u32) -> &[u8] {
    let start = i as usize * PL as usize;
    &data[start..(start + PL as usize).min(data.len())]
}

fn bits(b: &Bitfield) -> Vec<u32> {
    b.ones().collect()
}

fn io_kind(e: &Error) -> io::ErrorKind {
    match e {
        Error::Io { source, .. } => source.kind(),
        other => panic!("expected Error::Io, got {other:?}"),
    }
}

#[test]
fn out_of_order_writes_read_back_across_boundaries() {
    let dir = tempfile::tempdir().unwrap();
    let (info, data) = torrent(FILES, PL, 1);
    let s = Storage::open(&info, dir.path()).unwrap();
    assert_eq!(info.piece_count(), 6);
    for f in FILES {
        let meta = fs::metadata(dir.path().join("t").join(f.0)).unwrap();
        assert_eq!(meta.len(), f.1, "{} created at full length", f.0);
    }
    assert_eq!(
        bits(&s.verify_all(2).unwrap()),
        Vec::<u32>::new(),
        "fresh files hold nothing"
    );

    for i in [4, 0, 2] {
        s.write_piece(i, piece(&data, i)).unwrap();
    }
    // The short last piece arrives as blocks, last block first.
    let p5 = piece(&data, 5);
    s.write_block(5, 4096, &p5[4096..]).unwrap();
    s.write_block(5, 0, &p5[..4096]).unwrap();

    // A block crossing a, (empty), b and sub/c.
    let mut buf = vec![0; 6000];
    s.read_block(0, 9000, &mut buf).unwrap();
    assert_eq!(buf, data[9000..15000]);
    assert_eq!(s.read_piece(4).unwrap(), piece(&data, 4));
    assert!(s.verify_piece(2).unwrap());
    assert!(!s.verify_piece(1).unwrap());

    assert_eq!(bits(&s.verify_all(1).unwrap()), vec![0, 2, 4, 5]);
    assert_eq!(bits(&s.verify_all(3).unwrap()), vec![0, 2, 4, 5]);
    assert_eq!(bits(&s.verify_pieces(&[1, 2, 5], 2).unwrap()), vec![2, 5]);
    s.sync_all().unwrap();

    // The bytes landed where a plain concatenation of the files says.
    let on_disk: Vec<u8> = FILES
        .iter()
        .flat_map(|f| fs::read(dir.path().join("t").join(f.0)).unwrap())
        .collect();
    assert_eq!(on_disk[..PL as usize], data[..PL as usize]);
}

#[test]
fn skipped_files_stay_off_the_disk_until_wanted() {
    let dir = tempfile::tempdir().unwrap();
    let (info, data) = torrent(FILES, PL, 3);
    // Skip "a" (inside piece 0 with b and sub/c) and "sub/d" (pieces 1 and 2).
    let skipped = [true, false, false, false, true, false];
    let s = Storage::open_selected(&info, dir.path(), Allocation::Sparse, &skipped, "abc").unwrap();
    assert_eq!(s.parked_files(), vec![0, 4]);
    let parts = dir.path().join(".abc.parts");
    assert!(
        !parts.exists(),
        "no parts file before a boundary piece is written"
    );
    for i in 0..6 {
        s.write_piece(i, piece(&data, i)).unwrap();
    }
    assert!(!dir.path().join("t/a").exists() && !dir.path().join("t/sub/d").exists());
    assert!(parts.exists());
    assert_eq!(bits(&s.verify_all(2).unwrap()), vec![0, 1, 2, 3, 4, 5]);
    s.sync_all().unwrap();
    assert_eq!(s.stamps().unwrap().len(), 6);
    // A restart finds the parked bytes where it left them.
    drop(s);
    let s = Storage::open_selected(&info, dir.path(), Allocation::Sparse, &skipped, "abc").unwrap();
    assert_eq!(bits(&s.verify_all(1).unwrap()), vec![0, 1, 2, 3, 4, 5]);
    // Wanting sub/d again: it appears with the bytes of the pieces we have.
    s.unpark_file(4).unwrap();
    assert_eq!(
        fs::read(dir.path().join("t/sub/d")).unwrap(),
        data[18_000..48_000]
    );
    assert_eq!(s.parked_files(), vec![0]);
    assert!(s.verify_piece(2).unwrap());
    // The last parked file leaves: the parts file goes.
    s.unpark_file(0).unwrap();
    assert_eq!(fs::read(dir.path().join("t/a")).unwrap(), data[..10_000]);
    assert!(!parts.exists());
    assert_eq!(bits(&s.verify_all(2).unwrap()), vec![0, 1, 2, 3, 4, 5]);
}

#[test]
fn a_skipped_file_already_on_disk_is_used_as_it_is() {
    let dir = tempfile::tempdir().unwrap();
    let (info, data) = torrent(FILES, PL, 4);
    {
        let s = Storage::open(&info, dir.path()).unwrap();
        for i in 0..6 {
            s.write_piece(i, piece(&data, i)).unwrap();
        }
    }
    let skipped = [true; 6];
    let s = Storage::open_selected(&info, dir.path(), Allocation::Sparse, &skipped, "x").unwrap();
    assert!(s.parked_files().is_empty());
    assert_eq!(bits(&s.verify_all(2).unwrap()), vec![0, 1, 2, 3, 4, 5]);
    let deleted = s.delete_files().unwrap();
    assert_eq!(deleted.files.len(), 6);
}

#[test]
fn bad_requests_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (info, data) = torrent(FILES, PL, 1);
    let s = Storage::open(&info, dir.path()).unwrap();
    let e = s.write_piece(0, &data[..100]).unwrap_err();
    assert!(
        matches!(StorageError::of(&e), Some(StorageError::PieceLength { .. })),
        "{e}"
    );
    let e = s.write_block(5, 15_000, &[0; 1000]).unwrap_err();
    assert_eq!(io_kind(&e), io::ErrorKind::InvalidInput);
    let e = s.read_block(6, 0, &mut [0; 1]).unwrap_err();
    assert!(matches!(
        StorageError::of(&e),
        Some(StorageError::Layout(_))
    ));
    assert!(s.verify_pieces(&[9], 1).is_err());
    assert!(s.hash_piece(u32::MAX).is_err());
}

#[test]
fn existing_files_are_grown_never_truncated() {
    for allocation in [Allocation::Sparse, Allocation::Full] {
        let dir = tempfile::tempdir().unwrap();
        let (info, data) = torrent(FILES, PL, 1);
        fs::create_dir_all(dir.path().join("t/sub")).unwrap();
        fs::write(dir.path().join("t/a"), vec![7u8; 12_000]).unwrap(); // longer than 10_000
        fs::write(dir.path().join("t/b"), b"xyz").unwrap(); // shorter than 3_000
        let s = Storage::open_allocated(&info, dir.path(), allocation).unwrap();
        assert_eq!(fs::read(dir.path().join("t/a")).unwrap(), vec![7u8; 12_000]);
        let b = fs::read(dir.path().join("t/b")).unwrap();
        assert_eq!(b.len(), 3_000, "{allocation:?}");
        assert_eq!(&b[..3], b"xyz");
        assert_eq!(fs::metadata(dir.path().join("t/e")).unwrap().len(), 40_000);
        s.write_piece(3, piece(&data, 3)).unwrap();
        assert_eq!(bits(&s.verify_all(2).unwrap()), vec![3]);
    }
}

#[test]
fn truncated_file_is_an_error_and_its_pieces_go_missing() {
    let dir = tempfile::tempdir().unwrap();
    let (info, data) = torrent(FILES, PL, 2);
    let s = Storage::open(&info, dir.path()).unwrap();
    for i in 0..6 {
        s.write_piece(i, piece(&data, i)).unwrap();
    }
    assert!(s.verify_all(2).unwrap().is_full());

    // sub/d covers data 18_000..48_000: pieces 1 and 2. Cut it at 20_000 - 18_000.
    fs::OpenOptions::new()
        .write(true)
        .open(dir.path().join("t/sub/d"))
        .unwrap()
        .set_len(2_000)
        .unwrap();
    let mut buf = vec![0; 100];
    let e = s.read_block(1, 16_000, &mut buf).unwrap_err();
    assert_eq!(io_kind(&e), io::ErrorKind::UnexpectedEof);
    match &e {
        Error::Io { path, .. } => assert!(path.ends_with("t/sub/d"), "{path:?}"),
        _ => unreachable!(),
    }
    s.read_block(1, 0, &mut buf).unwrap(); // still inside what is left
    assert_eq!(bits(&s.verify_all(2).unwrap()), vec![0, 3, 4, 5]);
    assert_eq!(bits(&s.verify_all(1).unwrap()), vec![0, 3, 4, 5]);
}

#[test]
fn planted_directory_symlink_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let elsewhere = tempfile::tempdir().unwrap();
    let (info, _) = torrent(FILES, PL, 1);
    symlink(elsewhere.path(), dir.path().join("t")).unwrap();
    let e = Storage::open(&info, dir.path()).unwrap_err();
    assert!(
        matches!(StorageError::of(&e), Some(StorageError::Symlink)),
        "{e}"
    );
    assert_eq!(
        fs::read_dir(elsewhere.path()).unwrap().count(),
        0,
        "nothing written outside"
    );
    assert!(Storage::open_readonly(&info, dir.path()).is_err());
}

#[test]
fn planted_symlinks_deeper_down_are_refused() {
    let elsewhere = tempfile::tempdir().unwrap();
    let (info, _) = torrent(FILES, PL, 1);
    let victim = elsewhere.path().join("victim");
    fs::write(&victim, b"precious").unwrap();

    // A file-position symlink.
    let d1 = tempfile::tempdir().unwrap();
    fs::create_dir_all(d1.path().join("t")).unwrap();
    symlink(&victim, d1.path().join("t/e")).unwrap();
    let e = Storage::open(&info, d1.path()).unwrap_err();
    assert!(
        matches!(StorageError::of(&e), Some(StorageError::Symlink)),
        "{e}"
    );
    assert_eq!(
        fs::read(&victim).unwrap(),
        b"precious",
        "not grown or written"
    );

    // A nested-directory symlink.
    let d2 = tempfile::tempdir().unwrap();
    fs::create_dir_all(d2.path().join("t")).unwrap();
    symlink(elsewhere.path(), d2.path().join("t/sub")).unwrap();
    let e = Storage::open(&info, d2.path()).unwrap_err();
    assert!(
        matches!(StorageError::of(&e), Some(StorageError::Symlink)),
        "{e}"
    );
    assert_eq!(
        fs::read_dir(elsewhere.path()).unwrap().count(),
        1,
        "only the victim"
    );

    // A dangling one cannot be used to create a file elsewhere either.
    let d3 = tempfile::tempdir().unwrap();
    fs::create_dir_all(d3.path().join("t")).unwrap();
    symlink(elsewhere.path().join("new"), d3.path().join("t/a")).unwrap();
    let e = Storage::open(&info, d3.path()).unwrap_err();
    assert!(
        matches!(StorageError::of(&e), Some(StorageError::Symlink)),
        "{e}"
    );
    assert!(!elsewhere.path().join("new").exists());
}

#[test]
fn unsafe_components_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    for bad in ["..", ".", "", "x/y"] {
        let (mut info, _) = torrent(&[("a", 10)], PL, 1);
        info.files[0].path = vec!["t".into(), bad.into()];
        let e = Storage::open(&info, dir.path()).unwrap_err();
        assert!(
            matches!(StorageError::of(&e), Some(StorageError::UnsafePath(_))),
            "{bad:?}: {e}"
        );
    }
}

#[test]
fn fifo_is_refused_without_hanging() {
    let dir = tempfile::tempdir().unwrap();
    let (info, _) = torrent(&[("a", 10)], PL, 1);
    fs::create_dir(dir.path().join("t")).unwrap();
    let status = std::process::Command::new("mkfifo")
        .arg(dir.path().join("t/a"))
        .status();
    if !status.is_ok_and(|s| s.success()) {
        return; // no mkfifo here; nothing to test
    }
    let e = Storage::open(&info, dir.path()).unwrap_err();
    assert!(
        matches!(StorageError::of(&e), Some(StorageError::NotAFile)),
        "{e}"
    );
}

#[test]
fn readonly_sees_missing_files_as_missing_pieces() {
    let dir = tempfile::tempdir().unwrap();
    let (info, data) = torrent(FILES, PL, 3);
    {
        let s = Storage::open(&info, dir.path()).unwrap();
        for i in 0..6 {
            s.write_piece(i, piece(&data, i)).unwrap();
        }
    }
    fs::remove_file(dir.path().join("t/b")).unwrap(); // inside piece 0
    let r = Storage::open_readonly(&info, dir.path()).unwrap();
    assert_eq!(bits(&r.verify_all(2).unwrap()), vec![1, 2, 3, 4, 5]);
    let e = r.read_piece(0).unwrap_err();
    assert_eq!(io_kind(&e), io::ErrorKind::NotFound);
    let e = r.write_block(1, 0, &[1]).unwrap_err();
    assert!(matches!(StorageError::of(&e), Some(StorageError::ReadOnly)));
    assert!(
        !dir.path().join("t/b").exists(),
        "read-only creates nothing"
    );

    let nothing = tempfile::tempdir().unwrap();
    let r = Storage::open_readonly(&info, nothing.path()).unwrap();
    assert_eq!(r.verify_all(2).unwrap().count(), 0);
}

#[test]
fn resume_round_trip_and_bad_files() {
    let dir = tempfile::tempdir().unwrap();
    let (info, data) = torrent(FILES, PL, 4);
    let s = Storage::open(&info, dir.path()).unwrap();
    for i in [1, 3] {
        s.write_piece(i, piece(&data, i)).unwrap();
    }
    s.sync_all().unwrap();
    let resume = ResumeData {
        info_hash: [9; 20],
        pieces: s.verify_all(2).unwrap(),
        files: s.stamps().unwrap(),
    };
    let path = dir.path().join("t.resume");
    assert!(
        load_resume(&path, &[9; 20], 6, 6).unwrap().is_none(),
        "missing is None"
    );
    save_resume(&path, &resume).unwrap();
    save_resume(&path, &resume).unwrap(); // overwriting works too
    assert_eq!(
        load_resume(&path, &[9; 20], 6, 6).unwrap(),
        Some(resume.clone())
    );
    let leftovers: Vec<_> = fs::read_dir(dir.path())
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().ends_with(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "temporary files cleaned up");

    assert!(
        load_resume(&path, &[8; 20], 6, 6).unwrap().is_none(),
        "another torrent"
    );
    assert!(
        load_resume(&path, &[9; 20], 7, 6).unwrap().is_none(),
        "another shape"
    );
    let mut bytes = fs::read(&path).unwrap();
    bytes[45] ^= 0x10;
    fs::write(&path, &bytes).unwrap();
    assert!(
        load_resume(&path, &[9; 20], 6, 6).unwrap().is_none(),
        "corrupt"
    );
    fs::write(&path, vec![0xAB; 1 << 20]).unwrap();
    assert!(
        load_resume(&path, &[9; 20], 6, 6).unwrap().is_none(),
        "garbage"
    );

    // Unchanged files: resume_check trusts the saved bits.
    assert_eq!(
        bits(&resume_check(&s, Some(&resume), 2).unwrap()),
        vec![1, 3]
    );
    assert_eq!(bits(&resume_check(&s, None, 2).unwrap()), vec![1, 3]);
}

/// Overwrites bytes of a file, then restores its mtime so the stamp is unchanged.
fn corrupt_keeping_stamp(path: &Path, at: u64) {
    use std::os::unix::fs::FileExt;
    let mtime = fs::metadata(path).unwrap().modified().unwrap();
    let f = fs::OpenOptions::new().write(true).open(path).unwrap();
    f.write_all_at(b"XXXX", at).unwrap();
    f.set_modified(mtime).unwrap();
}

fn touch(path: &Path) {
    let f = fs::OpenOptions::new().write(true).open(path).unwrap();
    f.set_modified(SystemTime::now() + Duration::from_secs(3600))
        .unwrap();
}

#[test]
fn changed_file_rehashes_only_its_pieces() {
    let dir = tempfile::tempdir().unwrap();
    let (info, data) = torrent(FILES, PL, 5);
    let s = Storage::open(&info, dir.path()).unwrap();
    // Pieces: 0 = a,b,sub/c  1 = sub/c,sub/d  2 = sub/d,e  3..=5 = e
    for i in [0, 1, 2, 3, 4] {
        s.write_piece(i, piece(&data, i)).unwrap();
    }
    s.sync_all().unwrap();
    let resume = ResumeData {
        info_hash: [1; 20],
        pieces: s.verify_all(2).unwrap(),
        files: s.stamps().unwrap(),
    };
    assert_eq!(bits(&resume.pieces), vec![0, 1, 2, 3, 4]);

    // After saving: piece 5 completes (e changes), piece 4 is damaged in e, and
    // piece 0 is damaged in `a` behind a restored mtime.
    s.write_piece(5, piece(&data, 5)).unwrap();
    let e = dir.path().join("t/e");
    corrupt_keeping_stamp(&e, 20_000); // piece 4 is e[17_536..33_920]
    touch(&e);
    corrupt_keeping_stamp(&dir.path().join("t/a"), 100);

    let plan = recheck_plan(s.layout(), &resume, &s.stamps().unwrap());
    assert_eq!(plan.rehash, vec![2, 3, 4, 5], "only pieces touching e");
    assert_eq!(bits(&plan.trusted), vec![0, 1]);

    let have = resume_check(&s, Some(&resume), 2).unwrap();
    // 0 stays present although damaged: proof that `a`'s pieces were not hashed.
    // 4 is found damaged and 5 found complete: e's pieces were hashed.
    assert_eq!(bits(&have), vec![0, 1, 2, 3, 5]);
    assert!(!s.verify_piece(0).unwrap());
}

#[test]
fn size_change_counts_as_change() {
    let dir = tempfile::tempdir().unwrap();
    let (info, data) = torrent(FILES, PL, 6);
    let s = Storage::open(&info, dir.path()).unwrap();
    for i in 0..6 {
        s.write_piece(i, piece(&data, i)).unwrap();
    }
    let resume = ResumeData {
        info_hash: [1; 20],
        pieces: s.verify_all(1).unwrap(),
        files: s.stamps().unwrap(),
    };
    let b = dir.path().join("t/b");
    let mtime = fs::metadata(&b).unwrap().modified().unwrap();
    let f = fs::OpenOptions::new().write(true).open(&b).unwrap();
    f.set_len(100).unwrap();
    f.set_modified(mtime).unwrap();
    assert_eq!(
        bits(&resume_check(&s, Some(&resume), 2).unwrap()),
        vec![1, 2, 3, 4, 5]
    );
}

/// Prints cached-read verify throughput; asserts only correctness.
#[test]
fn verify_throughput_256_mib() {
    const SIZE: u64 = 256 << 20;
    const PIECE: u64 = 256 << 10;
    let chunk: Vec<u8> = (0..PIECE).map(|i| (i * 7 % 251) as u8).collect();
    let count = (SIZE / PIECE) as usize;
    let mut hashes = Vec::with_capacity(count);
    for i in 0..count {
        let mut h = Sha1::new();
        h.update((i as u32).to_le_bytes());
        h.update(&chunk[4..]);
        hashes.push(h.finalize().into());
    }
    let info = Info {
        name: "big".into(),
        piece_length: PIECE,
        piece_hashes: hashes,
        files: vec![FileEntry {
            path: vec!["big".into()],
            length: SIZE,
            offset: 0,
            pad: false,
        }],
        total_length: SIZE,
        private: false,
        notes: Vec::new(),
    };
    let mbps = |d: Duration| SIZE as f64 / 1e6 / d.as_secs_f64();
    let mut p = chunk.clone();
    let mut s = None;
    for allocation in [Allocation::Sparse, Allocation::Full] {
        let dir = tempfile::tempdir().unwrap();
        let t = Instant::now();
        let st = Storage::open_allocated(&info, dir.path(), allocation).unwrap();
        for i in 0..count {
            p[..4].copy_from_slice(&(i as u32).to_le_bytes());
            st.write_piece(i as u32, &p).unwrap();
        }
        println!(
            "open + write_piece 256 MiB, {allocation:?}: {:.0} MB/s",
            mbps(t.elapsed())
        );
        s = Some((st, dir));
    }
    let (s, _dir) = s.unwrap();
    for threads in [1, 2] {
        let t = Instant::now();
        let have = s.verify_all(threads).unwrap();
        let d = t.elapsed();
        assert!(have.is_full());
        println!(
            "verify_all 256 MiB, {threads} thread(s): {:.0} MB/s",
            mbps(d)
        );
    }
}

#[test]
fn reopening_keeps_stamps_so_resume_stays_valid() {
    for allocation in [Allocation::Sparse, Allocation::Full] {
        let dir = tempfile::tempdir().unwrap();
        let (info, data) = torrent(FILES, PL, 7);
        let s = Storage::open_allocated(&info, dir.path(), allocation).unwrap();
        s.write_piece(1, piece(&data, 1)).unwrap();
        s.sync_all().unwrap();
        let before = s.stamps().unwrap();
        drop(s);
        std::thread::sleep(Duration::from_millis(20));
        let s = Storage::open_allocated(&info, dir.path(), allocation).unwrap();
        assert_eq!(s.stamps().unwrap(), before, "{allocation:?}");
    }
}

#[test]
fn deleted_file_is_noticed_and_recreated_empty() {
    let dir = tempfile::tempdir().unwrap();
    let (info, data) = torrent(FILES, PL, 5);
    let s = Storage::open(&info, dir.path()).unwrap();
    for i in 0..info.piece_count() {
        s.write_piece(i, piece(&data, i)).unwrap();
    }
    assert!(s.unlinked_files().is_empty());
    let d = dir.path().join("t/sub/d");
    fs::remove_file(&d).unwrap();
    // Still readable through our descriptor: only the link count tells.
    assert_eq!(s.read_piece(2).unwrap(), piece(&data, 2));
    assert_eq!(s.unlinked_files(), vec![4]);

    s.recreate_file(4).unwrap();
    assert!(s.unlinked_files().is_empty());
    assert_eq!(
        fs::metadata(&d).unwrap().len(),
        0,
        "recreated empty, not grown"
    );
    match s.read_piece(2) {
        Err(e) => assert_eq!(io_kind(&e), io::ErrorKind::UnexpectedEof, "never zeros"),
        Ok(_) => panic!("read data from a file that was deleted"),
    }
    s.write_piece(2, piece(&data, 2)).unwrap();
    assert_eq!(s.read_piece(2).unwrap(), piece(&data, 2));
    assert!(
        fs::metadata(&d).unwrap().len() > 0,
        "writes land in the new file"
    );
}

#[test]
fn delete_files_removes_the_layout_and_nothing_else() {
    let dir = tempfile::tempdir().unwrap();
    let (info, _) = torrent(FILES, PL, 6);
    let s = Storage::open(&info, dir.path()).unwrap();
    fs::write(dir.path().join("t/sub/keep.txt"), b"keep").unwrap();
    fs::write(dir.path().join("beside.txt"), b"beside").unwrap();
    let done = s.delete_files().unwrap();
    assert_eq!(done.files.len(), FILES.len());
    for (name, _) in FILES {
        assert!(!dir.path().join("t").join(name).exists(), "{name} deleted");
    }
    assert_eq!(
        fs::read(dir.path().join("t/sub/keep.txt")).unwrap(),
        b"keep"
    );
    assert_eq!(fs::read(dir.path().join("beside.txt")).unwrap(), b"beside");
    assert!(done.dirs.is_empty(), "directories still holding files stay");

    fs::remove_file(dir.path().join("t/sub/keep.txt")).unwrap();
    let again = s.delete_files().unwrap();
    assert!(again.files.is_empty(), "deleting twice finds nothing");
    assert_eq!(
        again.dirs,
        vec![dir.path().join("t/sub"), dir.path().join("t")]
    );
    assert!(dir.path().exists(), "the download directory itself stays");
}

/// A torrent as other clients make it, parsed by the engine's own parser.
fn parsed(files: Vec<capwise_engine::bencode::Owned>, total: u64) -> Info {
    use capwise_engine::bencode::Owned;
    let bytes = Owned::dict()
        .with(
            "info",
            Owned::dict()
                .with("name", "t")
                .with("files", files)
                .with("piece length", PL as i64)
                .with("pieces", vec![0u8; 20 * total.div_ceil(PL) as usize]),
        )
        .build()
        .to_bytes();
    capwise_engine::metainfo::Metainfo::from_bytes(&bytes)
        .expect("loads")
        .info
}

fn entry(path: &[&str], length: i64, attr: Option<&str>) -> capwise_engine::bencode::Owned {
    use capwise_engine::bencode::Owned;
    let mut d = Owned::dict().with("length", length);
    if !path.is_empty() {
        d = d.with("path", Owned::list(path.iter().copied()));
    }
    if let Some(a) = attr {
        d = d.with("attr", a);
    }
    d.build()
}

#[test]
fn bep47_pad_files_are_never_created_and_read_as_zeros() {
    let mut info = parsed(
        vec![
            entry(&["a"], 100, None),
            entry(&[".pad", "16284"], (PL - 100) as i64, Some("p")),
            entry(&["link"], 0, Some("l")),
            entry(&["b"], 50, None),
        ],
        PL + 50,
    );
    let mut data = vec![0u8; (PL + 50) as usize];
    for (i, b) in data.iter_mut().enumerate() {
        if i < 100 || i >= PL as usize {
            *b = (i % 251) as u8 + 1;
        }
    }
    info.piece_hashes = data
        .chunks(PL as usize)
        .map(|c| Sha1::digest(c).into())
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let s = Storage::open(&info, dir.path()).unwrap();
    s.write_piece(0, piece(&data, 0)).unwrap();
    s.write_piece(1, &data[PL as usize..]).unwrap();
    assert_eq!(bits(&s.verify_all(2).unwrap()), vec![0, 1]);
    assert_eq!(s.read_piece(0).unwrap(), piece(&data, 0));
    let mut names: Vec<String> = fs::read_dir(dir.path().join("t"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    // No `.pad` directory, no symlink: only the real files.
    assert_eq!(names, vec!["a", "b"]);
    assert_eq!(fs::metadata(dir.path().join("t/a")).unwrap().len(), 100);
    let deleted = s.delete_files().unwrap();
    assert_eq!(deleted.files.len(), 2, "{deleted:?}");
}

#[test]
fn torrents_other_clients_load_can_be_written() {
    // A 300-byte UTF-8 name (ENAMETOOLONG as is), a duplicate, a `..`, an
    // absolute path and characters vfat refuses: all land inside `dir/t`.
    let long = format!("{}.txt", "\u{e9}".repeat(150));
    let info = parsed(
        vec![
            entry(&[&long], 10, None),
            entry(&[&long], 10, None),
            entry(&["..", "..", "escape"], 10, None),
            entry(&["/etc", "passwd"], 10, None),
            entry(&["a:b?"], 10, None),
        ],
        50,
    );
    let dir = tempfile::tempdir().unwrap();
    let inner = dir.path().join("inner");
    let s = Storage::open(&info, &inner).unwrap();
    s.write_piece(0, &[7u8; 50]).unwrap();
    let mut names: Vec<String> = fs::read_dir(inner.join("t"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(names.len(), 5, "{names:?}");
    assert!(names.contains(&"escape".to_string()) && names.contains(&"a_b_".to_string()));
    assert!(inner.join("t/etc/passwd").is_file());
    assert!(names.iter().all(|n| n.len() <= 255), "{names:?}");
    assert!(names.iter().any(|n| n.ends_with(" (1).txt")), "{names:?}");
    // Nothing next to the download directory.
    let outside: Vec<_> = fs::read_dir(dir.path()).unwrap().collect();
    assert_eq!(outside.len(), 1);
}
