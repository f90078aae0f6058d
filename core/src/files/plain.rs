//! Reading a plain-format dump, gzip-compressed or not.

use std::fs::File;
use std::io::{self, Read};
use std::path::Path;

/// A plain dump for reading, gunzipped on the fly when `compressed`
/// (concatenated gzip members are read as one stream).
pub fn open_plain_dump(path: &Path, compressed: bool) -> io::Result<Box<dyn Read + Send>> {
    Ok(plain_dump_reader(File::open(path)?, compressed))
}

/// [`open_plain_dump`] for an already open file (or any reader).
pub(crate) fn plain_dump_reader(
    raw: impl Read + Send + 'static,
    compressed: bool,
) -> Box<dyn Read + Send> {
    if compressed {
        Box::new(flate2::read::MultiGzDecoder::new(raw))
    } else {
        Box::new(raw)
    }
}
