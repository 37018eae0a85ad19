//! Which client a peer runs, from its peer id: the Azureus-style
//! `-XXyyyy-` prefix most clients use (BEP 20), and aria2's `A2-`. Pure;
//! for display only (a peer id is whatever the peer says).

/// The client's name and version, e.g. "Transmission 4.0.6"; `None` for a
/// peer id in no known style.
pub fn client_name(peer_id: &[u8; 20]) -> Option<String> {
    if peer_id[0] == b'-' && peer_id[7] == b'-' {
        let code = std::str::from_utf8(&peer_id[1..3]).ok()?;
        let version = std::str::from_utf8(&peer_id[3..7]).ok()?;
        if !code.bytes().all(|b| b.is_ascii_alphanumeric()) {
            return None;
        }
        let name = match code {
            "TR" => "Transmission",
            "LT" => "libtorrent",
            "lt" => "rtorrent",
            "qB" => "qBittorrent",
            "DE" => "Deluge",
            "UT" => "µTorrent",
            "BT" => "BitTorrent",
            "AZ" => "Vuze",
            "CW" => "capwise",
            "rq" | "RQ" => "rqbit",
            "BC" => "BitComet",
            "KT" => "KTorrent",
            "WW" => "WebTorrent",
            other => return Some(format!("{other} {}", version.trim_end_matches('0'))),
        };
        return Some(format!("{name} {}", dotted(version)));
    }
    if peer_id.starts_with(b"A2-") {
        // aria2: A2-MAJOR-MINOR-PATCH-
        let text = std::str::from_utf8(&peer_id[3..]).ok()?;
        let parts: Vec<&str> = text.split('-').take(3).collect();
        if parts.len() == 3 && parts.iter().all(|p| p.bytes().all(|b| b.is_ascii_digit())) {
            return Some(format!("aria2 {}", parts.join(".")));
        }
    }
    None
}

/// "4060" → "4.0.6", "2080" → "2.0.8"; a version in letters is kept as is.
fn dotted(version: &str) -> String {
    if !version.bytes().all(|b| b.is_ascii_digit()) {
        return version.to_string();
    }
    let digits: Vec<String> = version.chars().map(String::from).collect();
    let mut parts = digits[..3].to_vec();
    if digits[3] != "0" {
        parts.push(digits[3].clone());
    }
    parts.join(".")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(prefix: &[u8]) -> [u8; 20] {
        let mut id = [b'x'; 20];
        id[..prefix.len()].copy_from_slice(prefix);
        id
    }

    #[test]
    fn known_styles_are_named_and_others_are_not() {
        assert_eq!(
            client_name(&id(b"-TR4060-")).as_deref(),
            Some("Transmission 4.0.6")
        );
        assert_eq!(
            client_name(&id(b"-LT2080-")).as_deref(),
            Some("libtorrent 2.0.8")
        );
        assert_eq!(
            client_name(&id(b"-CW0100-")).as_deref(),
            Some("capwise 0.1.0")
        );
        assert_eq!(
            client_name(&id(b"A2-1-37-0-")).as_deref(),
            Some("aria2 1.37.0")
        );
        assert_eq!(client_name(&id(b"-ZZ12ab-")).as_deref(), Some("ZZ 12ab"));
        assert_eq!(client_name(&[0xff; 20]), None);
        assert_eq!(client_name(&id(b"-\xff\xfe1234-")), None);
    }
}
