//! The HTTP side of a subscription: the client, and one bounded GET
//! (conditional for the manifest). reqwest over rustls with the system's
//! CA store (the workspace's features, as the engine's trackers and web
//! seeds), so an HQ's internal CA works.
//!
//! Bounds: a connect time-out and a whole-request time-out; the size is
//! checked against `Content-Length` before the body is read, and again
//! while reading (a server may send no length, or lie). No redirects: the
//! manifest's URL is what relative paths resolve against and what the
//! same-host rule compares with, so a redirect would move both; the error
//! names where it pointed.

use std::time::Duration;

use reqwest::header::{ETAG, IF_MODIFIED_SINCE, IF_NONE_MATCH, LAST_MODIFIED, LOCATION};
use reqwest::StatusCode;

/// Time to set up a connection (TCP and TLS).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Time for a whole request, body included (a .torrent of 16 MiB at 1 MB/s).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// The client: no proxy from the environment (the host the manifest names
/// is the one asked), no redirects; each connection bound to `interface`
/// when given (the agent's `[net] interface`: a manifest or .torrent is not
/// fetched by another route while it is missing).
pub fn client(interface: Option<&str>) -> Result<reqwest::Client, String> {
    let mut builder = reqwest::Client::builder();
    if let Some(name) = interface {
        builder = builder.interface(name);
    }
    builder
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(CONNECT_TIMEOUT)
        .timeout(REQUEST_TIMEOUT)
        .user_agent(concat!("capwise/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| format!("cannot set up the HTTP client: {e}"))
}

/// The validators of a fetched body, for the next conditional request.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Validators {
    /// `ETag`.
    pub etag: Option<String>,
    /// `Last-Modified`.
    pub last_modified: Option<String>,
}

/// What a GET brought.
#[derive(Debug)]
pub enum Fetched {
    /// 304: what was accepted last is still current.
    NotModified,
    /// 200 with the body and its validators.
    Body(Vec<u8>, Validators),
}

/// GETs `url`, at most `max` bytes, conditionally when `since` is given.
/// The error is a sentence: "HTTP 404 Not Found", "more than N bytes", ...
pub async fn get(
    client: &reqwest::Client,
    url: &str,
    since: Option<&Validators>,
    max: usize,
) -> Result<Fetched, String> {
    let mut request = client.get(url);
    if let Some(v) = since {
        if let Some(etag) = &v.etag {
            request = request.header(IF_NONE_MATCH, etag);
        }
        if let Some(date) = &v.last_modified {
            request = request.header(IF_MODIFIED_SINCE, date);
        }
    }
    let mut response = request.send().await.map_err(|e| sentence(&e))?;
    let status = response.status();
    if status == StatusCode::NOT_MODIFIED && since.is_some() {
        return Ok(Fetched::NotModified);
    }
    if status.is_redirection() {
        let to = response
            .headers()
            .get(LOCATION)
            .and_then(|l| l.to_str().ok())
            .unwrap_or("nowhere");
        return Err(format!(
            "the server redirects (HTTP {}) to {to}; subscribe to the final URL instead",
            status.as_u16()
        ));
    }
    if status != StatusCode::OK {
        return Err(format!("the server answered HTTP {status}"));
    }
    if let Some(length) = response.content_length() {
        if length > max as u64 {
            return Err(format!(
                "the server announces {length} bytes, more than the limit of {max}"
            ));
        }
    }
    let header = |name| {
        response
            .headers()
            .get(name)
            .and_then(|v: &reqwest::header::HeaderValue| v.to_str().ok())
            .map(str::to_owned)
    };
    let validators = Validators {
        etag: header(ETAG),
        last_modified: header(LAST_MODIFIED),
    };
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(|e| sentence(&e))? {
        if body.len() + chunk.len() > max {
            return Err(format!("the body is more than the limit of {max} bytes"));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(Fetched::Body(body, validators))
}

/// A reqwest error as a sentence with its cause (reqwest's own text is
/// "error sending request" without it).
fn sentence(error: &reqwest::Error) -> String {
    let what = if error.is_timeout() {
        "timed out"
    } else if error.is_connect() {
        "cannot connect"
    } else {
        "the request failed"
    };
    let mut text = what.to_owned();
    let mut cause = std::error::Error::source(error);
    while let Some(c) = cause {
        text.push_str(": ");
        text.push_str(&c.to_string());
        cause = c.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// Serves one connection on loopback with `response`; returns the URL
    /// and the request it received.
    async fn serve_once(response: Vec<u8>) -> (String, tokio::task::JoinHandle<String>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/ch/manifest.json", listener.local_addr().unwrap());
        let task = tokio::spawn(async move {
            let (mut stream, _) = listener.accept().await.unwrap();
            let mut request = vec![0u8; 4096];
            let n = stream.read(&mut request).await.unwrap_or(0);
            let _ = stream.write_all(&response).await;
            let _ = stream.shutdown().await;
            String::from_utf8_lossy(&request[..n]).into_owned()
        });
        (url, task)
    }

    #[tokio::test]
    async fn a_body_larger_than_the_bound_is_refused_with_or_without_a_length() {
        let client = client(None).unwrap();
        let announced =
            b"HTTP/1.1 200 OK\r\nContent-Length: 2000000\r\nConnection: close\r\n\r\nxx".to_vec();
        let (url, _server) = serve_once(announced).await;
        let e = get(&client, &url, None, 1000).await.unwrap_err();
        assert!(e.contains("announces 2000000 bytes"), "{e}");
        // No length: cut off while reading.
        let mut unannounced = b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n".to_vec();
        unannounced.extend(std::iter::repeat_n(b'x', 5000));
        let (url, _server) = serve_once(unannounced).await;
        let e = get(&client, &url, None, 1000).await.unwrap_err();
        assert!(e.contains("more than the limit of 1000"), "{e}");
    }

    #[tokio::test]
    async fn validators_are_sent_and_a_304_is_not_modified() {
        let client = client(None).unwrap();
        let (url, server) =
            serve_once(b"HTTP/1.1 304 Not Modified\r\nConnection: close\r\n\r\n".to_vec()).await;
        let since = Validators {
            etag: Some("\"abc\"".into()),
            last_modified: Some("Wed, 02 Dec 2026 20:00:00 GMT".into()),
        };
        let got = get(&client, &url, Some(&since), 1000).await.unwrap();
        assert!(matches!(got, Fetched::NotModified));
        let request = server.await.unwrap().to_ascii_lowercase();
        assert!(request.contains("if-none-match: \"abc\""), "{request}");
        assert!(
            request.contains("if-modified-since: wed, 02 dec 2026"),
            "{request}"
        );
        // A 200 brings the body and its validators.
        let ok =
            b"HTTP/1.1 200 OK\r\nETag: \"e2\"\r\nContent-Length: 2\r\nConnection: close\r\n\r\nhi"
                .to_vec();
        let (url, _server) = serve_once(ok).await;
        match get(&client, &url, None, 1000).await.unwrap() {
            Fetched::Body(body, v) => {
                assert_eq!(body, b"hi");
                assert_eq!(v.etag.as_deref(), Some("\"e2\""));
            }
            Fetched::NotModified => panic!("a 200 is not a 304"),
        }
    }

    #[tokio::test]
    async fn redirects_and_errors_are_not_followed() {
        let client = client(None).unwrap();
        let redirect = b"HTTP/1.1 302 Found\r\nLocation: http://169.254.169.254/x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".to_vec();
        let (url, _server) = serve_once(redirect).await;
        let e = get(&client, &url, None, 1000).await.unwrap_err();
        assert!(
            e.contains("redirects") && e.contains("169.254.169.254"),
            "{e}"
        );
        let missing =
            b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".to_vec();
        let (url, _server) = serve_once(missing).await;
        let e = get(&client, &url, None, 1000).await.unwrap_err();
        assert!(e.contains("404"), "{e}");
    }
}
