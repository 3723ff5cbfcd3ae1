//! The operations every node answers the same way: PING, ECHO, SINK and DISCARD (what the
//! transport tests and benchmarks use).

use bytes::Bytes;
use stoq_transport::{IncomingRequest, TransportError};

use crate::protocol::{Request, SinkReceipt};

/// Answers a basic request; the body, for those that take one, is read to its END.
pub async fn answer(
    node_id: &str,
    request: Request,
    mut req: IncomingRequest,
) -> Result<(), TransportError> {
    match request {
        Request::Ping => {
            req.reply.send_response(node_id.to_owned()).await?;
        }
        Request::Echo => {
            let mut hasher = blake3::Hasher::new();
            while let Some(piece) = req.body.recv_data().await? {
                hasher.update(&piece);
                req.reply.send_data(piece).await?;
            }
            req.reply.send_end().await?;
            req.reply
                .send_response(Bytes::copy_from_slice(hasher.finalize().as_bytes()))
                .await?;
        }
        Request::Sink => {
            let mut hasher = blake3::Hasher::new();
            let mut bytes = 0u64;
            while let Some(piece) = req.body.recv_data().await? {
                bytes += piece.len() as u64;
                hasher.update(&piece);
            }
            let receipt = SinkReceipt {
                bytes,
                hash: hasher.finalize(),
            };
            req.reply.send_response(receipt.encode()).await?;
        }
        Request::Discard => {
            let mut bytes = 0u64;
            while let Some(piece) = req.body.recv_data().await? {
                bytes += piece.len() as u64;
            }
            req.reply
                .send_response(bytes.to_be_bytes().to_vec())
                .await?;
        }
        other => unreachable!("{:?} is not a basic operation", other.op()),
    }
    req.reply.finish()
}
