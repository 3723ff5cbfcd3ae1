//! Feeds arbitrary bytes to the manifest decoder: errors, never panics, never a huge
//! allocation; whatever decodes re-encodes to the same bytes.

#![no_main]

use libfuzzer_sys::fuzz_target;
use stoq::chunking::Manifest;

fuzz_target!(|data: &[u8]| {
    if let Ok(manifest) = Manifest::decode(data) {
        assert_eq!(manifest.encode(), data);
        assert!(manifest.chunks.len() <= data.len() / 36);
    }
});
