#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| clerkgate::fuzzing::proxy_protocol(data));
