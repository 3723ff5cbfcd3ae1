//! Collections: a directory published as one content. A collection is a document listing
//! (path, content id, size, media type) for every file, sorted by path; it is stored like any
//! content, with kind [`ContentKind::Collection`] in its manifest, so its id (the hash of
//! that manifest) names the whole tree, and its files dedup like any other content.
//!
//! The document is JSON (specified in docs/PROTOCOL.md):
//!
//! ```text
//! {"stoq_collection":1,"entries":[{"path":"css/site.css","id":"<64 hex>","size":120,"type":"text/css"}, ...]}
//! ```
//!
//! Paths are relative, `/`-separated, without empty, `.` or `..` segments, so a path can
//! never name anything outside the directory it is restored to.
//!
//! [`ContentKind::Collection`]: super::ContentKind::Collection

use serde::{Deserialize, Serialize};

use super::manifest::ContentId;

/// Most bytes of a collection document a reader accepts.
pub const MAX_COLLECTION_BYTES: u64 = 64 * 1024 * 1024;

/// Most entries in one collection.
pub const MAX_COLLECTION_ENTRIES: usize = 1_000_000;

/// Longest path of an entry, bytes.
pub const MAX_PATH_LEN: usize = 4096;

/// The file a directory path is answered with.
pub const INDEX_FILE: &str = "index.html";

const FORMAT: u32 = 1;

/// One file of a collection.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CollectionEntry {
    /// Where the file is, relative to the collection's root.
    pub path: String,
    /// The file's content id.
    pub id: ContentId,
    /// Its size in bytes.
    pub size: u64,
    /// Its media type, such as `text/html` (recorded from its name when published).
    #[serde(rename = "type")]
    pub media_type: String,
}

/// A collection: entries sorted by path, each path once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Collection {
    entries: Vec<CollectionEntry>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Document {
    stoq_collection: u32,
    entries: Vec<CollectionEntry>,
}

/// Why a list of entries or a document is not a collection.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CollectionError {
    /// The document does not parse, or is of a format this reader does not know.
    #[error("not a collection document: {0}")]
    Format(String),
    /// A path could escape the directory, or is empty or too long.
    #[error("bad path {0:?} in a collection: {1}")]
    BadPath(String, &'static str),
    /// Two entries have the same path.
    #[error("the path {0:?} appears twice in a collection")]
    Duplicate(String),
    /// Too many entries.
    #[error("a collection holds at most {MAX_COLLECTION_ENTRIES} files")]
    TooMany,
}

/// Whether `path` is a safe relative path; why not otherwise.
pub fn check_path(path: &str) -> Result<(), &'static str> {
    if path.is_empty() || path.len() > MAX_PATH_LEN {
        return Err("a path is 1 to 4096 bytes");
    }
    if path.chars().any(|c| c.is_control() || c == '\\') {
        return Err("no control characters or backslashes");
    }
    if path
        .split('/')
        .any(|segment| segment.is_empty() || segment == "." || segment == "..")
    {
        return Err("no leading, trailing or double slashes, '.' or '..'");
    }
    Ok(())
}

impl Collection {
    /// A collection of `entries` (in any order).
    pub fn new(mut entries: Vec<CollectionEntry>) -> Result<Self, CollectionError> {
        if entries.len() > MAX_COLLECTION_ENTRIES {
            return Err(CollectionError::TooMany);
        }
        for entry in &entries {
            check_path(&entry.path)
                .map_err(|why| CollectionError::BadPath(entry.path.clone(), why))?;
        }
        entries.sort_by(|a, b| a.path.cmp(&b.path));
        if let Some(pair) = entries.windows(2).find(|p| p[0].path == p[1].path) {
            return Err(CollectionError::Duplicate(pair[0].path.clone()));
        }
        Ok(Collection { entries })
    }

