//! GET and HEAD of a content or a name: the headers a cache and a browser need, and the bytes
//! streamed chunk by chunk as the node has them verified (the first byte leaves before the
//! whole content is fetched; a range fetches only the chunks it covers).

use std::ops::Range;
use std::sync::Arc;

use headers::HeaderMapExt;
use http::{header, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, StreamBody};
use hyper::body::{Frame, Incoming};
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::StreamExt;

use super::plan::{etag_of, plan, Plan};
use super::route::Target;
use super::serve::{bearer, denied, empty, refused, text, Body, BodyError, Front};
use crate::chunking::{ContentId, Manifest};

/// What `/c/` answers carry: content never changes under its id.
const IMMUTABLE: &str = "public, max-age=31536000, immutable";

/// The type of content whose type was never recorded.
const UNKNOWN_TYPE: &str = "application/octet-stream";

/// Answers a GET or HEAD of `target` (and `inner`, a path inside a collection).
pub async fn read(
    front: &Arc<Front>,
    client: usize,
    req: Request<Incoming>,
    target: Target,
    inner: Option<String>,
) -> Response<Body> {
    let content = &front.content;
    let (id, mut cache_control) = match target {
        Target::Content(id) => (id, IMMUTABLE.to_owned()),
        Target::Name(name) => match content.name(&name).await {
            Ok((record, fresh_for)) => (
                record.id,
                format!(
                    "public, max-age={fresh_for}, stale-while-revalidate={}",
                    record.swr_s
                ),
            ),
            Err(refusal) => return refused(&refusal),
        },
    };
    let manifest = match content.manifest(id).await {
        Ok(m) => m,
        Err(refusal) => return refused(&refusal),
    };
    match content.may_read(&id, bearer(req.headers()).as_deref()) {
        Ok(true) => cache_control = cache_control.replacen("public", "private", 1),
        Ok(false) => {}
        Err(why) => return denied(why, &format!("content {id}")),
    }
    if inner.is_some() {
        return text(
            StatusCode::NOT_FOUND,
            &format!("content {id} is not a collection: it has no paths inside it"),
        );
    }
    let mut response = answer(front, client, &req, id, manifest);
    let headers = response.headers_mut();
    if let Ok(value) = HeaderValue::from_str(&cache_control) {
        headers.insert(header::CACHE_CONTROL, value);
    }
    response
}

/// The answer for content `id` as the request's conditional and range headers ask.
fn answer(
    front: &Arc<Front>,
    client: usize,
    req: &Request<Incoming>,
    id: ContentId,
    manifest: Arc<Manifest>,
) -> Response<Body> {
    let size = manifest.size;
    let plan = plan(req.headers(), &id, size);
    let (status, bytes) = match &plan {
        Plan::Whole => (StatusCode::OK, Some(0..size)),
        Plan::Part(range) => (StatusCode::PARTIAL_CONTENT, Some(range.clone())),
        Plan::NotModified => (StatusCode::NOT_MODIFIED, None),
        Plan::Unsatisfiable => (StatusCode::RANGE_NOT_SATISFIABLE, None),
    };
    let body = match &bytes {
        Some(range) if req.method() != Method::HEAD && !range.is_empty() => {
            stream(front, client, id, manifest, range.clone())
        }
        _ => empty(),
    };
    let mut response = Response::new(body);
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.typed_insert(etag_of(&id));
    headers.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    let content_type = front.content.content_type(&id);
    headers.insert(
        header::CONTENT_TYPE,
        content_type
            .and_then(|t| HeaderValue::from_str(&t).ok())
            .unwrap_or(HeaderValue::from_static(UNKNOWN_TYPE)),
    );
    match (&plan, bytes) {
        (Plan::Part(_), Some(range)) => {
            headers.typed_insert(
                headers::ContentRange::bytes(range.clone(), size)
                    .expect("a planned range lies inside the content"),
            );
            headers.typed_insert(headers::ContentLength(range.end - range.start));
        }
        (_, Some(range)) => headers.typed_insert(headers::ContentLength(range.end - range.start)),
        (Plan::Unsatisfiable, None) => {
            headers.typed_insert(headers::ContentRange::unsatisfied_bytes(size));
        }
        _ => {}
    }
    response
}

/// The bytes `range` of content `id`, chunk by chunk as the node reads (and has verified)
/// them; a chunk that cannot be had ends the body with an error, so the client sees a broken
/// transfer and never a short one.
fn stream(
    front: &Arc<Front>,
    client: usize,
    id: ContentId,
    manifest: Arc<Manifest>,
    range: Range<u64>,
) -> Body {
    let chunks = &manifest.chunks;
    let first = chunks.partition_point(|c| c.offset + u64::from(c.length) <= range.start);
    let end = chunks.partition_point(|c| c.offset < range.end);
    let arriving = front
        .content
        .chunks(id, manifest.clone(), first as u32..end as u32, client);
    let content = front.content.clone();
    let mut index = first;
    let frames = ReceiverStream::new(arriving).map(move |next| {
        let entry = &manifest.chunks[index];
        index += 1;
        let bytes = next.map_err(|refusal| BodyError::from(refusal.to_string()))?;
        let from = range.start.saturating_sub(entry.offset) as usize;
        let to = (range.end - entry.offset).min(u64::from(entry.length)) as usize;
        let piece = bytes.slice(from..to.min(bytes.len()));
        content.served(piece.len() as u64);
        Ok(Frame::data(piece))
    });
    StreamBody::new(frames).boxed()
}
