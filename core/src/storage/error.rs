//! Storage failures, classified so the caller can report the right SQLSTATE
//! and react (a dead reader of a download, a corrupt upload), with messages
//! that never contain a secret.

use super::credentials::CREDENTIALS_FILE_SETTING;
use crate::error::{ErrorKind, RequestError};
use std::fmt;

/// What went wrong, independent of the wording.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// A bad key or argument (22023).
    Invalid,
    /// The object or file does not exist (58P01).
    NotFound,
    /// The credentials were refused, or none were given (28000).
    Unauthorized,
    /// The bucket does not exist (42704).
    NoBucket,
    /// The endpoint could not be reached in time (08001).
    Unreachable,
    /// The stored object does not match what was sent (XX001).
    Corrupted,
    /// Reading the data to upload failed, e.g. the producing child died (58000).
    SourceFailed,
    /// The writer a download goes to was closed by its reader: a broken pipe,
    /// usually because the child reading it exited (58000).
    SinkClosed,
    /// Writing a download failed otherwise (58000).
    SinkFailed,
    /// Anything else the storage service or file system reported (58000).
    External,
}

impl Failure {
    pub fn kind(self) -> ErrorKind {
        match self {
            Failure::Invalid => ErrorKind::InvalidParameter,
            Failure::NotFound => ErrorKind::FileMissing,
            Failure::Unauthorized => ErrorKind::InvalidAuthorization,
            Failure::NoBucket => ErrorKind::UndefinedObject,
            Failure::Unreachable => ErrorKind::ConnectionFailure,
            Failure::Corrupted => ErrorKind::DataCorrupted,
            Failure::SourceFailed
            | Failure::SinkClosed
            | Failure::SinkFailed
            | Failure::External => ErrorKind::ExternalFailure,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StorageError {
    pub failure: Failure,
    pub message: String,
    pub hint: String,
}

impl fmt::Display for StorageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for StorageError {}

impl From<StorageError> for RequestError {
    fn from(e: StorageError) -> RequestError {
        RequestError::new(e.failure.kind(), e.message, e.hint)
    }
}

impl From<RequestError> for StorageError {
    fn from(e: RequestError) -> StorageError {
        let failure = match e.kind {
            ErrorKind::InvalidParameter
            | ErrorKind::FeatureNotSupported
            | ErrorKind::UndefinedTable
            | ErrorKind::DuplicateTable
            | ErrorKind::InvalidSchemaName
            | ErrorKind::NameTooLong
            | ErrorKind::NotInPrerequisiteState => Failure::Invalid,
            ErrorKind::UndefinedObject => Failure::NoBucket,
            ErrorKind::InvalidAuthorization | ErrorKind::ConfigFile => Failure::Unauthorized,
            ErrorKind::ConnectionFailure => Failure::Unreachable,
            ErrorKind::FileMissing => Failure::NotFound,
            ErrorKind::DataCorrupted => Failure::Corrupted,
            ErrorKind::ExternalFailure => Failure::External,
        };
        StorageError {
            failure,
            message: e.message,
            hint: e.hint,
        }
    }
}

/// S3 error codes that mean the credentials (or their absence) were refused.
const AUTH_CODES: &[&str] = &[
    "AccessDenied",
    "SignatureDoesNotMatch",
    "InvalidAccessKeyId",
    "InvalidToken",
    "ExpiredToken",
    "TokenRefreshRequired",
    "AllAccessDisabled",
    "AuthorizationHeaderMalformed",
    "InvalidSecurity",
];

const DETAIL_LIMIT: usize = 300;

impl StorageError {
    pub fn new(failure: Failure, message: impl Into<String>, hint: impl Into<String>) -> Self {
        StorageError {
            failure,
            message: message.into(),
            hint: hint.into(),
        }
    }

    pub fn kind(&self) -> ErrorKind {
        self.failure.kind()
    }

    /// True when a download stopped because its reader went away (broken pipe).
    pub fn is_sink_closed(&self) -> bool {
        self.failure == Failure::SinkClosed
    }

    /// An error from object_store while doing `what` (e.g. `reading "k" from
    /// s3://b/p`). Only the S3 error code and message, or the innermost
    /// transport error, are kept: S3 error bodies can repeat the signed request
    /// (with a session token in it), so they are never copied whole. Any of
    /// `secrets` left in the text is replaced all the same.
    pub(crate) fn from_object_store(
        e: &object_store::Error,
        what: &str,
        secrets: &[String],
    ) -> StorageError {
        let full = chain_text(e);
        let code = tag(&full, "Code");
        let transport = transport_kind(e);
        let failure = match (code, e) {
            (Some("NoSuchBucket"), _) => Failure::NoBucket,
            (Some(code), _) if AUTH_CODES.contains(&code) => Failure::Unauthorized,
            (
                _,
                object_store::Error::PermissionDenied { .. }
                | object_store::Error::Unauthenticated { .. },
            ) => Failure::Unauthorized,
            (_, object_store::Error::NotFound { .. }) => Failure::NotFound,
            _ => match transport {
                Some(
                    object_store::client::HttpErrorKind::Connect
                    | object_store::client::HttpErrorKind::Timeout,
                ) => Failure::Unreachable,
                _ => Failure::External,
            },
        };
        let detail = match (code, transport) {
            (Some(code), _) => match tag(&full, "Message") {
                Some(message) => format!("{code}: {message}"),
                None => code.to_string(),
            },
            (None, Some(_)) => innermost(e),
            (None, None) if failure == Failure::NotFound => "not found".to_string(),
            (None, None) if failure == Failure::Unauthorized => {
                "access denied (HTTP 401 or 403)".to_string()
            }
            (None, None) => e.to_string(),
        };
        let detail = shorten(&redact(&detail, secrets));
        StorageError::new(failure, format!("{what} failed: {detail}"), hint(failure))
    }

    /// A local I/O error while doing `what`.
    pub(crate) fn from_io(e: &std::io::Error, what: &str) -> StorageError {
        let failure = match e.kind() {
            std::io::ErrorKind::NotFound => Failure::NotFound,
            _ => Failure::External,
        };
        let hint = match failure {
            Failure::NotFound => hint(failure),
            _ => "Check the directory's permissions and free space; the server's operating-system \
                  user must be able to write there."
                .to_string(),
        };
        StorageError::new(failure, format!("{what} failed: {e}"), hint)
    }
}

/// The hint for a failure reported by the storage service.
pub(crate) fn hint(failure: Failure) -> String {
    match failure {
        Failure::NotFound => "The object does not exist (any more): check the key and the \
                              storage URL."
            .into(),
        Failure::Unauthorized => format!(
            "Check the access key and secret in the file named by {CREDENTIALS_FILE_SETTING} \
             (and the \"profile\" option), and that they may list, read and write the bucket."
        ),
        Failure::NoBucket => {
            "Create the bucket first, or correct its name in the storage URL.".into()
        }
        Failure::Unreachable => "Check the \"endpoint\" and \"region\" options and that this \
                                 server can reach the storage service."
            .into(),
        Failure::Corrupted => "The stored object was removed; run the backup again.".into(),
        Failure::SourceFailed => "The data to upload could not be read to its end (did the \
                                  program producing it fail?); nothing was stored."
            .into(),
        Failure::SinkClosed => "The program reading the download stopped reading (see its own \
                                errors)."
            .into(),
        Failure::SinkFailed => "Writing the downloaded data failed; see the message.".into(),
        Failure::Invalid | Failure::External => {
            "The storage service refused the request or failed; see its message, and retry if \
             it was temporary."
                .into()
        }
    }
}

/// The error and its sources, each once (many Display impls repeat their
/// source, others do not).
fn chain_text(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let part = s.to_string();
        if !text.contains(&part) {
            text.push_str(": ");
            text.push_str(&part);
        }
        source = s.source();
    }
    text
}

fn innermost(e: &(dyn std::error::Error + 'static)) -> String {
    let mut last: &(dyn std::error::Error + 'static) = e;
    while let Some(s) = last.source() {
        last = s;
    }
    last.to_string()
}

fn transport_kind(
    e: &(dyn std::error::Error + 'static),
) -> Option<object_store::client::HttpErrorKind> {
    let mut source = Some(e);
    while let Some(s) = source {
        if let Some(http) = s.downcast_ref::<object_store::client::HttpError>() {
            return Some(http.kind());
        }
        source = s.source();
    }
    None
}

/// The text of the first `<name>...</name>` element in an S3 error body.
fn tag<'a>(text: &'a str, name: &str) -> Option<&'a str> {
    let open = format!("<{name}>");
    let start = text.find(&open)? + open.len();
    let len = text[start..].find(&format!("</{name}>"))?;
    Some(text[start..start + len].trim()).filter(|t| !t.is_empty())
}

fn redact(text: &str, secrets: &[String]) -> String {
    let mut text = text.to_string();
    for secret in secrets.iter().filter(|s| !s.is_empty()) {
        text = text.replace(secret.as_str(), "<redacted>");
    }
    text
}

fn shorten(text: &str) -> String {
    let one_line: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if one_line.chars().count() > DETAIL_LIMIT {
        format!(
            "{}...",
            one_line.chars().take(DETAIL_LIMIT).collect::<String>()
        )
    } else {
        one_line
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug)]
    struct Body(String);
    impl fmt::Display for Body {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str(&self.0)
        }
    }
    impl std::error::Error for Body {}

    fn generic(body: &str) -> object_store::Error {
        object_store::Error::Generic {
            store: "S3",
            source: Box::new(Body(body.into())),
        }
    }

    #[test]
    fn codes_are_classified() {
        let e = StorageError::from_object_store(
            &generic("<Error><Code>NoSuchBucket</Code><Message>The bucket does not exist</Message></Error>"),
            "listing s3://b",
            &[],
        );
        assert_eq!(e.failure, Failure::NoBucket);
        assert_eq!(e.kind().sqlstate(), "42704");
        assert_eq!(
            e.message,
            "listing s3://b failed: NoSuchBucket: The bucket does not exist"
        );
        let body = "<Error><Code>SignatureDoesNotMatch</Code><Message>bad</Message>\
                    <CanonicalRequest>x-amz-security-token:TOKEN123</CanonicalRequest></Error>";
        let e = StorageError::from_object_store(&generic(body), "x", &["TOKEN123".into()]);
        assert_eq!(e.failure, Failure::Unauthorized);
        assert!(!e.message.contains("TOKEN123"), "{e:?}");
        assert!(e.hint.contains(CREDENTIALS_FILE_SETTING));
    }

    #[test]
    fn secrets_are_redacted_and_text_is_short() {
        let e = StorageError::from_object_store(
            &generic(&format!("oops SECRETKEY {}", "x".repeat(1000))),
            "x",
            &["SECRETKEY".into()],
        );
        assert_eq!(e.failure, Failure::External);
        assert!(!e.message.contains("SECRETKEY"), "{e:?}");
        assert!(e.message.contains("<redacted>"), "{e:?}");
        assert!(e.message.len() < 400, "{e:?}");
    }

    #[test]
    fn the_access_key_id_is_among_the_secrets() {
        let c = super::super::credentials::Credentials::new(
            "AKIAEXAMPLEKEYID",
            "s3cr3t",
            Some("token".into()),
        );
        let e = StorageError::from_object_store(
            &generic("Credential=AKIAEXAMPLEKEYID/20261129 rejected, s3cr3t, token"),
            "x",
            &c.secrets(),
        );
        for secret in ["AKIAEXAMPLEKEYID", "s3cr3t", "token"] {
            assert!(!e.message.contains(secret), "{e:?}");
        }
    }

    #[test]
    fn conversions_keep_kind_and_text() {
        let e = StorageError::new(Failure::Corrupted, "m", "H.");
        let r: RequestError = e.into();
        assert_eq!(r.kind, ErrorKind::DataCorrupted);
        assert_eq!((r.message.as_str(), r.hint.as_str()), ("m", "H."));
        let io = std::io::Error::from(std::io::ErrorKind::NotFound);
        assert_eq!(StorageError::from_io(&io, "x").kind().sqlstate(), "58P01");
    }

    #[test]
    fn hints_are_sentences() {
        for failure in [
            Failure::Invalid,
            Failure::NotFound,
            Failure::Unauthorized,
            Failure::NoBucket,
            Failure::Unreachable,
            Failure::Corrupted,
            Failure::SourceFailed,
            Failure::SinkClosed,
            Failure::SinkFailed,
            Failure::External,
        ] {
            let h = hint(failure);
            assert!(h.starts_with(char::is_uppercase) && h.ends_with('.'), "{h}");
        }
    }
}
