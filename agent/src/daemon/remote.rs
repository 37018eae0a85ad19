//! The API and dashboard beyond loopback (`[api] remote_listen`): the same
//! routes as the loopback API, but only over TLS (rustls; the certificate
//! of [`super::tls`]) and with a password sign-in instead of the one-time
//! URL, so an administrator can reach a branch machine's dashboard. It does
//! not start without a password, and `[api] address` itself stays on
//! loopback: plain HTTP never leaves the machine.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch, Semaphore};
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;

use super::api::ApiState;
use super::own_names::OwnNames;
use super::tls;
use crate::config::Config;
use crate::dashboard::password::{self, PasswordGate};

/// A client that has not finished its TLS handshake by then is dropped.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Handshakes under way at once; further connections are closed at once.
const MAX_HANDSHAKES: usize = 64;

/// The client's address, for the password's per-address limit.
#[derive(Debug, Clone, Copy)]
pub struct ClientAddr(pub SocketAddr);

/// Refuses a configuration that would serve the API beyond loopback
/// without TLS and a password, before anything starts. Makes the
/// self-signed certificate if one is needed, so its fingerprint is known
/// from the first start.
pub fn preflight(config: &Config, state_dir: &Path) -> Result<()> {
    let address = config.api_address();
    if !address.ip().is_loopback() {
        bail!(
            "[api] address = \"{address}\" is beyond loopback, where the API would be plain HTTP: keep [api] address on loopback (the default is 127.0.0.1:{}) and set [api] remote_listen = \"{address}\" instead, which serves the dashboard over HTTPS with a password sign-in (set the password with `capwise api password`; [api] tls_cert and tls_key name a certificate, else a self-signed one is made)",
            crate::config::DEFAULT_API_PORT
        );
    }
    let Some(remote) = config.api.remote_listen else {
        if config.api.tls_cert.is_some() || config.api.tls_key.is_some() {
            tracing::warn!("[api] tls_cert and tls_key are used only with [api] remote_listen, which is not set");
        }
        return Ok(());
    };
    if password::stored(state_dir)?.is_none() {
        bail!(
            "[api] remote_listen = \"{remote}\" needs a password for the dashboard's sign-in, and none is set: run `capwise api password` (with --state-dir {}) on this machine, then start again",
            state_dir.display()
        );
    }
    tls::load_or_create(config, state_dir)?;
    Ok(())
}

/// Serves the API of `local` (its torrents, control, sessions) on
/// `address` over TLS until `stop` turns true.
pub async fn serve(
    address: SocketAddr,
    config: &Config,
    state_dir: &Path,
    local: &ApiState,
    metrics: Arc<crate::metrics::Metrics>,
    stop: watch::Receiver<bool>,
) -> Result<()> {
    let material = tls::load_or_create(config, state_dir)?;
    let acceptor = TlsAcceptor::from(material.server_config()?);
    let tcp = TcpListener::bind(address).await.with_context(|| {
        format!("cannot listen for the remote dashboard on {address} ([api] remote_listen)")
    })?;
    let bound = tcp.local_addr()?;
    let names = OwnNames::of(bound).with_names(&material.dns_names(), bound.port());
    let dashboard = crate::dashboard::Dashboard::remote(
        bound,
        local.dashboard.signin.clone(),
        Arc::new(PasswordGate::new(state_dir)),
    );
    let state = Arc::new(ApiState {
        torrents: local.torrents.clone(),
        token: local.token.clone(),
        names: names.clone(),
        control: local.control.clone(),
        subscriptions: local.subscriptions.clone(),
        dashboard: Arc::new(dashboard),
    });
    let metrics_token = crate::metrics::token::load_or_create(state_dir)?;
    let app = super::api::router(state)
        .merge(crate::metrics::http::api_routes(
            metrics,
            metrics_token,
            names,
        ))
        .into_make_service_with_connect_info::<ClientAddr>();
    let (incoming, listener) = mpsc::channel(16);
    tokio::spawn(accept_loop(tcp, acceptor, incoming, stop.clone()));
    let listener = TlsListener {
        incoming: listener,
        local: bound,
    };
    let mut stopped = stop;
    tokio::spawn(async move {
        let served = axum::serve(listener, app)
            .with_graceful_shutdown(async move {
                let _ = stopped.wait_for(|s| *s).await;
            })
            .await;
        if let Err(error) = served {
            tracing::error!(%error, "the remote dashboard stopped");
        }
    });
    tracing::info!(
        remote = %bound,
        certificate = %material.cert_path.display(),
        self_signed = material.self_signed,
        sha256 = %material.fingerprint(),
        "dashboard listening beyond loopback over HTTPS (password sign-in)"
    );
    Ok(())
}

