//! libFuzzer entry for [`outpost_fuzz::socket_messages`]; the checks live there so the
//! stable smoke driver runs the same code.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| outpost_fuzz::socket_messages(data));
