//! Desktop notifications end to end: `capwise run` with a private dbus-daemon as its session
//! bus, where this test serves a stand-in `org.freedesktop.Notifications` (a small zbus server
//! that records each `Notify` call). A change of the network file to metered makes exactly one
//! notification, whose body is the decision's sentence (`capwise why`); the same state again
//! (the file rewritten unchanged; a budget that changes the sentence's figures, not what is held
//! back) makes none; an agent with `notify = false` makes none.
//! Inside a private network namespace (`scripts/test` runs it in `unshare -n`).

use anyhow::{ensure, Context, Result};
use capwise_tests::clients::agent::{run_command, Agent};
use capwise_tests::netns::assert_private_netns;
use capwise_tests::ports::free_port;
use capwise_tests::process::{dump_logs, wait_until};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use zbus::zvariant::OwnedValue;

const WAIT: Duration = Duration::from_secs(20);

/// One recorded `Notify` call: app name, summary, body.
type Call = (String, String, String);

/// The stand-in notification daemon.
struct StandIn {
    calls: Arc<Mutex<Vec<Call>>>,
}

#[zbus::interface(name = "org.freedesktop.Notifications")]
impl StandIn {
    #[allow(clippy::too_many_arguments)]
    fn notify(
        &self,
        app_name: String,
        _replaces_id: u32,
        _app_icon: String,
        summary: String,
        body: String,
        _actions: Vec<String>,
        _hints: HashMap<String, OwnedValue>,
        _expire_timeout: i32,
    ) -> u32 {
        let mut calls = self.calls.lock().unwrap();
        calls.push((app_name, summary, body));
        calls.len() as u32
    }

    fn get_capabilities(&self) -> Vec<String> {
        vec!["body".into()]
    }

    fn get_server_information(&self) -> (String, String, String, String) {
        (
            "stand-in".into(),
            "capwise tests".into(),
            "1".into(),
            "1.2".into(),
        )
    }
}

/// A private dbus-daemon (session bus configuration) that lives as long as the value.
struct PrivateBus {
    child: std::process::Child,
    address: String,
}

impl Drop for PrivateBus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_bus(dir: &Path) -> Result<PrivateBus> {
    let socket = dir.join("bus");
    let config = dir.join("bus.conf");
    std::fs::write(
        &config,
        format!(
            r#"<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>session</type>
  <listen>unix:path={}</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow send_destination="*" eavesdrop="true"/>
    <allow eavesdrop="true"/>
    <allow own="*"/>
  </policy>
</busconfig>"#,
            socket.display()
        ),
    )?;
    let child = std::process::Command::new("dbus-daemon")
        .arg("--nofork")
        .arg(format!("--config-file={}", config.display()))
        .stdout(std::process::Stdio::null())
        .spawn()
        .context("dbus-daemon (Debian's dbus-daemon package) is not installed")?;
    let bus = PrivateBus {
        child,
        address: format!("unix:path={}", socket.display()),
    };
    wait_until(
        "the private bus's socket",
        WAIT,
        Duration::from_millis(10),
        || Ok(socket.exists()),
    )?;
    Ok(bus)
}

/// An agent's directories, its network file and config.
struct Machine {
    state: PathBuf,
    config: PathBuf,
    network_file: PathBuf,
}

fn machine(root: &Path, name: &str, notify: bool) -> Result<Machine> {
    let dir = root.join(name);
    std::fs::create_dir_all(&dir)?;
    let network_file = dir.join("network.toml");
    let config = dir.join("config.toml");
    std::fs::write(
        &config,
        format!(
            "listen = \"127.0.0.1:{}\"\ndownload_dir = \"{}\"\nnetwork_file = \"{}\"\nnotify = {notify}\n[dht]\nenabled = false\n",
            free_port(),
            dir.join("data").display(),
            network_file.display()
        ),
    )?;
    let m = Machine {
        state: dir.join("state"),
        config,
        network_file,
    };
    write_network(&m, "no")?;
    Ok(m)
}

/// Rewrites the network file (atomically), metered `yes` or `no`.
fn write_network(m: &Machine, metered: &str) -> Result<()> {
    let tmp = m.network_file.with_extension("tmp");
    std::fs::write(
        &tmp,
        format!("id = \"notify-test\"\nname = \"Pixel hotspot\"\nkind = \"wifi\"\nmetered = \"{metered}\"\n"),
    )?;
    std::fs::rename(&tmp, &m.network_file)?;
    Ok(())
}

