//! Self-tests of the harness building blocks that need no reference client and no network.

use capwise_tests::netns::in_private_netns;
use capwise_tests::paths::{capwise_bin, interop_script};
use capwise_tests::ports::free_port;
use capwise_tests::process::{wait_until, ChildGuard};
use std::collections::HashSet;
use std::process::Command;
use std::time::{Duration, Instant};

fn alive(pid: u32) -> bool {
    // SAFETY: signal 0 only checks for existence.
    unsafe { libc::kill(pid as libc::pid_t, 0) == 0 }
}

#[test]
fn child_guard_kills_and_reaps_on_drop() {
    let d = tempfile::tempdir().unwrap();
    let g = ChildGuard::spawn("sleeper", Command::new("sleep").arg("100"), d.path()).unwrap();
    let pid = g.pid();
    assert!(alive(pid));
    let t = Instant::now();
    drop(g);
    assert!(!alive(pid), "child {pid} survived its guard");
    assert!(t.elapsed() < Duration::from_secs(10));
}

#[test]
fn child_guard_kills_whole_process_group() {
    let d = tempfile::tempdir().unwrap();
    let pidfile = d.path().join("grandchild.pid");
    let script = format!("sleep 100 & echo $! > {}; wait", pidfile.display());
    let g = ChildGuard::spawn(
        "group",
        Command::new("bash").args(["-c", &script]),
        d.path(),
    )
    .unwrap();
    wait_until(
        "grandchild pid",
        Duration::from_secs(10),
        Duration::from_millis(20),
        || Ok(std::fs::read_to_string(&pidfile).is_ok_and(|s| s.ends_with('\n'))),
    )
    .unwrap();
    let grandchild: u32 = std::fs::read_to_string(&pidfile)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(alive(grandchild));
    drop(g);
    // The grandchild is reparented to init (or a subreaper) and reaped there; allow a moment.
    wait_until(
        "grandchild to die",
        Duration::from_secs(10),
        Duration::from_millis(50),
        || {
            Ok(!alive(grandchild)
                || std::fs::read_to_string(format!("/proc/{grandchild}/stat"))
                    .map(|s| s.contains(") Z "))
                    .unwrap_or(true))
        },
    )
    .unwrap();
}

#[test]
fn child_guard_captures_output_and_status() {
    let d = tempfile::tempdir().unwrap();
    let mut g = ChildGuard::spawn(
        "echo",
        Command::new("bash").args(["-c", "echo out; echo err >&2; exit 3"]),
        d.path(),
    )
    .unwrap();
    let s = g
        .wait_timeout(Duration::from_secs(10))
        .unwrap()
        .expect("exited");
    assert_eq!(s.code(), Some(3));
    assert_eq!(g.stdout(), "out\n");
    assert!(g.log_tail(100).contains("err"));
    assert!(g.expect_success(Duration::from_secs(1)).is_err());
}

#[test]
fn wait_until_is_bounded() {
    let t = Instant::now();
    let r = wait_until(
        "never",
        Duration::from_millis(300),
        Duration::from_millis(50),
        || Ok(false),
    );
    assert!(r.is_err());
    assert!(t.elapsed() < Duration::from_secs(3));
    let mut n = 0;
    wait_until(
        "third poll",
        Duration::from_secs(5),
        Duration::from_millis(1),
        || {
            n += 1;
            Ok(n >= 3)
        },
    )
    .unwrap();
}

#[test]
fn free_ports_are_distinct() {
    let ports: HashSet<u16> = (0..50).map(|_| free_port()).collect();
    assert_eq!(ports.len(), 50);
}

#[test]
fn paths_point_at_the_repo() {
    assert!(interop_script("lt_client.py").is_file());
    assert!(interop_script("make_torrent.py").is_file());
    assert!(capwise_bin().ends_with("capwise"));
    // Plain `cargo test` runs in the host namespace; just make sure the probe answers.
    let _ = in_private_netns();
}
