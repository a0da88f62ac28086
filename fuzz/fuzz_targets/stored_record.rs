//! The stored-record decoders: the native codec's text (how the Redis,
//! MySQL and DynamoDB stores all keep a session, `store::codec`), and the
//! DynamoDB item layout around it (`store::dynamodb::item::Layout::split`).
//!
//! Input, by its first byte: even → the rest is stored text; a record that
//! decodes encodes and decodes back to itself. Odd → the rest describes a
//! DynamoDB item: `name \0 type \0 value` records separated by `\x01`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sessiongate::fuzzing::{AttributeValue, DynamoItem, decode_dynamodb_item, decode_stored};
use sessiongate::store::{NativeCodec, RecordCodec};

const EXPIRES: u64 = 1_700_000_000_000;

fuzz_target!(|input: &[u8]| {
    let Some((&mode, rest)) = input.split_first() else {
        return;
    };
    if mode % 2 == 0 {
        if let Some(record) = decode_stored(rest, EXPIRES).record {
            let text = NativeCodec.encode(&record);
            let back = NativeCodec
                .decode(&text, EXPIRES)
                .expect("our own encoding decodes");
            assert_eq!(back, record, "encode/decode is not the identity");
        }
        return;
    }
    let mut item = DynamoItem::new();
    for attribute in rest.split(|b| *b == 1) {
        let mut fields = attribute.splitn(3, |b| *b == 0);
        let (Some(name), Some(kind), Some(value)) = (fields.next(), fields.next(), fields.next())
        else {
            continue;
        };
        let name = String::from_utf8_lossy(name).into_owned();
        let text = String::from_utf8_lossy(value).into_owned();
        let value = match kind.first() {
            Some(b'N') => AttributeValue::N(text),
            Some(b'B') => AttributeValue::B(value.to_vec().into()),
            Some(b'L') => AttributeValue::L(vec![AttributeValue::S(text)]),
            Some(b'Z') => AttributeValue::Bool(value.first().is_some_and(|b| b % 2 == 1)),
            _ => AttributeValue::S(text),
        };
        item.insert(name, value);
    }
    let _ = decode_dynamodb_item(item);
});
