//! The branch-office benchmark (issue 14); `tests/bench/branch/run` builds and runs it inside
//! `unshare -n`. See that script for the arguments. Prints one table (and the same rows as
//! `ROW ...` lines for scripts).

use anyhow::{bail, Context, Result};
use capwise_tests::branch::scenario::{table, Figures, Scenario, ScenarioOpts};
use capwise_tests::branch::{BranchOpts, BranchTopology};
use capwise_tests::clients::capwise::require_bin;
use capwise_tests::netns::why_not_private;
use capwise_tests::process::dump_logs;
use std::time::{Duration, Instant};

struct Args {
    size_mib: u64,
    files: usize,
    rate_mbit: u64,
    which: Vec<String>,
    kill: bool,
    republish: bool,
    routed: bool,
    timeout: u64,
}

fn parse() -> Result<Args> {
    let mut a = Args {
        size_mib: 128,
        files: 3,
        rate_mbit: 20,
        which: vec!["curl".into(), "libtorrent".into(), "capwise".into()],
        kill: false,
        republish: false,
        routed: false,
        timeout: 900,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut val = |what: &str| it.next().with_context(|| format!("{what} needs a value"));
        match arg.as_str() {
            "--size-mib" => a.size_mib = val("--size-mib")?.parse()?,
            "--files" => a.files = val("--files")?.parse()?,
            "--rate-mbit" => a.rate_mbit = val("--rate-mbit")?.parse()?,
            "--timeout" => a.timeout = val("--timeout")?.parse()?,
            "--which" => a.which = val("--which")?.split(',').map(String::from).collect(),
            "--kill" => a.kill = true,
            "--republish" => a.republish = true,
            "--routed" => a.routed = true,
            other => bail!("unknown argument {other:?}"),
        }
    }
    if a.size_mib == 0 || a.size_mib > 4096 {
        bail!("--size-mib must be 1..4096");
    }
    if a.files == 0 || a.files > 10 {
        bail!("--files must be 1..10");
    }
    if a.rate_mbit == 0 || a.rate_mbit > 10_000 {
        bail!("--rate-mbit must be 1..10000");
    }
    if a.timeout == 0 || a.timeout > 3600 {
        bail!("--timeout must be 1..3600 s");
    }
    for w in &a.which {
        if !["curl", "libtorrent", "capwise", "capwise-kill"].contains(&w.as_str()) {
            bail!("--which takes curl, libtorrent, capwise, capwise-kill; not {w:?}");
        }
    }
    Ok(a)
}

fn main() -> Result<()> {
    let a = parse()?;
    if let Some(why) = why_not_private() {
        bail!("run inside a private network namespace (tests/bench/branch/run does): {why}");
    }
    require_bin()?;
    // Files of about equal size that add up to --size-mib, not all the same length (so a
    // piece-aligned accident cannot hide anything).
    let total = a.size_mib << 20;
    let per = total / a.files as u64;
    let mut sizes: Vec<u64> = (0..a.files).map(|i| per - (i as u64) * 4099).collect();
    let rest = total - sizes.iter().sum::<u64>();
    sizes[0] += rest;
    let topo = BranchTopology::new(BranchOpts {
        rate_bits: a.rate_mbit * 1_000_000,
        prefer_nat: !a.routed,
    })?;
    println!(
        "branch offices: {} files, {} MiB in all, WAN {} Mbit/s each way (tbf), {}",
        a.files, a.size_mib, a.rate_mbit, topo.routing_note
    );
    let tmp = tempfile::Builder::new()
        .prefix("capwise-branch-bench-")
        .tempdir_in(
            std::env::var_os("BENCH_TMPDIR").unwrap_or_else(|| std::env::temp_dir().into()),
        )?;
    let opts = ScenarioOpts {
        file_sizes: sizes,
        case_timeout: Duration::from_secs(a.timeout),
        republish: a.republish,
    };
    let t0 = Instant::now();
    let hq = topo.hq.clone();
    let r = topo
        .in_ns(&hq, || -> Result<Vec<Figures>> {
            let mut s = Scenario::new(&topo, tmp.path(), opts)?;
            let r = (|| -> Result<Vec<Figures>> {
                let mut figs = vec![s.curl_one()?];
                let show = |f: &Figures| {
                    eprintln!(
                        "[branch] {}: done in {:.1} s ({:.0} s since start)",
                        f.case,
                        f.seconds,
                        t0.elapsed().as_secs_f64()
                    )
                };
                show(&figs[0]);
                let wants = |w: &str| a.which.iter().any(|x| x == w);
                if wants("curl") {
                    figs.push(s.curl_all()?);
                    show(figs.last().unwrap());
                }
                if wants("libtorrent") {
                    figs.push(s.libtorrent()?);
                    show(figs.last().unwrap());
                }
                if wants("capwise") {
                    for f in s.capwise(false, a.republish)? {
                        show(&f);
                        figs.push(f);
                    }
                }
                if a.kill || wants("capwise-kill") {
                    for f in s.capwise(true, false)? {
                        show(&f);
                        figs.push(f);
                    }
                }
                Ok(figs)
            })();
            if r.is_err() {
                dump_logs(&s.logs, None);
                if std::env::var_os("BRANCH_KEEP").is_some() {
                    eprintln!("[branch] kept {}", tmp.path().display());
                    std::mem::forget(tmp);
                }
            }
            r
        })
        .and_then(|r| r)?;
    print!("{}", table(&r));
    for f in &r {
        println!(
            "ROW case={} b1_in={} b1_out={} b2_in={} b2_out={} per1={} per2={} b1_s={:.1} b2_s={:.1} all_s={:.1}",
            f.case, f.rx[0], f.tx[0], f.rx[1], f.tx[1], f.per[0], f.per[1], f.branch_seconds[0], f.branch_seconds[1], f.seconds
        );
    }
    Ok(())
}
