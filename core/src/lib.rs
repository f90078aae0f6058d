pub mod compress;
pub mod conninfo;
pub mod error;
pub mod format;
pub mod options;
pub mod request;
pub mod status;
pub mod argv;
pub mod paths;
pub mod version;
pub mod toc;
pub mod manifest;
pub mod stream;
#[cfg(test)]
mod test_support;
pub mod child;
