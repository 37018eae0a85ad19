//! The policy commands, run as the built binary against a temporary state
//! directory: budgets, networks, usage, `why`, and bad input.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use capwise_policy::budget::Budget;
use capwise_policy::network::NetworkId;
use capwise_policy::store::Store;
use capwise_policy::time::Timestamp;
use serde_json::Value;

struct Env {
    dir: tempfile::TempDir,
}

impl Env {
    fn new() -> Env {
        Env {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    fn state_dir(&self) -> PathBuf {
        self.dir.path().join("state")
    }

    /// Runs `capwise ARGS --state-dir STATE` with the machine's zone UTC,
    /// so that budgets without a zone flag do not depend on the host.
    fn run(&self, args: &[&str]) -> Output {
        self.run_in_zone(args, "UTC")
    }

    /// Runs `capwise ARGS --state-dir STATE` with `TZ=tz`.
    fn run_in_zone(&self, args: &[&str], tz: &str) -> Output {
        Command::new(env!("CARGO_BIN_EXE_capwise"))
            .args(args)
            .arg("--state-dir")
            .arg(self.state_dir())
            .env("CAPWISE_LOG", "warn")
            .env("TZ", tz)
            // The default configuration file is the test's, never the host's.
            .env("XDG_CONFIG_HOME", self.dir.path().join("config"))
            .output()
            .unwrap()
    }

    /// Runs and requires success; returns stdout.
    fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "capwise {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// Runs with `--json` and parses the output.
    fn json(&self, args: &[&str]) -> Value {
        let mut args = args.to_vec();
        args.push("--json");
        let text = self.ok(&args);
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
    }

    /// Runs and requires failure; returns stderr.
    fn fails(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(!out.status.success(), "capwise {args:?} should fail");
        String::from_utf8(out.stderr).unwrap()
    }

    fn network_file(&self, name: &str, toml: &str) -> PathBuf {
        let path = self.dir.path().join(name);
        std::fs::write(&path, toml).unwrap();
        path
    }
}

fn path_str(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn budget_set_list_rm_round_trip_in_text_and_json() {
    let env = Env::new();
    let text = env.ok(&["budget", "set", "hotspot", "--cap", "5GB"]);
    assert!(text.contains("5 GB"), "{text}");
    assert!(text.contains("stops at 4.5 GB"), "{text}");

    let set = env.json(&[
        "budget",
        "set",
        "satellite",
        "--cap",
        "100GiB",
        "--period",
        "weekly",
        "--cycle-day",
        "wed",
        "--reserve",
        "20%",
        "--count",
        "up",
    ]);
    assert_eq!(set["cap_bytes"], 100 * 1024 * 1024 * 1024u64);
    assert_eq!(set["period"], "weekly");
    assert_eq!(set["cycle_day"], 3, "Wednesday is ISO day 3");
    assert_eq!(set["counts"], "up");
    assert_eq!(set["reserve_percent"], 20);

    let list = env.json(&["budget", "list"]);
    let list = list.as_array().unwrap();
    assert_eq!(list.len(), 2);
    let hotspot = list.iter().find(|b| b["network_id"] == "hotspot").unwrap();
    assert_eq!(hotspot["cap_bytes"], 5_000_000_000u64);
    assert_eq!(hotspot["period"], "monthly");
    assert_eq!(hotspot["cycle_day"], 1);
    assert_eq!(hotspot["reserve_percent"], 10);
    assert_eq!(hotspot["agent_limit_bytes"], 4_500_000_000u64);
    assert_eq!(hotspot["used_bytes"], 0);

    let text = env.ok(&["budget", "list"]);
    assert!(
        text.contains("hotspot") && text.contains("satellite"),
        "{text}"
    );
    assert!(text.contains("weekly from Wednesday"), "{text}");

    let removed = env.json(&["budget", "rm", "hotspot"]);
    assert_eq!(removed["removed"], "hotspot");
    let list = env.json(&["budget", "list"]);
    assert_eq!(list.as_array().unwrap().len(), 1);
    assert_eq!(list[0]["network_id"], "satellite");

    let err = env.fails(&["budget", "rm", "hotspot"]);
    assert!(err.contains("has no budget"), "{err}");
    let text = env.ok(&["budget", "rm", "satellite"]);
    assert!(text.contains("removed"), "{text}");
    assert!(env.ok(&["budget", "list"]).contains("no budgets"));
}

#[test]
fn budget_time_zone_by_name_offset_or_machine() {
    let env = Env::new();
    let set = env.json(&[
        "budget",
        "set",
        "paris",
        "--cap",
        "1GB",
        "--period",
        "daily",
        "--time-zone",
        "Europe/Paris",
    ]);
    assert_eq!(set["time_zone"], "Europe/Paris");
    let length = set["period_end"].as_i64().unwrap() - set["period_start"].as_i64().unwrap();
    assert!(
        [23, 24, 25].contains(&(length / 3600)) && length % 3600 == 0,
        "{set}"
    );
    let set = env.json(&[
        "budget",
        "set",
        "fixed",
        "--cap",
        "1GB",
        "--utc-offset",
        "-05:30",
    ]);
    assert_eq!(set["time_zone"], "-05:30");
    assert_eq!(set["utc_offset_seconds"], -(5 * 3600 + 1800));
    // Neither flag: the machine's zone, by name.
    let out = env.run_in_zone(
        &["budget", "set", "machine", "--cap", "1GB", "--json"],
        "America/New_York",
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let set: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(set["time_zone"], "America/New_York");

    let text = env.ok(&["budget", "list"]);
    assert!(
        text.contains("ZONE") && text.contains("Europe/Paris") && text.contains("-05:30"),
        "{text}"
    );
    let list = env.json(&["budget", "list"]);
    let zones: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["time_zone"].as_str().unwrap())
        .collect();
    assert_eq!(zones, ["-05:30", "America/New_York", "Europe/Paris"]);

    let err = env.fails(&[
        "budget",
        "set",
        "x",
        "--cap",
        "1GB",
        "--time-zone",
        "Europe/Atlantis",
    ]);
    assert!(
        err.contains("Europe/Atlantis") && err.contains("IANA"),
        "{err}"
    );
    let err = env.fails(&[
        "budget",
        "set",
        "x",
        "--cap",
        "1GB",
        "--time-zone",
        "Europe/Paris",
        "--utc-offset",
        "+01:00",
    ]);
    assert!(err.contains("cannot be used with"), "{err}");
}

#[test]
fn bad_input_is_a_clear_error_and_a_failure() {
    let env = Env::new();
    let err = env.fails(&["budget", "set", "x", "--cap", "lots"]);
    assert!(err.contains("lots") && err.contains("--cap"), "{err}");
    let err = env.fails(&["network", "set", "x", "--metered", "maybe"]);
    assert!(err.contains("maybe") && err.contains("yes"), "{err}");
    // A size is explained with sizes.
    let err = env.fails(&["budget", "set", "x", "--cap", "lots"]);
    assert!(err.contains("5GB") && !err.contains("KB/s"), "{err}");
    let err = env.fails(&["budget", "set", "x", "--cap", "1GB", "--reserve", "150"]);
    assert!(err.contains("0 to 99"), "{err}");
    let err = env.fails(&["budget", "set", "x", "--cap", "1GB", "--reserve", "100"]);
    assert!(err.contains("nothing to use"), "{err}");
    let err = env.fails(&["budget", "set", "x", "--cap", "0"]);
    assert!(err.contains("--cap 0"), "{err}");
    let err = env.fails(&["budget", "set", "x", "--cap", "1GB", "--cycle-day", "32"]);
    assert!(err.contains("1-31"), "{err}");
    let err = env.fails(&[
        "budget",
        "set",
        "x",
        "--cap",
        "1GB",
        "--period",
        "daily",
        "--cycle-day",
        "3",
    ]);
    assert!(err.contains("monthly and weekly"), "{err}");
    let err = env.fails(&["budget", "set", "  ", "--cap", "1GB"]);
    assert!(err.contains("empty"), "{err}");
    // Nothing was stored by the failed commands.
    assert_eq!(env.json(&["budget", "list"]), Value::Array(vec![]));
}

#[test]
fn network_set_shows_in_network_list() {
    let env = Env::new();
    let set = env.json(&["network", "set", "pixel", "--metered", "yes"]);
    assert_eq!(set["metered"], "yes");
    let list = env.json(&["network", "list"]);
    let pixel = list
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["id"] == "pixel")
        .expect("pixel listed");
    assert_eq!(pixel["metered"], "yes");
    assert_eq!(pixel["has_budget"], false);

    env.ok(&["network", "set", "pixel", "--metered", "auto"]);
    let list = env.json(&["network", "list"]);
    assert_eq!(list[0]["metered"], "auto");
    assert!(env.ok(&["network", "list"]).contains("pixel"));
}

#[test]
fn why_explains_unmetered_metered_and_exhausted_networks() {
    let env = Env::new();
    let home = env.network_file("home.toml", "id = \"home\"\nmetered = \"no\"\n");
    let text = env.ok(&["why", "--network-file", path_str(&home)]);
    assert!(text.starts_with("No limits"), "{text}");
    let why = env.json(&["why", "--network-file", path_str(&home)]);
    assert_eq!(why["reason"], "Unmetered");
    assert_eq!(why["allowances"]["up_wan"], "unlimited");
    assert_eq!(why["network"]["id"], "home");
    // The shape the running agent's answer has too.
    assert_eq!(why["source"], "network file");
    assert_eq!(why["counts_against_budget"], true);
    assert_eq!(why["seeding_wan"], true);
    assert_eq!(why["seeding_lan"], true);

    let hotspot = env.network_file(
        "hotspot.toml",
        "id = \"hotspot\"\nname = \"Pixel hotspot\"\nkind = \"wifi\"\nmetered = \"yes\"\n",
    );
    let text = env.ok(&["why", "--network-file", path_str(&hotspot)]);
    // LAN peers are still served: the sentence does not say "seeding paused".
    assert!(
        text.starts_with("Uploads to the internet paused and background torrents wait"),
        "{text}"
    );
    assert!(
        text.contains("peers on your LAN are still served"),
        "{text}"
    );
    assert!(!text.contains("Seeding paused"), "{text}");
    assert!(text.contains("Pixel hotspot"), "{text}");
    let why = env.json(&["why", "--network-file", path_str(&hotspot)]);
    assert_eq!(why["reason"], "Metered");
    assert_eq!(why["allowances"]["up_wan"], "suspended");
    assert_eq!(why["allowances"]["down_wan"], "unlimited");
    assert_eq!(why["allowances"]["up_lan"], "unlimited");
    assert_eq!(why["seeding_wan"], false, "{why}");
    assert_eq!(why["seeding_lan"], true, "{why}");
    assert_eq!(why["explanation"], text.trim_end());

    // A budget nearly used: 1 MB cap, 10% reserve, 900 kB already spent.
    env.ok(&["budget", "set", "hotspot", "--cap", "1MB"]);
    {
        let now = Timestamp::now_from_system();
        let store = Store::open(&env.state_dir().join("capwise.db"), now).unwrap();
        let id = NetworkId::new("hotspot");
        let budget: Budget = store.budget(&id).unwrap().unwrap();
        store
            .raise_reservation(&id, budget.bounds(now).0, 900_000)
            .unwrap();
    }
    let text = env.ok(&["why", "--network-file", path_str(&hotspot)]);
    assert!(text.contains("reached its limit"), "{text}");
    let why = env.json(&["why", "--network-file", path_str(&hotspot)]);
    assert_eq!(why["reason"], "AtCap");
    assert_eq!(why["allowances"]["down_wan"], "suspended", "{why}");
    assert_eq!(why["allowances"]["up_wan"], "suspended", "{why}");
    // LAN peers cost nothing, even at the cap.
    assert_eq!(why["allowances"]["down_lan"], "unlimited", "{why}");
    let usage = env.json(&["usage", "hotspot"]);
    assert_eq!(usage[0]["budget"]["used_bytes"], 900_000);
    assert_eq!(usage[0]["budget"]["available_bytes"], 0);
}

#[test]
fn schedule_add_list_rm_and_why_obeys_it() {
    let env = Env::new();
    let office = env.network_file(
        "office.toml",
        "id = \"office\"\nname = \"Office\"\nmetered = \"no\"\n",
    );
    // A window that always holds: paused all day, every day.
    let added = env.json(&[
        "schedule",
        "add",
        "office",
        "--from",
        "00:00",
        "--to",
        "24:00",
        "--rule",
        "pause",
        "--time-zone",
        "Europe/Paris",
    ]);
    assert_eq!(added["window"], 1);
    assert_eq!(added["time_zone"], "Europe/Paris");
    let why = env.json(&["why", "--network-file", path_str(&office)]);
    assert_eq!(why["reason"], "SchedulePause", "{why}");
    assert_eq!(why["allowances"]["up_wan"], "suspended", "{why}");

    // A second window in another zone is refused; without a zone it joins.
    let err = env.fails(&[
        "schedule",
        "add",
        "office",
        "--from",
        "22:00",
        "--to",
        "06:00",
        "--rule",
        "free",
        "--time-zone",
        "Asia/Tokyo",
    ]);
    assert!(err.contains("share one zone"), "{err}");
    env.ok(&[
        "schedule", "add", "office", "--from", "22:00", "--to", "06:00", "--days", "mon-fri",
        "--rule", "limit", "--up", "100KB/s",
    ]);
    let list = env.json(&["schedule", "list"]);
    let windows = list.as_array().unwrap();
    assert_eq!(windows.len(), 2, "{list}");
    assert_eq!(windows[1]["days"], "Mon-Fri");
    assert_eq!(windows[1]["rule"], "limit");
    assert_eq!(windows[1]["up_rate"], 100_000);
    assert_eq!(windows[1]["time_zone"], "Europe/Paris");
    assert!(env
        .ok(&["schedule", "list"])
        .contains("22:00-06:00 (to the next day)"));

    // Removing the all-day pause frees the office again.
    let removed = env.json(&["schedule", "rm", "office", "--window", "1"]);
    assert_eq!(removed["removed_windows"], 1);
    let why = env.json(&["why", "--network-file", path_str(&office)]);
    assert_ne!(why["reason"], "SchedulePause", "{why}");
    assert!(env
        .fails(&["schedule", "rm", "office", "--window", "5"])
        .contains("not one of them"));
    env.ok(&["schedule", "rm", "office"]);
    assert_eq!(env.json(&["schedule", "list"]), serde_json::json!([]));

    for bad in [
        vec![
            "schedule", "add", "office", "--from", "25:00", "--to", "01:00", "--rule", "free",
        ],
        vec![
            "schedule", "add", "office", "--from", "01:00", "--to", "02:00", "--rule", "limit",
        ],
        vec![
            "schedule", "add", "office", "--from", "01:00", "--to", "02:00", "--rule", "free",
            "--up", "1MB/s",
        ],
        vec![
            "schedule", "add", "office", "--from", "01:00", "--to", "02:00", "--rule", "free",
            "--days", "funday",
        ],
    ] {
        env.fails(&bad);
    }
}

#[test]
fn offline_why_decides_with_the_configuration_file() {
    let env = Env::new();
    let hotspot = env.network_file("hotspot.toml", "id = \"hotspot\"\nmetered = \"yes\"\n");
    let config = env.network_file("config.toml", "[policy]\nupload_on_metered = true\n");
    // --config, as `capwise run` takes it.
    let why = env.json(&[
        "why",
        "--network-file",
        path_str(&hotspot),
        "--config",
        path_str(&config),
    ]);
    assert_eq!(why["allowances"]["up_wan"], "unlimited", "{why}");
    let text = env.ok(&[
        "why",
        "--network-file",
        path_str(&hotspot),
        "--config",
        path_str(&config),
    ]);
    assert!(!text.contains("Uploads to the internet paused"), "{text}");
    // The default file ($XDG_CONFIG_HOME/capwise/config.toml), with the
    // network file named in it.
    let default = env.dir.path().join("config").join("capwise");
    std::fs::create_dir_all(&default).unwrap();
    std::fs::write(
        default.join("config.toml"),
        format!(
            "network_file = \"{}\"\n[policy]\nupload_on_metered = true\n",
            path_str(&hotspot)
        ),
    )
    .unwrap();
    let why = env.json(&["why"]);
    assert_eq!(why["network"]["id"], "hotspot", "{why}");
    assert_eq!(why["allowances"]["up_wan"], "unlimited", "{why}");
    // Without the setting, uploads on a metered network stay paused.
    std::fs::remove_file(default.join("config.toml")).unwrap();
    let why = env.json(&["why", "--network-file", path_str(&hotspot)]);
    assert_eq!(why["allowances"]["up_wan"], "suspended", "{why}");
    // A --config that does not exist is an error.
    let missing = env.dir.path().join("missing.toml");
    let err = env.fails(&[
        "why",
        "--network-file",
        path_str(&hotspot),
        "--config",
        path_str(&missing),
    ]);
    assert!(err.contains("missing.toml"), "{err}");
}

#[test]
fn why_and_net_say_an_invalid_network_file_is_invalid_since_when_and_assume_metered() {
    let env = Env::new();
    for (name, text) in [
        ("noid.toml", "name = \"no id\"\n"),
        ("sometimes.toml", "id = \"home\"\nmetered = \"sometimes\"\n"),
        ("phone.toml", "id = \"home\"\nkind = \"phone\"\n"),
    ] {
        let bad = env.network_file(name, text);
        let said = env.ok(&["why", "--network-file", path_str(&bad)]);
        assert!(
            said.contains(&format!("{name} is invalid since ")),
            "{said}"
        );
        assert!(said.contains("is assumed metered"), "{said}");
        let why = env.json(&["why", "--network-file", path_str(&bad)]);
        assert_eq!(why["network"]["metered"], true, "{why}");
        assert_eq!(
            why["network"]["metered_source"], "assumed while the network file is invalid",
            "{why}"
        );
        assert_eq!(why["allowances"]["up_wan"], "suspended", "{why}");
        assert!(
            why["source_problem"]
                .as_str()
                .unwrap()
                .contains("is invalid since"),
            "{why}"
        );
        let net = env.ok(&["net", "--network-file", path_str(&bad)]);
        assert!(net.contains(&format!("{name} is invalid since ")), "{net}");
        assert!(
            net.contains("metered: metered (assumed while the network file is invalid)"),
            "{net}"
        );
    }
    // Only a file that cannot be read at all is an error, naming the flag.
    let err = env.fails(&["why", "--network-file", path_str(env.dir.path())]);
    assert!(err.contains("set by --network-file"), "{err}");
}

#[test]
fn a_configured_network_file_not_written_yet_is_offline_and_errors_name_the_key() {
    let env = Env::new();
    let default = env.dir.path().join("config").join("capwise");
    std::fs::create_dir_all(&default).unwrap();
    // The README's example: a file under /run that nothing wrote yet.
    let missing = env
        .dir
        .path()
        .join("run")
        .join("capwise")
        .join("network.toml");
    std::fs::write(
        default.join("config.toml"),
        format!("network_file = \"{}\"\n", path_str(&missing)),
    )
    .unwrap();
    let text = env.ok(&["why"]);
    assert!(
        text.starts_with(&format!(
            "The network file {} does not exist yet: offline until it appears.",
            missing.display()
        )),
        "{text}"
    );
    assert!(!text.contains("--network-file"), "{text}");
    let why = env.json(&["why"]);
    assert!(why["network"].is_null(), "{why}");
    assert_eq!(why["reason"], "Offline", "{why}");
    let net = env.ok(&["net"]);
    assert!(net.contains("does not exist yet"), "{net}");
    // A value that cannot be read at all is an error naming the key.
    std::fs::write(
        default.join("config.toml"),
        format!("network_file = \"{}\"\n", path_str(env.dir.path())),
    )
    .unwrap();
    let err = env.fails(&["why"]);
    assert!(
        err.contains("network_file in the configuration file"),
        "{err}"
    );
    assert!(!err.contains("--network-file"), "{err}");
}

#[test]
fn a_cellular_or_bluetooth_file_without_metered_is_guessed_metered_and_said_so() {
    let env = Env::new();
    for kind in ["cellular", "bluetooth"] {
        let file = env.network_file(
            &format!("{kind}.toml"),
            &format!("id = \"{kind}\"\nkind = \"{kind}\"\n"),
        );
        let why = env.json(&["why", "--network-file", path_str(&file)]);
        assert_eq!(why["network"]["metered"], true, "{why}");
        assert_eq!(
            why["network"]["metered_source"],
            "guessed from the device type"
        );
        assert_eq!(why["allowances"]["up_wan"], "suspended", "{why}");
        let net = env.ok(&["net", "--network-file", path_str(&file)]);
        assert!(
            net.contains("metered: probably metered (guessed from the device type)"),
            "{net}"
        );
        assert!(!net.contains("GuessYes"), "{net}");
    }
    let wifi = env.network_file(
        "wifi.toml",
        "id = \"w\"\nkind = \"wifi\"\nmetered = \"guess-no\"\n",
    );
    let net = env.ok(&["net", "--network-file", path_str(&wifi)]);
    assert!(
        net.contains("metered: probably not metered (the network file says so)"),
        "{net}"
    );
}

#[test]
fn why_names_the_users_limits_and_a_schedule_windows_rates() {
    let env = Env::new();
    let home = env.network_file("home.toml", "id = \"home\"\nmetered = \"no\"\n");
    let config = env.network_file("config.toml", "[limits]\ndown = \"5MB/s\"\n");
    let text = env.ok(&[
        "why",
        "--network-file",
        path_str(&home),
        "--config",
        path_str(&config),
    ]);
    assert!(!text.starts_with("No limits"), "{text}");
    assert!(
        text.contains("your own limits: downloads at most 5 MB/s"),
        "{text}"
    );
    env.ok(&[
        "schedule", "add", "home", "--from", "00:00", "--to", "24:00", "--rule", "limit", "--down",
        "100KB/s",
    ]);
    let text = env.ok(&["why", "--network-file", path_str(&home)]);
    assert!(
        text.contains("the schedule limits downloads to 100 kB/s now"),
        "{text}"
    );
}

#[test]
fn words_for_a_one_off_budget_a_true_cap_network_state_and_unknown_link() {
    let env = Env::new();
    // 5.5 GB less 10%: capwise stops at 4.95 GB, and says so.
    let text = env.ok(&["budget", "set", "home", "--cap", "5.5GB", "--reserve", "10"]);
    assert!(text.contains("stops at 4.95 GB"), "{text}");
    // A one-off budget never resets.
    env.ok(&[
        "budget", "set", "trip", "--cap", "2GB", "--period", "once", "--days", "3",
    ]);
    let list = env.ok(&["budget", "list"]);
    let trip = list.lines().find(|l| l.starts_with("trip")).unwrap();
    assert!(trip.trim_end().ends_with("never"), "{list}");
    // No interface counters read: the whole link's use is unknown, not 0 B.
    let usage = env.ok(&["usage", "home"]);
    assert!(usage.contains("whole link: unknown"), "{usage}");
    assert!(env.json(&["usage", "home"])[0]["link"].is_null());
    // `network list` shows whether a network counts as metered, apart from
    // the user's word.
    {
        let now = Timestamp::now_from_system();
        let store = Store::open(&env.state_dir().join("capwise.db"), now).unwrap();
        let modem = capwise_policy::network::Network {
            id: NetworkId::new("modem"),
            name: "Modem".into(),
            kind: capwise_policy::network::NetworkKind::Cellular,
            ..Default::default()
        }
        .with_kind_guess();
        store.note_network_seen(&modem, now).unwrap();
    }
    let list = env.ok(&["network", "list"]);
    let header = list.lines().next().unwrap();
    let modem = list.lines().find(|l| l.starts_with("modem")).unwrap();
    let col = header.find("METERED").unwrap();
    let word = header.find("YOUR WORD").unwrap();
    assert_eq!(
        modem[col..].split_whitespace().next(),
        Some("probably"),
        "{list}"
    );
    assert_eq!(
        modem[word..].split_whitespace().next(),
        Some("auto"),
        "{list}"
    );
    let json = env.json(&["network", "list"]);
    let modem = json
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["id"] == "modem")
        .unwrap();
    assert_eq!(modem["metered_state"], "guess-yes", "{json}");
    assert_eq!(
        modem["metered_source"], "guessed from the device type",
        "{json}"
    );
}

#[test]
fn a_corrupt_database_is_left_for_the_agent_by_every_command() {
    let env = Env::new();
    std::fs::create_dir_all(env.state_dir()).unwrap();
    let db = env.state_dir().join("capwise.db");
    std::fs::write(&db, b"not a database, a shopping list: eggs, milk").unwrap();
    for args in [
        vec!["budget", "list"],
        vec!["network", "list"],
        vec!["usage"],
        vec!["schedule", "list"],
        vec!["budget", "set", "home", "--cap", "2GB"],
    ] {
        let err = env.fails(&args);
        assert!(
            err.contains("is corrupt")
                && err.contains("left as it is")
                && err.contains("capwise run"),
            "{args:?}: {err}"
        );
        // SQLite's reason once, not again as its code's description.
        assert!(!err.contains("Error code"), "{args:?}: {err}");
        let names: Vec<_> = std::fs::read_dir(env.state_dir())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .filter(|name| name.contains("corrupt"))
            .collect();
        assert!(names.is_empty(), "{args:?} moved the database: {names:?}");
        assert!(std::fs::read(&db).unwrap().starts_with(b"not a database"));
    }
}

#[test]
fn database_from_a_newer_capwise_is_refused_and_left_as_it_is() {
    let env = Env::new();
    env.ok(&["budget", "set", "home", "--cap", "2GB"]);
    let db = env.state_dir().join("capwise.db");
    {
        let conn = rusqlite::Connection::open(&db).unwrap();
        conn.execute_batch("PRAGMA user_version = 99; PRAGMA wal_checkpoint(TRUNCATE);")
            .unwrap();
    }
    let known = Store::open_in_memory().unwrap().schema_version().unwrap();
    let before = std::fs::read(&db).unwrap();
    let out = env.run(&["budget", "list"]);
    let err = String::from_utf8_lossy(&out.stderr);
    // 78: the service units do not restart on it.
    assert_eq!(out.status.code(), Some(78), "{err}");
    assert!(
        err.contains(&format!(
            "written by a newer capwise (schema 99, this one knows {known})"
        )) && err.contains("upgrade capwise or move the file away"),
        "{err}"
    );
    assert_eq!(std::fs::read(&db).unwrap(), before);
    let names: Vec<String> = std::fs::read_dir(env.state_dir())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert!(!names.iter().any(|n| n.contains("corrupt")), "{names:?}");
}

#[test]
fn unseen_networks_are_allowed_with_a_warning() {
    let env = Env::new();
    let out = env.run(&["network", "set", "ghost", "--metered", "auto"]);
    assert!(out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("network 'ghost' has not been seen yet; the setting will apply when it is"),
        "{err}"
    );
    let list = env.ok(&["network", "list"]);
    assert!(list.contains("(not seen yet)"), "{list}");
    let out = env.run(&["usage", "nosuch", "--json"]);
    assert!(out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("'nosuch' has not been seen yet"),
        "{out:?}"
    );
    let usage: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(usage[0]["network_id"], "nosuch");
    let out = env.run(&["budget", "set", "later", "--cap", "1GB"]);
    assert!(out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("the budget will apply when it is"),
        "{out:?}"
    );
    // A network the agent has been on is not warned about.
    {
        let store = Store::open(&env.state_dir().join("capwise.db"), Timestamp(1)).unwrap();
        let seen = capwise_policy::network::Network {
            id: NetworkId::new("home"),
            name: "Home".into(),
            ..Default::default()
        };
        store
            .note_network_seen(&seen, Timestamp(1_700_000_000))
            .unwrap();
    }
    let out = env.run(&["network", "set", "home", "--metered", "no"]);
    assert!(out.status.success());
    assert!(
        !String::from_utf8_lossy(&out.stderr).contains("not been seen"),
        "{out:?}"
    );
}

#[test]
fn errors_under_json_are_a_json_object_on_stdout_and_a_failure() {
    let env = Env::new();
    // A command's own error.
    let out = env.run(&["budget", "rm", "nosuch", "--json"]);
    assert!(!out.status.success());
    let error: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&out.stdout)));
    assert!(
        error["error"].as_str().unwrap().contains("has no budget"),
        "{error}"
    );
    // Humans still read it on stderr.
    assert!(String::from_utf8_lossy(&out.stderr).contains("has no budget"));
    // A bad argument, caught while parsing.
    let out = env.run(&["budget", "set", "x", "--cap", "lots", "--json"]);
    assert_eq!(out.status.code(), Some(2));
    let error: Value = serde_json::from_slice(&out.stdout).unwrap();
    let message = error["error"].as_str().unwrap();
    assert!(
        message.contains("lots") && !message.contains("Usage"),
        "{message}"
    );
    // Without --json stdout stays empty.
    let out = env.run(&["budget", "rm", "nosuch"]);
    assert!(!out.status.success());
    assert!(out.stdout.is_empty());
    // `--help` is no error.
    let out = env.run(&["budget", "list", "--json", "--help"]);
    assert!(out.status.success());
    assert!(serde_json::from_slice::<Value>(&out.stdout).is_err());
}

