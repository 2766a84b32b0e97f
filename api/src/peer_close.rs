//! Connections end as soon as their client closes them.
//!
//! While hyper streams a response it keeps reading the socket, and sees a client's close
//! at once (end of file mid-message). It reports that as an error, and poem's server then
//! waits on the connection again (to shut it down gracefully), which keeps streaming: an
//! idle SSE stream held its socket, its task and its hub subscription until the next
//! keep-alive write failed, up to 15 s later. Enough clients coming and going in that
//! window exhaust the open-file limit.
//!
//! [`PeerCloseAcceptor`] wraps the listener so that end of file reads as a reset
//! connection: hyper then closes both directions at once and drops the response body,
//! whatever it was streaming. Closing an idle keep-alive connection is unaffected. A
//! client that half-closes (shuts down its sending side, then waits for the answer) gets
//! no answer; HTTP clients do not do that.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use poem::http::uri::Scheme;
use poem::listener::Acceptor;
use poem::web::{LocalAddr, RemoteAddr};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// An acceptor whose connections read a client's close as [`io::ErrorKind::ConnectionReset`].
pub struct PeerCloseAcceptor<A>(pub A);

impl<A: Acceptor> Acceptor for PeerCloseAcceptor<A> {
    type Io = PeerClose<A::Io>;

    fn local_addr(&self) -> Vec<LocalAddr> {
        self.0.local_addr()
    }

    async fn accept(&mut self) -> io::Result<(Self::Io, LocalAddr, RemoteAddr, Scheme)> {
        let (io, local, remote, scheme) = self.0.accept().await?;
        Ok((PeerClose(io), local, remote, scheme))
    }
}

/// A connection that reports end of file as an error (see the module documentation).
pub struct PeerClose<T>(T);

impl<T: AsyncRead + Unpin> AsyncRead for PeerClose<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let room = buf.remaining();
        let filled = buf.filled().len();
        let result = Pin::new(&mut self.0).poll_read(cx, buf);
        // Nothing read into a buffer with room: the client closed its side.
        if matches!(result, Poll::Ready(Ok(()))) && room > 0 && buf.filled().len() == filled {
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::ConnectionReset,
                "the client closed the connection",
            )));
        }
        result
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for PeerClose<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, data)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write_vectored(cx, data)
    }

    fn is_write_vectored(&self) -> bool {
        self.0.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

    use super::*;

    #[tokio::test]
    async fn data_passes_and_the_peers_close_is_a_reset() {
        let (client, server) = tokio::io::duplex(64);
        let mut server = PeerClose(server);
        let mut client = client;
        client.write_all(b"GET").await.expect("write");
        let mut buf = [0u8; 16];
        assert_eq!(server.read(&mut buf).await.expect("read"), 3);
        server.write_all(b"ok").await.expect("write back");
        assert_eq!(client.read(&mut buf).await.expect("read"), 2);
        drop(client);
        let error = server.read(&mut buf).await.expect_err("closed");
        assert_eq!(error.kind(), io::ErrorKind::ConnectionReset);
        // A read into a buffer without room reads nothing without meaning the end.
        let (mut sender, receiver) = tokio::io::duplex(64);
        let mut receiver = PeerClose(receiver);
        sender.write_all(b"x").await.expect("write");
        let mut no_room: [u8; 0] = [];
        assert_eq!(receiver.read(&mut no_room).await.expect("read"), 0);
        assert_eq!(receiver.read(&mut buf).await.expect("read"), 1);
    }
}
