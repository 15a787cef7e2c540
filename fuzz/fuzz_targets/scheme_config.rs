#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| tracemark_core::internal::fuzz_scheme_config(data));
