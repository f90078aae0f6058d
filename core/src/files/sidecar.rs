//! The sidecar: `<backup>.json` beside every backup, local or remote. It is the backup's own
//! description (what the catalog row says), readable without the catalog, so that a heap of
//! files in a bucket can be listed, checked and restored after the server is lost.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::files::paths::{backup_file_name, database_folder, GLOBALS_FOLDER};

/// Bumped when a field changes meaning; readers refuse versions they do not know.
pub const SIDECAR_VERSION: u32 = 1;

/// What a sidecar says; the field names are part of the on-disk format.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sidecar {
    pub sidecar_version: u32,
    pub backup_id: i64,
    /// `database` or `globals`.
    pub kind: String,
    pub database: Option<String>,
    pub format: String,
    pub compress: Option<String>,
    pub label: Option<String>,
    pub size_bytes: u64,
    /// SHA-256 of the stored bytes (for a directory backup: of its manifest).
    pub sha256: String,
    pub requested_at: String,
    pub started_at: String,
    pub finished_at: String,
    pub server_version: String,
    pub tool_version: String,
    /// `pg_control_system().system_identifier` of the cluster the backup came from.
    pub system_identifier: String,
    pub set_id: Option<i64>,
    /// Where the backup was first written (`local` or a storage target's name) and its key
    /// there (a file name relative to `backup_ext.directory` for `local`).
    pub storage: String,
    pub key: String,
    /// The directory format's per-file manifest.
    pub manifest: Option<Value>,
    /// Rows per table, when a verification counted them.
    pub table_rows: Option<Value>,
    /// Stored age-encrypted; `recipients` are the fingerprints of the keys it was encrypted to
    /// (`backup_core::crypt::fingerprint`). Absent in sidecars written before encryption.
    #[serde(default)]
    pub encrypted: bool,
    #[serde(default)]
    pub recipients: Vec<String>,
}

impl Sidecar {
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = serde_json::to_vec_pretty(self).unwrap_or_default();
        out.push(b'\n');
        out
    }

    /// Reads a sidecar, refusing unknown versions.
    pub fn from_bytes(bytes: &[u8]) -> Result<Sidecar, String> {
        let sidecar: Sidecar =
            serde_json::from_slice(bytes).map_err(|e| format!("not a backup sidecar: {e}"))?;
        if sidecar.sidecar_version != SIDECAR_VERSION {
            return Err(format!(
                "sidecar version {} is not supported (this version reads {SIDECAR_VERSION})",
                sidecar.sidecar_version
            ));
        }
        Ok(sidecar)
    }
}

/// The sidecar's key (or path) for a backup's key (or path).
pub fn sidecar_key(backup_key: &str) -> String {
    format!("{backup_key}.json")
}

/// A backup's key in a storage target, relative to the target's prefix:
/// `<system identifier>/<database folder>/<UTC time>-job<id><suffix>`, `globals` for globals.
/// Database folders are percent-encoded (`database_folder`), so no name can reach another
/// folder, and servers sharing a bucket never collide.
pub fn object_key(
    system_identifier: &str,
    database: Option<&str>,
    started: chrono::DateTime<chrono::Utc>,
    job_id: i64,
    suffix: &str,
) -> String {
    let folder = database
        .map(database_folder)
        .unwrap_or_else(|| GLOBALS_FOLDER.to_string());
    format!(
        "{system_identifier}/{folder}/{}",
        backup_file_name(started, job_id, suffix)
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn sample() -> Sidecar {
        Sidecar {
            sidecar_version: SIDECAR_VERSION,
            backup_id: 42,
            kind: "database".into(),
            database: Some("app".into()),
            format: "custom".into(),
            compress: Some("zstd:3".into()),
            label: None,
            size_bytes: 1234,
            sha256: "ab".repeat(32),
            requested_at: "2026-11-29T10:00:00.000000Z".into(),
            started_at: "2026-11-29T10:00:01.000000Z".into(),
            finished_at: "2026-11-29T10:00:09.000000Z".into(),
            server_version: "15.20".into(),
            tool_version: "15.20".into(),
            system_identifier: "7400000000000000001".into(),
            set_id: None,
            storage: "offsite".into(),
            key: "7400000000000000001/app/20261129T100001Z-job000000000042.dump".into(),
            manifest: None,
            table_rows: None,
            encrypted: true,
            recipients: vec!["0123456789abcdef".into()],
        }
    }

    #[test]
    fn a_sidecar_reads_back_as_written() {
        let s = sample();
        assert_eq!(Sidecar::from_bytes(&s.to_bytes()).unwrap(), s);
    }

    #[test]
    fn unknown_versions_and_other_json_are_refused() {
        let mut s = sample();
        s.sidecar_version = 2;
        let e = Sidecar::from_bytes(&s.to_bytes()).unwrap_err();
        assert_eq!(
            e,
            "sidecar version 2 is not supported (this version reads 1)"
        );
        assert!(Sidecar::from_bytes(b"{\"a\": 1}")
            .unwrap_err()
            .starts_with("not a backup sidecar: "));
    }

    #[test]
    fn keys_encode_database_names_and_separate_clusters() {
        let t = chrono::Utc
            .with_ymd_and_hms(2026, 11, 29, 10, 0, 1)
            .unwrap();
        assert_eq!(
            object_key("74", Some("a/../b"), t, 7, ".dump"),
            "74/a%2F..%2Fb/20261129T100001Z-job000000000007.dump"
        );
        assert_eq!(
            object_key("74", None, t, 8, ".sql"),
            "74/globals/20261129T100001Z-job000000000008.sql"
        );
        assert_eq!(
            object_key("74", Some("globals"), t, 9, ".sql"),
            "74/%67lobals/20261129T100001Z-job000000000009.sql"
        );
        assert_eq!(sidecar_key("74/x.dump"), "74/x.dump.json");
    }
}