#[test]
fn budget_list_columns_fit_a_once_period() {
    let env = Env::new();
    env.ok(&[
        "budget", "set", "trip", "--cap", "2GB", "--period", "once", "--days", "3",
    ]);
    env.ok(&["budget", "set", "home", "--cap", "50GB"]);
    let text = env.ok(&["budget", "list"]);
    let lines: Vec<&str> = text.lines().collect();
    let zone = lines[0].find("ZONE").unwrap();
    let trip = lines.iter().find(|l| l.starts_with("trip")).unwrap();
    assert!(trip[..zone].trim_end().ends_with("UTC"), "{text}");
    assert!(trip[..zone].ends_with("  "), "{text}");
    assert!(!trip[zone..].starts_with(' '), "{text}");
}

#[test]
fn usage_lists_every_known_network() {
    let env = Env::new();
    env.ok(&["budget", "set", "hotspot", "--cap", "5GB"]);
    env.ok(&["network", "set", "cafe", "--metered", "no"]);
    let usage = env.json(&["usage"]);
    let ids: Vec<&str> = usage
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["network_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["cafe", "hotspot"]);
    assert!(usage[0]["budget"].is_null());
    assert_eq!(usage[1]["budget"]["cap_bytes"], 5_000_000_000u64);
    assert_eq!(usage[1]["agent"]["down_wan"], 0);
    let text = env.ok(&["usage", "hotspot"]);
    assert!(text.contains("whole link"), "{text}");
}

#[test]
fn unknown_policy_and_limits_keys_stop_run_and_other_unknown_keys_are_shown_by_why() {
    let env = Env::new();
    let typo = env.network_file("typo.toml", "[policy]\nupload_on_metred = true\n");
    // `run` refuses before it starts anything (no agent, no listener).
    let err = env.fails(&["run", "--config", path_str(&typo)]);
    assert!(
        err.contains("unknown key `policy.upload_on_metred`")
            && err.contains("did you mean `upload_on_metered`?")
            && err.contains("typo.toml"),
        "{err}"
    );
    let typo = env.network_file("limits.toml", "[limits]\ndwon = \"1MB/s\"\n");
    let err = env.fails(&["run", "--config", path_str(&typo)]);
    assert!(
        err.contains("`limits.dwon`") && err.contains("`down`"),
        "{err}"
    );
    let relative = env.network_file("relative.toml", "download_dir = \"Downloads\"\n");
    let err = env.fails(&["run", "--config", path_str(&relative)]);
    assert!(
        err.contains("download_dir") && err.contains("absolute"),
        "{err}"
    );
    assert!(!env.state_dir().join("agent.json").exists());

    let hotspot = env.network_file("hotspot.toml", "id = \"hotspot\"\nmetered = \"yes\"\n");
    let config = env.network_file("warn.toml", "listn = \"0.0.0.0:1\"\n");
    let args = [
        "why",
        "--network-file",
        path_str(&hotspot),
        "--config",
        path_str(&config),
    ];
    let text = env.ok(&args);
    assert!(
        text.contains("unknown key `listn`") && text.contains("did you mean `listen`?"),
        "{text}"
    );
    let why = env.json(&args);
    assert!(
        why["warnings"][0].as_str().unwrap().contains("`listn`"),
        "{why}"
    );
}

#[test]
fn torrent_ids_are_checked_before_the_agent_is_asked() {
    let env = Env::new();
    for args in [
        vec!["remove", "f9cb/../c036"],
        vec!["pause", "c036/../../torrents/f9cb"],
        vec!["resume", "not-hex!"],
        vec!["status", "c036?delete_data=true"],
    ] {
        let err = env.fails(&args);
        assert!(
            err.contains("is not a torrent id") && err.contains("40 hex digits"),
            "{args:?}: {err}"
        );
        assert!(!err.contains("no capwise agent"), "{args:?}: {err}");
    }
    let err = env.fails(&["pause", "c03"]);
    assert!(
        err.contains("too short") && err.contains("at least 4 hex digits"),
        "{err}"
    );
    let long = "a".repeat(100_000);
    let err = env.fails(&["pause", &long]);
    assert!(err.contains("is not a torrent id"), "{err}");
    assert!(
        err.len() < 1000,
        "the whole id is echoed: {} bytes",
        err.len()
    );
    // A good id goes on to look for the agent.
    let err = env.fails(&["pause", "C036"]);
    assert!(err.contains("no capwise agent"), "{err}");
}

#[test]
fn rates_above_100_gbit_and_sizes_above_1_eb_are_refused_with_the_limit() {
    let env = Env::new();
    let err = env.fails(&["limits", "set", "--up", "18446744073709551615B/s"]);
    assert!(err.contains("at most 100 Gbit/s"), "{err}");
    let err = env.fails(&["budget", "set", "x", "--cap", "2000000TB"]);
    assert!(err.contains("at most 1 EB"), "{err}");
    let err = env.fails(&[
        "schedule",
        "add",
        "x",
        "--from",
        "22:00",
        "--to",
        "06:00",
        "--rule",
        "limit",
        "--down",
        "200Gbit/s",
    ]);
    assert!(err.contains("at most 100 Gbit/s"), "{err}");
    // At the limit, a rate is taken.
    let out = env.run(&["budget", "set", "x", "--cap", "1000000TB"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `capwise ARGS` as given (for commands without `--state-dir`).
fn capwise(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_capwise"))
        .args(args)
        .env("CAPWISE_LOG", "warn")
        .output()
        .unwrap()
}

#[test]
fn create_refuses_to_overwrite_or_to_store_a_bad_tracker_unless_forced() {
    let env = Env::new();
    let data = env.dir.path().join("data.bin");
    std::fs::write(&data, vec![7u8; 40_000]).unwrap();
    let out = env.dir.path().join("data.torrent");
    std::fs::write(&out, "keep me").unwrap();
    let (data_s, out_s) = (path_str(&data), path_str(&out));

    let o = capwise(&["create", data_s, "-o", out_s]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success(), "overwrote {out_s}");
    assert!(
        err.contains("already exists") && err.contains("--force"),
        "{err}"
    );
    assert_eq!(std::fs::read(&out).unwrap(), b"keep me");

    let fresh = env.dir.path().join("fresh.torrent");
    let o = capwise(&[
        "create",
        data_s,
        "-o",
        path_str(&fresh),
        "--tracker",
        "notaurl",
    ]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success(), "stored tracker 'notaurl'");
    assert!(err.contains("'notaurl' is not a tracker URL"), "{err}");
    assert!(!fresh.exists());

    let o = capwise(&[
        "create",
        data_s,
        "-o",
        out_s,
        "--tracker",
        "udp://t.example:6969",
        "--force",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_ne!(std::fs::read(&out).unwrap(), b"keep me");
}

#[test]
fn the_man_page_covers_every_command_and_points_to_no_missing_page() {
    let o = capwise(&["man"]);
    assert!(o.status.success());
    let page = String::from_utf8(o.stdout).unwrap();
    assert!(!page.contains("(1)"), "refers to other pages: {}", {
        let i = page.find("(1)").unwrap();
        &page[i.saturating_sub(40)..i + 3]
    });
    for text in [
        "capwise get",
        "capwise budget set",
        "\\-\\-fetch\\-missing",
        "\\-\\-delete\\-data",
    ] {
        assert!(page.contains(text), "the man page lacks {text}");
    }
}

#[test]
fn config_show_gives_each_value_and_its_source_and_refuses_a_bad_file() {
    let env = Env::new();
    let default = env.dir.path().join("config").join("capwise");
    std::fs::create_dir_all(&default).unwrap();
    std::fs::write(
        default.join("config.toml"),
        "[power]\nwan_uploads_on_battery = true\n",
    )
    .unwrap();
    let shown = env.json(&["config", "show", "--no-dht"]);
    let value = |key: &str| {
        shown["values"]
            .as_array()
            .unwrap()
            .iter()
            .find(|v| v["key"] == key)
            .unwrap_or_else(|| panic!("{key} in {shown}"))
            .clone()
    };
    assert_eq!(shown["file"]["source"], "environment", "{shown}");
    assert_eq!(shown["file"]["detail"], "XDG_CONFIG_HOME");
    assert_eq!(shown["file"]["exists"], true);
    assert_eq!(shown["state_dir"]["source"], "flag");
    let battery = value("power.wan_uploads_on_battery");
    assert_eq!(
        (&battery["value"], &battery["source"]),
        (&true.into(), &"file".into())
    );
    let percent = value("power.background_below_percent");
    assert_eq!(
        (&percent["value"], &percent["source"]),
        (&30.into(), &"default".into())
    );
    assert_eq!(value("dht.enabled")["detail"], "--no-dht");
    // The text form: the same, as TOML with the sources as comments.
    let text = env.ok(&["config", "show"]);
    assert!(
        text.lines()
            .any(|l| l.starts_with("wan_uploads_on_battery = true") && l.ends_with("# file")),
        "{text}"
    );
    // A bad file is the same error `capwise run` gives.
    std::fs::write(
        default.join("config.toml"),
        "[power]\nbackground_below_percent = 300\n",
    )
    .unwrap();
    let out = env.run(&["config", "show"]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("background_below_percent"), "{stderr}");
}
