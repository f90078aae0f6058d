//! The JSON options that go with a storage URL. They never hold secrets:
//! credentials come from a file on the server (see [`super::credentials`]), so
//! the options can be stored in a catalog and shown to anyone.

use super::url::StorageUrl;
use crate::error::{quoted, RequestError};
use serde_json::{json, Map, Value};
use std::net::IpAddr;

pub const MIB: u64 = 1024 * 1024;
/// The smallest part S3 accepts (except for the last part of an upload).
pub const MIN_PART_SIZE: u64 = 5 * MIB;
pub const MAX_PART_SIZE: u64 = 512 * MIB;
pub const DEFAULT_PART_SIZE: u64 = 16 * MIB;
pub const DEFAULT_REGION: &str = "us-east-1";
pub const DEFAULT_PROFILE: &str = "default";
/// The server setting that allows plain HTTP to endpoints other than loopback.
pub const ALLOW_HTTP_SETTING: &str = "backup_ext.s3_allow_http";

pub const S3_OPTION_KEYS: &[&str] = &[
    "endpoint",
    "region",
    "path_style",
    "allow_http",
    "profile",
    "part_size",
];

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct S3Options {
    /// `scheme://host[:port]` without a trailing slash; `None` means AWS itself.
    pub endpoint: Option<String>,
    pub region: String,
    /// Bucket in the path (`endpoint/bucket/key`) instead of the host name.
    pub path_style: bool,
    pub allow_http: bool,
    /// The section of the credentials file to use.
    pub profile: String,
    pub part_size: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StorageOptions {
    File,
    S3(S3Options),
}

fn option_error(key: &str, value: &Value, problem: &str, hint: &str) -> RequestError {
    RequestError::invalid(
        format!(
            "storage option {} = {} {problem}",
            quoted(key),
            compact(value)
        ),
        hint,
    )
}

/// A JSON value for a message, cut short if long.
fn compact(value: &Value) -> String {
    let text = value.to_string();
    if text.chars().count() > 80 {
        format!("{}...", text.chars().take(80).collect::<String>())
    } else {
        text
    }
}

fn string_option<'a>(key: &str, value: &'a Value, hint: &str) -> Result<&'a str, RequestError> {
    match value.as_str() {
        Some(s) if !s.is_empty() && !s.chars().any(|c| c.is_control() || c.is_whitespace()) => {
            Ok(s)
        }
        Some(_) => Err(option_error(
            key,
            value,
            "is empty or contains whitespace or control characters",
            hint,
        )),
        None => Err(option_error(key, value, "is not a string", hint)),
    }
}

fn bool_option(key: &str, value: &Value) -> Result<bool, RequestError> {
    value.as_bool().ok_or_else(|| {
        option_error(
            key,
            value,
            "is not a boolean",
            "Write true or false, without quotes.",
        )
    })
}

impl StorageOptions {
    /// Validates `options` (a JSON object) for `url`. `allow_http_setting` is
    /// the value of [`ALLOW_HTTP_SETTING`].
    pub fn from_json(
        url: &StorageUrl,
        options: &Value,
        allow_http_setting: bool,
    ) -> Result<StorageOptions, RequestError> {
        let Some(map) = options.as_object() else {
            return Err(RequestError::invalid(
                format!("storage options {} are not a JSON object", compact(options)),
                "Pass an object such as {\"endpoint\": \"https://s3.example.com\"}, or {} for \
                 none.",
            ));
        };
        match url {
            StorageUrl::File { .. } => match map.keys().next() {
                None => Ok(StorageOptions::File),
                Some(key) => Err(RequestError::invalid(
                    format!("storage option {} does not apply to {url}", quoted(key)),
                    "File storage takes no options: pass {}.",
                )),
            },
            StorageUrl::S3 { .. } => s3_options(map, allow_http_setting).map(StorageOptions::S3),
        }
    }

    /// The options with every default filled in, as they should be stored.
    pub fn to_public_json(&self) -> Value {
        match self {
            StorageOptions::File => json!({}),
            StorageOptions::S3(o) => {
                let mut v = json!({
                    "region": o.region,
                    "path_style": o.path_style,
                    "allow_http": o.allow_http,
                    "profile": o.profile,
                    "part_size": o.part_size,
                });
                if let Some(endpoint) = &o.endpoint {
                    v["endpoint"] = json!(endpoint);
                }
                v
            }
        }
    }

