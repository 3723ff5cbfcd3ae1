//! What every request of one front shares (the node's content, the collections read so far,
//! the `Alt-Svc` it announces), and who sent a request.

use std::net::SocketAddr;

use http::HeaderValue;

use super::collections::Collections;
use crate::node::NodeContent;

/// What every request of one front shares.
#[derive(Debug)]
pub struct Front {
    /// The node's content.
    pub content: NodeContent,
    /// Collections read so far, decoded.
    pub collections: Collections,
    /// `Alt-Svc` announcing HTTP/3, when it is served.
    pub alt_svc: Option<HeaderValue>,
    /// Whether reads are redirected to the client's nearest edge (`http.redirect_to_nearest_edge`).
    pub redirect: bool,
}

/// Who sent a request: its connection's number (the admission's share key) and address.
#[derive(Debug, Clone, Copy)]
pub struct Client {
    /// The connection's number, unique within the node.
    pub number: usize,
    /// The client's address.
    pub addr: SocketAddr,
}
