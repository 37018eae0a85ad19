//! `capwise net`: the uplink as capwise detects it now, and from where.

use anyhow::Result;
use serde_json::json;

use super::output::print_json;
use crate::cli_policy::WhyArgs;
use crate::network_source::{detect_once, NetworkFile};

/// Runs `capwise net`.
pub async fn run(args: &WhyArgs) -> Result<()> {
    // The configuration's network file too, as `run` and `why` follow it.
    let config = crate::config::load_warning(args.config.as_deref())?;
    let network_file =
        NetworkFile::choose(args.network_file.as_deref(), config.network_file.as_deref());
    let (source, network, problem) = detect_once(network_file.as_ref()).await?;
    let state_dir = crate::state_db::state_dir(args.store.state_dir.as_deref());
    let port_mapping = crate::portmap::read_status(&state_dir);
    if args.store.json {
        print_json(&json!({
            "source": source.describe(),
            "network": network.as_ref().map(super::why::network_json),
            "source_problem": problem,
            "port_mapping": port_mapping,
        }));
        return Ok(());
    }
    if let Some(problem) = &problem {
        println!("{problem}");
    }
    match network {
        None => println!(
            "{} (according to the {})",
            source.offline_words(),
            source.describe()
        ),
        Some(n) => {
            let (metered, says) = n.effective_metered();
            println!("{} ({})", n.display_name(), n.id);
            println!("  kind: {}", n.kind.as_str());
            println!("  metered: {} ({})", metered.describe(), says.says_so());
            println!("  roaming: {}", if n.is_roaming() { "yes" } else { "no" });
            if let Some(interface) = &n.interface {
                println!("  interface: {interface}");
            }
            println!("  detected by: {}", source.describe());
        }
    }
    match &port_mapping {
        Some(m) => {
            let external = m
                .external_ip
                .map_or_else(|| "the router's address".to_string(), |ip| ip.to_string());
            for p in &m.ports {
                println!(
                    "  port mapping: {external}:{} {} -> {}:{} (by {})",
                    p.external, p.protocol, m.local_ip, p.internal, m.protocol
                );
            }
        }
        None => println!("  port mapping: none"),
    }
    Ok(())
}
