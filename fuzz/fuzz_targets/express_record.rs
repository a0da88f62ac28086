//! express-session's stored JSON (`store::codec::express::ExpressCodec`),
//! in both flavors: connect-redis / express-mysql-session /
//! connect-dynamodb, and @cyclic.sh/session-store.
//!
//! Any stored text decodes or is refused without panicking; what decodes
//! encodes back to text that decodes to the same data.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sessiongate::config::CookieConfig;
use sessiongate::store::RecordCodec;
use sessiongate::store::codec::express::{ExpressCodec, Flavor};

const EXPIRES_AT: u64 = 1_800_000_000_000;

fuzz_target!(|input: &[u8]| {
    let Some((&flavor, text)) = input.split_first() else {
        return;
    };
    let flavor = if flavor % 2 == 0 {
        Flavor::Plain
    } else {
        Flavor::Cyclic
    };
    let codec = ExpressCodec::new(flavor, &CookieConfig::default(), 86_400_000);
    let Ok(record) = codec.decode(text, EXPIRES_AT) else {
        return;
    };
    let again = codec.encode(&record);
    let decoded = codec
        .decode(&again, EXPIRES_AT)
        .expect("what the codec writes, it reads");
    assert_eq!(decoded.data, record.data);
});
