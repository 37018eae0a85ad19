//! `capwise add https://…/x.torrent`: the CLI fetches the .torrent and
//! sends its bytes, as for a file. The CLI fetches rather than the agent so
//! that the API never makes the service reach an address its caller
//! chooses (the agent may run as a system service that sees networks the
//! caller does not), the user's proxy settings apply, and the add endpoint
//! stays one shape for files, URLs and the dashboard.
//!
//! Bounds: at most [`MAX_TORRENT_BYTES`] (the subscriptions' bounded GET,
//! which this reuses, checks `Content-Length` and then the bytes read),
//! [`MAX_REDIRECTS`] redirects, a connect and a whole-request time-out;
//! the body must parse as a torrent.

use std::time::Duration;

use anyhow::{bail, Result};
use capwise_engine::metainfo::Metainfo;

use crate::subscriptions::fetch;

/// The largest .torrent accepted: a torrent of 100,000 files or of a
/// terabyte in 1 MiB pieces is well below it.
pub const MAX_TORRENT_BYTES: usize = 10 << 20;
/// Redirects followed (a download page's short link, then a CDN), no more.
pub const MAX_REDIRECTS: usize = 5;
/// Time to set up a connection (TCP and TLS).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Time for the whole request, redirects and body included.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// Whether `source` is an http(s) link rather than a file's path.
pub fn is_url(source: &str) -> bool {
    let lower = source.get(..8).unwrap_or(source).to_ascii_lowercase();
    lower.starts_with("http://") || lower.starts_with("https://")
}

fn client() -> Result<reqwest::Client> {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::limited(MAX_REDIRECTS))
        .connect_timeout(CONNECT_TIMEOUT)
        .timeout(REQUEST_TIMEOUT)
        .user_agent(concat!("capwise/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| anyhow::anyhow!("cannot set up the HTTP client: {e}"))
}

/// The .torrent at `url`, checked: it parses as a torrent.
pub async fn fetch_torrent(url: &str) -> Result<Vec<u8>> {
    let parsed = reqwest::Url::parse(url).map_err(|e| anyhow::anyhow!("{url}: {e}"))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        bail!("{url}: only http and https links can be added");
    }
    let bytes = match fetch::get(&client()?, url, None, MAX_TORRENT_BYTES).await {
        Ok(fetch::Fetched::Body(bytes, _)) => bytes,
        Ok(fetch::Fetched::NotModified) => bail!("{url}: the server answered 304 unasked"),
        Err(e) => bail!("cannot fetch {url}: {e}"),
    };
    if let Err(e) = Metainfo::from_bytes(&bytes) {
        bail!(
            "{url} is not a .torrent ({} bytes{}): {e}",
            bytes.len(),
            looks_like(&bytes)
        );
    }
    Ok(bytes)
}

/// ", starting `<!DOCTYPE html>`" when the body is text (a login or error
/// page is the usual reason a link does not give a torrent).
fn looks_like(bytes: &[u8]) -> String {
    let head = &bytes[..bytes.len().min(40)];
    // A character cut at the 40th byte is dropped; any other invalid byte
    // makes it binary.
    let text = match std::str::from_utf8(head) {
        Ok(text) => text,
        Err(e) if e.error_len().is_none() => {
            std::str::from_utf8(&head[..e.valid_up_to()]).expect("valid up to there")
        }
        Err(_) => return String::new(),
    };
    let text = text.replace(char::is_whitespace, " ");
    if text.trim().is_empty() || text.contains(char::is_control) {
        return String::new();
    }
    format!(", starting `{}`", text.trim())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_http_and_https_are_urls() {
        assert!(is_url("https://example.org/a.torrent"));
        assert!(is_url("HTTP://example.org/a.torrent"));
        assert!(!is_url("a.torrent"));
        assert!(!is_url("magnet:?xt=urn:btih:00"));
        assert!(!is_url("http"));
        assert!(!is_url("ftp://example.org/a.torrent"));
    }

    #[test]
    fn a_text_body_is_quoted_and_a_binary_one_is_not() {
        assert_eq!(
            looks_like(b"<!DOCTYPE html>\n<html>"),
            ", starting `<!DOCTYPE html> <html>`"
        );
        assert_eq!(looks_like(&[0xff, 0x00, 0x13]), "");
        assert_eq!(looks_like(b"d8:announce\x00"), "");
        // A multi-byte character cut at the 40th byte is dropped, not a reason to say nothing.
        let long = format!("{}é", "x".repeat(39));
        assert_eq!(
            looks_like(long.as_bytes()),
            format!(", starting `{}`", "x".repeat(39))
        );
    }
}
