#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| clerkgate::fuzzing::webhook_journal(data));