fn start(name: &str, m: &Machine, bus: &PrivateBus, logs: &Path) -> Result<Agent> {
    let mut command = run_command(&m.state, &m.config, None);
    command
        .env("DBUS_SESSION_BUS_ADDRESS", &bus.address)
        .env("CAPWISE_LOG", "info,capwise::notify=debug");
    Agent::start_command(name, &m.state, command, logs, None)
}

fn wait_reason(agent: &mut Agent, reason: &str) -> Result<serde_json::Value> {
    let mut why = serde_json::Value::Null;
    wait_until(
        &format!("why to say {reason}"),
        WAIT,
        Duration::from_millis(200),
        || {
            why = agent.cli_json(&["why"])?;
            Ok(why["reason"] == reason)
        },
    )
    .with_context(|| format!("last why: {why}"))?;
    Ok(why)
}

fn notifications(root: &Path, logs: &Path) -> Result<()> {
    let bus = start_bus(root)?;
    let calls = Arc::new(Mutex::new(Vec::new()));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    let _server = runtime.block_on(async {
        zbus::connection::Builder::address(bus.address.as_str())?
            .name("org.freedesktop.Notifications")?
            .serve_at(
                "/org/freedesktop/Notifications",
                StandIn {
                    calls: calls.clone(),
                },
            )?
            .build()
            .await
    })?;
    let count = || calls.lock().unwrap().len();

    let on = machine(root, "on", true)?;
    let mut agent = start("agent-on", &on, &bus, logs)?;
    wait_reason(&mut agent, "Unmetered")?;
    std::thread::sleep(Duration::from_secs(1));
    ensure!(
        count() == 0,
        "a notification while unmetered: {:?}",
        calls.lock().unwrap()
    );

    write_network(&on, "yes")?;
    let why = wait_reason(&mut agent, "Metered")?;
    wait_until("one notification", WAIT, Duration::from_millis(100), || {
        Ok(count() >= 1)
    })?;
    let (app, summary, body) = calls.lock().unwrap()[0].clone();
    eprintln!("[notify] {app}: {summary}: {body}");
    ensure!(app == "capwise", "app name {app:?}");
    ensure!(
        body == why["explanation"].as_str().unwrap_or_default(),
        "the body is not the decision's sentence: {body:?} vs {why}"
    );
    ensure!(
        body.contains("Pixel hotspot") && body.contains("metered"),
        "{body}"
    );

    // The same state again: the file rewritten as it was, then a budget that changes the
    // decision's sentence (its figures) but not what is held back.
    write_network(&on, "yes")?;
    std::thread::sleep(Duration::from_secs(3));
    agent.cli(&["budget", "set", "notify-test", "--cap", "10GB"])?;
    let mut later = serde_json::Value::Null;
    wait_until(
        "the sentence to change",
        WAIT,
        Duration::from_millis(200),
        || {
            later = wait_reason(&mut agent, "Metered")?;
            Ok(later["explanation"] != why["explanation"])
        },
    )?;
    std::thread::sleep(Duration::from_secs(1));
    ensure!(
        count() == 1,
        "notified again for the same state ({}): {:?}",
        later["explanation"],
        calls.lock().unwrap()
    );
    agent.guard.stop(Duration::from_secs(10))?;

    // notify = false: nothing, whatever happens.
    let off = machine(root, "off", false)?;
    let mut agent = start("agent-off", &off, &bus, logs)?;
    write_network(&off, "yes")?;
    wait_reason(&mut agent, "Metered")?;
    std::thread::sleep(Duration::from_secs(3));
    ensure!(
        count() == 1,
        "notify = false still notified: {:?}",
        calls.lock().unwrap()
    );
    agent.guard.stop(Duration::from_secs(10))?;
    Ok(())
}

#[test]
fn a_change_to_metered_is_said_once_and_notify_false_says_nothing() {
    assert_private_netns();
    let tmp = tempfile::Builder::new()
        .prefix("capwise-notify-")
        .tempdir()
        .expect("temp dir");
    let logs = tmp.path().join("logs");
    if let Err(e) = notifications(tmp.path(), &logs) {
        dump_logs(&logs, None);
        if std::env::var_os("CAPWISE_KEEP_TMP").is_some() {
            eprintln!("[notify] kept {}", tmp.keep().display());
        }
        panic!("[notify] failed: {e:#}");
    }
}
