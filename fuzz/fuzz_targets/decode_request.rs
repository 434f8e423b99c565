//! The request decoder, the parser every HTTP body reaches first, on arbitrary bytes: for each
//! request type it must never panic, and whatever it accepts must survive a round trip through
//! kiln's Go-exact encoder (encode, decode again, same value).
#![no_main]

use kiln_api::{
    CopyRequest, CreateRequest, DeleteRequest, PullRequest, PushRequest, Request, ShowRequest,
    decode_request, try_to_go_json,
};
use libfuzzer_sys::fuzz_target;
use serde::Serialize;

fn round_trip<T: Request + Serialize + PartialEq + std::fmt::Debug>(data: &[u8]) {
    if let Ok(first) = decode_request::<T>(data) {
        let encoded = try_to_go_json(&first).expect("a decoded request encodes");
        let again = decode_request::<T>(&encoded).unwrap_or_else(|e| {
            panic!(
                "re-decoding {:?} failed: {e}",
                String::from_utf8_lossy(&encoded)
            )
        });
        assert_eq!(first, again);
    }
}

fuzz_target!(|data: &[u8]| {
    // Create carries free-form JSON (parameters, info, messages) whose float spellings need not
    // survive re-encoding exactly; it must still never panic.
    let _ = decode_request::<CreateRequest>(data);
    round_trip::<ShowRequest>(data);
    round_trip::<CopyRequest>(data);
    round_trip::<DeleteRequest>(data);
    round_trip::<PullRequest>(data);
    round_trip::<PushRequest>(data);
});
