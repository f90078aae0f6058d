//! age keys for tests, made by the stock `age-keygen` (Debian package `age`).

use std::path::{Path, PathBuf};
use std::process::Command;

use sha2::{Digest, Sha256};

use crate::process::{check_output, chown_postgres};

/// A fresh age key in `dir/name` (readable by the server only), and its recipient.
pub fn keygen(dir: &Path, name: &str) -> (PathBuf, String) {
    let path = dir.join(name);
    let out = Command::new("age-keygen")
        .arg("-o")
        .arg(&path)
        .output()
        .expect("age-keygen (Debian package age)");
    check_output("age-keygen", &out);
    let out = Command::new("age-keygen")
        .arg("-y")
        .arg(&path)
        .output()
        .unwrap();
    check_output("age-keygen -y", &out);
    chown_postgres(&path);
    (
        path,
        String::from_utf8(out.stdout).unwrap().trim().to_string(),
    )
}

/// A recipient's fingerprint as the catalog records it: 16 hex digits of its SHA-256.
pub fn fingerprint(recipient: &str) -> String {
    hex::encode(Sha256::digest(recipient.as_bytes()))[..16].to_string()
}

/// Points `c` at `s3` (its credentials file, and the storage target `offsite` for the bucket)
/// and at a fresh age identity in `<cluster>/keys`: the key's path and its recipient.
pub fn encrypted_offsite(c: &crate::Cluster, s3: &crate::Seaweed) -> (PathBuf, String) {
    let keys = c.root.join("keys");
    std::fs::create_dir(&keys).unwrap();
    chown_postgres(&keys);
    let (key, recipient) = keygen(&keys, "key.txt");
    c.set_and_reload(
        "backup_ext.s3_credentials_file",
        &s3.credentials_file.to_string_lossy(),
    );
    c.set_and_reload("backup_ext.identity_file", &key.to_string_lossy());
    crate::exec(
        &mut c.client("postgres"),
        &format!(
            "SELECT backup_ext.add_storage('offsite', {}, jsonb_build_object('endpoint', {}, \
             'path_style', true, 'allow_http', true))",
            crate::quote_literal(&format!("s3://{}", s3.bucket)),
            crate::quote_literal(&s3.endpoint)
        ),
    );
    (key, recipient)
}
