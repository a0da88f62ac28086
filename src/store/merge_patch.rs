//! RFC 7396 JSON Merge Patch.

use serde_json::{Map, Value};

/// Applies `patch` to the object `target` (RFC 7396 §2): `null` removes a
/// key, an object merges recursively, anything else replaces.
pub fn apply_object(target: &mut Map<String, Value>, patch: &Map<String, Value>) {
    for (key, value) in patch {
        match value {
            Value::Null => {
                target.remove(key);
            }
            Value::Object(inner) => {
                let slot = target
                    .entry(key.clone())
                    .or_insert_with(|| Value::Object(Map::new()));
                if !slot.is_object() {
                    *slot = Value::Object(Map::new());
                }
                if let Value::Object(slot) = slot {
                    apply_object(slot, inner);
                }
            }
            other => {
                target.insert(key.clone(), strip_nulls(other));
            }
        }
    }
}

/// A replacing value is inserted as written, except that `null` members of
/// objects inside it mean nothing to merge patch and are dropped.
fn strip_nulls(value: &Value) -> Value {
    match value {
        Value::Object(map) => Value::Object(
            map.iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| (k.clone(), strip_nulls(v)))
                .collect(),
        ),
        other => other.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn patched(target: Value, patch: Value) -> Value {
        let (Value::Object(mut target), Value::Object(patch)) = (target, patch) else {
            panic!("objects only")
        };
        apply_object(&mut target, &patch);
        Value::Object(target)
    }

    /// The examples of RFC 7396 Appendix A whose target and patch are objects.
    #[test]
    fn rfc7396_appendix_a() {
        assert_eq!(
            patched(json!({"a":"b"}), json!({"a":"c"})),
            json!({"a":"c"})
        );
        assert_eq!(
            patched(json!({"a":"b"}), json!({"b":"c"})),
            json!({"a":"b","b":"c"})
        );
        assert_eq!(patched(json!({"a":"b"}), json!({"a":null})), json!({}));
        assert_eq!(
            patched(json!({"a":"b","b":"c"}), json!({"a":null})),
            json!({"b":"c"})
        );
        assert_eq!(
            patched(json!({"a":["b"]}), json!({"a":"c"})),
            json!({"a":"c"})
        );
        assert_eq!(
            patched(json!({"a":"c"}), json!({"a":["b"]})),
            json!({"a":["b"]})
        );
        assert_eq!(
            patched(json!({"a":{"b":"c"}}), json!({"a":{"b":"d","c":null}})),
            json!({"a":{"b":"d"}})
        );
        assert_eq!(
            patched(json!({"a":[{"b":"c"}]}), json!({"a":[1]})),
            json!({"a":[1]})
        );
        assert_eq!(
            patched(json!({"e":null}), json!({"a":1})),
            json!({"e":null,"a":1})
        );
        assert_eq!(
            patched(json!({"a":"foo"}), json!({"a":{"bb":{"ccc":null}}})),
            json!({"a":{"bb":{}}})
        );
        assert_eq!(
            patched(json!({}), json!({"a":{"bb":{"ccc":null}}})),
            json!({"a":{"bb":{}}})
        );
    }
}
