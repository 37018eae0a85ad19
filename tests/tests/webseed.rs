//! BEP 19 web seed interop: `mktorrent -w` makes a .torrent whose `url-list` points at a plain
//! lighttpd on 127.0.0.1, and capwise downloads it with no peer and no tracker at all, bytes
//! compared. A single-file payload (the URL ends in `/`, so the name is appended) and a
//! multi-file one with 64 KiB pieces that straddle file boundaries and a short last piece; then
//! a torrent with a second seed serving wrong bytes: its pieces fail their hash check, it is
//! dropped (warned in plain words), and the good seed completes the download. Inside a private
//! network namespace (`scripts/test` runs it in `unshare -n`).

use anyhow::{ensure, Context, Result};
use capwise_tests::clients::lighttpd::{mktorrent, Lighttpd};
use capwise_tests::clients::{capwise, capwise::CapwiseOpts};
use capwise_tests::netns::assert_private_netns;
use capwise_tests::payload::{assert_same_tree, make_tree, write_random_file};
use capwise_tests::ports::free_port;
use capwise_tests::process::dump_logs;
use std::path::Path;
use std::time::{Duration, Instant};

/// Bound for one download.
const WAIT: Duration = Duration::from_secs(60);

/// Runs `body` in a fresh temp dir (logs under `logs/`); on error dumps the logs and panics.
fn run(test: &str, body: impl FnOnce(&Path, &Path) -> Result<()>) {
    assert_private_netns();
    let tmp = tempfile::Builder::new()
        .prefix("capwise-webseed-")
        .tempdir()
        .expect("temp dir");
    let logs = tmp.path().join("logs");
    std::fs::create_dir_all(&logs).expect("logs dir");
    let t0 = Instant::now();
    match body(tmp.path(), &logs) {
        Ok(()) => eprintln!("[webseed] {test}: ok in {:.1}s", t0.elapsed().as_secs_f64()),
        Err(e) => {
            dump_logs(&logs, None);
            if std::env::var_os("CAPWISE_KEEP_TMP").is_some() {
                eprintln!("[webseed] kept {}", tmp.keep().display());
            }
            panic!("[webseed] {test} failed: {e:#}");
        }
    }
}

/// `capwise get TORRENT -d DL` with no tracker, DHT or LSD; must exit 0 within [`WAIT`].
/// Returns its log.
fn get(tmp: &Path, logs: &Path, torrent: &Path, dl: &Path) -> Result<String> {
    let mut g = capwise::get(
        "capwise",
        torrent,
        dl,
        free_port(),
        &tmp.join("state"),
        &CapwiseOpts::default(),
        logs,
    )?;
    g.expect_success(WAIT)
        .context("capwise get from the web seed")?;
    let mut log = std::fs::read_to_string(&g.stderr_path).unwrap_or_default();
    log.push_str(&std::fs::read_to_string(&g.stdout_path).unwrap_or_default());
    Ok(log)
}

#[test]
fn single_file_from_a_web_seed_alone() {
    run("single_file_from_a_web_seed_alone", |tmp, logs| {
        let www = tmp.join("www");
        // Three 256 KiB pieces and a short last one.
        write_random_file(&www.join("single.bin"), 3 * 256 * 1024 + 12_345, 19)?;
        let server = Lighttpd::start(&www, free_port(), &tmp.join("lighttpd"), logs)?;
        let torrent = tmp.join("single.torrent");
        mktorrent(
            &www.join("single.bin"),
            &torrent,
            &[server.url("")],
            18,
            logs,
        )?;
        let dl = tmp.join("dl");
        get(tmp, logs, &torrent, &dl)?;
        let want = std::fs::read(www.join("single.bin"))?;
        let got = std::fs::read(dl.join("single.bin"))?;
        ensure!(
            got == want,
            "downloaded bytes differ from the server's file"
        );
        Ok(())
    });
}

#[test]
fn multi_file_across_file_boundaries() {
    run("multi_file_across_file_boundaries", |tmp, logs| {
        let www = tmp.join("www");
        // 64 KiB pieces: the first piece holds a.bin's end, b.txt and c.bin's start.
        let files = [
            ("a.bin", 40_000),
            ("sub/b.txt", 5),
            ("sub/deeper/c d.bin", 300_001),
            ("z.bin", 65_536 + 7),
        ];
        make_tree(&www.join("tree"), &files, 7)?;
        let server = Lighttpd::start(&www, free_port(), &tmp.join("lighttpd"), logs)?;
        let torrent = tmp.join("tree.torrent");
        mktorrent(&www.join("tree"), &torrent, &[server.url("")], 16, logs)?;
        let dl = tmp.join("dl");
        get(tmp, logs, &torrent, &dl)?;
        assert_same_tree(&www.join("tree"), &dl.join("tree"))?;
        Ok(())
    });
}

#[test]
fn a_seed_serving_wrong_bytes_is_dropped_and_nothing_bad_is_written() {
    run("a_seed_serving_wrong_bytes_is_dropped", |tmp, logs| {
        let www = tmp.join("www");
        // 16 MiB: more than one request's 4 MiB per worker, so that the bad seed's workers get
        // pieces whichever seed starts first.
        let len = 16 * 1024 * 1024 + 999;
        write_random_file(&www.join("good/data.bin"), len, 1)?;
        // Same name and size on the bad seed, other bytes: every piece it sends fails.
        write_random_file(&www.join("bad/data.bin"), len, 2)?;
        let server = Lighttpd::start(&www, free_port(), &tmp.join("lighttpd"), logs)?;
        let torrent = tmp.join("data.torrent");
        let seeds = [server.url("bad/"), server.url("good/")];
        mktorrent(&www.join("good/data.bin"), &torrent, &seeds, 16, logs)?;
        let dl = tmp.join("dl");
        let log = get(tmp, logs, &torrent, &dl)?;
        let want = std::fs::read(www.join("good/data.bin"))?;
        let got = std::fs::read(dl.join("data.bin"))?;
        ensure!(
            got == want,
            "downloaded bytes differ from the good seed's file"
        );
        ensure!(
            log.contains("failed its hash check"),
            "no piece from the bad seed was refused; log:\n{log}"
        );
        ensure!(
            log.contains("web seed dropped") && log.contains("bad/"),
            "the bad seed was not dropped with a warning; log:\n{log}"
        );
        Ok(())
    });
}
