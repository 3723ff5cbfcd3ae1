//! [`Request`]: every operation's arguments, encoded and decoded in one place.

use bytes::Bytes;

use super::{DecodeError, ErrorCode, Op, MAX_TOKEN_LEN};
use crate::chunking::{ChunkId, ContentId, ContentKind, ErasurePolicy, Hash32};
use crate::edge::names::check_name;
use crate::routing::GeoPoint;

/// Where a client is, for LOCATE.
#[derive(Debug, Clone, PartialEq)]
pub enum Location {
    /// `geo:LAT,LON`.
    Geo(GeoPoint),
    /// `region:NAME`.
    Region(String),
    /// Empty: the node uses the address the request came from.
    ByAddress,
}

impl Location {
    /// The text form carried on the wire.
    pub fn to_wire(&self) -> String {
        match self {
            Location::Geo(g) => format!("geo:{},{}", g.lat, g.lon),
            Location::Region(r) => format!("region:{r}"),
            Location::ByAddress => String::new(),
        }
    }

    /// Parses the text form.
    pub fn parse(text: &str) -> Result<Self, DecodeError> {
        if let Some(geo) = text.strip_prefix("geo:") {
            GeoPoint::parse(geo)
                .map(Location::Geo)
                .ok_or_else(|| DecodeError::bad(format!("bad position {geo:?}: use LAT,LON")))
        } else if let Some(region) = text.strip_prefix("region:") {
            Ok(Location::Region(region.to_owned()))
        } else if text.is_empty() {
            Ok(Location::ByAddress)
        } else {
            Err(DecodeError::bad(format!(
                "bad location {text:?}: use geo:LAT,LON, region:NAME or nothing"
            )))
        }
    }
}

/// What a PUT asks for besides the file: erasure coding, a chunking kind, a read restriction.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PutSettings {
    /// K data + M parity shards per chunk, or none.
    pub erasure: Option<ErasurePolicy>,
    /// The chunking profile; `None` sniffs it from the bytes.
    pub kind: Option<ContentKind>,
    /// BLAKE3 of the read token that reads of this content will require, if restricted.
    pub read_digest: Option<[u8; 32]>,
    /// The media type to record (from the file's name), served as `Content-Type` over HTTP.
    pub media_type: Option<String>,
}

/// The digest a read token is checked against: BLAKE3 of its text, whitespace trimmed.
pub fn read_digest(token: &str) -> [u8; 32] {
    *blake3::hash(token.trim().as_bytes()).as_bytes()
}

