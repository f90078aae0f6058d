//! Where backups go: `s3://bucket/prefix` or `file:///absolute/path`, and the
//! keys (relative paths) of the objects below it.

use crate::error::{quoted, RequestError};
use std::fmt;
use std::path::{Path, PathBuf};

const URL_HINT: &str = "Use s3://bucket or s3://bucket/prefix (bucket: 3 to 63 characters of \
     a-z, 0-9, '.' and '-'), or file:///absolute/path.";

/// A parsed storage location. The prefix and root are normalised: no leading
/// or trailing slash in an S3 prefix, no `.`, `..` or empty segment anywhere.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StorageUrl {
    S3 {
        bucket: String,
        /// Empty for the bucket's root, else segments joined with `/`.
        prefix: String,
    },
    File {
        /// An absolute directory, never `/` itself.
        root: PathBuf,
    },
}

impl StorageUrl {
    pub fn parse(text: &str) -> Result<StorageUrl, RequestError> {
        if let Some(rest) = text.strip_prefix("s3://") {
            return parse_s3(text, rest);
        }
        if let Some(rest) = text.strip_prefix("file://") {
            return parse_file(text, rest);
        }
        Err(RequestError::invalid(
            format!("storage URL {} has no supported scheme", quoted(text)),
            URL_HINT,
        ))
    }

    pub fn is_s3(&self) -> bool {
        matches!(self, StorageUrl::S3 { .. })
    }
}

/// The canonical form, which [`StorageUrl::parse`] reads back unchanged.
impl fmt::Display for StorageUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StorageUrl::S3 { bucket, prefix } if prefix.is_empty() => write!(f, "s3://{bucket}"),
            StorageUrl::S3 { bucket, prefix } => write!(f, "s3://{bucket}/{prefix}"),
            StorageUrl::File { root } => write!(f, "file://{}", root.display()),
        }
    }
}

fn parse_s3(text: &str, rest: &str) -> Result<StorageUrl, RequestError> {
    let (bucket, prefix) = match rest.split_once('/') {
        Some((bucket, prefix)) => (bucket, prefix.strip_suffix('/').unwrap_or(prefix)),
        None => (rest, ""),
    };
    check_bucket(text, bucket)?;
    if !prefix.is_empty() {
        for segment in prefix.split('/') {
            check_segment(segment).map_err(|problem| {
                RequestError::invalid(
                    format!("storage URL {} has a bad prefix: {problem}", quoted(text)),
                    "Write the prefix as folder names separated by single slashes, without \
                     '.', '..' or control characters, e.g. s3://bucket/backups/prod.",
                )
            })?;
        }
    }
    Ok(StorageUrl::S3 {
        bucket: bucket.to_string(),
        prefix: prefix.to_string(),
    })
}

fn check_bucket(text: &str, bucket: &str) -> Result<(), RequestError> {
    let chars_ok = bucket
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'-');
    let ends_ok = |b: Option<&u8>| b.is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
    if (3..=63).contains(&bucket.len())
        && chars_ok
        && ends_ok(bucket.as_bytes().first())
        && ends_ok(bucket.as_bytes().last())
    {
        return Ok(());
    }
    Err(RequestError::invalid(
        format!(
            "storage URL {} names the bucket {}, which is not a valid bucket name",
            quoted(text),
            quoted(bucket)
        ),
        "A bucket name has 3 to 63 characters of a-z, 0-9, '.' and '-', and starts and ends \
         with a letter or digit.",
    ))
}

/// Why one `/`-separated segment of a prefix, root or key is refused, if it is.
/// These are also the rules object_store applies to its paths.
fn check_segment(segment: &str) -> Result<(), String> {
    if segment.is_empty() {
        return Err("it has an empty segment (two slashes in a row, or a leading slash)".into());
    }
    if segment == "." || segment == ".." {
        return Err(format!("it has a {} segment", quoted(segment)));
    }
    if segment.chars().any(|c| c.is_control()) {
        return Err("it contains a control character".into());
    }
    Ok(())
}

fn parse_file(text: &str, rest: &str) -> Result<StorageUrl, RequestError> {
    let Some(path) = rest.strip_prefix('/') else {
        return Err(RequestError::invalid(
            format!(
                "storage URL {} has a host part; file URLs name a local absolute path",
                quoted(text)
            ),
            "Write file:///absolute/path (three slashes).",
        ));
    };
    if let Some(c) = path.chars().find(|c| matches!(c, '%' | '?' | '#')) {
        return Err(RequestError::invalid(
            format!(
                "storage URL {} contains {}, which file URLs do not take literally",
                quoted(text),
                quoted(&c.to_string())
            ),
            "Write the directory as it is named on disk, without '%', '?' or '#'.",
        ));
    }
    let mut root = PathBuf::from("/");
    for segment in path.split('/') {
        // Repeated slashes and "." name the same directory; ".." would not.
        if segment.is_empty() || segment == "." {
            continue;
        }
        check_segment(segment).map_err(|problem| {
            RequestError::invalid(
                format!("storage URL {} is not usable: {problem}", quoted(text)),
                "Write file:///absolute/path with no '..' segments and no control characters.",
            )
        })?;
        root.push(segment);
    }
    if root == Path::new("/") {
        return Err(RequestError::invalid(
            format!("storage URL {} names the root directory", quoted(text)),
            "Name a directory below it, e.g. file:///var/backups/postgres.",
        ));
    }
    Ok(StorageUrl::File { root })
}

