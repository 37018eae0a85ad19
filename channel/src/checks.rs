//! The rules that keep a channel inside its own directory and host: a
//! subscriber fetches nothing a manifest points at elsewhere (no requests
//! to arbitrary internal hosts), and writes no file outside its directory.

use url::Url;

use crate::{ChannelError, Item};

/// Refuses a relative path that could leave the manifest's directory:
/// empty, absolute, with a backslash, `.` or `..` or an empty component,
/// a scheme or drive letter, a query, fragment or percent escape (which a
/// URL join would decode or drop), or a control character.
pub fn relative_path(item: &str, path: &str) -> Result<(), ChannelError> {
    let refuse = |reason| {
        Err(ChannelError::BadPath {
            item: item.to_owned(),
            path: path.to_owned(),
            reason,
        })
    };
    if path.is_empty() {
        return refuse("is empty");
    }
    if path.starts_with('/') {
        return refuse("is absolute");
    }
    if path.contains('\\') {
        return refuse("contains a backslash");
    }
    if path.chars().any(char::is_control) {
        return refuse("contains a control character");
    }
    if path.contains(['?', '#', '%']) {
        return refuse("contains '?', '#' or '%'");
    }
    if path.contains(':') {
        return refuse("contains ':' (a scheme or drive letter)");
    }
    for component in path.split('/') {
        match component {
            "" => return refuse("has an empty component"),
            "." | ".." => return refuse("contains '.' or '..'"),
            _ => {}
        }
    }
    Ok(())
}

/// Refuses an item name that is not one plain path component (it names the
/// file or directory the data lands in).
pub fn item_name(name: &str) -> Result<(), ChannelError> {
    relative_path(name, name)?;
    if name.contains('/') {
        return Err(ChannelError::BadPath {
            item: name.to_owned(),
            path: name.to_owned(),
            reason: "is not a single name (contains '/')",
        });
    }
    Ok(())
}

/// Parses an absolute URL a manifest may name: http or https, no user
/// name or password, on the manifest's host and port.
pub fn same_host_url(item: &str, text: &str, manifest_url: &Url) -> Result<Url, ChannelError> {
    checked_url(item, text, manifest_url, true)
}

/// The manifest's delivery-report URL: like [`same_host_url`], but on any
/// port of the manifest's host (the publisher's agent listens beside the
/// web server). The host is the bound that matters: no report goes to an
/// arbitrary internal machine, and what is posted is a signed report.
pub fn report_url(text: &str, manifest_url: &Url) -> Result<Url, ChannelError> {
    checked_url("delivery reports", text, manifest_url, false)
}

fn checked_url(
    item: &str,
    text: &str,
    manifest_url: &Url,
    same_port: bool,
) -> Result<Url, ChannelError> {
    let bad = |reason: &str| ChannelError::BadUrl {
        url: text.to_owned(),
        reason: reason.to_owned(),
    };
    let url = Url::parse(text).map_err(|e| bad(&e.to_string()))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(bad("only http and https are allowed"));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(bad("a user name or password in the URL is not allowed"));
    }
    let same = url.host_str().is_some()
        && url.host_str() == manifest_url.host_str()
        && (!same_port || url.port_or_known_default() == manifest_url.port_or_known_default());
    if !same {
        return Err(ChannelError::ForeignHost {
            item: item.to_owned(),
            url: text.to_owned(),
            expected: host_port(manifest_url),
        });
    }
    Ok(url)
}

/// Where to fetch `item`'s .torrent: its relative path under the
/// manifest's directory, or its own URL on the manifest's host.
pub fn torrent_url(item: &Item, manifest_url: &Url) -> Result<Url, ChannelError> {
    if item.torrent.contains("://") {
        return same_host_url(&item.name, &item.torrent, manifest_url);
    }
    relative_path(&item.name, &item.torrent)?;
    let url = manifest_url
        .join(&item.torrent)
        .map_err(|e| ChannelError::BadUrl {
            url: item.torrent.clone(),
            reason: e.to_string(),
        })?;
    // Belt and braces: the joined URL is still below the manifest's directory.
    let dir = manifest_url.join(".").map_err(|e| ChannelError::BadUrl {
        url: manifest_url.to_string(),
        reason: e.to_string(),
    })?;
    if !url.as_str().starts_with(dir.as_str()) {
        return Err(ChannelError::BadPath {
            item: item.name.clone(),
            path: item.torrent.clone(),
            reason: "leaves the manifest's directory",
        });
    }
    Ok(url)
}

