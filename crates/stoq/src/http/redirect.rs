//! `http.redirect_to_nearest_edge`: a read that reaches an origin or a relay is answered with a
//! 302 to the front of the edge nearest the client (the edge LOCATE would name first), so
//! clients that only know the network's main address still fetch from nearby.

use http::{header, HeaderValue, Request, Response, StatusCode};

use super::answer::{text, Body};
use super::front::{Client, Front};

/// The redirect for a read from `client`, when this front redirects and a nearer edge with a
/// front exists; `None` to serve the read here. A request that carries `Authorization` is
/// served here: clients drop that header when a redirect leads to another host.
pub fn to_nearest_edge(
    front: &Front,
    client: Client,
    req: &Request<Body>,
) -> Option<Response<Body>> {
    if !front.redirect || req.headers().contains_key(header::AUTHORIZATION) {
        return None;
    }
    let base = front.content.nearest_front(client.addr)?;
    let path = req.uri().path_and_query().map_or("/", |p| p.as_str());
    let location = HeaderValue::from_str(&format!("{base}{path}")).ok()?;
    let mut response = text(StatusCode::FOUND, &format!("nearest edge: {base}"));
    let headers = response.headers_mut();
    headers.insert(header::LOCATION, location);
    // The choice depends on the client and on which edges are up now: no cache keeps it.
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Some(response)
}
