//! The local HTTP JSON API (docs/api.md). Every request must carry the
//! token; a request naming another Origin, or a Host that is not the API's
//! own address, is refused so that a web page cannot drive the agent (CSRF,
//! DNS rebinding).

use std::sync::Arc;

use axum::extract::{DefaultBodyLimit, FromRequest, FromRequestParts, Path, Query, Request, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use base64::Engine as _;
use serde::de::DeserializeOwned;

use super::torrents::{TorrentError, Torrents};
use crate::api_types::{
    AddRequest, AgentInfo, ApiError, Limits, RemoveQuery, SubscribeRequest, UnsubscribeQuery, Why,
};
use crate::subscriptions::{SubscriptionError, Subscriptions};

/// A .torrent of up to 16 MiB, base64-encoded, plus the JSON around it.
const MAX_BODY: usize = 24 << 20;

/// What the handlers share.
pub struct ApiState {
    /// The torrents.
    pub torrents: Arc<Torrents>,
    /// The bearer token.
    pub token: String,
    /// The Host and Origin values accepted (the API's own address spellings).
    pub names: super::own_names::OwnNames,
    /// Answers `GET /v1/agent`, `/v1/why` and `/v1/limits`.
    pub control: Arc<dyn AgentControl>,
    /// Channel subscriptions and their pollers.
    pub subscriptions: Arc<Subscriptions>,
    /// The dashboard's sign-in and event streams.
    pub dashboard: Arc<crate::dashboard::Dashboard>,
}

/// What the API asks of the agent beyond its torrents.
pub trait AgentControl: Send + Sync {
    /// The agent's description.
    fn info(&self) -> AgentInfo;
    /// The decision in force.
    fn why(&self) -> Why;
    /// Re-reads budgets, overrides and schedules; the decision then in force.
    fn reload_policy(&self) -> Why;
    /// The user's limits.
    fn limits(&self) -> Limits;
    /// Changes the fields given; 0 removes a limit.
    fn set_limits(&self, change: Limits) -> anyhow::Result<Limits>;
    /// Where torrents go when added without a directory.
    fn default_download_dir(&self) -> std::path::PathBuf;
}

/// The router, with the guard on every route.
pub fn router(state: Arc<ApiState>) -> Router {
    let api = Router::new()
        .route("/v1/agent", get(agent_info))
        .route("/v1/why", get(why))
        .route("/v1/policy/reload", post(reload_policy))
        .route("/v1/limits", get(limits).put(set_limits))
        .route("/v1/torrents", get(list).post(add))
        .route("/v1/torrents/{id}", get(one).delete(remove))
        .route("/v1/torrents/{id}/pause", post(pause))
        .route("/v1/torrents/{id}/resume", post(resume))
        .route("/v1/torrents/{id}/recheck", post(recheck))
        .route("/v1/torrents/{id}/queue", post(move_in_queue))
        .route("/v1/torrents/{id}/files", get(files).post(change_files))
        .route("/v1/torrents/{id}/limits", put(set_torrent_limits))
        .route("/v1/torrents/{id}/seeding", put(set_seed_goals))
        .route("/v1/torrents/{id}/peers", get(peers))
        .route("/v1/torrents/{id}/trackers", get(trackers))
        .route("/v1/torrents/{id}/move", post(move_torrent))
        .route(
            "/v1/subscriptions",
            get(subscriptions).post(subscribe).delete(unsubscribe),
        );
    crate::dashboard::routes(api)
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(middleware::from_fn_with_state(state.clone(), guard))
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .with_state(state)
}

fn error(status: StatusCode, message: impl Into<String>) -> Response {
    (
        status,
        Json(ApiError {
            error: message.into(),
        }),
    )
        .into_response()
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

async fn guard(State(state): State<Arc<ApiState>>, mut request: Request, next: Next) -> Response {
    if let Some(refusal) = refuse(&state, request.headers()) {
        return refusal;
    }
    // The dashboard's page and sign-in carry no data (docs/api.md).
    if !crate::dashboard::is_public(request.uri().path()) {
        match caller(&state, request.method(), request.headers()) {
            Ok(caller) => {
                request.extensions_mut().insert(caller);
            }
            Err((status, message)) => return error(status, message),
        }
    }
    next.run(request).await
}

/// Who may make this request: the API token's holder, or else a
/// dashboard session.
fn caller(
    state: &ApiState,
    method: &axum::http::Method,
    headers: &HeaderMap,
) -> Result<crate::dashboard::Caller, (StatusCode, String)> {
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|h| h.to_str().ok())
        .and_then(bearer_token);
    match token {
        Some(t) if same_secret(t.trim().as_bytes(), state.token.as_bytes()) => {
            Ok(crate::dashboard::Caller::Token)
        }
        Some(_) => Err((StatusCode::UNAUTHORIZED, "wrong API token".into())),
        None => crate::dashboard::session_caller(&state.dashboard, method, headers),
    }
}

/// The Host and Origin checks, on every request.
fn refuse(state: &ApiState, headers: &HeaderMap) -> Option<Response> {
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("");
    if !state.names.host_ok(host) {
        return Some(error(
            StatusCode::FORBIDDEN,
            format!("Host '{host}' is not this agent's address"),
        ));
    }
    if let Some(origin) = headers.get(header::ORIGIN) {
        let origin = origin.to_str().unwrap_or("");
        if !state.names.origin_ok(origin) {
            return Some(error(
                StatusCode::FORBIDDEN,
                format!("requests from Origin '{origin}' are refused"),
            ));
        }
    }
    None
}

/// The token of an `Authorization: Bearer TOKEN` header; the scheme is
/// case-insensitive (RFC 9110 11.1).
fn bearer_token(value: &str) -> Option<&str> {
    let (scheme, token) = value.trim_start().split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then_some(token)
}

impl IntoResponse for TorrentError {
    fn into_response(self) -> Response {
        let status = match &self {
            TorrentError::NotFound(_) => StatusCode::NOT_FOUND,
            TorrentError::Ambiguous(_) | TorrentError::Invalid(_) => StatusCode::BAD_REQUEST,
            TorrentError::Duplicate(_) | TorrentError::InUse(_) => StatusCode::CONFLICT,
            TorrentError::NoSpace(_) => StatusCode::INSUFFICIENT_STORAGE,
            TorrentError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        };
        error(status, self.to_string())
    }
}

impl IntoResponse for SubscriptionError {
    fn into_response(self) -> Response {
        let status = match &self {
            SubscriptionError::NotFound(_) => StatusCode::NOT_FOUND,
            SubscriptionError::Invalid(_) => StatusCode::BAD_REQUEST,
            SubscriptionError::Exists(_) => StatusCode::CONFLICT,
            SubscriptionError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        };
        error(status, self.to_string())
    }
}

/// A JSON body; one that does not parse is the API's JSON 400.
struct Body<T>(T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for Body<T> {
    type Rejection = Response;

    async fn from_request(request: Request, state: &S) -> Result<Self, Response> {
        Json::<T>::from_request(request, state)
            .await
            .map(|Json(v)| Body(v))
            .map_err(|e| bad_request("invalid request body", e.body_text()))
    }
}

/// The `{id}` of a path; one that does not decode (not UTF-8) is a JSON 400.
struct TorrentIdPath(String);

impl<S: Send + Sync> FromRequestParts<S> for TorrentIdPath {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Response> {
        Path::<String>::from_request_parts(parts, state)
            .await
            .map(|Path(id)| TorrentIdPath(id))
            .map_err(|e| bad_request("invalid torrent id in the path", e.body_text()))
    }
}

/// A query string; one that does not parse is a JSON 400.
struct ApiQuery<T>(T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Response> {
        Query::<T>::from_request_parts(parts, state)
            .await
            .map(|Query(v)| ApiQuery(v))
            .map_err(|e| bad_request("invalid query", e.body_text()))
    }
}

fn bad_request(what: &str, detail: String) -> Response {
    error(StatusCode::BAD_REQUEST, format!("{what}: {detail}"))
}

async fn not_found() -> Response {
    error(StatusCode::NOT_FOUND, "no such endpoint")
}

async fn method_not_allowed(request: Request) -> Response {
    error(
        StatusCode::METHOD_NOT_ALLOWED,
        format!(
            "{} is not allowed on {}",
            request.method(),
            request.uri().path()
        ),
    )
}

async fn agent_info(State(s): State<Arc<ApiState>>) -> Json<AgentInfo> {
    Json(s.control.info())
}

async fn why(State(s): State<Arc<ApiState>>) -> Json<Why> {
    Json(s.control.why())
}

/// The body of `POST /v1/policy/reload`: `{}` (or nothing).
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct ReloadRequest {}

async fn reload_policy(State(s): State<Arc<ApiState>>, body: axum::body::Bytes) -> Response {
    if !body.iter().all(u8::is_ascii_whitespace) {
        if let Err(e) = serde_json::from_slice::<ReloadRequest>(&body) {
            return error(
                StatusCode::BAD_REQUEST,
                format!("invalid request body: the body is {{}} or empty ({e})"),
            );
        }
    }
    let control = s.control.clone();
    // The reload reads SQLite; keep it off the async workers.
    match tokio::task::spawn_blocking(move || control.reload_policy()).await {
        Ok(why) => Json(why).into_response(),
        Err(_) => Json(s.control.why()).into_response(),
    }
}

async fn limits(State(s): State<Arc<ApiState>>) -> Json<Limits> {
    Json(s.control.limits())
}

/// A rate above what the API takes, as a 400 naming the field.
fn too_large(change: &Limits) -> Option<Response> {
    for (name, rate) in [("up", change.up), ("down", change.down)] {
        if rate.is_some_and(|r| r > crate::units::MAX_RATE) {
            return Some(error(
                StatusCode::BAD_REQUEST,
                format!(
                    "'{name}' is too large: at most {} B/s ({})",
                    crate::units::MAX_RATE,
                    crate::units::MAX_RATE_TEXT
                ),
            ));
        }
    }
    None
}

async fn set_limits(State(s): State<Arc<ApiState>>, Body(change): Body<Limits>) -> Response {
    if let Some(refusal) = too_large(&change) {
        return refusal;
    }
    match s.control.set_limits(change) {
        Ok(l) => Json(l).into_response(),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, format!("{e:#}")),
    }
}

async fn list(State(s): State<Arc<ApiState>>) -> Response {
    Json(s.torrents.list()).into_response()
}

async fn one(State(s): State<Arc<ApiState>>, TorrentIdPath(id): TorrentIdPath) -> Response {
    match s.torrents.get(&id) {
        Ok(v) => Json(v).into_response(),
        Err(e) => e.into_response(),
    }
}

async fn peers(State(s): State<Arc<ApiState>>, TorrentIdPath(id): TorrentIdPath) -> Response {
    match s.torrents.peers(&id) {
        Ok(v) => Json(v).into_response(),
        Err(e) => e.into_response(),
    }
}

/// Checks an add request and returns the .torrent bytes it carries, or a
/// magnet link's URI (the form the agent stores it in).
pub fn torrent_bytes(request: &AddRequest) -> Result<Vec<u8>, String> {
    match (&request.torrent, &request.magnet) {
        (Some(b64), None) => base64::engine::general_purpose::STANDARD
            .decode(b64.as_bytes())
            .map_err(|e| format!("'torrent' is not valid base64: {e}")),
        (None, Some(link)) => {
            // Checked here, stored as its URI; the metadata is fetched from peers.
            let magnet = capwise_engine::magnet::Magnet::parse(link)
                .map_err(|e| format!("invalid magnet link: {e}"))?;
            Ok(magnet.to_uri().into_bytes())
        }
        (Some(_), Some(_)) => Err("give either 'torrent' or 'magnet', not both".into()),
        (None, None) => Err("give 'torrent' (base64 .torrent bytes) or 'magnet'".into()),
    }
}

async fn add(State(s): State<Arc<ApiState>>, Body(request): Body<AddRequest>) -> Response {
    let bytes = match torrent_bytes(&request) {
        Ok(b) => b,
        Err(e) => return error(StatusCode::BAD_REQUEST, e),
    };
    let dir = request
        .download_dir
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| s.control.default_download_dir());
    let token = match request
        .member_token
        .as_deref()
        .map(crate::daemon::torrents::parse_token)
    {
        Some(Err(e)) => return e.into_response(),
        Some(Ok(token)) => Some(token),
        None => None,
    };
    let files = crate::daemon::torrents::FileSettings {
        only: request.only,
        exclude: request.exclude,
        priorities: Vec::new(),
        sequential: request.sequential,
    };
    let added = s
        .torrents
        .add_choosing(
            bytes,
            dir,
            (request.paused, request.background),
            files,
            token.as_ref(),
        )
        .await;
    match added {
        Ok(v) => (StatusCode::CREATED, Json(v)).into_response(),
        Err(e) => e.into_response(),
    }
}

