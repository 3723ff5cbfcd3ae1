//! The pieces every answer is made of: bodies, short text and JSON answers, and the statuses
//! STOQ's refusals and read checks map to.

use bytes::Bytes;
use headers::authorization::Bearer;
use headers::{Authorization, HeaderMapExt};
use http::{header, HeaderMap, HeaderValue, Response, StatusCode};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Empty, Full};

use crate::node::{ReadRefused, Refusal};
use crate::protocol::ErrorCode;

/// An error that ends a body part-way (the connection is then reset, never left short).
pub type BodyError = Box<dyn std::error::Error + Send + Sync>;

/// Every body, of requests and answers alike, over any HTTP version.
pub type Body = BoxBody<Bytes, BodyError>;

/// The bearer token of a request, if it has one.
pub fn bearer(headers: &HeaderMap) -> Option<String> {
    headers
        .typed_get::<Authorization<Bearer>>()
        .map(|a| a.token().to_owned())
}

/// An empty body.
pub fn empty() -> Body {
    Empty::new().map_err(|never| match never {}).boxed()
}

/// A whole body.
pub fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into())
        .map_err(|never| match never {})
        .boxed()
}

/// A short text answer: `status` with `message` and a newline.
pub fn text(status: StatusCode, message: &str) -> Response<Body> {
    let mut response = Response::new(full(format!("{message}\n")));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

/// A JSON answer.
pub fn json<T: serde::Serialize>(status: StatusCode, value: &T) -> Response<Body> {
    match serde_json::to_vec(value) {
        Ok(bytes) => {
            let mut response = Response::new(full(bytes));
            *response.status_mut() = status;
            response.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            response
        }
        Err(e) => text(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
    }
}

/// 401 (no token; the client is told to send a bearer token) or 403 (a wrong one).
pub fn denied(why: ReadRefused, what: &str) -> Response<Body> {
    match why {
        ReadRefused::Missing => {
            let mut response = text(
                StatusCode::UNAUTHORIZED,
                &format!("{what} needs a token: send Authorization: Bearer TOKEN"),
            );
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            response
        }
        ReadRefused::Wrong => text(
            StatusCode::FORBIDDEN,
            &format!("{what}: the token presented is not the right one"),
        ),
    }
}

/// The HTTP answer to a STOQ refusal: 404, 400, 403, or 503 with `Retry-After` when the node
/// is loaded or the content's source cannot be reached now; 502 for other upstream failures.
pub fn refused(refusal: &Refusal) -> Response<Body> {
    let status = match refusal.code {
        ErrorCode::NotFound => StatusCode::NOT_FOUND,
        ErrorCode::BadRequest => StatusCode::BAD_REQUEST,
        ErrorCode::Unauthorized => StatusCode::FORBIDDEN,
        ErrorCode::Busy | ErrorCode::Unavailable | ErrorCode::ShuttingDown => {
            StatusCode::SERVICE_UNAVAILABLE
        }
        ErrorCode::Timeout => StatusCode::GATEWAY_TIMEOUT,
        ErrorCode::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        _ => StatusCode::BAD_GATEWAY,
    };
    let mut response = text(status, &refusal.reason);
    if status == StatusCode::SERVICE_UNAVAILABLE {
        // Whole seconds, at least one (the header has no finer unit).
        let after = crate::protocol::retry_after(&refusal.reason)
            .map_or(1, |d| d.as_millis().div_ceil(1000).max(1));
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(after as u64));
    }
    response
}
