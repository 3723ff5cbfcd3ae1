//! What a read is answered with, from the request's conditional and range headers and the
//! content's size and id: the whole content, one range of it, "not modified", or "range not
//! satisfiable" (RFC 9110 §13-14). No IO: the headers are parsed by `headers` and
//! `http-range-header`.

use std::ops::Range;

use headers::{ETag, HeaderMapExt, IfNoneMatch, IfRange};
use http::HeaderMap;

use crate::chunking::ContentId;

/// How to answer a read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Plan {
    /// 200 with the whole content.
    Whole,
    /// 206 with these bytes.
    Part(Range<u64>),
    /// 304: the client's copy is current.
    NotModified,
    /// 416: no byte of the range exists.
    Unsatisfiable,
}

/// The strong entity tag of a content: its id (content never changes under its id).
pub fn etag_of(id: &ContentId) -> ETag {
    format!("\"{id}\"")
        .parse()
        .expect("a quoted hex id is a valid entity tag")
}

/// The plan for a GET or HEAD of content `id` holding `size` bytes.
pub fn plan(headers: &HeaderMap, id: &ContentId, size: u64) -> Plan {
    let etag = etag_of(id);
    if let Some(if_none_match) = headers.typed_get::<IfNoneMatch>() {
        if !if_none_match.precondition_passes(&etag) {
            return Plan::NotModified;
        }
    }
    let Some(range) = headers.get(http::header::RANGE) else {
        return Plan::Whole;
    };
    // A range is for the copy the client holds: if that is not this one, send it all.
    if let Some(if_range) = headers.typed_get::<IfRange>() {
        if if_range.is_modified(Some(&etag), None) {
            return Plan::Whole;
        }
    }
    // A Range header that does not parse is ignored (RFC 9110 §14.2).
    let Ok(parsed) = range
        .to_str()
        .map_err(|_| ())
        .and_then(|r| http_range_header::parse_range_header(r).map_err(|_| ()))
    else {
        return Plan::Whole;
    };
    if size == 0 {
        return Plan::Unsatisfiable;
    }
    match parsed.validate(size) {
        // One range is served as a part; several (multipart) are answered with the whole.
        Ok(ranges) if ranges.len() == 1 => Plan::Part(*ranges[0].start()..ranges[0].end() + 1),
        Ok(_) => Plan::Whole,
        // A suffix longer than the content selects all of it (RFC 9110 §14.1.2).
        Err(http_range_header::RangeUnsatisfiableError::FileSuffixOutOfBounds) => {
            Plan::Part(0..size)
        }
        Err(_) => Plan::Unsatisfiable,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::header::{IF_NONE_MATCH, IF_RANGE, RANGE};

    fn id() -> ContentId {
        ContentId::of(b"some content")
    }

    fn with(pairs: &[(http::header::HeaderName, String)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (k, v) in pairs {
            map.insert(k.clone(), v.parse().unwrap());
        }
        map
    }

    fn range(r: &str) -> Plan {
        plan(&with(&[(RANGE, r.to_owned())]), &id(), 1000)
    }

    #[test]
    fn single_ranges_are_parts_and_the_rest_follows_the_rfc() {
        assert_eq!(plan(&HeaderMap::new(), &id(), 1000), Plan::Whole);
        assert_eq!(range("bytes=0-99"), Plan::Part(0..100));
        assert_eq!(range("bytes=900-"), Plan::Part(900..1000));
        assert_eq!(range("bytes=-10"), Plan::Part(990..1000));
        assert_eq!(range("bytes=990-5000"), Plan::Part(990..1000));
        assert_eq!(range("bytes=-5000"), Plan::Part(0..1000));
        assert_eq!(range("bytes=1000-"), Plan::Unsatisfiable);
        assert_eq!(range("bytes=0-1,5-9"), Plan::Whole);
        assert_eq!(range("items=0-1"), Plan::Whole);
        assert_eq!(range("bytes=abc"), Plan::Whole);
        assert_eq!(
            plan(&with(&[(RANGE, "bytes=0-0".into())]), &id(), 0),
            Plan::Unsatisfiable
        );
    }

    #[test]
    fn the_id_is_a_strong_etag_for_if_none_match_and_if_range() {
        let tag = format!("\"{}\"", id());
        assert_eq!(
            plan(&with(&[(IF_NONE_MATCH, tag.clone())]), &id(), 10),
            Plan::NotModified
        );
        assert_eq!(
            plan(&with(&[(IF_NONE_MATCH, "\"other\"".into())]), &id(), 10),
            Plan::Whole
        );
        assert_eq!(
            plan(&with(&[(IF_NONE_MATCH, "*".into())]), &id(), 10),
            Plan::NotModified
        );
        let ranged = |if_range: &str| {
            plan(
                &with(&[(RANGE, "bytes=2-3".into()), (IF_RANGE, if_range.into())]),
                &id(),
                10,
            )
        };
        assert_eq!(ranged(&tag), Plan::Part(2..4));
        assert_eq!(ranged("\"an-older-copy\""), Plan::Whole);
        assert_eq!(ranged(&format!("W/{tag}")), Plan::Whole);
    }

    proptest::proptest! {
        #[test]
        fn any_range_header_plans_bytes_inside_the_content(
            header in "bytes=[0-9,\\- ]{0,24}|[ -~]{0,24}",
            size in 0u64..10_000,
        ) {
            if let Ok(value) = header.parse::<http::HeaderValue>() {
                let mut headers = HeaderMap::new();
                headers.insert(RANGE, value);
                if let Plan::Part(range) = plan(&headers, &id(), size) {
                    proptest::prop_assert!(range.start < range.end && range.end <= size);
                }
            }
        }
    }
}
