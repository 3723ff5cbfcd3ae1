//! Framed halves of a QUIC stream: STOQ frames in, STOQ frames out.
//!
//! Small frames (REQUEST, RESPONSE, MESSAGE, ERROR) are read whole, never longer than the
//! receiver's maximum frame size. Bodies travel as DATA frames and are handed over piece by
//! piece as QUIC delivers them, so a body of any size streams through in bounded memory and
//! without an extra copy.

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use stoq_protocol::{
    ErrorCode, ErrorFrame, Frame, FrameHeader, FrameKind, ProtocolError, DATA_FRAME_TARGET,
    HEADER_LEN,
};
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio_util::task::TaskTracker;

use crate::error::connection_error;
use crate::TransportError;

/// The sending half of a stream, writing STOQ frames.
///
/// Dropping it without [`FramedSend::finish`] resets the stream with `INTERNAL`, so the peer
/// can never mistake an abandoned body for a complete one.
#[derive(Debug)]
pub struct FramedSend {
    /// Always present; taken only in `drop`.
    stream: Option<quinn::SendStream>,
    done: bool,
    /// For answers to requests served by an endpoint: after `finish`, a task in this tracker
    /// waits until the peer has acknowledged everything, so a graceful shutdown does not close
    /// the connection under a response still in flight.
    delivery: Option<TaskTracker>,
    /// Longest wait for the peer to take more of what is written (answers on a serving
    /// endpoint); past it the stream is reset with TIMEOUT. `None` waits as long as QUIC does.
    stall: Option<Duration>,
}

impl FramedSend {
    pub(crate) fn new(stream: quinn::SendStream) -> Self {
        FramedSend {
            stream: Some(stream),
            done: false,
            delivery: None,
            stall: None,
        }
    }

    /// Resets the stream with TIMEOUT whenever the peer takes nothing for `stall`.
    pub(crate) fn with_stall_deadline(mut self, stall: Duration) -> Self {
        self.stall = Some(stall);
        self
    }

    /// Makes graceful shutdown (which waits for `tracker`) wait for this stream's delivery.
    pub(crate) fn track_delivery(mut self, tracker: TaskTracker) -> Self {
        self.delivery = Some(tracker);
        self
    }

    fn stream(&mut self) -> &mut quinn::SendStream {
        self.stream
            .as_mut()
            .expect("the stream is only taken on drop")
    }

    /// Writes one frame (header and payload, without copying the payload).
    pub async fn send_frame(
        &mut self,
        kind: FrameKind,
        payload: Bytes,
    ) -> Result<(), TransportError> {
        let length = u32::try_from(payload.len()).map_err(|_| ProtocolError::FrameTooLarge {
            length: u32::MAX,
            max: stoq_protocol::MAX_FRAME_SIZE_CEILING,
        })?;
        let header = FrameHeader { kind, length };
        self.write_all(&mut [Bytes::copy_from_slice(&header.encode()), payload])
            .await
    }

    /// Writes every byte of `chunks`; with a stall deadline, each step that makes no progress
    /// for that long resets the stream (a slow peer is fine, a peer that takes nothing is not).
    async fn write_all(&mut self, mut chunks: &mut [Bytes]) -> Result<(), TransportError> {
        while !chunks.is_empty() {
            let stall = self.stall;
            let step = self.stream().write_chunks(chunks);
            let written = match stall {
                None => step.await,
                Some(stall) => match tokio::time::timeout(stall, step).await {
                    Ok(written) => written,
                    Err(_) => {
                        self.reset(ErrorCode::Timeout);
                        return Err(TransportError::Timeout(format!(
                            "the peer took nothing for {} ms",
                            stall.as_millis()
                        )));
                    }
                },
            }
            .map_err(write_error)?;
            chunks = &mut chunks[written.chunks..];
        }
        Ok(())
    }

