//! `capwise config show`: the configuration `capwise run` would use with
//! the same flags, every key with its value and where the value comes
//! from (the default, the file, a flag or an environment variable). The
//! text is TOML that loads back to the same configuration, each line with
//! its source as a comment; keys left unset are comments too.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::Result;
use capwise_policy::decision::Settings;
use clap::{Args, Subcommand};
use serde_json::json;
use toml::Value;

use super::output::print_json;
use crate::cli_agent::RunArgs;
use crate::config::{self, Config};

/// `capwise config`
#[derive(Debug, Args)]
pub struct ConfigArgs {
    /// What to do.
    #[command(subcommand)]
    pub command: ConfigCommand,
}

/// `capwise config` subcommands.
#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// The effective configuration of `capwise run` with these flags, and
    /// where each value comes from (default, file, flag, environment).
    Show(ConfigShowArgs),
}

/// `capwise config show`
#[derive(Debug, Args)]
pub struct ConfigShowArgs {
    /// The flags `capwise run` would be given.
    #[command(flatten)]
    pub run: RunArgs,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

/// Where a value comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// capwise's own default.
    Default,
    /// The configuration file.
    File,
    /// A command-line flag (named).
    Flag(&'static str),
    /// An environment variable (named).
    Environment(&'static str),
}

impl Source {
    fn kind(&self) -> &'static str {
        match self {
            Source::Default => "default",
            Source::File => "file",
            Source::Flag(_) => "flag",
            Source::Environment(_) => "environment",
        }
    }

    fn detail(&self) -> Option<&'static str> {
        match self {
            Source::Flag(name) | Source::Environment(name) => Some(name),
            Source::Default | Source::File => None,
        }
    }

    fn words(&self) -> String {
        match self.detail() {
            Some(name) => format!("{} {name}", self.kind()),
            None => self.kind().to_string(),
        }
    }
}

/// One key of the configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    /// Its table, "" for the top level.
    pub table: &'static str,
    /// The key.
    pub key: &'static str,
    /// The value in force; `None` when unset (see `unset`).
    pub value: Option<Value>,
    /// What an unset key means ("unlimited").
    pub unset: &'static str,
    /// Where the value comes from.
    pub source: Source,
}

/// A path and where it comes from.
#[derive(Debug, Clone)]
pub struct Located {
    /// The path, if there is one.
    pub path: Option<PathBuf>,
    /// Who chose it.
    pub source: Source,
}

/// The effective configuration.
#[derive(Debug, Clone)]
pub struct Effective {
    /// The configuration file, whether or not it exists.
    pub file: Located,
    /// Whether it exists (a missing default file means all defaults).
    pub file_exists: bool,
    /// The state directory.
    pub state_dir: Located,
    /// Every key, in the order of the file's documentation.
    pub entries: Vec<Entry>,
    /// The file's warnings (unknown keys ignored).
    pub warnings: Vec<String>,
}

/// Runs `capwise config show`.
pub fn run(args: &ConfigArgs) -> Result<()> {
    match &args.command {
        ConfigCommand::Show(show) => {
            let config = config::load(show.run.config.as_deref())?.config;
            let effective = effective(&config, &show.run)?;
            if show.json {
                print_json(&to_json(&effective));
            } else {
                print!("{}", to_text(&effective));
            }
            Ok(())
        }
    }
}

/// The configuration file `--config` names, else the default one.
fn config_file(flag: Option<&Path>) -> Located {
    if let Some(path) = flag {
        return Located {
            path: Some(path.to_owned()),
            source: Source::Flag("--config"),
        };
    }
    let source = if std::env::var_os("XDG_CONFIG_HOME").is_some_and(|d| !d.is_empty()) {
        Source::Environment("XDG_CONFIG_HOME")
    } else {
        Source::Default
    };
    Located {
        path: config::default_config_path(),
        source,
    }
}

fn state_dir(flag: Option<&Path>) -> Located {
    let source = match flag {
        Some(_) => Source::Flag("--state-dir"),
        None if std::env::var_os("XDG_STATE_HOME").is_some_and(|d| !d.is_empty()) => {
            Source::Environment("XDG_STATE_HOME")
        }
        None => Source::Default,
    };
    Located {
        path: Some(crate::state_db::state_dir(flag)),
        source,
    }
}

