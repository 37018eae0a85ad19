//! Sessions with local service discovery on, in network namespaces this
//! test makes (see `netns/mod.rs`; root and `ip`, inside `unshare -n`):
//! a magnet finds its seeder through LSD alone (no tracker, no peer given)
//! while a private torrent both sides have is never announced nor dialled
//! (BEP 27) unless it is a channel torrent whose peers prove membership,
//! which finds its member seeder the same way; interfaces that come and go are followed without a restart, a
//! VPN-named one is refused by the caller's filter, an interface that comes
//! back within the minute does not announce again sooner, and a session
//! with the default config never runs LSD.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use capwise_engine::create::{create_torrent, CreateOptions};
use capwise_engine::ext::member::MembershipKey;
use capwise_engine::lsd::LsdInterface;
use capwise_engine::magnet::Magnet;
use capwise_engine::metainfo::Metainfo;
use capwise_engine::session::{
    Hooks, InterfaceFilter, Session, SessionConfig, TorrentOptions, TorrentState,
};

mod netns;
use netns::{enter, ifindex, ip, Pair, Single};

fn lsd_config() -> SessionConfig {
    SessionConfig {
        listen: "0.0.0.0:0".parse().unwrap(),
        lsd: true,
        ..SessionConfig::default()
    }
}

fn make_torrent(dir: &Path, name: &str, private: bool) -> Metainfo {
    let data = dir.join(name);
    std::fs::create_dir_all(&data).unwrap();
    std::fs::write(data.join("a.bin"), vec![private as u8 + 7; 300_000]).unwrap();
    let opts = CreateOptions {
        path: data,
        piece_length: Some(16 * 1024),
        private,
        ..CreateOptions::default()
    };
    Metainfo::from_bytes(&create_torrent(&opts).unwrap()).unwrap()
}

/// Runs `body` on a thread inside namespace `ns`, on a runtime of its own.
fn in_ns<T: Send + 'static>(
    ns: &str,
    body: impl FnOnce() -> std::pin::Pin<Box<dyn std::future::Future<Output = T>>> + Send + 'static,
) -> std::thread::JoinHandle<T> {
    let ns = ns.to_string();
    std::thread::spawn(move || {
        enter(&ns);
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(body())
    })
}

#[test]
fn a_magnet_finds_its_seeder_through_lsd_alone_and_a_private_torrent_is_never_announced() {
    let pair = Pair::new("s");
    let tmp = tempfile::tempdir().unwrap();
    let public = make_torrent(tmp.path(), "public", false);
    let private = make_torrent(tmp.path(), "private", true);
    let (done_tx, done_rx) = mpsc::channel::<()>();

    let (seed_dir, pub_meta, priv_meta) =
        (tmp.path().to_path_buf(), public.clone(), private.clone());
    let seeder = in_ns(&pair.names[0], move || {
        Box::pin(async move {
            let session = Session::start(lsd_config(), Hooks::default())
                .await
                .unwrap();
            let ifaces = session.lsd_interfaces();
            for meta in [pub_meta, priv_meta] {
                session
                    .add_torrent(meta, seed_dir.clone(), TorrentOptions::default())
                    .await
                    .unwrap();
            }
            let _ =
                tokio::task::spawn_blocking(move || done_rx.recv_timeout(Duration::from_secs(60)))
                    .await;
            session.shutdown().await;
            ifaces
        })
    });

    let leech_dir = tmp.path().join("leech");
    let (pub_hash, priv_meta) = (public.info_hash, private.clone());
    let leecher = in_ns(&pair.names[1], move || {
        Box::pin(async move {
            let session = Session::start(lsd_config(), Hooks::default())
                .await
                .unwrap();
            let ifaces = session.lsd_interfaces();
            let started = Instant::now();
            let private = session
                .add_torrent(priv_meta, leech_dir.join("p"), TorrentOptions::default())
                .await
                .unwrap();
            let mut handle = session
                .add_magnet(
                    Magnet::new(pub_hash),
                    leech_dir.clone(),
                    TorrentOptions::default(),
                )
                .unwrap();
            let finished = tokio::time::timeout(Duration::from_secs(30), handle.wait_finished())
                .await
                .map(|r| r.is_ok());
            let took = started.elapsed();
            // The seeder announced both at once; give a stray dial a moment.
            tokio::time::sleep(Duration::from_millis(500)).await;
            let private_state = private.state();
            let private_peers = private.progress().peers;
            session.shutdown().await;
            (ifaces, finished, took, private_state, private_peers)
        })
    });
    let (leech_ifaces, finished, took, private_state, private_peers) = leecher.join().unwrap();
    let _ = done_tx.send(());
    let seed_ifaces = seeder.join().unwrap();

    // 0.0.0.0 takes IPv4 only: the IPv4 group on the veth, nothing on lo.
    assert_eq!(seed_ifaces.len(), 1, "{seed_ifaces:?}");
    assert!(matches!(
        leech_ifaces.as_slice(),
        [LsdInterface::V4 { addr, .. }] if *addr == Ipv4Addr::new(10, 77, 0, 2)
    ));
    assert_eq!(finished, Ok(true), "the magnet completes from the LSD peer");
    assert!(took < Duration::from_secs(20), "took {took:?}");
    assert_eq!(
        std::fs::read(tmp.path().join("leech/public/a.bin")).unwrap(),
        std::fs::read(tmp.path().join("public/a.bin")).unwrap()
    );
    assert_ne!(
        private_state,
        TorrentState::Seeding,
        "private torrent got LSD peers"
    );
    assert_eq!(
        private_peers, 0,
        "a private torrent is never dialled over LSD"
    );
}

