//! libFuzzer entry for [`outpost_fuzz::parse_request`]; the checks live there so the
//! stable smoke driver runs the same code.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| outpost_fuzz::parse_request(data));
