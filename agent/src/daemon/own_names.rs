//! The `Host` and `Origin` values a listener of the agent accepts (the API's
//! and `[metrics] listen`'s): its own address spellings, so that a web page
//! reached through DNS rebinding (a name of the attacker's pointing at
//! 127.0.0.1) is refused.

use std::net::SocketAddr;

/// The names a listener bound at one address answers to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OwnNames {
    /// `Host` values accepted, exactly (case-insensitive).
    hosts: Vec<String>,
    /// Bound to every address (`0.0.0.0:PORT`, `[::]:PORT`): any IP literal
    /// with this port is a Host of ours too (DNS rebinding needs a name,
    /// never a literal). Without this every request to a wildcard listener
    /// was refused, since no client sends `Host: 0.0.0.0:PORT`.
    any_ip_port: Option<u16>,
}

impl OwnNames {
    /// The names of a listener bound at `addr` (its bound address, after a
    /// port 0 was given a real one).
    pub fn of(addr: SocketAddr) -> OwnNames {
        let port = addr.port();
        let mut hosts = vec![addr.to_string()];
        if addr.ip().is_loopback() {
            hosts.push(format!("localhost:{port}"));
            hosts.push(format!("127.0.0.1:{port}"));
            hosts.push(format!("[::1]:{port}"));
        }
        hosts.sort();
        hosts.dedup();
        OwnNames {
            hosts,
            any_ip_port: addr.ip().is_unspecified().then_some(port),
        }
    }

    /// Also answers to `names` with `port`: the DNS names of the remote
    /// listener's certificate (a browser reaching it by such a name has
    /// checked the certificate for it, so no rebinding page gets that far).
    /// Wildcard names are left out.
    pub fn with_names(mut self, names: &[String], port: u16) -> OwnNames {
        self.hosts.extend(
            names
                .iter()
                .filter(|n| !n.starts_with('*'))
                .map(|n| format!("{n}:{port}")),
        );
        self.hosts.sort();
        self.hosts.dedup();
        self
    }

    /// Whether a `Host` header value names this listener.
    pub fn host_ok(&self, host: &str) -> bool {
        // Host names are case-insensitive (RFC 9110 4.2.3).
        self.hosts.iter().any(|h| h.eq_ignore_ascii_case(host))
            || self
                .any_ip_port
                .is_some_and(|port| host.parse::<SocketAddr>().is_ok_and(|a| a.port() == port))
    }

    /// Whether an `Origin` header value is this listener's own (a page it
    /// served), over http or https.
    pub fn origin_ok(&self, origin: &str) -> bool {
        let lower = origin.to_ascii_lowercase();
        lower
            .strip_prefix("http://")
            .or_else(|| lower.strip_prefix("https://"))
            .is_some_and(|host| self.host_ok(host))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_accepts_its_own_names_only() {
        let names = OwnNames::of("127.0.0.1:9000".parse().unwrap());
        assert!(names.host_ok("localhost:9000") && names.host_ok("LOCALHOST:9000"));
        assert!(names.host_ok("127.0.0.1:9000") && names.host_ok("[::1]:9000"));
        assert!(!names.host_ok("127.0.0.1:9001"));
        assert!(!names.host_ok("10.0.0.5:9000"));
        assert!(!names.host_ok("attacker.example:9000"));
        assert!(!names.host_ok(""));
        assert!(names.origin_ok("http://127.0.0.1:9000"));
        assert!(!names.origin_ok("http://attacker.example:9000"));
        assert!(!names.origin_ok("127.0.0.1:9000"), "no scheme");
        assert!(!names.origin_ok("null"));
    }

    #[test]
    fn a_wildcard_listener_takes_ip_literals_with_its_port() {
        for bound in ["0.0.0.0:9469", "[::]:9469"] {
            let names = OwnNames::of(bound.parse().unwrap());
            assert!(names.host_ok("10.0.0.5:9469"), "{bound}");
            assert!(names.host_ok("[fd00::5]:9469"), "{bound}");
            assert!(names.origin_ok("https://192.168.1.4:9469"), "{bound}");
            assert!(!names.host_ok("10.0.0.5:80"), "{bound}");
            assert!(!names.host_ok("attacker.example:9469"), "{bound}");
            assert!(!names.origin_ok("http://attacker.example:9469"), "{bound}");
        }
    }

    #[test]
    fn the_certificate_names_are_hosts_too() {
        let names = OwnNames::of("10.0.0.5:7246".parse().unwrap()).with_names(
            &["branch-12.example.org".into(), "*.example.org".into()],
            7246,
        );
        assert!(names.host_ok("10.0.0.5:7246"));
        assert!(names.host_ok("Branch-12.example.org:7246"));
        assert!(names.origin_ok("https://branch-12.example.org:7246"));
        assert!(!names.host_ok("branch-12.example.org:80"));
        assert!(!names.host_ok("other.example.org:7246"));
    }

    #[test]
    fn a_specific_address_is_only_itself() {
        let names = OwnNames::of("192.168.1.4:7245".parse().unwrap());
        assert!(names.host_ok("192.168.1.4:7245"));
        assert!(!names.host_ok("10.0.0.5:7245"));
        assert!(!names.host_ok("localhost:7245"));
    }
}
