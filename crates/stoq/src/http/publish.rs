//! PUT `/c` (store the body as a new content) and DELETE `/c/ID` (purge it from the network),
//! each with the admin token as a bearer token.

use std::sync::Arc;
use std::time::Duration;

use http::{header, HeaderValue, Request, Response, StatusCode};
use http_body_util::BodyExt;
use tokio::io::AsyncWriteExt;

use super::answer::{bearer, denied, json, refused, text, Body};
use super::front::Front;
use crate::chunking::{ContentId, ErasurePolicy};
use crate::node::{ReadRefused, Refusal};
use crate::protocol::{read_digest, valid_media_type, ErrorCode, PutSettings};

/// Optional: `K+M` erasure coding for the content (as `stoq put --erasure`).
const ERASURE_HEADER: &str = "stoq-erasure";
/// Optional: a read token the content will require (as `stoq put --read-token`).
const READ_TOKEN_HEADER: &str = "stoq-read-token";

/// How long an upload's body may make no progress.
const BODY_STALL: Duration = Duration::from_secs(30);

/// Whether the request carries the admin token: `None` if it does, else the answer.
fn admin(front: &Front, req: &Request<Body>) -> Option<Response<Body>> {
    match bearer(req.headers()) {
        None => Some(denied(ReadRefused::Missing, "changing content")),
        Some(token) => match front.content.authorise(&token) {
            Ok(()) => None,
            Err(_) => Some(denied(ReadRefused::Wrong, "changing content")),
        },
    }
}

/// PUT `/c`: the body goes to a file on the node's disk as it arrives (never whole into
/// memory), then is stored; the answer is the put's JSON (`id`, `size`, `chunks`, ...) with
/// 201 and `Location: /c/ID`.
pub async fn put(front: &Arc<Front>, req: Request<Body>) -> Response<Body> {
    if let Some(refusal) = admin(front, &req) {
        return refusal;
    }
    if let Err(refusal) = front.content.check_publishable() {
        return refused(&refusal);
    }
    let settings = match settings_of(req.headers()) {
        Ok(s) => s,
        Err(why) => return text(StatusCode::BAD_REQUEST, &why),
    };
    let path = front.content.upload_path();
    let received = receive(req.into_body(), &path).await;
    let stored = match received {
        Ok(()) => front.content.publish(&path, settings).await,
        Err(refusal) => Err(refusal),
    };
    let _ = tokio::fs::remove_file(&path).await;
    match stored {
        Ok(answer) => {
            let mut response = json(StatusCode::CREATED, &answer);
            if let Ok(location) = HeaderValue::from_str(&format!("/c/{}", answer.id)) {
                response.headers_mut().insert(header::LOCATION, location);
            }
            response
        }
        Err(refusal) => refused(&refusal),
    }
}

/// DELETE `/c/ID`: purges the content here and on every live peer; the answer is the purge's
/// JSON (`removed_here`, `reached`, `failed`).
pub async fn delete(front: &Arc<Front>, req: Request<Body>, id: ContentId) -> Response<Body> {
    if let Some(refusal) = admin(front, &req) {
        return refusal;
    }
    match front.content.purge(id).await {
        Ok(answer) => json(StatusCode::OK, &answer),
        Err(refusal) => refused(&refusal),
    }
}

fn settings_of(headers: &http::HeaderMap) -> Result<PutSettings, String> {
    let text_of = |name: &str| -> Result<Option<&str>, String> {
        headers
            .get(name)
            .map(|v| v.to_str().map_err(|_| format!("{name} is not text")))
            .transpose()
    };
    let erasure = text_of(ERASURE_HEADER)?
        .map(|v| {
            v.parse::<ErasurePolicy>()
                .map_err(|e| format!("{ERASURE_HEADER}: {e}"))
        })
        .transpose()?;
    // curl sends `application/x-www-form-urlencoded` with --data-binary unless told
    // otherwise: that says nothing about the content, so it is not recorded.
    let media_type = text_of(header::CONTENT_TYPE.as_str())?
        .map(str::trim)
        .filter(|t| !t.starts_with("application/x-www-form-urlencoded"))
        .map(|t| match valid_media_type(t) {
            true => Ok(t.to_owned()),
            false => Err(format!("Content-Type {t:?} cannot be recorded")),
        })
        .transpose()?;
    Ok(PutSettings {
        erasure,
        kind: None,
        read_digest: text_of(READ_TOKEN_HEADER)?.map(read_digest),
        media_type,
    })
}

/// Writes a request body to `path` as it arrives; a body that makes no progress for
/// [`BODY_STALL`] is given up.
async fn receive(mut body: Body, path: &std::path::Path) -> Result<(), Refusal> {
    let disk = |e: std::io::Error| Refusal::internal(format!("upload failed, nothing stored: {e}"));
    let mut file = tokio::fs::File::create(path).await.map_err(disk)?;
    let stalled = || Refusal::new(ErrorCode::Timeout, "the body stalled; nothing was stored");
    while let Some(frame) = tokio::time::timeout(BODY_STALL, body.frame())
        .await
        .map_err(|_| stalled())?
    {
        let frame = frame.map_err(|e| Refusal::bad_request(format!("the body broke off: {e}")))?;
        if let Ok(data) = frame.into_data() {
            file.write_all(&data).await.map_err(disk)?;
        }
    }
    file.flush().await.map_err(disk)?;
    Ok(())
}
