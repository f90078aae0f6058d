//! Encryption at rest with age (X25519 recipients): a backup is encrypted between the dump
//! tool's stdout and its sink, and decrypted between the stored bytes and the restoring tool,
//! so no plaintext byte of an encrypted backup is ever written anywhere.
//!
//! The identity (private key) is read from its file each time it is needed and never kept,
//! copied or quoted in a message.

use std::io::{self, Read, Write};
use std::path::Path;
use std::str::FromStr;
use std::thread::JoinHandle;

use sha2::{Digest, Sha256};

use crate::error::RequestError;
use crate::process::stream::spawn_signal_free;

/// What is appended to the name of an encrypted backup (file and object key).
pub const ENCRYPTED_SUFFIX: &str = ".age";

/// The first bytes of every age file.
pub const AGE_MAGIC: &[u8] = b"age-encryption.org/v1\n";

/// The setting naming the identity file, for hints.
pub const IDENTITY_SETTING: &str = "backup_ext.identity_file";

/// Checks a list of recipients (`age1…` X25519 public keys); returns them trimmed.
pub fn validate_recipients(recipients: &[String]) -> Result<Vec<String>, RequestError> {
    let mut out: Vec<String> = Vec::with_capacity(recipients.len());
    for r in recipients {
        let r = r.trim();
        if age::x25519::Recipient::from_str(r).is_err() {
            return Err(RequestError::invalid(
                format!("{r:?} is not an age X25519 recipient"),
                "Recipients are public keys of the form age1… (61 characters), as printed by \
                 age-keygen -y key.txt; SSH keys, passphrases and plugins are not supported.",
            ));
        }
        if out.iter().any(|o| o == r) {
            return Err(RequestError::invalid(
                format!("recipient {r} is listed more than once"),
                "Name each recipient once.",
            ));
        }
        out.push(r.to_string());
    }
    Ok(out)
}

/// A recipient's fingerprint, recorded with each backup: the first 16 hex digits of the
/// SHA-256 of its `age1…` text.
pub fn fingerprint(recipient: &str) -> String {
    hex::encode(Sha256::digest(recipient.trim().as_bytes()))[..16].to_string()
}

/// `recipients` as age recipients; the list must be non-empty and valid.
fn parse(recipients: &[String]) -> io::Result<Vec<age::x25519::Recipient>> {
    let parsed = recipients
        .iter()
        .map(|r| age::x25519::Recipient::from_str(r.trim()))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e.to_string()))?;
    if parsed.is_empty() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "no recipients to encrypt to",
        ));
    }
    Ok(parsed)
}

/// Encrypts `input` to `recipients` into `output`, finishing the age stream at the end.
pub fn encrypt_into(
    recipients: &[String],
    mut input: impl Read,
    output: impl Write,
) -> io::Result<u64> {
    let parsed = parse(recipients)?;
    let encryptor =
        age::Encryptor::with_recipients(parsed.iter().map(|r| r as &dyn age::Recipient))
            .map_err(|e| io::Error::other(format!("cannot encrypt: {e}")))?;
    let mut writer = encryptor.wrap_output(output)?;
    let n = io::copy(&mut input, &mut writer)?;
    writer.finish()?.flush()?;
    Ok(n)
}

/// A reader of the age encryption of `input`: a thread encrypts into a pipe. An error of that
/// thread (reading `input` or encrypting) is returned at the end of the pipe, so a sink never
/// mistakes a cut-off stream for a whole one.
pub fn encrypting_reader(
    recipients: &[String],
    input: impl Read + Send + 'static,
) -> io::Result<EncryptingReader> {
    parse(recipients)?;
    let recipients = recipients.to_vec();
    let (pipe, writer) = io::pipe()?;
    let thread = spawn_signal_free("backup_ext encrypt", move || {
        encrypt_into(&recipients, input, writer).map(|_| ())
    })?;
    Ok(EncryptingReader {
        pipe,
        thread: Some(thread),
    })
}

pub struct EncryptingReader {
    pipe: io::PipeReader,
    thread: Option<JoinHandle<io::Result<()>>>,
}

impl Read for EncryptingReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.pipe.read(buf)?;
        if n == 0 && !buf.is_empty() {
            if let Some(t) = self.thread.take() {
                t.join()
                    .map_err(|_| io::Error::other("the encryption thread panicked"))??;
            }
        }
        Ok(n)
    }
}

/// Why an encrypted backup cannot be read; the messages never quote the identity.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecryptFailure {
    #[error("the backup is encrypted and backup_ext.identity_file is not set")]
    NoIdentity,
    #[error("cannot read the identity file named by backup_ext.identity_file: {0}")]
    IdentityUnreadable(String),
    #[error("the identity file named by backup_ext.identity_file holds no age identity")]
    NoIdentityInFile,
    #[error("no identity in backup_ext.identity_file can decrypt {0}: it was encrypted to other recipients")]
    WrongIdentity(String),
    #[error("{0} is not an intact age file: {1}")]
    Damaged(String, String),
}