    /// Writes raw bytes, bypassing framing. Only for conformance tests that must put
    /// malformed frames on the wire.
    #[doc(hidden)]
    pub async fn send_raw(&mut self, bytes: Bytes) -> Result<(), TransportError> {
        self.write_all(&mut [bytes]).await
    }

    /// Opens an exchange: a REQUEST frame with the application's request.
    pub async fn send_request(&mut self, payload: impl Into<Bytes>) -> Result<(), TransportError> {
        self.send_frame(FrameKind::Request, payload.into()).await
    }

    /// Answers an exchange: a RESPONSE frame.
    pub async fn send_response(&mut self, payload: impl Into<Bytes>) -> Result<(), TransportError> {
        self.send_frame(FrameKind::Response, payload.into()).await
    }

    /// A one-way MESSAGE frame (for unidirectional streams).
    pub async fn send_message(&mut self, payload: impl Into<Bytes>) -> Result<(), TransportError> {
        self.send_frame(FrameKind::Message, payload.into()).await
    }

    /// Sends body bytes as DATA frames of at most [`DATA_FRAME_TARGET`] bytes each.
    pub async fn send_data(&mut self, mut body: Bytes) -> Result<(), TransportError> {
        while !body.is_empty() {
            let piece = body.split_to(body.len().min(DATA_FRAME_TARGET));
            self.send_frame(FrameKind::Data, piece).await?;
        }
        Ok(())
    }

    /// Streams everything `reader` yields as DATA frames, holding one frame in memory at a
    /// time, and returns the number of body bytes sent. Does not send END.
    pub async fn send_data_from<R: AsyncRead + Unpin>(
        &mut self,
        reader: &mut R,
    ) -> Result<u64, TransportError> {
        let mut sent = 0u64;
        loop {
            let mut buf = BytesMut::with_capacity(DATA_FRAME_TARGET);
            while buf.len() < DATA_FRAME_TARGET {
                let n = reader
                    .read_buf(&mut buf)
                    .await
                    .map_err(|source| TransportError::Io {
                        what: "cannot read body source",
                        path: String::new(),
                        source,
                    })?;
                if n == 0 {
                    break;
                }
            }
            if buf.is_empty() {
                return Ok(sent);
            }
            sent += buf.len() as u64;
            self.send_frame(FrameKind::Data, buf.freeze()).await?;
        }
    }

    /// Ends a body with an END frame.
    pub async fn send_end(&mut self) -> Result<(), TransportError> {
        self.send_frame(FrameKind::End, Bytes::new()).await
    }

    /// Ends the exchange with an ERROR frame and finishes the stream.
    pub async fn send_error(
        &mut self,
        code: ErrorCode,
        reason: &str,
    ) -> Result<(), TransportError> {
        self.send_frame(FrameKind::Error, ErrorFrame::new(code, reason).encode())
            .await?;
        self.finish()
    }

    /// Finishes the stream: the peer reads everything sent and then a clean end.
    pub fn finish(&mut self) -> Result<(), TransportError> {
        self.done = true;
        self.stream().finish()?;
        Ok(())
    }

    /// Abandons the stream with `code`; data not yet delivered is discarded.
    pub fn reset(&mut self, code: ErrorCode) {
        self.done = true;
        let _ = self
            .stream()
            .reset(quinn::VarInt::from_u32(code.to_u16().into()));
    }

    /// Waits until the peer has received everything (or stopped the stream).
    pub async fn stopped(&mut self) -> Result<(), TransportError> {
        match self.stream().stopped().await {
            Ok(None) => Ok(()),
            Ok(Some(code)) => Err(TransportError::Remote {
                code: ErrorCode::from_quic(code.into_inner()),
                reason: "peer stopped reading".into(),
            }),
            Err(quinn::StoppedError::ConnectionLost(e)) => Err(connection_error(e)),
            Err(quinn::StoppedError::ZeroRttRejected) => {
                Err(TransportError::UnexpectedEnd("0-RTT rejected"))
            }
        }
    }
}

