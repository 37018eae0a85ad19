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
    if args.store.json {
        print_json(&json!({
            "source": source.describe(),
            "network": network.as_ref().map(super::why::network_json),
            "source_problem": problem,
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
    Ok(())
}
