//! Which operation an HTTP request asks for, from its method and path. No IO.
//!
//! | method | path | route |
//! | --- | --- | --- |
//! | GET, HEAD | `/c/ID`, `/c/ID/PATH` | [`Route::Read`] of a content (PATH inside a collection) |
//! | GET, HEAD | `/n/NAME`, `/n/NAME/PATH` | [`Route::Read`] of what a name points at |
//! | PUT | `/c` | [`Route::Publish`] the body |
//! | DELETE | `/c/ID` | [`Route::Purge`] the content from the network |
//!
//! Segments are percent-decoded (a name holding `/` is written `%2F`); `.` and `..` segments
//! are refused, so a path never climbs out of its collection.

use http::Method;
use percent_encoding::percent_decode_str;

use crate::chunking::ContentId;

/// What a read starts from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// A content id (`/c/ID`).
    Content(ContentId),
    /// A name (`/n/NAME`).
    Name(String),
}

/// An HTTP request's operation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// Read `target`; `inner` is the path inside a collection: `None` without a slash after
    /// the id or name, `Some("")` with one (the collection's index), else the file's path.
    Read {
        /// The content or name.
        target: Target,
        /// The path inside a collection.
        inner: Option<String>,
    },
    /// Store the request body as a new content.
    Publish,
    /// Purge a content from the network.
    Purge(ContentId),
}

/// Why a request names no operation.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RouteError {
    /// Nothing is served at this path (404).
    #[error("nothing here: paths are /c/ID, /c/ID/PATH, /n/NAME and /n/NAME/PATH")]
    NoSuchPath,
    /// The path is malformed (400).
    #[error("{0}")]
    BadPath(String),
    /// The path exists but not for this method (405); the methods it has.
    #[error("this path takes {0}")]
    Method(&'static str),
}

/// The route of `method` on `path` (the request target's path, without the query).
pub fn route(method: &Method, path: &str) -> Result<Route, RouteError> {
    let rest = path.strip_prefix('/').ok_or(RouteError::NoSuchPath)?;
    let (area, rest) = rest.split_once('/').unwrap_or((rest, ""));
    let reading = *method == Method::GET || *method == Method::HEAD;
    match area {
        "c" if rest.is_empty() => match *method {
            Method::PUT => Ok(Route::Publish),
            _ => Err(RouteError::Method("PUT")),
        },
        "c" => {
            let (id, inner) = split_first(rest)?;
            let id: ContentId = id
                .parse()
                .map_err(|_| RouteError::BadPath(format!("{id:?} is not a content id")))?;
            match *method {
                _ if reading => Ok(Route::Read {
                    target: Target::Content(id),
                    inner,
                }),
                Method::DELETE if inner.is_none() => Ok(Route::Purge(id)),
                _ if inner.is_none() => Err(RouteError::Method("GET, HEAD, DELETE")),
                _ => Err(RouteError::Method("GET, HEAD")),
            }
        }
        "n" if !rest.is_empty() => {
            let (name, inner) = split_first(rest)?;
            if !reading {
                return Err(RouteError::Method("GET, HEAD"));
            }
            Ok(Route::Read {
                target: Target::Name(name),
                inner,
            })
        }
        _ => Err(RouteError::NoSuchPath),
    }
}

/// The first segment, decoded, and what follows its slash (decoded segment by segment).
fn split_first(rest: &str) -> Result<(String, Option<String>), RouteError> {
    let (first, inner) = match rest.split_once('/') {
        Some((first, inner)) => (first, Some(inner)),
        None => (rest, None),
    };
    let first = decode(first)?;
    if first.is_empty() {
        return Err(RouteError::BadPath("an empty id or name".into()));
    }
    let inner = match inner {
        None => None,
        Some(inner) => Some(
            inner
                .split('/')
                .map(decode)
                .collect::<Result<Vec<_>, _>>()?
                .join("/"),
        ),
    };
    if let Some(inner) = &inner {
        if inner.split('/').any(|s| s == "." || s == "..") {
            return Err(RouteError::BadPath(
                "'.' and '..' are not allowed in a path".into(),
            ));
        }
    }
    Ok((first, inner))
}

fn decode(segment: &str) -> Result<String, RouteError> {
    let text = percent_decode_str(segment)
        .decode_utf8()
        .map_err(|_| RouteError::BadPath("a path segment is not UTF-8".into()))?;
    if text.chars().any(char::is_control) {
        return Err(RouteError::BadPath("control characters in a path".into()));
    }
    Ok(text.into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "0f0e0d0c0b0a09080706050403020100000102030405060708090a0b0c0d0e0f";

    fn id() -> ContentId {
        ID.parse().unwrap()
    }

    #[test]
    fn content_paths_read_and_purge() {
        let read = |inner: Option<&str>| Route::Read {
            target: Target::Content(id()),
            inner: inner.map(str::to_owned),
        };
        assert_eq!(route(&Method::GET, &format!("/c/{ID}")), Ok(read(None)));
        assert_eq!(
            route(&Method::HEAD, &format!("/c/{ID}/")),
            Ok(read(Some("")))
        );
        assert_eq!(
            route(&Method::GET, &format!("/c/{ID}/css/site%20main.css")),
            Ok(read(Some("css/site main.css")))
        );
        assert_eq!(
            route(&Method::DELETE, &format!("/c/{ID}")),
            Ok(Route::Purge(id()))
        );
        assert_eq!(route(&Method::PUT, "/c"), Ok(Route::Publish));
    }

    #[test]
    fn names_are_decoded_and_may_hold_slashes() {
        assert_eq!(
            route(&Method::GET, "/n/site%2Fv2/index.html"),
            Ok(Route::Read {
                target: Target::Name("site/v2".into()),
                inner: Some("index.html".into()),
            })
        );
    }

    proptest::proptest! {
        #[test]
        fn any_path_routes_or_is_refused_and_inner_paths_never_climb(path in "/[cn/a-f0-9%.]{0,90}") {
            if let Ok(Route::Read { inner: Some(inner), .. }) = route(&Method::GET, &path) {
                proptest::prop_assert!(!inner.split('/').any(|s| s == ".."));
            }
        }
    }

    #[test]
    fn bad_paths_and_methods_are_refused() {
        assert_eq!(route(&Method::GET, "/"), Err(RouteError::NoSuchPath));
        assert_eq!(route(&Method::GET, "/x/abc"), Err(RouteError::NoSuchPath));
        assert_eq!(route(&Method::GET, "/n/"), Err(RouteError::NoSuchPath));
        assert!(matches!(
            route(&Method::GET, "/c/not-an-id"),
            Err(RouteError::BadPath(_))
        ));
        assert!(matches!(
            route(&Method::GET, &format!("/c/{ID}/a/../../etc/passwd")),
            Err(RouteError::BadPath(_))
        ));
        assert!(matches!(
            route(&Method::GET, &format!("/c/{ID}/%FF")),
            Err(RouteError::BadPath(_))
        ));
        assert_eq!(route(&Method::GET, "/c"), Err(RouteError::Method("PUT")));
        assert_eq!(
            route(&Method::POST, &format!("/c/{ID}")),
            Err(RouteError::Method("GET, HEAD, DELETE"))
        );
        assert_eq!(
            route(&Method::DELETE, "/n/site"),
            Err(RouteError::Method("GET, HEAD"))
        );
    }
}
