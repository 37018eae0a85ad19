//! A site-wide WAN rate cap shared by the site's machines, between real
//! sessions on loopback (inside `unshare -n` like the other session tests):
//! three site members (127.0.0.3-5, LAN to each other by a fixed
//! classifier) and a WAN seeder (127.0.0.2). Each member's WAN download
//! bucket (the test's own, as the agent's would be) follows
//! `Session::site_wan_share`: while all three fetch over the WAN each takes
//! a third, so together they stay under the cap; done, each would have the
//! whole cap again. Bytes over a time span with generous margins, so a
//! loaded machine cannot make it flake.

use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use capwise_engine::class::{Direction, PeerClass};
use capwise_engine::create::{create_torrent, CreateOptions};
use capwise_engine::hooks::{ByteGate, Classifier, GateFuture};
use capwise_engine::metainfo::Metainfo;
use capwise_engine::session::{Hooks, Session, SessionConfig, TorrentHandle, TorrentOptions};

const SEEDER: [u8; 4] = [127, 0, 0, 2];
const SIZE: usize = 16 * 1024 * 1024;
/// The site's WAN cap: 2 MiB/s for the three of them.
const CAP: u64 = 2 * 1024 * 1024;

struct BranchOffice;

impl Classifier for BranchOffice {
    fn classify(&self, ip: IpAddr) -> PeerClass {
        if ip == IpAddr::from(SEEDER) {
            PeerClass::Wan
        } else {
            PeerClass::Lan
        }
    }
}

/// A token bucket on WAN downloads whose rate can change (the agent's
/// WAN download bucket, in small): debits go into debt and wait it out.
struct WanBucket {
    state: Mutex<(f64, Instant, u64)>,
}

impl WanBucket {
    fn new(rate: u64) -> Self {
        WanBucket {
            state: Mutex::new((0.0, Instant::now(), rate)),
        }
    }

    fn set_rate(&self, rate: u64) {
        self.state.lock().unwrap().2 = rate;
    }
}

impl ByteGate for WanBucket {
    fn acquire(&self, direction: Direction, class: PeerClass, bytes: u64) -> GateFuture<'_> {
        if (direction, class) != (Direction::Down, PeerClass::Wan) {
            return Box::pin(std::future::ready(()));
        }
        let wait = {
            let mut s = self.state.lock().unwrap();
            let now = Instant::now();
            let rate = s.2 as f64;
            // A burst of at most 50 ms at the rate.
            s.0 = (s.0 + rate * now.duration_since(s.1).as_secs_f64()).min(rate * 0.05);
            s.1 = now;
            s.0 -= bytes as f64;
            if s.0 < 0.0 {
                Duration::from_secs_f64(-s.0 / rate)
            } else {
                Duration::ZERO
            }
        };
        Box::pin(tokio::time::sleep(wait))
    }
}

fn make_payload(dir: &Path) -> Metainfo {
    let data = dir.join("data");
    std::fs::create_dir_all(&data).unwrap();
    let bytes: Vec<u8> = (0..SIZE as u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 11) as u8)
        .collect();
    std::fs::write(data.join("f.bin"), bytes).unwrap();
    let opts = CreateOptions {
        path: data,
        piece_length: Some(64 * 1024),
        ..CreateOptions::default()
    };
    Metainfo::from_bytes(&create_torrent(&opts).unwrap()).unwrap()
}

struct Member {
    session: Session,
    handle: TorrentHandle,
    dir: std::path::PathBuf,
    follower: tokio::task::JoinHandle<()>,
}

async fn start(
    ip: [u8; 4],
    meta: &Metainfo,
    dir: &Path,
    gate: Arc<dyn ByteGate>,
) -> (Session, TorrentHandle) {
    let hooks = Hooks {
        classifier: Arc::new(BranchOffice),
        gate,
        ..Hooks::default()
    };
    let config = SessionConfig {
        listen: SocketAddr::from((ip, 0)),
        ..SessionConfig::default()
    };
    let session = Session::start(config, hooks).await.unwrap();
    let options = TorrentOptions {
        site_coordination: true,
        ..TorrentOptions::default()
    };
    let handle = session
        .add_torrent(meta.clone(), dir.to_path_buf(), options)
        .await
        .unwrap();
    (session, handle)
}

