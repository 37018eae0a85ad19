//! The dashboard in the browser (docs/api.md, "Dashboard"): the page and
//! its assets (in the binary), the one-time sign-in URL and its session
//! cookie, the live feed (`GET /v1/events`), and the few endpoints the page
//! needs beyond the CLI's (`/v1/networks`, `/v1/usage`). Served on the
//! API's listener, behind the API's Host and Origin checks.

pub(crate) mod command;
mod data;
pub(crate) mod events;
pub(crate) mod password;
pub(crate) mod sessions;
pub(crate) mod sse;

use std::sync::Arc;
use std::time::Instant;

use axum::extract::{FromRequest, RawQuery, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Extension, Json, Router};

use crate::daemon::api::ApiState;
use sessions::SignIn;

/// The dashboard's share of the API's state.
pub struct Dashboard {
    /// Tickets and sessions (one store for every listener, so that
    /// `capwise dashboard --revoke-all` signs every browser out).
    pub signin: Arc<SignIn>,
    /// The session cookie's name: it carries the port, because cookies are
    /// not isolated by port and two agents on one machine must not clobber
    /// each other's.
    pub cookie: String,
    /// The API listens on loopback only: one-time URLs are issued only then
    /// (beyond loopback the cookie would cross the network in clear).
    pub loopback: bool,
    /// Event streams open now (at most [`events::MAX_STREAMS`]).
    pub streams: std::sync::atomic::AtomicUsize,
    /// On the remote (HTTPS) listener: the password sign-in. Its cookie
    /// is `Secure`; one-time URLs are not taken there.
    pub password: Option<Arc<password::PasswordGate>>,
}

impl Dashboard {
    /// The dashboard of an API bound at `addr`.
    pub fn new(addr: std::net::SocketAddr) -> Dashboard {
        Dashboard {
            signin: Arc::new(SignIn::default()),
            cookie: format!("capwise_session_{}", addr.port()),
            loopback: addr.ip().is_loopback(),
            streams: Default::default(),
            password: None,
        }
    }

    /// The dashboard of the remote listener bound at `addr`: sessions in
    /// `signin` (the loopback dashboard's), opened with the password.
    pub fn remote(
        addr: std::net::SocketAddr,
        signin: Arc<SignIn>,
        password: Arc<password::PasswordGate>,
    ) -> Dashboard {
        Dashboard {
            signin,
            cookie: format!("capwise_session_{}", addr.port()),
            loopback: false,
            streams: Default::default(),
            password: Some(password),
        }
    }

    /// The attributes of the session cookie: `Secure` over HTTPS.
    fn cookie_attributes(&self) -> &'static str {
        if self.password.is_some() {
            "HttpOnly; Secure; SameSite=Strict; Path=/"
        } else {
            "HttpOnly; SameSite=Strict; Path=/"
        }
    }

    /// How to sign in again, for a refusal.
    fn sign_in_hint(&self) -> &'static str {
        if self.password.is_some() {
            "sign in again with the dashboard's password"
        } else {
            "run `capwise dashboard` to sign in again"
        }
    }

    /// The session secret the request's cookie carries, if any.
    fn session_of<'a>(&self, headers: &'a HeaderMap) -> Option<&'a str> {
        headers
            .get_all(header::COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .find_map(|v| cookie_value(v, &self.cookie))
    }

    /// Whether the request carries an open session.
    fn has_session(&self, headers: &HeaderMap) -> bool {
        self.session_of(headers)
            .is_some_and(|s| self.signin.is_open(s, Instant::now()))
    }
}

/// Who a request that passed the guard comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Caller {
    /// It carried the API token (the CLI, a script).
    Token,
    /// It carried a dashboard session (a browser).
    Session(String),
}

/// The value of cookie `name` in a `Cookie` header.
fn cookie_value<'a>(header: &'a str, name: &str) -> Option<&'a str> {
    header.split(';').find_map(|pair| {
        let (k, v) = pair.trim().split_once('=')?;
        (k == name).then_some(v.trim())
    })
}

/// Paths served without a token or session: the page (which, without a
/// session, is only the sign-in hint), its static assets, and the sign-in
/// URL itself. None of them carries data.
pub fn is_public(path: &str) -> bool {
    matches!(path, "/" | "/signin") || path.starts_with("/assets/")
}

