//! Hostile PEX (BEP 11) at the session level, over real sockets on
//! loopback (run inside `unshare -n` like the other session tests): a fake
//! peer speaks ut_pex to a downloading session that also knows an honest
//! seeder. Floods (too many messages, too many peers in one, a message too
//! large) get the fake peer dropped; what the session dials from it stays
//! within one message's 50 peers; the download completes from the seeder.
//!
//! The peers the fake peer lists are listeners of this test, so every dial
//! the session makes because of PEX is counted.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use capwise_engine::create::{create_torrent, CreateOptions};
use capwise_engine::ext::pex::{self, PeerFlags, PexEntry, PexMessage};
use capwise_engine::metainfo::Metainfo;
use capwise_engine::session::{Hooks, Session, SessionConfig, TorrentHandle, TorrentOptions};
use capwise_engine::wire::extension;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

fn make_payload(dir: &Path) -> Metainfo {
    let data = dir.join("data");
    std::fs::create_dir_all(&data).unwrap();
    let bytes: Vec<u8> = (0..2 * 1024 * 1024u32)
        .map(|i| (i * 13 % 251) as u8)
        .collect();
    std::fs::write(data.join("f.bin"), bytes).unwrap();
    let opts = CreateOptions {
        path: data,
        piece_length: Some(256 * 1024),
        ..CreateOptions::default()
    };
    Metainfo::from_bytes(&create_torrent(&opts).unwrap()).unwrap()
}

async fn start(serves: bool, meta: &Metainfo, dir: &Path) -> (Session, TorrentHandle) {
    let hooks = Hooks::default();
    hooks.seeding.set(serves);
    let config = SessionConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        ..SessionConfig::default()
    };
    let session = Session::start(config, hooks).await.unwrap();
    let handle = session
        .add_torrent(meta.clone(), dir.to_path_buf(), TorrentOptions::default())
        .await
        .unwrap();
    (session, handle)
}

/// Listeners on loopback that count the connections they accept (and hold
/// them open without a word, as an unresponsive peer would).
struct Decoys {
    addrs: Vec<SocketAddr>,
    dialled: Vec<Arc<AtomicUsize>>,
}

impl Decoys {
    async fn bind(n: usize) -> Decoys {
        let mut addrs = Vec::new();
        let mut dialled = Vec::new();
        for _ in 0..n {
            let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
            addrs.push(l.local_addr().unwrap());
            let count = Arc::new(AtomicUsize::new(0));
            dialled.push(count.clone());
            tokio::spawn(async move {
                let mut held = Vec::new();
                while let Ok((s, _)) = l.accept().await {
                    count.fetch_add(1, Ordering::SeqCst);
                    held.push(s);
                }
            });
        }
        Decoys { addrs, dialled }
    }

    /// How many of `range` were dialled at least once.
    fn dialled(&self, range: std::ops::Range<usize>) -> usize {
        self.dialled[range]
            .iter()
            .filter(|c| c.load(Ordering::SeqCst) > 0)
            .count()
    }

    fn message(&self, range: std::ops::Range<usize>) -> Vec<u8> {
        PexMessage {
            added: self.addrs[range]
                .iter()
                .map(|&addr| PexEntry {
                    addr,
                    flags: PeerFlags::SEED,
                })
                .collect(),
            dropped: Vec::new(),
        }
        .encode()
    }
}

fn frame(id: u8, payload: &[u8]) -> Vec<u8> {
    let mut f = ((payload.len() + 1) as u32).to_be_bytes().to_vec();
    f.push(id);
    f.extend_from_slice(payload);
    f
}

/// An extended message (id 20) with extension id `ext`.
fn extended(ext: u8, payload: &[u8]) -> Vec<u8> {
    let mut body = vec![ext];
    body.extend_from_slice(payload);
    frame(20, &body)
}

/// A fake peer connected to `to` for `info_hash`: BitTorrent handshake with
/// the extension bit, an extension handshake naming ut_pex, then whatever
/// the test writes. A task reads and discards what the session sends;
/// `closed` turns true when the session closes the connection.
struct FakePeer {
    stream: tokio::net::tcp::OwnedWriteHalf,
    closed: tokio::sync::watch::Receiver<bool>,
}

impl FakePeer {
    async fn connect(to: SocketAddr, info_hash: [u8; 20]) -> FakePeer {
        let s = TcpStream::connect(to).await.unwrap();
        let (mut rd, mut wr) = s.into_split();
        let mut hs = vec![19u8];
        hs.extend_from_slice(b"BitTorrent protocol");
        let mut reserved = [0u8; 8];
        reserved[5] |= 0x10;
        hs.extend_from_slice(&reserved);
        hs.extend_from_slice(&info_hash);
        hs.extend_from_slice(b"-XX0001-pexflood0001");
        wr.write_all(&hs).await.unwrap();
        let mut theirs = [0u8; 68];
        rd.read_exact(&mut theirs).await.unwrap();
        assert_eq!(&theirs[28..48], &info_hash);
        let ours = extension::our_handshake_with_pex(0, 250, None, true);
        wr.write_all(&extended(0, &ours)).await.unwrap();
        let (tx, closed) = tokio::sync::watch::channel(false);
        tokio::spawn(async move {
            let mut buf = vec![0u8; 64 * 1024];
            while matches!(rd.read(&mut buf).await, Ok(n) if n > 0) {}
            let _ = tx.send(true);
        });
        FakePeer { stream: wr, closed }
    }

