//! One poll of one subscription: fetch the manifest (conditionally), have
//! `capwise_channel::accept` judge it against the stored state, and carry
//! out what it decides: fetch each new item's .torrent from the manifest's
//! host, check it is the item the manifest names, add it; remove retired
//! items. The held set recorded is the one actually reached. A refusal
//! changes nothing but the stored result, in words.

use std::path::PathBuf;
use std::sync::Arc;

use capwise_channel::url::Url;
use capwise_channel::{accept, checks, Item, PublicKey, MAX_MANIFEST_BYTES};
use capwise_engine::ext::member::MembershipKey;
use capwise_engine::metainfo::Metainfo;
use capwise_policy::decision::Decision;
use capwise_policy::time::Timestamp;
use tokio::sync::watch;

use super::fetch::{self, Fetched, Validators};
use super::store::{self, Accepted, Outcome, Subscription};
use super::words;
use crate::daemon::torrents::{TorrentError, Torrents};
use crate::torrent_db::TorrentDb;

/// Largest .torrent fetched (the API's own bound on an added .torrent).
pub const MAX_TORRENT_BYTES: usize = 16 << 20;

/// What every poll needs.
pub struct Context {
    /// The agent's database.
    pub db: Arc<TorrentDb>,
    /// The agent's torrents.
    pub torrents: Arc<Torrents>,
    /// Where items go when the subscription names no directory.
    pub download_dir: PathBuf,
    /// The HTTP client ([`fetch::client`]).
    pub client: reqwest::Client,
    /// The policy's decisions: no poll while all WAN traffic is held back.
    pub decisions: watch::Receiver<Decision>,
    /// Tells publishers that ask what this machine holds.
    pub reporter: Arc<super::report::Reporter>,
    /// The subscriptions' WAN windows (shared with the torrents).
    pub windows: super::window::Windows,
}

/// Polls the subscription at `url` once; returns the outcome (also stored).
pub async fn poll(ctx: &Context, url: &str) -> Outcome {
    let now = Timestamp::now_from_system().0;
    let sub = match store::get(&ctx.db, url) {
        Ok(Some(s)) => s,
        Ok(None) => return Outcome::Failed,
        Err(error) => {
            tracing::error!(%url, error = %format!("{error:#}"), "cannot read the subscription");
            return Outcome::Failed;
        }
    };
    let (outcome, result) = match run(ctx, &sub, now).await {
        Ok(done) => {
            ctx.reporter.after_poll(ctx, url, None).await;
            return done;
        }
        Err(refusal) => refusal,
    };
    if outcome == Outcome::Waiting {
        // WAN traffic is held back: no delivery report either.
        if let Err(error) = store::record_result(&ctx.db, url, now, outcome, &result) {
            tracing::error!(%url, error = %format!("{error:#}"), "cannot store the poll's result");
        }
        tracing::debug!(%url, %result, "channel poll");
        return outcome;
    }
    match outcome {
        Outcome::Refused => tracing::warn!(%url, %result, "channel manifest refused"),
        Outcome::Failed => tracing::warn!(%url, %result, "channel poll failed"),
        _ => tracing::info!(%url, %result, "channel poll"),
    }
    if let Err(error) = store::record_result(&ctx.db, url, now, outcome, &result) {
        tracing::error!(%url, error = %format!("{error:#}"), "cannot store the poll's result");
    }
    let problem = matches!(outcome, Outcome::Refused | Outcome::Failed).then_some(result);
    ctx.reporter.after_poll(ctx, url, problem).await;
    outcome
}

