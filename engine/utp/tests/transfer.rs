//! Two connections over in-memory links on a fake clock: the handshake,
//! bulk transfers both ways with the bytes compared, and what loss,
//! reordering, duplication, time-outs, FIN and RESET do.

mod common;

use std::time::Duration;

use capwise_utp::packet::{Packet, PacketType};
use capwise_utp::{CloseReason, Config, Connection, Event};
use common::{pattern, Action, Flow, Link, Pair};

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn events(c: &mut Connection) -> Vec<Event> {
    std::iter::from_fn(|| c.poll_event()).collect()
}

fn connected_pair(ab: Link, ba: Link) -> Pair {
    let mut p = Pair::new(Config::default(), ab, ba);
    assert!(p.run(Duration::from_secs(30), |p| p.a.is_established()
        && p.b.as_ref().is_some_and(|b| b.is_established())));
    p
}

/// Both directions at once; returns the pair when both flows completed.
fn transfer_both_ways(mut p: Pair, up: usize, down: usize, limit: Duration) -> Pair {
    let mut ab = Flow::new(pattern(up, 1));
    let mut ba = Flow::new(pattern(down, 2));
    let done = p.run(limit, |p| {
        ab.pump(&mut p.a, p.b.as_mut(), false);
        if let Some(b) = p.b.as_mut() {
            ba.pump(b, Some(&mut p.a), false);
        }
        ab.complete() && ba.complete()
    });
    assert!(done);
    assert_eq!(ab.received.len(), up, "a->b bytes");
    assert!(ab.received == ab.data, "a->b bytes differ");
    assert_eq!(ba.received.len(), down, "b->a bytes");
    assert!(ba.received == ba.data, "b->a bytes differ");
    p
}

#[test]
fn handshake_then_events() {
    let mut p = connected_pair(Link::new(ms(10)), Link::new(ms(10)));
    assert_eq!(events(&mut p.a), [Event::Connected]);
    assert_eq!(events(p.b()), [Event::Connected]);
    // SYN, STATE, and a's STATE confirming it: nothing else.
    assert_eq!(p.a.stats().packets_sent, 2);
    assert_eq!(p.b().stats().packets_sent, 1);
    assert_eq!(p.a.stats().bytes_sent_on_wire, 40);
    let rtt = p.a.rtt().unwrap();
    assert_eq!(rtt, ms(20));
}

#[test]
fn megabytes_both_ways_on_a_clean_link() {
    let p = connected_pair(Link::new(ms(5)), Link::new(ms(5)));
    let mut p = transfer_both_ways(p, 6 << 20, 3 << 20, Duration::from_secs(120));
    let a = p.a.stats();
    let b = p.b().stats();
    assert_eq!(a.payload_sent, 6 << 20);
    assert_eq!(b.payload_received, 6 << 20);
    assert_eq!(a.payload_received, 3 << 20);
    assert_eq!(a.packets_retransmitted, 0);
    // Headers are on the wire too.
    assert!(a.bytes_sent_on_wire > a.payload_sent + 20 * (6 << 20) / 1400);
    assert_eq!(a.bytes_sent_on_wire, b.bytes_received_on_wire);
}

#[test]
fn every_seventh_packet_lost() {
    let drop7 = |n: u64, _: &[u8]| {
        if n % 7 == 6 {
            Action::Drop
        } else {
            Action::Pass
        }
    };
    let p = connected_pair(
        Link::new(ms(10)).with_fault(drop7),
        Link::new(ms(10)).with_fault(drop7),
    );
    let mut p = transfer_both_ways(p, 2 << 20, 1 << 20, Duration::from_secs(600));
    let a = p.a.stats();
    assert!(a.packets_retransmitted > 0);
    assert!(a.payload_retransmitted > 0);
    assert!(
        a.fast_retransmits > 0,
        "selective ACKs and duplicate ACKs repair most losses: {a:?}"
    );
    assert!(a.bytes_sent_on_wire > a.payload_sent + a.payload_retransmitted);
    assert_eq!(p.b().stats().payload_received, 2 << 20);
}

