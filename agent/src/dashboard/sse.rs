//! A server-sent events reader (the client side of `GET /v1/events`, for
//! `capwise status --watch`): bytes in, whole events out. Pure: it keeps
//! only the unfinished tail of the stream.

/// One event: its `event:` name ("message" when absent) and its `data:`
/// lines joined by newlines.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SseEvent {
    /// The event's type.
    pub event: String,
    /// Its data.
    pub data: String,
}

/// The longest event kept while it is incomplete: an agent that sends
/// more without a blank line is not speaking SSE.
const MAX_PENDING: usize = 64 << 20;

/// Splits a byte stream into events.
#[derive(Default)]
pub struct SseReader {
    pending: Vec<u8>,
}

impl SseReader {
    /// Takes the next bytes; the events they complete, or an error if an
    /// event grows beyond bounds.
    pub fn push(&mut self, bytes: &[u8]) -> Result<Vec<SseEvent>, String> {
        self.pending.extend_from_slice(bytes);
        let mut events = Vec::new();
        while let Some((end, skip)) = blank_line(&self.pending) {
            let block: Vec<u8> = self.pending.drain(..end + skip).take(end).collect();
            if let Some(e) = parse_block(&String::from_utf8_lossy(&block)) {
                events.push(e);
            }
        }
        if self.pending.len() > MAX_PENDING {
            return Err("the agent's event stream has an event beyond 64 MiB".into());
        }
        Ok(events)
    }
}

/// Where the first blank line ends an event: the block's length and the
/// separator's (`\n\n` or `\r\n\r\n`).
fn blank_line(bytes: &[u8]) -> Option<(usize, usize)> {
    let lf = bytes.windows(2).position(|w| w == b"\n\n").map(|i| (i, 2));
    let crlf = bytes
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|i| (i, 4));
    match (lf, crlf) {
        (Some(a), Some(b)) => Some(if a.0 <= b.0 { a } else { b }),
        (a, b) => a.or(b),
    }
}

/// One block of lines; comments (`:` keep-alives) and blocks without data
/// are no event.
fn parse_block(block: &str) -> Option<SseEvent> {
    let mut event = String::from("message");
    let mut data: Vec<&str> = Vec::new();
    for line in block.lines() {
        if line.starts_with(':') {
            continue;
        }
        let (field, value) = line.split_once(':').unwrap_or((line, ""));
        let value = value.strip_prefix(' ').unwrap_or(value);
        match field {
            "event" => event = value.to_string(),
            "data" => data.push(value),
            _ => {}
        }
    }
    (!data.is_empty()).then(|| SseEvent {
        event,
        data: data.join("\n"),
    })
}

/// The `torrents` events of the agent's stream, for `status --watch`.
pub struct TorrentFeed {
    response: reqwest::Response,
    reader: SseReader,
    ready: std::collections::VecDeque<SseEvent>,
    only: Option<String>,
}

impl TorrentFeed {
    /// Opens `GET /v1/events`; `only` keeps one torrent (its full id).
    pub async fn open(
        client: &crate::client::AgentClient,
        only: Option<String>,
    ) -> anyhow::Result<TorrentFeed> {
        Ok(TorrentFeed {
            response: client.stream("/v1/events").await?,
            reader: SseReader::default(),
            ready: Default::default(),
            only,
        })
    }

    /// The torrents, the next time the agent says they changed (the first
    /// call: at once).
    pub async fn next(&mut self) -> anyhow::Result<Vec<crate::api_types::TorrentView>> {
        use anyhow::{bail, Context};
        loop {
            while let Some(event) = self.ready.pop_front() {
                if event.event != "torrents" {
                    continue;
                }
                let mut torrents: Vec<crate::api_types::TorrentView> =
                    serde_json::from_str(&event.data)
                        .context("the agent's torrents event is not the expected JSON")?;
                if let Some(id) = &self.only {
                    torrents.retain(|t| &t.id == id);
                    if torrents.is_empty() {
                        bail!("torrent {id} was removed");
                    }
                }
                return Ok(torrents);
            }
            let chunk = self
                .response
                .chunk()
                .await
                .context("the agent's event stream broke off")?;
            let Some(chunk) = chunk else {
                bail!("the agent closed its event stream (it stopped?)");
            };
            self.ready
                .extend(self.reader.push(&chunk).map_err(anyhow::Error::msg)?);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_come_out_whole_across_chunks() {
        let mut r = SseReader::default();
        assert_eq!(r.push(b"event: torrents\ndata: [1,").unwrap(), vec![]);
        let out = r
            .push(b"2]\n\n: keep-alive\n\ndata: a\ndata: b\n\n")
            .unwrap();
        assert_eq!(
            out,
            vec![
                SseEvent {
                    event: "torrents".into(),
                    data: "[1,2]".into()
                },
                SseEvent {
                    event: "message".into(),
                    data: "a\nb".into()
                },
            ]
        );
        let out = r.push(b"event: why\r\ndata: {}\r\n\r\n").unwrap();
        assert_eq!(
            out,
            vec![SseEvent {
                event: "why".into(),
                data: "{}".into()
            }]
        );
    }

    #[test]
    fn garbage_is_no_event() {
        let mut r = SseReader::default();
        assert_eq!(r.push(b"\n\nnonsense\n\n\xff\xfe\n\n").unwrap(), vec![]);
    }
}
