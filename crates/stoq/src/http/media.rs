//! Media types: recorded from a file's name when a directory is published as a collection,
//! and sniffed from the first bytes for content published on its own. No IO.

use crate::chunking::{sniff, ContentKind};

/// What content of unknown type is served as.
pub const UNKNOWN_TYPE: &str = "application/octet-stream";

/// The media type for a file called `name` (by its extension), if one is known.
pub fn type_of_name(name: &str) -> Option<String> {
    let guess = mime_guess::from_path(name).first()?;
    // Text is UTF-8 unless it says otherwise: browsers otherwise guess a legacy charset.
    Some(match guess.type_() {
        mime_guess::mime::TEXT => format!("{}; charset=utf-8", guess.essence_str()),
        _ => match guess.essence_str() {
            "application/javascript" => "text/javascript; charset=utf-8".to_owned(),
            essence => essence.to_owned(),
        },
    })
}

/// The media type of content beginning with `head`: a known magic number (`infer`), else
/// UTF-8 text, else [`UNKNOWN_TYPE`].
pub fn sniff_type(head: &[u8]) -> String {
    if let Some(kind) = infer::get(head) {
        return match kind.mime_type() {
            "text/html" | "text/xml" => format!("{}; charset=utf-8", kind.mime_type()),
            other => other.to_owned(),
        };
    }
    if !head.is_empty() && sniff(head) == ContentKind::Text {
        return "text/plain; charset=utf-8".to_owned();
    }
    UNKNOWN_TYPE.to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_give_the_types_browsers_need() {
        assert_eq!(
            type_of_name("index.html").unwrap(),
            "text/html; charset=utf-8"
        );
        assert_eq!(
            type_of_name("css/site.css").unwrap(),
            "text/css; charset=utf-8"
        );
        assert_eq!(
            type_of_name("app.js").unwrap(),
            "text/javascript; charset=utf-8"
        );
        assert_eq!(type_of_name("logo.png").unwrap(), "image/png");
        assert_eq!(type_of_name("README"), None);
    }

    #[test]
    fn sniffing_knows_magic_numbers_and_text() {
        assert_eq!(sniff_type(b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR"), "image/png");
        assert_eq!(
            sniff_type(b"<!DOCTYPE html><html><body>hi</body></html>"),
            "text/html; charset=utf-8"
        );
        assert_eq!(
            sniff_type("plain words, caf\u{e9}\n".as_bytes()),
            "text/plain; charset=utf-8"
        );
        assert_eq!(sniff_type(&[0, 1, 2, 3, 255, 254, 0, 7]), UNKNOWN_TYPE);
        assert_eq!(sniff_type(b""), UNKNOWN_TYPE);
    }
}
