//! The one error type a SQL caller can get back from request validation.
//!
//! Validation happens in the calling backend before anything is queued, so
//! every message has to be good enough for whoever reads it in a log at
//! night: it names the offending value, and the hint lists what would have
//! been accepted.

use std::fmt;

/// Which SQLSTATE class the extension reports. Kept separate from the
/// message so the pgrx side can map it without parsing text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// Reported as SQLSTATE 22023 (invalid_parameter_value).
    InvalidParameter,
    /// Reported as SQLSTATE 0A000 (feature_not_supported).
    FeatureNotSupported,
    /// Reported as SQLSTATE 42704 (undefined_object): e.g. an S3 bucket that does not exist.
    UndefinedObject,
    /// Reported as SQLSTATE F0000 (config_file_error): e.g. an unreadable credentials file.
    ConfigFile,
    /// Reported as SQLSTATE 28000 (invalid_authorization_specification): credentials refused.
    InvalidAuthorization,
    /// Reported as SQLSTATE 08001 (sqlclient_unable_to_establish_sqlconnection): a storage
    /// endpoint that cannot be reached.
    ConnectionFailure,
    /// Reported as SQLSTATE 58000 (system_error): a failure outside the server, e.g. a storage
    /// service answering with an error.
    ExternalFailure,
    /// Reported as SQLSTATE 58P01 (undefined_file): an object or file that does not exist.
    FileMissing,
    /// Reported as SQLSTATE XX001 (data_corrupted): stored bytes that do not match what was sent.
    DataCorrupted,
    /// Reported as SQLSTATE 42P01 (undefined_table): a table the backup does not hold.
    UndefinedTable,
    /// Reported as SQLSTATE 42P07 (duplicate_table): a relation that exists already.
    DuplicateTable,
    /// Reported as SQLSTATE 3F000 (invalid_schema_name): a schema that does not exist.
    InvalidSchemaName,
    /// Reported as SQLSTATE 42622 (name_too_long): a name longer than 63 bytes.
    NameTooLong,
    /// Reported as SQLSTATE 55000 (object_not_in_prerequisite_state): e.g. a table that must
    /// be empty and is not.
    NotInPrerequisiteState,
}

impl ErrorKind {
    /// The SQLSTATE code, useful for logs and for tests on the SQL side.
    pub fn sqlstate(self) -> &'static str {
        match self {
            ErrorKind::InvalidParameter => "22023",
            ErrorKind::FeatureNotSupported => "0A000",
            ErrorKind::UndefinedObject => "42704",
            ErrorKind::ConfigFile => "F0000",
            ErrorKind::InvalidAuthorization => "28000",
            ErrorKind::ConnectionFailure => "08001",
            ErrorKind::ExternalFailure => "58000",
            ErrorKind::FileMissing => "58P01",
            ErrorKind::DataCorrupted => "XX001",
            ErrorKind::UndefinedTable => "42P01",
            ErrorKind::DuplicateTable => "42P07",
            ErrorKind::InvalidSchemaName => "3F000",
            ErrorKind::NameTooLong => "42622",
            ErrorKind::NotInPrerequisiteState => "55000",
        }
    }
}

/// A rejected request, with a message naming the bad value and a hint
/// listing the accepted ones.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct RequestError {
    pub kind: ErrorKind,
    pub message: String,
    pub hint: String,
}

impl RequestError {
    pub fn invalid(message: impl Into<String>, hint: impl Into<String>) -> Self {
        RequestError {
            kind: ErrorKind::InvalidParameter,
            message: message.into(),
            hint: hint.into(),
        }
    }

    pub fn unsupported(message: impl Into<String>, hint: impl Into<String>) -> Self {
        RequestError {
            kind: ErrorKind::FeatureNotSupported,
            message: message.into(),
            hint: hint.into(),
        }
    }

    pub fn new(kind: ErrorKind, message: impl Into<String>, hint: impl Into<String>) -> Self {
        RequestError {
            kind,
            message: message.into(),
            hint: hint.into(),
        }
    }
}

