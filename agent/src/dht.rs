//! The DHT as the agent configures it: `--no-dht` and `--dht-bootstrap`
//! (on `get`, `seed` and `run`) over the configuration's `[dht]` table
//! (`enabled`, default true; `bootstrap`, default the public routers), with
//! the node id and routing table in `STATE_DIR/dht.dat`. Names are resolved
//! by the engine in the background, so a machine without network starts
//! at once.

use std::path::Path;

use capwise_engine::dht::DhtOptions;

use crate::cli::DhtArgs;
use crate::config::Config;

/// The public routers capwise joins the DHT through by default.
pub const DEFAULT_BOOTSTRAP: &[&str] = &[
    "router.bittorrent.com:6881",
    "dht.transmissionbt.com:6881",
    "router.utorrent.com:6881",
    "dht.libtorrent.org:25401",
];

/// The state file in the state directory.
pub const STATE_FILE: &str = "dht.dat";

/// The engine's DHT options; None when the DHT is off (`--no-dht` or
/// `dht.enabled = false`). `--dht-bootstrap` replaces the configured list.
pub fn options(args: &DhtArgs, config: &Config, state_dir: &Path) -> Option<DhtOptions> {
    if args.no_dht || config.dht.enabled == Some(false) {
        return None;
    }
    let bootstrap = if !args.dht_bootstrap.is_empty() {
        args.dht_bootstrap.clone()
    } else if let Some(list) = &config.dht.bootstrap {
        list.clone()
    } else {
        DEFAULT_BOOTSTRAP.iter().map(|s| s.to_string()).collect()
    };
    Some(DhtOptions {
        bootstrap,
        state_file: Some(state_dir.join(STATE_FILE)),
        node: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(no_dht: bool, bootstrap: &[&str]) -> DhtArgs {
        DhtArgs {
            no_dht,
            dht_bootstrap: bootstrap.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn flags_override_the_file_and_the_file_the_defaults() {
        let dir = Path::new("/state");
        let none = Config::default();
        let o = options(&args(false, &[]), &none, dir).unwrap();
        assert_eq!(o.bootstrap, DEFAULT_BOOTSTRAP);
        assert_eq!(o.state_file.as_deref(), Some(Path::new("/state/dht.dat")));
        assert!(options(&args(true, &[]), &none, dir).is_none());

        let file = crate::config::parse("[dht]\nbootstrap = [\"10.0.0.1:6881\"]\n")
            .unwrap()
            .config;
        let o = options(&args(false, &[]), &file, dir).unwrap();
        assert_eq!(o.bootstrap, ["10.0.0.1:6881"]);
        let o = options(&args(false, &["127.0.0.1:1"]), &file, dir).unwrap();
        assert_eq!(o.bootstrap, ["127.0.0.1:1"]);

        let off = crate::config::parse("[dht]\nenabled = false\n")
            .unwrap()
            .config;
        assert!(off.warnings.is_empty(), "{:?}", off.warnings);
        assert!(options(&args(false, &["127.0.0.1:1"]), &off, dir).is_none());
    }
}
