//! How a connection gets from its carrier to the BitTorrent handshake,
//! under the session's [`Encryption`] mode: dialling (MSE first, or
//! plaintext) and the accepting side's choice between a plaintext
//! handshake and an MSE one (`transport/mse.rs` runs the handshake).

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use capwise_proto::mse::{skeys_from, Methods};
use tokio::io::AsyncWriteExt;

use crate::hooks::PeerClass;
use crate::transport::mse::{self, Opening};
use crate::transport::{self, Transport, Transports};
use crate::wire::Handshake;
use crate::{Encryption, Error, Result};

use super::{SessionInner, HANDSHAKE_TIMEOUT};

const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Peers remembered as refusing an encrypted handshake, dialled in
/// plaintext straight away next time (libtorrent keeps the same mark).
const MAX_PLAINTEXT_PEERS: usize = 4096;

/// At most one incoming MSE handshake's exponentiations per this long.
/// The two 768-bit exponentiations take about 0.25 ms on a 2-core test
/// machine (crypto-bigint, release build), so a flood of handshakes that
/// never finish takes about an eighth of one core, and 500 genuine ones a
/// second still pass.
pub(crate) const DH_SPACING: Duration = Duration::from_millis(2);

impl SessionInner {
    /// Dial `addr` for the torrent `info_hash` and send our BitTorrent
    /// handshake: inside an MSE handshake offering RC4 unless encryption is
    /// only allowed; when preferred and the peer refuses it, over a new
    /// plaintext connection. `wanted`: the torrent's own carrier order
    /// (`TorrentOptions::transports`), else the session's.
    pub(crate) async fn dial_peer(
        self: &Arc<Self>,
        addr: SocketAddr,
        info_hash: [u8; 20],
        wanted: Option<&Transports>,
    ) -> Result<Transport> {
        if self.config.blocklist.contains(addr.ip()) {
            self.blocked
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            return Err(std::io::Error::other("the peer is blocklisted").into());
        }
        let class = self.hooks.classifier.classify(addr.ip());
        if class == PeerClass::Wan && !self.hooks.wan.is_on() {
            // Not even a SYN crosses a WAN that must stay silent.
            return Err(std::io::Error::other("WAN traffic is off").into());
        }
        let ours = Handshake::new(info_hash, self.peer_id()).encode();
        let mode = self.config.encryption;
        let known_plaintext = self
            .plaintext_only
            .lock()
            .expect("plaintext peers lock")
            .contains(&addr);
        if mode == Encryption::Require || (mode == Encryption::Prefer && !known_plaintext) {
            let carrier = transport::dial(&self.dialer, addr, CONNECT_TIMEOUT, wanted).await?;
            let tried = mse::initiate(
                carrier,
                info_hash,
                Methods::RC4,
                ours.to_vec(),
                HANDSHAKE_TIMEOUT,
            )
            .await;
            match tried {
                Ok(encrypted) => return Ok(encrypted),
                Err(source) if mode == Encryption::Require => {
                    let refused = Error::EncryptionRefused { addr, source };
                    self.tell_refusal(&refused);
                    return Err(refused);
                }
                Err(e) => {
                    tracing::debug!(%addr, error = %e, "encrypted handshake refused; dialling in plaintext");
                    let mut known = self.plaintext_only.lock().expect("plaintext peers lock");
                    if known.len() < MAX_PLAINTEXT_PEERS {
                        known.insert(addr);
                    }
                }
            }
        }
        let mut carrier = transport::dial(&self.dialer, addr, CONNECT_TIMEOUT, wanted).await?;
        tokio::time::timeout(HANDSHAKE_TIMEOUT, carrier.write_all(&ours))
            .await
            .map_err(|_| {
                std::io::Error::new(std::io::ErrorKind::TimedOut, "handshake timed out")
            })??;
        Ok(carrier)
    }

    /// An incoming connection's opening: a plaintext one as it is (unless
    /// encryption is required), an MSE one after its handshake, for
    /// whichever of our torrents (or magnets) req2 names: that info-hash
    /// comes with it, and the BitTorrent handshake must name the same.
    pub(crate) async fn open_incoming(
        &self,
        mut carrier: Transport,
    ) -> Result<(Transport, Option<[u8; 20]>)> {
        let addr = carrier.remote_addr();
        let opening = tokio::time::timeout(HANDSHAKE_TIMEOUT, mse::opening(&mut carrier))
            .await
            .map_err(|_| Error::Mse {
                addr,
                source: mse::HandshakeError::TimedOut(HANDSHAKE_TIMEOUT),
            })?
            .map_err(|source| Error::Mse { addr, source })?;
        let mode = self.config.encryption;
        match opening {
            // QUIC is TLS already: `require` asks for an encrypted carrier.
            Opening::Plaintext
                if mode == Encryption::Require
                    && carrier.kind() != transport::TransportKind::Quic =>
            {
                Err(Error::PlaintextRefused(addr))
            }
            Opening::Plaintext => Ok((carrier, None)),
            Opening::Obfuscated => {
                let skeys = skeys_from(&self.info_hashes());
                let (encrypted, info_hash) = mse::respond(
                    carrier,
                    skeys,
                    mode.responder(),
                    &self.dh_budget,
                    HANDSHAKE_TIMEOUT,
                )
                .await
                .map_err(|source| Error::Mse { addr, source })?;
                Ok((encrypted, Some(info_hash)))
            }
        }
    }

    /// Every torrent's info-hash, metadata or not: what an MSE peer may ask for.
    fn info_hashes(&self) -> Vec<[u8; 20]> {
        let mut all: Vec<[u8; 20]> = self
            .magnets
            .lock()
            .expect("magnets lock")
            .keys()
            .copied()
            .collect();
        all.extend(self.torrents.lock().expect("torrents lock").keys().copied());
        all
    }

    /// The first peer refused for want of encryption is worth a warning
    /// (the user asked for `require` and may wonder why peers are few);
    /// the rest go to the debug log.
    fn tell_refusal(&self, refused: &Error) {
        if self.told_refusal.swap(true, Ordering::Relaxed) {
            tracing::debug!("{refused}");
        } else {
            tracing::warn!("{refused} (further such peers are logged at debug level)");
        }
    }
}
