//! S3 credentials from an AWS shared-credentials file (INI), kept out of
//! every message, hint and `Debug` output.

use crate::error::{quoted, ErrorKind, RequestError};
use std::fmt;
use std::path::Path;

/// The server setting naming the credentials file.
pub const CREDENTIALS_FILE_SETTING: &str = "backup_ext.s3_credentials_file";

#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    access_key_id: String,
    secret_access_key: String,
    session_token: Option<String>,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("access_key_id", &"<redacted>")
            .field("secret_access_key", &"<redacted>")
            .field(
                "session_token",
                &self.session_token.as_ref().map(|_| "<redacted>"),
            )
            .finish()
    }
}

fn config_error(message: String, hint: String) -> RequestError {
    RequestError::new(ErrorKind::ConfigFile, message, hint)
}

impl Credentials {
    pub fn new(
        access_key_id: impl Into<String>,
        secret_access_key: impl Into<String>,
        session_token: Option<String>,
    ) -> Credentials {
        Credentials {
            access_key_id: access_key_id.into(),
            secret_access_key: secret_access_key.into(),
            session_token,
        }
    }

    pub(crate) fn access_key_id(&self) -> &str {
        &self.access_key_id
    }

    pub(crate) fn secret_access_key(&self) -> &str {
        &self.secret_access_key
    }

    pub(crate) fn session_token(&self) -> Option<&str> {
        self.session_token.as_deref()
    }

    /// The values that must never appear in text shown to anyone.
    pub(crate) fn secrets(&self) -> Vec<String> {
        // The key id is not secret in AWS's sense, but nothing outside the credentials file
        // needs it either.
        let mut secrets = vec![self.secret_access_key.clone(), self.access_key_id.clone()];
        secrets.extend(self.session_token.clone());
        secrets
    }

    /// Reads `[profile]` from an AWS shared-credentials file: the keys
    /// `aws_access_key_id`, `aws_secret_access_key` and, optionally,
    /// `aws_session_token`. Comments (`#`, `;`), blank lines and other keys are
    /// ignored; a section given twice is merged, later values winning.
    pub fn from_file(path: &Path, profile: &str) -> Result<Credentials, RequestError> {
        let shown = quoted(&path.display().to_string());
        let text = std::fs::read_to_string(path).map_err(|e| {
            let problem = match e.kind() {
                std::io::ErrorKind::NotFound => "does not exist".to_string(),
                std::io::ErrorKind::InvalidData => "is not UTF-8 text".to_string(),
                _ => format!("cannot be read: {e}"),
            };
            config_error(
                format!("S3 credentials file {shown} {problem}"),
                format!(
                    "Create it, readable by the server's operating-system user, or point \
                     {CREDENTIALS_FILE_SETTING} at the right file."
                ),
            )
        })?;
        let mut in_profile = false;
        let mut found_profile = false;
        let mut access = None;
        let mut secret = None;
        let mut token = None;
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
                continue;
            }
            if let Some(section) = line.strip_prefix('[') {
                let Some(name) = section.strip_suffix(']') else {
                    return Err(line_error(&shown, n));
                };
                in_profile = name.trim() == profile;
                found_profile |= in_profile;
                continue;
            }
            // Lines are never quoted back: any of them may hold a secret.
            let Some((key, value)) = line.split_once('=') else {
                return Err(line_error(&shown, n));
            };
            if !in_profile {
                continue;
            }
            let value = value.trim();
            let value = (!value.is_empty()).then(|| value.to_string());
            match key.trim().to_ascii_lowercase().as_str() {
                "aws_access_key_id" => access = value,
                "aws_secret_access_key" => secret = value,
                "aws_session_token" => token = value,
                _ => {}
            }
        }
        let missing_hint = format!(
            "Add a [{profile}] section with aws_access_key_id and aws_secret_access_key to \
             {shown}, or choose another \"profile\" in the storage options."
        );
        if !found_profile {
            return Err(config_error(
                format!(
                    "S3 credentials file {shown} has no profile {}",
                    quoted(profile)
                ),
                missing_hint,
            ));
        }
        let (Some(access_key_id), Some(secret_access_key)) = (access.clone(), secret.clone())
        else {
            let key = if access.is_none() {
                "aws_access_key_id"
            } else {
                "aws_secret_access_key"
            };
            return Err(config_error(
                format!(
                    "profile {} in S3 credentials file {shown} has no {key}",
                    quoted(profile)
                ),
                missing_hint,
            ));
        };
        Ok(Credentials {
            access_key_id,
            secret_access_key,
            session_token: token,
        })
    }
}