fn string(s: impl Into<String>) -> Value {
    Value::String(s.into())
}

fn path_value(p: &Path) -> Value {
    string(p.display().to_string())
}

/// A rate in bytes per second as the file would say it.
fn rate_text(bytes_per_second: u64) -> Value {
    if bytes_per_second.is_multiple_of(1000) {
        string(format!("{}KB/s", bytes_per_second / 1000))
    } else {
        string(format!("{bytes_per_second}B/s"))
    }
}

fn strings(list: &[String]) -> Value {
    Value::Array(list.iter().cloned().map(Value::String).collect())
}

/// The file's value if it set one, else the default.
fn file_or(file: Option<Value>, default: Option<Value>) -> (Option<Value>, Source) {
    match file {
        Some(v) => (Some(v), Source::File),
        None => (default, Source::Default),
    }
}

/// Every key of `config` as `capwise run` with `args` would take it.
pub fn effective(config: &Config, args: &RunArgs) -> Result<Effective> {
    let defaults = Settings::default();
    let state = state_dir(args.state_dir.as_deref());
    let mut entries = Vec::new();
    let mut push = |table, key, (value, source): (Option<Value>, Source), unset| {
        entries.push(Entry {
            table,
            key,
            value,
            unset,
            source,
        })
    };

    // Top level.
    let download_dir = match &config.download_dir {
        Some(dir) => (Some(path_value(dir)), Source::File),
        None => {
            let dir = config::default_download_dir(state.path.as_deref().unwrap_or(Path::new(".")));
            let source = if std::env::var_os("XDG_DOWNLOAD_DIR").is_some_and(|d| !d.is_empty()) {
                Source::Environment("XDG_DOWNLOAD_DIR")
            } else {
                Source::Default
            };
            (Some(path_value(&dir)), source)
        }
    };
    push("", "download_dir", download_dir, "");
    let listen = config.listen.map(|a| string(a.to_string()));
    push(
        "",
        "listen",
        file_or(listen, Some(string("0.0.0.0:6881"))),
        "",
    );
    let network_file = match (&args.network_file, &config.network_file) {
        (Some(path), _) => (Some(path_value(path)), Source::Flag("--network-file")),
        (None, Some(path)) => (Some(path_value(path)), Source::File),
        (None, None) => (None, Source::Default),
    };
    push(
        "",
        "network_file",
        network_file,
        "detected: NetworkManager, else the kernel's routes",
    );
    let encryption = config.encryption(args.wire.encryption)?;
    let encryption = (
        Some(string(encryption.to_string())),
        match (&args.wire.encryption, &config.encryption) {
            (Some(_), _) => Source::Flag("--encryption"),
            (None, Some(_)) => Source::File,
            (None, None) => Source::Default,
        },
    );
    push("", "encryption", encryption, "");
    let transports = config.transports(args.wire.transports.as_ref())?;
    let names: Vec<String> = transports
        .order()
        .iter()
        .map(|c| c.name().to_string())
        .collect();
    let transports = (
        Some(strings(&names)),
        match (&args.wire.transports, &config.transports) {
            (Some(_), _) => Source::Flag("--transports"),
            (None, Some(_)) => Source::File,
            (None, None) => Source::Default,
        },
    );
    push("", "transports", transports, "");
    let notify = config.notify.map(Value::Boolean);
    push(
        "",
        "notify",
        file_or(notify, Some(Value::Boolean(true))),
        "",
    );
    let blocklist = config.blocklist.as_ref().map(|paths| {
        let names: Vec<String> = paths
            .as_slice()
            .iter()
            .map(|p| p.display().to_string())
            .collect();
        strings(&names)
    });
    push("", "blocklist", file_or(blocklist, None), "none");
    push(
        "",
        "incomplete_dir",
        file_or(config.incomplete_dir.as_deref().map(path_value), None),
        "none: data goes straight to the download directory",
    );
    push(
        "",
        "on_complete",
        file_or(config.on_complete.as_deref().map(strings), None),
        "none",
    );
    push(
        "",
        "watch_dir",
        file_or(config.watch_dir.as_deref().map(path_value), None),
        "none",
    );

    // [net]
    push(
        "net",
        "port_mapping",
        file_or(
            config.net.port_mapping.map(Value::Boolean),
            Some(Value::Boolean(true)),
        ),
        "",
    );
    let interface = config.interface(args.wire.interface.as_deref())?;
    let interface = (
        interface.map(string),
        match (&args.wire.interface, &config.net.interface) {
            (Some(_), _) => Source::Flag("--interface"),
            (None, Some(_)) => Source::File,
            (None, None) => Source::Default,
        },
    );
    push(
        "net",
        "interface",
        interface,
        "none: the routing table decides",
    );

    // [quic]
    push(
        "quic",
        "allow",
        file_or(config.quic.allow.as_deref().map(strings), None),
        "any agent (unless allow_file lists some)",
    );
    push(
        "quic",
        "allow_file",
        file_or(config.quic.allow_file.as_deref().map(path_value), None),
        "none",
    );

    // [seeding]
    push(
        "seeding",
        "ratio",
        file_or(config.seeding.ratio.map(Value::Float), None),
        "none: seed on",
    );
    push(
        "seeding",
        "seed_time",
        file_or(config.seeding.seed_time.clone().map(string), None),
        "none: seed on",
    );

    // [queue]
    push(
        "queue",
        "max_active_downloads",
        file_or(
            config
                .queue
                .max_active_downloads
                .map(|n| Value::Integer(n as i64)),
            Some(Value::Integer(
                crate::daemon::torrents::DEFAULT_MAX_ACTIVE_DOWNLOADS as i64,
            )),
        ),
        "0: no limit",
    );
    push(
        "queue",
        "max_active_seeds",
        file_or(
            config
                .queue
                .max_active_seeds
                .map(|n| Value::Integer(n as i64)),
            Some(Value::Integer(0)),
        ),
        "0: no limit",
    );

    // [limits]
    let l = &config.limits;
    for (table, key, value) in [
        ("limits", "up", &l.up),
        ("limits", "down", &l.down),
        ("limits.wan", "up", &l.wan.up),
        ("limits.wan", "down", &l.wan.down),
        ("limits.lan", "up", &l.lan.up),
        ("limits.lan", "down", &l.lan.down),
    ] {
        push(
            table,
            key,
            file_or(value.clone().map(string), None),
            "unlimited",
        );
    }

    // [policy]
    let p = &config.policy;
    push(
        "policy",
        "upload_on_metered",
        file_or(
            p.upload_on_metered.map(Value::Boolean),
            Some(Value::Boolean(defaults.upload_on_metered)),
        ),
        "",
    );
    push(
        "policy",
        "background_on_metered",
        file_or(
            p.background_on_metered.map(Value::Boolean),
            Some(Value::Boolean(defaults.background_on_metered)),
        ),
        "",
    );
    push(
        "policy",
        "metered_download_rate",
        file_or(
            p.metered_download_rate.clone().map(string),
            defaults.metered_download_rate.map(rate_text),
        ),
        "unlimited",
    );
    push(
        "policy",
        "near_cap_percent",
        file_or(
            p.near_cap_percent.map(|v| Value::Integer(v.into())),
            Some(Value::Integer(defaults.near_cap_percent.into())),
        ),
        "",
    );
    push(
        "policy",
        "near_cap_download_rate",
        file_or(
            p.near_cap_download_rate.clone().map(string),
            Some(rate_text(defaults.near_cap_download_rate)),
        ),
        "",
    );
    push(
        "policy",
        "suspend_when_roaming",
        file_or(
            p.suspend_when_roaming.map(Value::Boolean),
            Some(Value::Boolean(defaults.suspend_when_roaming)),
        ),
        "",
    );

    // [power]
    push(
        "power",
        "wan_uploads_on_battery",
        file_or(
            config.power.wan_uploads_on_battery.map(Value::Boolean),
            Some(Value::Boolean(defaults.wan_uploads_on_battery)),
        ),
        "",
    );
    push(
        "power",
        "background_below_percent",
        file_or(
            config
                .power
                .background_below_percent
                .map(|v| Value::Integer(v.into())),
            Some(Value::Integer(defaults.background_below_percent.into())),
        ),
        "",
    );

    // [api]
    push(
        "api",
        "address",
        file_or(
            config.api.address.map(|a| string(a.to_string())),
            Some(string(config.api_address().to_string())),
        ),
        "",
    );
    push(
        "api",
        "remote_listen",
        file_or(
            config.api.remote_listen.map(|a| string(a.to_string())),
            None,
        ),
        "loopback only",
    );
    push(
        "api",
        "tls_cert",
        file_or(config.api.tls_cert.as_deref().map(path_value), None),
        "a self-signed certificate in the state directory",
    );
    push(
        "api",
        "tls_key",
        file_or(config.api.tls_key.as_deref().map(path_value), None),
        "the self-signed certificate's key",
    );

    // [lsd], [pex], [dht]: each a flag over the file over the default.
    let switch = |flag: bool, name: &'static str, file: Option<bool>| {
        if flag {
            (Some(Value::Boolean(false)), Source::Flag(name))
        } else {
            file_or(file.map(Value::Boolean), Some(Value::Boolean(true)))
        }
    };
    push(
        "lsd",
        "enabled",
        switch(args.discovery.no_lsd, "--no-lsd", config.lsd.enabled),
        "",
    );
    push(
        "pex",
        "enabled",
        switch(args.discovery.no_pex, "--no-pex", config.pex.enabled),
        "",
    );
    push(
        "dht",
        "enabled",
        switch(args.discovery.dht.no_dht, "--no-dht", config.dht.enabled),
        "",
    );
    let bootstrap = if !args.discovery.dht.dht_bootstrap.is_empty() {
        (
            Some(strings(&args.discovery.dht.dht_bootstrap)),
            Source::Flag("--dht-bootstrap"),
        )
    } else {
        let defaults: Vec<String> = crate::dht::DEFAULT_BOOTSTRAP
            .iter()
            .map(|s| s.to_string())
            .collect();
        file_or(
            config.dht.bootstrap.as_deref().map(strings),
            Some(strings(&defaults)),
        )
    };
    push("dht", "bootstrap", bootstrap, "");

    // [channel], [site], [metrics]
    push(
        "channel",
        "report_listen",
        file_or(
            config.channel.report_listen.map(|a| string(a.to_string())),
            None,
        ),
        "no delivery reports received here",
    );
    let prefixes = (!config.site.prefixes.is_empty()).then(|| strings(&config.site.prefixes));
    push(
        "site",
        "prefixes",
        file_or(prefixes, Some(Value::Array(Vec::new()))),
        "",
    );
    push(
        "site",
        "wan_rate",
        file_or(config.site.wan_rate.clone().map(string), None),
        "no site cap",
    );
    push(
        "metrics",
        "listen",
        file_or(config.metrics.listen.map(|a| string(a.to_string())), None),
        "only on the API's listener, with the metrics token",
    );

    let file = config_file(args.config.as_deref());
    let file_exists = file.path.as_deref().is_some_and(Path::exists);
    Ok(Effective {
        file,
        file_exists,
        state_dir: state,
        entries,
        warnings: config.warnings.clone(),
    })
}

