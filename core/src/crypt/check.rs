//! What `check_encryption()` reports: whether the identity file opens a message encrypted to
//! a recipient, and which recipients' keys it holds. Nothing here quotes the identity.

use std::io::Read;
use std::path::Path;

use super::{decrypting_reader, encrypt_into, fingerprint, DecryptFailure};

/// The text encrypted and read back for each recipient.
const PROBE: &[u8] = b"backup_ext check_encryption probe\n";

/// The identity file, read once, and the public keys of its identities.
pub struct IdentityCheck {
    identity_file: std::path::PathBuf,
    /// Fingerprints (`fingerprint()`) of the recipients of the identities in the file.
    held: Vec<(String, String)>,
}

impl IdentityCheck {
    /// Reads the identity file; a missing setting, an unreadable file or one holding no age
    /// identity is an error naming `backup_ext.identity_file`.
    pub fn load(identity_file: Option<&Path>) -> Result<IdentityCheck, DecryptFailure> {
        let file = super::read_identity_file(identity_file)?;
        let mut public = Vec::new();
        // Plugin identities have no public key here; they are still tried when decrypting.
        let _ = file.write_recipients_file(&mut public);
        let held = String::from_utf8_lossy(&public)
            .lines()
            .map(|r| (fingerprint(r), r.trim().to_string()))
            .collect();
        super::identities_of(file)?;
        Ok(IdentityCheck {
            identity_file: identity_file.unwrap_or(Path::new("")).to_path_buf(),
            held,
        })
    }

    /// Whether a message encrypted to `recipient` alone is opened by the identity file: `Ok`
    /// when it is, else why not.
    pub fn opens(&self, recipient: &str) -> Result<(), String> {
        let mut sealed = Vec::new();
        encrypt_into(&[recipient.to_string()], PROBE, &mut sealed)
            .map_err(|e| format!("cannot encrypt to this recipient: {e}"))?;
        let mut reader = decrypting_reader(
            Box::new(std::io::Cursor::new(sealed)),
            Some(&self.identity_file),
            "a test message",
        )
        .map_err(|e| match e {
            DecryptFailure::WrongIdentity(_) => {
                "no identity in backup_ext.identity_file is this recipient's key".to_string()
            }
            other => other.to_string(),
        })?;
        let mut plain = Vec::new();
        reader
            .read_to_end(&mut plain)
            .map_err(|e| format!("the test message does not read back: {e}"))?;
        if plain != PROBE {
            return Err("the test message reads back different".into());
        }
        Ok(())
    }

    /// The recipient (`age1…`) of an identity in the file whose fingerprint is `fingerprint`.
    pub fn recipient_of(&self, fingerprint: &str) -> Option<&str> {
        self.held
            .iter()
            .find(|(f, _)| f == fingerprint)
            .map(|(_, r)| r.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::TempDir;
    use age::secrecy::ExposeSecret;

    fn key_file(dir: &TempDir, name: &str) -> (std::path::PathBuf, String) {
        let id = age::x25519::Identity::generate();
        let path = dir.path().join(name);
        std::fs::write(
            &path,
            format!("# test\n{}\n", id.to_string().expose_secret()),
        )
        .unwrap();
        (path, id.to_public().to_string())
    }

    #[test]
    fn the_identity_opens_its_own_recipient_only() {
        let dir = TempDir::new("check-encryption");
        let (path, own) = key_file(&dir, "key.txt");
        let (_, other) = key_file(&dir, "other.txt");
        let check = IdentityCheck::load(Some(&path)).unwrap();
        assert_eq!(check.opens(&own), Ok(()));
        assert_eq!(
            check.opens(&other).unwrap_err(),
            "no identity in backup_ext.identity_file is this recipient's key"
        );
        assert_eq!(check.recipient_of(&fingerprint(&own)), Some(own.as_str()));
        assert_eq!(check.recipient_of(&fingerprint(&other)), None);
    }

    #[test]
    fn missing_unreadable_and_foreign_files_are_refused() {
        let dir = TempDir::new("check-encryption-bad");
        assert_eq!(
            IdentityCheck::load(None).err(),
            Some(DecryptFailure::NoIdentity)
        );
        let missing = dir.path().join("missing.txt");
        assert!(matches!(
            IdentityCheck::load(Some(&missing)).err(),
            Some(DecryptFailure::IdentityUnreadable(m)) if m.ends_with("missing.txt: entity not found")
        ));
        let junk = dir.path().join("junk.txt");
        std::fs::write(&junk, "not a key\n").unwrap();
        assert_eq!(
            IdentityCheck::load(Some(&junk)).err(),
            Some(DecryptFailure::NoIdentityInFile)
        );
    }
}