/// Answers once the data is moved (or moved back after a failure).
async fn move_torrent(
    State(s): State<Arc<ApiState>>,
    TorrentIdPath(id): TorrentIdPath,
    Body(request): Body<crate::api_types::MoveRequest>,
) -> Response {
    let dir = std::path::PathBuf::from(request.dir);
    match s.torrents.relocate(&id, dir).await {
        Ok(v) => Json(v).into_response(),
        Err(e) => e.into_response(),
    }
}

async fn set_torrent_limits(
    State(s): State<Arc<ApiState>>,
    TorrentIdPath(id): TorrentIdPath,
    Body(change): Body<Limits>,
) -> Response {
    if let Some(refusal) = too_large(&change) {
        return refusal;
    }
    match s.torrents.set_limits(&id, change) {
        Ok(v) => Json(v).into_response(),
        Err(e) => e.into_response(),
    }
}

async fn set_seed_goals(
    State(s): State<Arc<ApiState>>,
    TorrentIdPath(id): TorrentIdPath,
    Body(change): Body<crate::api_types::SeedGoalsChange>,
) -> Response {
    match s.torrents.set_seed_goals(&id, &change) {
        Ok(v) => Json(v).into_response(),
        Err(e) => e.into_response(),
    }
}

async fn files(State(s): State<Arc<ApiState>>, TorrentIdPath(id): TorrentIdPath) -> Response {
    match s.torrents.files(&id) {
        Ok(v) => Json(v).into_response(),
        Err(e) => e.into_response(),
    }
}

