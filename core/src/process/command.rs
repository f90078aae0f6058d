//! Command lines as handed to exec: a program and its arguments, and
//! helpers for building the arguments.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

pub(crate) fn arg(s: impl Into<String>) -> OsString {
    OsString::from(s.into())
}

/// A path as a positional argument. A relative path starting with `-`
/// would be read as an option, so such paths are anchored with `./`.
pub(crate) fn path_arg(path: &Path) -> OsString {
    if path.as_os_str().to_string_lossy().starts_with('-') {
        Path::new(".").join(path).into_os_string()
    } else {
        path.as_os_str().to_owned()
    }
}

/// The archive a pg_restore reads, as its last argument; none for an empty path, which makes
/// pg_restore read its stdin (a backup streamed from a storage target).
pub(crate) fn archive_arg(args: &mut Vec<OsString>, archive: &Path) {
    if !archive.as_os_str().is_empty() {
        args.push(path_arg(archive));
    }
}

/// A program and its arguments, as the argv builders return them.
#[derive(Clone, PartialEq, Eq)]
pub struct ToolCommand {
    pub program: PathBuf,
    pub args: Vec<OsString>,
    /// Extra environment (e.g. `PGPASSWORD` of a per-job login); never shown in messages.
    pub env: Vec<(String, String)>,
}

impl From<(PathBuf, Vec<OsString>)> for ToolCommand {
    fn from((program, args): (PathBuf, Vec<OsString>)) -> Self {
        ToolCommand {
            program,
            args,
            env: Vec::new(),
        }
    }
}

/// Shows the names of the extra variables, never their values.
impl std::fmt::Debug for ToolCommand {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let env: Vec<&str> = self.env.iter().map(|(k, _)| k.as_str()).collect();
        f.debug_struct("ToolCommand")
            .field("program", &self.program)
            .field("args", &self.args)
            .field("env", &env)
            .finish()
    }
}

impl ToolCommand {
    pub fn with_env(mut self, env: Vec<(String, String)>) -> Self {
        self.env = env;
        self
    }

    pub fn name(&self) -> String {
        self.program
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| self.program.display().to_string())
    }
}
