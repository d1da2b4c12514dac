//! The byte stream under a shard's NATS connection: the shard runtime's TCP stream, plain or
//! wrapped in TLS (rustls through `futures-rustls`, on either backend). NATS starts every
//! connection in the clear with the server's `INFO`; when the server or the operator asks for
//! TLS the client upgrades right after it ([`upgrade`]), before `CONNECT`.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use futures::{AsyncRead, AsyncWrite};

use super::link::ConnError;
use super::rt::TcpStream;

/// A connection's stream.
pub enum NatsStream {
    Plain(TcpStream),
    Tls(Box<futures_rustls::client::TlsStream<TcpStream>>),
}

/// Wrap `tcp` in TLS for `host` (a DNS name or an IP address, checked against the server's
/// certificate). A certificate that does not chain to the configured roots fails here.
pub async fn upgrade(tcp: TcpStream, config: Arc<rustls::ClientConfig>, host: &str) -> Result<NatsStream, ConnError> {
    let name = rustls::pki_types::ServerName::try_from(host.to_string())
        .map_err(|e| ConnError::Tls(format!("`{host}` is not a valid TLS server name: {e}")))?;
    let stream = futures_rustls::TlsConnector::from(config)
        .connect(name, tcp)
        .await
        .map_err(|e| ConnError::Tls(format!("TLS handshake with {host} failed: {e}")))?;
    Ok(NatsStream::Tls(Box::new(stream)))
}

impl AsyncRead for NatsStream {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut [u8]) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            NatsStream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            NatsStream::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for NatsStream {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            NatsStream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            NatsStream::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            NatsStream::Plain(s) => Pin::new(s).poll_flush(cx),
            NatsStream::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            NatsStream::Plain(s) => Pin::new(s).poll_close(cx),
            NatsStream::Tls(s) => Pin::new(s.as_mut()).poll_close(cx),
        }
    }
}
