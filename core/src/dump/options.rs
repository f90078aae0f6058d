//! The `options jsonb` argument of the dump functions.
//!
//! Parsing is strict: an unknown or misspelled key is an error rather than
//! silently ignored, because a silently ignored `exclude_tables` produces a
//! backup that looks fine and contains data it should not.

use crate::error::{quoted, RequestError};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DumpOptions {
    pub schemas: Vec<String>,
    pub exclude_schemas: Vec<String>,
    pub tables: Vec<String>,
    pub exclude_tables: Vec<String>,
    pub exclude_table_data: Vec<String>,
    pub schema_only: bool,
    pub data_only: bool,
    pub no_owner: bool,
    pub no_privileges: bool,
}

const LIST_KEYS: [&str; 5] = [
    "schemas",
    "exclude_schemas",
    "tables",
    "exclude_tables",
    "exclude_table_data",
];
const BOOL_KEYS: [&str; 4] = ["schema_only", "data_only", "no_owner", "no_privileges"];

pub const OPTIONS_HINT: &str = "Option keys: schemas, exclude_schemas, tables, exclude_tables, \
     exclude_table_data (arrays of text); schema_only, data_only, no_owner, no_privileges \
     (booleans).";

pub(crate) fn json_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

pub(crate) fn text_list(key: &str, v: &Value) -> Result<Vec<String>, RequestError> {
    let type_error = || {
        RequestError::invalid(
            format!(
                "options.{key} must be an array of text, got {}",
                json_type(v)
            ),
            format!("For example {{\"{key}\": [\"public\"]}}."),
        )
    };
    let items = v.as_array().ok_or_else(type_error)?;
    let mut out = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let s = item.as_str().ok_or_else(|| {
            RequestError::invalid(
                format!(
                    "options.{key} must be an array of text, but element {i} is {}",
                    json_type(item)
                ),
                format!("For example {{\"{key}\": [\"public\"]}}."),
            )
        })?;
        if s.is_empty() {
            return Err(RequestError::invalid(
                format!("options.{key} element {i} is an empty string"),
                "Patterns must be non-empty: remove the element or give a name or pattern.",
            ));
        }
        // pg_dump receives the pattern through argv, which cannot carry NUL.
        if s.contains('\0') {
            return Err(RequestError::invalid(
                format!(
                    "options.{key} element {i} ({}) contains a NUL byte",
                    quoted(s)
                ),
                "Patterns cannot contain NUL bytes.",
            ));
        }
        out.push(s.to_string());
    }
    Ok(out)
}

pub(crate) fn boolean(key: &str, v: &Value) -> Result<bool, RequestError> {
    v.as_bool().ok_or_else(|| {
        RequestError::invalid(
            format!("options.{key} must be a boolean, got {}", json_type(v)),
            format!("For example {{\"{key}\": true}}."),
        )
    })
}

impl DumpOptions {
    pub fn from_value(value: &Value) -> Result<DumpOptions, RequestError> {
        let map: &Map<String, Value> = value.as_object().ok_or_else(|| {
            RequestError::invalid(
                format!("options must be a JSON object, got {}", json_type(value)),
                format!("Pass '{{}}' for defaults. {OPTIONS_HINT}"),
            )
        })?;
        let mut o = DumpOptions::default();
        for (key, v) in map {
            match key.as_str() {
                "schemas" => o.schemas = text_list(key, v)?,
                "exclude_schemas" => o.exclude_schemas = text_list(key, v)?,
                "tables" => o.tables = text_list(key, v)?,
                "exclude_tables" => o.exclude_tables = text_list(key, v)?,
                "exclude_table_data" => o.exclude_table_data = text_list(key, v)?,
                "schema_only" => o.schema_only = boolean(key, v)?,
                "data_only" => o.data_only = boolean(key, v)?,
                "no_owner" => o.no_owner = boolean(key, v)?,
                "no_privileges" => o.no_privileges = boolean(key, v)?,
                other => {
                    return Err(RequestError::invalid(
                        format!("unknown option {}", quoted(other)),
                        OPTIONS_HINT,
                    ))
                }
            }
        }
        if o.schema_only && o.data_only {
            return Err(RequestError::invalid(
                "options.schema_only and options.data_only cannot both be true",
                "Set at most one of schema_only and data_only.",
            ));
        }
        Ok(o)
    }

    /// The stored form, read back by the worker with [`DumpOptions::from_stored`].
    pub fn to_json(&self) -> Value {
        let mut map = Map::new();
        for (key, list) in LIST_KEYS.iter().zip(self.lists()) {
            map.insert((*key).to_string(), Value::from(list.clone()));
        }
        for (key, flag) in BOOL_KEYS.iter().zip(self.flags()) {
            map.insert((*key).to_string(), Value::Bool(flag));
        }
        Value::Object(map)
    }

    /// Goes through the same strict parser as user input so that a row
    /// edited by hand cannot smuggle in something the API would refuse.
    pub fn from_stored(value: &Value) -> Result<DumpOptions, RequestError> {
        DumpOptions::from_value(value)
    }

    fn lists(&self) -> [&Vec<String>; 5] {
        [
            &self.schemas,
            &self.exclude_schemas,
            &self.tables,
            &self.exclude_tables,
            &self.exclude_table_data,
        ]
    }

