//! The capwise background agent (`capwise run`) and its CLI, driven the way
//! a user or another program would: the agent runs as a child process, the
//! CLI finds it through the state directory, and raw HTTP requests test the
//! API's guard.

use crate::paths::capwise_bin;
use crate::process::{run, wait_until, ChildGuard};
use anyhow::{bail, Context, Result};
use serde_json::Value;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// How long the agent may take to become ready or to answer a CLI call.
pub const AGENT_WAIT: Duration = Duration::from_secs(30);

/// Wraps a command to run elsewhere (e.g. `ip netns exec NS ...`).
pub type Wrap = std::sync::Arc<dyn Fn(&Command) -> Command + Send + Sync>;

/// A running agent and the paths that pair CLI calls with it.
pub struct Agent {
    /// The agent process.
    pub guard: ChildGuard,
    /// Its state directory.
    pub state_dir: PathBuf,
    log_dir: PathBuf,
    calls: usize,
    wrap: Option<Wrap>,
}

/// The `capwise run` command line for `state_dir`, with `config` and a
/// network file if given, and local service discovery off (`--no-lsd`:
/// agents sharing a segment in one test must not find each other behind
/// its back; a test of LSD removes it).
pub fn run_command(state_dir: &Path, config: &Path, network_file: Option<&Path>) -> Command {
    run_command_with(state_dir, config, network_file, &RunOpts::default())
}

/// What [`run_command_with`] turns on beyond [`run_command`].
#[derive(Debug, Clone, Default)]
pub struct RunOpts {
    /// The DHT on, joined through this node alone (never the public routers).
    pub dht_bootstrap: Option<std::net::SocketAddr>,
    /// Local service discovery on.
    pub lsd: bool,
}

/// [`run_command`] with what `opts` turns on.
pub fn run_command_with(
    state_dir: &Path,
    config: &Path,
    network_file: Option<&Path>,
    opts: &RunOpts,
) -> Command {
    let mut c = Command::new(capwise_bin());
    c.arg("run");
    // No test asks the public DHT routers.
    match opts.dht_bootstrap {
        Some(node) => c.arg("--dht-bootstrap").arg(node.to_string()),
        None => c.arg("--no-dht"),
    };
    if !opts.lsd {
        c.arg("--no-lsd");
    }
    c.arg("--state-dir")
        .arg(state_dir)
        .arg("--config")
        .arg(config)
        .env("RUST_BACKTRACE", "1")
        // No desktop notifications from test agents on a developer's session bus
        // (tests/tests/notify.rs gives its agents a private bus).
        .env(
            "DBUS_SESSION_BUS_ADDRESS",
            "unix:path=/nonexistent/capwise-tests-no-bus",
        )
        .env(
            "CAPWISE_LOG",
            std::env::var("CAPWISE_LOG").unwrap_or_else(|_| "info".into()),
        );
    if let Some(f) = network_file {
        c.arg("--network-file").arg(f);
    }
    c
}

impl Agent {
    /// Starts `capwise run` and waits until its API answers `ready`.
    pub fn start(
        name: &str,
        state_dir: &Path,
        config: &Path,
        network_file: Option<&Path>,
        log_dir: &Path,
    ) -> Result<Agent> {
        Self::start_wrapped(name, state_dir, config, network_file, log_dir, None)
    }

    /// Starts the agent, and runs it and every CLI call through `wrap`
    /// (e.g. into a network namespace) if given.
    pub fn start_wrapped(
        name: &str,
        state_dir: &Path,
        config: &Path,
        network_file: Option<&Path>,
        log_dir: &Path,
        wrap: Option<Wrap>,
    ) -> Result<Agent> {
        let command = run_command(state_dir, config, network_file);
        Self::spawn(name, state_dir, command, log_dir, wrap)
    }

    /// Starts `capwise run` with `extra` arguments after the usual ones
    /// (e.g. `--peer HOST:PORT`).
    pub fn start_with_args(
        name: &str,
        state_dir: &Path,
        config: &Path,
        extra: &[String],
        log_dir: &Path,
    ) -> Result<Agent> {
        let mut command = run_command(state_dir, config, None);
        command.args(extra);
        Self::spawn(name, state_dir, command, log_dir, None)
    }

    /// Starts `command` (a `capwise run` command line the caller made, e.g. with LSD on)
    /// through `wrap` if given, and waits until its API answers `ready`.
    pub fn start_command(
        name: &str,
        state_dir: &Path,
        command: Command,
        log_dir: &Path,
        wrap: Option<Wrap>,
    ) -> Result<Agent> {
        Self::spawn(name, state_dir, command, log_dir, wrap)
    }

