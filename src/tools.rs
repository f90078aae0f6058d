//! Which dump tools are installed: their versions, asked once per process and bin directory.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;

use backup_core::parse_tool_version;

static VERSIONS: Mutex<Option<HashMap<PathBuf, (u32, String)>>> = Mutex::new(None);

/// `(major, version line)` of `<bin_dir>/<tool> --version`.
pub fn tool_version(bin_dir: &Path, tool: &str) -> Result<(u32, String), String> {
    let program = bin_dir.join(tool);
    if let Ok(guard) = VERSIONS.lock() {
        if let Some(found) = guard.as_ref().and_then(|m| m.get(&program)) {
            return Ok(found.clone());
        }
    }
    let output = Command::new(&program)
        .arg("--version")
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run {}: {e}", program.display()))?;
    let text = String::from_utf8_lossy(&output.stdout);
    let parsed = parse_tool_version(&text).ok_or_else(|| {
        format!(
            "unexpected output from {} --version: {text}",
            program.display()
        )
    })?;
    if let Ok(mut guard) = VERSIONS.lock() {
        guard
            .get_or_insert_with(HashMap::new)
            .insert(program, parsed.clone());
    }
    Ok(parsed)
}

/// Forgets cached versions, e.g. after `backup_ext.bin_dir` changed on reload.
pub fn forget_versions() {
    if let Ok(mut guard) = VERSIONS.lock() {
        *guard = None;
    }
}

/// The major version of the configured pg_dump, which decides the compression syntax.
pub fn pg_dump_major() -> u32 {
    tool_version(&crate::settings::bin_dir(), "pg_dump")
        .map(|v| v.0)
        .unwrap_or(15)
}
