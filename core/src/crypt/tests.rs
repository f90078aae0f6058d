use super::*;
use crate::test_support::TempDir;
use std::fs;

fn key(dir: &TempDir, name: &str) -> (String, std::path::PathBuf) {
    use age::secrecy::ExposeSecret;
    let id = age::x25519::Identity::generate();
    let path = dir.path().join(name);
    fs::write(
        &path,
        format!("# a key\n{}\n", id.to_string().expose_secret()),
    )
    .unwrap();
    (id.to_public().to_string(), path)
}

fn encrypt(recipients: &[String], plain: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    encrypting_reader(recipients, io::Cursor::new(plain.to_vec()))
        .unwrap()
        .read_to_end(&mut out)
        .unwrap();
    out
}

fn decrypt(cipher: &[u8], identity: &Path) -> Result<Vec<u8>, String> {
    let mut r = decrypting_reader(
        Box::new(io::Cursor::new(cipher.to_vec())),
        Some(identity),
        "b",
    )
    .map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    r.read_to_end(&mut out).map_err(|e| e.to_string())?;
    Ok(out)
}

#[test]
fn a_round_trip_gives_the_bytes_back_and_stores_no_plaintext() {
    let dir = TempDir::new("crypt-round");
    let (recipient, identity) = key(&dir, "k.txt");
    let plain: Vec<u8> = b"PGDMP"
        .iter()
        .copied()
        .chain((0..2_000_000u32).map(|i| (i % 253) as u8))
        .collect();
    let cipher = encrypt(std::slice::from_ref(&recipient), &plain);
    assert!(cipher.starts_with(AGE_MAGIC));
    assert!(!cipher.windows(5).any(|w| w == b"PGDMP"));
    assert_eq!(decrypt(&cipher, &identity).unwrap(), plain);
}

#[test]
fn a_file_with_several_keys_opens_backups_of_each() {
    let dir = TempDir::new("crypt-rotate");
    let (old, old_id) = key(&dir, "old.txt");
    let (new, new_id) = key(&dir, "new.txt");
    let both = dir.path().join("both.txt");
    let text = fs::read_to_string(&old_id).unwrap() + &fs::read_to_string(&new_id).unwrap();
    fs::write(&both, text).unwrap();
    assert_eq!(decrypt(&encrypt(&[old], b"one"), &both).unwrap(), b"one");
    assert_eq!(
        decrypt(&encrypt(std::slice::from_ref(&new), b"two"), &both).unwrap(),
        b"two"
    );
    assert!(decrypt(&encrypt(&[new], b"two"), &old_id)
        .unwrap_err()
        .starts_with("no identity in backup_ext.identity_file can decrypt b"));
}

#[test]
fn a_wrong_missing_or_empty_identity_is_told_apart_and_never_quoted() {
    let dir = TempDir::new("crypt-wrong");
    let (recipient, _) = key(&dir, "right.txt");
    let (_, wrong) = key(&dir, "wrong.txt");
    let cipher = encrypt(&[recipient], b"secret rows");
    let secret = fs::read_to_string(&wrong).unwrap();
    let e = decrypt(&cipher, &wrong).unwrap_err();
    assert_eq!(
        e,
        "no identity in backup_ext.identity_file can decrypt b: it was encrypted to other recipients"
    );
    assert!(!e.contains(secret.lines().nth(1).unwrap()));
    let e = decrypt(&cipher, &dir.path().join("none.txt")).unwrap_err();
    assert!(
        e.starts_with("cannot read the identity file named by backup_ext.identity_file: "),
        "{e}"
    );
    let junk = dir.path().join("junk.txt");
    fs::write(&junk, "not a key\n").unwrap();
    assert_eq!(
        decrypt(&cipher, &junk).unwrap_err(),
        "the identity file named by backup_ext.identity_file holds no age identity"
    );
    let none = decrypting_reader(Box::new(io::Cursor::new(cipher)), None, "b").err();
    assert_eq!(none, Some(DecryptFailure::NoIdentity));
}

#[test]
fn a_truncated_or_changed_ciphertext_fails_and_never_ends_early() {
    let dir = TempDir::new("crypt-cut");
    let (recipient, identity) = key(&dir, "k.txt");
    let plain: Vec<u8> = (0..300_000u32).map(|i| (i % 7) as u8).collect();
    let cipher = encrypt(&[recipient], &plain);
    let cut = &cipher[..cipher.len() - 1000];
    assert!(decrypt(cut, &identity)
        .unwrap_err()
        .starts_with("b is not an intact age file: "));
    let mut changed = cipher.clone();
    let mid = changed.len() / 2;
    changed[mid] ^= 1;
    assert!(decrypt(&changed, &identity)
        .unwrap_err()
        .starts_with("b is not an intact age file: "));
    assert!(decrypt(b"PGDMP plain", &identity)
        .unwrap_err()
        .starts_with("b is not an intact age file: "));
}

#[test]
fn recipients_are_checked() {
    let id = age::x25519::Identity::generate().to_public().to_string();
    assert_eq!(
        validate_recipients(&[format!(" {id} ")]).unwrap(),
        vec![id.clone()]
    );
    let e = validate_recipients(&["age1nope".into()]).unwrap_err();
    assert_eq!(e.message, "\"age1nope\" is not an age X25519 recipient");
    assert!(validate_recipients(&[id.clone(), id.clone()]).is_err());
    assert_eq!(fingerprint(&id).len(), 16);
}
