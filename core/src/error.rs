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
}

impl ErrorKind {
    /// The SQLSTATE code, useful for logs and for tests on the SQL side.
    pub fn sqlstate(self) -> &'static str {
        match self {
            ErrorKind::InvalidParameter => "22023",
            ErrorKind::FeatureNotSupported => "0A000",
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
        let e = RequestError::unsupported("m", "h");
        assert_eq!(e.kind, ErrorKind::FeatureNotSupported);
    }

    #[test]
    fn quoted_makes_whitespace_visible() {
        assert_eq!(quoted(" 5"), "\" 5\"");
        assert_eq!(quoted("a\nb"), "\"a\\nb\"");
    }
}