impl DecryptFailure {
    pub fn hint(&self) -> &'static str {
        match self {
            DecryptFailure::NoIdentity
            | DecryptFailure::IdentityUnreadable(_)
            | DecryptFailure::NoIdentityInFile => {
                "Set backup_ext.identity_file to an age identity file (age-keygen -o FILE) \
                 readable by the server's operating-system user, then SELECT pg_reload_conf();"
            }
            DecryptFailure::WrongIdentity(_) => {
                "Add the identity of one of the backup's recipients (see recipients in \
                 backup_ext.backups) to the file named by backup_ext.identity_file; it may hold \
                 several keys."
            }
            DecryptFailure::Damaged(..) => {
                "The stored bytes were cut short or changed; restore another backup \
                 (backup_ext.identity_file is not the cause)."
            }
        }
    }
}

/// The parsed identity file named by `identity_file`.
fn read_identity_file(
    identity_file: Option<&Path>,
) -> Result<age::IdentityFile<age::NoCallbacks>, DecryptFailure> {
    let path = identity_file
        .filter(|p| !p.as_os_str().is_empty())
        .ok_or(DecryptFailure::NoIdentity)?;
    // Read here so that an unreadable file is told apart from a file with no identity.
    let bytes = std::fs::read(path).map_err(|e| {
        DecryptFailure::IdentityUnreadable(format!("{}: {}", path.display(), e.kind()))
    })?;
    age::IdentityFile::from_buffer(&bytes[..]).map_err(|_| DecryptFailure::NoIdentityInFile)
}

/// The identities in `identity_file`.
pub fn read_identities(
    identity_file: Option<&Path>,
) -> Result<Vec<Box<dyn age::Identity + Send + Sync>>, DecryptFailure> {
    identities_of(read_identity_file(identity_file)?)
}

fn identities_of(
    file: age::IdentityFile<age::NoCallbacks>,
) -> Result<Vec<Box<dyn age::Identity + Send + Sync>>, DecryptFailure> {
    let ids = file
        .into_identities()
        .map_err(|_| DecryptFailure::NoIdentityInFile)?;
    if ids.is_empty() {
        return Err(DecryptFailure::NoIdentityInFile);
    }
    Ok(ids)
}

/// A reader of the plaintext of the age file `input` (`what` names it in messages). The
/// header is read and the file key unwrapped here, so a wrong identity fails now; damage
/// further on fails the read that reaches it.
pub fn decrypting_reader(
    input: Box<dyn Read + Send>,
    identity_file: Option<&Path>,
    what: &str,
) -> Result<Box<dyn Read + Send>, DecryptFailure> {
    let ids = read_identities(identity_file)?;
    let damaged = |e: &dyn std::fmt::Display| DecryptFailure::Damaged(what.into(), e.to_string());
    let decryptor = age::Decryptor::new(input).map_err(|e| damaged(&e))?;
    let reader = decryptor
        .decrypt(ids.iter().map(|i| i.as_ref() as &dyn age::Identity))
        .map_err(|e| match e {
            age::DecryptError::NoMatchingKeys => DecryptFailure::WrongIdentity(what.into()),
            other => damaged(&other),
        })?;
    Ok(Box::new(DamageNamed {
        inner: reader,
        what: what.into(),
    }))
}

/// Read errors of a decrypting reader name the backup and say what they mean.
struct DamageNamed<R> {
    inner: R,
    what: String,
}

impl<R: Read> Read for DamageNamed<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.inner.read(buf).map_err(|e| {
            if e.kind() == io::ErrorKind::InvalidData || e.kind() == io::ErrorKind::UnexpectedEof {
                io::Error::new(
                    io::ErrorKind::InvalidData,
                    DecryptFailure::Damaged(self.what.clone(), e.to_string()).to_string(),
                )
            } else {
                e
            }
        })
    }
}

impl From<DecryptFailure> for RequestError {
    fn from(f: DecryptFailure) -> RequestError {
        use crate::error::ErrorKind;
        let kind = match &f {
            DecryptFailure::NoIdentity
            | DecryptFailure::IdentityUnreadable(_)
            | DecryptFailure::NoIdentityInFile => ErrorKind::ConfigFile,
            DecryptFailure::WrongIdentity(_) => ErrorKind::InvalidAuthorization,
            DecryptFailure::Damaged(..) => ErrorKind::DataCorrupted,
        };
        RequestError::new(kind, f.to_string(), f.hint())
    }
}

/// The refusal of a directory-format backup while encryption is on.
pub fn directory_refused() -> RequestError {
    RequestError::unsupported(
        "directory-format backups cannot be encrypted",
        "Use format 'custom' (or 'plain' or 'tar'), which is encrypted while it streams, or \
         turn encryption off for this database with backup_ext.set_encryption(NULL, dbname => …).",
    )
}

pub mod check;

#[cfg(test)]
mod tests;
