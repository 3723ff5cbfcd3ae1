//! The serving side of an endpoint: the request streams of each accepted connection, read
//! within the limits a public node needs, then handed to the application.
//!
//! What a peer can make a node hold is bounded here: a REQUEST frame is at most
//! `max_request_size`; bytes of requests still arriving are charged to a budget per
//! connection and one for the whole node (past either, BUSY at once); a request must arrive
//! whole within `stall_timeout_ms`, and every later read of a body and every write of an
//! answer must make progress within it, or the stream is reset with TIMEOUT and what it held
//! is freed. (QUIC flow control bounds the rest: see `TransportConfig::accepted_receive_window`.)

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use stoq_protocol::{busy_reason, ErrorCode, FrameKind, ProtocolError};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::debug;
use tracing::Instrument;

use crate::config::TransportConfig;
use crate::connection::StoqConnection;
use crate::error::TransportError;
use crate::framed::{FramedRecv, FramedSend};

/// The pause a BUSY answer for full request buffers asks for: requests are small and arrive in
/// milliseconds, so room comes back quickly unless a peer is holding it, which the stall
/// deadline ends.
const BUSY_PAUSE: Duration = Duration::from_millis(100);

/// One request arriving on a bidirectional stream, as handed to the handler an endpoint
/// serves with: the REQUEST payload is already read and checked.
#[derive(Debug)]
pub struct IncomingRequest {
    /// The connection it came on (peer id, address, stats).
    pub conn: StoqConnection,
    /// The REQUEST frame's payload.
    pub payload: Bytes,
    /// The rest of the stream: a body, if the request has one.
    pub body: FramedRecv,
    /// Where the response goes. Finish it, or it is reset when dropped.
    pub reply: FramedSend,
}

/// The endpoint-wide limits and counters of request intake.
#[derive(Debug)]
pub(crate) struct Intake {
    max_request: u32,
    per_connection: u32,
    /// Bytes of requests still arriving, all connections together.
    total: Arc<Semaphore>,
    stall: Duration,
    stalled: AtomicU64,
    over_budget: AtomicU64,
}

impl Intake {
    pub(crate) fn new(config: &TransportConfig) -> Self {
        Intake {
            max_request: config.max_request_size,
            per_connection: config.request_buffer_per_connection,
            total: Arc::new(Semaphore::new(config.request_buffer_total as usize)),
            stall: config.stall_timeout(),
            stalled: AtomicU64::new(0),
            over_budget: AtomicU64::new(0),
        }
    }

    /// Streams reset because the peer stalled (a request not arriving whole in time, a body
    /// or an answer making no progress).
    pub(crate) fn stalled(&self) -> u64 {
        self.stalled.load(Ordering::Relaxed)
    }

    /// Requests answered BUSY because the request buffers were full.
    pub(crate) fn over_budget(&self) -> u64 {
        self.over_budget.load(Ordering::Relaxed)
    }
}

/// Serves the request streams of one accepted connection until it ends or the endpoint shuts
/// down; each exchange runs as a task in `tasks`.
pub(crate) async fn serve_connection<H, Fut>(
    conn: StoqConnection,
    tasks: TaskTracker,
    shutdown: CancellationToken,
    intake: Arc<Intake>,
    handler: Arc<H>,
) where
    H: Fn(IncomingRequest) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<(), TransportError>> + Send + 'static,
{
    let budget = Arc::new(Semaphore::new(intake.per_connection as usize));
    loop {
        let stream = tokio::select! {
            stream = conn.accept_bi() => stream,
            uni = conn.accept_uni() => match uni {
                // Requests come on bidirectional streams only: a one-way stream is stopped at
                // once, so it holds no window and no buffer here.
                Ok(mut refused) => {
                    refused.stop(ErrorCode::BadRequest);
                    continue;
                }
                Err(_) => break,
            },
            _ = shutdown.cancelled() => break,
        };
        let (reply, body) = match stream {
            Ok(Some(pair)) => pair,
            Ok(None) => break,
            Err(e) => {
                debug!(peer = %conn.remote_addr(), error = %e, "connection ended");
                break;
            }
        };
        let exchange = Exchange {
            conn: conn.clone(),
            reply: reply
                .track_delivery(tasks.clone())
                .with_stall_deadline(intake.stall),
            body: body.with_stall_deadline(intake.stall),
            intake: intake.clone(),
            budget: budget.clone(),
        };
        let (handler, intake) = (handler.clone(), intake.clone());
        tasks.spawn(
            async move {
                let peer = exchange.conn.remote_addr();
                match exchange.run(handler).await {
                    Ok(()) => {}
                    Err(e) => {
                        if let TransportError::Timeout(_) = e {
                            intake.stalled.fetch_add(1, Ordering::Relaxed);
                        }
                        debug!(%peer, error = %e, "request failed");
                    }
                }
            }
            .in_current_span(),
        );
    }
}

