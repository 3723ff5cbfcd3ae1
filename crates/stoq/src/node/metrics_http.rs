//! `/metrics` over HTTP/1.1 with hyper (the HTTP front's stack): the node's registry encoded
//! on every scrape; anything else is 404. Heads are bounded in size and time.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{header, Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;

use super::error::NodeError;
use super::metrics::render;
use super::state::NodeState;
use tracing::Instrument;

/// How long a scraper has to send its request head.
const HEAD_DEADLINE: Duration = Duration::from_secs(5);

/// Longest request head read.
const MAX_HEAD_BYTES: usize = 16 * 1024;

/// The exposition format's media type.
const TEXT_FORMAT: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Serves `GET /metrics` on `listener` from `registry`, until the task is dropped.
pub async fn serve_http(listener: TcpListener, registry: Arc<Registry>) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            // Out of file descriptors, usually: wait a little rather than spin.
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        let registry = registry.clone();
        super::spawn_in_span(async move {
            let service = service_fn(move |req| {
                let registry = registry.clone();
                async move { Ok::<_, Infallible>(answer(&registry, &req)) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEAD_DEADLINE)
                .max_buf_size(MAX_HEAD_BYTES)
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

fn answer<B>(registry: &Registry, req: &Request<B>) -> Response<Full<Bytes>> {
    let (status, kind, body) = match (req.method(), req.uri().path()) {
        (&Method::GET | &Method::HEAD, "/metrics") => {
            (StatusCode::OK, TEXT_FORMAT, render(registry))
        }
        _ => (
            StatusCode::NOT_FOUND,
            "text/plain; charset=utf-8",
            "only GET /metrics is served here\n".to_owned(),
        ),
    };
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, header::HeaderValue::from_static(kind));
    response
}

/// Serves `/metrics` for `state` at `addr` (IPv6), on a task of its own.
pub fn serve_metrics(
    state: &Arc<NodeState>,
    addr: SocketAddr,
) -> Result<tokio::task::JoinHandle<()>, NodeError> {
    let listener = super::metrics::bind_tcp_v6(addr, 128)?;
    let registry = Arc::new(super::metrics::registry(state.clone()));
    let serving = serve_http(listener, registry).instrument(state.span.clone());
    Ok(tokio::spawn(serving))
}
