//! The publisher's report endpoint: `POST /v1/reports` on the address of
//! `[channel] report_listen`, reachable from the branches (unlike the
//! local API, it carries no token: each report is signed by its machine's
//! agent key and names a channel this agent publishes, else it is refused).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result};
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::StatusCode;
use axum::routing::post;
use axum::Router;
use capwise_channel::report::{verify_report, MAX_REPORT_BYTES};
use tokio::net::TcpListener;

use super::store::DeliveryStore;

/// The path reports are posted to.
pub const REPORTS_PATH: &str = "/v1/reports";

struct Endpoint {
    store: DeliveryStore,
    state_dir: PathBuf,
}

/// Listens on `addr` until `shutdown` fires; reports go into the database
/// at `db_path`. Returns the bound address once listening.
pub async fn start(
    addr: SocketAddr,
    state_dir: PathBuf,
    db_path: &std::path::Path,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) -> Result<SocketAddr> {
    let store = DeliveryStore::open(db_path)?;
    let listener = TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen for delivery reports on {addr}"))?;
    let bound = listener.local_addr()?;
    let endpoint = Arc::new(Endpoint { store, state_dir });
    let app = Router::new()
        .route(REPORTS_PATH, post(receive))
        .layer(DefaultBodyLimit::max(MAX_REPORT_BYTES))
        .with_state(endpoint);
    tokio::spawn(async move {
        let stop = async move {
            let _ = shutdown.wait_for(|stop| *stop).await;
        };
        if let Err(e) = axum::serve(listener, app)
            .with_graceful_shutdown(stop)
            .await
        {
            tracing::warn!(error = %e, "the delivery report endpoint stopped");
        }
    });
    tracing::info!(%bound, "listening for delivery reports");
    Ok(bound)
}

async fn receive(State(endpoint): State<Arc<Endpoint>>, body: Bytes) -> (StatusCode, String) {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let report = match verify_report(&body, now) {
        Ok(report) => report,
        Err(e) => return (StatusCode::BAD_REQUEST, format!("report refused: {e}\n")),
    };
    if !crate::commands::channel::publishes(&endpoint.state_dir, &report.channel) {
        return (
            StatusCode::NOT_FOUND,
            format!(
                "report refused: channel {} is not published here\n",
                report.channel
            ),
        );
    }
    match endpoint.store.record(&report, now) {
        Ok(true) => {
            tracing::debug!(machine = %report.machine, site = %report.site, "delivery report kept");
            (StatusCode::OK, "kept\n".into())
        }
        Ok(false) => (StatusCode::OK, "a newer report is kept\n".into()),
        Err(e) => {
            tracing::warn!(error = %e, "cannot store a delivery report");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                "the report could not be stored\n".into(),
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use capwise_channel::report::{AgentKey, ItemHeld, Report};
    use capwise_channel::url::Url;

    fn report(channel: &str, agent: &AgentKey, at: u64) -> Report {
        Report {
            channel: channel.into(),
            agent: agent.public().to_hex(),
            machine: "branch-a-1".into(),
            site: "branch-a".into(),
            sequence: Some(2),
            at,
            items: vec![ItemHeld {
                info_hash: "ab".repeat(20),
                name: "image.iso".into(),
                have: 7,
                size: 9,
            }],
            problem: None,
        }
    }

    /// A report signed by a machine reaches the store; one for a channel
    /// not published here, a forged one and an older one change nothing.
    #[tokio::test]
    async fn reports_are_checked_before_they_are_kept() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().to_path_buf();
        std::fs::create_dir_all(state.join("channels")).unwrap();
        let channel =
            crate::commands::channel::new_key_file(&state.join("channels/images.key")).unwrap();
        let channel = channel.public().to_hex();
        let db = state.join(crate::state_db::DB_FILE);
        let (_stop, stopped) = tokio::sync::watch::channel(false);
        let bound = start("127.0.0.1:0".parse().unwrap(), state.clone(), &db, stopped)
            .await
            .unwrap();
        let url = Url::parse(&format!("http://{bound}{REPORTS_PATH}")).unwrap();
        std::fs::create_dir_all(state.join("machine")).unwrap();
        let machine = super::super::agent_key::load_or_create(&state.join("machine")).unwrap();
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs();

        let signed = report(&channel, &machine, now).sign(&machine).unwrap();
        super::super::send::send(&url, signed.clone(), None)
            .await
            .unwrap();

        let foreign = AgentKey::from_seed([5; 32]).public().to_hex();
        let error = super::super::send::send(
            &url,
            report(&foreign, &machine, now).sign(&machine).unwrap(),
            None,
        )
        .await
        .unwrap_err();
        assert!(
            format!("{error:#}").contains("not published here"),
            "{error:#}"
        );

        let mut forged = signed.clone();
        let last_hex = forged.iter().rposition(|b| b.is_ascii_hexdigit()).unwrap();
        forged[last_hex] = if forged[last_hex] == b'0' { b'1' } else { b'0' };
        assert!(super::super::send::send(&url, forged, None).await.is_err());

        let mut older = report(&channel, &machine, now - 60);
        older.items[0].have = 0;
        super::super::send::send(&url, older.sign(&machine).unwrap(), None)
            .await
            .unwrap();

        let kept = DeliveryStore::open(&db)
            .unwrap()
            .for_channel(&channel)
            .unwrap();
        assert_eq!(kept.len(), 1);
        assert_eq!(kept[0].report.items[0].have, 7);
        assert_eq!(kept[0].report.machine, "branch-a-1");
    }
}
