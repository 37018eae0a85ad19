//! Where the power state comes from: UPower on the system bus if it
//! answers, else "on AC" for good (a desktop, a server, a container), said
//! once in a debug line. The runtime follows it; `capwise why` asks once.

use std::time::Duration;

use capwise_policy::power::Power;
use capwise_policy::source::upower::{self, PowerWatch};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::network_source::system_bus_present;

/// How long UPower may take to answer: a bus that hangs must not stall the
/// agent's start.
const UPOWER_TIMEOUT: Duration = Duration::from_secs(2);

/// A followed power state.
pub struct PowerSource {
    /// Receives each change.
    pub watch: PowerWatch,
    /// The task publishing on `watch`, if UPower answered.
    task: Option<JoinHandle<()>>,
    /// Keeps a fixed state's channel open.
    keep_open: Option<watch::Sender<Power>>,
}

impl PowerSource {
    /// A state that never changes (no UPower), or that a test sets.
    pub fn fixed(power: Power) -> (PowerSource, watch::Sender<Power>) {
        let (tx, rx) = watch::channel(power);
        (
            PowerSource {
                watch: rx,
                task: None,
                keep_open: None,
            },
            tx,
        )
    }
}

impl Drop for PowerSource {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

/// Follows UPower, or says once (debug) that there is none and stays on AC.
pub async fn follow() -> PowerSource {
    match upower_watch().await {
        Ok((watch, task)) => {
            tracing::info!(power = %*watch.borrow(), "following UPower");
            PowerSource {
                watch,
                task: Some(task),
                keep_open: None,
            }
        }
        Err(error) => {
            tracing::debug!(%error, "UPower not reachable: deciding as on AC power");
            let (mut source, tx) = PowerSource::fixed(Power::Ac);
            source.keep_open = Some(tx);
            source
        }
    }
}

async fn upower_watch() -> anyhow::Result<(PowerWatch, JoinHandle<()>)> {
    anyhow::ensure!(system_bus_present(), "no D-Bus system bus");
    tokio::time::timeout(UPOWER_TIMEOUT, async {
        let conn = zbus::Connection::system().await?;
        Ok(upower::watch_upower(conn).await?)
    })
    .await
    .map_err(|_| anyhow::anyhow!("UPower did not answer in time"))?
}

/// The power state now, asked once; on AC without UPower.
pub async fn read_once() -> Power {
    let read = tokio::time::timeout(UPOWER_TIMEOUT, async {
        anyhow::ensure!(system_bus_present(), "no D-Bus system bus");
        let conn = zbus::Connection::system().await?;
        anyhow::Ok(upower::read_power(&conn).await?)
    })
    .await;
    match read {
        Ok(Ok(power)) => power,
        Ok(Err(error)) => {
            tracing::debug!(%error, "UPower not reachable: deciding as on AC power");
            Power::Ac
        }
        Err(_) => {
            tracing::debug!("UPower did not answer in time: deciding as on AC power");
            Power::Ac
        }
    }
}