async fn change_files(
    State(s): State<Arc<ApiState>>,
    TorrentIdPath(id): TorrentIdPath,
    Body(change): Body<crate::api_types::FilesChange>,
) -> Response {
    match s.torrents.change_files(&id, &change).await {
        Ok(v) => Json(v).into_response(),
        Err(e) => e.into_response(),
    }
}

async fn pause(State(s): State<Arc<ApiState>>, TorrentIdPath(id): TorrentIdPath) -> Response {
    match s.torrents.set_paused(&id, true).await {
        Ok(v) => Json(v).into_response(),
        Err(e) => e.into_response(),
    }
}

async fn resume(State(s): State<Arc<ApiState>>, TorrentIdPath(id): TorrentIdPath) -> Response {
    match s.torrents.set_paused(&id, false).await {
        Ok(v) => Json(v).into_response(),
        Err(e) => e.into_response(),
    }
}

async fn trackers(State(s): State<Arc<ApiState>>, TorrentIdPath(id): TorrentIdPath) -> Response {
    match s.torrents.trackers(&id) {
        Ok(v) => Json(v).into_response(),
        Err(e) => e.into_response(),
    }
}

async fn recheck(State(s): State<Arc<ApiState>>, TorrentIdPath(id): TorrentIdPath) -> Response {
    match s.torrents.recheck(&id).await {
        Ok(v) => Json(v).into_response(),
        Err(e) => e.into_response(),
    }
}

