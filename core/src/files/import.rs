//! Taking backups found in a storage target back into a catalog (`import_backups()`): whether
//! a sidecar describes a backup that lies beside it, whole, under a name that cannot lead
//! anywhere else. The sidecar is read as hostile input: every field is checked before a row is
//! made of it, and the object used is always the one listed beside the sidecar, never a path
//! or key taken from its text.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};

use crate::files::manifest::Manifest;
use crate::files::sidecar::Sidecar;
use crate::format::Format;
use crate::storage::ObjectInfo;

/// Sidecars larger than this are not read (a directory backup of 100 000 files has a manifest
/// of about 15 MB).
pub const MAX_SIDECAR_BYTES: u64 = 32 * 1024 * 1024;

/// Longest text accepted in a sidecar's short fields (names, versions, compression).
const MAX_SHORT_TEXT: usize = 256;
/// Longest key or path accepted.
const MAX_KEY: usize = 1024;
/// PostgreSQL's longest identifier, in bytes.
const MAX_DATABASE_NAME: usize = 63;

/// A backup that may be taken into the catalog: its sidecar, checked, and where it lies.
#[derive(Debug, Clone, PartialEq)]
pub struct ImportCandidate {
    pub sidecar: Sidecar,
    /// The backup's key in the target (the sidecar's own key without `.json`).
    pub key: String,
    pub size_bytes: i64,
    pub set_id: Option<i64>,
    /// The object's ETag (S3, single-object backups only).
    pub etag: Option<String>,
    pub requested_at: DateTime<Utc>,
    pub started_at: DateTime<Utc>,
    pub finished_at: DateTime<Utc>,
}

/// The key of the backup a sidecar key describes, for keys that look like sidecars: `None`
/// for other objects and for names inside folders that are not backups' (`.work`).
pub fn sidecar_backup_key(key: &str) -> Option<&str> {
    let backup = key.strip_suffix(".json")?;
    if backup.is_empty() || backup.ends_with('/') || key.split('/').any(|p| p.starts_with('.')) {
        return None;
    }
    Some(backup)
}

/// Whether a relative key or file name stays where it is put: no empty, `.` or `..` part, no
/// backslash or NUL, not absolute.
pub fn is_safe_relative(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_KEY
        && !name.starts_with('/')
        && !name.contains(['\\', '\0'])
        && name
            .split('/')
            .all(|part| !part.is_empty() && part != "." && part != "..")
}

fn short_text(field: &str, value: &str) -> Result<(), String> {
    if value.len() > MAX_SHORT_TEXT || value.contains('\0') || value.chars().any(char::is_control) {
        return Err(format!(
            "{field} is not a plausible value ({} bytes or control characters)",
            value.len()
        ));
    }
    Ok(())
}

fn timestamp(field: &str, value: &str) -> Result<DateTime<Utc>, String> {
    short_text(field, value)?;
    DateTime::parse_from_rfc3339(value)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|_| format!("{field} {value:?} is not a timestamp"))
}

fn is_hex(value: &str, len: usize) -> bool {
    value.len() == len
        && value
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

fn last_part(key: &str) -> &str {
    key.rsplit('/').next().unwrap_or(key)
}

/// The fields of a sidecar, each checked on its own.
fn check_fields(s: &Sidecar) -> Result<(), String> {
    if s.backup_id < 1 {
        return Err(format!("backup_id {} is not a backup id", s.backup_id));
    }
    match (s.kind.as_str(), s.database.as_deref()) {
        ("database", Some(db)) => {
            if db.is_empty() || db.len() > MAX_DATABASE_NAME || db.contains('\0') {
                return Err(format!("database {db:?} is not a database name"));
            }
        }
        ("database", None) => return Err("a database backup names no database".into()),
        ("globals", None) => {}
        ("globals", Some(_)) => return Err("a globals backup names a database".into()),
        (other, _) => {
            short_text("kind", other)?;
            return Err(format!("kind {other:?} is not database or globals"));
        }
    }
    let format = Format::parse(&s.format).map_err(|e| e.message)?;
    if format == Format::Directory && s.kind != "database" {
        return Err("a globals backup cannot be in directory format".into());
    }
    for (field, value) in [
        ("compress", s.compress.as_deref()),
        ("server_version", Some(s.server_version.as_str())),
        ("tool_version", Some(s.tool_version.as_str())),
        ("storage", Some(s.storage.as_str())),
    ] {
        short_text(field, value.unwrap_or_default())?;
    }
    if let Some(label) = &s.label {
        if label.len() > 4096 || label.contains('\0') {
            return Err("label is not a plausible label".into());
        }
    }
    if i64::try_from(s.size_bytes).is_err() {
        return Err(format!("size_bytes {} is out of range", s.size_bytes));
    }
    if !is_hex(&s.sha256, 64) {
        return Err("sha256 is not 64 lower-case hex digits".into());
    }
    let sysid = &s.system_identifier;
    if sysid.is_empty() || sysid.len() > 20 || !sysid.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!(
            "system_identifier {:?} is not a system identifier",
            sysid.chars().take(40).collect::<String>()
        ));
    }
    if s.encrypted && s.recipients.is_empty() {
        return Err("an encrypted backup lists no recipients".into());
    }
    if !s.encrypted && !s.recipients.is_empty() {
        return Err("a backup that is not encrypted lists recipients".into());
    }
    if s.encrypted && format == Format::Directory {
        return Err("a directory-format backup cannot be encrypted".into());
    }
    if let Some(bad) = s.recipients.iter().find(|r| !is_hex(r, 16)) {
        return Err(format!(
            "recipient fingerprint {:?} is not 16 hex digits",
            bad.chars().take(40).collect::<String>()
        ));
    }
    if s.table_rows.as_ref().is_some_and(|v| !v.is_object()) {
        return Err("table_rows is not an object".into());
    }
    Ok(())
}