    fn flags(&self) -> [bool; 4] {
        [
            self.schema_only,
            self.data_only,
            self.no_owner,
            self.no_privileges,
        ]
    }

    /// pg_dump arguments. Each pattern is joined to its flag with `=` in a
    /// single argv element, so a pattern that begins with `-` can never be
    /// taken for another option.
    pub fn to_args(&self) -> Vec<String> {
        const LIST_FLAGS: [&str; 5] = [
            "--schema",
            "--exclude-schema",
            "--table",
            "--exclude-table",
            "--exclude-table-data",
        ];
        const BOOL_FLAGS: [&str; 4] = [
            "--schema-only",
            "--data-only",
            "--no-owner",
            "--no-privileges",
        ];
        let mut args = Vec::new();
        for (flag, list) in LIST_FLAGS.iter().zip(self.lists()) {
            args.extend(list.iter().map(|p| format!("{flag}={p}")));
        }
        for (flag, on) in BOOL_FLAGS.iter().zip(self.flags()) {
            if on {
                args.push((*flag).to_string());
            }
        }
        args
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorKind;
    use serde_json::json;

    #[test]
    fn empty_object_is_defaults() {
        let o = DumpOptions::from_value(&json!({})).unwrap();
        assert_eq!(o, DumpOptions::default());
        assert!(o.to_args().is_empty());
    }

    #[test]
    fn parses_every_key() {
        let o = DumpOptions::from_value(&json!({
            "schemas": ["public", "app*"],
            "exclude_schemas": ["tmp"],
            "tables": ["public.t1"],
            "exclude_tables": ["-evil"],
            "exclude_table_data": ["audit.*"],
            "schema_only": true,
            "no_owner": true,
            "no_privileges": true,
        }))
        .unwrap();
        assert_eq!(
            o.to_args(),
            vec![
                "--schema=public",
                "--schema=app*",
                "--exclude-schema=tmp",
                "--table=public.t1",
                "--exclude-table=-evil",
                "--exclude-table-data=audit.*",
                "--schema-only",
                "--no-owner",
                "--no-privileges",
            ]
        );
        let d = DumpOptions::from_value(&json!({"data_only": true, "schema_only": false})).unwrap();
        assert_eq!(d.to_args(), vec!["--data-only"]);
    }

    #[test]
    fn must_be_an_object() {
        for v in [json!(null), json!([]), json!("x"), json!(1)] {
            let e = DumpOptions::from_value(&v).unwrap_err();
            assert_eq!(e.kind, ErrorKind::InvalidParameter);
            assert!(e.message.starts_with("options must be a JSON object"));
        }
    }

    #[test]
    fn unknown_key_is_named() {
        let e = DumpOptions::from_value(&json!({"exclude_table": ["x"]})).unwrap_err();
        assert_eq!(e.kind, ErrorKind::InvalidParameter);
        assert_eq!(e.message, "unknown option \"exclude_table\"");
        for key in LIST_KEYS.iter().chain(BOOL_KEYS.iter()) {
            assert!(e.hint.contains(key), "hint lacks {key}");
        }
    }

    #[test]
    fn wrong_types() {
        let e = DumpOptions::from_value(&json!({"tables": "t1"})).unwrap_err();
        assert!(e
            .message
            .starts_with("options.tables must be an array of text"));
        let e = DumpOptions::from_value(&json!({"tables": ["a", 5]})).unwrap_err();
        assert!(e.message.contains("element 1 is number"), "{}", e.message);
        let e = DumpOptions::from_value(&json!({"schemas": [""]})).unwrap_err();
        assert!(e.message.contains("empty string"));
        let e = DumpOptions::from_value(&json!({"schemas": ["a\u{0}b"]})).unwrap_err();
        assert!(e.message.contains("NUL"));
        let e = DumpOptions::from_value(&json!({"no_owner": "yes"})).unwrap_err();
        assert_eq!(e.message, "options.no_owner must be a boolean, got string");
        let e = DumpOptions::from_value(&json!({"schema_only": null})).unwrap_err();
        assert_eq!(e.kind, ErrorKind::InvalidParameter);
    }

    #[test]
    fn schema_only_and_data_only_conflict() {
        let e =
            DumpOptions::from_value(&json!({"schema_only": true, "data_only": true})).unwrap_err();
        assert_eq!(e.kind, ErrorKind::InvalidParameter);
        assert!(e.message.contains("schema_only") && e.message.contains("data_only"));
    }

    #[test]
    fn stored_form_round_trips() {
        let o = DumpOptions::from_value(&json!({
            "tables": ["a b", "ünï"],
            "data_only": true,
        }))
        .unwrap();
        let stored = o.to_json();
        assert_eq!(stored["tables"], json!(["a b", "ünï"]));
        assert_eq!(stored["schema_only"], json!(false));
        assert_eq!(DumpOptions::from_stored(&stored).unwrap(), o);
        // serde derive agrees with the hand-written stored form.
        let via_serde: DumpOptions = serde_json::from_value(stored.clone()).unwrap();
        assert_eq!(via_serde, o);
        assert_eq!(serde_json::to_value(&o).unwrap(), stored);
    }
}
