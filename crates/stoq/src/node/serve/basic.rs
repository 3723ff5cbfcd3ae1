//! The operations every node answers the same way: PING, ECHO, SINK and DISCARD (what the
//! transport tests and benchmarks use).

use bytes::Bytes;
use stoq_transport::{IncomingRequest, TransportError};

use super::super::error::Refusal;
use crate::protocol::{Request, SinkReceipt};

/// Answers a basic request; the body, for those that take one, is read to its END. A body
/// that cannot be read is answered with an ERROR frame naming what was wrong with it.
pub async fn answer(
    node_id: &str,
    request: Request,
    mut req: IncomingRequest,
) -> Result<(), TransportError> {
    match answer_body(node_id, request, &mut req).await {
        Err(BodyOrReply::Body(e)) => {
            let refusal = Refusal::from_body(&e);
            req.reply.send_error(refusal.code, &refusal.reason).await
        }
        Err(BodyOrReply::Reply(e)) => Err(e),
        Ok(()) => req.reply.finish(),
    }
}

/// Which side failed: reading the asker's body, or writing the answer.
enum BodyOrReply {
    Body(TransportError),
    Reply(TransportError),
}

async fn answer_body(
    node_id: &str,
    request: Request,
    req: &mut IncomingRequest,
) -> Result<(), BodyOrReply> {
    use BodyOrReply::{Body, Reply};
    match request {
        Request::Ping => {
            req.reply
                .send_response(node_id.to_owned())
                .await
                .map_err(Reply)?;
        }
        Request::Echo => {
            let mut hasher = blake3::Hasher::new();
            while let Some(piece) = req.body.recv_data().await.map_err(Body)? {
                hasher.update(&piece);
                req.reply.send_data(piece).await.map_err(Reply)?;
            }
            req.reply.send_end().await.map_err(Reply)?;
            req.reply
                .send_response(Bytes::copy_from_slice(hasher.finalize().as_bytes()))
                .await
                .map_err(Reply)?;
        }
        Request::Sink => {
            let mut hasher = blake3::Hasher::new();
            let mut bytes = 0u64;
            while let Some(piece) = req.body.recv_data().await.map_err(Body)? {
                bytes += piece.len() as u64;
                hasher.update(&piece);
            }
            let receipt = SinkReceipt {
                bytes,
                hash: hasher.finalize(),
            };
            req.reply
                .send_response(receipt.encode())
                .await
                .map_err(Reply)?;
        }
        Request::Discard => {
            let mut bytes = 0u64;
            while let Some(piece) = req.body.recv_data().await.map_err(Body)? {
                bytes += piece.len() as u64;
            }
            req.reply
                .send_response(bytes.to_be_bytes().to_vec())
                .await
                .map_err(Reply)?;
        }
        other => unreachable!("{:?} is not a basic operation", other.op()),
    }
    Ok(())
}