/// One request, as the asker sends it and the answerer decodes it.
#[derive(Debug, Clone, PartialEq)]
pub enum Request {
    /// Liveness: the answer is the node's id.
    Ping,
    /// Echo the body.
    Echo,
    /// Read and hash the body.
    Sink,
    /// Read and count the body.
    Discard,
    /// A content's manifest.
    GetManifest {
        /// The content.
        id: ContentId,
        /// The read token, for restricted content.
        read_token: Option<Bytes>,
    },
    /// Chunk `index` of a content.
    GetChunk {
        /// The content.
        id: ContentId,
        /// The chunk's position in the manifest.
        index: u32,
        /// The read token, for restricted content.
        read_token: Option<Bytes>,
    },
    /// A run of `count` chunks of a content from `first` on, answered as one body: the
    /// chunks back to back, which the asker splits by the manifest's lengths. One request for
    /// many chunks: no stream, lookup or task per chunk.
    GetChunks {
        /// The content.
        id: ContentId,
        /// The first chunk's position in the manifest.
        first: u32,
        /// How many chunks, 1 to [`super::MAX_RUN_CHUNKS`].
        count: u32,
        /// The read token, for restricted content.
        read_token: Option<Bytes>,
    },
    /// A shard (or chunk) blob this node holds.
    GetShard {
        /// The blob's id.
        shard: ChunkId,
    },
    /// Hold shards of a content (node to node; the body is a [`shards`] stream).
    StoreShards {
        /// The admin token.
        token: Bytes,
        /// The content.
        id: ContentId,
    },
    /// Where a content's shards were placed.
    Holders {
        /// The content.
        id: ContentId,
    },
    /// A SWIM message (node to node).
    Gossip {
        /// The sender's membership proof: a MAC of its node id keyed from the network's token
        /// (a network with closed membership drops messages whose proof does not check).
        proof: [u8; 32],
        /// The message, as foca encodes it.
        message: Bytes,
    },
    /// Publish the body as a content.
    Put {
        /// The admin token.
        token: Bytes,
        /// Erasure, kind and read restriction.
        settings: PutSettings,
    },
    /// Remove a content here and, with `forward`, from every live peer.
    Purge {
        /// The admin token.
        token: Bytes,
        /// The content.
        id: ContentId,
        /// Whether to pass it on (a client sets it; nodes forwarding clear it).
        forward: bool,
    },
    /// Where a client should fetch from.
    Locate {
        /// The client's location.
        location: Location,
    },
    /// The node's view.
    Status,
    /// An edge pulls a content into its cache.
    Prefetch {
        /// The admin token.
        token: Bytes,
        /// The content.
        id: ContentId,
    },
    /// Point a name at a content.
    NameSet {
        /// The admin token.
        token: Bytes,
        /// The name.
        name: String,
        /// The content.
        id: ContentId,
        /// Seconds an edge serves its copy without asking.
        ttl_s: u32,
        /// Seconds after that it may serve its copy while refreshing it.
        swr_s: u32,
    },
    /// What a name points at.
    NameGet {
        /// The name.
        name: String,
    },
}

/// A token as it goes on the wire: at most [`MAX_TOKEN_LEN`] bytes.
fn token_bytes(token: &str) -> Bytes {
    let bytes = token.as_bytes();
    Bytes::copy_from_slice(&bytes[..bytes.len().min(MAX_TOKEN_LEN)])
}

impl Request {
    /// A request carrying an admin token given as text (the token file's contents, trimmed).
    pub fn admin_token(token: &str) -> Bytes {
        token_bytes(token.trim())
    }

    /// A read token given as text, for GET_MANIFEST and GET_CHUNK.
    pub fn read_token(token: Option<&str>) -> Option<Bytes> {
        token.map(token_bytes)
    }

    /// The admin token (or a node's proof) the request carries, for operations that take one.
    pub fn credential(&self) -> Option<&Bytes> {
        match self {
            Request::Put { token, .. }
            | Request::Purge { token, .. }
            | Request::StoreShards { token, .. }
            | Request::Prefetch { token, .. }
            | Request::NameSet { token, .. } => Some(token),
            _ => None,
        }
    }

    /// The operation.
    pub fn op(&self) -> Op {
        match self {
            Request::Ping => Op::Ping,
            Request::Echo => Op::Echo,
            Request::Sink => Op::Sink,
            Request::Discard => Op::Discard,
            Request::GetManifest { .. } => Op::GetManifest,
            Request::GetChunk { .. } => Op::GetChunk,
            Request::GetChunks { .. } => Op::GetChunks,
            Request::GetShard { .. } => Op::GetShard,
            Request::StoreShards { .. } => Op::StoreShards,
            Request::Holders { .. } => Op::Holders,
            Request::Gossip { .. } => Op::Gossip,
            Request::Put { .. } => Op::Put,
            Request::Purge { .. } => Op::Purge,
            Request::Locate { .. } => Op::Locate,
            Request::Status => Op::Status,
            Request::Prefetch { .. } => Op::Prefetch,
            Request::NameSet { .. } => Op::NameSet,
            Request::NameGet { .. } => Op::NameGet,
        }
    }