#[test]
fn reordered_and_duplicated_packets() {
    // Every fifth packet 30 ms late (behind several others), every
    // eleventh twice.
    let chaos = |n: u64, _: &[u8]| match n % 11 {
        _ if n % 5 == 3 => Action::Delay(ms(30)),
        10 => Action::Duplicate,
        _ => Action::Pass,
    };
    let p = connected_pair(
        Link::new(ms(10)).with_fault(chaos),
        Link::new(ms(10)).with_fault(chaos),
    );
    let mut p = transfer_both_ways(p, 3 << 20, 1 << 20, Duration::from_secs(300));
    assert!(p.b().stats().duplicates_received > 0);
    assert_eq!(
        p.b().stats().payload_received,
        3 << 20,
        "each byte delivered once"
    );
}

#[test]
fn a_dead_link_times_out_with_backoff() {
    let mut p = connected_pair(Link::new(ms(10)), Link::new(ms(10)));
    events(&mut p.a);
    // From now on nothing a sends arrives.
    p.ab.fault = Some(Box::new(|_, _| Action::Drop));
    assert_eq!(p.a.write(&[7; 10_000]), 10_000);
    let t0 = p.now;
    let mut deadlines = Vec::new();
    assert!(p.run(Duration::from_secs(600), |p| {
        // The instants the retransmission timer fired.
        if p.a.stats().timeouts as usize > deadlines.len() {
            deadlines.push(p.now);
        }
        p.a.is_closed()
    }));
    assert_eq!(p.a.close_reason(), Some(CloseReason::TimedOut));
    assert_eq!(
        events(&mut p.a).last(),
        Some(&Event::Closed(CloseReason::TimedOut))
    );
    let stats = p.a.stats();
    assert_eq!(stats.timeouts, 7, "six retransmits, then give up");
    assert!(stats.packets_retransmitted >= 6);
    // Each wait at least doubles the last (from the 500 ms floor).
    let gaps: Vec<Duration> = deadlines.windows(2).map(|w| w[1] - w[0]).collect();
    assert!(gaps.len() >= 5, "{gaps:?}");
    for w in gaps.windows(2).skip(1) {
        assert!(w[1] >= w[0] * 2 - ms(1), "{gaps:?}");
    }
    assert!(p.now - t0 > Duration::from_secs(30));
    // The window fell to its floor: two packets.
    assert_eq!(p.a.congestion_window(), p.a.min_congestion_window());
    assert_eq!(p.a.min_congestion_window(), 2 * 1400);
}

#[test]
fn a_lost_packet_is_retransmitted_after_the_timeout() {
    let mut p = connected_pair(Link::new(ms(10)), Link::new(ms(10)));
    // The only data packet is lost once: no later packets, so no duplicate
    // ACKs; only the timer can repair it.
    let mut dropped = false;
    p.ab.fault = Some(Box::new(move |_, bytes| {
        let data = Packet::decode(bytes).is_ok_and(|p| p.header.packet_type == PacketType::Data);
        if data && !std::mem::replace(&mut dropped, true) {
            Action::Drop
        } else {
            Action::Pass
        }
    }));
    p.a.write(b"hello");
    let t0 = p.now;
    assert!(p.run(Duration::from_secs(10), |p| p.b().readable_len() == 5));
    assert_eq!(p.a.stats().timeouts, 1);
    assert!(p.now - t0 >= ms(500), "the RTO's floor");
    let mut buf = [0u8; 16];
    assert_eq!(p.b().read(&mut buf), 5);
    assert_eq!(&buf[..5], b"hello");
}

