//! The ETags S3 gives objects, computed locally so an upload can be checked
//! against what the service stored: the MD5 of the content for a single PUT,
//! and for a multipart upload the MD5 of the concatenated binary MD5s of the
//! parts followed by `-` and the number of parts.

use md5::{Digest, Md5};

pub(crate) fn md5(data: &[u8]) -> [u8; 16] {
    Md5::digest(data).into()
}

/// The ETag of an object stored with one PUT.
pub(crate) fn single_etag(data: &[u8]) -> String {
    hex::encode(md5(data))
}

/// Collects part MD5s in part order.
#[derive(Debug, Default, Clone)]
pub(crate) struct MultipartEtag {
    digests: Vec<[u8; 16]>,
}

impl MultipartEtag {
    /// Records the MD5 of part `index` (0-based); parts may arrive in any order.
    pub(crate) fn set(&mut self, index: usize, digest: [u8; 16]) {
        if self.digests.len() <= index {
            self.digests.resize(index + 1, [0; 16]);
        }
        self.digests[index] = digest;
    }

    pub(crate) fn finish(&self) -> String {
        let mut all = Md5::new();
        for d in &self.digests {
            all.update(d);
        }
        format!("{}-{}", hex::encode(all.finalize()), self.digests.len())
    }
}

/// An ETag as compared: without quotes or a weak marker, lower case.
pub(crate) fn normalise(etag: &str) -> String {
    etag.trim()
        .trim_start_matches("W/")
        .trim_matches('"')
        .to_ascii_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn single() {
        assert_eq!(single_etag(b""), "d41d8cd98f00b204e9800998ecf8427e");
        assert_eq!(single_etag(b"abc"), "900150983cd24fb0d6963f7d28e17f72");
    }

    #[test]
    fn multipart() {
        // Reference: two parts "abc" and "def", concatenated digests hashed again.
        let mut e = MultipartEtag::default();
        e.set(1, md5(b"def"));
        e.set(0, md5(b"abc"));
        let mut both = md5(b"abc").to_vec();
        both.extend(md5(b"def"));
        assert_eq!(e.finish(), format!("{}-2", hex::encode(md5(&both))));
        let mut one = MultipartEtag::default();
        one.set(0, md5(b"abc"));
        assert_eq!(
            one.finish(),
            format!("{}-1", hex::encode(md5(&md5(b"abc"))))
        );
    }

    #[test]
    fn normalised() {
        assert_eq!(normalise("\"ABC-2\""), "abc-2");
        assert_eq!(normalise("W/\"abc\""), "abc");
        assert_eq!(normalise("abc"), "abc");
    }
}
