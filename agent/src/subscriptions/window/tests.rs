//! The window's clock on fixed times, the registry, and a subscription's
//! torrent behind a closed window on loopback: nothing from a WAN seeder,
//! everything from a LAN one.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;

use capwise_engine::create::{create_torrent, CreateOptions};
use capwise_engine::hooks::{Classifier, Direction, PeerClass};
use capwise_engine::metainfo::Metainfo;
use capwise_engine::session::{Hooks, Session, SessionConfig, TorrentHandle, TorrentOptions};
use capwise_policy::time::days_from_civil;

use super::*;
use crate::daemon::torrents::Torrents;
use crate::subscriptions::store::{self, Subscription};

fn at(y: i32, m: u32, d: u32, h: i64, min: i64) -> Timestamp {
    Timestamp(days_from_civil(y, m, d) * 86_400 + h * 3600 + min * 60)
}

#[test]
fn windows_parse_as_schedules_write_them() {
    let w = WanWindow::parse("22:00-06:00").unwrap();
    assert_eq!((w.days, w.start, w.end), (0b111_1111, 1320, 360));
    assert_eq!(w.text(), "22:00-06:00");
    assert_eq!(w.shown(), "22:00\u{2013}06:00");
    let w = WanWindow::parse(" weekdays 19:00-07:30 ").unwrap();
    assert_eq!(w.text(), "weekdays 19:00-07:30");
    let w = WanWindow::parse("mon,wed 08:00-24:00").unwrap();
    assert_eq!(w.text(), "mon,wed 08:00-24:00");
    assert_eq!(WanWindow::parse(&w.text()), Ok(w));
    for bad in [
        "",
        "22:00",
        "25:00-01:00",
        "24:00-01:00",
        "22:00-06:00 x",
        "funday 22:00-06:00",
        "22:00-6",
    ] {
        assert!(WanWindow::parse(bad).is_err(), "{bad}");
    }
}

#[test]
fn the_clock_opens_and_closes_at_the_edges() {
    let utc = Zone::UTC;
    let w = WanWindow::parse("22:00-06:00").unwrap();
    // 2024-12-06 is a Friday.
    let before = at(2024, 12, 6, 21, 59).plus_secs(30);
    assert!(!w.is_open(before, &utc));
    assert_eq!(w.next_change(before, &utc), Some(at(2024, 12, 6, 22, 0)));
    assert_eq!(
        w.holds_back(before, &utc).as_deref(),
        Some("outside its window 22:00\u{2013}06:00; next opens at 22:00")
    );
    let inside = at(2024, 12, 6, 23, 0);
    assert!(w.is_open(inside, &utc));
    assert!(w.holds_back(inside, &utc).is_none());
    assert_eq!(w.next_change(inside, &utc), Some(at(2024, 12, 7, 6, 0)));
    assert!(!w.is_open(at(2024, 12, 7, 6, 0), &utc));

    // A weekday window seen on a Saturday opens on Monday.
    let weekdays = WanWindow::parse("weekdays 19:00-07:00").unwrap();
    let saturday = at(2024, 12, 7, 12, 0);
    assert!(!weekdays.is_open(saturday, &utc));
    assert_eq!(
        weekdays.next_change(saturday, &utc),
        Some(at(2024, 12, 9, 19, 0))
    );
    assert_eq!(
        weekdays.holds_back(saturday, &utc).as_deref(),
        Some("outside its window weekdays 19:00\u{2013}07:00; next opens mon 19:00")
    );
    // Always open: no edge at all.
    let always = WanWindow::parse("00:00-24:00").unwrap();
    assert!(always.is_open(saturday, &utc));
    assert_eq!(always.next_change(saturday, &utc), None);
}

#[test]
fn the_registry_keeps_one_switch_per_subscription() {
    let windows = Windows::default();
    let url = "http://hq.example/ch/manifest.json";
    assert!(windows.assign("AB".repeat(20).as_str(), url));
    assert!(!windows.assign(&"ab".repeat(20), "http://other/"));
    assert!(
        windows.switch_for(&"ab".repeat(20)).is_none(),
        "no window yet"
    );
    windows.set(url, Some(WanWindow::parse("22:00-06:00").unwrap()));
    let switch = windows.switch_for(&"ab".repeat(20)).expect("its switch");
    let utc = Zone::UTC;
    assert_eq!(
        windows.tick(at(2024, 12, 6, 12, 0), &utc),
        Some(at(2024, 12, 6, 22, 0))
    );
    assert!(!switch.is_on() && windows.closed(url).is_some());
    windows.tick(at(2024, 12, 6, 22, 0), &utc);
    assert!(switch.is_on() && windows.closed(url).is_none());
    windows.tick(at(2024, 12, 7, 6, 0), &utc);
    assert!(!switch.is_on());
    // Unsubscribed: the switch lets go, the items are forgotten.
    windows.forget(url);
    assert!(switch.is_on());
    assert!(windows.switch_for(&"ab".repeat(20)).is_none());
    assert!(windows.assign(&"ab".repeat(20), "http://other/"));
}

