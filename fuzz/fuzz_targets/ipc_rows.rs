#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    velo_pgproto::fuzz_targets::quiet_caught_panics();
    velo_pgproto::fuzz_targets::ipc_rows(data);
});
