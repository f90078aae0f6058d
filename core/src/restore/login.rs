//! The short-lived login a restore uses when it acts for a role that is not a superuser.
//!
//! Such a restore must not run as the superuser the worker connects as: code in the archive
//! (a CHECK constraint, a default, a trigger) would run with that superuser's session, and
//! `RESET ROLE` from inside it would give the superuser back. So the tools log in as a
//! role made for the one job, a member of the requester and of nothing else, and then
//! `SET ROLE` to the requester: whatever the archive does, the session can never become more
//! than the requester.
//!
//! The role gets a random password, set as a SCRAM-SHA-256 verifier so that the password
//! itself never appears in any SQL text (statement logs, pg_stat_statements); the tool
//! receives it through `PGPASSWORD` in its environment.

use std::io::Read;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

/// Name prefix of per-job login roles; the job id follows.
pub const JOB_ROLE_PREFIX: &str = "backup_ext_job_";
/// The NOLOGIN group every per-job role belongs to, for a `pg_hba.conf` line such as
/// `local all +backup_ext_sandbox scram-sha-256`.
pub const SANDBOX_GROUP: &str = "backup_ext_sandbox";
const SCRAM_ITERATIONS: u32 = 4096;

/// The login role of one job.
pub fn job_role(job_id: i64) -> String {
    format!("{JOB_ROLE_PREFIX}{job_id}")
}

/// The job id of a per-job role name, if it is one.
pub fn job_of_role(name: &str) -> Option<i64> {
    let digits = name.strip_prefix(JOB_ROLE_PREFIX)?;
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

fn random_bytes<const N: usize>() -> std::io::Result<[u8; N]> {
    let mut buf = [0u8; N];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut buf)?;
    Ok(buf)
}

/// A random password (32 hex digits, 128 bits).
pub fn random_password() -> std::io::Result<String> {
    Ok(hex::encode(random_bytes::<16>()?))
}

fn hmac(key: &[u8], data: &[u8]) -> Vec<u8> {
    // HMAC takes keys of any length; new_from_slice cannot fail for it.
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key).expect("HMAC accepts any key length");
    mac.update(data);
    mac.finalize().into_bytes().to_vec()
}

/// The keys derived from a password, as RFC 5802 names them.
struct ScramKeys {
    stored_key: Vec<u8>,
    server_key: Vec<u8>,
}

fn scram_keys(password: &str, salt: &[u8], iterations: u32) -> ScramKeys {
    let mut salted = [0u8; 32];
    pbkdf2::pbkdf2_hmac::<Sha256>(password.as_bytes(), salt, iterations, &mut salted);
    let client_key = hmac(&salted, b"Client Key");
    ScramKeys {
        stored_key: Sha256::digest(&client_key).to_vec(),
        server_key: hmac(&salted, b"Server Key"),
    }
}

/// A `rolpassword` value in PostgreSQL's SCRAM-SHA-256 format:
/// `SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>`.
pub fn scram_verifier(password: &str, salt: &[u8]) -> String {
    let keys = scram_keys(password, salt, SCRAM_ITERATIONS);
    format!(
        "SCRAM-SHA-256${SCRAM_ITERATIONS}:{}${}:{}",
        B64.encode(salt),
        B64.encode(keys.stored_key),
        B64.encode(keys.server_key)
    )
}

/// A fresh password and its verifier.
pub fn new_credentials() -> std::io::Result<(String, String)> {
    let password = random_password()?;
    let salt = random_bytes::<16>()?;
    let verifier = scram_verifier(&password, &salt);
    Ok((password, verifier))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 7677's example exchange: user "user", password "pencil". The server's final
    /// signature is HMAC(ServerKey, AuthMessage), so it checks the derived ServerKey.
    #[test]
    fn rfc7677_server_signature() {
        let salt = B64.decode("W22ZaJ0SNY7soEsUEjb6gQ==").unwrap();
        let keys = scram_keys("pencil", &salt, 4096);
        let auth_message = "n=user,r=rOprNGfwEbeRWgbNEkqO,\
            r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096,\
            c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0";
        let signature = hmac(&keys.server_key, auth_message.as_bytes());
        assert_eq!(
            B64.encode(signature),
            "6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="
        );
        // ClientProof = ClientKey XOR HMAC(StoredKey, AuthMessage); recover ClientKey from
        // the RFC's proof and check that StoredKey = H(ClientKey).
        let proof = B64
            .decode("dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=")
            .unwrap();
        let client_signature = hmac(&keys.stored_key, auth_message.as_bytes());
        let client_key: Vec<u8> = proof
            .iter()
            .zip(&client_signature)
            .map(|(a, b)| a ^ b)
            .collect();
        assert_eq!(Sha256::digest(&client_key).to_vec(), keys.stored_key);
    }

    #[test]
    fn verifier_format() {
        let v = scram_verifier("pencil", b"0123456789abcdef");
        let (head, keys) = v.rsplit_once('$').unwrap();
        assert_eq!(head, "SCRAM-SHA-256$4096:MDEyMzQ1Njc4OWFiY2RlZg==");
        let (stored, server) = keys.split_once(':').unwrap();
        assert_eq!(B64.decode(stored).unwrap().len(), 32);
        assert_eq!(B64.decode(server).unwrap().len(), 32);
    }

    #[test]
    fn fresh_credentials_differ() {
        let (p1, v1) = new_credentials().unwrap();
        let (p2, v2) = new_credentials().unwrap();
        assert_eq!(p1.len(), 32);
        assert!(p1.bytes().all(|b| b.is_ascii_hexdigit()));
        assert_ne!(p1, p2);
        assert_ne!(v1, v2);
        assert!(
            !v1.contains(&p1),
            "the verifier must not contain the password"
        );
    }

    #[test]
    fn job_role_names() {
        assert_eq!(job_role(42), "backup_ext_job_42");
        assert_eq!(job_of_role("backup_ext_job_42"), Some(42));
        for other in [
            "backup_ext_job_",
            "backup_ext_job_4x",
            "backup_ext_jobs_1",
            "mallory",
            "backup_ext_job_-1",
        ] {
            assert_eq!(job_of_role(other), None, "{other}");
        }
    }
}
