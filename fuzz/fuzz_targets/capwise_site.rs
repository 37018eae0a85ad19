//! capwise_site (site coordination): hostile messages never panic the
//! parser or a coordinating swarm; what parses encodes back to the same
//! message (the optional `w` included), and a share of the site's WAN cap
//! is never zero.
#![no_main]

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use capwise_engine::bitfield::Bitfield;
use capwise_engine::class::PeerClass;
use capwise_engine::ext::site::{self, SiteMsg};
use capwise_engine::swarm::{PeerOrigin, Swarm, SwarmConfig};
use capwise_engine::wire::{Handshake, Message};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(msg) = SiteMsg::decode(data, 64) {
        assert_eq!(SiteMsg::decode(&msg.encode(), 64).as_ref(), Ok(&msg));
    }
    let now = Instant::now();
    let mut swarm = Swarm::new(
        16 * 1024,
        64 * 16 * 1024,
        Bitfield::new(64),
        SwarmConfig::default(),
        now,
    );
    swarm.enable_site([1; 8]);
    let key = swarm.add_peer_with(
        SocketAddr::from(([10, 0, 0, 2], 6881)),
        &Handshake::new([9; 20], [4; 20]),
        PeerOrigin {
            class: PeerClass::Lan,
            outgoing: true,
        },
        now,
    );
    let ext = capwise_engine::wire::extension::our_handshake_with(
        6881,
        250,
        None,
        &[(site::EXTENSION_NAME, site::OUR_ID)],
        None,
    );
    let hello = Message::Extended {
        id: 0,
        payload: Bytes::from(ext),
    };
    if swarm.on_message(key, hello, now).is_err() {
        return;
    }
    let mut t = now;
    for chunk in data.split(|&b| b == 0xff).take(16) {
        let msg = Message::Extended {
            id: site::OUR_ID,
            payload: Bytes::copy_from_slice(chunk),
        };
        if swarm.on_message(key, msg, t).is_err() {
            swarm.remove_peer(key);
            break;
        }
        let wanting = swarm.site_wan_wanting().len();
        assert!(wanting <= 1);
        assert!(site::wan_share(1000, wanting) > 0);
        t += Duration::from_secs(7);
        swarm.tick(t);
    }
});