/// A private channel torrent whose peers prove membership is announced and
/// dialled over LSD (that is how a branch's machines find each other): the
/// member leecher completes from the member seeder with no tracker and no
/// peer given.
#[test]
fn a_channel_torrent_finds_its_member_seeder_through_lsd_alone() {
    let pair = Pair::new("m");
    let tmp = tempfile::tempdir().unwrap();
    let channel = make_torrent(tmp.path(), "channel", true);
    let member = || TorrentOptions {
        membership: Some(MembershipKey::from_seed([0x5A; 32])),
        ..TorrentOptions::default()
    };
    let (done_tx, done_rx) = mpsc::channel::<()>();

    let (seed_dir, meta) = (tmp.path().to_path_buf(), channel.clone());
    let seeder = in_ns(&pair.names[0], move || {
        Box::pin(async move {
            let session = Session::start(lsd_config(), Hooks::default())
                .await
                .unwrap();
            session.add_torrent(meta, seed_dir, member()).await.unwrap();
            let _ =
                tokio::task::spawn_blocking(move || done_rx.recv_timeout(Duration::from_secs(60)))
                    .await;
            session.shutdown().await;
        })
    });

    let (leech_dir, meta) = (tmp.path().join("leech"), channel.clone());
    let leecher = in_ns(&pair.names[1], move || {
        Box::pin(async move {
            let session = Session::start(lsd_config(), Hooks::default())
                .await
                .unwrap();
            let mut handle = session
                .add_torrent(meta, leech_dir, member())
                .await
                .unwrap();
            let finished = tokio::time::timeout(Duration::from_secs(30), handle.wait_finished())
                .await
                .map(|r| r.is_ok());
            session.shutdown().await;
            finished
        })
    });
    let finished = leecher.join().unwrap();
    let _ = done_tx.send(());
    seeder.join().unwrap();

    assert_eq!(
        finished,
        Ok(true),
        "the channel torrent completes from its LSD peer"
    );
    assert_eq!(
        std::fs::read(tmp.path().join("leech/channel/a.bin")).unwrap(),
        std::fs::read(tmp.path().join("channel/a.bin")).unwrap()
    );
}