#[test]
fn fin_both_ways_then_linger_then_closed() {
    let mut p = connected_pair(Link::new(ms(10)), Link::new(ms(10)));
    let mut up = Flow::new(pattern(100_000, 3));
    assert!(p.run(Duration::from_secs(30), |p| {
        up.pump(&mut p.a, p.b.as_mut(), true);
        p.b.as_ref().is_some_and(|b| b.is_read_closed())
    }));
    assert!(up.complete() && up.received == up.data);
    assert!(events(p.b()).contains(&Event::PeerFinished));
    assert_eq!(
        p.b().write(b"late reply"),
        10,
        "half-closed: b may still send"
    );
    p.b().close();
    assert!(p.run(Duration::from_secs(30), |p| p.a.is_closed()
        && p.b.as_ref().is_some_and(|b| b.is_closed())));
    assert_eq!(p.a.close_reason(), Some(CloseReason::Finished));
    assert_eq!(p.b().close_reason(), Some(CloseReason::Finished));
    let mut buf = [0u8; 32];
    assert_eq!(p.a.read(&mut buf), 10);
    assert_eq!(&buf[..10], b"late reply");
    assert!(p.a.is_read_closed());
    assert_eq!(p.a.write(b"x"), 0);
}

#[test]
fn reset_ends_the_peer_at_once() {
    let mut p = connected_pair(Link::new(ms(10)), Link::new(ms(10)));
    p.a.write(&[1; 50_000]);
    p.run(ms(15), |_| false);
    p.a.abort();
    assert!(p.a.is_closed());
    assert!(p.run(Duration::from_secs(5), |p| p
        .b
        .as_ref()
        .is_some_and(|b| b.is_closed())));
    assert_eq!(p.b().close_reason(), Some(CloseReason::Reset));
    assert_eq!(
        events(p.b()).last(),
        Some(&Event::Closed(CloseReason::Reset))
    );
    let now = p.now;
    assert!(p.b().poll_transmit(now).is_none());
}

#[test]
fn a_syn_nobody_answers_times_out() {
    let mut p = Pair::new(
        Config::default(),
        Link::new(ms(10)).with_fault(|_, _| Action::Drop),
        Link::new(ms(10)),
    );
    assert!(p.run(Duration::from_secs(60), |p| p.a.is_closed()));
    assert_eq!(p.a.close_reason(), Some(CloseReason::TimedOut));
    assert_eq!(p.a.stats().packets_sent, 4, "the SYN and three retransmits");
    // 1 + 2 + 4 + 8 s of backoff.
    assert_eq!(p.now - p.start, Duration::from_secs(15));
}

#[test]
fn the_receive_window_limits_the_sender() {
    let config = Config {
        receive_buffer: 8 * 1400,
        ..Config::default()
    };
    let mut p = Pair::new(config, Link::new(ms(10)), Link::new(ms(10)));
    assert!(p.run(Duration::from_secs(5), |p| p.a.is_established()
        && p.b.as_ref().is_some_and(|b| b.is_established())));
    // b reads nothing: a may fill b's buffer and no more.
    p.a.write(&pattern(200_000, 9));
    p.run(Duration::from_secs(20), |_| false);
    assert_eq!(p.b().readable_len(), 8 * 1400);
    assert!(p.a.stats().payload_sent <= 9 * 1400, "{:?}", p.a.stats());
    // Reading reopens the window (a window update), and the rest flows.
    let mut flow = Flow::new(pattern(200_000, 9));
    flow.written = flow.data.len();
    assert!(p.run(Duration::from_secs(120), |p| {
        flow.pump(&mut p.a, p.b.as_mut(), false);
        flow.complete()
    }));
    assert!(flow.received == flow.data);
}

