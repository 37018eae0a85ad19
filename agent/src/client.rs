//! The CLI's side of the local API: finds the agent through the state
//! directory and turns API errors into messages.

use std::path::Path;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::api_types::ApiError;
use crate::discovery::find_agent;

/// How long one API call may take; adding a torrent opens its files.
const CALL_TIMEOUT: Duration = Duration::from_secs(60);

/// A connection to the running agent.
pub struct AgentClient {
    base: String,
    token: String,
    http: reqwest::Client,
}

impl AgentClient {
    /// Finds the agent of `state_dir`, or says how to start one.
    pub fn connect(state_dir: &Path) -> Result<AgentClient> {
        let (file, token) = find_agent(state_dir)?;
        let http = reqwest::Client::builder()
            .timeout(CALL_TIMEOUT)
            .no_proxy()
            .build()
            .context("cannot set up the HTTP client")?;
        Ok(AgentClient {
            base: file.api.trim_end_matches('/').to_string(),
            token,
            http,
        })
    }

    async fn send<T: DeserializeOwned>(&self, request: reqwest::RequestBuilder) -> Result<T> {
        let response = request
            .bearer_auth(&self.token)
            .send()
            .await
            .with_context(|| format!("cannot reach the agent at {}", self.base))?;
        let status = response.status();
        let bytes = response
            .bytes()
            .await
            .context("the agent's answer was cut off")?;
        if !status.is_success() {
            let message = serde_json::from_slice::<ApiError>(&bytes)
                .map(|e| e.error)
                .unwrap_or_else(|_| String::from_utf8_lossy(&bytes).into_owned());
            bail!("{message}");
        }
        // 204 No Content decodes as JSON null.
        let body: &[u8] = if bytes.is_empty() { b"null" } else { &bytes };
        serde_json::from_slice(body).context("the agent's answer is not the expected JSON")
    }

    /// `GET path` as a stream that stays open (server-sent events): no
    /// overall time-out, but one between reads, as the agent sends a
    /// keep-alive every 15 s.
    pub async fn stream(&self, path: &str) -> Result<reqwest::Response> {
        let http = reqwest::Client::builder()
            .no_proxy()
            .connect_timeout(Duration::from_secs(10))
            .read_timeout(Duration::from_secs(45))
            .build()
            .context("cannot set up the HTTP client")?;
        let response = http
            .get(format!("{}{path}", self.base))
            .bearer_auth(&self.token)
            .send()
            .await
            .with_context(|| format!("cannot reach the agent at {}", self.base))?;
        let status = response.status();
        if !status.is_success() {
            let bytes = response.bytes().await.unwrap_or_default();
            let message = serde_json::from_slice::<ApiError>(&bytes)
                .map(|e| e.error)
                .unwrap_or_else(|_| String::from_utf8_lossy(&bytes).into_owned());
            bail!("{message}");
        }
        Ok(response)
    }

    /// `GET path`.
    pub async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T> {
        self.send(self.http.get(format!("{}{path}", self.base)))
            .await
    }

    /// `POST path` with a JSON body.
    pub async fn post<B: Serialize, T: DeserializeOwned>(&self, path: &str, body: &B) -> Result<T> {
        self.send(self.http.post(format!("{}{path}", self.base)).json(body))
            .await
    }

    /// `POST path` with a JSON body, waiting up to `timeout` for the
    /// answer (a move across disks takes as long as the copy).
    pub async fn post_waiting<B: Serialize, T: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
        timeout: Duration,
    ) -> Result<T> {
        self.send(
            self.http
                .post(format!("{}{path}", self.base))
                .json(body)
                .timeout(timeout),
        )
        .await
    }

    /// `PUT path` with a JSON body.
    pub async fn put<B: Serialize, T: DeserializeOwned>(&self, path: &str, body: &B) -> Result<T> {
        self.send(self.http.put(format!("{}{path}", self.base)).json(body))
            .await
    }

    /// `DELETE path`.
    pub async fn delete(&self, path: &str) -> Result<()> {
        self.send::<serde_json::Value>(self.http.delete(format!("{}{path}", self.base)))
            .await
            .map(drop)
    }
}
