//! GET and HEAD of a content, a name, or a path inside a collection: the headers a cache and
//! a browser need, and the bytes streamed chunk by chunk as the node has them verified (the
//! first byte leaves before the whole content is fetched; a range fetches only the chunks it
//! covers).

use std::ops::Range;
use std::sync::Arc;

use headers::HeaderMapExt;
use http::{header, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;
use tokio_stream::StreamExt;

use super::answer::{bearer, denied, empty, refused, text, Body, BodyError};
use super::collections::sniffed_type;
use super::front::Front;
use super::plan::{etag_of, plan, Plan};
use super::route::Target;
use crate::chunking::{ContentId, ContentKind, Manifest};
use crate::node::Refusal;

/// What `/c/` answers carry: content never changes under its id.
const IMMUTABLE: &str = "public, max-age=31536000, immutable";

/// What a read resolved to: the content whose bytes are sent.
struct Resolved {
    id: ContentId,
    manifest: Arc<Manifest>,
    media_type: String,
    restricted: bool,
}

/// Answers a GET or HEAD of `target` (and `inner`, a path inside a collection).
pub async fn read(
    front: &Arc<Front>,
    client: usize,
    req: Request<Body>,
    target: Target,
    inner: Option<String>,
) -> Response<Body> {
    let (id, cache_control) = match target {
        Target::Content(id) => (id, IMMUTABLE.to_owned()),
        Target::Name(name) => match front.content.name(&name).await {
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
    let resolved = match resolve(front, client, &req, id, inner).await {
        Ok(resolved) => resolved,
        Err(response) => return response,
    };
    // Restricted content is for its reader only: no shared cache may keep it.
    let cache_control = match resolved.restricted {
        true => cache_control.replacen("public", "private", 1),
        false => cache_control,
    };
    let mut response = answer(front, client, &req, resolved);
    if let Ok(value) = HeaderValue::from_str(&cache_control) {
        response.headers_mut().insert(header::CACHE_CONTROL, value);
    }
    response
}

/// The content a read asks for: `id` itself, or for a collection the file at `inner` (its
/// `index.html` for a directory); a collection or directory asked for without its trailing
/// slash is redirected to it, so relative links inside it resolve.
async fn resolve(
    front: &Arc<Front>,
    client: usize,
    req: &Request<Body>,
    id: ContentId,
    inner: Option<String>,
) -> Result<Resolved, Response<Body>> {
    let (manifest, restricted) = readable(front, req, id).await?;
    if manifest.kind != ContentKind::Collection {
        if inner.is_some() {
            return Err(text(
                StatusCode::NOT_FOUND,
                &format!("content {id} is not a collection: it has no paths inside it"),
            ));
        }
        let media_type = match front.content.media_type(&id).await {
            Some(known) => known,
            None => {
                let sniffed = sniffed_type(&front.content, client, id, manifest.clone())
                    .await
                    .map_err(|r| refused(&r))?;
                front.content.remember_media_type(id, sniffed.clone());
                sniffed
            }
        };
        return Ok(Resolved {
            id,
            manifest,
            media_type,
            restricted,
        });
    }
    let collection = front
        .collections
        .get(&front.content, client, id, manifest)
        .await
        .map_err(|r| refused(&r))?;
    let Some(path) = inner else {
        return Err(add_slash(req));
    };
    let Some(entry) = collection.lookup(&path) else {
        if !path.is_empty() && collection.is_dir(&path) && !path.ends_with('/') {
            return Err(add_slash(req));
        }
        return Err(refused(&Refusal::not_found(format!(
            "collection {id} has no file {path:?}"
        ))));
    };
    let (manifest, entry_restricted) = readable(front, req, entry.id).await?;
    Ok(Resolved {
        id: entry.id,
        manifest,
        media_type: entry.media_type.clone(),
        restricted: restricted || entry_restricted,
    })
}

/// The manifest of `id` and whether its reads are restricted, once the reader is let in.
async fn readable(
    front: &Front,
    req: &Request<Body>,
    id: ContentId,
) -> Result<(Arc<Manifest>, bool), Response<Body>> {
    let manifest = front.content.manifest(id).await.map_err(|r| refused(&r))?;
    let restricted = front
        .content
        .may_read(&id, bearer(req.headers()).as_deref())
        .map_err(|why| denied(why, &format!("content {id}")))?;
    Ok((manifest, restricted))
}

/// 301 to the same path with a slash added (and the same query).
fn add_slash(req: &Request<Body>) -> Response<Body> {
    let uri = req.uri();
    let location = match uri.query() {
        Some(q) => format!("{}/?{q}", uri.path()),
        None => format!("{}/", uri.path()),
    };
    let mut response = text(StatusCode::MOVED_PERMANENTLY, &format!("see {location}"));
    if let Ok(value) = HeaderValue::from_str(&location) {
        response.headers_mut().insert(header::LOCATION, value);
    }
    response
}

/// The answer for the resolved content as the request's conditional and range headers ask.
fn answer(
    front: &Arc<Front>,
    client: usize,
    req: &Request<Body>,
    resolved: Resolved,
) -> Response<Body> {
    let Resolved {
        id,
        manifest,
        media_type,
        ..
    } = resolved;
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
            if !front.content.has_read_room() {
                // Every read-ahead buffer is taken by readers still sending: come back soon.
                let after = std::time::Duration::from_secs(1);
                return refused(&Refusal::busy(
                    "the HTTP front's read-ahead buffers are full",
                    after,
                ));
            }
            stream(front, client, id, manifest, range.clone())
        }
        _ => empty(),
    };
    let mut response = Response::new(body);
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.typed_insert(etag_of(&id));
    headers.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    if let Ok(value) = HeaderValue::from_str(&media_type) {
        headers.insert(header::CONTENT_TYPE, value);
    }
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
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
    let frames = arriving.map(move |next| {
        let entry = &manifest.chunks[index];
        index += 1;
        let bytes = next.map_err(|refusal| BodyError::from(refusal.to_string()))?;
        let to =
            ((range.end - entry.offset).min(u64::from(entry.length)) as usize).min(bytes.len());
        let from = (range.start.saturating_sub(entry.offset) as usize).min(to);
        let piece = bytes.slice(from..to);
        content.served(piece.len() as u64);
        Ok(Frame::data(piece))
    });
    StreamBody::new(frames).boxed()
}
