//! Feeds arbitrary bytes to what the HTTP front decodes from a stranger: collection listings,
//! request paths and Range headers. Errors, never panics; whatever decodes is safe (collection
//! paths stay inside their directory, planned ranges lie inside the content).

#![no_main]

use libfuzzer_sys::fuzz_target;
use stoq::chunking::collection::check_path;
use stoq::chunking::{Collection, ContentId};
use stoq::http::plan::{plan, Plan};
use stoq::http::route::route;

fuzz_target!(|data: &[u8]| {
    if let Ok(collection) = Collection::decode(data) {
        assert!(collection.entries().iter().all(|e| check_path(&e.path).is_ok()));
        assert_eq!(Collection::decode(&collection.encode()).unwrap(), collection);
    }
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    for method in [http::Method::GET, http::Method::PUT, http::Method::DELETE] {
        let _ = route(&method, text);
    }
    if let Ok(value) = http::HeaderValue::from_str(text) {
        let mut headers = http::HeaderMap::new();
        headers.insert(http::header::RANGE, value);
        let size = data.len() as u64;
        if let Plan::Part(range) = plan(&headers, &ContentId::of(data), size) {
            assert!(range.start < range.end && range.end <= size);
        }
    }
});
