//! Trackers: HTTP (BEP 3, 23, 7) and UDP (BEP 15) announces.

/// A tracker failed or answered nonsense.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TrackerError {
    /// Placeholder until the tracker code lands.
    #[error("tracker failure: {0}")]
    Failure(String),
}