    /// Sends a ut_pex message under the session's id for it
    /// ([`pex::OUR_ID`]); false once the connection is gone.
    async fn send_pex(&mut self, payload: &[u8]) -> bool {
        self.stream
            .write_all(&extended(pex::OUR_ID, payload))
            .await
            .is_ok()
    }

    async fn dropped_within(&mut self, limit: Duration) -> bool {
        tokio::time::timeout(limit, self.closed.wait_for(|c| *c))
            .await
            .is_ok()
    }
}

/// A seeder, a leecher connected to it, a fake peer connected to the
/// leecher: the world of one case.
struct World {
    _tmp: tempfile::TempDir,
    seeder: Session,
    leecher: Session,
    fetching: TorrentHandle,
    fake: FakePeer,
}

async fn world() -> World {
    let tmp = tempfile::tempdir().unwrap();
    let meta = make_payload(tmp.path());
    let (seeder, _seeding) = start(true, &meta, tmp.path()).await;
    let (leecher, fetching) = start(true, &meta, &tmp.path().join("new")).await;
    let mut fake = FakePeer::connect(leecher.local_addr(), fetching.info_hash()).await;
    // Control: a quiet fake peer is kept, so a drop below is the flood's.
    assert!(
        !fake.dropped_within(Duration::from_millis(300)).await,
        "the fake peer is kept while it says nothing wrong"
    );
    World {
        _tmp: tmp,
        seeder,
        leecher,
        fetching,
        fake,
    }
}

impl World {
    /// The honest seeder is dialled only now, so the download cannot
    /// finish before the flood was handled; then it must finish.
    async fn download_completes(mut self) {
        self.fetching.connect(&[self.seeder.local_addr()]);
        let done = tokio::time::timeout(Duration::from_secs(10), self.fetching.wait_finished());
        assert!(
            matches!(done.await, Ok(Ok(()))),
            "the download completes from the honest seeder"
        );
        self.leecher.shutdown().await;
        self.seeder.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_flooding_pex_messages_is_dropped_and_only_its_first_is_used() {
    let decoys = Decoys::bind(250).await;
    let mut w = world().await;
    // The first message is taken: its peers are dialled.
    assert!(w.fake.send_pex(&decoys.message(0..50)).await);
    let until = tokio::time::Instant::now() + Duration::from_secs(5);
    while decoys.dialled(0..50) == 0 && tokio::time::Instant::now() < until {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        decoys.dialled(0..50) > 0,
        "the first message's peers dialled"
    );
    assert!(
        !w.fake.dropped_within(Duration::from_millis(200)).await,
        "one message is no flood"
    );
    // Then a message every few milliseconds, 50 new peers each.
    for i in 0..(pex::MAX_MESSAGES_PER_WINDOW + 2) {
        let from = 50 + (i % 4) * 50;
        if !w.fake.send_pex(&decoys.message(from..from + 50)).await {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert!(
        w.fake.dropped_within(Duration::from_secs(5)).await,
        "the flooding peer is dropped"
    );
    // Give dials from the ignored messages, were there any, time to land.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        decoys.dialled(50..250),
        0,
        "peers from messages within the minute are never dialled"
    );
    assert!(decoys.dialled(0..50) <= pex::MAX_ACCEPTED);
    w.download_completes().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pex_message_listing_too_many_peers_drops_the_peer_and_nothing_is_dialled() {
    let decoys = Decoys::bind(pex::MAX_LISTED + 1).await;
    let mut w = world().await;
    assert!(
        w.fake
            .send_pex(&decoys.message(0..pex::MAX_LISTED + 1))
            .await
    );
    assert!(
        w.fake.dropped_within(Duration::from_secs(5)).await,
        "a message with more than {} added peers drops its sender",
        pex::MAX_LISTED
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(decoys.dialled(0..pex::MAX_LISTED + 1), 0);
    w.download_completes().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pex_message_too_large_drops_the_peer() {
    let mut w = world().await;
    // A bencoded dict whose one string makes it larger than the bound.
    let filler = vec![b'x'; pex::MAX_MESSAGE_LEN];
    let mut payload = format!("d5:junk{}:", filler.len()).into_bytes();
    payload.extend_from_slice(&filler);
    payload.push(b'e');
    // The session may close before it has read it all.
    let _ = w.fake.send_pex(&payload).await;
    assert!(
        w.fake.dropped_within(Duration::from_secs(5)).await,
        "a ut_pex message over {} bytes drops its sender",
        pex::MAX_MESSAGE_LEN
    );
    w.download_completes().await;
}
