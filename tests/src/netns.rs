//! Refuse to run interop tests outside a private network namespace.
//!
//! Two checks: (1) when `/proc/1/ns/net` is readable, our network namespace must differ from
//! init's (pid 1's); (2) always, the namespace must hold no interface but `lo`, so no traffic
//! can leave the machine (some sandboxes deny reading pid 1's namespace link; check 2 still holds).

use std::os::unix::fs::MetadataExt;

/// Inode of a namespace link such as `/proc/self/ns/net`.
fn ns_inode(path: &str) -> std::io::Result<u64> {
    Ok(std::fs::metadata(path)?.ino())
}

/// Interface names listed in a `/proc/net/dev` text.
fn interfaces(dev: &str) -> Vec<String> {
    dev.lines()
        .skip(2)
        .filter_map(|l| l.split_once(':').map(|(n, _)| n.trim().to_string()))
        .collect()
}

/// Why we are not in a private, loopback-only network namespace, or None if we are.
pub fn why_not_private() -> Option<String> {
    if let (Ok(me), Ok(init)) = (ns_inode("/proc/self/ns/net"), ns_inode("/proc/1/ns/net")) {
        if me == init {
            return Some("this process shares init's network namespace".into());
        }
    }
    let dev = match std::fs::read_to_string("/proc/self/net/dev") {
        Ok(d) => d,
        Err(e) => return Some(format!("cannot read /proc/self/net/dev: {e}")),
    };
    let others: Vec<String> = interfaces(&dev).into_iter().filter(|n| n != "lo").collect();
    if !others.is_empty() {
        return Some(format!(
            "network interfaces other than lo are present: {}",
            others.join(", ")
        ));
    }
    None
}

/// True when this process lives in a private network namespace with only `lo`.
pub fn in_private_netns() -> bool {
    why_not_private().is_none()
}

/// Panics unless we run in a private, loopback-only network namespace, so that reference
/// clients' DHT / LSD / UPnP traffic cannot leave the machine.
pub fn assert_private_netns() {
    if let Some(why) = why_not_private() {
        panic!(
            "the interop suite must run inside a private network namespace (unshare -n, \
             loopback only): {why}; run it with `scripts/test`"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_proc_net_dev() {
        let dev = "Inter-|   Receive\n face |bytes\n    lo: 1 2 3\n  eth0: 4 5 6\n";
        assert_eq!(interfaces(dev), vec!["lo".to_string(), "eth0".to_string()]);
    }
}