fn line_error(shown: &str, n: usize) -> RequestError {
    config_error(
        format!(
            "line {} of S3 credentials file {shown} is neither a [section], a comment nor \
             key = value",
            n + 1
        ),
        "Fix that line; the file has the format of ~/.aws/credentials.".into(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::TempDir;

    const FILE: &str = "\
# a comment
; another
[default]
aws_access_key_id = AKIDDEFAULT
aws_secret_access_key=SECRETDEFAULT

  [backups]
  aws_access_key_id   =   AKIDBACKUPS  \n\
region = eu-west-1
aws_secret_access_key = SECRET/with+chars=
aws_session_token = TOKENVALUE
[only_key]
aws_access_key_id = AKIDONLY
[empty_secret]
aws_access_key_id = AKIDE
aws_secret_access_key =
";

    fn write(dir: &TempDir, text: &str) -> std::path::PathBuf {
        let path = dir.path().join("credentials");
        std::fs::write(&path, text).unwrap();
        path
    }

    #[test]
    fn reads_profiles() {
        let dir = TempDir::new("credentials");
        let path = write(&dir, FILE);
        let c = Credentials::from_file(&path, "default").unwrap();
        assert_eq!(c.access_key_id(), "AKIDDEFAULT");
        assert_eq!(c.secret_access_key(), "SECRETDEFAULT");
        assert_eq!(c.session_token(), None);
        let c = Credentials::from_file(&path, "backups").unwrap();
        assert_eq!(c.access_key_id(), "AKIDBACKUPS");
        assert_eq!(c.secret_access_key(), "SECRET/with+chars=");
        assert_eq!(c.session_token(), Some("TOKENVALUE"));
    }

    #[test]
    fn debug_redacts() {
        let c = Credentials::new("AKID", "SECRET", Some("TOKEN".into()));
        let shown = format!("{c:?} {c:#?}");
        for secret in ["AKID", "SECRET", "TOKEN"] {
            assert!(!shown.contains(secret), "{shown}");
        }
        assert!(shown.contains("redacted"));
    }

    #[test]
    fn missing_things() {
        let dir = TempDir::new("credentials");
        let path = write(&dir, FILE);
        let missing = dir.path().join("nope");
        let e = Credentials::from_file(&missing, "default").unwrap_err();
        assert_eq!(e.kind, ErrorKind::ConfigFile);
        assert!(e.message.contains(&missing.display().to_string()), "{e:?}");
        assert!(e.hint.contains(CREDENTIALS_FILE_SETTING), "{e:?}");

        for (profile, needle) in [
            ("prod", "no profile \"prod\""),
            ("only_key", "has no aws_secret_access_key"),
            ("empty_secret", "has no aws_secret_access_key"),
        ] {
            let e = Credentials::from_file(&path, profile).unwrap_err();
            assert_eq!(e.kind, ErrorKind::ConfigFile);
            assert!(e.message.contains(needle), "{e:?}");
            assert!(e.message.contains(&quoted(profile)), "{e:?}");
            assert!(e.hint.contains(&format!("[{profile}]")), "{e:?}");
            let shown = format!("{e:?}");
            assert!(
                !shown.contains("AKID") && !shown.contains("SECRET"),
                "{shown}"
            );
        }
    }

    #[test]
    fn bad_lines_are_not_quoted() {
        let dir = TempDir::new("credentials");
        for text in [
            "[default]\naws_access_key_id = A\nSECRETLINE\n",
            "[default\nSECRETLINE = 1\n",
        ] {
            let path = write(&dir, text);
            let e = Credentials::from_file(&path, "default").unwrap_err();
            assert_eq!(e.kind, ErrorKind::ConfigFile);
            assert!(e.message.contains("line "), "{e:?}");
            assert!(!format!("{e:?}").contains("SECRETLINE"), "{e:?}");
        }
        let path = dir.path().join("binary");
        std::fs::write(&path, b"[default]\n\xff\xfe SECRET").unwrap();
        let e = Credentials::from_file(&path, "default").unwrap_err();
        assert!(!format!("{e:?}").contains("SECRET"), "{e:?}");
    }

    #[test]
    fn unreadable_is_a_config_error() {
        let dir = TempDir::new("credentials");
        // A directory cannot be read as a file, even by root.
        let e = Credentials::from_file(dir.path(), "default").unwrap_err();
        assert_eq!(e.kind, ErrorKind::ConfigFile);
        assert!(e.message.contains("cannot be read"), "{e:?}");
    }
}
