//! TCP: the transport every client speaks. Its write half bounds the
//! kernel's unsent data with `TCP_NOTSENT_LOWAT` and waits for room under
//! it (`send_room.rs`); both halves count what goes through the socket.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::io::AsyncWrite;
use tokio::net::tcp::OwnedWriteHalf;
use tokio::net::TcpStream;

use crate::egress::Egress;

use super::send_room::wait_for_send_room;
use super::{BoxFuture, Counted, Transport, TransportKind, TransportWrite, WireBytes};

/// Connect to `remote` from `from`: its address (port 0) when given, its
/// device when given (`egress.rs`). An address of the other family than
/// `remote` is refused: nothing could leave from that address, and leaving
/// from another is what binding rules out; a device that is missing fails
/// the dial, which never falls back to an unbound socket.
pub(crate) async fn connect(remote: SocketAddr, from: &Egress) -> io::Result<Transport> {
    let socket = crate::egress::tcp_socket_towards(remote, from)?;
    let stream = socket.connect(remote).await?;
    Ok(accepted(stream, remote))
}

/// A transport for a connected stream (accepted or dialled).
pub(crate) fn accepted(stream: TcpStream, remote: SocketAddr) -> Transport {
    let _ = stream.set_nodelay(true);
    let local = stream
        .local_addr()
        .unwrap_or_else(|_| SocketAddr::new(IpAddr::from([0, 0, 0, 0]), 0));
    let wire = Arc::new(WireBytes::default());
    let (reader, writer) = stream.into_split();
    Transport::new(
        TransportKind::Tcp,
        local,
        remote,
        Box::new(Counted::new(reader, wire.clone())),
        Box::new(Writer {
            half: Counted::new(writer, wire.clone()),
        }),
        wire,
    )
}

/// TCP's write half: counted, and with the kernel's unsent queue in reach.
struct Writer {
    half: Counted<OwnedWriteHalf>,
}

impl Writer {
    fn stream(&self) -> &TcpStream {
        self.half.get_ref().as_ref()
    }
}

impl AsyncWrite for Writer {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.half).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.half).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.half).poll_shutdown(cx)
    }
}

impl TransportWrite for Writer {
    fn limit_unsent(&mut self, bytes: u32) -> io::Result<()> {
        socket2::SockRef::from(self.stream()).set_tcp_notsent_lowat(bytes)
    }

    fn room(&mut self) -> BoxFuture<'_, io::Result<()>> {
        Box::pin(wait_for_send_room(self.stream()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    #[tokio::test]
    async fn a_dialled_transport_counts_what_crosses_the_socket() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let at = listener.local_addr().unwrap();
        let from = Egress::from_ip(Some(IpAddr::from([127, 0, 0, 1])));
        let dialled = tokio::spawn(async move { connect(at, &from).await });
        let (stream, from) = listener.accept().await.unwrap();
        let mut ours = dialled.await.unwrap().unwrap();
        let mut theirs = accepted(stream, from);
        assert_eq!(ours.kind(), TransportKind::Tcp);
        assert_eq!(ours.remote_addr(), at);
        assert_eq!(ours.local_addr(), theirs.remote_addr());
        ours.write_all(&[9; 5000]).await.unwrap();
        let mut got = vec![0u8; 5000];
        theirs.read_exact(&mut got).await.unwrap();
        assert_eq!((ours.wire().sent(), theirs.wire().received()), (5000, 5000));
    }

    #[tokio::test]
    async fn a_bound_address_of_the_other_family_is_refused() {
        let from = Egress::from_ip(Some("::1".parse().unwrap()));
        let err = connect("127.0.0.1:9".parse().unwrap(), &from)
            .await
            .unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::AddrNotAvailable);
    }
}
