//! uTP (BEP 29, LEDBAT) as a [`Transport`]: the read and write halves of
//! one connection of the driver (`utp_driver.rs`), and [`connect`].
//!
//! Both halves lock the driver's state for each call and work on the
//! connection's own buffers (no copy in between); the write half waits
//! when the send buffer is full, the read half when nothing arrived. Each
//! half counts the payload it hands over in the transport's
//! [`WireBytes`]; the driver adds everything else that crossed the wire.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use capwise_utp::ConnectionHandle;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::utp_driver::{close_error, driver_ended, UtpDriver};
use super::{BoxFuture, Transport, TransportKind, TransportWrite, WireBytes};

/// Dial `remote` over uTP; fails when the SYN exchange has not completed
/// within `timeout` (or the peer refused it with a RESET).
pub async fn connect(
    driver: &UtpDriver,
    remote: SocketAddr,
    timeout: Duration,
) -> io::Result<Transport> {
    let (handle, done) = driver.open(remote)?;
    // A caller that gives up (drops this future) leaves the connection to
    // the driver, which resets it once it completes.
    match tokio::time::timeout(timeout, done).await {
        Ok(Ok(Ok(()))) => driver.transport(handle),
        Ok(Ok(Err(e))) => Err(e),
        Ok(Err(_)) => Err(driver_ended()),
        Err(_) => {
            driver.abandon(handle);
            Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "uTP connect timed out",
            ))
        }
    }
}

/// The transport of a connection whose SYN exchange is complete.
pub(super) fn transport(
    driver: UtpDriver,
    handle: ConnectionHandle,
    remote: SocketAddr,
    wire: Arc<WireBytes>,
) -> Transport {
    let local = driver.local_addr();
    let reader = Reader {
        driver: driver.clone(),
        handle,
        wire: wire.clone(),
    };
    let writer = Writer {
        driver,
        handle,
        wire: wire.clone(),
        shut: false,
    };
    Transport::new(
        TransportKind::Utp,
        local,
        remote,
        Box::new(reader),
        Box::new(writer),
        wire,
    )
}

struct Reader {
    driver: UtpDriver,
    handle: ConnectionHandle,
    wire: Arc<WireBytes>,
}

impl AsyncRead for Reader {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let shared = &self.driver.shared;
        let mut state = shared.lock();
        if state.ended {
            return Poll::Ready(Err(driver_ended()));
        }
        let Some(conn) = state.endpoint.connection(self.handle) else {
            return Poll::Ready(Err(driver_ended()));
        };
        // Only as much as is there: zeroing the caller's whole buffer
        // for each read cost more than the copy.
        let want = buf.remaining().min(conn.readable_len());
        let n = conn.read(buf.initialize_unfilled_to(want));
        if n > 0 {
            buf.advance(n);
            self.wire.add_received(n as u64);
            drop(state);
            // The window may have reopened: the driver tells the peer.
            shared.wake.notify_one();
            return Poll::Ready(Ok(()));
        }
        if conn.is_read_closed() {
            return match conn.close_reason() {
                // Ended with a FIN from the peer (or after ours): the end of
                // the stream.
                None | Some(capwise_utp::CloseReason::Finished) => Poll::Ready(Ok(())),
                Some(reason) => Poll::Ready(Err(close_error(reason))),
            };
        }
        if let Some(slot) = state.slots.get_mut(&self.handle) {
            slot.read_waker = Some(cx.waker().clone());
        }
        Poll::Pending
    }
}

impl Drop for Reader {
    fn drop(&mut self) {
        self.driver.shared.lock().release_half(self.handle, true);
        self.driver.shared.wake.notify_one();
    }
}

struct Writer {
    driver: UtpDriver,
    handle: ConnectionHandle,
    wire: Arc<WireBytes>,
    /// Shut down: our FIN is queued, nothing more goes.
    shut: bool,
}

impl AsyncWrite for Writer {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        if buf.is_empty() {
            return Poll::Ready(Ok(0));
        }
        if self.shut {
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::BrokenPipe,
                "uTP write after shutdown",
            )));
        }
        let shared = &self.driver.shared;
        let mut state = shared.lock();
        if state.ended {
            return Poll::Ready(Err(driver_ended()));
        }
        let Some(conn) = state.endpoint.connection(self.handle) else {
            return Poll::Ready(Err(driver_ended()));
        };
        if let Some(reason) = conn.close_reason() {
            return Poll::Ready(Err(close_error(reason)));
        }
        let n = conn.write(buf);
        if n > 0 {
            self.wire.add_sent(n as u64);
            drop(state);
            shared.wake.notify_one();
            return Poll::Ready(Ok(n));
        }
        if conn.write_room() == 0 && !conn.is_established() && !conn.is_closed() {
            // Closing (our FIN is queued, or lingering): nothing more goes.
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::BrokenPipe,
                "uTP connection is closing",
            )));
        }
        if let Some(slot) = state.slots.get_mut(&self.handle) {
            slot.write_waker = Some(cx.waker().clone());
        }
        Poll::Pending
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        // What the connection took goes out as the window allows; like TCP,
        // nothing to wait for here.
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.shut = true;
        let shared = &self.driver.shared;
        if let Some(conn) = shared.lock().endpoint.connection(self.handle) {
            conn.close();
        }
        shared.wake.notify_one();
        Poll::Ready(Ok(()))
    }
}

impl TransportWrite for Writer {
    fn limit_unsent(&mut self, bytes: u32) -> io::Result<()> {
        if let Some(slot) = self.driver.shared.lock().slots.get_mut(&self.handle) {
            slot.unsent_limit = Some(bytes as usize);
        }
        Ok(())
    }

    fn room(&mut self) -> BoxFuture<'_, io::Result<()>> {
        Box::pin(std::future::poll_fn(move |cx| {
            let mut state = self.driver.shared.lock();
            if state.ended {
                return Poll::Ready(Err(driver_ended()));
            }
            let handle = self.handle;
            let Some(conn) = state.endpoint.connection(handle) else {
                return Poll::Ready(Err(driver_ended()));
            };
            let (unsent, closed) = (conn.unsent_len(), conn.is_closed());
            let Some(slot) = state.slots.get_mut(&handle) else {
                return Poll::Ready(Err(driver_ended()));
            };
            match slot.unsent_limit {
                Some(limit) if unsent > limit && !closed => {
                    slot.room_waker = Some(cx.waker().clone());
                    Poll::Pending
                }
                _ => Poll::Ready(Ok(())),
            }
        }))
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        self.driver.shared.lock().release_half(self.handle, false);
        self.driver.shared.wake.notify_one();
    }
}