/// Counts the BT-SEARCH packets that reach the IPv4 group on `addr`.
fn listen_group(addr: Ipv4Addr) -> std::net::UdpSocket {
    let socket = socket2::Socket::new(
        socket2::Domain::IPV4,
        socket2::Type::DGRAM,
        Some(socket2::Protocol::UDP),
    )
    .unwrap();
    socket.set_reuse_address(true).unwrap();
    socket.set_reuse_port(true).unwrap();
    socket
        .bind(&SocketAddr::from((Ipv4Addr::UNSPECIFIED, 6771)).into())
        .unwrap();
    socket
        .join_multicast_v4(&Ipv4Addr::new(239, 192, 152, 143), &addr)
        .unwrap();
    socket
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    socket.into()
}

fn packets_within(socket: &std::net::UdpSocket, window: Duration) -> usize {
    let end = Instant::now() + window;
    let mut n = 0;
    let mut buf = [0u8; 2048];
    while Instant::now() < end {
        if let Ok((len, _)) = socket.recv_from(&mut buf) {
            if buf[..len].starts_with(b"BT-SEARCH") {
                n += 1;
            }
        }
    }
    n
}

#[test]
fn interfaces_that_come_and_go_are_followed_without_a_restart() {
    let ns = Single::new("if");
    let tmp = tempfile::tempdir().unwrap();
    let meta = make_torrent(tmp.path(), "public", false);
    let name = ns.name.clone();
    let dir = tmp.path().to_path_buf();
    let run = in_ns(&ns.name, move || {
        Box::pin(async move {
            let n = |args: &[&str]| {
                let mut all = vec!["-n", name.as_str()];
                all.extend_from_slice(args);
                ip(&all);
            };
            let addr = Ipv4Addr::new(10, 78, 0, 1);
            let up = |dev: &str| {
                let other = format!("{dev}p");
                n(&["link", "add", dev, "type", "veth", "peer", "name", &other]);
                n(&["link", "set", dev, "multicast", "on"]);
                n(&["addr", "add", "10.78.0.1/24", "dev", dev]);
                n(&["link", "set", &other, "up"]);
                n(&["link", "set", dev, "up"]);
            };
            let default = Session::start(
                SessionConfig {
                    listen: "0.0.0.0:0".parse().unwrap(),
                    ..SessionConfig::default()
                },
                Hooks::default(),
            )
            .await
            .unwrap();
            let config = SessionConfig {
                lsd_interfaces: InterfaceFilter::new(|name| !name.starts_with("vpn")),
                ..lsd_config()
            };
            let session = Session::start(config, Hooks::default()).await.unwrap();
            session
                .add_torrent(meta, dir, TorrentOptions::default())
                .await
                .unwrap();
            assert!(session.lsd_interfaces().is_empty(), "only lo so far");

            // A VPN-named interface is refused by the filter.
            up("vpn0");
            session.rescan_lsd();
            assert!(
                session.lsd_interfaces().is_empty(),
                "the filter refuses vpn0"
            );
            n(&["link", "del", "vpn0"]);

            // A LAN interface comes: LSD runs on it and announces.
            up("lan0");
            let group = listen_group(addr);
            session.rescan_lsd();
            default.rescan_lsd();
            assert_eq!(
                session.lsd_interfaces(),
                vec![LsdInterface::V4 {
                    ifindex: ifindex("lan0"),
                    addr
                }]
            );
            assert!(default.lsd_interfaces().is_empty(), "LSD is off by default");
            let group = tokio::task::spawn_blocking(move || {
                let n = packets_within(&group, Duration::from_secs(3));
                (group, n)
            })
            .await
            .unwrap();
            assert_eq!(group.1, 1, "one announce once the interface is there");

            // It goes, and comes back within the minute: followed, but the
            // torrent is not announced there again before the minute is out.
            n(&["link", "del", "lan0"]);
            session.rescan_lsd();
            assert!(session.lsd_interfaces().is_empty(), "lan0 is gone");
            up("lan0");
            let group = listen_group(addr);
            session.rescan_lsd();
            assert_eq!(session.lsd_interfaces().len(), 1, "lan0 is back");
            let again =
                tokio::task::spawn_blocking(move || packets_within(&group, Duration::from_secs(3)))
                    .await
                    .unwrap();
            assert_eq!(again, 0, "no second announce within a minute");
            session.shutdown().await;
            default.shutdown().await;
        })
    });
    run.join().unwrap();
}
