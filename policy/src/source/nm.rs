//! NetworkManager over D-Bus (placeholder until the zbus client lands).