/// The text form: TOML with each key's source as a comment.
pub fn to_text(e: &Effective) -> String {
    let mut out = String::new();
    let file = match (&e.file.path, e.file_exists) {
        (Some(path), true) => format!("{} ({})", path.display(), e.file.source.words()),
        (Some(path), false) => format!(
            "{} ({}), which does not exist: defaults",
            path.display(),
            e.file.source.words()
        ),
        (None, _) => "none (no $HOME or $XDG_CONFIG_HOME): defaults".into(),
    };
    let _ = writeln!(out, "# capwise run's configuration; file: {file}");
    if let Some(dir) = &e.state_dir.path {
        let _ = writeln!(
            out,
            "# state directory: {} ({})",
            dir.display(),
            e.state_dir.source.words()
        );
    }
    for warning in &e.warnings {
        let _ = writeln!(out, "# warning: {warning}");
    }
    let mut table = "";
    for entry in &e.entries {
        if entry.table != table {
            table = entry.table;
            let _ = writeln!(out, "\n[{table}]");
        }
        let line = match &entry.value {
            Some(value) => format!("{} = {value}", entry.key),
            None => format!("# {}: not set, {}", entry.key, entry.unset),
        };
        let _ = writeln!(out, "{line:<44} # {}", entry.source.words());
    }
    out
}

