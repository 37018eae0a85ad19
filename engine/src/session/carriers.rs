//! The session's sockets: the TCP listener when TCP is used, the one UDP
//! socket (`udp.rs`) when uTP or the DHT runs, and the uTP driver on it.
//!
//! Both listen on the same address and port (the one peers are told). With
//! TCP, its listener picks the port (port 0 in the config) and the UDP
//! socket follows it; if that UDP port is taken, another one is used with a
//! warning (the DHT still works; uTP peers then find us only by our
//! dialling them). Without TCP, the UDP socket is the listen socket, and
//! failing to bind it fails the session's start.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::sync::{broadcast, mpsc};

use crate::egress::Device;
use crate::transport::utp_driver::{UtpDriver, UtpHooks};
use crate::transport::{Carrier, Transport};
use crate::udp::{Datagram, UdpEndpoint};
use crate::Result;

use super::{Hooks, SessionConfig, SessionInner};

/// What `Session::start` binds before the session exists.
pub(crate) struct Sockets {
    pub(crate) listener: Option<Arc<TcpListener>>,
    pub(crate) local_addr: SocketAddr,
    pub(crate) udp: Option<UdpEndpoint>,
    /// The DHT's datagrams, when the UDP socket is open.
    pub(crate) dht_datagrams: Option<mpsc::Receiver<Datagram>>,
    pub(crate) utp: Option<(UtpDriver, mpsc::Receiver<Transport>)>,
}

/// Binds the sockets on `device` (the session's interface, `egress.rs`).
pub(crate) fn bind(config: &SessionConfig, hooks: &Hooks, device: Device<'_>) -> Result<Sockets> {
    let transports = &config.transports;
    let listener = if transports.uses(Carrier::Tcp) {
        Some(Arc::new(crate::egress::tcp_listener(
            config.listen,
            device,
        )?))
    } else {
        None
    };
    let tcp_addr = match &listener {
        Some(l) => Some(l.local_addr()?),
        None => None,
    };
    let wants_utp = transports.uses(Carrier::Utp);
    let mut sockets = Sockets {
        local_addr: tcp_addr.unwrap_or(config.listen),
        listener,
        udp: None,
        dht_datagrams: None,
        utp: None,
    };
    if !wants_utp && config.dht.is_none() {
        return Ok(sockets);
    }
    let counters = hooks.counters.clone();
    let max = capwise_dht::krpc::MAX_PACKET;
    let want = sockets.local_addr;
    let bound = match UdpEndpoint::bind_on(want, device, counters.clone(), max) {
        Ok(b) => Ok(b),
        Err(e) if tcp_addr.is_some() => {
            tracing::warn!(addr = %want, error = %e, "UDP port taken; using another for the DHT and uTP");
            let mut any = want;
            any.set_port(0);
            // On the same device: never an unbound socket.
            UdpEndpoint::bind_on(any, device, counters, max)
        }
        Err(e) => return Err(e.into()),
    };
    let (endpoint, receivers) = match bound {
        Ok(b) => b,
        Err(e) => {
            tracing::warn!(addr = %want, error = %e, "no UDP socket: the DHT and uTP are off");
            return Ok(sockets);
        }
    };
    if tcp_addr.is_none() {
        sockets.local_addr = endpoint.local_addr()?;
    }
    if wants_utp {
        let utp_hooks = UtpHooks {
            counters: hooks.counters.clone(),
            classifier: hooks.classifier.clone(),
            wan: hooks.wan.clone(),
        };
        let driver = UtpDriver::spawn(
            endpoint.socket(),
            receivers.utp,
            Default::default(),
            utp_hooks,
        )?;
        tracing::info!(addr = %driver.0.local_addr(), "uTP listening");
        sockets.utp = Some(driver);
    }
    sockets.dht_datagrams = Some(receivers.dht);
    sockets.udp = Some(endpoint);
    Ok(sockets)
}

/// Hands the uTP connections peers open to the session, like the TCP
/// accept loop does with its own.
pub(crate) async fn accept_utp(
    inner: Arc<SessionInner>,
    mut accepted: mpsc::Receiver<Transport>,
    mut shutdown: broadcast::Receiver<()>,
) {
    loop {
        tokio::select! {
            got = accepted.recv() => match got {
                Some(transport) => inner.accept_transport(transport),
                None => return,
            },
            _ = shutdown.recv() => return,
        }
    }
}
