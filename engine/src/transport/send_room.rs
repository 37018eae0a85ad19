//! Waiting until a socket's kernel queue holds little unsent data.
//!
//! For WAN peers the kernel's unsent bytes are what a closing byte gate
//! cannot take back, so they are kept small with `TCP_NOTSENT_LOWAT`. That
//! option alone does not bound them for an async writer: tokio writes first
//! and waits for readiness only after a write fails, and a write succeeds
//! whenever the socket buffer has room (the kernel checks the low-water mark
//! only when it starts a new, up to 64 KiB, segment). So before each block
//! the writer asks the kernel itself, with a zero-timeout `poll`, whether the
//! socket is writable in the low-water sense: unsent data below half the mark.
//! When it is not, that same `poll` arms the kernel's wake-up for when it
//! becomes so, and the writer waits for that edge, with a backed-off timer in
//! case the edge was missed.

use std::io;
use std::time::Duration;

use rustix::event::{poll, PollFd, PollFlags, Timespec};
use tokio::io::Interest;
use tokio::net::TcpStream;

/// The first timer that covers a missed wake-up; it doubles up to [`LONGEST_RECHECK`].
const FIRST_RECHECK: Duration = Duration::from_millis(4);
const LONGEST_RECHECK: Duration = Duration::from_millis(256);
/// A peer that takes nothing for this long is gone.
const GIVE_UP_AFTER: Duration = Duration::from_secs(120);

/// Returns once the kernel would call `stream` writable under its
/// `TCP_NOTSENT_LOWAT`; errors with `TimedOut` after [`GIVE_UP_AFTER`].
pub(crate) async fn wait_for_send_room(stream: &TcpStream) -> io::Result<()> {
    let give_up = tokio::time::Instant::now() + GIVE_UP_AFTER;
    let mut recheck = FIRST_RECHECK;
    // Bounded: each round waits at least until the next edge or timer, and the
    // timers alone reach `GIVE_UP_AFTER` in well under this many rounds.
    for _ in 0..4096 {
        match stream.try_io(Interest::WRITABLE, || kernel_says_writable(stream)) {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(e),
        }
        if tokio::time::Instant::now() >= give_up {
            break;
        }
        // try_io cleared tokio's cached readiness, so this waits for a new edge.
        tokio::select! {
            ready = stream.writable() => ready?,
            _ = tokio::time::sleep(recheck) => recheck = (recheck * 2).min(LONGEST_RECHECK),
        }
    }
    Err(io::Error::new(
        io::ErrorKind::TimedOut,
        "the peer took no data for two minutes",
    ))
}

/// `Ok` when writable, `WouldBlock` when not: the shape `try_io` expects.
fn kernel_says_writable(stream: &TcpStream) -> io::Result<()> {
    let mut fds = [PollFd::new(stream, PollFlags::OUT)];
    let zero = Timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    poll(&mut fds, Some(&zero))?;
    let revents = fds[0].revents();
    if revents.intersects(PollFlags::ERR | PollFlags::HUP) {
        // The write that follows reports the real error.
        return Ok(());
    }
    if revents.contains(PollFlags::OUT) {
        Ok(())
    } else {
        Err(io::ErrorKind::WouldBlock.into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    /// Unsent bytes in the kernel queue (Linux `SIOCOUTQNSD`).
    #[cfg(target_os = "linux")]
    fn unsent(stream: &TcpStream) -> usize {
        // SAFETY: SIOCOUTQNSD writes one C int, the type the getter reads.
        unsafe {
            rustix::ioctl::ioctl(
                stream,
                rustix::ioctl::Getter::<0x894B, std::ffi::c_int>::new(),
            )
        }
        .expect("SIOCOUTQNSD") as usize
    }

    /// A receiver that stops reading: the sender's unsent data must stay
    /// under the mark if it waits for room before each write, and the wait
    /// must end once the receiver reads again.
    #[cfg(target_os = "linux")]
    #[tokio::test]
    async fn unsent_data_stays_under_the_low_water_mark() {
        const LOWAT: u32 = 16 * 1024;
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let mut sender = TcpStream::connect(addr).await.unwrap();
        let (mut receiver, _) = listener.accept().await.unwrap();
        socket2::SockRef::from(&sender)
            .set_tcp_notsent_lowat(LOWAT)
            .unwrap();
        let block = vec![7u8; 16 * 1024];
        let mut written = 0usize;
        let mut most_unsent = 0usize;
        // Fill until the receiver's window and buffers are full and the wait
        // times out (the receiver is not reading yet).
        for _ in 0..10_000 {
            let room =
                tokio::time::timeout(Duration::from_millis(300), wait_for_send_room(&sender)).await;
            if room.is_err() {
                break;
            }
            room.unwrap().unwrap();
            most_unsent = most_unsent.max(unsent(&sender));
            sender.write_all(&block).await.unwrap();
            written += block.len();
        }
        assert!(written > 0, "nothing was written");
        assert!(
            most_unsent < LOWAT as usize / 2,
            "{most_unsent} bytes unsent before a write (mark {LOWAT})"
        );
        let stuck = unsent(&sender);
        assert!(
            stuck <= LOWAT as usize / 2 + block.len(),
            "{stuck} bytes unsent after the last write"
        );

        // Once the receiver reads, room comes back without a timer's help.
        let drain = tokio::spawn(async move {
            let mut buf = vec![0u8; 64 * 1024];
            let mut got = 0usize;
            while got < written {
                let n = receiver.read(&mut buf).await.unwrap();
                assert!(n > 0, "sender closed early");
                got += n;
            }
            got
        });
        tokio::time::timeout(Duration::from_secs(5), wait_for_send_room(&sender))
            .await
            .expect("room came back")
            .unwrap();
        sender.shutdown().await.unwrap();
        assert_eq!(drain.await.unwrap(), written);
    }
}