#[test]
fn garbage_does_nothing() {
    let mut p = connected_pair(Link::new(ms(10)), Link::new(ms(10)));
    events(&mut p.a);
    let before = p.a.stats();
    let garbage: [&[u8]; 5] = [
        b"",
        b"\x01",
        &[0x41; 19],
        &[
            0x21, 9, 9, 9, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
        ],
        &[0xff; 100],
    ];
    for g in garbage {
        assert!(p.a.handle_datagram(p.now, g).is_err());
    }
    // A well-formed STATE for another connection id, and one acknowledging
    // a sequence number never sent.
    let now = p.now;
    let mut forged = p
        .b()
        .poll_transmit(now)
        .map(|d| d.to_vec())
        .unwrap_or_else(|| {
            p.b().write(b"x");
            p.b().poll_transmit(now).unwrap()
        });
    forged[2] ^= 0x55;
    assert!(p.a.handle_datagram(now, &forged).is_err());
    forged[2] ^= 0x55;
    forged[18] ^= 0x40;
    assert!(p.a.handle_datagram(now, &forged).is_err());
    assert_eq!(
        p.a.stats().packets_received,
        before.packets_received + 1,
        "only the one with our id is counted"
    );
    assert!(p.a.is_established());
    assert_eq!(events(&mut p.a), []);
    assert_eq!(p.a.poll_transmit(now), None);
}

#[test]
fn an_acceptor_sends_no_data_before_the_initiator_confirms() {
    // A SYN from a forged address: the acceptor's STATE goes to the victim,
    // who never answers. Whatever the acceptor wants to send stays put.
    let now = std::time::Instant::now();
    let mut initiator = Connection::connect(Config::default(), now, 77);
    let syn = initiator.poll_transmit(now).unwrap();
    let mut acceptor = Connection::accept(Config::default(), now, &syn, 4242).unwrap();
    assert_eq!(acceptor.write(&[9; 100_000]), 100_000);
    let mut sent = Vec::new();
    let mut t = now;
    // The forger repeats its SYN a few times; the acceptor re-acks each.
    for _ in 0..4 {
        t += ms(300);
        acceptor.handle_datagram(t, &syn).unwrap();
        while let Some(d) = acceptor.poll_transmit(t) {
            sent.push(d);
        }
        if let Some(deadline) = acceptor.poll_timeout() {
            if deadline <= t {
                acceptor.handle_timeout(t);
            }
        }
    }
    assert_eq!(sent.len(), 4);
    for d in &sent {
        let p = Packet::decode(d).unwrap();
        assert_eq!(p.header.packet_type, PacketType::State);
        assert!(d.len() <= syn.len(), "never more than the SYN");
    }
    // A guess at the confirmation with the wrong ack_nr changes nothing.
    let mut guess = initiator.poll_transmit(t).unwrap_or_else(|| syn.clone());
    guess[0] = 0x21; // STATE
    guess[2..4].copy_from_slice(&78u16.to_be_bytes());
    guess[18..20].copy_from_slice(&1234u16.to_be_bytes());
    assert!(acceptor.handle_datagram(t, &guess).is_err());
    assert!(acceptor.poll_transmit(t).is_none());
    assert!(!acceptor.is_established());
    // Nobody confirms: the half-open connection ends, having sent 80 bytes.
    let deadline = acceptor.poll_timeout().unwrap();
    acceptor.handle_timeout(deadline);
    assert_eq!(acceptor.close_reason(), Some(CloseReason::TimedOut));
    assert_eq!(acceptor.stats().payload_sent, 0);
    assert_eq!(acceptor.stats().bytes_sent_on_wire, 80);
}

#[test]
fn the_initiators_confirmation_releases_the_acceptors_data() {
    let mut p = Pair::new(Config::default(), Link::new(ms(10)), Link::new(ms(10)));
    // Hold a's confirmation: b exists and wants to send but must wait.
    p.run(ms(15), |p| p.b.is_some());
    p.b().write(b"server speaks first");
    assert!(!p.b().is_established());
    assert!(p.run(Duration::from_secs(5), |p| p.a.readable_len() == 19));
    // a's first packet after the STATE (its bare confirmation) came before any of b's data.
    let b = p.b().stats();
    assert_eq!(b.packets_sent, 2, "STATE, then DATA after the confirmation");
}

