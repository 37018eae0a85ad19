//! LEDBAT against a simulated bottleneck: a 10 Mbit/s link with a 25 ms
//! one-way delay and a queue deeper than a second. Alone, the window settles
//! where the queue holds about the 100 ms target and the link stays full;
//! beside a foreground flow that does not back off, it yields the link,
//! and when that flow overfills the queue it falls to its minimum window;
//! once the flow ends it takes the link back. Simulated time only.

mod common;

use std::time::Duration;

use capwise_utp::Config;
use common::{Cross, Flow, Link, Pair};

const RATE: f64 = 1_250_000.0; // 10 Mbit/s in bytes per second

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn bulk_pair() -> Pair {
    let ab = Link::new(ms(25)).bottleneck(RATE, 2_000_000);
    let ba = Link::new(ms(25));
    let mut p = Pair::new(Config::default(), ab, ba);
    assert!(p.run(Duration::from_secs(5), |p| p.a.is_established()));
    p
}

/// Keeps a's send buffer full and b's read buffer empty until `until`
/// (seconds from the start), sampling a's window every step.
fn run_bulk(p: &mut Pair, flow: &mut Flow, until: f64, windows: &mut Vec<(f64, usize)>) {
    let end = p.at(until);
    let start = p.start;
    p.run(end - p.now, |p| {
        flow.written = 0; // an endless source: the bytes are a pattern
        flow.pump(&mut p.a, p.b.as_mut(), false);
        flow.received.clear();
        windows.push(((p.now - start).as_secs_f64(), p.a.congestion_window()));
        false
    });
}

#[test]
fn ledbat_holds_the_queue_near_its_target_and_yields_to_foreground_traffic() {
    let mut p = bulk_pair();
    let mut flow = Flow::new(common::pattern(1 << 20, 5));
    let mut windows = Vec::new();

    // Alone for 40 s.
    run_bulk(&mut p, &mut flow, 40.0, &mut windows);
    let (from, to) = (p.at(20.0), p.at(40.0));
    let q = p.ab.mean_queue_delay(from, to);
    let rate = p.ab.delivered_rate(from, to);
    println!(
        "alone: queue {q:?}, {rate:.0} B/s, window {}",
        p.a.congestion_window()
    );
    assert!(
        q >= ms(50) && q <= ms(115),
        "queueing delay {q:?} should sit near the 100 ms target"
    );
    assert!(rate >= 0.85 * RATE, "the link stays busy: {rate:.0} B/s");
    assert_eq!(p.ab.queue_drops, 0, "LEDBAT never fills a 1.6 s queue");
    let seen = p.a.queuing_delay().unwrap();
    assert!(
        seen >= ms(40) && seen <= ms(130),
        "LEDBAT's own estimate {seen:?}"
    );

    // A foreground flow at 90% of the link from 40 s to 80 s.
    p.cross
        .push(Cross::new(0.9 * RATE, 1400, p.at(40.0), p.at(80.0)));
    run_bulk(&mut p, &mut flow, 80.0, &mut windows);
    let (from, to) = (p.at(55.0), p.at(80.0));
    let rate = p.ab.delivered_rate(from, to);
    let q = p.ab.mean_queue_delay(from, to);
    println!("beside 90% foreground: {rate:.0} B/s, queue {q:?}");
    assert!(
        rate <= 0.15 * RATE,
        "LEDBAT leaves the link to the foreground: {rate:.0} B/s"
    );
    assert!(
        q <= ms(130),
        "and adds no more than its target of delay: {q:?}"
    );
    assert_eq!(p.ab.cross_drops, 0, "no foreground packet lost");

    // The foreground overfills the link (120%) from 80 s to 90 s: the queue
    // grows whatever LEDBAT does, and LEDBAT goes to its floor.
    p.cross
        .push(Cross::new(1.2 * RATE, 1400, p.at(80.0), p.at(90.0)));
    run_bulk(&mut p, &mut flow, 90.0, &mut windows);
    let min = p.a.min_congestion_window();
    let late: Vec<usize> = windows
        .iter()
        .filter(|(t, _)| *t >= 86.0 && *t < 90.0)
        .map(|&(_, w)| w)
        .collect();
    assert!(!late.is_empty());
    assert!(
        late.iter().all(|&w| w <= 2 * min),
        "windows in 86-90 s: {:?}",
        &late[..late.len().min(20)]
    );

    // Foreground gone at 90 s; its queue drains (10 s of 120% leaves about
    // 2 s of queue); LEDBAT then takes the link back.
    run_bulk(&mut p, &mut flow, 110.0, &mut windows);
    let rate = p.ab.delivered_rate(p.at(100.0), p.at(110.0));
    println!(
        "after the foreground: {rate:.0} B/s, window {}",
        p.a.congestion_window()
    );
    assert!(
        rate >= 0.8 * RATE,
        "LEDBAT takes the link back: {rate:.0} B/s"
    );
}

#[test]
fn the_base_delay_is_one_way_not_round_trip() {
    // The reverse path carries a standing 200 ms queue of its own (a slow
    // ACK path): a one-way measure must not take that for its own queue.
    let ab = Link::new(ms(25)).bottleneck(RATE, 2_000_000);
    let ba = Link::new(ms(225));
    let mut p = Pair::new(Config::default(), ab, ba);
    assert!(p.run(Duration::from_secs(5), |p| p.a.is_established()));
    let mut flow = Flow::new(common::pattern(1 << 20, 6));
    let mut windows = Vec::new();
    run_bulk(&mut p, &mut flow, 60.0, &mut windows);
    let rate = p.ab.delivered_rate(p.at(40.0), p.at(60.0));
    let q = p.ab.mean_queue_delay(p.at(40.0), p.at(60.0));
    println!("slow ACK path: {rate:.0} B/s, queue {q:?}");
    assert!(rate >= 0.8 * RATE, "{rate:.0} B/s");
    assert!(q <= ms(115), "{q:?}");
}
