//! Network namespaces for the LSD tests (`ip netns add`), joined by a veth
//! pair with multicast on. Needs root and `ip`; run inside `unshare -n` (as
//! scripts/test does), where the namespaces are bind mounts under
//! /run/netns that [`Pair`]'s drop removes.

#![allow(dead_code)]

use std::process::Command;

pub fn ip(args: &[&str]) {
    let status = Command::new("ip").args(args).status().expect("run ip");
    assert!(status.success(), "ip {}", args.join(" "));
}

/// Two namespaces joined by a veth pair `lsda`/`lsdb`: 10.77.0.1/24 and
/// 10.77.0.2/24, fd77::1/64 and fd77::2/64 (no duplicate address
/// detection, so they are usable at once).
pub struct Pair {
    pub names: [String; 2],
}

impl Pair {
    pub fn new(tag: &str) -> Pair {
        let id = std::process::id();
        let names = [format!("cwlsd-{tag}a-{id}"), format!("cwlsd-{tag}b-{id}")];
        for ns in &names {
            ip(&["netns", "add", ns]);
        }
        let pair = Pair { names };
        let [a, b] = &pair.names;
        ip(&[
            "link", "add", "lsda", "netns", a, "type", "veth", "peer", "name", "lsdb", "netns", b,
        ]);
        for (ns, dev, v4, v6) in [
            (a, "lsda", "10.77.0.1/24", "fd77::1/64"),
            (b, "lsdb", "10.77.0.2/24", "fd77::2/64"),
        ] {
            ip(&["-n", ns, "addr", "add", v4, "dev", dev]);
            ip(&["-n", ns, "addr", "add", v6, "dev", dev, "nodad"]);
            ip(&["-n", ns, "link", "set", dev, "multicast", "on"]);
            ip(&["-n", ns, "link", "set", dev, "up"]);
            ip(&["-n", ns, "link", "set", "lo", "up"]);
        }
        // A multicast sent before the veth's carrier is up, or while its
        // link-local address is still tentative, may be lost: LSD sends
        // once and not again for a minute. Wait (bounded) until both ends
        // are up with no tentative address.
        for (ns, dev) in [(a, "lsda"), (b, "lsdb")] {
            let ready = || {
                let up = output(&["-n", ns, "link", "show", "dev", dev]).contains("state UP");
                let tentative = output(&["-n", ns, "-6", "addr", "show", "dev", dev, "tentative"]);
                up && tentative.trim().is_empty()
            };
            let mut tries = 0;
            while !ready() && tries < 100 {
                std::thread::sleep(std::time::Duration::from_millis(50));
                tries += 1;
            }
        }
        pair
    }
}

fn output(args: &[&str]) -> String {
    let out = Command::new("ip").args(args).output().expect("run ip");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

impl Drop for Pair {
    fn drop(&mut self) {
        for ns in &self.names {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
    }
}

/// One namespace of its own, with only `lo` up.
pub struct Single {
    pub name: String,
}

impl Single {
    pub fn new(tag: &str) -> Single {
        let name = format!("cwlsd-{tag}-{}", std::process::id());
        ip(&["netns", "add", &name]);
        ip(&["-n", &name, "link", "set", "lo", "up"]);
        Single { name }
    }
}

impl Drop for Single {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}

/// Moves the calling thread into the named network namespace.
pub fn enter(ns: &str) {
    let file = std::fs::File::open(format!("/run/netns/{ns}")).expect("open netns");
    let fd = std::os::fd::AsRawFd::as_raw_fd(&file);
    // SAFETY: setns on a valid descriptor of a network namespace; it affects
    // this thread only.
    let rc = unsafe { libc::setns(fd, libc::CLONE_NEWNET) };
    assert_eq!(rc, 0, "setns: {}", std::io::Error::last_os_error());
}

pub fn ifindex(name: &str) -> u32 {
    let c = std::ffi::CString::new(name).unwrap();
    // SAFETY: a NUL-terminated name.
    let index = unsafe { libc::if_nametoindex(c.as_ptr()) };
    assert_ne!(index, 0, "no interface {name}");
    index
}
