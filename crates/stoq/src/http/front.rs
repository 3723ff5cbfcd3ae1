//! What every request of one front shares: the node's content, the collections read so far,
//! and the `Alt-Svc` it announces.

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
}
