//! File selection on real sessions over loopback: a leecher that wants one
//! file of three downloads only the pieces it needs, keeps the skipped
//! files off its disk, and completes them later when they are wanted.

use std::path::Path;
use std::time::Duration;

use capwise_engine::create::{create_torrent, CreateOptions};
use capwise_engine::metainfo::Metainfo;
use capwise_engine::priority::Priority;
use capwise_engine::session::{
    FileChoice, FileFilter, Hooks, Session, SessionConfig, TorrentHandle, TorrentOptions,
    TorrentState,
};

const LIMIT: Duration = Duration::from_secs(60);
const PIECE: u64 = 256 * 1024;
/// In the torrent's (sorted) order; each file starts and ends inside a piece.
const FILES: &[(&str, u64)] = &[
    ("a.bin", 3 * PIECE / 2 + 11),
    ("b/video.mkv", 2 * PIECE + 777),
    ("c.bin", PIECE + 5),
];

fn content(i: usize, n: u64) -> Vec<u8> {
    (0..n)
        .map(|k| (k as u8).wrapping_mul(7).wrapping_add(i as u8 * 41))
        .collect()
}

fn make_payload(dir: &Path) -> Metainfo {
    let data = dir.join("data");
    for (i, (name, len)) in FILES.iter().enumerate() {
        let path = data.join(name);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, content(i, *len)).unwrap();
    }
    let opts = CreateOptions {
        path: data,
        piece_length: Some(PIECE),
        ..CreateOptions::default()
    };
    Metainfo::from_bytes(&create_torrent(&opts).unwrap()).unwrap()
}

fn config() -> SessionConfig {
    SessionConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        ..SessionConfig::default()
    }
}

async fn wait_for(handle: &TorrentHandle, what: &str, cond: impl Fn(&TorrentHandle) -> bool) {
    let deadline = tokio::time::Instant::now() + LIMIT;
    let mut h = handle.clone();
    while !cond(&h) {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        assert!(
            !left.is_zero(),
            "timed out waiting for {what}: {:?}",
            h.progress()
        );
        let _ = tokio::time::timeout(left.min(Duration::from_millis(200)), h.changed()).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_wanted_file_is_fetched_and_the_rest_follows_when_wanted() {
    let tmp = tempfile::tempdir().unwrap();
    let meta = make_payload(tmp.path());
    let seeder = Session::start(config(), Hooks::default()).await.unwrap();
    let seeding = seeder
        .add_torrent(
            meta.clone(),
            tmp.path().to_path_buf(),
            TorrentOptions::default(),
        )
        .await
        .unwrap();
    assert_eq!(seeding.progress().state, TorrentState::Seeding);

    let leecher = Session::start(config(), Hooks::default()).await.unwrap();
    let dir = tmp.path().join("leech");
    let filter = FileFilter::new(&["*.mkv".to_string()], &[]).unwrap();
    let options = TorrentOptions {
        files: FileChoice {
            filter: Some(filter),
            ..FileChoice::default()
        },
        ..TorrentOptions::default()
    };
    let leeching = leecher
        .add_torrent(meta.clone(), dir.clone(), options)
        .await
        .unwrap();
    let prios: Vec<Priority> = leeching.files().iter().map(|f| f.priority).collect();
    assert_eq!(
        prios,
        vec![Priority::Skip, Priority::Normal, Priority::Skip]
    );
    leeching.connect(&[seeder.local_addr()]);
    let mut h = leeching.clone();
    tokio::time::timeout(LIMIT, h.wait_finished())
        .await
        .expect("the wanted file in time")
        .expect("no error");

    let p = leeching.progress();
    // b/video.mkv runs from 1.5 pieces to 3.5 pieces: pieces 1, 2 and 3.
    assert_eq!(p.wanted_length, 3 * PIECE);
    assert_eq!(p.wanted_have, p.wanted_length);
    assert!(p.pieces_have < p.piece_count);
    assert!(
        p.downloaded <= p.wanted_length,
        "at most the wanted file and its boundary pieces: {} > {}",
        p.downloaded,
        p.wanted_length
    );
    assert_eq!(
        std::fs::read(dir.join("data/b/video.mkv")).unwrap(),
        content(1, FILES[1].1)
    );
    assert!(
        !dir.join("data/a.bin").exists(),
        "a skipped file is not created"
    );
    assert!(
        !dir.join("data/c.bin").exists(),
        "a skipped file is not created"
    );
    let parts = dir.join(format!(".{}.parts", meta.info_hash.to_hex()));
    assert!(parts.exists(), "the boundary bytes of a.bin are kept aside");
    let files = leeching.files();
    assert_eq!(files[1].bytes_have, FILES[1].1);
    assert_eq!(
        files[0].bytes_have,
        FILES[0].1 - PIECE,
        "a.bin's second piece only"
    );

    // Wanting everything: the rest downloads, the files appear whole.
    leeching
        .set_files(vec![Priority::Normal; 3], false)
        .await
        .unwrap();
    leeching.connect(&[seeder.local_addr()]);
    wait_for(&leeching, "every piece", |h| {
        let p = h.progress();
        p.pieces_have == p.piece_count
    })
    .await;
    for (i, (name, len)) in FILES.iter().enumerate() {
        assert_eq!(
            std::fs::read(dir.join("data").join(name)).unwrap(),
            content(i, *len),
            "{name}"
        );
    }
    assert!(!parts.exists(), "no parts file once nothing is skipped");
    assert!(leeching
        .set_files(vec![Priority::Normal; 2], false)
        .await
        .is_err());
    leecher.shutdown().await;
    seeder.shutdown().await;
}
