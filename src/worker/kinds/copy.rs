//! Copies: a succeeded backup streamed to a further storage target (`set_copies()`).

use backup_core::storage::copy::{CopySource, CopySpec};
use backup_core::storage::UploadStarted;
use backup_core::{sidecar_key, ProgressTracker};

use super::*;
use crate::catalog::{self, BackupRecord, ClaimedJob};

/// A backup's key in a storage target: its own key for a remote backup, and for a local one
/// `<system identifier>/<folder>/<file>` as if it had been written there.
fn copy_key(backup: &BackupRecord) -> Result<String, String> {
    if let Some(key) = &backup.key {
        return Ok(key.clone());
    }
    let path = Path::new(backup.path.as_deref().unwrap_or_default());
    let name = |p: Option<&Path>| {
        p.and_then(|p| p.file_name())
            .map(|n| n.to_string_lossy().into_owned())
    };
    let (Some(file), Some(folder)) = (name(Some(path)), name(path.parent())) else {
        return Err(format!("backup {} has no file to copy", backup.backup_id));
    };
    let sysid = catalog::system_identifier().map_err(|e| e.to_string())?;
    Ok(format!("{sysid}/{folder}/{file}"))
}

pub(super) fn prepare_copy(claimed: &ClaimedJob, backup: &BackupRecord) -> Result<Plan, String> {
    // Counted before anything can fail, so that retries end after backup_ext.copy_retries.
    catalog::record_copy_start(claimed.job_id).map_err(|e| e.to_string())?;
    let target = claimed
        .request
        .get("storage")
        .and_then(|v| v.as_str())
        .ok_or("the copy job names no storage target")?
        .to_string();
    let dest = match crate::storage::open_named(&target) {
        Ok(Some(store)) => store,
        Ok(None) => return Err("copies go to storage targets, not to 'local'".into()),
        Err(e) => {
            return Err(format!(
                "cannot open storage target \"{target}\": {}",
                e.message()
            ))
        }
    };
    let key = copy_key(backup)?;
    let (source, sidecar) = if backup.storage == catalog::LOCAL_STORAGE {
        let path = PathBuf::from(backup.path.as_deref().unwrap_or_default());
        let sidecar = std::fs::read(sidecar_key(&path.to_string_lossy())).ok();
        (CopySource::Local(path), sidecar)
    } else {
        let store = backup_store(backup)?;
        let own_key = backup.key.clone().unwrap_or_default();
        let sidecar = store.get_bytes(&sidecar_key(&own_key)).ok();
        (
            CopySource::Remote {
                store,
                key: own_key,
            },
            sidecar,
        )
    };
    catalog::record_copy_key(claimed.job_id, &key).map_err(|e| e.to_string())?;
    let started = UploadStarted::default();
    Ok(Plan {
        start: Start::Copy(Box::new(CopySpec {
            source,
            dest,
            dest_storage: target,
            key,
            expected_size: backup.size_bytes.unwrap_or_default().max(0) as u64,
            expected_sha256: backup.sha256.clone().unwrap_or_default(),
            sidecar,
            started: started.clone(),
        })),
        kind: Kind::Copy { started },
        login_role: None,
        makes_database: false,
        output: None,
        tool: "the copy",
        stderr_path: None,
        progress: ProgressTracker::default(),
        table_count: None,
    })
}