/// `Err((outcome, words))` for a poll that changed nothing; `Ok` once an
/// accepted manifest was carried out and recorded.
async fn run(ctx: &Context, sub: &Subscription, now: i64) -> Result<Outcome, (Outcome, String)> {
    let failed = |e: String| (Outcome::Failed, e);
    {
        let decision = ctx.decisions.borrow();
        if !crate::policy_runtime::wan_allowed(&decision) {
            return Err((
                Outcome::Waiting,
                format!("not polled: {}", decision.explanation),
            ));
        }
    }
    // The policy allows WAN traffic; the subscription's own window may
    // still hold it back (a manifest poll and the .torrent fetches cross
    // the WAN too).
    if let Some((window, _)) = ctx.windows.closed(&sub.url) {
        let now = Timestamp(now);
        let zone = capwise_policy::zone::Zone::system(now);
        let why = window
            .holds_back(now, &zone)
            .unwrap_or_else(|| format!("outside its window {}", window.shown()));
        return Err((Outcome::Waiting, format!("not polled: {why}")));
    }
    let manifest_url = Url::parse(&sub.url).map_err(|e| failed(format!("bad URL: {e}")))?;
    let key = PublicKey::from_hex(&sub.key).map_err(|e| failed(e.to_string()))?;
    // Conditional only once something was accepted and fully carried out
    // (otherwise validators are not kept: the next poll retries).
    let since = Validators {
        etag: sub.etag.clone(),
        last_modified: sub.last_modified.clone(),
    };
    let conditional = sub.state.last_sequence.is_some() && since != Validators::default();
    let fetched = fetch::get(
        &ctx.client,
        &sub.url,
        conditional.then_some(&since),
        MAX_MANIFEST_BYTES,
    )
    .await
    .map_err(|e| failed(format!("cannot fetch the manifest: {e}")))?;
    let (bytes, validators) = match fetched {
        Fetched::NotModified => {
            return Err((
                Outcome::Unchanged,
                format!(
                    "unchanged since the last poll (sequence {}, HTTP 304)",
                    sub.state.last_sequence.unwrap_or(0)
                ),
            ))
        }
        Fetched::Body(bytes, validators) => (bytes, validators),
    };
    let unix_now = u64::try_from(now).unwrap_or(0);
    let (manifest, actions, next) = accept(&sub.state, &bytes, &key, &manifest_url, unix_now)
        .map_err(|e| (Outcome::Refused, words::refusal(&e)))?;

    let mut problems = Vec::new();
    let mut retired = 0;
    for r in &actions.remove {
        match ctx.torrents.remove(&r.info_hash, r.delete_data).await {
            Ok(()) | Err(TorrentError::NotFound(_)) => {
                retired += 1;
                ctx.windows.unassign(&r.info_hash);
                record(store::release(&ctx.db, &sub.url, &r.info_hash), &sub.url);
            }
            Err(e) => problems.push(format!("{} not removed: {e}", r.info_hash)),
        }
    }
    let dir = sub
        .download_dir
        .clone()
        .unwrap_or_else(|| ctx.download_dir.clone());
    let mut added = 0;
    // Without the channel's token nothing is added: the items would serve
    // anyone, or no one.
    let (token, adds) = match member_token(&manifest, sub) {
        Ok(token) => (token, actions.add.as_slice()),
        Err(why) => {
            if !actions.add.is_empty() {
                problems.push(why);
            }
            (None, &[][..])
        }
    };
    for item in adds {
        // Before the add, so the torrent starts with the window's switch.
        let assigned = ctx.windows.assign(&item.info_hash, &sub.url);
        match add_item(
            ctx,
            &manifest_url,
            item,
            &dir,
            sub.background,
            token.as_ref(),
        )
        .await
        {
            Ok(()) => {
                added += 1;
                record(
                    store::hold(&ctx.db, &sub.url, &item.info_hash, &item.name),
                    &sub.url,
                );
            }
            Err(e) => {
                if assigned {
                    ctx.windows.unassign(&item.info_hash);
                }
                problems.push(format!("{}: {e}", item.name))
            }
        }
    }
    let outcome = if actions.is_empty() && next == sub.state {
        Outcome::Unchanged
    } else {
        Outcome::Accepted
    };
    let mut result = if outcome == Outcome::Unchanged {
        format!("unchanged (sequence {})", manifest.sequence)
    } else {
        format!(
            "accepted sequence {}: {added} added, {retired} retired",
            manifest.sequence
        )
    };
    if !problems.is_empty() {
        result = format!(
            "accepted sequence {}: {added} added, {retired} retired; not done, retried at the next poll: {}",
            manifest.sequence,
            problems.join("; ")
        );
    }
    let accepted = Accepted {
        sequence: manifest.sequence,
        digest: next.digest,
        validators: problems.is_empty().then_some((
            validators.etag.as_deref(),
            validators.last_modified.as_deref(),
        )),
        report_url: manifest.report.as_deref(),
    };
    tracing::info!(url = %sub.url, %result, "channel poll");
    record(
        store::record_accepted(&ctx.db, &sub.url, &accepted, now, outcome, &result),
        &sub.url,
    );
    Ok(outcome)
}