/// The JSON form: the file, the state directory, and every key.
pub fn to_json(e: &Effective) -> serde_json::Value {
    let located = |l: &Located| {
        json!({
            "path": l.path.as_ref().map(|p| p.display().to_string()),
            "source": l.source.kind(),
            "detail": l.source.detail(),
        })
    };
    let mut file = located(&e.file);
    file["exists"] = e.file_exists.into();
    let values: Vec<serde_json::Value> = e
        .entries
        .iter()
        .map(|entry| {
            let key = if entry.table.is_empty() {
                entry.key.to_string()
            } else {
                format!("{}.{}", entry.table, entry.key)
            };
            json!({
                "key": key,
                "value": entry.value.as_ref().map(|v| serde_json::to_value(v).unwrap_or_default()),
                "source": entry.source.kind(),
                "detail": entry.source.detail(),
                "unset": entry.value.is_none().then_some(entry.unset),
            })
        })
        .collect();
    json!({
        "file": file,
        "state_dir": located(&e.state_dir),
        "values": values,
        "warnings": e.warnings,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::{Cli, Command};
    use clap::Parser;

    fn show_args(argv: &[&str]) -> ConfigShowArgs {
        let mut full = vec!["capwise", "config", "show"];
        full.extend_from_slice(argv);
        match Cli::try_parse_from(full).unwrap().command {
            Command::Config(ConfigArgs {
                command: ConfigCommand::Show(a),
            }) => a,
            other => panic!("{other:?}"),
        }
    }

    fn entry<'a>(e: &'a Effective, table: &str, key: &str) -> &'a Entry {
        e.entries
            .iter()
            .find(|x| x.table == table && x.key == key)
            .unwrap_or_else(|| panic!("{table}.{key} shown"))
    }

    const FILE: &str = "listen = \"0.0.0.0:7000\"\nencryption = \"allow\"\n\
        [limits.wan]\ndown = \"2MB/s\"\n[policy]\nnear_cap_percent = 70\n\
        [power]\nbackground_below_percent = 20\n[lsd]\nenabled = true\n";

    #[test]
    fn each_value_says_whether_the_default_the_file_or_a_flag_set_it() {
        let config = config::parse(FILE).unwrap().config;
        let args = show_args(&[
            "--config",
            "/etc/capwise/config.toml",
            "--no-lsd",
            "--encryption",
            "require",
            "--state-dir",
            "/var/lib/capwise",
        ]);
        let e = effective(&config, &args.run).unwrap();
        let listen = entry(&e, "", "listen");
        assert_eq!(
            (listen.value.clone(), &listen.source),
            (Some(string("0.0.0.0:7000")), &Source::File)
        );
        let enc = entry(&e, "", "encryption");
        assert_eq!(enc.value, Some(string("require")), "the flag wins");
        assert_eq!(enc.source, Source::Flag("--encryption"));
        let lsd = entry(&e, "lsd", "enabled");
        assert_eq!(
            (lsd.value.clone(), &lsd.source),
            (Some(Value::Boolean(false)), &Source::Flag("--no-lsd"))
        );
        let pex = entry(&e, "pex", "enabled");
        assert_eq!(
            (pex.value.clone(), &pex.source),
            (Some(Value::Boolean(true)), &Source::Default)
        );
        assert_eq!(entry(&e, "limits.wan", "down").source, Source::File);
        let up = entry(&e, "limits", "up");
        assert_eq!((up.value.clone(), up.unset), (None, "unlimited"));
        assert_eq!(
            entry(&e, "policy", "near_cap_percent").value,
            Some(Value::Integer(70))
        );
        let battery = entry(&e, "power", "wan_uploads_on_battery");
        assert_eq!(
            (battery.value.clone(), &battery.source),
            (Some(Value::Boolean(false)), &Source::Default)
        );
        assert_eq!(e.file.source, Source::Flag("--config"));
        assert_eq!(e.state_dir.source, Source::Flag("--state-dir"));
        // Every key the file may hold is shown, once, and only those.
        let tables: Vec<&str> = config::KNOWN_KEYS.iter().map(|(t, _)| *t).collect();
        let mut known: Vec<(&str, &str)> = config::KNOWN_KEYS
            .iter()
            .flat_map(|(t, keys)| keys.iter().map(move |k| (*t, *k)))
            .filter(|(t, k)| {
                let path = if t.is_empty() {
                    k.to_string()
                } else {
                    format!("{t}.{k}")
                };
                !tables.contains(&path.as_str())
            })
            .collect();
        let mut shown: Vec<(&str, &str)> = e.entries.iter().map(|x| (x.table, x.key)).collect();
        known.sort_unstable();
        shown.sort_unstable();
        assert_eq!(shown, known);
    }

    #[test]
    fn the_text_is_toml_that_loads_back_to_the_same_configuration() {
        let config = config::parse(FILE).unwrap().config;
        let args = show_args(&["--no-pex", "--dht-bootstrap", "10.0.0.1:6881"]);
        let e = effective(&config, &args.run).unwrap();
        let text = to_text(&e);
        assert!(text.contains("listen = \"0.0.0.0:7000\""), "{text}");
        assert!(text.contains("# file\n"), "{text}");
        assert!(text.contains("# flag --no-pex\n"), "{text}");
        assert!(text.contains("# up: not set, unlimited"), "{text}");
        let back = config::parse(&text).unwrap().config;
        assert!(back.warnings.is_empty(), "{:?}", back.warnings);
        assert_eq!(back.settings().unwrap(), config.settings().unwrap());
        assert_eq!(back.limits().unwrap(), config.limits().unwrap());
        assert_eq!(back.api_address(), config.api_address());
        assert!(!back.pex_enabled(false), "the flag's value is written down");
        assert_eq!(
            back.dht.bootstrap.as_deref(),
            Some(&["10.0.0.1:6881".to_string()][..])
        );
        // The defaults load back to the defaults too.
        let defaults = effective(&Config::default(), &show_args(&[]).run).unwrap();
        let back = config::parse(&to_text(&defaults)).unwrap().config;
        assert_eq!(back.settings().unwrap(), Settings::default());
        assert!(back.warnings.is_empty(), "{:?}", back.warnings);
    }

    #[test]
    fn the_json_names_each_key_value_and_source() {
        let config = config::parse(FILE).unwrap().config;
        let e = effective(&config, &show_args(&["--no-dht"]).run).unwrap();
        let j = to_json(&e);
        let values = j["values"].as_array().unwrap();
        let find = |key: &str| {
            values
                .iter()
                .find(|v| v["key"] == key)
                .unwrap_or_else(|| panic!("{key} in {j}"))
                .clone()
        };
        assert_eq!(
            find("power.background_below_percent"),
            json!({"key": "power.background_below_percent", "value": 20,
                   "source": "file", "detail": null, "unset": null})
        );
        assert_eq!(find("dht.enabled")["source"], "flag");
        assert_eq!(find("dht.enabled")["detail"], "--no-dht");
        assert_eq!(find("limits.up")["value"], json!(null));
        assert_eq!(find("limits.up")["unset"], "unlimited");
        assert_eq!(find("transports")["value"], json!(["tcp", "utp"]), "{j}");
        assert_eq!(
            find("net.interface")["unset"],
            "none: the routing table decides"
        );
    }

    #[test]
    fn the_interface_comes_from_the_flag_over_the_file() {
        let file = config::parse("[net]\ninterface = \"wg0\"\n")
            .unwrap()
            .config;
        let e = effective(&file, &show_args(&[]).run).unwrap();
        let i = entry(&e, "net", "interface");
        assert_eq!(
            (i.value.clone(), &i.source),
            (Some(string("wg0")), &Source::File)
        );
        let e = effective(&file, &show_args(&["--interface", "tun0"]).run).unwrap();
        let i = entry(&e, "net", "interface");
        assert_eq!(
            (i.value.clone(), &i.source),
            (Some(string("tun0")), &Source::Flag("--interface"))
        );
        let back = config::parse(&to_text(&e)).unwrap().config;
        assert_eq!(back.interface(None).unwrap().as_deref(), Some("tun0"));
        assert!(Cli::try_parse_from(["capwise", "run", "--interface", "a/b"]).is_err());
    }
}
