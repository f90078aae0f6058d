//! pg_dump output formats and what each implies for where output goes.

use crate::error::{quoted, RequestError};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    Custom,
    Plain,
    Directory,
    Tar,
}

pub const FORMAT_HINT: &str = "Formats: custom, plain, directory, tar.";

impl Format {
    pub const ALL: [Format; 4] = [
        Format::Custom,
        Format::Plain,
        Format::Directory,
        Format::Tar,
    ];

    /// Case-sensitive on purpose: the value is stored and compared as
    /// text, and accepting "Custom" would make two spellings of one format.
    pub fn parse(s: &str) -> Result<Format, RequestError> {
        Format::ALL
            .into_iter()
            .find(|f| f.as_str() == s)
            .ok_or_else(|| {
                RequestError::invalid(format!("unknown dump format {}", quoted(s)), FORMAT_HINT)
            })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Format::Custom => "custom",
            Format::Plain => "plain",
            Format::Directory => "directory",
            Format::Tar => "tar",
        }
    }

    pub fn pg_dump_flag(self) -> &'static str {
        match self {
            Format::Custom => "--format=custom",
            Format::Plain => "--format=plain",
            Format::Directory => "--format=directory",
            Format::Tar => "--format=tar",
        }
    }

    /// pg_dump creates and fills the directory itself, so only the other
    /// formats are read from stdout and hashed while streaming.
    pub fn writes_to_stdout(self) -> bool {
        !matches!(self, Format::Directory)
    }

    /// Only plain output changes its nature when compressed (it becomes a
    /// gzip stream); the archive formats compress internally.
    pub fn file_name_suffix(self, compressed: bool) -> &'static str {
        match (self, compressed) {
            (Format::Custom, _) => ".dump",
            (Format::Tar, _) => ".tar",
            (Format::Directory, _) => ".dir",
            (Format::Plain, false) => ".sql",
            (Format::Plain, true) => ".sql.gz",
        }
    }
}

impl std::fmt::Display for Format {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorKind;

    #[test]
    fn parses_each_format() {
        assert_eq!(Format::parse("custom"), Ok(Format::Custom));
        assert_eq!(Format::parse("plain"), Ok(Format::Plain));
        assert_eq!(Format::parse("directory"), Ok(Format::Directory));
        assert_eq!(Format::parse("tar"), Ok(Format::Tar));
        for f in Format::ALL {
            assert_eq!(Format::parse(f.as_str()), Ok(f));
        }
    }

    #[test]
    fn rejects_other_spellings() {
        for bad in ["Custom", "TAR", "dir", "c", "", " plain"] {
            let e = Format::parse(bad).unwrap_err();
            assert_eq!(e.kind, ErrorKind::InvalidParameter);
            assert!(e.message.contains(&format!("{bad:?}")));
            assert_eq!(e.hint, "Formats: custom, plain, directory, tar.");
        }
    }

    #[test]
    fn flags() {
        assert_eq!(Format::Custom.pg_dump_flag(), "--format=custom");
        assert_eq!(Format::Plain.pg_dump_flag(), "--format=plain");
        assert_eq!(Format::Directory.pg_dump_flag(), "--format=directory");
        assert_eq!(Format::Tar.pg_dump_flag(), "--format=tar");
    }

    #[test]
    fn only_directory_skips_stdout() {
        assert!(Format::Custom.writes_to_stdout());
        assert!(Format::Plain.writes_to_stdout());
        assert!(Format::Tar.writes_to_stdout());
        assert!(!Format::Directory.writes_to_stdout());
    }

    #[test]
    fn suffixes() {
        assert_eq!(Format::Custom.file_name_suffix(false), ".dump");
        assert_eq!(Format::Custom.file_name_suffix(true), ".dump");
        assert_eq!(Format::Tar.file_name_suffix(false), ".tar");
        assert_eq!(Format::Directory.file_name_suffix(true), ".dir");
        assert_eq!(Format::Plain.file_name_suffix(false), ".sql");
        assert_eq!(Format::Plain.file_name_suffix(true), ".sql.gz");
    }

    #[test]
    fn serializes_as_lower_case_string() {
        assert_eq!(
            serde_json::to_value(Format::Directory).unwrap(),
            serde_json::json!("directory")
        );
        let f: Format = serde_json::from_value(serde_json::json!("tar")).unwrap();
        assert_eq!(f, Format::Tar);
    }
}