/// One request stream before its handler runs.
struct Exchange {
    conn: StoqConnection,
    reply: FramedSend,
    body: FramedRecv,
    intake: Arc<Intake>,
    /// Bytes of requests still arriving on this connection.
    budget: Arc<Semaphore>,
}

/// Why a request was not handed to the handler.
enum Refused {
    /// The request buffers are full; the reason says which.
    Busy(&'static str),
    /// The request did not arrive whole in time.
    Stalled,
    Transport(TransportError),
}

impl From<TransportError> for Refused {
    fn from(e: TransportError) -> Self {
        match e {
            TransportError::Timeout(_) => Refused::Stalled,
            other => Refused::Transport(other),
        }
    }
}

impl Exchange {
    async fn run<H, Fut>(mut self, handler: Arc<H>) -> Result<(), TransportError>
    where
        H: Fn(IncomingRequest) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), TransportError>> + Send + 'static,
    {
        let stall = self.intake.stall;
        let read = tokio::time::timeout(stall, self.read_request()).await;
        let refused = match read {
            Ok(Ok(payload)) => {
                return handler(IncomingRequest {
                    conn: self.conn,
                    payload,
                    body: self.body,
                    reply: self.reply,
                })
                .await
            }
            Ok(Err(refused)) => refused,
            Err(_) => Refused::Stalled,
        };
        match refused {
            Refused::Busy(why) => {
                self.intake.over_budget.fetch_add(1, Ordering::Relaxed);
                self.body.stop(ErrorCode::Busy);
                let reason = busy_reason(BUSY_PAUSE, why);
                self.reply.send_error(ErrorCode::Busy, &reason).await
            }
            Refused::Stalled => {
                self.body.stop(ErrorCode::Timeout);
                let reason = format!(
                    "the request did not arrive whole within {} ms",
                    stall.as_millis()
                );
                self.reply.send_error(ErrorCode::Timeout, &reason).await?;
                Err(TransportError::Timeout(reason))
            }
            Refused::Transport(TransportError::Protocol(e)) => {
                self.reply.send_error(e.code(), &e.to_string()).await?;
                Err(TransportError::Protocol(e))
            }
            // The stream ended before a whole REQUEST frame began (an empty stream).
            Refused::Transport(e @ TransportError::UnexpectedEnd(_)) => {
                self.body.stop(ErrorCode::ProtocolViolation);
                self.reply
                    .send_error(
                        ErrorCode::ProtocolViolation,
                        "the stream ended before a REQUEST frame",
                    )
                    .await?;
                Err(e)
            }
            Refused::Transport(e) => Err(e),
        }
    }

    /// The REQUEST frame's payload, its bytes charged to both budgets while they arrive.
    async fn read_request(&mut self) -> Result<Bytes, Refused> {
        let header = self
            .body
            .recv_header()
            .await?
            .ok_or(TransportError::UnexpectedEnd("a REQUEST frame"))?;
        if header.kind != FrameKind::Request {
            return Err(Refused::Transport(self.body.fail(
                ProtocolError::UnexpectedFrame {
                    got: header.kind,
                    expected: "a REQUEST frame",
                },
            )));
        }
        if header.length > self.intake.max_request {
            return Err(Refused::Transport(self.body.fail(
                ProtocolError::FrameTooLarge {
                    length: header.length,
                    max: self.intake.max_request,
                },
            )));
        }
        let _here = (self.budget.clone().try_acquire_many_owned(header.length))
            .map_err(|_| Refused::Busy("this connection's request buffers are full"))?;
        let _node = (self
            .intake
            .total
            .clone()
            .try_acquire_many_owned(header.length))
        .map_err(|_| Refused::Busy("the node's request buffers are full"))?;
        Ok(self.body.recv_payload(header.length as usize).await?)
    }
}