#[test]
fn a_lost_confirmation_is_sent_again_when_the_acceptor_speaks_first() {
    // a's first STATE after the handshake (its confirmation) is lost; b has
    // something to say first and a has nothing: a repeats the confirmation.
    let mut lost = false;
    let ab = Link::new(ms(10)).with_fault(move |n, _| {
        if n == 1 && !std::mem::replace(&mut lost, true) {
            Action::Drop
        } else {
            Action::Pass
        }
    });
    let mut p = Pair::new(Config::default(), ab, Link::new(ms(10)));
    assert!(p.run(Duration::from_secs(1), |p| p.a.is_established()));
    p.b().write(b"server first");
    assert!(p.run(Duration::from_secs(10), |p| p.a.readable_len() == 12));
    assert!(p.b().is_established());
    assert_eq!(
        p.b().stats().packets_sent,
        2,
        "one STATE, one DATA: nothing repeated by b"
    );
    assert!(
        p.now - p.start >= ms(500),
        "after a's first timer (the 500 ms floor)"
    );
}

#[test]
fn an_idle_connection_sends_a_keepalive_every_29_seconds() {
    let mut p = connected_pair(Link::new(ms(10)), Link::new(ms(10)));
    let sent = (p.a.stats().packets_sent, p.b().stats().packets_sent);
    // Two minutes with nothing to say: a STATE each way about every 29 s
    // (4 each; a also repeats its handshake confirmation, at most 3 times,
    // while b has sent no data), and the connection is still up.
    assert!(!p.run(Duration::from_secs(120), |_| false));
    let a_more = p.a.stats().packets_sent - sent.0;
    let b_more = p.b().stats().packets_sent - sent.1;
    assert!((4..=7).contains(&a_more), "a sent {a_more} keepalives");
    assert!((4..=5).contains(&b_more), "b sent {b_more} keepalives");
    assert!(p.a.is_established() && p.b().is_established());
    let bytes = p.a.stats().bytes_sent_on_wire;
    assert_eq!(bytes % 20, 0, "keepalives are bare 20-byte STATEs: {bytes}");
}

/// A STATE from b that acknowledges nothing new: ack_nr 1 (a's SYN), the
/// window given.
fn bare_state(wnd_size: u32, seq_nr: u16) -> Vec<u8> {
    use capwise_utp::packet::{encode_into, Header};
    let header = Header {
        packet_type: PacketType::State,
        connection_id: 1000,
        timestamp_us: 1,
        timestamp_diff_us: 1,
        wnd_size,
        seq_nr,
        ack_nr: 1,
    };
    let mut out = Vec::new();
    encode_into(&header, None, &[], &mut out);
    out
}

#[test]
fn window_updates_are_not_duplicate_acks() {
    let config = Config::default();
    let t0 = std::time::Instant::now();
    let mut a = Connection::connect(config.clone(), t0, 1000);
    let syn = a.poll_transmit(t0).unwrap();
    let mut b = Connection::accept(config, t0, &syn, 500).unwrap();
    a.handle_datagram(t0, &b.poll_transmit(t0).unwrap())
        .unwrap();
    a.write(&pattern(10 * 1400, 4));
    let mut sent = 0;
    while a.poll_transmit(t0).is_some() {
        sent += 1;
    }
    assert!(sent >= 2, "data outstanding");
    // The receiver read and says so: same ACK, a larger window each time.
    for (i, wnd) in [100_000u32, 200_000, 300_000, 400_000]
        .into_iter()
        .enumerate()
    {
        let _ = a.handle_datagram(t0, &bare_state(wnd, 500 + i as u16));
    }
    assert_eq!(a.stats().fast_retransmits, 0, "window updates are no loss");
    // Three true duplicates (same ACK, same window): the first packet is lost.
    for i in 0..3u16 {
        let _ = a.handle_datagram(t0, &bare_state(400_000, 510 + i));
    }
    assert_eq!(a.stats().fast_retransmits, 1);
}