impl Drop for FramedSend {
    fn drop(&mut self) {
        let Some(mut stream) = self.stream.take() else {
            return;
        };
        if !self.done {
            let _ = stream.reset(quinn::VarInt::from_u32(ErrorCode::Internal.to_u16().into()));
            return;
        }
        if let (Some(tracker), Ok(runtime)) =
            (self.delivery.take(), tokio::runtime::Handle::try_current())
        {
            // A peer that never acknowledges is not waited for past the stall deadline.
            let stall = self.stall.unwrap_or(Duration::MAX);
            tracker.spawn_on(
                async move {
                    let _ = tokio::time::timeout(stall, stream.stopped()).await;
                },
                &runtime,
            );
        }
    }
}

fn write_error(e: quinn::WriteError) -> TransportError {
    match e {
        quinn::WriteError::Stopped(code) => TransportError::Remote {
            code: ErrorCode::from_quic(code.into_inner()),
            reason: "peer stopped reading the stream".into(),
        },
        quinn::WriteError::ConnectionLost(e) => connection_error(e),
        other => TransportError::Write(other),
    }
}

fn read_error(e: quinn::ReadError) -> TransportError {
    match e {
        quinn::ReadError::Reset(code) => TransportError::Remote {
            code: ErrorCode::from_quic(code.into_inner()),
            reason: "peer reset the stream".into(),
        },
        quinn::ReadError::ConnectionLost(e) => connection_error(e),
        other => TransportError::Read(other),
    }
}

/// The receiving half of a stream, reading STOQ frames.
#[derive(Debug)]
pub struct FramedRecv {
    stream: quinn::RecvStream,
    max_frame_size: u32,
    /// Bytes read from QUIC but not yet handed out.
    buffered: Bytes,
    /// Payload bytes of the current DATA frame still to come.
    data_remaining: usize,
    /// Longest wait for the peer's next bytes (requests on a serving endpoint); past it the
    /// stream is stopped with TIMEOUT. `None` waits as long as QUIC does.
    stall: Option<Duration>,
}

impl FramedRecv {
    pub(crate) fn new(stream: quinn::RecvStream, max_frame_size: u32) -> Self {
        FramedRecv {
            stream,
            max_frame_size,
            buffered: Bytes::new(),
            data_remaining: 0,
            stall: None,
        }
    }

    /// Stops the stream with TIMEOUT whenever the peer sends nothing for `stall`.
    pub(crate) fn with_stall_deadline(mut self, stall: Duration) -> Self {
        self.stall = Some(stall);
        self
    }

    /// Up to `max` bytes: buffered ones first, else one chunk from QUIC; `None` at stream end.
    async fn read_some(&mut self, max: usize) -> Result<Option<Bytes>, TransportError> {
        if !self.buffered.is_empty() {
            let n = max.min(self.buffered.len());
            return Ok(Some(self.buffered.split_to(n)));
        }
        let read = self.stream.read_chunk(max, true);
        let chunk = match self.stall {
            None => read.await,
            Some(stall) => match tokio::time::timeout(stall, read).await {
                Ok(chunk) => chunk,
                Err(_) => {
                    self.stop(ErrorCode::Timeout);
                    return Err(TransportError::Timeout(format!(
                        "the peer sent nothing for {} ms",
                        stall.as_millis()
                    )));
                }
            },
        };
        Ok(chunk.map_err(read_error)?.map(|chunk| chunk.bytes))
    }

    /// Stops the peer's sending with the error's code and returns the error.
    pub(crate) fn fail(&mut self, e: ProtocolError) -> TransportError {
        let _ = self
            .stream
            .stop(quinn::VarInt::from_u32(e.code().to_u16().into()));
        TransportError::Protocol(e)
    }

