//! Sleeping until a sans-IO machine's next deadline (`poll_timeout`).

use std::time::Instant;

/// Resolves when `deadline` passes; never with none (the machine has no
/// timer: only an input can give it work).
pub(crate) async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(at) => tokio::time::sleep_until(at.into()).await,
        None => std::future::pending().await,
    }
}