    /// The document's bytes.
    pub fn encode(&self) -> Vec<u8> {
        #[derive(Serialize)]
        struct Out<'a> {
            stoq_collection: u32,
            entries: &'a [CollectionEntry],
        }
        serde_json::to_vec(&Out {
            stoq_collection: FORMAT,
            entries: &self.entries,
        })
        .expect("entries always serialise")
    }

    /// Reads a document, checking every path.
    pub fn decode(bytes: &[u8]) -> Result<Self, CollectionError> {
        if bytes.len() as u64 > MAX_COLLECTION_BYTES {
            return Err(CollectionError::Format("larger than 64 MiB".into()));
        }
        let doc: Document =
            serde_json::from_slice(bytes).map_err(|e| CollectionError::Format(e.to_string()))?;
        if doc.stoq_collection != FORMAT {
            return Err(CollectionError::Format(format!(
                "format {} (this reader knows {FORMAT})",
                doc.stoq_collection
            )));
        }
        Self::new(doc.entries)
    }

    /// The entries, sorted by path.
    pub fn entries(&self) -> &[CollectionEntry] {
        &self.entries
    }

    /// The entry at exactly `path`.
    pub fn get(&self, path: &str) -> Option<&CollectionEntry> {
        self.entries
            .binary_search_by(|e| e.path.as_str().cmp(path))
            .ok()
            .map(|i| &self.entries[i])
    }

    /// Whether `path` is a directory of the collection (some entry lies under it).
    pub fn is_dir(&self, path: &str) -> bool {
        let prefix = format!("{}/", path.trim_end_matches('/'));
        if prefix == "/" {
            return !self.entries.is_empty();
        }
        let at = self
            .entries
            .partition_point(|e| e.path.as_str() < prefix.as_str());
        self.entries
            .get(at)
            .is_some_and(|e| e.path.starts_with(&prefix))
    }

    /// What a request for `path` is answered with: the entry itself, or for a directory path
    /// (empty, or ending in `/`) its `index.html`.
    pub fn lookup(&self, path: &str) -> Option<&CollectionEntry> {
        if path.is_empty() || path.ends_with('/') {
            self.get(&format!("{path}{INDEX_FILE}"))
        } else {
            self.get(path)
        }
    }

    /// Total bytes of its files.
    pub fn size(&self) -> u64 {
        self.entries.iter().map(|e| e.size).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn entry(path: &str) -> CollectionEntry {
        CollectionEntry {
            path: path.into(),
            id: ContentId::of(path.as_bytes()),
            size: path.len() as u64,
            media_type: "text/plain".into(),
        }
    }

    #[test]
    fn lookups_find_files_indexes_and_directories() {
        let c = Collection::new(vec![
            entry("index.html"),
            entry("docs/index.html"),
            entry("docs/a.css"),
            entry("img/logo.png"),
        ])
        .unwrap();
        assert_eq!(c.lookup("").unwrap().path, "index.html");
        assert_eq!(c.lookup("docs/").unwrap().path, "docs/index.html");
        assert_eq!(c.lookup("docs/a.css").unwrap().path, "docs/a.css");
        assert!(c.lookup("img/").is_none());
        assert!(
            c.is_dir("img") && c.is_dir("docs/") && !c.is_dir("doc") && !c.is_dir("img/logo.png")
        );
        assert_eq!(c.size(), c.entries().iter().map(|e| e.size).sum::<u64>());
        assert_eq!(Collection::decode(&c.encode()).unwrap(), c);
    }

    #[test]
    fn paths_that_could_escape_and_duplicates_are_refused() {
        for bad in [
            "",
            "/etc/passwd",
            "a//b",
            "a/../../b",
            "./a",
            "a/",
            "a\\b",
            "a\nb",
        ] {
            assert!(
                matches!(
                    Collection::new(vec![entry(bad)]),
                    Err(CollectionError::BadPath(..))
                ),
                "{bad:?}"
            );
        }
        assert!(matches!(
            Collection::new(vec![entry("a"), entry("a")]),
            Err(CollectionError::Duplicate(_))
        ));
        let mut doc = Collection::new(vec![entry("a")]).unwrap().encode();
        doc[20] = b'!';
        assert!(Collection::decode(&doc).is_err());
        assert!(Collection::decode(br#"{"stoq_collection":2,"entries":[]}"#).is_err());
        assert!(Collection::decode(
            br#"{"stoq_collection":1,"entries":[{"path":"../x","id":"00","size":1,"type":""}]}"#
        )
        .is_err());
    }

    proptest! {
        #[test]
        fn any_bytes_decode_to_an_error_or_a_safe_collection(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            if let Ok(c) = Collection::decode(&bytes) {
                prop_assert!(c.entries().iter().all(|e| check_path(&e.path).is_ok()));
            }
        }

        #[test]
        fn collections_round_trip(paths in proptest::collection::btree_set("[a-z]{1,6}(/[a-z]{1,6}){0,2}", 0..20)) {
            let c = Collection::new(paths.iter().map(|p| entry(p)).collect()).unwrap();
            prop_assert_eq!(Collection::decode(&c.encode()).unwrap(), c);
        }
    }
}
