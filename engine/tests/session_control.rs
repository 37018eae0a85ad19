//! Controls on real sessions over loopback: pause and resume, removal (with
//! and without data), resume data in a caller's store, data vanishing under a
//! seeder, the WAN switch, and a real full disk (a small tmpfs in a private
//! mount namespace, when run as root).

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use capwise_engine::create::{create_torrent, CreateOptions};
use capwise_engine::hooks::{ByteGate, Classifier, Direction, GateFuture, PeerClass};
use capwise_engine::metainfo::Metainfo;
use capwise_engine::session::{
    Hooks, ResumeStore, Session, SessionConfig, TorrentHandle, TorrentOptions, TorrentState,
};
use capwise_engine::storage::{PieceJournal, ResumeData};
use capwise_engine::Error;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const LIMIT: Duration = Duration::from_secs(60);
const PIECE: u64 = 256 * 1024;
const A_LEN: u64 = 3 * 1024 * 1024 + 123;
const B_LEN: u64 = 2 * 1024 * 1024 + 7;

/// Resume data kept in memory, as the agent keeps it in its database.
#[derive(Debug, Default)]
struct MemStore(Mutex<HashMap<[u8; 20], Vec<u8>>>);

impl MemStore {
    fn get(&self, key: &[u8; 20]) -> Option<Vec<u8>> {
        self.0.lock().unwrap().get(key).cloned()
    }
}

impl ResumeStore for MemStore {
    fn load(&self, info_hash: &[u8; 20]) -> std::io::Result<Option<Vec<u8>>> {
        Ok(self.get(info_hash))
    }
    fn save(&self, info_hash: &[u8; 20], bytes: &[u8]) -> std::io::Result<()> {
        self.0.lock().unwrap().insert(*info_hash, bytes.to_vec());
        Ok(())
    }
    fn remove(&self, info_hash: &[u8; 20]) -> std::io::Result<()> {
        self.0.lock().unwrap().remove(info_hash);
        Ok(())
    }
    fn load_journal(&self, _: &[u8; 20]) -> std::io::Result<Option<Vec<u8>>> {
        Ok(None)
    }
    fn save_journal(&self, _: &[u8; 20], _: &[u8]) -> std::io::Result<()> {
        Ok(())
    }
}

/// Lets one block up every few milliseconds, so a transfer lasts long
/// enough to be paused half-way.
struct SlowUploads;

impl ByteGate for SlowUploads {
    fn acquire(&self, direction: Direction, _: PeerClass, _: u64) -> GateFuture<'_> {
        match direction {
            Direction::Up => Box::pin(tokio::time::sleep(Duration::from_millis(8))),
            Direction::Down => Box::pin(std::future::ready(())),
        }
    }
}

fn config(store: Option<Arc<dyn ResumeStore>>) -> SessionConfig {
    SessionConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        resume: store,
        ..SessionConfig::default()
    }
}

fn pseudo_random(seed: u32, n: u64) -> Vec<u8> {
    let mut x = seed;
    (0..n)
        .map(|_| {
            x = x.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            (x >> 24) as u8
        })
        .collect()
}

/// `<dir>/data/{a.bin, sub/b.bin, empty}` and its torrent.
fn make_payload(dir: &Path, seed: u32, trackers: Vec<String>) -> Metainfo {
    let data_dir = dir.join("data");
    std::fs::create_dir_all(data_dir.join("sub")).unwrap();
    std::fs::write(data_dir.join("a.bin"), pseudo_random(seed, A_LEN)).unwrap();
    std::fs::write(data_dir.join("sub/b.bin"), pseudo_random(seed + 1, B_LEN)).unwrap();
    std::fs::write(data_dir.join("empty"), b"").unwrap();
    let opts = CreateOptions {
        path: data_dir,
        piece_length: Some(PIECE),
        trackers,
        ..CreateOptions::default()
    };
    Metainfo::from_bytes(&create_torrent(&opts).unwrap()).unwrap()
}

async fn add(session: &Session, meta: &Metainfo, dir: &Path, paused: bool) -> TorrentHandle {
    session
        .add_torrent(
            meta.clone(),
            dir.to_path_buf(),
            TorrentOptions {
                paused,
                ..TorrentOptions::default()
            },
        )
        .await
        .unwrap()
}