/// Quotes a user-supplied value for inclusion in a message. Debug
/// formatting escapes control characters, so a value with a newline or a
/// trailing space is visible as such instead of silently misleading.
pub(crate) fn quoted(value: &str) -> String {
    format!("{value:?}")
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.sqlstate())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dump::compress::DumpTool;

    #[test]
    fn display_is_the_message_only() {
        let e = RequestError::invalid("bad value \"x\"", "use y");
        assert_eq!(e.to_string(), "bad value \"x\"");
        assert_eq!(e.kind, ErrorKind::InvalidParameter);
        assert_eq!(e.hint, "use y");
    }

    #[test]
    fn kinds_map_to_sqlstates() {
        assert_eq!(ErrorKind::InvalidParameter.sqlstate(), "22023");
        assert_eq!(ErrorKind::FeatureNotSupported.sqlstate(), "0A000");
        assert_eq!(ErrorKind::UndefinedObject.sqlstate(), "42704");
        assert_eq!(ErrorKind::ConfigFile.sqlstate(), "F0000");
        assert_eq!(ErrorKind::InvalidAuthorization.sqlstate(), "28000");
        assert_eq!(ErrorKind::ConnectionFailure.sqlstate(), "08001");
        assert_eq!(ErrorKind::ExternalFailure.sqlstate(), "58000");
        assert_eq!(ErrorKind::FileMissing.sqlstate(), "58P01");
        assert_eq!(ErrorKind::DataCorrupted.sqlstate(), "XX001");
        let e = RequestError::unsupported("m", "h");
        assert_eq!(e.kind, ErrorKind::FeatureNotSupported);
    }

    /// Hints reach the user next to the server's own, which are sentences: a capital letter
    /// and a full stop (PostgreSQL's error style guide), as the extension's other hints are.
    #[test]
    fn hints_are_sentences() {
        use crate::dump::options::DumpOptions;
        use crate::dump::request::DumpRequest;
        use crate::format::Format;
        use crate::restore::request::{use_list_for, RestoreRequest};
        use crate::retention::RetentionPolicy;
        use crate::schedule::{validate_schedule_name, CronSchedule, ScheduleCommand};
        use serde_json::{json, Value};

        let dump = |format: &str, compress: Option<&str>, jobs: Option<i32>, o: Value| {
            DumpRequest::validate(format, compress, jobs, &o, DumpTool::by_version(15)).map(|_| ())
        };
        let restore = |format: Format, globals: bool, create_db: bool, jobs, o: Value| {
            RestoreRequest::validate(format, globals, create_db, jobs, &o).map(|_| ())
        };
        let mut results: Vec<Result<(), RequestError>> = vec![
            Format::parse("zip").map(|_| ()),
            crate::job::JobStatus::parse("done").map(|_| ()),
            crate::restore::argv::validate_database_name(""),
            dump("custom", Some("banana"), None, json!({})),
            dump("custom", Some("zstd"), None, json!({})),
            dump("tar", Some("6"), None, json!({})),
            dump("custom", None, Some(2), json!({})),
            dump("directory", None, Some(0), json!({})),
            restore(Format::Plain, true, true, None, json!({})),
            restore(Format::Tar, false, false, Some(2), json!({})),
            restore(Format::Custom, false, false, Some(99), json!({})),
            restore(
                Format::Custom,
                false,
                false,
                Some(2),
                json!({"single_transaction": true}),
            ),
            restore(Format::Plain, false, false, None, json!({"tables": ["t"]})),
            restore(Format::Custom, false, true, None, json!({"clean": true})),
            restore(Format::Custom, false, false, None, json!([])),
            restore(Format::Custom, false, false, None, json!({"x": 1})),
            restore(Format::Custom, false, false, None, json!({"toc_ids": "1"})),
            restore(Format::Custom, false, false, None, json!({"toc_ids": [0]})),
            use_list_for("", &[5]).map(|_| ()),
            RetentionPolicy::from_value(&json!([])).map(|_| ()),
            RetentionPolicy::from_value(&json!({"x": 1})).map(|_| ()),
            RetentionPolicy::from_value(&json!({"keep_last": 0})).map(|_| ()),
            validate_schedule_name(""),
            validate_schedule_name(&"n".repeat(64)),
            validate_schedule_name("a\nb"),
        ];
        for options in [
            json!([]),
            json!({"x": 1}),
            json!({"tables": "t"}),
            json!({"tables": [1]}),
            json!({"tables": [""]}),
            json!({"tables": ["a\u{0}b"]}),
            json!({"no_owner": 1}),
            json!({"schema_only": true, "data_only": true}),
        ] {
            results.push(DumpOptions::from_value(&options).map(|_| ()));
        }
        for cron in [
            "",
            "@reboot",
            "@often",
            "* * * *",
            "0 * * * * *",
            "61 * * * *",
            "L * * * *",
            "* * * FOO *",
            "* * * ? *",
            "*/ * * * *",
            "0 0 30 2 *",
            "0\u{1} * * * *",
        ] {
            results.push(CronSchedule::parse(cron).map(|_| ()));
        }
        for command in [
            json!([]),
            json!({}),
            json!({"backup": 1}),
            json!({"backup": "tape"}),
            json!({"backup": "database"}),
            json!({"backup": "database", "dbname": 5}),
            json!({"backup": "database", "dbname": "app", "x": 1}),
            json!({"backup": "database", "dbname": "app", "label": "l".repeat(201)}),
            json!({"backup": "database", "dbname": "app", "options": {"timeout": 1}}),
            json!({"backup": "database", "dbname": "app", "options": {"include_databases": []}}),
            json!({"backup": "cluster", "options": {"include_databases": "app"}}),
            json!({"backup": "cluster", "options": {"exclude_databases": [1]}}),
            json!({"backup": "globals", "no_role_passwords": "yes"}),
        ] {
            results.push(ScheduleCommand::from_value(&command).map(|_| ()));
        }
        for result in results {
            let e = result.unwrap_err();
            let first = e.hint.chars().next().unwrap_or(' ');
            assert!(
                first.is_uppercase() && e.hint.ends_with('.'),
                "hint of {:?} is not a sentence: {:?}",
                e.message,
                e.hint
            );
        }
    }

    #[test]
    fn quoted_makes_whitespace_visible() {
        assert_eq!(quoted(" 5"), "\" 5\"");
        assert_eq!(quoted("a\nb"), "\"a\\nb\"");
    }
}