/// Accepts TCP connections and shakes hands with each in a task of its
/// own (a slow client holds up no other), handing the finished ones over.
async fn accept_loop(
    tcp: TcpListener,
    acceptor: TlsAcceptor,
    finished: mpsc::Sender<(TlsStream<TcpStream>, SocketAddr)>,
    mut stop: watch::Receiver<bool>,
) {
    let handshakes = Arc::new(Semaphore::new(MAX_HANDSHAKES));
    loop {
        let (stream, peer) = tokio::select! {
            accepted = tcp.accept() => match accepted {
                Ok(a) => a,
                Err(error) => {
                    // Out of file descriptors, say: wait rather than spin.
                    tracing::debug!(%error, "remote dashboard: accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            // The guard wait_for returns is not Send: dropped inside.
            () = async { let _ = stop.wait_for(|s| *s).await; } => return,
        };
        let Ok(permit) = handshakes.clone().try_acquire_owned() else {
            continue;
        };
        let acceptor = acceptor.clone();
        let finished = finished.clone();
        tokio::spawn(async move {
            let _permit = permit;
            match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                Ok(Ok(tls)) => {
                    let _ = finished.send((tls, peer)).await;
                }
                Ok(Err(error)) => {
                    tracing::debug!(%peer, %error, "remote dashboard: TLS handshake failed")
                }
                Err(_) => tracing::debug!(%peer, "remote dashboard: TLS handshake timed out"),
            }
        });
    }
}

/// Connections whose TLS handshake is done, for `axum::serve`.
struct TlsListener {
    incoming: mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
    local: SocketAddr,
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.incoming.recv().await {
            Some(connection) => connection,
            // The accept loop stopped: so does serving, through the stop signal.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(self.local)
    }
}

impl axum::extract::connect_info::Connected<axum::serve::IncomingStream<'_, TlsListener>>
    for ClientAddr
{
    fn connect_info(stream: axum::serve::IncomingStream<'_, TlsListener>) -> Self {
        ClientAddr(*stream.remote_addr())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_plain_api_beyond_loopback_is_refused_naming_the_keys() {
        let dir = tempfile::tempdir().unwrap();
        let config = crate::config::parse("[api]\naddress = \"0.0.0.0:7245\"\n")
            .unwrap()
            .config;
        let e = format!("{:#}", preflight(&config, dir.path()).unwrap_err());
        assert!(
            e.contains("[api] remote_listen") && e.contains("capwise api password"),
            "{e}"
        );
        assert!(preflight(&Config::default(), dir.path()).is_ok());
    }

    #[test]
    fn the_remote_listener_needs_a_password() {
        let dir = tempfile::tempdir().unwrap();
        let config = crate::config::parse("[api]\nremote_listen = \"0.0.0.0:7246\"\n")
            .unwrap()
            .config;
        let e = format!("{:#}", preflight(&config, dir.path()).unwrap_err());
        assert!(
            e.contains("needs a password") && e.contains("capwise api password"),
            "{e}"
        );
        assert!(!dir.path().join(tls::SELF_SIGNED_CERT).exists());
        password::store(dir.path(), "a long enough password").unwrap();
        preflight(&config, dir.path()).unwrap();
        assert!(dir.path().join(tls::SELF_SIGNED_CERT).exists());
    }
}