async fn move_in_queue(
    State(s): State<Arc<ApiState>>,
    TorrentIdPath(id): TorrentIdPath,
    Body(change): Body<crate::api_types::QueueChange>,
) -> Response {
    match s.torrents.move_in_queue(&id, change.to).await {
        Ok(v) => Json(v).into_response(),
        Err(e) => e.into_response(),
    }
}

async fn remove(
    State(s): State<Arc<ApiState>>,
    TorrentIdPath(id): TorrentIdPath,
    ApiQuery(q): ApiQuery<RemoveQuery>,
) -> Response {
    match s.torrents.remove(&id, q.delete_data).await {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(e) => e.into_response(),
    }
}

async fn subscriptions(State(s): State<Arc<ApiState>>) -> Response {
    match s.subscriptions.list() {
        Ok(v) => Json(v).into_response(),
        Err(e) => e.into_response(),
    }
}

async fn subscribe(
    State(s): State<Arc<ApiState>>,
    Body(request): Body<SubscribeRequest>,
) -> Response {
    match s.subscriptions.subscribe(&request) {
        Ok(v) => (StatusCode::CREATED, Json(v)).into_response(),
        Err(e) => e.into_response(),
    }
}

async fn unsubscribe(
    State(s): State<Arc<ApiState>>,
    ApiQuery(q): ApiQuery<UnsubscribeQuery>,
) -> Response {
    match s.subscriptions.unsubscribe(&q.url, q.delete_data).await {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(e) => e.into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_compare_by_content_and_length() {
        assert!(same_secret(b"abc", b"abc"));
        assert!(!same_secret(b"abd", b"abc"));
        assert!(!same_secret(b"ab", b"abc"));
        assert!(!same_secret(b"", b"abc"));
    }

    #[test]
    fn the_bearer_scheme_is_case_insensitive() {
        assert_eq!(bearer_token("Bearer abc"), Some("abc"));
        assert_eq!(bearer_token("bearer abc"), Some("abc"));
        assert_eq!(bearer_token("BEARER abc"), Some("abc"));
        assert_eq!(bearer_token("Basic abc"), None);
        assert_eq!(bearer_token("Bearerabc"), None);
    }

    #[test]
    fn add_requests_need_exactly_one_source() {
        let none = AddRequest::default();
        assert!(torrent_bytes(&none).unwrap_err().contains("give"));
        let bad = AddRequest {
            torrent: Some("!!".into()),
            ..AddRequest::default()
        };
        assert!(torrent_bytes(&bad).unwrap_err().contains("base64"));
        let magnet = AddRequest {
            magnet: Some("magnet:?xt=urn:btih:0123456789abcdef0123456789abcdef01234567".into()),
            ..AddRequest::default()
        };
        assert!(torrent_bytes(&magnet)
            .unwrap()
            .starts_with(b"magnet:?xt=urn:btih:0123"));
        let bad_magnet = AddRequest {
            magnet: Some("magnet:?xt=urn:btih:123".into()),
            ..AddRequest::default()
        };
        assert!(torrent_bytes(&bad_magnet)
            .unwrap_err()
            .contains("invalid magnet"));
    }
}