    /// The error an ERROR frame's payload reports (or the protocol error if it is malformed).
    fn remote_error(&mut self, payload: &[u8]) -> TransportError {
        match ErrorFrame::decode(payload) {
            Ok(e) => TransportError::Remote {
                code: e.code,
                reason: e.reason,
            },
            Err(e) => self.fail(e),
        }
    }

    /// The next frame header, or `None` if the stream ended cleanly between frames.
    pub async fn recv_header(&mut self) -> Result<Option<FrameHeader>, TransportError> {
        let mut header = [0u8; HEADER_LEN];
        let mut got = 0;
        while got < HEADER_LEN {
            match self.read_some(HEADER_LEN - got).await? {
                Some(piece) => {
                    header[got..got + piece.len()].copy_from_slice(&piece);
                    got += piece.len();
                }
                None if got == 0 => return Ok(None),
                None => {
                    return Err(self.fail(ProtocolError::Truncated {
                        missing: HEADER_LEN - got,
                    }))
                }
            }
        }
        FrameHeader::decode(header, self.max_frame_size)
            .map(Some)
            .map_err(|e| self.fail(e))
    }

    /// Reads exactly `len` payload bytes (at most the maximum frame size, already checked).
    pub(crate) async fn recv_payload(&mut self, len: usize) -> Result<Bytes, TransportError> {
        if len == 0 {
            return Ok(Bytes::new());
        }
        let first = self
            .read_some(len)
            .await?
            .ok_or_else(|| self.fail(ProtocolError::Truncated { missing: len }))?;
        if first.len() == len {
            return Ok(first);
        }
        let mut payload = BytesMut::with_capacity(len);
        payload.extend_from_slice(&first);
        while payload.len() < len {
            let missing = len - payload.len();
            let piece = self
                .read_some(missing)
                .await?
                .ok_or_else(|| self.fail(ProtocolError::Truncated { missing }))?;
            payload.extend_from_slice(&piece);
        }
        Ok(payload.freeze())
    }

    /// The next whole frame, or `None` at a clean end of stream. An ERROR frame is returned
    /// as [`TransportError::Remote`].
    pub async fn recv_frame(&mut self) -> Result<Option<Frame>, TransportError> {
        let Some(header) = self.recv_header().await? else {
            return Ok(None);
        };
        let payload = self.recv_payload(header.length as usize).await?;
        if header.kind == FrameKind::Error {
            return Err(self.remote_error(&payload));
        }
        Ok(Some(Frame::new(header.kind, payload)))
    }

    /// Reads a frame that must be of `kind`; anything else is a protocol error.
    async fn recv_expected(
        &mut self,
        kind: FrameKind,
        expected: &'static str,
    ) -> Result<Bytes, TransportError> {
        match self.recv_frame().await? {
            Some(frame) if frame.kind == kind => Ok(frame.payload),
            Some(frame) => Err(self.fail(ProtocolError::UnexpectedFrame {
                got: frame.kind,
                expected,
            })),
            None => Err(TransportError::UnexpectedEnd(expected)),
        }
    }

    /// The REQUEST frame that opens an exchange.
    pub async fn recv_request(&mut self) -> Result<Bytes, TransportError> {
        self.recv_expected(FrameKind::Request, "a REQUEST frame")
            .await
    }

    /// The RESPONSE frame that answers an exchange.
    pub async fn recv_response(&mut self) -> Result<Bytes, TransportError> {
        self.recv_expected(FrameKind::Response, "a RESPONSE frame")
            .await
    }

    /// A one-way MESSAGE frame.
    pub async fn recv_message(&mut self) -> Result<Bytes, TransportError> {
        self.recv_expected(FrameKind::Message, "a MESSAGE frame")
            .await
    }

    /// The next piece of a body, as QUIC delivered it; `None` after the END frame.
    pub async fn recv_data(&mut self) -> Result<Option<Bytes>, TransportError> {
        self.recv_data_up_to(usize::MAX).await
    }

