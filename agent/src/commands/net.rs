//! `capwise net`: the uplink as capwise detects it now, and from where.

use anyhow::Result;
use serde_json::json;

use super::output::print_json;
use crate::cli_policy::WhyArgs;
use crate::network_source::detect_once;

/// Runs `capwise net`.
pub async fn run(args: &WhyArgs) -> Result<()> {
    let (source, reported) = detect_once(args.network_file.as_ref()).await?;
    let network = source.resolve(reported);
    if args.store.json {
        print_json(&json!({
            "source": source.describe(),
            "network": network.as_ref().map(super::why::network_json),
        }));
        return Ok(());
    }
    match network {
        None => println!("offline (according to the {})", source.describe()),
        Some(n) => {
            let (metered, says) = n.effective_metered();
            println!("{} ({})", n.display_name(), n.id);
            println!("  kind: {}", n.kind.as_str());
            println!("  metered: {metered:?} ({})", says.says_so());
            println!("  roaming: {}", if n.is_roaming() { "yes" } else { "no" });
            if let Some(interface) = &n.interface {
                println!("  interface: {interface}");
            }
            println!("  detected by: {}", source.describe());
        }
    }
    Ok(())
}
