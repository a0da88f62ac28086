//! express-session's stored JSON (`store::codec::express::ExpressCodec`),
//! in both flavors: connect-redis / express-mysql-session /
//! connect-dynamodb, and @cyclic.sh/session-store.
//!
//! Any stored text decodes or is refused without panicking; the request
//! path's lazy read (`decode_lazily`) reads what the full parse reads, with
//! the same data, and more only where the data cannot be parsed at all
//! (nested past the parser's limit: it then fails when needed); what
//! decodes encodes back to text that decodes to the same data.
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
    let full = codec.decode(text, EXPIRES_AT);
    let lazy = codec.decode_lazily(text, EXPIRES_AT);
    let record = match (full, lazy) {
        (Ok(record), Ok(lazy)) => {
            let lazy = lazy.into_record().expect("the lazy text parses");
            assert_eq!(lazy, record, "the lazy read has the full one's data");
            record
        }
        (Ok(_), Err(error)) => panic!("the lazy read refused what the full one read: {error}"),
        // Only data nested past the parser's limit: it fails when needed.
        (Err(_), Ok(lazy)) => {
            assert!(
                lazy.into_record().is_err(),
                "the lazy read accepted a refused record"
            );
            return;
        }
        (Err(_), Err(_)) => return,
    };
    let again = codec.encode(&record);
    let decoded = codec
        .decode(&again, EXPIRES_AT)
        .expect("what the codec writes, it reads");
    assert_eq!(decoded.data, record.data);
});