fn host_port(url: &Url) -> String {
    match (url.host_str(), url.port()) {
        (Some(host), Some(port)) => format!("{host}:{port}"),
        (Some(host), None) => host.to_owned(),
        (None, _) => "no host".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_that_leave_the_directory_are_refused() {
        for good in ["a.torrent", "t/a.torrent", "v2/x y.torrent"] {
            assert!(relative_path("i", good).is_ok(), "{good}");
        }
        for bad in [
            "",
            "/etc/passwd",
            "../a.torrent",
            "t/../../a",
            "t\\a",
            "./a",
            "t//a",
            "t/",
            "c:a",
            "a%2e%2e",
            "a?x",
            "a#x",
            "a\nb",
        ] {
            assert!(
                matches!(relative_path("i", bad), Err(ChannelError::BadPath { .. })),
                "{bad:?}"
            );
        }
        assert!(item_name("data").is_ok());
        assert!(item_name("a/b").is_err());
        assert!(item_name("..").is_err());
    }

    #[test]
    fn urls_must_stay_on_the_manifest_host() {
        let base = Url::parse("https://hq.example/ch/manifest.json").unwrap();
        assert!(same_host_url("i", "https://hq.example/files/a", &base).is_ok());
        assert!(same_host_url("i", "https://HQ.example:443/files/a", &base).is_ok());
        for foreign in [
            "https://169.254.169.254/latest",
            "https://hq.example:8443/a",
            "https://hq.example.evil/a",
        ] {
            assert!(
                matches!(
                    same_host_url("i", foreign, &base),
                    Err(ChannelError::ForeignHost { .. })
                ),
                "{foreign}"
            );
        }
        for bad in ["file:///etc/passwd", "https://u:p@hq.example/a", "nonsense"] {
            assert!(
                matches!(
                    same_host_url("i", bad, &base),
                    Err(ChannelError::BadUrl { .. })
                ),
                "{bad}"
            );
        }
    }

    #[test]
    fn torrent_urls_resolve_below_the_manifest() {
        let base = Url::parse("http://127.0.0.1:8080/ch/manifest.json").unwrap();
        let item = |torrent: &str| Item {
            info_hash: "00".repeat(20),
            name: "a".into(),
            size: 1,
            torrent: torrent.into(),
            web_seeds: vec![],
        };
        assert_eq!(
            torrent_url(&item("t/a.torrent"), &base).unwrap().as_str(),
            "http://127.0.0.1:8080/ch/t/a.torrent"
        );
        assert!(torrent_url(&item("../a.torrent"), &base).is_err());
        assert!(torrent_url(&item("http://127.0.0.2:8080/a.torrent"), &base).is_err());
        assert!(torrent_url(&item("http://127.0.0.1:8080/other/a.torrent"), &base).is_ok());
    }

    #[test]
    fn a_report_url_may_use_another_port_of_the_manifest_host_only() {
        let manifest = Url::parse("http://hq.example:8080/ch/manifest.json").unwrap();
        assert!(report_url("http://hq.example:7979/v1/reports", &manifest).is_ok());
        assert!(report_url("http://10.0.0.1:7979/v1/reports", &manifest).is_err());
        assert!(report_url("ftp://hq.example/v1/reports", &manifest).is_err());
        assert!(report_url("http://u:p@hq.example:7979/v1/reports", &manifest).is_err());
        // Web seeds and .torrent URLs keep the port too.
        assert!(same_host_url("x", "http://hq.example:7979/ch/", &manifest).is_err());
    }
}