/// Waits (bounded) until `cond` holds for the torrent's progress.
async fn wait_for(
    handle: &TorrentHandle,
    what: &str,
    cond: impl Fn(&capwise_engine::session::Progress) -> bool,
) {
    let deadline = tokio::time::Instant::now() + LIMIT;
    let mut h = handle.clone();
    loop {
        if cond(&h.progress()) {
            return;
        }
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
async fn pause_stops_transfer_and_resume_completes_it() {
    let tmp = tempfile::tempdir().unwrap();
    let meta = make_payload(tmp.path(), 1, vec![]);
    let hooks = Hooks {
        gate: Arc::new(SlowUploads),
        ..Hooks::default()
    };
    let seeder = Session::start(config(None), hooks).await.unwrap();
    let seeding = add(&seeder, &meta, tmp.path(), false).await;
    assert_eq!(seeding.progress().state, TorrentState::Seeding);

    let leecher = Session::start(config(None), Hooks::default())
        .await
        .unwrap();
    let leech_dir = tmp.path().join("leech");
    let leeching = add(&leecher, &meta, &leech_dir, false).await;
    leeching.connect(&[seeder.local_addr()]);
    wait_for(&leeching, "a few pieces", |p| p.pieces_have >= 2).await;

    leeching.pause().await;
    leeching.pause().await; // idempotent
    assert!(leeching.is_paused());
    wait_for(&leeching, "peers gone", |p| p.peers == 0).await;
    assert_eq!(leeching.progress().state, TorrentState::Paused);
    wait_for(&seeding, "the seeder to see the peer go", |p| p.peers == 0).await;
    let had = leeching.progress().pieces_have;
    assert!(had < meta.info.piece_count(), "paused before the end");
    // Dialling while paused does nothing.
    leeching.connect(&[seeder.local_addr()]);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let p = leeching.progress();
    assert_eq!(p.pieces_have, had, "nothing arrives while paused");
    assert_eq!(p.peers, 0);
    assert_eq!(p.state, TorrentState::Paused);

    leeching.resume().await;
    leeching.resume().await; // idempotent
    assert!(!leeching.is_paused());
    let mut h = leeching.clone();
    tokio::time::timeout(LIMIT, h.wait_finished())
        .await
        .expect("download in time")
        .expect("no error");
    assert_eq!(
        std::fs::read(leech_dir.join("data/a.bin")).unwrap(),
        pseudo_random(1, A_LEN)
    );
    leecher.shutdown().await;
    seeder.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn added_paused_joins_nothing_until_resumed() {
    let tmp = tempfile::tempdir().unwrap();
    let meta = make_payload(tmp.path(), 2, vec![]);
    let seeder = Session::start(config(None), Hooks::default())
        .await
        .unwrap();
    let seeding = add(&seeder, &meta, tmp.path(), true).await;
    assert_eq!(seeding.progress().state, TorrentState::Paused);
    assert_eq!(
        seeding.progress().pieces_have,
        meta.info.piece_count(),
        "checked anyway"
    );

    let leecher = Session::start(config(None), Hooks::default())
        .await
        .unwrap();
    let leeching = add(&leecher, &meta, &tmp.path().join("leech"), false).await;
    leeching.connect(&[seeder.local_addr()]);
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        leeching.progress().pieces_have,
        0,
        "a paused seeder admits no one"
    );
    assert_eq!(seeding.progress().peers, 0);

    seeding.resume().await;
    wait_for(&seeding, "seeding", |p| p.state == TorrentState::Seeding).await;
    leeching.connect(&[seeder.local_addr()]);
    let mut h = leeching.clone();
    tokio::time::timeout(LIMIT, h.wait_finished())
        .await
        .expect("download in time")
        .expect("no error");
    leecher.shutdown().await;
    seeder.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remove_with_data_deletes_only_the_torrents_files() {
    let tmp = tempfile::tempdir().unwrap();
    let meta = make_payload(tmp.path(), 3, vec![]);
    let data = tmp.path().join("data");
    std::fs::write(data.join("sibling.txt"), b"mine").unwrap();
    std::fs::write(tmp.path().join("outside.txt"), b"mine too").unwrap();
    let store = Arc::new(MemStore::default());
    let session = Session::start(config(Some(store.clone())), Hooks::default())
        .await
        .unwrap();
    let handle = add(&session, &meta, tmp.path(), false).await;
    let key = handle.info_hash();
    assert_eq!(handle.name(), "data");
    assert_eq!(handle.download_dir(), tmp.path());
    assert_eq!(handle.metainfo().unwrap().info_hash, meta.info_hash);
    assert_eq!(session.torrents().len(), 1);
    assert!(session.torrent(key).is_some());
    handle.pause().await; // saves resume data
    assert!(store.get(&key).is_some());

    session.remove_torrent(key, true).await.unwrap();
    assert!(!data.join("a.bin").exists());
    assert!(!data.join("sub/b.bin").exists());
    assert!(!data.join("empty").exists());
    assert!(!data.join("sub").exists(), "an emptied directory goes");
    assert_eq!(std::fs::read(data.join("sibling.txt")).unwrap(), b"mine");
    assert_eq!(
        std::fs::read(tmp.path().join("outside.txt")).unwrap(),
        b"mine too"
    );
    assert!(store.get(&key).is_none(), "resume data forgotten");
    assert!(session.torrent(key).is_none());
    assert!(session.torrents().is_empty());

    let again = session.remove_torrent(key, true).await;
    assert!(matches!(again, Err(Error::UnknownTorrent(h)) if h.0 == key));
    session.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remove_keeps_data_unless_asked_and_never_follows_symlinks() {
    let tmp = tempfile::tempdir().unwrap();
    let meta = make_payload(tmp.path(), 4, vec![]);
    let data = tmp.path().join("data");
    let session = Session::start(config(None), Hooks::default())
        .await
        .unwrap();
    let handle = add(&session, &meta, tmp.path(), false).await;
    session
        .remove_torrent(handle.info_hash(), false)
        .await
        .unwrap();
    assert!(data.join("a.bin").exists() && data.join("sub/b.bin").exists());

    // Re-added, then `sub` swapped for a symlink to a directory elsewhere
    // holding a file of the same name: deletion must not go through it.
    let handle = add(&session, &meta, tmp.path(), false).await;
    let elsewhere = tmp.path().join("elsewhere");
    std::fs::rename(data.join("sub"), &elsewhere).unwrap();
    std::os::unix::fs::symlink(&elsewhere, data.join("sub")).unwrap();
    session
        .remove_torrent(handle.info_hash(), true)
        .await
        .unwrap();
    assert!(!data.join("a.bin").exists());
    assert!(
        elsewhere.join("b.bin").exists(),
        "nothing deleted through a symlink"
    );
    assert!(
        std::fs::symlink_metadata(data.join("sub"))
            .unwrap()
            .is_symlink(),
        "the symlink itself is left alone"
    );
    assert!(data.exists(), "a directory still holding something stays");
    session.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn good_resume_data_means_nothing_is_hashed_on_restart() {
    let tmp = tempfile::tempdir().unwrap();
    let meta = make_payload(tmp.path(), 5, vec![]);
    let store = Arc::new(MemStore::default());

    let first = Session::start(config(Some(store.clone())), Hooks::default())
        .await
        .unwrap();
    let handle = add(&first, &meta, tmp.path(), false).await;
    assert_eq!(handle.progress().state, TorrentState::Seeding);
    assert_eq!(
        first.hashed_bytes(),
        meta.info.total_length,
        "first add hashes it all"
    );
    first.shutdown().await;
    assert!(store.get(&meta.info_hash.0).is_some(), "saved at shutdown");

    let second = Session::start(config(Some(store.clone())), Hooks::default())
        .await
        .unwrap();
    let handle = add(&second, &meta, tmp.path(), false).await;
    assert_eq!(handle.progress().pieces_have, meta.info.piece_count());
    assert_eq!(
        second.hashed_bytes(),
        0,
        "resume data vouches for every piece"
    );
    second.shutdown().await;

    // Damaged resume data is ignored: a full check, same result.
    store.save(&meta.info_hash.0, b"garbage").unwrap();
    let third = Session::start(config(Some(store.clone())), Hooks::default())
        .await
        .unwrap();
    let handle = add(&third, &meta, tmp.path(), false).await;
    assert_eq!(handle.progress().pieces_have, meta.info.piece_count());
    assert_eq!(third.hashed_bytes(), meta.info.total_length);
    third.shutdown().await;
}

/// Keeps the journal but drops every checkpoint: a store as a kill -9 before
/// the first checkpoint leaves it.
#[derive(Debug, Default)]
struct JournalOnly(Mutex<HashMap<[u8; 20], Vec<u8>>>);

impl ResumeStore for JournalOnly {
    fn load(&self, _: &[u8; 20]) -> std::io::Result<Option<Vec<u8>>> {
        Ok(None)
    }
    fn save(&self, _: &[u8; 20], _: &[u8]) -> std::io::Result<()> {
        Ok(())
    }
    fn remove(&self, info_hash: &[u8; 20]) -> std::io::Result<()> {
        self.0.lock().unwrap().remove(info_hash);
        Ok(())
    }
    fn load_journal(&self, info_hash: &[u8; 20]) -> std::io::Result<Option<Vec<u8>>> {
        Ok(self.0.lock().unwrap().get(info_hash).cloned())
    }
    fn save_journal(&self, info_hash: &[u8; 20], bytes: &[u8]) -> std::io::Result<()> {
        self.0.lock().unwrap().insert(*info_hash, bytes.to_vec());
        Ok(())
    }
}

fn config_on_boot(store: Arc<dyn ResumeStore>, boot: Option<&str>) -> SessionConfig {
    SessionConfig {
        boot_id: boot.map(str::to_owned),
        ..config(Some(store))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn written_pieces_are_trusted_without_a_checkpoint_on_the_same_boot_only() {
    let tmp = tempfile::tempdir().unwrap();
    let meta = make_payload(tmp.path(), 7, vec![]);
    let seeder = Session::start(config(None), Hooks::default())
        .await
        .unwrap();
    let _seeding = add(&seeder, &meta, tmp.path(), false).await;
    let store = Arc::new(JournalOnly::default());
    let leech_dir = tmp.path().join("leech");
    let leecher = Session::start(config_on_boot(store.clone(), Some("b1")), Hooks::default())
        .await
        .unwrap();
    let mut leeching = add(&leecher, &meta, &leech_dir, false).await;
    leeching.connect(&[seeder.local_addr()]);
    tokio::time::timeout(LIMIT, leeching.wait_finished())
        .await
        .expect("download in time")
        .expect("no error");
    leecher.shutdown().await;
    seeder.shutdown().await;
    let count = meta.info.piece_count();
    let journal = store
        .load_journal(&meta.info_hash.0)
        .unwrap()
        .expect("a journal");
    let journal = PieceJournal::decode(&journal, count).unwrap();
    assert_eq!(journal.pieces.count(), count);
    assert_eq!(journal.boot_id, "b1");

    // Same boot: the journal vouches for every piece, though the files'
    // mtimes moved with every write and no checkpoint exists.
    let again = Session::start(config_on_boot(store.clone(), Some("b1")), Hooks::default())
        .await
        .unwrap();
    let handle = add(&again, &meta, &leech_dir, false).await;
    assert_eq!(handle.progress().pieces_have, count);
    assert_eq!(again.hashed_bytes(), 0, "nothing hashed on the same boot");
    again.shutdown().await;

    // Another boot (or an unknown one): nothing was synced, all is hashed.
    for boot in [Some("b2"), None] {
        let rebooted = Session::start(config_on_boot(store.clone(), boot), Hooks::default())
            .await
            .unwrap();
        let handle = add(&rebooted, &meta, &leech_dir, false).await;
        assert_eq!(handle.progress().pieces_have, count, "{boot:?}");
        assert_eq!(rebooted.hashed_bytes(), meta.info.total_length, "{boot:?}");
        rebooted.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resume_data_is_saved_as_soon_as_a_download_completes() {
    let tmp = tempfile::tempdir().unwrap();
    let meta = make_payload(tmp.path(), 6, vec![]);
    let seeder = Session::start(config(None), Hooks::default())
        .await
        .unwrap();
    let _seeding = add(&seeder, &meta, tmp.path(), false).await;
    let store = Arc::new(MemStore::default());
    let leecher = Session::start(config(Some(store.clone())), Hooks::default())
        .await
        .unwrap();
    let mut leeching = add(&leecher, &meta, &tmp.path().join("leech"), false).await;
    leeching.connect(&[seeder.local_addr()]);
    tokio::time::timeout(LIMIT, leeching.wait_finished())
        .await
        .expect("download in time")
        .expect("no error");
    // Well before the 30 s period, the store holds every piece.
    let key = meta.info_hash.0;
    let count = meta.info.piece_count();
    let files = meta.info.files.len();
    let mut complete = false;
    for _ in 0..100 {
        if let Some(bytes) = store.get(&key) {
            let data = ResumeData::decode(&bytes, count, files).unwrap();
            if data.pieces.count() == count {
                complete = true;
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(complete, "complete resume data saved after the download");
    leecher.shutdown().await;
    seeder.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn truncated_file_under_a_seeder_is_never_served() {
    let tmp = tempfile::tempdir().unwrap();
    let meta = make_payload(tmp.path(), 7, vec![]);
    let seeder = Session::start(config(None), Hooks::default())
        .await
        .unwrap();
    let seeding = add(&seeder, &meta, tmp.path(), false).await;
    assert_eq!(seeding.progress().state, TorrentState::Seeding);

    // b.bin loses its second half while being seeded.
    let keep = 1024 * 1024;
    let b = std::fs::OpenOptions::new()
        .write(true)
        .open(tmp.path().join("data/sub/b.bin"))
        .unwrap();
    b.set_len(keep).unwrap();
    drop(b);
    let intact_end = A_LEN + keep;
    let count = meta.info.piece_count();
    let intact = (0..count)
        .filter(|&p| (u64::from(p) + 1) * PIECE <= intact_end)
        .count() as u32;

    let leecher = Session::start(config(None), Hooks::default())
        .await
        .unwrap();
    let leech_dir = tmp.path().join("leech");
    let leeching = add(&leecher, &meta, &leech_dir, false).await;
    leeching.connect(&[seeder.local_addr()]);

    wait_for(&seeding, "the seeder to notice", |p| {
        p.state == TorrentState::Downloading && p.pieces_have == intact
    })
    .await;
    wait_for(&leeching, "every intact piece", |p| p.pieces_have == intact).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let p = leeching.progress();
    assert_eq!(
        p.pieces_have, intact,
        "no piece beyond the truncation arrives"
    );
    assert_eq!(p.state, TorrentState::Downloading);
    // What did arrive is the original data.
    let got = std::fs::read(leech_dir.join("data/a.bin")).unwrap();
    assert_eq!(got, pseudo_random(7, A_LEN));
    // The failed reads are counted, in the torrent's and the session's counters.
    assert!(seeding.counters().disk_errors() >= 1);
    assert!(seeder.counters().disk_errors() >= 1);
    assert_eq!(leecher.counters().disk_errors(), 0);
    assert_eq!(leecher.counters().hash_failures(), 0);
    leecher.shutdown().await;
    seeder.shutdown().await;
}

/// A tracker that records each announce's `event` and lists no peers.
async fn recording_tracker() -> (String, Arc<Mutex<Vec<String>>>) {
    let listener = tokio::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .await
        .unwrap();
    let url = format!("http://{}/announce", listener.local_addr().unwrap());
    let events = Arc::new(Mutex::new(Vec::new()));
    let seen = events.clone();
    tokio::spawn(tokio::time::timeout(LIMIT, async move {
        for _ in 0..64 {
            let Ok((mut stream, _)) = listener.accept().await else {
                return;
            };
            let mut head = Vec::new();
            let mut buf = [0u8; 1024];
            while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 16 * 1024 {
                match stream.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => head.extend_from_slice(&buf[..n]),
                }
            }
            let line = String::from_utf8_lossy(&head)
                .lines()
                .next()
                .unwrap_or("")
                .to_owned();
            let event = line
                .split(['?', '&', ' '])
                .find_map(|kv| kv.strip_prefix("event="))
                .unwrap_or("none")
                .to_owned();
            seen.lock().unwrap().push(event);
            let body = b"d8:intervali1800e5:peers0:e";
            let reply = format!(
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            );
            let _ = stream.write_all(reply.as_bytes()).await;
            let _ = stream.write_all(body).await;
        }
    }));
    (url, events)
}

async fn wait_events(events: &Mutex<Vec<String>>, want: &[&str]) {
    for _ in 0..100 {
        if events.lock().unwrap().len() >= want.len() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(*events.lock().unwrap(), want);
}

/// Calls every address WAN, so loopback peers and trackers are WAN.
struct EverythingIsWan;

impl Classifier for EverythingIsWan {
    fn classify(&self, _: IpAddr) -> PeerClass {
        PeerClass::Wan
    }
}

/// While the WAN switch is off the seeder announces to no tracker and takes
/// no WAN peer; switched on, both happen; switched off mid-download, the
/// WAN connection is closed and nothing more moves.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_switched_off_wan_carries_no_announce_and_no_peer() {
    let tmp = tempfile::tempdir().unwrap();
    let (url, announces) = recording_tracker().await;
    let meta = make_payload(tmp.path(), 41, vec![url]);
    let seed_hooks = Hooks {
        classifier: Arc::new(EverythingIsWan),
        gate: Arc::new(SlowUploads),
        ..Hooks::default()
    };
    seed_hooks.wan.set(false);
    let seeder = Session::start(config(None), seed_hooks.clone())
        .await
        .unwrap();
    let _seeding = add(&seeder, &meta, tmp.path(), false).await;

    // The leecher knows no tracker: every announce the tracker sees is the seeder's.
    let mut quiet_meta = meta.clone();
    quiet_meta.trackers.clear();
    let leecher = Session::start(config(None), Hooks::default())
        .await
        .unwrap();
    let leeching = add(&leecher, &quiet_meta, &tmp.path().join("leech"), false).await;
    leeching.connect(&[seeder.local_addr()]);
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(
        announces.lock().unwrap().is_empty(),
        "announced with the WAN off"
    );
    let p = leeching.progress();
    assert_eq!(
        (p.bytes_have, p.peers),
        (0, 0),
        "a WAN peer was taken with the WAN off"
    );

    seed_hooks.wan.set(true);
    wait_events(&announces, &["started"]).await;
    leeching.connect(&[seeder.local_addr()]);
    wait_for(&leeching, "the first bytes over the WAN", |p| {
        p.bytes_have > 0
    })
    .await;

    // Off mid-download: the seeder closes the WAN connection at once (its
    // driver hears the switch), and nothing more arrives. Blocks that came
    // before the close may still be in their hash check: let them land.
    seed_hooks.wan.set(false);
    wait_for(&leeching, "the WAN connection to close", |p| p.peers == 0).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let have = leeching.progress().bytes_have;
    assert!(have < A_LEN + B_LEN, "finished before the switch went off");
    leeching.connect(&[seeder.local_addr()]);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let p = leeching.progress();
    assert_eq!(
        (p.bytes_have, p.peers),
        (have, 0),
        "data moved with the WAN off"
    );

    seed_hooks.wan.set(true);
    leeching.connect(&[seeder.local_addr()]);
    wait_for(&leeching, "the rest over the WAN", |p| {
        p.bytes_have == p.total_length
    })
    .await;
    leecher.shutdown().await;
    seeder.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trackers_hear_started_and_stopped_once_per_pause() {
    let tmp = tempfile::tempdir().unwrap();
    let (url, events) = recording_tracker().await;
    let meta = make_payload(tmp.path(), 8, vec![url]);
    let session = Session::start(config(None), Hooks::default())
        .await
        .unwrap();

    let handle = add(&session, &meta, tmp.path(), true).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        events.lock().unwrap().is_empty(),
        "added paused: no announce"
    );

    handle.resume().await;
    wait_events(&events, &["started"]).await;
    handle.pause().await;
    handle.pause().await;
    wait_events(&events, &["started", "stopped"]).await;
    handle.resume().await;
    wait_events(&events, &["started", "stopped", "started"]).await;
    session
        .remove_torrent(handle.info_hash(), false)
        .await
        .unwrap();
    wait_events(&events, &["started", "stopped", "started", "stopped"]).await;
    session.shutdown().await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(events.lock().unwrap().len(), 4, "nothing after removal");
}

/// Runs the disk-full scenario in a private mount namespace with a small
/// tmpfs as the download directory. Needs root and `unshare`; skipped
/// (with a note) otherwise.
#[test]
fn disk_full_stops_one_torrent_and_recovers_when_space_returns() {
    const INNER: &str = "CAPWISE_DISK_FULL_INNER";
    if let Ok(dir) = std::env::var(INNER) {
        disk_full_inner(PathBuf::from(dir));
        return;
    }
    if !is_root() {
        eprintln!("skipped: needs root for a private tmpfs");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let exe = std::env::current_exe().unwrap();
    let status = std::process::Command::new("unshare")
        .args(["-m", "--propagation", "private", "--"])
        .arg(&exe)
        .args([
            "--exact",
            "disk_full_stops_one_torrent_and_recovers_when_space_returns",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(INNER, tmp.path())
        .status();
    match status {
        Ok(s) => assert!(s.success(), "the disk-full scenario failed: {s}"),
        Err(e) => eprintln!("skipped: cannot run unshare: {e}"),
    }
}

fn is_root() -> bool {
    std::process::Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.starts_with(b"0\n"))
}

fn mount_tmpfs(dir: &Path, options: &str) {
    let status = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", options, "tmpfs"])
        .arg(dir)
        .status()
        .unwrap();
    assert!(status.success(), "mount {options} failed");
}

fn remount(dir: &Path, options: &str) {
    let status = std::process::Command::new("mount")
        .args(["-o", options])
        .arg(dir)
        .status()
        .unwrap();
    assert!(status.success(), "remount {options} failed");
}

fn disk_full_error(p: &capwise_engine::session::Progress, dir: &str) -> bool {
    matches!(&p.state, TorrentState::Error(e) if e.starts_with("disk full") && e.contains(dir))
}

fn disk_full_inner(root: PathBuf) {
    // Each has room for about half of the 5 MiB payload.
    let auto_dir = root.join("small-auto");
    let manual_dir = root.join("small-manual");
    for dir in [&auto_dir, &manual_dir] {
        std::fs::create_dir_all(dir).unwrap();
        mount_tmpfs(dir, "size=2m");
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async move {
        let meta = make_payload(&root.join("seed"), 9, vec![]);
        let other = make_payload(&root.join("seed2"), 20, vec![]);
        let seeder = Session::start(config(None), Hooks::default())
            .await
            .unwrap();
        add(&seeder, &meta, &root.join("seed"), false).await;
        add(&seeder, &other, &root.join("seed2"), false).await;

        // Retries by itself every second.
        let auto = Session::start(
            SessionConfig {
                disk_full_retry: Duration::from_secs(1),
                ..config(None)
            },
            Hooks::default(),
        )
        .await
        .unwrap();
        // Would wait an hour: only resume() brings it back.
        let manual = Session::start(
            SessionConfig {
                disk_full_retry: Duration::from_secs(3600),
                ..config(None)
            },
            Hooks::default(),
        )
        .await
        .unwrap();
        let starved = add(&auto, &meta, &auto_dir, false).await;
        let mut fine = add(&auto, &other, &root.join("roomy"), false).await;
        let stuck = add(&manual, &meta, &manual_dir, false).await;
        for h in [&starved, &fine, &stuck] {
            h.connect(&[seeder.local_addr()]);
        }

        wait_for(&starved, "a disk-full error", |p| {
            disk_full_error(p, "small-auto")
        })
        .await;
        wait_for(&stuck, "a disk-full error", |p| {
            disk_full_error(p, "small-manual")
        })
        .await;
        tokio::time::timeout(LIMIT, fine.wait_finished())
            .await
            .expect("the other torrent goes on")
            .expect("no error there");

        // Space comes back: the next retry picks the download up again.
        remount(&auto_dir, "remount,size=64m");
        remount(&manual_dir, "remount,size=64m");
        wait_for(&starved, "completion after the retry", |p| {
            p.state == TorrentState::Seeding
        })
        .await;
        let got = std::fs::read(auto_dir.join("data/sub/b.bin")).unwrap();
        assert_eq!(got, pseudo_random(10, B_LEN));

        assert!(
            disk_full_error(&stuck.progress(), "small-manual"),
            "no retry before its time"
        );
        stuck.resume().await;
        wait_for(&stuck, "completion after resume()", |p| {
            p.state == TorrentState::Seeding
        })
        .await;
        auto.shutdown().await;
        manual.shutdown().await;
        seeder.shutdown().await;
    });
}
