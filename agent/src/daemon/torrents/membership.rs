//! Channel membership tokens of stored torrents. A torrent added with a
//! token (`capwise add --member-token`, a channel subscription) requires
//! every peer to prove membership; the token is kept in the agent's
//! settings table under `member-token:<info-hash>`, so a restart restores
//! the torrent with it (a restored torrent without its token would serve
//! anyone who knows the info-hash).

use std::path::PathBuf;

use capwise_engine::ext::member::MembershipKey;

use super::{Source, TorrentError, Torrents};
use crate::api_types::TorrentView;
use crate::torrent_db::hex;

fn setting_key(id: &str) -> String {
    format!("member-token:{id}")
}

/// Parses a token as given on the command line or in the API (64 hex digits).
pub fn parse_token(text: &str) -> Result<MembershipKey, TorrentError> {
    MembershipKey::from_hex(text).ok_or_else(|| {
        TorrentError::Invalid(
            "a member token is 64 hex digits (`capwise channel token NAME`)".into(),
        )
    })
}

impl Torrents {
    /// The stored token of torrent `id`, if it has one. A token that no
    /// longer parses is an error in the log, and the torrent is then served
    /// to members of no channel: it requires a membership nobody can prove.
    pub(super) fn member_token(&self, id: &str) -> Option<MembershipKey> {
        let text = match self.db.setting(&setting_key(id)) {
            Ok(text) => text?,
            Err(error) => {
                tracing::error!(%id, %error, "cannot read the torrent's member token");
                return Some(MembershipKey::from_seed(rand::random()));
            }
        };
        match MembershipKey::from_hex(&text) {
            Some(key) => Some(key),
            None => {
                tracing::error!(%id, "the stored member token does not parse; no peer can prove membership");
                Some(MembershipKey::from_seed(rand::random()))
            }
        }
    }

    /// Forgets torrent `id`'s token (it was removed).
    pub(super) fn forget_member_token(&self, id: &str) {
        if let Err(error) = self.db.set_setting(&setting_key(id), None) {
            tracing::warn!(%id, %error, "cannot remove the torrent's member token");
        }
    }

    /// [`Torrents::add`] for a torrent whose peers must prove membership
    /// with `token`: stored before the torrent starts.
    pub async fn add_with_token(
        self: &std::sync::Arc<Self>,
        metainfo_bytes: Vec<u8>,
        download_dir: PathBuf,
        paused: bool,
        background: bool,
        token: &MembershipKey,
    ) -> Result<TorrentView, TorrentError> {
        let source = Source::parse(&metainfo_bytes).map_err(TorrentError::Invalid)?;
        let id = hex(&source.info_hash());
        if self.entries().contains_key(&id) {
            return Err(TorrentError::Duplicate(id));
        }
        self.db
            .set_setting(&setting_key(&id), Some(&token.to_hex()))
            .map_err(TorrentError::Internal)?;
        let added = self
            .add(metainfo_bytes, download_dir, paused, background)
            .await;
        if added.is_err() {
            self.forget_member_token(&id);
        }
        added
    }
}

#[cfg(test)]
mod tests {
    use capwise_engine::create::{create_torrent, CreateOptions};

    use super::super::tests::{loopback_session, torrents_in};
    use super::*;

    #[tokio::test]
    async fn a_token_is_kept_with_its_torrent_and_forgotten_with_it() {
        let dir = tempfile::tempdir().unwrap();
        let torrents = torrents_in(loopback_session().await, dir.path());
        let data = dir.path().join("item.bin");
        std::fs::write(&data, vec![3u8; 40_000]).unwrap();
        let bytes = create_torrent(&CreateOptions {
            path: data,
            private: true,
            ..CreateOptions::default()
        })
        .unwrap();
        assert!(parse_token("not hex").is_err());
        let token = parse_token(&"ab".repeat(32)).unwrap();
        let view = torrents
            .add_with_token(bytes, dir.path().to_path_buf(), false, false, &token)
            .await
            .unwrap();
        let kept = torrents.member_token(&view.id).expect("token stored");
        assert_eq!(kept.public(), token.public());
        torrents.remove(&view.id, false).await.unwrap();
        assert!(torrents.member_token(&view.id).is_none());
    }
}
