//! A validated dump request: everything the worker needs to build the
//! pg_dump command line, checked in the calling backend so that mistakes are
//! reported to the caller instead of surfacing as a failed job later.

use crate::dump::compress::{validate_compress, Compression, DumpTool};
use crate::dump::options::DumpOptions;
use crate::error::RequestError;
use crate::format::Format;
use serde::{Deserialize, Serialize};
use serde_json::Value;

pub const MAX_JOBS: i32 = 64;

/// Option keys that steer how backup_ext runs a backup rather than what pg_dump dumps:
/// a per-call `timeout`, and which databases a cluster backup covers.
pub const RUN_OPTION_KEYS: [&str; 4] = [
    "timeout",
    "include_databases",
    "exclude_databases",
    "storage",
];

/// Splits `options` into what pg_dump gets and the run options (`RUN_OPTION_KEYS`); a
/// non-object is returned unchanged for validation to refuse.
pub fn split_run_options(options: &Value) -> (Value, serde_json::Map<String, Value>) {
    let Some(map) = options.as_object() else {
        return (options.clone(), serde_json::Map::new());
    };
    let (run, dump): (serde_json::Map<_, _>, serde_json::Map<_, _>) = map
        .clone()
        .into_iter()
        .partition(|(k, _)| RUN_OPTION_KEYS.contains(&k.as_str()));
    (Value::Object(dump), run)
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DumpRequest {
    pub format: Format,
    pub compress: Option<Compression>,
    pub jobs: Option<u32>,
    pub options: DumpOptions,
}

impl DumpRequest {
    /// `tool` is what the pg_dump in `bin_dir` accepts (not the server's version): it decides
    /// which compression methods are understood.
    pub fn validate(
        format: &str,
        compress: Option<&str>,
        jobs: Option<i32>,
        options: &Value,
        tool: DumpTool,
    ) -> Result<DumpRequest, RequestError> {
        let format = Format::parse(format)?;
        let compress = compress
            .map(|spec| validate_compress(spec, format, tool))
            .transpose()?;
        let jobs = match jobs {
            None => None,
            Some(n) => {
                if format != Format::Directory {
                    return Err(RequestError::invalid(
                        format!("jobs => {n} cannot be used with format => '{format}'"),
                        "Parallel dump (jobs) needs format => 'directory'.",
                    ));
                }
                if !(1..=MAX_JOBS).contains(&n) {
                    return Err(RequestError::invalid(
                        format!("jobs => {n} is out of range"),
                        format!("Use a jobs value between 1 and {MAX_JOBS}."),
                    ));
                }
                u32::try_from(n).ok()
            }
        };
        let options = DumpOptions::from_value(options)?;
        Ok(DumpRequest {
            format,
            compress,
            jobs,
            options,
        })
    }

    pub fn is_compressed(&self) -> bool {
        self.compress.as_ref().is_some_and(|c| c.compressed)
    }

    /// Like [`Format::file_name_suffix`], but a plain dump compressed with
    /// lz4 or zstd gets the matching ending instead of `.sql.gz`.
    pub fn file_name_suffix(&self) -> &'static str {
        match (&self.format, &self.compress) {
            (Format::Plain, Some(c)) if c.compressed => c.method().plain_suffix(),
            (format, _) => format.file_name_suffix(self.is_compressed()),
        }
    }

    pub fn to_json(&self) -> Result<Value, serde_json::Error> {
        serde_json::to_value(self)
    }

    /// Reads a request back from its job row through the same checks as [`DumpRequest::validate`]
    /// (unknown keys at any level, empty or NUL patterns, jobs, format and compression), so that
    /// a row edited by hand cannot hand pg_dump what the API would refuse.
    pub fn from_stored(value: &Value) -> Result<DumpRequest, serde_json::Error> {
        let stored = DumpRequest::deserialize(value)?;
        let jobs = stored.jobs.map(|j| i32::try_from(j).unwrap_or(i32::MAX));
        DumpRequest::validate(
            stored.format.as_str(),
            stored.compress.as_ref().map(|c| c.spec.as_str()),
            jobs,
            &stored.options.to_json(),
            STORED_TOOL,
        )
        .map_err(stored_error)
    }
}

