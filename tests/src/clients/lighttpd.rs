//! lighttpd (Debian's package) as a plain web server on 127.0.0.1: the origin of BEP 19 web
//! seeds. It serves a directory with byte ranges (206) as it comes, no module needed.

use crate::process::{wait_until, ChildGuard};
use anyhow::{Context, Result};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

/// A running lighttpd; stopped (TERM, then KILL) on drop.
pub struct Lighttpd {
    pub port: u16,
    _child: ChildGuard,
}

impl Lighttpd {
    /// Serves `root` on `127.0.0.1:port` (foreground, `-D`); waits until it accepts connections.
    pub fn start(root: &Path, port: u16, work: &Path, log_dir: &Path) -> Result<Self> {
        Self::start_on(
            std::net::Ipv4Addr::LOCALHOST,
            root,
            port,
            work,
            log_dir,
            |c| c,
        )
    }

    /// Like [`Lighttpd::start`] with `extra` lines appended to its configuration (e.g.
    /// `server.modules += ( "mod_redirect" )` and `url.redirect = ...`).
    pub fn start_with(
        root: &Path,
        port: u16,
        work: &Path,
        log_dir: &Path,
        extra: &str,
    ) -> Result<Self> {
        Self::start_configured(
            std::net::Ipv4Addr::LOCALHOST,
            root,
            port,
            work,
            log_dir,
            |c| c,
            extra,
        )
    }

    /// Like [`Lighttpd::start`] on `ip`; `wrap` may rewrite the command (e.g. into
    /// `ip netns exec`). The readiness probe connects from the calling thread's namespace.
    pub fn start_on(
        ip: std::net::Ipv4Addr,
        root: &Path,
        port: u16,
        work: &Path,
        log_dir: &Path,
        wrap: impl FnOnce(Command) -> Command,
    ) -> Result<Self> {
        Self::start_configured(ip, root, port, work, log_dir, wrap, "")
    }

    fn start_configured(
        ip: std::net::Ipv4Addr,
        root: &Path,
        port: u16,
        work: &Path,
        log_dir: &Path,
        wrap: impl FnOnce(Command) -> Command,
        extra: &str,
    ) -> Result<Self> {
        std::fs::create_dir_all(work)?;
        let conf = work.join("lighttpd.conf");
        std::fs::write(
            &conf,
            format!(
                "server.document-root = \"{root}\"\n\
                 server.bind = \"{ip}\"\n\
                 server.port = {port}\n\
                 server.errorlog = \"{err}\"\n\
                 server.modules = ( \"mod_accesslog\" )\n\
                 accesslog.filename = \"{access}\"\n\
                 mimetype.assign = ( \"\" => \"application/octet-stream\" )\n{extra}\n",
                root = root.display(),
                err = log_dir.join("lighttpd.error.log").display(),
                access = log_dir.join("lighttpd.access.log").display(),
            ),
        )?;
        let mut c = Command::new("lighttpd");
        c.arg("-D").arg("-f").arg(&conf);
        let mut c = wrap(c);
        let child = ChildGuard::spawn("lighttpd", &mut c, log_dir).context("start lighttpd")?;
        wait_until(
            "lighttpd to listen",
            Duration::from_secs(10),
            Duration::from_millis(50),
            || Ok(std::net::TcpStream::connect((ip, port)).is_ok()),
        )?;
        Ok(Self {
            port,
            _child: child,
        })
    }

    /// `http://127.0.0.1:PORT/PATH`
    pub fn url(&self, path: &str) -> String {
        format!(
            "http://127.0.0.1:{}/{}",
            self.port,
            path.trim_start_matches('/')
        )
    }
}

/// `mktorrent -w WEB_SEEDS -l LOG2_PIECE -o OUT PATH`, no tracker at all.
pub fn mktorrent(
    path: &Path,
    out: &Path,
    web_seeds: &[String],
    log2_piece: u32,
    log_dir: &Path,
) -> Result<()> {
    let mut c = Command::new("mktorrent");
    c.arg("-w")
        .arg(web_seeds.join(","))
        .arg("-l")
        .arg(log2_piece.to_string())
        .arg("-o")
        .arg(out)
        .arg(path);
    crate::process::run("mktorrent", &mut c, log_dir, Duration::from_secs(60))?;
    Ok(())
}

/// [`mktorrent`] with trackers too: each of `trackers` a tier of its own (`-a` each).
pub fn mktorrent_with_trackers(
    path: &Path,
    out: &Path,
    trackers: &[String],
    web_seeds: &[String],
    log2_piece: u32,
    log_dir: &Path,
) -> Result<()> {
    let mut c = Command::new("mktorrent");
    for t in trackers {
        c.arg("-a").arg(t);
    }
    if !web_seeds.is_empty() {
        c.arg("-w").arg(web_seeds.join(","));
    }
    c.arg("-l")
        .arg(log2_piece.to_string())
        .arg("-o")
        .arg(out)
        .arg(path);
    crate::process::run("mktorrent", &mut c, log_dir, Duration::from_secs(60))?;
    Ok(())
}