    pub fn s3(&self) -> Option<&S3Options> {
        match self {
            StorageOptions::S3(o) => Some(o),
            StorageOptions::File => None,
        }
    }
}

fn s3_options(
    map: &Map<String, Value>,
    allow_http_setting: bool,
) -> Result<S3Options, RequestError> {
    let mut o = S3Options {
        endpoint: None,
        region: DEFAULT_REGION.into(),
        path_style: false,
        allow_http: false,
        profile: DEFAULT_PROFILE.into(),
        part_size: DEFAULT_PART_SIZE,
    };
    let mut endpoint = None;
    for (key, value) in map {
        match key.as_str() {
            "endpoint" => {
                let text = value.as_str().ok_or_else(|| {
                    // Not echoed: a mistyped object could carry anything.
                    RequestError::invalid(
                        "storage option \"endpoint\" is not a string",
                        "Write the endpoint as a string such as \"https://s3.example.com\".",
                    )
                })?;
                endpoint = Some(parse_endpoint(text)?);
            }
            "region" => {
                o.region = string_option(
                    key,
                    value,
                    "Write the region as a string such as \"us-east-1\" or \"eu-central-1\".",
                )?
                .to_string()
            }
            "path_style" => o.path_style = bool_option(key, value)?,
            "allow_http" => o.allow_http = bool_option(key, value)?,
            "profile" => {
                let profile = string_option(
                    key,
                    value,
                    "Write the name of a [section] of the credentials file, e.g. \"default\".",
                )?;
                if profile.contains(['[', ']']) {
                    return Err(option_error(
                        key,
                        value,
                        "contains a bracket",
                        "Write the section name without its brackets, e.g. \"backups\" for \
                         [backups].",
                    ));
                }
                o.profile = profile.to_string();
            }
            "part_size" => {
                let hint = format!(
                    "Write a whole number of bytes from {MIN_PART_SIZE} (5 MiB) to \
                     {MAX_PART_SIZE} (512 MiB); the default is {DEFAULT_PART_SIZE} (16 MiB)."
                );
                let size = value
                    .as_u64()
                    .ok_or_else(|| option_error(key, value, "is not a whole number", &hint))?;
                if !(MIN_PART_SIZE..=MAX_PART_SIZE).contains(&size) {
                    return Err(option_error(key, value, "is out of range", &hint));
                }
                o.part_size = size;
            }
            _ => {
                return Err(RequestError::invalid(
                    format!("unknown storage option {}", quoted(key)),
                    format!("S3 storage options are: {}.", S3_OPTION_KEYS.join(", ")),
                ))
            }
        }
    }
    if let Some(endpoint) = endpoint {
        if endpoint.http && !o.allow_http {
            return Err(RequestError::invalid(
                format!(
                    "storage endpoint {} uses plain HTTP",
                    quoted(&endpoint.text)
                ),
                "Use https://, or add \"allow_http\": true for a test server on this host.",
            ));
        }
        if o.allow_http && !endpoint.loopback && !allow_http_setting {
            return Err(RequestError::invalid(
                format!(
                    "storage option \"allow_http\" is refused for endpoint {}, which is not on \
                     this host",
                    quoted(&endpoint.text)
                ),
                format!(
                    "Plain HTTP sends backups unencrypted: use https://, or have a superuser set \
                     {ALLOW_HTTP_SETTING} = on."
                ),
            ));
        }
        if endpoint.ip && !o.path_style {
            return Err(RequestError::invalid(
                format!(
                    "storage endpoint {} is an IP address, so requests cannot name the bucket \
                     in the host name",
                    quoted(&endpoint.text)
                ),
                "Add \"path_style\": true (the bucket then goes in the path), or use a host name.",
            ));
        }
        o.endpoint = Some(endpoint.text);
    } else if o.allow_http && !allow_http_setting {
        return Err(RequestError::invalid(
            "storage option \"allow_http\" is refused without an endpoint on this host",
            format!(
                "Give a loopback \"endpoint\" such as \"http://127.0.0.1:9000\", or have a \
                 superuser set {ALLOW_HTTP_SETTING} = on."
            ),
        ));
    }
    Ok(o)
}

struct Endpoint {
    text: String,
    http: bool,
    loopback: bool,
    ip: bool,
}