fn record(done: anyhow::Result<()>, url: &str) {
    if let Err(error) = done {
        tracing::error!(%url, error = %format!("{error:#}"), "cannot store the subscription's state");
    }
}

/// The membership token the items must be added with: none for a channel
/// that admits anyone; the subscription's for one that admits members
/// only, which must be the one whose public key the manifest names.
fn member_token(
    manifest: &capwise_channel::Manifest,
    sub: &Subscription,
) -> Result<Option<MembershipKey>, String> {
    let wanted = manifest.membership_key().map_err(|e| e.to_string())?;
    match (wanted, sub.token.as_deref()) {
        (None, _) => Ok(None),
        (Some(public), Some(text)) => match MembershipKey::from_hex(text) {
            Some(token) if token.public() == public.0 => Ok(Some(token)),
            _ => Err(
                "the channel admits members only, and the --token given is not its membership \
                 token: unsubscribe and subscribe again with the token `capwise channel token` \
                 prints at the publisher"
                    .into(),
            ),
        },
        (Some(_), None) => Err(
            "the channel admits members only: unsubscribe and subscribe again with --token \
             (the token `capwise channel token` prints at the publisher)"
                .into(),
        ),
    }
}

/// Fetches an item's .torrent from the manifest's host, checks that it is
/// the item the manifest names (info-hash, name, web seeds on the
/// manifest's host) and adds it (with the channel's membership `token`).
async fn add_item(
    ctx: &Context,
    manifest_url: &Url,
    item: &Item,
    dir: &std::path::Path,
    background: bool,
    token: Option<&MembershipKey>,
) -> Result<(), String> {
    let url = checks::torrent_url(item, manifest_url).map_err(|e| e.to_string())?;
    let bytes = match fetch::get(&ctx.client, url.as_str(), None, MAX_TORRENT_BYTES).await {
        Ok(Fetched::Body(bytes, _)) => bytes,
        Ok(Fetched::NotModified) => return Err("HTTP 304 to an unconditional request".into()),
        Err(e) => return Err(format!("cannot fetch {url}: {e}")),
    };
    let metainfo =
        Metainfo::from_bytes(&bytes).map_err(|e| format!("{url} is not a torrent: {e}"))?;
    if !metainfo
        .info_hash
        .to_string()
        .eq_ignore_ascii_case(&item.info_hash)
    {
        return Err(format!(
            "{url} has info-hash {}, not the manifest's {}; refused",
            metainfo.info_hash, item.info_hash
        ));
    }
    if metainfo.info.name != item.name {
        return Err(format!(
            "{url} names its data {:?}, not the manifest's {:?}; refused",
            metainfo.info.name, item.name
        ));
    }
    for seed in &metainfo.web_seeds {
        checks::same_host_url(&item.name, seed, manifest_url).map_err(|e| e.to_string())?;
    }
    let added = match token {
        Some(token) => {
            ctx.torrents
                .add_with_token(bytes, dir.to_path_buf(), false, background, token)
                .await
        }
        None => {
            ctx.torrents
                .add(bytes, dir.to_path_buf(), false, background)
                .await
        }
    };
    match added {
        Ok(_) => Ok(()),
        // Someone added it by hand: it is theirs, the subscription leaves it alone.
        Err(TorrentError::Duplicate(_)) => Err(
            "already in the agent, added by other means; left alone (not held by this channel)"
                .into(),
        ),
        Err(e) => Err(e.to_string()),
    }
}
