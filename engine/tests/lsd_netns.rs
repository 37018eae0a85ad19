//! The LSD driver between two network namespaces this test makes (`ip netns
//! add`, a veth pair with multicast on), over IPv4 and over IPv6: each side
//! hears the other's
//! announce, with the packet's source address, for the torrent they share
//! and not for the one only the other has, and never its own echo. Needs
//! root and `ip`; run inside `unshare -n` (as scripts/test does), where the
//! namespaces are bind mounts under /run/netns that this test removes.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{mpsc, Arc, Barrier};
use std::time::Duration;

use capwise_engine::lsd::{Lsd, LsdInterface};
use capwise_proto::metainfo::InfoHash;
use capwise_proto::privacy::PublicTorrent;

mod netns;
use netns::{enter, ifindex, Pair};

type Heard = (SocketAddr, Vec<InfoHash>);

/// One side: an LSD driver in namespace `ns` on `dev`, on the IPv4 group
/// from `addr`, or on the IPv6 group when `addr` is `None`.
struct Side {
    ns: String,
    dev: &'static str,
    addr: Option<Ipv4Addr>,
    listen_port: u16,
    torrents: Vec<InfoHash>,
}

/// Runs `side` until `stop` (or 20 s), sending what it hears to `heard`;
/// waits at `ready` once its socket has joined the group.
fn run_side(
    side: Side,
    ready: Arc<Barrier>,
    heard: mpsc::Sender<Heard>,
    stop: mpsc::Receiver<()>,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        enter(&side.ns);
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let ifindex = ifindex(side.dev);
        let interface = match side.addr {
            Some(addr) => LsdInterface::V4 { ifindex, addr },
            None => LsdInterface::V6 { ifindex },
        };
        let lsd = rt
            .block_on(async {
                Lsd::start(
                    interface,
                    side.listen_port,
                    Box::new(move |peer, hashes| {
                        let _ = heard.send((peer, hashes));
                    }),
                )
            })
            .expect("LSD socket");
        // Both sockets have joined the group before either announces.
        ready.wait();
        rt.block_on(async move {
            for hash in side.torrents {
                lsd.add_torrent(hash, PublicTorrent::check(false).unwrap());
            }
            let _ = tokio::task::spawn_blocking(move || stop.recv_timeout(Duration::from_secs(20)))
                .await;
            drop(lsd);
        });
    })
}

/// A and B (at `ips`) each announce and must hear the other.
fn find_each_other(tag: &str, v6: bool, ips: [IpAddr; 2]) {
    let pair = Pair::new(tag);
    let shared = InfoHash([0x11; 20]);
    let only_b = InfoHash([0x22; 20]);
    let ready = Arc::new(Barrier::new(2));
    let (heard_a, from_a) = mpsc::channel();
    let (heard_b, from_b) = mpsc::channel();
    let (stop_a, stop_a_rx) = mpsc::channel();
    let (stop_b, stop_b_rx) = mpsc::channel();
    let v4 = |ip: IpAddr| match ip {
        IpAddr::V4(v4) if !v6 => Some(v4),
        _ => None,
    };
    let a = Side {
        ns: pair.names[0].clone(),
        dev: "lsda",
        addr: v4(ips[0]),
        listen_port: 7001,
        torrents: vec![shared],
    };
    let b = Side {
        ns: pair.names[1].clone(),
        dev: "lsdb",
        addr: v4(ips[1]),
        listen_port: 7002,
        torrents: vec![shared, only_b],
    };
    let a = run_side(a, ready.clone(), heard_a, stop_a_rx);
    let b = run_side(b, ready, heard_b, stop_b_rx);

    let wait = Duration::from_secs(10);
    let (peer, hashes) = from_a.recv_timeout(wait).expect("A hears B");
    assert_eq!((peer.ip(), peer.port()), (ips[1], 7002));
    assert_eq!(hashes, vec![shared], "only the torrent A has");
    let (peer, hashes) = from_b.recv_timeout(wait).expect("B hears A");
    assert_eq!((peer.ip(), peer.port()), (ips[0], 7001));
    assert_eq!(hashes, vec![shared]);
    // Neither hears itself (its echo comes back through multicast loop).
    std::thread::sleep(Duration::from_millis(500));
    assert!(from_a.try_iter().all(|(p, _)| p.ip() != ips[0]));
    assert!(from_b.try_iter().all(|(p, _)| p.ip() != ips[1]));

    let _ = stop_a.send(());
    let _ = stop_b.send(());
    a.join().unwrap();
    b.join().unwrap();
}

#[test]
fn two_namespaces_find_each_other_over_lsd_ipv4() {
    find_each_other("4", false, [[10, 77, 0, 1].into(), [10, 77, 0, 2].into()]);
}

#[test]
fn two_namespaces_find_each_other_over_lsd_ipv6() {
    let a: IpAddr = "fd77::1".parse().unwrap();
    let b: IpAddr = "fd77::2".parse().unwrap();
    find_each_other("6", true, [a, b]);
}
