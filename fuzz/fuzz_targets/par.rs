//! Feeds arbitrary bytes to the provider archive reader, as a plain tar and (by prefixing the
//! gzip magic) as a gzip stream. No input may panic or inflate past the unpack limit.
#![no_main]

use libfuzzer_sys::fuzz_target;
use shardhost::auth::par::read_par;

fuzz_target!(|data: &[u8]| {
    let _ = read_par(data, "x86_64-linux", 0);
    let mut gz = vec![0x1f, 0x8b];
    gz.extend_from_slice(data);
    let _ = read_par(&gz, "x86_64-linux", 0);
});
