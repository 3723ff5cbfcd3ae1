//! Feeds arbitrary bytes to the STOQ frame decoder: it must return frames or errors, never
//! panic, and never hand out a payload above the limit it was given.

#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use stoq_protocol::{decode_frame, ErrorFrame, MIN_MAX_FRAME_SIZE};

fuzz_target!(|data: &[u8]| {
    // The first byte picks a small limit, so oversized headers are exercised as well.
    let (limit, rest) = match data.split_first() {
        Some((b, rest)) => (u32::from(*b) * 64, rest),
        None => (MIN_MAX_FRAME_SIZE, data),
    };
    let mut buf = Bytes::copy_from_slice(rest);
    while let Ok(Some(frame)) = decode_frame(&mut buf, limit) {
        assert!(frame.payload.len() <= limit as usize);
    }
    let _ = ErrorFrame::decode(rest);
});