    fn spawn(
        name: &str,
        state_dir: &Path,
        command: Command,
        log_dir: &Path,
        wrap: Option<Wrap>,
    ) -> Result<Agent> {
        let _ = std::fs::remove_file(state_dir.join("agent.json"));
        let mut command = match &wrap {
            Some(w) => w(&command),
            None => command,
        };
        let guard = ChildGuard::spawn(name, &mut command, log_dir)?;
        let mut agent = Agent {
            guard,
            state_dir: state_dir.to_path_buf(),
            log_dir: log_dir.to_path_buf(),
            calls: 0,
            wrap,
        };
        wait_until(
            "the agent to be ready",
            AGENT_WAIT,
            Duration::from_millis(200),
            || {
                if let Some(status) = agent.guard.try_wait()? {
                    bail!(
                        "the agent exited with {status}: {}",
                        agent.guard.log_tail(2000)
                    );
                }
                if !agent.state_dir.join("agent.json").exists() {
                    return Ok(false);
                }
                Ok(agent.cli_json(&["info"])?["ready"] == true)
            },
        )?;
        Ok(agent)
    }

    /// The token from the state directory.
    pub fn token(&self) -> Result<String> {
        let t = std::fs::read_to_string(self.state_dir.join("api-token"))
            .context("reading api-token")?;
        Ok(t.trim().to_string())
    }

    /// The API's `host:port`, from `agent.json`.
    pub fn api_addr(&self) -> Result<String> {
        let bytes =
            std::fs::read(self.state_dir.join("agent.json")).context("reading agent.json")?;
        let v: Value = serde_json::from_slice(&bytes)?;
        let api = v["api"].as_str().context("agent.json has no api")?;
        Ok(api.trim_start_matches("http://").to_string())
    }

    /// One raw HTTP/1.1 request; returns the status and the JSON body.
    /// `headers` are sent as given (to test the guard with odd ones). Runs
    /// in the caller's network namespace.
    pub fn api(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        headers: &[(&str, &str)],
        body: Option<&Value>,
    ) -> Result<(u16, Value)> {
        let addr = self.api_addr()?;
        let mut stream = TcpStream::connect(&addr)?;
        stream.set_read_timeout(Some(AGENT_WAIT))?;
        let body = body.map(|b| b.to_string()).unwrap_or_default();
        let mut request = format!("{method} {path} HTTP/1.1\r\nConnection: close\r\n");
        if !headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("host")) {
            request.push_str(&format!("Host: {addr}\r\n"));
        }
        for (k, v) in headers {
            request.push_str(&format!("{k}: {v}\r\n"));
        }
        if let Some(t) = token {
            request.push_str(&format!("Authorization: Bearer {t}\r\n"));
        }
        if !body.is_empty() {
            request.push_str("Content-Type: application/json\r\n");
        }
        request.push_str(&format!("Content-Length: {}\r\n\r\n{body}", body.len()));
        stream.write_all(request.as_bytes())?;
        let mut response = Vec::new();
        stream.take(64 << 20).read_to_end(&mut response)?;
        let text = String::from_utf8_lossy(&response);
        let (head, payload) = text.split_once("\r\n\r\n").context("no HTTP header end")?;
        let status: u16 = head
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .context("no HTTP status")?;
        let json = if payload.trim().is_empty() {
            Value::Null
        } else {
            serde_json::from_str(payload).with_context(|| format!("body: {payload}"))?
        };
        Ok((status, json))
    }

    /// Runs `capwise ARGS... --state-dir STATE` and returns its stdout.
    pub fn cli(&mut self, args: &[&str]) -> Result<String> {
        self.calls += 1;
        let mut c = Command::new(capwise_bin());
        c.args(args).arg("--state-dir").arg(&self.state_dir);
        if let Some(w) = &self.wrap {
            c = w(&c);
        }
        run(
            &format!("cli-{:03}", self.calls),
            &mut c,
            &self.log_dir,
            AGENT_WAIT,
        )
    }

    /// Like [`Agent::cli`] with `--json`, parsed.
    pub fn cli_json(&mut self, args: &[&str]) -> Result<Value> {
        let mut with_json = args.to_vec();
        with_json.push("--json");
        let out = self.cli(&with_json)?;
        serde_json::from_str(&out).with_context(|| format!("capwise {args:?} printed {out}"))
    }

    /// One torrent as `capwise status ID --json` shows it.
    pub fn status(&mut self, id: &str) -> Result<Value> {
        self.cli_json(&["status", id])
    }

    /// Waits until the torrent's state is `state`.
    pub fn wait_state(&mut self, id: &str, state: &str, timeout: Duration) -> Result<Value> {
        let mut last = Value::Null;
        wait_until(
            &format!("torrent {id} to be {state}"),
            timeout,
            Duration::from_millis(250),
            || {
                last = self.status(id)?;
                if last["state"] == "error" {
                    bail!("torrent failed: {}", last["reason"]);
                }
                Ok(last["state"] == state)
            },
        )
        .with_context(|| format!("last status: {last}"))?;
        Ok(last)
    }
}