/// Why a request without the API token is refused, or `Ok` with its
/// session. A request that changes anything also needs an `Origin` (the
/// API's guard has already checked that any `Origin` is its own): a
/// browser sends one with every same-origin POST, PUT and DELETE.
pub fn session_caller(
    dashboard: &Dashboard,
    method: &Method,
    headers: &HeaderMap,
) -> Result<Caller, (StatusCode, String)> {
    let Some(session) = dashboard.session_of(headers) else {
        return Err((
            StatusCode::UNAUTHORIZED,
            "missing API token (Authorization: Bearer <contents of api-token>)".into(),
        ));
    };
    if !dashboard.signin.is_open(session, Instant::now()) {
        return Err((
            StatusCode::UNAUTHORIZED,
            format!(
                "the dashboard session has expired or was revoked; {}",
                dashboard.sign_in_hint()
            ),
        ));
    }
    let safe = matches!(*method, Method::GET | Method::HEAD);
    if !safe && !headers.contains_key(header::ORIGIN) {
        return Err((
            StatusCode::FORBIDDEN,
            "a change through a dashboard session must be a same-origin request (no Origin header)"
                .into(),
        ));
    }
    Ok(Caller::Session(session.to_string()))
}

/// Adds the dashboard's routes to the API's router (before its guard).
pub fn routes(router: Router<Arc<ApiState>>) -> Router<Arc<ApiState>> {
    router
        .route("/", get(page))
        .route("/assets/app.js", get(app_js))
        .route("/assets/app.css", get(app_css))
        .route("/signin", get(signin).post(password_signin))
        .route("/v1/dashboard/signin", post(issue))
        .route("/v1/dashboard/signout", post(signout))
        .route("/v1/dashboard/revoke", post(revoke))
        .route("/v1/events", get(events::events))
        .route("/v1/networks", get(data::networks))
        .route("/v1/networks/{id}", put(data::set_network))
        .route("/v1/usage", get(data::usage))
        .route("/v1/history", get(data::history))
}

const APP_HTML: &str = include_str!("assets/app.html");
const HINT_HTML: &str = include_str!("assets/hint.html");
const USED_HTML: &str = include_str!("assets/used.html");
const PASSWORD_HTML: &str = include_str!("assets/password.html");
const APP_JS: &str = include_str!("assets/app.js");
const APP_CSS: &str = include_str!("assets/app.css");

/// What every dashboard response says to the browser: nothing cached,
/// nothing framed, no script or style from anywhere else, no Referer
/// (the sign-in URL must not leak through one).
fn hardened(mut response: Response) -> Response {
    let h = response.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
             connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
    );
    response
}