    /// The next piece of a body, at most `max` bytes; `None` after the END frame.
    async fn recv_data_up_to(&mut self, max: usize) -> Result<Option<Bytes>, TransportError> {
        loop {
            if self.data_remaining > 0 {
                let missing = self.data_remaining;
                let piece = self
                    .read_some(missing.min(max))
                    .await?
                    .ok_or_else(|| self.fail(ProtocolError::Truncated { missing }))?;
                self.data_remaining -= piece.len();
                return Ok(Some(piece));
            }
            let header = self
                .recv_header()
                .await?
                .ok_or(TransportError::UnexpectedEnd(
                    "body ended without an END frame",
                ))?;
            match header.kind {
                FrameKind::Data => self.data_remaining = header.length as usize,
                FrameKind::End => return Ok(None),
                FrameKind::Error => {
                    let payload = self.recv_payload(header.length as usize).await?;
                    return Err(self.remote_error(&payload));
                }
                other => {
                    return Err(self.fail(ProtocolError::UnexpectedFrame {
                        got: other,
                        expected: "a DATA or END frame",
                    }))
                }
            }
        }
    }

    /// Collects a whole body, refusing one longer than `limit` bytes as soon as it passes it.
    /// The pieces are kept as QUIC delivered them and joined once at the end (one copy, none
    /// for a body that arrived in one piece), not grown piece by piece.
    pub async fn recv_body(&mut self, limit: usize) -> Result<Bytes, TransportError> {
        let mut pieces: Vec<Bytes> = Vec::new();
        let mut len = 0usize;
        while let Some(piece) = self.recv_data().await? {
            if len + piece.len() > limit {
                return Err(self.fail(ProtocolError::FrameTooLarge {
                    length: u32::try_from(len + piece.len()).unwrap_or(u32::MAX),
                    max: u32::try_from(limit).unwrap_or(u32::MAX),
                }));
            }
            len += piece.len();
            pieces.push(piece);
        }
        Ok(join_pieces(pieces, len))
    }

    /// Reads exactly `len` body bytes (which may span DATA frames), or `None` at the END frame
    /// when none of them came. A body that ends part-way is a protocol error. This is how a
    /// receiver splits one body into parts whose lengths it knows (a run of chunks).
    pub async fn recv_exact(&mut self, len: usize) -> Result<Option<Bytes>, TransportError> {
        Ok(self
            .recv_exact_pieces(len)
            .await?
            .map(|pieces| join_pieces(pieces, len)))
    }

    /// [`Self::recv_exact`] as the pieces the bytes arrived in, not yet joined: a receiver
    /// that does its heavy work elsewhere joins them there ([`join_pieces`]).
    pub async fn recv_exact_pieces(
        &mut self,
        len: usize,
    ) -> Result<Option<Vec<Bytes>>, TransportError> {
        let mut pieces: Vec<Bytes> = Vec::new();
        let mut got = 0usize;
        while got < len {
            match self.recv_data_up_to(len - got).await? {
                Some(piece) => {
                    got += piece.len();
                    pieces.push(piece);
                }
                None if got == 0 => return Ok(None),
                None => return Err(self.fail(ProtocolError::Truncated { missing: len - got })),
            }
        }
        Ok(Some(pieces))
    }

    /// Tells the peer to stop sending on this stream.
    pub fn stop(&mut self, code: ErrorCode) {
        let _ = self
            .stream
            .stop(quinn::VarInt::from_u32(code.to_u16().into()));
    }
}

/// Joins the pieces of a body of `len` bytes: no copy for one piece, one copy otherwise.
pub fn join_pieces(mut pieces: Vec<Bytes>, len: usize) -> Bytes {
    if pieces.len() == 1 {
        return pieces.pop().expect("one piece");
    }
    let mut body = BytesMut::with_capacity(len);
    for piece in &pieces {
        body.extend_from_slice(piece);
    }
    body.freeze()
}
