//! Where the backups live: `gs://bucket[/prefix]` or `file:///dir`.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

/// A parsed `--bucket` argument.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BucketUrl {
    /// A Google Cloud Storage bucket; `prefix` is empty or ends in `/`.
    Gcs { bucket: String, prefix: String },
    /// A local directory standing in for a bucket.
    File { root: PathBuf },
    /// A store held in memory, for tests ([`super::Store::in_memory`]);
    /// never parsed from an argument.
    Memory { name: String },
}

impl BucketUrl {
    /// The URL of `folder` in the same bucket: a name in the bucket (for
    /// `gs://`) or an absolute path (for `file://`), without a trailing `/`.
    pub fn sibling(&self, folder: &str) -> String {
        match self {
            BucketUrl::Gcs { bucket, .. } => format!("gs://{bucket}/{folder}"),
            BucketUrl::File { .. } => format!("file://{folder}"),
            BucketUrl::Memory { name } => format!("memory://{name}/{folder}"),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("bucket URL {url:?} {why}; expected gs://bucket[/prefix] or file:///absolute/dir")]
pub struct BadBucketUrl {
    url: String,
    why: &'static str,
}

impl FromStr for BucketUrl {
    type Err = BadBucketUrl;

    fn from_str(url: &str) -> Result<Self, Self::Err> {
        let bad = |why| BadBucketUrl {
            url: url.to_owned(),
            why,
        };
        if let Some(rest) = url.strip_prefix("gs://") {
            let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
            let valid_bucket = !bucket.is_empty()
                && bucket
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-_.".contains(&b));
            if !valid_bucket {
                return Err(bad(
                    "has no valid bucket name (lower-case letters, digits, - _ .)",
                ));
            }
            let prefix = prefix.trim_matches('/');
            if prefix.split('/').any(|part| part == "." || part == "..") {
                return Err(bad("has a prefix with . or .. in it"));
            }
            let prefix = if prefix.is_empty() {
                String::new()
            } else {
                format!("{prefix}/")
            };
            return Ok(BucketUrl::Gcs {
                bucket: bucket.to_owned(),
                prefix,
            });
        }
        if let Some(path) = url.strip_prefix("file://") {
            if !path.starts_with('/') {
                return Err(bad("is not an absolute path"));
            }
            return Ok(BucketUrl::File {
                root: PathBuf::from(path),
            });
        }
        Err(bad("has an unknown scheme"))
    }
}

impl fmt::Display for BucketUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BucketUrl::Gcs { bucket, prefix } if prefix.is_empty() => write!(f, "gs://{bucket}"),
            BucketUrl::Gcs { bucket, prefix } => {
                write!(f, "gs://{bucket}/{}", prefix.trim_end_matches('/'))
            }
            BucketUrl::File { root } => write!(f, "file://{}", root.display()),
            BucketUrl::Memory { name } => write!(f, "memory://{name}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_buckets_with_and_without_prefix() {
        assert_eq!(
            "gs://my-bucket".parse(),
            Ok(BucketUrl::Gcs {
                bucket: "my-bucket".into(),
                prefix: String::new()
            })
        );
        assert_eq!(
            "gs://b/a/b/".parse(),
            Ok(BucketUrl::Gcs {
                bucket: "b".into(),
                prefix: "a/b/".into()
            })
        );
        assert_eq!(
            "file:///var/backups".parse(),
            Ok(BucketUrl::File {
                root: "/var/backups".into()
            })
        );
    }

    #[test]
    fn rejects_what_it_cannot_use_and_says_why() {
        for (url, why) in [
            ("s3://b", "unknown scheme"),
            ("gs://", "no valid bucket"),
            ("gs://Upper", "no valid bucket"),
            ("gs://b/../x", "prefix with . or .."),
            ("file://relative/dir", "not an absolute path"),
        ] {
            let err = url.parse::<BucketUrl>().unwrap_err().to_string();
            assert!(err.contains(why), "{url}: {err}");
            assert!(err.contains(url), "{url}: {err}");
        }
    }

    #[test]
    fn displays_as_given() {
        for url in ["gs://b", "gs://b/p/q", "file:///tmp/x"] {
            let parsed: BucketUrl = url.parse().unwrap();
            assert_eq!(parsed.to_string(), url);
        }
    }
}