    /// The REQUEST frame's payload.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = vec![self.op().code()];
        match self {
            Request::Ping | Request::Echo | Request::Sink | Request::Discard | Request::Status => {}
            Request::GetManifest { id, read_token } => {
                out.extend_from_slice(&id.0);
                put_optional_token(&mut out, read_token.as_ref());
            }
            Request::GetChunk {
                id,
                index,
                read_token,
            } => {
                out.extend_from_slice(&id.0);
                out.extend_from_slice(&index.to_be_bytes());
                put_optional_token(&mut out, read_token.as_ref());
            }
            Request::GetChunks {
                id,
                first,
                count,
                read_token,
            } => {
                out.extend_from_slice(&id.0);
                out.extend_from_slice(&first.to_be_bytes());
                out.extend_from_slice(&count.to_be_bytes());
                put_optional_token(&mut out, read_token.as_ref());
            }
            Request::GetShard { shard } => out.extend_from_slice(&shard.0),
            Request::Holders { id } => out.extend_from_slice(&id.0),
            Request::StoreShards { token, id } | Request::Prefetch { token, id } => {
                put_token(&mut out, token);
                out.extend_from_slice(&id.0);
            }
            Request::Gossip { proof, message } => {
                out.extend_from_slice(proof);
                out.extend_from_slice(message);
            }
            Request::Put { token, settings } => {
                put_token(&mut out, token);
                let (k, m) = settings.erasure.map_or((0, 0), |e| (e.k, e.m));
                out.extend_from_slice(&[k, m, settings.kind.map_or(0xff, ContentKind::code)]);
                let flags = u8::from(settings.read_digest.is_some())
                    | u8::from(settings.media_type.is_some()) << 1;
                out.push(flags);
                if let Some(d) = &settings.read_digest {
                    out.extend_from_slice(d);
                }
                if let Some(t) = &settings.media_type {
                    out.extend_from_slice(t.as_bytes());
                }
            }
            Request::Purge { token, id, forward } => {
                put_token(&mut out, token);
                out.extend_from_slice(&id.0);
                out.push(u8::from(*forward));
            }
            Request::Locate { location } => out.extend_from_slice(location.to_wire().as_bytes()),
            Request::NameSet {
                token,
                name,
                id,
                ttl_s,
                swr_s,
            } => {
                put_token(&mut out, token);
                out.extend_from_slice(&ttl_s.to_be_bytes());
                out.extend_from_slice(&swr_s.to_be_bytes());
                out.extend_from_slice(&id.0);
                out.extend_from_slice(name.as_bytes());
            }
            Request::NameGet { name } => out.extend_from_slice(name.as_bytes()),
        }
        out
    }

    /// Decodes a REQUEST frame's payload. Unknown operations, wrong lengths and bad values are
    /// BAD_REQUEST; an authorised operation without an admin token is UNAUTHORIZED.
    pub fn decode(payload: &Bytes) -> Result<Request, DecodeError> {
        let (&code, _) = payload
            .split_first()
            .ok_or_else(|| DecodeError::bad("empty request"))?;
        let op = Op::from_code(code)
            .ok_or_else(|| DecodeError::bad(format!("unknown operation 0x{code:02x}")))?;
        let args = payload.slice(1..);
        let none = |req: Request| {
            if args.is_empty() {
                Ok(req)
            } else {
                Err(DecodeError::bad(format!(
                    "{op:?} takes no arguments, got {} bytes",
                    args.len()
                )))
            }
        };
        match op {
            Op::Ping => none(Request::Ping),
            Op::Echo => none(Request::Echo),
            Op::Sink => none(Request::Sink),
            Op::Discard => none(Request::Discard),
            Op::Status => none(Request::Status),
            Op::GetManifest => {
                let (head, read_token) = get_args(&args, 32).ok_or_else(|| {
                    DecodeError::bad(
                        "a content id (32 bytes) is required, then an optional read token",
                    )
                })?;
                Ok(Request::GetManifest {
                    id: id_at(&head),
                    read_token,
                })
            }
            Op::GetChunk => {
                let (head, read_token) = get_args(&args, 36).ok_or_else(|| {
                    DecodeError::bad("GET_CHUNK needs id + u32 index, then an optional read token")
                })?;
                Ok(Request::GetChunk {
                    id: id_at(&head),
                    index: u32::from_be_bytes(head[32..36].try_into().expect("4 bytes")),
                    read_token,
                })
            }
            Op::GetChunks => {
                let (head, read_token) = get_args(&args, 40).ok_or_else(|| {
                    DecodeError::bad(
                        "GET_CHUNKS needs id + u32 first + u32 count, then an optional read token",
                    )
                })?;
                let word = |at: usize| u32::from_be_bytes(head[at..at + 4].try_into().expect("4"));
                let (first, count) = (word(32), word(36));
                if count == 0 || count > super::MAX_RUN_CHUNKS {
                    return Err(DecodeError::bad(format!(
                        "GET_CHUNKS asks for 1 to {} chunks, not {count}",
                        super::MAX_RUN_CHUNKS
                    )));
                }
                if first.checked_add(count).is_none() {
                    return Err(DecodeError::bad("GET_CHUNKS run passes the last index"));
                }
                Ok(Request::GetChunks {
                    id: id_at(&head),
                    first,
                    count,
                    read_token,
                })
            }
            Op::GetShard => Ok(Request::GetShard {
                shard: exact_id(&args, "a shard id (32 bytes) is required")?,
            }),
            Op::Holders => Ok(Request::Holders {
                id: exact_id(&args, "a content id (32 bytes) is required")?,
            }),
            Op::Gossip => {
                let proof = args
                    .get(..32)
                    .and_then(|p| <[u8; 32]>::try_from(p).ok())
                    .ok_or_else(|| DecodeError::bad("a 32-byte membership proof is required"))?;
                Ok(Request::Gossip {
                    proof,
                    message: args.slice(32..),
                })
            }
            Op::StoreShards => {
                let (token, rest) = split_admin_token(&args)?;
                Ok(Request::StoreShards {
                    token,
                    id: exact_id(&rest, "STORE_SHARDS needs a content id")?,
                })
            }
            Op::Prefetch => {
                let (token, rest) = split_admin_token(&args)?;
                Ok(Request::Prefetch {
                    token,
                    id: exact_id(&rest, "PREFETCH needs a content id")?,
                })
            }
            Op::Put => {
                let (token, rest) = split_admin_token(&args)?;
                Ok(Request::Put {
                    token,
                    settings: put_settings(&rest)?,
                })
            }
            Op::Purge => {
                let (token, rest) = split_admin_token(&args)?;
                match (rest.len(), rest.get(32)) {
                    (33, Some(&flag @ (0 | 1))) => Ok(Request::Purge {
                        token,
                        id: id_at(&rest),
                        forward: flag == 1,
                    }),
                    _ => Err(DecodeError::bad(
                        "PURGE needs a content id and a forward flag (0 or 1)",
                    )),
                }
            }
            Op::Locate => {
                let text = std::str::from_utf8(&args)
                    .map_err(|_| DecodeError::bad("location must be UTF-8"))?;
                Ok(Request::Locate {
                    location: Location::parse(text)?,
                })
            }
            Op::NameSet => {
                let (token, rest) = split_admin_token(&args)?;
                if rest.len() < 40 {
                    return Err(DecodeError::bad(
                        "NAME_SET needs ttl, swr, a content id and a name",
                    ));
                }
                Ok(Request::NameSet {
                    token,
                    ttl_s: u32::from_be_bytes(rest[..4].try_into().expect("4 bytes")),
                    swr_s: u32::from_be_bytes(rest[4..8].try_into().expect("4 bytes")),
                    id: id_at(&rest[8..]),
                    name: name_of(&rest[40..])?,
                })
            }
            Op::NameGet => Ok(Request::NameGet {
                name: name_of(&args)?,
            }),
        }
    }
}