async fn member(n: u8, meta: &Metainfo, root: &Path) -> Member {
    let dir = root.join(format!("m{n}"));
    let bucket = Arc::new(WanBucket::new(CAP));
    let (session, handle) = start([127, 0, 0, n], meta, &dir, bucket.clone()).await;
    // The embedder's side: the share, applied to the bucket, every 200 ms.
    let follower = {
        let session = session.clone();
        tokio::spawn(async move {
            loop {
                bucket.set_rate(session.site_wan_share(CAP).rate);
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        })
    };
    Member {
        session,
        handle,
        dir,
        follower,
    }
}

async fn wait_peers(handle: &TorrentHandle, n: usize) {
    for _ in 0..500 {
        if handle.progress().peers >= n {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("only {} peers", handle.progress().peers);
}

fn wan_bytes(members: &[Member]) -> u64 {
    members
        .iter()
        .map(|m| m.handle.counters().payload(Direction::Down, PeerClass::Wan))
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_members_stay_under_the_site_wan_cap_together() {
    let tmp = tempfile::tempdir().unwrap();
    let meta = make_payload(tmp.path());
    let seeder = Session::start(
        SessionConfig {
            listen: SocketAddr::from((SEEDER, 0)),
            ..SessionConfig::default()
        },
        Hooks {
            classifier: Arc::new(BranchOffice),
            ..Hooks::default()
        },
    )
    .await
    .unwrap();
    seeder
        .add_torrent(
            meta.clone(),
            tmp.path().to_path_buf(),
            TorrentOptions::default(),
        )
        .await
        .unwrap();
    let mut members = Vec::new();
    for n in 3..=5u8 {
        members.push(member(n, &meta, tmp.path()).await);
    }
    let addrs: Vec<SocketAddr> = members.iter().map(|m| m.session.local_addr()).collect();
    for (i, m) in members.iter().enumerate() {
        m.handle.connect(&addrs[i + 1..]);
    }
    for m in &members {
        wait_peers(&m.handle, 2).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    // Met, nobody fetching: each alone in wanting, each the whole cap.
    for m in &members {
        assert_eq!(m.session.site_wan_share(CAP).rate, CAP);
    }
    for m in &members {
        m.handle.connect(&[seeder.local_addr()]);
    }
    // The first claims (and `w`) reach the others: each sees two others
    // fetching over the WAN, and a third of the cap.
    let until = Instant::now() + Duration::from_secs(10);
    loop {
        let shares: Vec<_> = members
            .iter()
            .map(|m| m.session.site_wan_share(CAP))
            .collect();
        if shares
            .iter()
            .all(|s| (s.others_wanting, s.rate) == (2, CAP / 3))
        {
            break;
        }
        assert!(Instant::now() < until, "no third each: {shares:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The buckets follow within their 200 ms.
    tokio::time::sleep(Duration::from_millis(500)).await;
    // Measure while all three still fetch (at most 4 s, until one is done).
    let (b1, t1) = (wan_bytes(&members), Instant::now());
    while t1.elapsed() < Duration::from_secs(4)
        && members
            .iter()
            .all(|m| m.handle.progress().bytes_have < SIZE as u64)
    {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (b2, span) = (wan_bytes(&members), t1.elapsed().as_secs_f64());
    let rate = (b2 - b1) as f64 / span;
    eprintln!(
        "3 members took {} bytes over the WAN in {span:.2} s: {:.2} MiB/s together, cap {:.2} MiB/s",
        b2 - b1,
        rate / 1048576.0,
        CAP as f64 / 1048576.0
    );
    // Each alone at the cap would make 3 × CAP; the share keeps them to
    // about 1 × CAP (a burst and a block in flight per member above it).
    assert!(
        (b2 - b1) as f64 <= 1.3 * CAP as f64 * span + 3.0 * 256.0 * 1024.0,
        "{:.2} MiB/s over the WAN, over the cap",
        rate / 1048576.0
    );
    assert!(b2 > b1, "nothing moved over the WAN");

    for m in members.iter_mut() {
        tokio::time::timeout(Duration::from_secs(60), m.handle.wait_finished())
            .await
            .expect("a member did not finish in 60 s")
            .unwrap();
    }
    let original = std::fs::read(tmp.path().join("data/f.bin")).unwrap();
    for m in &members {
        assert!(std::fs::read(m.dir.join("data/f.bin")).unwrap() == original);
    }
    // Done: within a renewal nobody wants WAN bytes, each has the cap again.
    let until = Instant::now() + Duration::from_secs(15);
    loop {
        let shares: Vec<_> = members
            .iter()
            .map(|m| m.session.site_wan_share(CAP))
            .collect();
        if shares
            .iter()
            .all(|s| s.rate == CAP && s.others_wanting == 0)
        {
            break;
        }
        assert!(
            Instant::now() < until,
            "the shares did not come back: {shares:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    for m in members {
        m.follower.abort();
        m.session.shutdown().await;
    }
    seeder.shutdown().await;
}
