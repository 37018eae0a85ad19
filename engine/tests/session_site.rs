//! Site coordination between real sessions on loopback (run inside
//! `unshare -n` like the other session tests): three capwise members of
//! one site (127.0.0.3-5, LAN to each other by a fixed classifier) and one
//! WAN seeder (127.0.0.2). Each piece should cross the "WAN" about once:
//! the seeder uploads about one copy while all three complete with the
//! same bytes.

use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use capwise_engine::class::{Direction, PeerClass};
use capwise_engine::create::{create_torrent, CreateOptions};
use capwise_engine::hooks::Classifier;
use capwise_engine::metainfo::Metainfo;
use capwise_engine::session::{Hooks, Session, SessionConfig, TorrentHandle, TorrentOptions};

const SEEDER: [u8; 4] = [127, 0, 0, 2];
const SIZE: usize = 8 * 1024 * 1024;

/// 127.0.0.2 is the WAN (headquarters); every other address is the site.
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

fn make_payload(dir: &Path) -> Metainfo {
    let data = dir.join("data");
    std::fs::create_dir_all(&data).unwrap();
    let bytes: Vec<u8> = (0..SIZE as u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    std::fs::write(data.join("f.bin"), bytes).unwrap();
    let opts = CreateOptions {
        path: data,
        piece_length: Some(64 * 1024),
        ..CreateOptions::default()
    };
    Metainfo::from_bytes(&create_torrent(&opts).unwrap()).unwrap()
}

async fn start(ip: [u8; 4], meta: &Metainfo, dir: &Path, site: bool) -> (Session, TorrentHandle) {
    let hooks = Hooks {
        classifier: Arc::new(BranchOffice),
        ..Hooks::default()
    };
    let config = SessionConfig {
        listen: SocketAddr::from((ip, 0)),
        ..SessionConfig::default()
    };
    let session = Session::start(config, hooks).await.unwrap();
    let options = TorrentOptions {
        site_coordination: site,
        ..TorrentOptions::default()
    };
    let handle = session
        .add_torrent(meta.clone(), dir.to_path_buf(), options)
        .await
        .unwrap();
    (session, handle)
}

async fn wait_peers(handle: &TorrentHandle, n: usize, limit: Duration) -> bool {
    let until = tokio::time::Instant::now() + limit;
    while tokio::time::Instant::now() < until {
        if handle.progress().peers >= n {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    false
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_site_members_pull_about_one_copy_over_the_wan() {
    let started = std::time::Instant::now();
    let tmp = tempfile::tempdir().unwrap();
    let meta = make_payload(tmp.path());
    let (seeder, seeding) = start(SEEDER, &meta, tmp.path(), false).await;
    assert!(seeding.progress().bytes_have == SIZE as u64);

    let mut members = Vec::new();
    for n in 3..=5u8 {
        let dir = tmp.path().join(format!("m{n}"));
        members.push((start([127, 0, 0, n], &meta, &dir, true).await, dir));
    }
    // The site meets first (LSD would do it in a branch office), then
    // each member is told of headquarters.
    let addrs: Vec<SocketAddr> = members.iter().map(|((s, _), _)| s.local_addr()).collect();
    for (i, ((_, h), _)) in members.iter().enumerate() {
        h.connect(&addrs[i + 1..]);
    }
    for ((_, h), _) in &members {
        assert!(
            wait_peers(h, 2, Duration::from_secs(10)).await,
            "the site meets"
        );
    }
    // Their capwise_site greetings follow the extension handshakes.
    tokio::time::sleep(Duration::from_millis(300)).await;
    for ((_, h), _) in &members {
        h.connect(&[seeder.local_addr()]);
    }
    for ((_, h), _) in members.iter_mut() {
        tokio::time::timeout(Duration::from_secs(20), h.wait_finished())
            .await
            .expect("a member did not finish in 20 s")
            .unwrap();
    }
    let original = std::fs::read(tmp.path().join("data/f.bin")).unwrap();
    for (_, dir) in &members {
        let got = std::fs::read(dir.join("data/f.bin")).unwrap();
        assert!(got == original, "{} differs", dir.display());
    }
    let counters = seeding.counters();
    let uploaded = counters.payload(Direction::Up, PeerClass::Wan)
        + counters.payload(Direction::Up, PeerClass::Lan);
    let ratio = uploaded as f64 / SIZE as f64;
    eprintln!(
        "seeder uploaded {uploaded} bytes = {ratio:.3} copies of {SIZE} for 3 site members, in {:?}",
        started.elapsed()
    );
    let mut lan_down = 0;
    for ((_, h), _) in &members {
        let c = h.counters();
        lan_down += c.payload(Direction::Down, PeerClass::Lan);
    }
    eprintln!("members took {lan_down} bytes from each other over the LAN");
    assert!(ratio <= 1.3, "the WAN carried {ratio:.3} copies");
    assert!(
        lan_down as f64 >= 1.5 * SIZE as f64,
        "the site shared little: {lan_down}"
    );
    drop(members);
    drop(seeder);
}

/// The same without coordination: the WAN carries about a copy per member
/// (the reference the figure above is compared with).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_coordination_the_wan_carries_more() {
    let tmp = tempfile::tempdir().unwrap();
    let meta = make_payload(tmp.path());
    let (seeder, seeding) = start(SEEDER, &meta, tmp.path(), false).await;
    let mut members = Vec::new();
    for n in 3..=5u8 {
        let dir = tmp.path().join(format!("m{n}"));
        members.push(start([127, 0, 0, n], &meta, &dir, false).await);
    }
    let addrs: Vec<SocketAddr> = members.iter().map(|(s, _)| s.local_addr()).collect();
    for (i, (_, h)) in members.iter().enumerate() {
        h.connect(&addrs[i + 1..]);
    }
    for (_, h) in &members {
        assert!(wait_peers(h, 2, Duration::from_secs(10)).await);
    }
    for (_, h) in &members {
        h.connect(&[seeder.local_addr()]);
    }
    for (_, h) in members.iter_mut() {
        tokio::time::timeout(Duration::from_secs(20), h.wait_finished())
            .await
            .expect("a member did not finish in 20 s")
            .unwrap();
    }
    let counters = seeding.counters();
    let uploaded = counters.payload(Direction::Up, PeerClass::Wan)
        + counters.payload(Direction::Up, PeerClass::Lan);
    let ratio = uploaded as f64 / SIZE as f64;
    eprintln!("without coordination the seeder uploaded {ratio:.3} copies");
    assert!(
        ratio > 1.3,
        "the reference shows the difference: {ratio:.3}"
    );
    drop(members);
    drop(seeder);
}