fn put_token(out: &mut Vec<u8>, token: &[u8]) {
    let token = &token[..token.len().min(MAX_TOKEN_LEN)];
    out.push(token.len() as u8);
    out.extend_from_slice(token);
}

fn put_optional_token(out: &mut Vec<u8>, token: Option<&Bytes>) {
    if let Some(t) = token.filter(|t| !t.is_empty()) {
        put_token(out, t);
    }
}

/// The 32-byte id at the start of `bytes` (the caller checked the length).
fn id_at(bytes: &[u8]) -> Hash32 {
    Hash32(bytes[..32].try_into().expect("32 bytes"))
}

fn exact_id(args: &[u8], usage: &str) -> Result<Hash32, DecodeError> {
    if args.len() == 32 {
        Ok(id_at(args))
    } else {
        Err(DecodeError::bad(usage))
    }
}

/// Splits a length-prefixed token off the front of `args` (`u8 len`, 1 to 255 bytes).
fn split_token(args: &Bytes) -> Option<(Bytes, Bytes)> {
    let len = usize::from(*args.first()?);
    if len == 0 || args.len() < 1 + len {
        return None;
    }
    Some((args.slice(1..1 + len), args.slice(1 + len..)))
}

fn split_admin_token(args: &Bytes) -> Result<(Bytes, Bytes), DecodeError> {
    split_token(args).ok_or_else(|| DecodeError {
        code: ErrorCode::Unauthorized,
        reason: "an admin token is required; nothing was changed".into(),
    })
}

