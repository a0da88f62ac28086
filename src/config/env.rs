//! `${VAR}` and `${VAR:-default}` substitution in every string value.
//!
//! Substitution runs on parsed string values, not on the raw file, so a
//! variable holding `#` or `: ` can never change the YAML's structure.

use serde_json::Value;

/// Replaces every `${VAR}` / `${VAR:-default}` in the strings of `value`.
///
/// `lookup` returns the variable's value; a variable that is unset (or empty,
/// for the `:-` form) takes its default. An unset variable without a default
/// becomes the empty string, which validation then reports by key name.
pub fn substitute(
    value: &mut Value,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<(), String> {
    match value {
        Value::String(text) if text.contains("${") => {
            *text = substitute_str(text, lookup)?;
        }
        Value::Array(items) => {
            for item in items {
                substitute(item, lookup)?;
            }
        }
        Value::Object(map) => {
            for item in map.values_mut() {
                substitute(item, lookup)?;
            }
        }
        _ => {}
    }
    Ok(())
}

fn substitute_str(text: &str, lookup: &dyn Fn(&str) -> Option<String>) -> Result<String, String> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let end = after
            .find('}')
            .ok_or_else(|| format!("unclosed `${{` in `{text}`"))?;
        let expr = &after[..end];
        let (name, default) = match expr.split_once(":-") {
            Some((name, default)) => (name, Some(default)),
            None => (expr, None),
        };
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(format!("`${{{expr}}}` is not a variable reference"));
        }
        let found = lookup(name).filter(|v| default.is_none() || !v.is_empty());
        out.push_str(&found.unwrap_or_else(|| default.unwrap_or_default().to_owned()));
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "HOST" => Some("db.internal".into()),
            "EMPTY" => Some(String::new()),
            _ => None,
        }
    }

    #[test]
    fn substitutes_values_and_defaults() {
        assert_eq!(
            substitute_str("mysql://${HOST}:${PORT:-3306}/x", &env).unwrap(),
            "mysql://db.internal:3306/x"
        );
        assert_eq!(
            substitute_str("${EMPTY:-fallback}", &env).unwrap(),
            "fallback"
        );
        assert_eq!(substitute_str("${MISSING}", &env).unwrap(), "");
        assert_eq!(substitute_str("plain $HOST", &env).unwrap(), "plain $HOST");
    }

    #[test]
    fn refuses_malformed_references() {
        assert!(substitute_str("${HOST", &env).is_err());
        assert!(substitute_str("${a b}", &env).is_err());
    }

    #[test]
    fn walks_nested_values() {
        let mut value = serde_json::json!({"a": ["${HOST}"], "b": {"c": "${PORT:-1}"}, "d": 5});
        substitute(&mut value, &env).unwrap();
        assert_eq!(
            value,
            serde_json::json!({"a": ["db.internal"], "b": {"c": "1"}, "d": 5})
        );
    }
}