const WAN_HOST: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 2);
const LEN: u64 = 3 * 256 * 1024 + 99;

/// 127.0.0.2 is the WAN (the HQ's seeder), every other address the LAN.
struct OneWanHost;

impl Classifier for OneWanHost {
    fn classify(&self, addr: IpAddr) -> PeerClass {
        if addr == IpAddr::V4(WAN_HOST) {
            PeerClass::Wan
        } else {
            PeerClass::Lan
        }
    }
}

async fn session(ip: Ipv4Addr, hooks: Hooks) -> Session {
    let config = SessionConfig {
        listen: SocketAddr::new(IpAddr::V4(ip), 0),
        ..SessionConfig::default()
    };
    Session::start(config, hooks).await.unwrap()
}

async fn wait_for(handle: &TorrentHandle, what: &str, done: impl Fn(u64, usize) -> bool) {
    for _ in 0..1500 {
        let p = handle.progress();
        if done(p.bytes_have, p.peers) {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    panic!("timed out waiting for {what}: {:?}", handle.progress());
}

/// The local minute-of-day now, in the zone the registry uses.
fn local_minute() -> u16 {
    let now = Timestamp::now_from_system();
    Zone::system(now).to_local(now).minute_of_day() as u16
}

fn window_from(start: u16, len: u16) -> String {
    let end = (start + len) % 1440;
    format!("{}-{}", clock(start % 1440), clock(end))
}

/// A stored subscription whose window is closed now, holding one item:
/// its torrent (restored with the window's switch, as after a restart)
/// takes nothing from a WAN seeder while a LAN seeder gives it everything.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_closed_window_takes_nothing_over_the_wan_and_the_lan_goes_on() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    std::fs::create_dir_all(&src).unwrap();
    let bytes: Vec<u8> = (0..LEN as u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
        .collect();
    std::fs::write(src.join("item.bin"), &bytes).unwrap();
    let torrent = create_torrent(&CreateOptions {
        path: src.join("item.bin"),
        piece_length: Some(256 * 1024),
        ..CreateOptions::default()
    })
    .unwrap();
    let meta = Metainfo::from_bytes(&torrent).unwrap();
    let id = meta.info_hash.to_string().to_ascii_lowercase();

    let wan_seeder = session(WAN_HOST, Hooks::default()).await;
    wan_seeder
        .add_torrent(meta.clone(), src.clone(), TorrentOptions::default())
        .await
        .unwrap();
    let lan_seeder = session(Ipv4Addr::LOCALHOST, Hooks::default()).await;
    lan_seeder
        .add_torrent(meta.clone(), src.clone(), TorrentOptions::default())
        .await
        .unwrap();

    // Closed for the next two hours, whatever the time now.
    let closed = window_from(local_minute() + 120, 1);
    let db = Arc::new(TorrentDb::open(&tmp.path().join("capwise.db")).unwrap());
    let url = "http://hq.example/ch/manifest.json";
    let mut sub = Subscription::new(url.into(), "ab".repeat(32), None, false, 60);
    sub.wan_window = Some(closed.clone());
    store::insert(&db, &sub, 1).unwrap();
    store::hold(&db, url, &id, "item.bin").unwrap();
    let windows = Windows::load(&db).unwrap();
    assert!(windows.closed(url).is_some(), "{closed} is open now");

    let agent = session(
        Ipv4Addr::LOCALHOST,
        Hooks {
            classifier: Arc::new(OneWanHost),
            ..Hooks::default()
        },
    )
    .await;
    let torrents = Arc::new(
        Torrents::new(agent, db.clone(), true)
            .with_manual_peers(vec![wan_seeder.local_addr()])
            .with_wan_windows(windows.clone()),
    );
    torrents
        .add(torrent.clone(), tmp.path().join("leech"), false, false)
        .await
        .unwrap();
    let handle = torrents.session().torrent(meta.info_hash.0).unwrap();
    wait_for(&handle, "the WAN seeder to connect", |have, peers| {
        peers > 0 || have > 0
    })
    .await;
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    let counters = handle.counters();
    assert_eq!(
        counters.payload(Direction::Down, PeerClass::Wan),
        0,
        "payload crossed the WAN outside the window {closed}"
    );
    assert_eq!(handle.progress().bytes_have, 0);

    handle.connect(&[lan_seeder.local_addr()]);
    wait_for(&handle, "the download over the LAN", |have, _| have == LEN).await;
    assert_eq!(counters.payload(Direction::Down, PeerClass::Wan), 0);
    assert!(counters.payload(Direction::Down, PeerClass::Lan) >= LEN);
    assert_eq!(
        std::fs::read(tmp.path().join("leech/item.bin")).unwrap(),
        bytes
    );

    // The window changed to one that is open now: the same switch opens.
    let open = window_from(local_minute() + 1440 - 60, 180);
    windows.set(url, Some(WanWindow::parse(&open).unwrap()));
    assert!(windows.closed(url).is_none());
    assert!(windows.switch_for(&id).unwrap().is_on());
}
