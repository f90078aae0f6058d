//! Paths as the text that command lines and SQL parameters take. A leaf
//! module: files.rs, process.rs and cluster.rs all use it.

use std::path::Path;

pub fn path_str(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}
