//! Feeds arbitrary bytes to the decoders of node requests a peer can send: the token split,
//! PUT settings, and a membership report. Errors, never panics; what decodes re-encodes.

#![no_main]

use libfuzzer_sys::fuzz_target;
use stoq::node::wire;

fuzz_target!(|data: &[u8]| {
    if let Some((token, rest)) = wire::split_token(data) {
        assert_eq!(1 + token.len() + rest.len(), data.len());
        if let Ok(options) = wire::put_options(rest) {
            let token = String::from_utf8_lossy(token);
            let again = wire::put_request(&token, &options, None);
            assert_eq!(
                wire::put_options(&again[again.len() - 3..])
                    .ok()
                    .map(|o| (o.erasure, o.kind)),
                Some((options.erasure, options.kind))
            );
        }
    }
    let _ = postcard::from_bytes::<stoq::node::membership::Report>(data);
});
