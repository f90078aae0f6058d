//! The bucket of a [`Seaweed`] seen through the S3 API: boto3 in a small script
//! (inspect.py), so that what tests assert does not depend on backup_ext's own S3 code.

use std::collections::HashMap;
use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use super::{py_env, Seaweed, DEFAULT_PY_ENV};

const INSPECT_SCRIPT: &str = include_str!("inspect.py");

/// The Python that has boto3: the environment's, or else `python3` from PATH.
fn s3_python() -> PathBuf {
    let in_env = py_env().join("bin/python3");
    if in_env.is_file() {
        in_env
    } else {
        PathBuf::from("python3")
    }
}

impl Seaweed {
    /// Keys and sizes of the objects under `prefix` (ListObjectsV2), in key order.
    pub fn objects(&self, prefix: &str) -> Vec<(String, u64)> {
        parse_json(&self.inspect("objects", &[prefix], &[]))
    }

    /// Keys and upload ids of the multipart uploads begun and neither completed nor aborted
    /// (ListMultipartUploads).
    pub fn open_uploads(&self) -> Vec<(String, String)> {
        parse_json(&self.inspect("uploads", &[], &[]))
    }

    pub fn get(&self, key: &str) -> Vec<u8> {
        self.inspect("get", &[key], &[])
    }

    pub fn put(&self, key: &str, bytes: &[u8]) {
        self.inspect("put", &[key], bytes);
    }

    /// PutObject with user metadata (`x-amz-meta-<name>`).
    pub fn put_with_metadata(&self, key: &str, bytes: &[u8], metadata: &[(&str, &str)]) {
        let metadata: HashMap<&str, &str> = metadata.iter().copied().collect();
        let json = serde_json::to_string(&metadata).expect("metadata as JSON");
        self.inspect("put", &[key, &json], bytes);
    }

    pub fn delete(&self, key: &str) {
        self.inspect("delete", &[key], &[]);
    }

    /// The user metadata of an object (HeadObject), names without `x-amz-meta-`.
    pub fn head_metadata(&self, key: &str) -> HashMap<String, String> {
        parse_json(&self.inspect("head", &[key], &[]))
    }

    /// Begins a multipart upload and leaves it open, as an interrupted client would; returns its
    /// upload id.
    pub fn start_upload(&self, key: &str) -> String {
        String::from_utf8(self.inspect("create-upload", &[key], &[])).expect("utf-8 upload id")
    }

    /// ListObjectsV2 with other keys; `Err` is the S3 error code (e.g. `SignatureDoesNotMatch`,
    /// `InvalidAccessKeyId`) or the client's error class (e.g. `EndpointConnectionError`).
    pub fn try_objects_with(
        &self,
        access_key: &str,
        secret_key: &str,
        prefix: &str,
    ) -> Result<Vec<(String, u64)>, String> {
        self.try_inspect(access_key, secret_key, "objects", &[prefix], &[])
            .map(|out| parse_json(&out))
    }

    fn inspect(&self, op: &str, args: &[&str], input: &[u8]) -> Vec<u8> {
        self.try_inspect(&self.access_key, &self.secret_key, op, args, input)
            .unwrap_or_else(|code| panic!("S3 {op} {args:?} on {} failed: {code}", self.name))
    }

    fn try_inspect(
        &self,
        access_key: &str,
        secret_key: &str,
        op: &str,
        args: &[&str],
        input: &[u8],
    ) -> Result<Vec<u8>, String> {
        let python = s3_python();
        let mut cmd = Command::new(&python);
        cmd.arg("-c")
            .arg(INSPECT_SCRIPT)
            .arg(op)
            .args(args)
            .env("BACKUP_EXT_S3_ENDPOINT", &self.endpoint)
            .env("BACKUP_EXT_S3_BUCKET", &self.bucket)
            .env("BACKUP_EXT_S3_ACCESS_KEY", access_key)
            .env("BACKUP_EXT_S3_SECRET_KEY", secret_key)
            // Nothing from the caller's AWS setup or proxies may change what is asked of whom.
            .env("AWS_CONFIG_FILE", "/dev/null")
            .env("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
            .env_remove("AWS_PROFILE")
            .env_remove("AWS_ENDPOINT_URL")
            .env_remove("AWS_ENDPOINT_URL_S3")
            .env("NO_PROXY", "127.0.0.1,localhost")
            .env("no_proxy", "127.0.0.1,localhost")
            .stdin(if input.is_empty() {
                Stdio::null()
            } else {
                Stdio::piped()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", python.display()));
        if let Some(mut stdin) = child.stdin.take() {
            // The script reads all of stdin before it writes anything.
            stdin.write_all(input).expect("write to the S3 script");
        }
        let out = child.wait_with_output().expect("wait for the S3 script");
        let stderr = String::from_utf8_lossy(&out.stderr).trim().to_string();
        match out.status.code() {
            Some(0) => Ok(out.stdout),
            // The code is the script's last word; warnings may come before it.
            Some(3) => Err(stderr.lines().last().unwrap_or_default().to_string()),
            _ => panic!(
                "{} could not run the S3 script ({}); is boto3 installed? \
                 (`bash scripts/setup.sh` puts it in {DEFAULT_PY_ENV})\n{stderr}",
                python.display(),
                out.status
            ),
        }
    }
}

fn parse_json<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> T {
    serde_json::from_slice(bytes).unwrap_or_else(|e| {
        panic!(
            "S3 script output is not the expected JSON ({e}): {}",
            String::from_utf8_lossy(bytes)
        )
    })
}