fn html(status: StatusCode, body: &'static str) -> Response {
    hardened(
        (
            status,
            [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
            body,
        )
            .into_response(),
    )
}

/// `GET /`: the dashboard with a session, else only the sign-in hint (on
/// the remote listener: the password form).
async fn page(State(s): State<Arc<ApiState>>, headers: HeaderMap) -> Response {
    if s.dashboard.has_session(&headers) {
        html(StatusCode::OK, APP_HTML)
    } else if s.dashboard.password.is_some() {
        password_page(StatusCode::OK, "")
    } else {
        html(StatusCode::OK, HINT_HTML)
    }
}

/// The password form, with a sentence above it (ours, never the client's
/// input, but escaped all the same).
fn password_page(status: StatusCode, message: &str) -> Response {
    let escaped = message
        .replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;");
    let body = PASSWORD_HTML.replace("<!-- message -->", &escaped);
    hardened(
        (
            status,
            [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
            body,
        )
            .into_response(),
    )
}

async fn app_js() -> Response {
    hardened(
        (
            [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
            APP_JS,
        )
            .into_response(),
    )
}

async fn app_css() -> Response {
    hardened(([(header::CONTENT_TYPE, "text/css; charset=utf-8")], APP_CSS).into_response())
}

/// The `ticket` parameter of a query string (a hex secret: nothing to decode).
fn ticket_of(query: &str) -> &str {
    query
        .split('&')
        .find_map(|pair| pair.strip_prefix("ticket="))
        .unwrap_or("")
}

/// `GET /signin?ticket=T`: uses the ticket up; a valid one sets the session
/// cookie and sends the browser to `/` (so the ticket leaves the address bar).
async fn signin(State(s): State<Arc<ApiState>>, RawQuery(query): RawQuery) -> Response {
    if s.dashboard.password.is_some() {
        // One-time URLs are for a browser on the agent's machine.
        return password_page(StatusCode::OK, "");
    }
    let ticket = ticket_of(query.as_deref().unwrap_or(""));
    let Some(session) = s.dashboard.signin.redeem(ticket, Instant::now()) else {
        return html(StatusCode::FORBIDDEN, USED_HTML);
    };
    tracing::info!("dashboard: a browser signed in");
    signed_in(&s.dashboard, &session)
}

/// The answer that sets the session cookie and sends the browser to `/`.
fn signed_in(dashboard: &Dashboard, session: &str) -> Response {
    let cookie = format!(
        "{}={session}; {}; Max-Age={}",
        dashboard.cookie,
        dashboard.cookie_attributes(),
        sessions::SESSION_LIFETIME.as_secs()
    );
    hardened(
        (
            StatusCode::SEE_OTHER,
            [(header::SET_COOKIE, cookie), (header::LOCATION, "/".into())],
        )
            .into_response(),
    )
}

/// The form of `POST /signin`.
#[derive(serde::Deserialize)]
struct PasswordForm {
    password: String,
}

/// `POST /signin` (`password=…`, form-encoded), on the remote listener
/// only: the right password opens a session; wrong ones are limited per
/// client address (429 with `Retry-After` once the allowance is spent).
async fn password_signin(State(s): State<Arc<ApiState>>, request: Request) -> Response {
    let Some(gate) = s.dashboard.password.clone() else {
        return api_error(
            StatusCode::NOT_FOUND,
            "password sign-in is only on the remote listener ([api] remote_listen); here, run `capwise dashboard`",
        );
    };
    let client = request
        .extensions()
        .get::<axum::extract::ConnectInfo<crate::daemon::remote::ClientAddr>>()
        .map(|c| c.0 .0.ip());
    let Some(client) = client else {
        return api_error(StatusCode::INTERNAL_SERVER_ERROR, "no client address");
    };
    let form = match axum::Form::<PasswordForm>::from_request(request, &()).await {
        Ok(axum::Form(f)) => f,
        Err(e) => {
            return password_page(
                StatusCode::BAD_REQUEST,
                &format!("The sign-in form did not arrive whole: {}", e.body_text()),
            )
        }
    };
    match gate.check(client, &form.password).await {
        Ok(()) => {
            let session = s.dashboard.signin.open_session(Instant::now());
            tracing::info!(%client, "dashboard: a browser signed in with the password");
            signed_in(&s.dashboard, &session)
        }
        Err(password::Refusal::Wrong) => {
            tracing::warn!(%client, "dashboard: a wrong password");
            password_page(StatusCode::UNAUTHORIZED, "Wrong password.")
        }
        Err(password::Refusal::TooMany(wait)) => {
            let secs = wait.as_secs_f64().ceil() as u64;
            let mut response = password_page(
                StatusCode::TOO_MANY_REQUESTS,
                &format!(
                    "Too many sign-in attempts from {client}: try again in {secs} s (each address gets {} tries, then one every {} s).",
                    password::BURST,
                    password::RETRY_EVERY.as_secs()
                ),
            );
            if let Ok(v) = HeaderValue::from_str(&secs.to_string()) {
                response.headers_mut().insert(header::RETRY_AFTER, v);
            }
            response
        }
        Err(password::Refusal::Unavailable(why)) => {
            tracing::error!(%why, "dashboard: password sign-in unavailable");
            password_page(
                StatusCode::SERVICE_UNAVAILABLE,
                &format!("Sign-in is not possible now: {why}."),
            )
        }
    }
}

fn api_error(status: StatusCode, message: impl Into<String>) -> Response {
    (
        status,
        Json(crate::api_types::ApiError {
            error: message.into(),
        }),
    )
        .into_response()
}

/// The refusal of a request that needs the API token.
fn token_only(caller: &Caller) -> Option<Response> {
    match caller {
        Caller::Token => None,
        Caller::Session(_) => Some(api_error(
            StatusCode::FORBIDDEN,
            "this needs the API token, not a dashboard session",
        )),
    }
}

/// `POST /v1/dashboard/signin` (token only): a one-time sign-in URL on the
/// address the caller used (its Host, which the guard has checked).
async fn issue(
    State(s): State<Arc<ApiState>>,
    Extension(caller): Extension<Caller>,
    request: Request,
) -> Response {
    if let Some(refusal) = token_only(&caller) {
        return refusal;
    }
    if !s.dashboard.loopback {
        return api_error(
            StatusCode::FORBIDDEN,
            "one-time sign-in URLs are for the loopback API only; beyond loopback the dashboard signs in with its password ([api] remote_listen)",
        );
    }
    let host = request
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or_default()
        .to_string();
    let ticket = s.dashboard.signin.issue_ticket(Instant::now());
    Json(serde_json::json!({
        "url": format!("http://{host}/signin?ticket={ticket}"),
        "expires_in_secs": sessions::TICKET_LIFETIME.as_secs(),
    }))
    .into_response()
}

/// `POST /v1/dashboard/revoke` (token only): signs every browser out and
/// voids unused sign-in URLs.
async fn revoke(State(s): State<Arc<ApiState>>, Extension(caller): Extension<Caller>) -> Response {
    if let Some(refusal) = token_only(&caller) {
        return refusal;
    }
    let closed = s.dashboard.signin.revoke_all(Instant::now());
    tracing::info!(sessions = closed, "dashboard: every session revoked");
    Json(serde_json::json!({ "revoked": closed })).into_response()
}

/// `POST /v1/dashboard/signout`: closes the caller's own session.
async fn signout(State(s): State<Arc<ApiState>>, Extension(caller): Extension<Caller>) -> Response {
    if let Caller::Session(session) = &caller {
        s.dashboard.signin.close(session);
    }
    let expired = format!(
        "{}=; {}; Max-Age=0",
        s.dashboard.cookie,
        s.dashboard.cookie_attributes()
    );
    (StatusCode::NO_CONTENT, [(header::SET_COOKIE, expired)]).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cookie_is_found_among_others() {
        assert_eq!(
            cookie_value("a=1; capwise_session_7=xyz; b=2", "capwise_session_7"),
            Some("xyz")
        );
        assert_eq!(
            cookie_value("capwise_session_70=xyz", "capwise_session_7"),
            None
        );
        assert_eq!(cookie_value("", "capwise_session_7"), None);
    }

    #[test]
    fn the_ticket_is_read_from_the_query() {
        assert_eq!(ticket_of("ticket=ab12"), "ab12");
        assert_eq!(ticket_of("x=1&ticket=ab12"), "ab12");
        assert_eq!(ticket_of("x=1"), "");
    }

    #[test]
    fn only_the_page_its_assets_and_the_signin_are_public() {
        assert!(is_public("/") && is_public("/signin") && is_public("/assets/app.js"));
        assert!(!is_public("/v1/torrents") && !is_public("/v1/events") && !is_public("/metrics"));
    }

    fn headers(pairs: &[(header::HeaderName, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(k.clone(), HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn a_session_reads_and_changes_only_same_origin() {
        let d = Dashboard::new("127.0.0.1:7245".parse().unwrap());
        let now = Instant::now();
        let session = d.signin.redeem(&d.signin.issue_ticket(now), now).unwrap();
        let cookie = format!("capwise_session_7245={session}");
        let get = headers(&[(header::COOKIE, &cookie)]);
        assert_eq!(
            session_caller(&d, &Method::GET, &get),
            Ok(Caller::Session(session.clone()))
        );
        let (status, _) = session_caller(&d, &Method::POST, &get).unwrap_err();
        assert_eq!(status, StatusCode::FORBIDDEN, "a POST without Origin");
        let post = headers(&[
            (header::COOKIE, &cookie),
            (header::ORIGIN, "http://127.0.0.1:7245"),
        ]);
        assert!(session_caller(&d, &Method::POST, &post).is_ok());
        let (status, _) = session_caller(&d, &Method::GET, &HeaderMap::new()).unwrap_err();
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        d.signin.revoke_all(now);
        let (status, message) = session_caller(&d, &Method::GET, &get).unwrap_err();
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        assert!(message.contains("capwise dashboard"));
    }
}
