//! A subscriber's side: post a signed report to the publisher.

use std::time::Duration;

use anyhow::{bail, Context, Result};
use capwise_channel::url::Url;

/// How long one report may take, connection included.
const TIMEOUT: Duration = Duration::from_secs(15);

/// Posts the signed `report` bytes to `url` (the manifest's `report`, on
/// the manifest's host, already checked by `verify`); the publisher's
/// answer text is in the error when it refuses. No redirects: the report
/// goes where the signed manifest said.
/// The connection is bound to `interface` when given (the agent's `[net]
/// interface`).
pub async fn send(url: &Url, report: Vec<u8>, interface: Option<&str>) -> Result<()> {
    let mut builder = reqwest::Client::builder();
    if let Some(name) = interface {
        builder = builder.interface(name);
    }
    let client = builder
        .timeout(TIMEOUT)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .context("cannot make an HTTP client")?;
    let response = client
        .post(url.as_str())
        .header("content-type", "application/json")
        .body(report)
        .send()
        .await
        .with_context(|| format!("cannot reach {url}"))?;
    let status = response.status();
    if !status.is_success() {
        let text = response.text().await.unwrap_or_default();
        bail!("{url} answered {status}: {}", text.trim());
    }
    Ok(())
}