/// Checks an object key: a relative path of non-empty segments without `.` or
/// `..` (so it can neither leave the store's prefix nor its root directory).
pub(crate) fn check_key(key: &str) -> Result<(), RequestError> {
    let hint = "Keys are relative paths such as db/2026-11-29/base.dump: no leading or trailing \
                slash, no '.', '..' or empty segments, no control characters.";
    if key.is_empty() {
        return Err(RequestError::invalid("the object key is empty", hint));
    }
    for segment in key.split('/') {
        check_segment(segment).map_err(|problem| {
            RequestError::invalid(
                format!("object key {} is not usable: {problem}", quoted(key)),
                hint,
            )
        })?;
    }
    Ok(())
}

/// Checks a listing prefix: empty (everything) or a key, optionally with a
/// trailing slash. Returns it without the slash.
pub(crate) fn check_list_prefix(prefix: &str) -> Result<&str, RequestError> {
    if prefix.is_empty() {
        return Ok("");
    }
    match prefix.strip_suffix('/') {
        Some(trimmed) if !trimmed.is_empty() => check_key(trimmed).map(|()| trimmed),
        _ => check_key(prefix).map(|()| prefix),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorKind;

    fn s3(bucket: &str, prefix: &str) -> StorageUrl {
        StorageUrl::S3 {
            bucket: bucket.into(),
            prefix: prefix.into(),
        }
    }

    #[test]
    fn s3_urls() {
        assert_eq!(StorageUrl::parse("s3://abc").unwrap(), s3("abc", ""));
        assert_eq!(StorageUrl::parse("s3://abc/").unwrap(), s3("abc", ""));
        assert_eq!(
            StorageUrl::parse("s3://my.bucket-1/a/b c/d").unwrap(),
            s3("my.bucket-1", "a/b c/d")
        );
        assert_eq!(
            StorageUrl::parse("s3://abc/x/y/").unwrap(),
            s3("abc", "x/y")
        );
        let b63 = "b".repeat(63);
        assert_eq!(
            StorageUrl::parse(&format!("s3://{b63}/p")).unwrap(),
            s3(&b63, "p")
        );
        for url in ["s3://abc", "s3://abc/x/y"] {
            assert_eq!(StorageUrl::parse(url).unwrap().to_string(), url);
        }
    }

    #[test]
    fn bad_s3_urls() {
        for url in [
            "s3://",
            "s3://ab",
            "s3://Abc",
            "s3://ab_c",
            &format!("s3://{}", "b".repeat(64)),
            "s3://-abc",
            "s3://abc-",
            "s3:///abc",
            "s3://abc//x",
            "s3://abc/x//y",
            "s3://abc/x/../y",
            "s3://abc/./y",
            "s3://abc/..",
            "s3://abc/x\ny",
            "S3://abc",
            "s3:/abc",
        ] {
            let e = StorageUrl::parse(url).unwrap_err();
            assert_eq!(e.kind, ErrorKind::InvalidParameter, "{url}");
            assert!(e.message.contains(&quoted(url)), "{url}: {}", e.message);
        }
        let e = StorageUrl::parse("s3://Abc/x").unwrap_err();
        assert!(e.message.contains("\"Abc\""), "{}", e.message);
    }

    #[test]
    fn file_urls() {
        let f = |p: &str| StorageUrl::File { root: p.into() };
        assert_eq!(StorageUrl::parse("file:///var/b").unwrap(), f("/var/b"));
        assert_eq!(
            StorageUrl::parse("file:///var//b/./c/").unwrap(),
            f("/var/b/c")
        );
        assert_eq!(
            StorageUrl::parse("file:///var/b c").unwrap().to_string(),
            "file:///var/b c"
        );
        for url in [
            "file://",
            "file:///",
            "file:////",
            "file://host/x",
            "file://localhost/x",
            "file:relative",
            "file:///a/../b",
            "file:///a/..",
            "file:///a%20b",
            "file:///a?b",
            "file:///a#b",
            "file:///a\u{0}b",
        ] {
            let e = StorageUrl::parse(url).unwrap_err();
            assert_eq!(e.kind, ErrorKind::InvalidParameter, "{url}");
            assert!(e.message.contains(&quoted(url)), "{url}: {}", e.message);
        }
    }

    #[test]
    fn other_schemes_list_both() {
        for url in ["", "http://x", "/var/backups", "gs://bucket", "s3"] {
            let e = StorageUrl::parse(url).unwrap_err();
            assert!(
                e.hint.contains("s3://") && e.hint.contains("file:///"),
                "{e:?}"
            );
        }
    }

    #[test]
    fn keys() {
        for key in ["a", "a/b.dump", "db/2026-11-29T03:15:00Z/x y", "..a/b.."] {
            check_key(key).unwrap();
        }
        for key in [
            "", "/a", "a/", "a//b", "../a", "a/..", "./a", "a/./b", "a\tb",
        ] {
            let e = check_key(key).unwrap_err();
            assert_eq!(e.kind, ErrorKind::InvalidParameter, "{key:?}");
        }
        assert_eq!(check_list_prefix("").unwrap(), "");
        assert_eq!(check_list_prefix("a/").unwrap(), "a");
        assert_eq!(check_list_prefix("a/b").unwrap(), "a/b");
        assert!(check_list_prefix("/").is_err());
        assert!(check_list_prefix("../").is_err());
    }
}