fn parse_endpoint(text: &str) -> Result<Endpoint, RequestError> {
    let shape_hint = "Write the endpoint as scheme://host[:port], e.g. \"https://s3.example.com\" \
                      or \"http://127.0.0.1:9000\".";
    let parsed = url::Url::parse(text).map_err(|e| {
        RequestError::invalid(
            format!("storage endpoint {} is not a URL: {e}", quoted(text)),
            shape_hint,
        )
    })?;
    if !parsed.username().is_empty() || parsed.password().is_some() {
        // The text is not repeated: it holds what looks like a password.
        return Err(RequestError::invalid(
            "storage endpoint contains a user name or password",
            "Remove user:password@ from the endpoint; credentials belong in the credentials \
             file named by backup_ext.s3_credentials_file.",
        ));
    }
    let http = match parsed.scheme() {
        "https" => false,
        "http" => true,
        other => {
            return Err(RequestError::invalid(
                format!(
                    "storage endpoint {} has scheme {}",
                    quoted(text),
                    quoted(other)
                ),
                shape_hint,
            ))
        }
    };
    let ip = !matches!(parsed.host(), Some(url::Host::Domain(_)));
    let loopback = match parsed.host() {
        Some(url::Host::Ipv4(ip)) => IpAddr::V4(ip).is_loopback(),
        Some(url::Host::Ipv6(ip)) => IpAddr::V6(ip).is_loopback(),
        Some(url::Host::Domain(name)) => name.eq_ignore_ascii_case("localhost"),
        None => {
            return Err(RequestError::invalid(
                format!("storage endpoint {} has no host", quoted(text)),
                shape_hint,
            ))
        }
    };
    if parsed.path() != "/" || parsed.query().is_some() || parsed.fragment().is_some() {
        return Err(RequestError::invalid(
            format!(
                "storage endpoint {} has a path, query or fragment",
                quoted(text)
            ),
            shape_hint,
        ));
    }
    // The canonical form without the trailing slash url adds.
    let canonical = parsed.as_str().trim_end_matches('/').to_string();
    Ok(Endpoint {
        text: canonical,
        http,
        loopback,
        ip,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorKind;

    fn s3_url() -> StorageUrl {
        StorageUrl::parse("s3://bucket/p").unwrap()
    }

    fn parse(options: Value) -> Result<S3Options, RequestError> {
        StorageOptions::from_json(&s3_url(), &options, false).map(|o| o.s3().unwrap().clone())
    }

    #[test]
    fn defaults() {
        let o = parse(json!({})).unwrap();
        assert_eq!(o.endpoint, None);
        assert_eq!(o.region, "us-east-1");
        assert!(!o.path_style && !o.allow_http);
        assert_eq!(o.profile, "default");
        assert_eq!(o.part_size, 16 * MIB);
        assert_eq!(
            StorageOptions::S3(o).to_public_json(),
            json!({"region": "us-east-1", "path_style": false, "allow_http": false,
                   "profile": "default", "part_size": 16 * MIB})
        );
    }

    #[test]
    fn all_options() {
        let o = parse(json!({
            "endpoint": "HTTP://LocalHost:9000/",
            "region": "eu-central-1",
            "path_style": true,
            "allow_http": true,
            "profile": "backups",
            "part_size": 5 * MIB,
        }))
        .unwrap();
        assert_eq!(o.endpoint.as_deref(), Some("http://localhost:9000"));
        assert_eq!(o.region, "eu-central-1");
        assert!(o.path_style && o.allow_http);
        assert_eq!(o.profile, "backups");
        assert_eq!(o.part_size, 5 * MIB);
        let public = StorageOptions::S3(o.clone()).to_public_json();
        assert_eq!(public["endpoint"], "http://localhost:9000");
        // What is stored parses back to the same options.
        assert_eq!(parse(public).unwrap(), o);
        assert_eq!(
            parse(json!({"part_size": 512 * MIB})).unwrap().part_size,
            512 * MIB
        );
    }

    #[test]
    fn plain_http() {
        let http = |endpoint: &str, allow: bool, setting: bool| {
            StorageOptions::from_json(
                &s3_url(),
                &json!({"endpoint": endpoint, "allow_http": allow, "path_style": true}),
                setting,
            )
        };
        for host in ["127.0.0.1", "127.8.9.10", "[::1]", "localhost"] {
            http(&format!("http://{host}:9000"), true, false).unwrap();
        }
        let e = http("http://127.0.0.1:9000", false, false).unwrap_err();
        assert!(e.message.contains("\"http://127.0.0.1:9000\""), "{e:?}");
        assert!(e.hint.contains("allow_http"), "{e:?}");
        for host in [
            "10.0.0.1",
            "s3.example.com",
            "[::2]",
            "localhost.example.com",
        ] {
            let endpoint = format!("http://{host}:9000");
            let e = http(&endpoint, true, false).unwrap_err();
            assert!(e.message.contains(host), "{e:?}");
            assert!(e.hint.contains(ALLOW_HTTP_SETTING), "{e:?}");
            http(&endpoint, true, true).unwrap();
            assert!(http(&endpoint, false, true).is_err());
        }
        // https with allow_http is harmless on loopback, and governed by the setting elsewhere.
        http("https://127.0.0.1", true, false).unwrap();
        assert!(http("https://s3.example.com", true, false).is_err());
        let e = parse(json!({"allow_http": true})).unwrap_err();
        assert!(e.hint.contains(ALLOW_HTTP_SETTING), "{e:?}");
        StorageOptions::from_json(&s3_url(), &json!({"allow_http": true}), true).unwrap();
    }

    #[test]
    fn ip_endpoints_need_path_style() {
        let e = parse(json!({"endpoint": "https://10.1.2.3:9000"})).unwrap_err();
        assert!(
            e.message.contains("10.1.2.3") && e.hint.contains("path_style"),
            "{e:?}"
        );
        parse(json!({"endpoint": "https://10.1.2.3:9000", "path_style": true})).unwrap();
        let o = parse(json!({"endpoint": "https://s3.example.com"})).unwrap();
        assert!(!o.path_style);
    }

    #[test]
    fn bad_values() {
        for (options, needle) in [
            (json!({"endpoint": 5}), "endpoint"),
            (json!({"endpoint": "s3.example.com"}), "s3.example.com"),
            (json!({"endpoint": "ftp://s3.example.com"}), "ftp"),
            (json!({"endpoint": "https://s3.example.com/x"}), "/x"),
            (json!({"endpoint": "https://s3.example.com?a=b"}), "a=b"),
            (json!({"endpoint": "https://"}), "https://"),
            (json!({"region": ""}), "region"),
            (json!({"region": 1}), "region"),
            (json!({"region": "eu west"}), "eu west"),
            (json!({"path_style": "true"}), "path_style"),
            (json!({"allow_http": 1}), "allow_http"),
            (json!({"profile": null}), "profile"),
            (json!({"profile": "[x]"}), "[x]"),
            (json!({"part_size": 5 * MIB - 1}), "5242879"),
            (json!({"part_size": 512 * MIB + 1}), "536870913"),
            (json!({"part_size": 6291456.5}), "6291456.5"),
            (json!({"part_size": -1}), "-1"),
            (json!({"part_size": "16MiB"}), "16MiB"),
            (json!({"bucket": "x"}), "bucket"),
            (json!([]), "[]"),
            (json!("x"), "\"x\""),
        ] {
            let e = parse(options.clone()).unwrap_err();
            assert_eq!(e.kind, ErrorKind::InvalidParameter, "{options}");
            assert!(e.message.contains(needle), "{options}: {e:?}");
        }
        let e = parse(json!({"bucket": "x"})).unwrap_err();
        assert!(e.hint.contains("endpoint, region, path_style"), "{e:?}");
    }

    #[test]
    fn endpoint_passwords_are_not_repeated() {
        let e = parse(json!({"endpoint": "https://user:hunter2@s3.example.com"})).unwrap_err();
        assert!(!format!("{e:?}").contains("hunter2"), "{e:?}");
        let e = parse(json!({"endpoint": "https://AKIAXXX@s3.example.com"})).unwrap_err();
        assert!(!format!("{e:?}").contains("AKIAXXX"), "{e:?}");
    }

    #[test]
    fn file_takes_no_options() {
        let url = StorageUrl::parse("file:///var/b").unwrap();
        assert_eq!(
            StorageOptions::from_json(&url, &json!({}), false).unwrap(),
            StorageOptions::File
        );
        assert_eq!(StorageOptions::File.to_public_json(), json!({}));
        let e = StorageOptions::from_json(&url, &json!({"region": "x"}), false).unwrap_err();
        assert!(e.message.contains("\"region\"") && e.message.contains("file:///var/b"));
        assert!(StorageOptions::from_json(&url, &json!(null), false).is_err());
    }
}
