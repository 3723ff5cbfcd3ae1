//! One HTTP request: route it, answer it, count it.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Instant;

use http::{header, HeaderValue, Request, Response, StatusCode, Version};
use tracing::Instrument;

use super::answer::{text, Body};
use super::front::{Client, Front};
use super::route::{route, Route, RouteError};
use super::{publish, read, redirect};

/// Answers one request from `client` (over any HTTP version: the body of a request arrives as
/// a [`Body`] too).
pub async fn handle(
    front: Arc<Front>,
    client: Client,
    req: Request<Body>,
) -> Result<Response<Body>, Infallible> {
    let span = (front.content).request_span(client.addr, req.method().as_str(), req.uri().path());
    answer(front, client, req).instrument(span).await
}

async fn answer(
    front: Arc<Front>,
    client: Client,
    req: Request<Body>,
) -> Result<Response<Body>, Infallible> {
    let started = Instant::now();
    let method = req.method().clone();
    let version = match req.version() {
        Version::HTTP_2 => "2",
        Version::HTTP_3 => "3",
        _ => "1.1",
    };
    let response = match route(req.method(), req.uri().path()) {
        Ok(Route::Read { target, inner }) => {
            match redirect::to_nearest_edge(&front, client, &req) {
                Some(redirect) => redirect,
                None => read::read(&front, client.number, req, target, inner).await,
            }
        }
        Ok(Route::Publish) => publish::put(&front, req).await,
        Ok(Route::Purge(id)) => publish::delete(&front, req, id).await,
        Err(e) => misrouted(&e),
    };
    let status = response.status().as_u16();
    front
        .content
        .metrics()
        .answered(method.as_str(), status, version, started.elapsed());
    match status {
        // Wrong tokens are what an operator wants to see; the rest is routine.
        403 => tracing::warn!(status, "refused: wrong token"),
        401 => tracing::info!(status, "refused: no token"),
        _ => tracing::debug!(
            status,
            version,
            ms = started.elapsed().as_millis() as u64,
            "answered"
        ),
    }
    let mut response = response;
    if let Some(alt_svc) = &front.alt_svc {
        response
            .headers_mut()
            .insert(header::ALT_SVC, alt_svc.clone());
    }
    Ok(response)
}

fn misrouted(e: &RouteError) -> Response<Body> {
    match e {
        RouteError::NoSuchPath => text(StatusCode::NOT_FOUND, &e.to_string()),
        RouteError::BadPath(_) => text(StatusCode::BAD_REQUEST, &e.to_string()),
        RouteError::Method(allow) => {
            let mut response = text(StatusCode::METHOD_NOT_ALLOWED, &e.to_string());
            response
                .headers_mut()
                .insert(header::ALLOW, HeaderValue::from_static(allow));
            response
        }
    }
}
