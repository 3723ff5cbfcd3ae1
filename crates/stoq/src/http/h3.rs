//! HTTP/3: the same front over QUIC (the `h3` and `h3-quinn` crates on quinn), on UDP at the
//! HTTP port's number, announced to HTTP/1.1 and HTTP/2 clients by `Alt-Svc`. Each request is
//! answered by the same [`handle`] as over TCP; only the framing differs.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use h3::server::RequestStream;
use http::{Request, Version};
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;
use tokio::sync::{mpsc, watch, Semaphore};
use tokio_stream::wrappers::ReceiverStream;

use super::answer::{empty, Body, BodyError};
use super::error::HttpError;
use super::front::{Client, Front};
use super::limits::{HEAD_DEADLINE, MAX_HTTP_CONNECTIONS, MAX_STREAMS_PER_CONNECTION};
use super::serve::handle;

/// How long an HTTP/3 connection may sit idle before it is closed.
const IDLE: Duration = Duration::from_secs(30);

/// Binds the HTTP/3 endpoint on UDP `addr` (IPv6 only) with `tls` (its ALPN set to `h3`).
pub fn bind(addr: SocketAddr, tls: &rustls::ServerConfig) -> Result<quinn::Endpoint, HttpError> {
    let bad = |reason: String| HttpError::Bind {
        addr,
        source: std::io::Error::other(reason),
    };
    let mut tls = tls.clone();
    tls.alpn_protocols = vec![b"h3".to_vec()];
    let crypto =
        quinn::crypto::rustls::QuicServerConfig::try_from(tls).map_err(|e| bad(e.to_string()))?;
    let mut server = quinn::ServerConfig::with_crypto(Arc::new(crypto));
    let mut transport = quinn::TransportConfig::default();
    transport
        .max_concurrent_bidi_streams(MAX_STREAMS_PER_CONNECTION.into())
        .max_idle_timeout(Some(IDLE.try_into().expect("30 s is a valid idle timeout")));
    server.transport_config(Arc::new(transport));
    let socket = stoq_transport::bind_udp_v6(addr).map_err(|e| bad(e.to_string()))?;
    quinn::Endpoint::new(
        quinn::EndpointConfig::default(),
        Some(server),
        socket,
        Arc::new(quinn::TokioRuntime),
    )
    .map_err(|source| HttpError::Bind { addr, source })
}

/// Accepts HTTP/3 connections until `stop` says so, then closes them within its deadline.
pub async fn serve(
    endpoint: quinn::Endpoint,
    front: Arc<Front>,
    mut stop: watch::Receiver<Option<Duration>>,
    first_client: usize,
) {
    let room = Arc::new(Semaphore::new(MAX_HTTP_CONNECTIONS));
    let mut client = first_client;
    let deadline = loop {
        let incoming = tokio::select! {
            incoming = endpoint.accept() => match incoming {
                Some(incoming) => incoming,
                None => return,
            },
            _ = stop.changed() => break stop.borrow().unwrap_or_default(),
        };
        let Ok(permit) = room.clone().try_acquire_owned() else {
            incoming.refuse();
            continue;
        };
        client += 1;
        let front = front.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let client = Client {
                number: client,
                addr: incoming.remote_address(),
            };
            if let Err(e) = connection(incoming, front, client).await {
                tracing::debug!(error = %e, "an HTTP/3 connection ended with an error");
            }
        });
    };
    endpoint.close(0u32.into(), b"shutting down");
    let _ = tokio::time::timeout(deadline, endpoint.wait_idle()).await;
}

async fn connection(
    incoming: quinn::Incoming,
    front: Arc<Front>,
    client: Client,
) -> Result<(), BodyError> {
    let conn = tokio::time::timeout(HEAD_DEADLINE, incoming).await??;
    let mut h3 = h3::server::Connection::new(h3_quinn::Connection::new(conn)).await?;
    while let Some(resolver) = h3.accept().await? {
        let front = front.clone();
        tokio::spawn(async move {
            let Ok(Ok((req, stream))) =
                tokio::time::timeout(HEAD_DEADLINE, resolver.resolve_request()).await
            else {
                return;
            };
            if let Err(e) = request(front, client, req, stream).await {
                tracing::debug!(error = %e, "an HTTP/3 request ended with an error");
            }
        });
    }
    Ok(())
}

/// A request body read from its stream as it arrives, by a task of its own.
fn incoming_body<R>(mut recv: RequestStream<R, Bytes>) -> Body
where
    R: h3::quic::RecvStream + Send + 'static,
{
    let (tx, rx) = mpsc::channel::<Result<Frame<Bytes>, BodyError>>(4);
    tokio::spawn(async move {
        loop {
            let next = match recv.recv_data().await {
                Ok(Some(mut data)) => {
                    use bytes::Buf;
                    Ok(Frame::data(data.copy_to_bytes(data.remaining())))
                }
                Ok(None) => break,
                Err(e) => Err(BodyError::from(e.to_string())),
            };
            let failed = next.is_err();
            if tx.send(next).await.is_err() || failed {
                break;
            }
        }
    });
    StreamBody::new(ReceiverStream::new(rx)).boxed()
}

/// Answers one request: its body (for an upload) is passed on as it arrives, the answer's
/// body sent frame by frame; a body that breaks resets the stream.
async fn request<S>(
    front: Arc<Front>,
    client: Client,
    req: Request<()>,
    stream: RequestStream<S, Bytes>,
) -> Result<(), BodyError>
where
    S: h3::quic::BidiStream<Bytes> + Send + 'static,
    S::SendStream: Send,
    S::RecvStream: Send + 'static,
{
    let (mut send, recv) = stream.split();
    // Only an upload has a body to pass on; a read is answered without a task for it (its
    // receiving half is kept open until the answer is sent).
    let mut _unread = None;
    let body = match *req.method() {
        http::Method::GET | http::Method::HEAD => {
            _unread = Some(recv);
            empty()
        }
        _ => incoming_body(recv),
    };
    let mut req = req.map(|()| body);
    *req.version_mut() = Version::HTTP_3;
    let response = handle(front, client, req)
        .await
        .unwrap_or_else(|never| match never {});
    let (head, mut body) = response.into_parts();
    send.send_response(http::Response::from_parts(head, ()))
        .await?;
    while let Some(frame) = body.frame().await {
        match frame {
            Ok(frame) => {
                if let Ok(data) = frame.into_data() {
                    send.send_data(data).await?;
                }
            }
            Err(e) => {
                send.stop_stream(h3::error::Code::H3_INTERNAL_ERROR);
                return Err(e);
            }
        }
    }
    send.finish().await?;
    Ok(())
}