/// The compression syntax was checked against the configured pg_dump when the job was
/// enqueued; reading the row back does not narrow it to an older one.
const STORED_TOOL: DumpTool = DumpTool {
    major: u32::MAX,
    gzip: true,
    lz4: true,
    zstd: true,
};

/// A stored request that fails validation, as the error the deserializer would give.
pub(crate) fn stored_error(e: RequestError) -> serde_json::Error {
    <serde_json::Error as serde::de::Error>::custom(e.message)
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GlobalsRequest {
    pub no_role_passwords: bool,
}

impl GlobalsRequest {
    pub fn to_json(&self) -> Result<Value, serde_json::Error> {
        serde_json::to_value(self)
    }

    pub fn from_stored(value: &Value) -> Result<GlobalsRequest, serde_json::Error> {
        GlobalsRequest::deserialize(value)
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn run_options_are_split_from_dump_options() {
        let (dump, run) = super::split_run_options(&serde_json::json!({
            "timeout": "1 h", "no_owner": true, "exclude_databases": ["x"]
        }));
        assert_eq!(dump, serde_json::json!({"no_owner": true}));
        assert_eq!(run.len(), 2);
        assert!(run.contains_key("timeout") && run.contains_key("exclude_databases"));
        let (dump, run) = super::split_run_options(&serde_json::json!([]));
        assert_eq!(dump, serde_json::json!([]));
        assert!(run.is_empty());
    }

    use super::*;
    use crate::error::ErrorKind;
    use serde_json::json;

    fn v(
        format: &str,
        compress: Option<&str>,
        jobs: Option<i32>,
        options: Value,
        major: u32,
    ) -> Result<DumpRequest, RequestError> {
        DumpRequest::validate(
            format,
            compress,
            jobs,
            &options,
            DumpTool::by_version(major),
        )
    }

    #[test]
    fn minimal_request() {
        let r = v("custom", None, None, json!({}), 15).unwrap();
        assert_eq!(r.format, Format::Custom);
        assert_eq!(r.compress, None);
        assert_eq!(r.jobs, None);
        assert_eq!(r.options, DumpOptions::default());
        assert_eq!(r.file_name_suffix(), ".dump");
    }

    #[test]
    fn errors_from_each_part_propagate() {
        assert_eq!(
            v("zip", None, None, json!({}), 15).unwrap_err().hint,
            "Formats: custom, plain, directory, tar."
        );
        assert_eq!(
            v("custom", Some("zstd"), None, json!({}), 15)
                .unwrap_err()
                .kind,
            ErrorKind::FeatureNotSupported
        );
        assert_eq!(
            v("custom", None, None, json!({"bogus": 1}), 15)
                .unwrap_err()
                .message,
            "unknown option \"bogus\""
        );
    }

    #[test]
    fn jobs_need_directory() {
        for f in ["custom", "plain", "tar"] {
            let e = v(f, None, Some(4), json!({}), 15).unwrap_err();
            assert_eq!(e.kind, ErrorKind::InvalidParameter);
            assert!(e.message.contains(&format!("'{f}'")), "{}", e.message);
            assert_eq!(e.hint, "Parallel dump (jobs) needs format => 'directory'.");
        }
        let r = v("directory", None, Some(4), json!({}), 15).unwrap();
        assert_eq!(r.jobs, Some(4));
    }

    #[test]
    fn jobs_range() {
        for n in [0, -1, 65, i32::MAX, i32::MIN] {
            let e = v("directory", None, Some(n), json!({}), 15).unwrap_err();
            assert_eq!(e.kind, ErrorKind::InvalidParameter);
            assert!(e.message.contains(&n.to_string()));
            assert!(e.hint.contains("between 1 and 64"));
        }
        assert_eq!(
            v("directory", None, Some(1), json!({}), 15).unwrap().jobs,
            Some(1)
        );
        assert_eq!(
            v("directory", None, Some(64), json!({}), 15).unwrap().jobs,
            Some(64)
        );
    }

    #[test]
    fn suffixes_follow_compression() {
        assert_eq!(
            v("plain", None, None, json!({}), 15)
                .unwrap()
                .file_name_suffix(),
            ".sql"
        );
        assert_eq!(
            v("plain", Some("0"), None, json!({}), 15)
                .unwrap()
                .file_name_suffix(),
            ".sql"
        );
        let gz = v("plain", Some("6"), None, json!({}), 15).unwrap();
        assert!(gz.is_compressed());
        assert_eq!(gz.file_name_suffix(), ".sql.gz");
        let zst = v("plain", Some("zstd:3"), None, json!({}), 16).unwrap();
        assert_eq!(zst.file_name_suffix(), ".sql.zst");
        assert_eq!(
            v("directory", Some("5"), None, json!({}), 15)
                .unwrap()
                .file_name_suffix(),
            ".dir"
        );
        assert_eq!(
            v("tar", None, None, json!({}), 15)
                .unwrap()
                .file_name_suffix(),
            ".tar"
        );
    }

    #[test]
    fn stored_requests_are_read_back_strictly() {
        let good = v(
            "directory",
            Some("5"),
            Some(2),
            json!({"tables": ["t"]}),
            15,
        )
        .unwrap()
        .to_json()
        .unwrap();
        assert!(DumpRequest::from_stored(&good).is_ok());
        let edited = |edit: &dyn Fn(&mut Value)| {
            let mut stored = good.clone();
            edit(&mut stored);
            stored
        };
        let cases: [(Value, &str); 9] = [
            (edited(&|s| s["bogus"] = json!(1)), "unknown field `bogus`"),
            (
                edited(&|s| s["options"]["exclude_table"] = json!(["x"])),
                "unknown field `exclude_table`",
            ),
            (
                edited(&|s| s["compress"]["level"] = json!(5)),
                "unknown field `level`",
            ),
            (
                edited(&|s| s["options"]["tables"] = json!([""])),
                "empty string",
            ),
            (
                edited(&|s| s["options"]["tables"] = json!(["a\u{0}b"])),
                "NUL",
            ),
            (edited(&|s| s["jobs"] = json!(1000)), "out of range"),
            (
                edited(&|s| s["format"] = json!("custom")),
                "cannot be used with format",
            ),
            (
                edited(&|s| s["compress"]["spec"] = json!("banana")),
                "compression specification",
            ),
            (
                edited(&|s| {
                    s["options"]["schema_only"] = json!(true);
                    s["options"]["data_only"] = json!(true);
                }),
                "cannot both be true",
            ),
        ];
        for (stored, expected) in cases {
            let e = DumpRequest::from_stored(&stored).unwrap_err().to_string();
            assert!(e.contains(expected), "{stored}: {e}");
        }
        // `compressed` is recomputed from the spec, not trusted.
        let r = DumpRequest::from_stored(&edited(&|s| s["compress"]["compressed"] = json!(false)))
            .unwrap();
        assert!(r.is_compressed());

        assert!(GlobalsRequest::from_stored(&json!({"no_role_passwords": true, "x": 1})).is_err());
        assert!(GlobalsRequest::from_stored(&json!({"no_role_passwords": "yes"})).is_err());
    }

    #[test]
    fn stored_form_round_trips() {
        let r = v(
            "directory",
            Some("5"),
            Some(2),
            json!({"tables": ["t"]}),
            15,
        )
        .unwrap();
        let stored = r.to_json().unwrap();
        assert_eq!(stored["format"], json!("directory"));
        assert_eq!(stored["compress"]["spec"], json!("5"));
        assert_eq!(stored["jobs"], json!(2));
        assert_eq!(DumpRequest::from_stored(&stored).unwrap(), r);

        let g = GlobalsRequest {
            no_role_passwords: true,
        };
        let stored = g.to_json().unwrap();
        assert_eq!(stored, json!({"no_role_passwords": true}));
        assert_eq!(GlobalsRequest::from_stored(&stored).unwrap(), g);
    }
}