/// The sidecar's own key: where the backup was first written. A remote key is relative; a
/// local backup's is the absolute path it had. Either way it must name the same file as the
/// object beside the sidecar (a copy keeps the original's name).
fn check_own_key(s: &Sidecar, listed: &str) -> Result<(), String> {
    let own = s.key.as_str();
    let relative = own.strip_prefix('/').filter(|_| s.storage == "local");
    if !is_safe_relative(relative.unwrap_or(own)) {
        return Err(format!(
            "key {:?} is not a safe key (absolute, empty, or with . or .. parts)",
            own.chars().take(200).collect::<String>()
        ));
    }
    if last_part(own) != last_part(listed) {
        return Err(format!(
            "it describes {:?}, not the object beside it",
            last_part(own)
        ));
    }
    Ok(())
}

/// A directory-format backup: its files under `<key>/`, each as the manifest says.
fn check_tree(
    s: &Sidecar,
    key: &str,
    objects: &BTreeMap<String, ObjectInfo>,
) -> Result<(), String> {
    let prefix = format!("{key}/");
    let files: BTreeMap<&str, u64> = objects
        .range(prefix.clone()..)
        .take_while(|(k, _)| k.starts_with(&prefix))
        .map(|(k, o)| (&k[prefix.len()..], o.size))
        .collect();
    if files.is_empty() {
        return Err(format!(
            "the backup is missing: no object at {key} or under {prefix}"
        ));
    }
    if let Some(bad) = files.keys().find(|n| !is_safe_relative(n)) {
        return Err(format!("unexpected file name {bad:?} under {prefix}"));
    }
    let total: u64 = files.values().sum();
    if total != s.size_bytes {
        return Err(format!(
            "the backup's files hold {total} bytes, the sidecar says {}",
            s.size_bytes
        ));
    }
    let Some(manifest) = &s.manifest else {
        return Ok(());
    };
    let manifest: Manifest = serde_json::from_value(manifest.clone())
        .map_err(|e| format!("the manifest is not readable: {e}"))?;
    if manifest.total_size != s.size_bytes || manifest.sha256 != s.sha256 {
        return Err("the manifest does not match the sidecar's size and SHA-256".into());
    }
    for entry in &manifest.files {
        if !is_safe_relative(&entry.name) {
            return Err(format!("manifest file name {:?} is not safe", entry.name));
        }
        match files.get(entry.name.as_str()) {
            Some(&size) if size == entry.size => {}
            Some(&size) => {
                return Err(format!(
                    "file {} is {size} bytes, the manifest says {}",
                    entry.name, entry.size
                ))
            }
            None => return Err(format!("file {} of the manifest is missing", entry.name)),
        }
    }
    if manifest.files.len() != files.len() {
        return Err(format!(
            "{} files lie under {prefix}, the manifest lists {}",
            files.len(),
            manifest.files.len()
        ));
    }
    Ok(())
}

/// Checks the sidecar at `<key>.json` (its bytes) against what the target holds (`objects`,
/// by key). `Err` is the reason it is skipped, for the caller's report.
pub fn check_sidecar(
    bytes: &[u8],
    key: &str,
    objects: &BTreeMap<String, ObjectInfo>,
) -> Result<ImportCandidate, String> {
    if !is_safe_relative(key) {
        return Err(format!("{key:?} is not a safe key"));
    }
    let sidecar = Sidecar::from_bytes(bytes)?;
    check_fields(&sidecar)?;
    check_own_key(&sidecar, key)?;
    let requested_at = timestamp("requested_at", &sidecar.requested_at)?;
    let started_at = timestamp("started_at", &sidecar.started_at)?;
    let finished_at = timestamp("finished_at", &sidecar.finished_at)?;
    if finished_at < started_at {
        return Err("finished_at is before started_at".into());
    }
    let set_id = sidecar.set_id.filter(|id| *id > 0);
    let etag = match objects.get(key) {
        Some(object) if object.size == sidecar.size_bytes => object.etag.clone(),
        Some(object) => {
            return Err(format!(
                "the backup is {} bytes, the sidecar says {}",
                object.size, sidecar.size_bytes
            ))
        }
        None if sidecar.format == Format::Directory.as_str() => {
            check_tree(&sidecar, key, objects)?;
            None
        }
        None => return Err(format!("the backup is missing: no object at {key}")),
    };
    Ok(ImportCandidate {
        size_bytes: sidecar.size_bytes as i64,
        key: key.to_string(),
        set_id,
        etag,
        requested_at,
        started_at,
        finished_at,
        sidecar,
    })
}

#[cfg(test)]
mod tests;
