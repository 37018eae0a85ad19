//! `GET /metrics` over HTTP. On the API's listener it needs the read-only
//! metrics token as a Bearer token (the API's control token is refused:
//! a scraper's configuration should not hold the key to the agent); on the
//! optional `[metrics] listen` address it needs none, for a Prometheus on
//! the same machine. Both refuse a Host that is not their own address and a
//! foreign Origin, so a web page cannot read them through DNS rebinding (a
//! wildcard listener takes any IP literal with its port as its own Host:
//! rebinding needs a name).

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::{Context, Result};
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use tokio::net::TcpListener;
use tokio::sync::watch;

use super::Metrics;
use crate::daemon::own_names::OwnNames;

/// The OpenMetrics text format's media type.
pub const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

struct Served {
    metrics: Arc<Metrics>,
    guard: Guard,
}

/// Who may read.
struct Guard {
    /// `None` on the tokenless listener.
    token: Option<String>,
    /// The listener's own Host and Origin values.
    names: OwnNames,
}

/// The `/metrics` route for the API's listener, guarded by `token`; `names`
/// are the API's own. Merged beside the API's routes,
/// outside their guard (which wants the control token).
pub fn api_routes(metrics: Arc<Metrics>, token: String, names: OwnNames) -> Router {
    router(Served {
        metrics,
        guard: Guard {
            token: Some(token),
            names,
        },
    })
}

fn router(served: Served) -> Router {
    Router::new()
        .route("/metrics", get(scrape))
        .with_state(Arc::new(served))
}

/// Serves `/metrics` without a token on `addr` (`[metrics] listen`) until
/// `stop` turns true.
pub async fn serve_local(
    addr: SocketAddr,
    metrics: Arc<Metrics>,
    mut stop: watch::Receiver<bool>,
) -> Result<()> {
    if !addr.ip().is_loopback() {
        tracing::warn!(%addr, "metrics are served without a token beyond loopback, as configured");
    }
    let listener = TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen for metrics on {addr}"))?;
    let bound = listener.local_addr()?;
    let app = router(Served {
        metrics,
        guard: Guard {
            token: None,
            names: OwnNames::of(bound),
        },
    });
    tokio::spawn(async move {
        let served = axum::serve(listener, app)
            .with_graceful_shutdown(async move {
                let _ = stop.wait_for(|s| *s).await;
            })
            .await;
        if let Err(error) = served {
            tracing::error!(%error, "the metrics listener stopped");
        }
    });
    tracing::info!(metrics = %bound, "metrics listening (no token)");
    Ok(())
}

fn refusal(status: StatusCode, message: &str) -> Response {
    (status, format!("{message}\n")).into_response()
}

fn refuse(served: &Guard, headers: &HeaderMap) -> Option<Response> {
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("");
    if !served.names.host_ok(host) {
        return Some(refusal(
            StatusCode::FORBIDDEN,
            "this Host is not the agent's address",
        ));
    }
    if let Some(origin) = headers.get(header::ORIGIN) {
        if !served.names.origin_ok(origin.to_str().unwrap_or("")) {
            return Some(refusal(StatusCode::FORBIDDEN, "foreign Origin refused"));
        }
    }
    let expected = served.token.as_deref()?;
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|h| h.to_str().ok())
        .and_then(|v| v.trim_start().split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, token)| token.trim());
    match given {
        Some(t) if same_secret(t.as_bytes(), expected.as_bytes()) => None,
        Some(_) => Some(unauthorized("wrong metrics token")),
        None => Some(unauthorized(
            "missing metrics token (Authorization: Bearer <output of capwise metrics token>)",
        )),
    }
}

fn unauthorized(message: &str) -> Response {
    let mut r = refusal(StatusCode::UNAUTHORIZED, message);
    r.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static("Bearer realm=\"capwise metrics\""),
    );
    r
}

/// Compares without an early exit, so timing does not leak the token.
fn same_secret(given: &[u8], expected: &[u8]) -> bool {
    given.len() == expected.len()
        && given
            .iter()
            .zip(expected)
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
}

/// Whether the client asks for the older Prometheus text format: it
/// accepts `text/plain` and not OpenMetrics. Everything else (Prometheus
/// itself, curl's `*/*`) gets OpenMetrics.
fn wants_prometheus_text(headers: &HeaderMap) -> bool {
    let accept = headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect::<Vec<_>>()
        .join(",")
        .to_ascii_lowercase();
    accept.contains("text/plain") && !accept.contains("application/openmetrics-text")
}

async fn scrape(State(served): State<Arc<Served>>, request: Request) -> Response {
    if let Some(r) = refuse(&served.guard, request.headers()) {
        return r;
    }
    let text_format = wants_prometheus_text(request.headers());
    let metrics = served.metrics.clone();
    let Ok(snapshot) = tokio::task::spawn_blocking(move || metrics.snapshot()).await else {
        return refusal(StatusCode::INTERNAL_SERVER_ERROR, "metrics unavailable");
    };
    if text_format {
        (
            [(
                header::CONTENT_TYPE,
                prometheus_client::encoding::prometheus_text::CONTENT_TYPE,
            )],
            super::encode::prometheus_text(&snapshot),
        )
            .into_response()
    } else {
        (
            [(header::CONTENT_TYPE, OPENMETRICS)],
            super::encode::openmetrics(&snapshot),
        )
            .into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn accept(value: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::ACCEPT, HeaderValue::from_str(value).unwrap());
        h
    }

    fn served(bound: &str) -> Guard {
        Guard {
            token: None,
            names: OwnNames::of(bound.parse().unwrap()),
        }
    }

    fn host(value: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::HOST, HeaderValue::from_str(value).unwrap());
        h
    }

    #[test]
    fn hosts_are_our_names_or_on_a_wildcard_listener_ip_literals_with_our_port() {
        let loopback = served("127.0.0.1:9469");
        assert!(refuse(&loopback, &host("127.0.0.1:9469")).is_none());
        assert!(refuse(&loopback, &host("localhost:9469")).is_none());
        assert!(refuse(&loopback, &host("10.0.0.5:9469")).is_some());
        assert!(refuse(&loopback, &host("attacker.example:9469")).is_some());
        let wildcard = served("0.0.0.0:9469");
        assert!(refuse(&wildcard, &host("10.0.0.5:9469")).is_none());
        assert!(refuse(&wildcard, &host("[fd00::5]:9469")).is_none());
        assert!(refuse(&wildcard, &host("10.0.0.5:80")).is_some());
        assert!(refuse(&wildcard, &host("attacker.example:9469")).is_some());
    }

    #[test]
    fn openmetrics_unless_only_the_text_format_is_accepted() {
        assert!(!wants_prometheus_text(&HeaderMap::new()));
        assert!(!wants_prometheus_text(&accept("*/*")));
        assert!(!wants_prometheus_text(&accept(
            "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5"
        )));
        assert!(wants_prometheus_text(&accept("text/plain; version=0.0.4")));
    }
}
