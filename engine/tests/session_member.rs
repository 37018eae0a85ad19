//! Channel membership on loopback between real sessions: a private torrent
//! whose peers must prove membership. A member leecher downloads from a
//! member seeder; a peer that knows the info-hash (it has the .torrent) but
//! no token, and one with another channel's token, get zero payload bytes
//! and hold no connection to the seeder after the proof time-out.

use std::path::Path;
use std::time::Duration;

use capwise_engine::create::{create_torrent, CreateOptions};
use capwise_engine::ext::member::{MembershipKey, PROOF_TIMEOUT};
use capwise_engine::hooks::{Direction, PeerClass};
use capwise_engine::metainfo::Metainfo;
use capwise_engine::session::{Hooks, Session, SessionConfig, TorrentHandle, TorrentOptions};

const LIMIT: Duration = Duration::from_secs(60);

fn config() -> SessionConfig {
    SessionConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        ..SessionConfig::default()
    }
}

fn make_payload(dir: &Path) -> Metainfo {
    let data = dir.join("data");
    std::fs::create_dir_all(&data).unwrap();
    let bytes: Vec<u8> = (0..2 * 1024 * 1024 + 77u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
        .collect();
    std::fs::write(data.join("image.bin"), bytes).unwrap();
    let opts = CreateOptions {
        path: data,
        piece_length: Some(64 * 1024),
        private: true,
        ..CreateOptions::default()
    };
    Metainfo::from_bytes(&create_torrent(&opts).unwrap()).unwrap()
}

fn options(token: Option<&MembershipKey>) -> TorrentOptions {
    TorrentOptions {
        membership: token.cloned(),
        ..TorrentOptions::default()
    }
}

async fn leecher(
    meta: &Metainfo,
    dir: &Path,
    token: Option<&MembershipKey>,
    seeder: &Session,
) -> (Session, TorrentHandle) {
    let session = Session::start(config(), Hooks::default()).await.unwrap();
    let handle = session
        .add_torrent(meta.clone(), dir.to_path_buf(), options(token))
        .await
        .unwrap();
    handle.connect(&[seeder.local_addr()]);
    (session, handle)
}

fn payload_in(handle: &TorrentHandle) -> u64 {
    let c = handle.counters();
    c.payload(Direction::Down, PeerClass::Lan) + c.payload(Direction::Down, PeerClass::Wan)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_download_strangers_get_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let meta = make_payload(tmp.path());
    assert!(meta.info.private);
    let token = MembershipKey::from_seed([0x42; 32]);
    let other_channel = MembershipKey::from_seed([0x43; 32]);

    let seeder = Session::start(config(), Hooks::default()).await.unwrap();
    let seeding = seeder
        .add_torrent(
            meta.clone(),
            tmp.path().to_path_buf(),
            options(Some(&token)),
        )
        .await
        .unwrap();

    // The strangers first, so they are there while the member downloads.
    let (s1, stranger) = leecher(&meta, &tmp.path().join("stranger"), None, &seeder).await;
    let (s2, wrong) = leecher(
        &meta,
        &tmp.path().join("wrong"),
        Some(&other_channel),
        &seeder,
    )
    .await;
    let (s3, mut member) = leecher(&meta, &tmp.path().join("member"), Some(&token), &seeder).await;
    tokio::time::timeout(LIMIT, member.wait_finished())
        .await
        .expect("the member downloads in time")
        .expect("no error");
    assert!(payload_in(&member) >= meta.info.total_length);
    assert_eq!(
        std::fs::read(tmp.path().join("member/data/image.bin")).unwrap(),
        std::fs::read(tmp.path().join("data/image.bin")).unwrap()
    );
    assert!(
        seeding.proven_members() >= 1 || member.progress().peers == 0,
        "the seeder counts the member as proven while it is connected"
    );

    // Past the proof time-out (and the strangers' redials), nothing moved to them.
    tokio::time::sleep(PROOF_TIMEOUT + Duration::from_secs(2)).await;
    for (name, h) in [("no token", &stranger), ("another channel's token", &wrong)] {
        assert_eq!(payload_in(h), 0, "{name}: payload received");
        assert_eq!(h.progress().bytes_have, 0, "{name}: bytes verified");
        assert_eq!(h.proven_members(), 0, "{name}: proven members");
    }
    assert!(
        !seeding.is_proven_member(s1.local_addr()) && !seeding.is_proven_member(s2.local_addr())
    );
    assert_eq!(
        seeding.proven_members(),
        seeding.progress().peers,
        "only proven members stay connected to the seeder"
    );
    for s in [s1, s2, s3, seeder] {
        s.shutdown().await;
    }
}
