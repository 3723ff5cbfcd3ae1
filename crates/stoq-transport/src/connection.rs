//! One QUIC connection to a peer, with STOQ framing on its streams.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use rustls::pki_types::CertificateDer;
use stoq_protocol::ErrorCode;

use crate::error::connection_error;
use crate::{FramedRecv, FramedSend, NodeId, TransportError};

/// Live figures of one connection, read from quinn's own path and UDP counters.
///
/// The routing layer reads `rtt` from here, so peers that already talk need no probe traffic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct ConnectionStats {
    /// Smoothed round-trip time.
    pub rtt: Duration,
    /// Congestion window, in bytes.
    pub cwnd: u64,
    /// UDP payload bytes sent.
    pub bytes_sent: u64,
    /// UDP payload bytes received.
    pub bytes_received: u64,
    /// UDP datagrams sent.
    pub datagrams_sent: u64,
    /// UDP datagrams received.
    pub datagrams_received: u64,
    /// QUIC packets sent.
    pub packets_sent: u64,
    /// QUIC packets declared lost.
    pub packets_lost: u64,
    /// Bytes in packets declared lost.
    pub bytes_lost: u64,
    /// Times the congestion controller backed off.
    pub congestion_events: u64,
    /// The path MTU in use.
    pub mtu: u16,
    /// Path MTU probes sent (each a packet of padding at the size being tried).
    pub mtu_probes_sent: u64,
}

impl ConnectionStats {
    /// Fraction of sent packets that were lost (0 when nothing was sent).
    pub fn loss_rate(&self) -> f64 {
        if self.packets_sent == 0 {
            0.0
        } else {
            self.packets_lost as f64 / self.packets_sent as f64
        }
    }
}

impl From<quinn::ConnectionStats> for ConnectionStats {
    fn from(s: quinn::ConnectionStats) -> Self {
        ConnectionStats {
            rtt: s.path.rtt,
            cwnd: s.path.cwnd,
            bytes_sent: s.udp_tx.bytes,
            bytes_received: s.udp_rx.bytes,
            datagrams_sent: s.udp_tx.datagrams,
            datagrams_received: s.udp_rx.datagrams,
            packets_sent: s.path.sent_packets,
            packets_lost: s.path.lost_packets,
            bytes_lost: s.path.lost_bytes,
            congestion_events: s.path.congestion_events,
            mtu: s.path.current_mtu,
            mtu_probes_sent: s.path.sent_plpmtud_probes,
        }
    }
}

/// A connection to a peer. Cheap to clone; the connection closes when the last clone is
/// dropped or [`StoqConnection::close`] is called.
#[derive(Debug, Clone)]
pub struct StoqConnection {
    inner: quinn::Connection,
    peer_id: Option<NodeId>,
    max_frame_size: u32,
}

impl StoqConnection {
    pub(crate) fn new(inner: quinn::Connection, max_frame_size: u32) -> Self {
        let peer_id = inner
            .peer_identity()
            .and_then(|any| any.downcast::<Vec<CertificateDer<'static>>>().ok())
            .and_then(|chain| {
                chain
                    .first()
                    .and_then(|leaf| crate::identity::node_id_of_certificate(leaf).ok())
            });
        StoqConnection {
            inner,
            peer_id,
            max_frame_size,
        }
    }

    /// The peer's node id, from the certificate it proved it holds. `None` for a client that
    /// presented no certificate (allowed when the server does not require mutual TLS).
    pub fn peer_node_id(&self) -> Option<NodeId> {
        self.peer_id
    }

    /// The peer's address.
    pub fn remote_addr(&self) -> SocketAddr {
        self.inner.remote_address()
    }

    /// An id unique among this endpoint's live connections (for pools and logs).
    pub fn stable_id(&self) -> usize {
        self.inner.stable_id()
    }

    /// Current figures of the connection.
    pub fn stats(&self) -> ConnectionStats {
        self.inner.stats().into()
    }

    /// Smoothed RTT, the figure routing uses.
    pub fn rtt(&self) -> Duration {
        self.inner.rtt()
    }

    /// Sets how many bytes the peer may send ahead of what this side has read, on the whole
    /// connection. A serving node starts peers at `accepted_receive_window` and widens it
    /// for one it has authorised to upload.
    pub fn set_receive_window(&self, bytes: u64) {
        self.inner
            .set_receive_window(quinn::VarInt::from_u64(bytes).unwrap_or(quinn::VarInt::MAX));
    }

    /// Opens a bidirectional stream for a request/response exchange.
    pub async fn open_bi(&self) -> Result<(FramedSend, FramedRecv), TransportError> {
        let (send, recv) = self.inner.open_bi().await.map_err(connection_error)?;
        Ok((
            FramedSend::new(send),
            FramedRecv::new(recv, self.max_frame_size),
        ))
    }

    /// Waits for the peer to open a bidirectional stream; `None` once the connection closed
    /// cleanly.
    pub async fn accept_bi(&self) -> Result<Option<(FramedSend, FramedRecv)>, TransportError> {
        match self.inner.accept_bi().await {
            Ok((send, recv)) => Ok(Some((
                FramedSend::new(send),
                FramedRecv::new(recv, self.max_frame_size),
            ))),
            Err(quinn::ConnectionError::LocallyClosed) => Ok(None),
            Err(e) => match connection_error(e) {
                TransportError::Closed {
                    code: ErrorCode::NoError,
                    ..
                } => Ok(None),
                other => Err(other),
            },
        }
    }

    /// Opens a unidirectional stream for one-way messages.
    pub async fn open_uni(&self) -> Result<FramedSend, TransportError> {
        let send = self.inner.open_uni().await.map_err(connection_error)?;
        Ok(FramedSend::new(send))
    }

    /// Waits for the peer to open a unidirectional stream.
    pub async fn accept_uni(&self) -> Result<FramedRecv, TransportError> {
        let recv = self.inner.accept_uni().await.map_err(connection_error)?;
        Ok(FramedRecv::new(recv, self.max_frame_size))
    }

    /// Sends an unreliable QUIC datagram (for probes and gossip that may be lost).
    pub fn send_datagram(&self, payload: Bytes) -> Result<(), TransportError> {
        self.inner.send_datagram(payload)?;
        Ok(())
    }

    /// The next QUIC datagram from the peer.
    pub async fn read_datagram(&self) -> Result<Bytes, TransportError> {
        self.inner.read_datagram().await.map_err(connection_error)
    }

    /// Largest datagram the path takes now, or `None` if the peer does not accept datagrams.
    pub fn max_datagram_size(&self) -> Option<usize> {
        self.inner.max_datagram_size()
    }

    /// One request/response exchange with no bodies: sends `request`, returns the response.
    pub async fn request(&self, request: impl Into<Bytes>) -> Result<Bytes, TransportError> {
        let (mut send, mut recv) = self.open_bi().await?;
        send.send_request(request).await?;
        send.finish()?;
        recv.recv_response().await
    }

    /// Closes the connection now with `code` and `reason`; open streams are abandoned.
    pub fn close(&self, code: ErrorCode, reason: &str) {
        self.inner.close(
            quinn::VarInt::from_u32(code.to_u16().into()),
            reason.as_bytes(),
        );
    }

    /// Waits until the connection is closed and returns why.
    pub async fn closed(&self) -> TransportError {
        connection_error(self.inner.closed().await)
    }

    /// Whether the connection is already closed.
    pub fn is_closed(&self) -> bool {
        self.inner.close_reason().is_some()
    }
}