/// Splits a GET's arguments into the fixed part (`fixed` bytes) and the read token that may
/// follow it; anything after the token is refused.
fn get_args(args: &Bytes, fixed: usize) -> Option<(Bytes, Option<Bytes>)> {
    if args.len() < fixed {
        return None;
    }
    let (head, rest) = (args.slice(..fixed), args.slice(fixed..));
    if rest.is_empty() {
        return Some((head, None));
    }
    let (token, tail) = split_token(&rest)?;
    tail.is_empty().then_some((head, Some(token)))
}

fn put_settings(rest: &[u8]) -> Result<PutSettings, DecodeError> {
    if rest.len() < 4 {
        return Err(DecodeError::bad("PUT settings are at least 4 bytes"));
    }
    let flags = rest[3];
    if flags > 3 {
        return Err(DecodeError::bad(format!("unknown PUT flags {flags:#x}")));
    }
    let mut tail = &rest[4..];
    let read_digest = match flags & 1 {
        0 => None,
        _ => {
            let (digest, after) = tail
                .split_first_chunk::<32>()
                .ok_or_else(|| DecodeError::bad("PUT's read digest is 32 bytes"))?;
            tail = after;
            Some(*digest)
        }
    };
    let media_type = match flags & 2 {
        0 if tail.is_empty() => None,
        0 => return Err(DecodeError::bad("PUT settings have bytes after their end")),
        _ => Some(
            std::str::from_utf8(tail)
                .ok()
                .filter(|t| super::valid_media_type(t))
                .ok_or_else(|| DecodeError::bad("a media type is 1 to 255 bytes of visible ASCII"))?
                .to_owned(),
        ),
    };
    let erasure = match (rest[0], rest[1]) {
        (0, 0) => None,
        (k, m) => {
            let policy = ErasurePolicy { k, m };
            policy.validate().map_err(DecodeError::bad)?;
            Some(policy)
        }
    };
    let kind = match rest[2] {
        0xff => None,
        code => Some(
            ContentKind::from_code(code)
                .ok_or_else(|| DecodeError::bad(format!("unknown content kind {code}")))?,
        ),
    };
    Ok(PutSettings {
        erasure,
        kind,
        read_digest,
        media_type,
    })
}

fn name_of(bytes: &[u8]) -> Result<String, DecodeError> {
    let name = std::str::from_utf8(bytes)
        .map_err(|_| DecodeError::bad("a name is 1 to 255 bytes of UTF-8"))?;
    check_name(name).map_err(|e| DecodeError::bad(e.to_string()))?;
    Ok(name.to_owned())
}
