//! `org.freedesktop.Notifications` on the session bus: the one method
//! capwise calls, `Notify`, each new notification replacing capwise's last
//! one so that they never pile up.

use std::collections::HashMap;

/// The notification daemon's interface (the Desktop Notifications
/// Specification).
#[zbus::proxy(
    interface = "org.freedesktop.Notifications",
    default_service = "org.freedesktop.Notifications",
    default_path = "/org/freedesktop/Notifications"
)]
trait Notifications {
    /// Shows a notification; its id.
    #[allow(clippy::too_many_arguments)]
    fn notify(
        &self,
        app_name: &str,
        replaces_id: u32,
        app_icon: &str,
        summary: &str,
        body: &str,
        actions: &[&str],
        hints: HashMap<&str, zbus::zvariant::Value<'_>>,
        expire_timeout: i32,
    ) -> zbus::Result<u32>;
}

/// The session bus and capwise's last notification.
pub struct Notifier {
    proxy: NotificationsProxy<'static>,
    last_id: u32,
}

impl Notifier {
    /// Connects to the session bus (`DBUS_SESSION_BUS_ADDRESS`, else
    /// `$XDG_RUNTIME_DIR/bus`).
    pub async fn connect() -> zbus::Result<Notifier> {
        let connection = zbus::Connection::session().await?;
        Ok(Notifier {
            proxy: NotificationsProxy::new(&connection).await?,
            last_id: 0,
        })
    }

    /// Shows `sentence`. A bus without a notification daemon is not an
    /// error worth more than a debug line.
    pub async fn notify(&mut self, sentence: &str) {
        let shown = self
            .proxy
            .notify(
                "capwise",
                self.last_id,
                "network-cellular-symbolic",
                "capwise is holding back",
                sentence,
                &[],
                HashMap::new(),
                -1,
            )
            .await;
        match shown {
            Ok(id) => {
                tracing::debug!(id, "desktop notification: {sentence}");
                self.last_id = id;
            }
            Err(error) => tracing::debug!(%error, "cannot show a desktop notification"),
        }
    }
}
