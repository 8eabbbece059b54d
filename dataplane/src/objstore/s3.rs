//! S3 backend (`aws-sdk-s3`): AWS S3 or any S3-compatible server.
//!
//! `s3://BUCKET/PREFIX` names the bucket and an optional key prefix; the
//! environment supplies the rest: `SKYVAULT_S3_ENDPOINT` (for non-AWS
//! servers), `SKYVAULT_S3_REGION` (default `us-east-1`),
//! `SKYVAULT_S3_PATH_STYLE` (`true` for most non-AWS servers), and
//! credentials through the standard AWS chain (`AWS_ACCESS_KEY_ID` /
//! `AWS_SECRET_ACCESS_KEY`, web identity, profile, instance metadata).
//!
//! Every request has a per-attempt timeout and is retried with exponential
//! backoff by the SDK; what still fails is mapped to [`StoreError`]:
//! a missing object to `NotFound`, a missing bucket or rejected credentials to
//! `Rejected` (a configuration error: retrying cannot help), the rest
//! (timeouts, 5xx, connection failures) to `Unavailable`.

use super::s3_multipart::S3Upload;
use super::{BoxUpload, ObjectMeta, ObjectStore, StoreError, StoreResult, check_path};
use async_trait::async_trait;
use aws_config::BehaviorVersion;
use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_sdk_s3::Client;
use aws_sdk_s3::config::Region;
use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_s3::primitives::ByteStream;
use aws_smithy_http_client::tls::{Provider, rustls_provider::CryptoMode};
use bytes::Bytes;
use std::ops::Range;
use std::time::{Duration, SystemTime};

/// Where and how to reach the bucket.
#[derive(Clone, Debug)]
pub struct S3Config {
    pub bucket: String,
    /// Key prefix without leading or trailing `/` (may be empty).
    pub prefix: String,
    pub endpoint: Option<String>,
    pub region: String,
    pub path_style: bool,
    pub max_attempts: u32,
    /// One HTTP attempt; a hung server costs at most this per attempt.
    pub attempt_timeout: Duration,
    /// The whole operation, retries included.
    pub operation_timeout: Duration,
}

impl S3Config {
    /// Parses `s3://BUCKET[/PREFIX]` and reads the `SKYVAULT_S3_*` variables.
    pub fn from_url_and_env(url: &str) -> Result<Self, StoreError> {
        let bad = |reason: &str| StoreError::Rejected(format!("invalid S3 URL {url:?}: {reason}"));
        let rest = url
            .strip_prefix("s3://")
            .ok_or_else(|| bad("expected s3://BUCKET/PREFIX"))?;
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        if bucket.is_empty() {
            return Err(bad("empty bucket name"));
        }
        let env = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        let path_style = match env("SKYVAULT_S3_PATH_STYLE").as_deref() {
            None | Some("false") | Some("0") => false,
            Some("true") | Some("1") => true,
            Some(other) => {
                return Err(StoreError::Rejected(format!(
                    "SKYVAULT_S3_PATH_STYLE={other:?}: expected true or false"
                )));
            }
        };
        Ok(S3Config {
            bucket: bucket.into(),
            prefix: prefix.trim_matches('/').into(),
            endpoint: env("SKYVAULT_S3_ENDPOINT"),
            region: env("SKYVAULT_S3_REGION").unwrap_or_else(|| "us-east-1".into()),
            path_style,
            max_attempts: 4,
            attempt_timeout: Duration::from_secs(5),
            operation_timeout: Duration::from_secs(20),
        })
    }
}

pub struct S3Store {
    pub(super) client: Client,
    pub(super) config: S3Config,
}

impl S3Store {
    pub async fn open(config: S3Config) -> Self {
        // rustls with ring: no aws-lc-sys build, and the same TLS stack as
        // the rest of the workspace.
        let http = aws_smithy_http_client::Builder::new()
            .tls_provider(Provider::Rustls(CryptoMode::Ring))
            .build_https();
        let retry = RetryConfig::standard()
            .with_max_attempts(config.max_attempts)
            .with_initial_backoff(Duration::from_millis(50))
            .with_max_backoff(Duration::from_secs(2));
        let timeouts = TimeoutConfig::builder()
            .connect_timeout(Duration::from_secs(2))
            .operation_attempt_timeout(config.attempt_timeout)
            .operation_timeout(config.operation_timeout)
            .build();
        let shared = aws_config::defaults(BehaviorVersion::latest())
            .http_client(http)
            .region(Region::new(config.region.clone()))
            .retry_config(retry)
            .timeout_config(timeouts)
            .load()
            .await;
        let mut s3 = aws_sdk_s3::config::Builder::from(&shared).force_path_style(config.path_style);
        if let Some(endpoint) = &config.endpoint {
            s3 = s3.endpoint_url(endpoint);
        }
        S3Store {
            client: Client::from_conf(s3.build()),
            config,
        }
    }

    /// `get_suffix` without a suffix range: HEAD for the size, then a range.
    async fn suffix_via_head(&self, path: &str, len: u64) -> StoreResult<(Bytes, u64)> {
        let head = self
            .client
            .head_object()
            .bucket(&self.config.bucket)
            .key(self.key(path))
            .send()
            .await
            .map_err(|e| self.error(path, e))?;
        let size = head.content_length().unwrap_or(0).max(0) as u64;
        if size == 0 {
            return Ok((Bytes::new(), 0));
        }
        let data = self.get_range(path, size.saturating_sub(len)..size).await?;
        Ok((data, size))
    }

    pub(super) fn key(&self, path: &str) -> String {
        if self.config.prefix.is_empty() {
            path.to_string()
        } else {
            format!("{}/{path}", self.config.prefix)
        }
    }

    /// Maps an SDK failure on `path` to a store error (see the module docs).
    pub(super) fn error<E>(
        &self,
        path: &str,
        err: SdkError<E, aws_sdk_s3::config::http::HttpResponse>,
    ) -> StoreError
    where
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    {
        let bucket = &self.config.bucket;
        let status = err.raw_response().map(|r| r.status().as_u16());
        let code = err.code().map(str::to_string);
        match (code.as_deref(), status) {
            (Some("NoSuchBucket"), _) => StoreError::Rejected(format!(
                "bucket {bucket:?} does not exist (endpoint {}); create it or fix the s3:// URL",
                self.endpoint()
            )),
            (Some("NoSuchKey"), _) | (None, Some(404)) => {
                StoreError::NotFound { path: path.into() }
            }
            // The caller knows the range it asked for and fills it in.
            (Some("InvalidRange"), _) | (_, Some(416)) => StoreError::BadRange {
                path: path.into(),
                start: 0,
                end: 0,
                size: 0,
            },
            // MinIO's full drives and bucket quotas, Ceph's quotas (a 403!)
            // and WebDAV's 507 Insufficient Storage.
            (Some("XMinioStorageFull" | "XMinioAdminBucketQuotaExceeded" | "QuotaExceeded"), _)
            | (_, Some(507)) => StoreError::NoSpace {
                path: path.into(),
                detail: format!(
                    "S3 {} answered {}",
                    self.endpoint(),
                    code.as_deref().unwrap_or("HTTP 507")
                ),
            },
            (code, Some(401 | 403))
            | (code @ Some("InvalidAccessKeyId" | "SignatureDoesNotMatch"), _) => {
                StoreError::Rejected(format!(
                    "S3 rejected the credentials for bucket {bucket:?} ({}): check \
                     AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY or the credentials Secret",
                    code.unwrap_or("HTTP 403")
                ))
            }
            _ => StoreError::Unavailable(format!(
                "S3 {} on {bucket}/{}: {}",
                self.endpoint(),
                self.key(path),
                aws_sdk_s3::error::DisplayErrorContext(&err)
            )),
        }
    }

    fn endpoint(&self) -> &str {
        self.config.endpoint.as_deref().unwrap_or("AWS")
    }

    async fn get_object(
        &self,
        path: &str,
        range: Option<String>,
    ) -> StoreResult<(Bytes, Option<u64>)> {
        check_path(path)?;
        let out = self
            .client
            .get_object()
            .bucket(&self.config.bucket)
            .key(self.key(path))
            .set_range(range)
            .send()
            .await
            .map_err(|e| self.error(path, e))?;
        let total = out.content_range().and_then(total_from_content_range);
        let data = out
            .body
            .collect()
            .await
            .map_err(|e| StoreError::Unavailable(format!("reading S3 object {path:?}: {e}")))?
            .into_bytes();
        Ok((data, total))
    }
}

/// The object size from a `Content-Range: bytes a-b/SIZE` header.
fn total_from_content_range(header: &str) -> Option<u64> {
    header.rsplit_once('/')?.1.trim().parse().ok()
}

fn is_invalid_range(err: &StoreError) -> bool {
    matches!(err, StoreError::BadRange { .. })
}

#[async_trait]
impl ObjectStore for S3Store {
    async fn put(&self, path: &str, data: Bytes) -> StoreResult<()> {
        check_path(path)?;
        self.client
            .put_object()
            .bucket(&self.config.bucket)
            .key(self.key(path))
            .body(ByteStream::from(data))
            .send()
            .await
            .map_err(|e| self.error(path, e))?;
        Ok(())
    }

    async fn upload<'a>(&'a self, path: &str) -> StoreResult<BoxUpload<'a>> {
        check_path(path)?;
        Ok(Box::new(S3Upload::new(self, path)))
    }

    async fn get(&self, path: &str) -> StoreResult<Bytes> {
        Ok(self.get_object(path, None).await?.0)
    }

    async fn get_range(&self, path: &str, range: Range<u64>) -> StoreResult<Bytes> {
        if range.start >= range.end {
            return Ok(Bytes::new());
        }
        let header = format!("bytes={}-{}", range.start, range.end - 1);
        let result = self.get_object(path, Some(header)).await;
        let bad = |size| StoreError::BadRange {
            path: path.into(),
            start: range.start,
            end: range.end,
            size,
        };
        match result {
            // S3 clips a range past the end instead of failing: check it.
            Ok((data, total)) if data.len() as u64 != range.end - range.start => {
                Err(bad(total.unwrap_or(data.len() as u64)))
            }
            Ok((data, _)) => Ok(data),
            // 416: the range starts at or past the end.
            Err(e) if is_invalid_range(&e) => Err(bad(0)),
            Err(e) => Err(e),
        }
    }

    async fn get_suffix(&self, path: &str, len: u64) -> StoreResult<(Bytes, u64)> {
        if len > 0 {
            match self.get_object(path, Some(format!("bytes=-{len}"))).await {
                Ok((data, Some(total))) => return Ok((data, total)),
                // No Content-Range: the server sent the whole object.
                Ok((data, None)) => {
                    let size = data.len() as u64;
                    let keep = data.len().saturating_sub(len as usize);
                    return Ok((data.slice(keep..), size));
                }
                // An empty object has no satisfiable suffix: read it whole below.
                Err(e) if is_invalid_range(&e) => {}
                // Some S3-compatible servers (s3s-fs) fail suffix ranges: ask
                // for the size, then an explicit range; keep the first error
                // if that fails too.
                Err(e @ StoreError::Unavailable(_)) => {
                    return self.suffix_via_head(path, len).await.map_err(|_| e);
                }
                Err(e) => return Err(e),
            }
        }
        let data = self.get(path).await?;
        let size = data.len() as u64;
        let keep = data.len().saturating_sub(len as usize);
        Ok((data.slice(keep..), size))
    }

    async fn delete(&self, path: &str) -> StoreResult<()> {
        check_path(path)?;
        self.client
            .delete_object()
            .bucket(&self.config.bucket)
            .key(self.key(path))
            .send()
            .await
            .map_err(|e| self.error(path, e))?;
        Ok(())
    }

    async fn list(&self, prefix: &str) -> StoreResult<Vec<ObjectMeta>> {
        let root = if self.config.prefix.is_empty() {
            String::new()
        } else {
            format!("{}/", self.config.prefix)
        };
        let mut objects = Vec::new();
        let mut token: Option<String> = None;
        let listed_at = SystemTime::now();
        loop {
            let page = self
                .client
                .list_objects_v2()
                .bucket(&self.config.bucket)
                .prefix(format!("{root}{prefix}"))
                .set_continuation_token(token.take())
                .send()
                .await
                .map_err(|e| self.error(prefix, e))?;
            for object in page.contents() {
                let Some(key) = object.key() else { continue };
                let Some(path) = key.strip_prefix(&root) else {
                    continue;
                };
                let last_modified = listed_time(object.last_modified(), listed_at);
                objects.push(ObjectMeta {
                    path: path.to_string(),
                    size: object.size().unwrap_or(0).max(0) as u64,
                    last_modified,
                });
            }
            match page.next_continuation_token() {
                Some(next) if page.is_truncated() == Some(true) => token = Some(next.into()),
                _ => break,
            }
        }
        Ok(objects)
    }

    fn describe(&self) -> String {
        let mut url = format!("s3://{}/{}", self.config.bucket, self.config.prefix);
        if let Some(endpoint) = &self.config.endpoint {
            url.push_str(&format!(" at {endpoint}"));
        }
        url
    }
}

/// An object's modification time as listed. A missing or unrepresentable
/// `LastModified` counts as "just written" (`listed_at`): purge deletes only
/// objects older than its grace period, so an unknown age must mean young,
/// never ancient.
fn listed_time(
    last_modified: Option<&aws_sdk_s3::primitives::DateTime>,
    listed_at: SystemTime,
) -> SystemTime {
    last_modified
        .and_then(|t| SystemTime::try_from(*t).ok())
        .unwrap_or(listed_at)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_modification_time_counts_as_young() {
        let now = SystemTime::now();
        assert_eq!(listed_time(None, now), now);
        // Beyond what SystemTime holds: unrepresentable, so unknown.
        let unrepresentable = aws_sdk_s3::primitives::DateTime::from_secs(i64::MIN);
        if SystemTime::try_from(unrepresentable).is_err() {
            assert_eq!(listed_time(Some(&unrepresentable), now), now);
        }
        let known = aws_sdk_s3::primitives::DateTime::from_secs(1_000_000_000);
        assert_eq!(
            listed_time(Some(&known), now),
            SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000_000)
        );
    }

    #[test]
    fn content_range_gives_the_size() {
        assert_eq!(total_from_content_range("bytes 0-99/1234"), Some(1234));
        assert_eq!(total_from_content_range("bytes */1234"), Some(1234));
        assert_eq!(total_from_content_range("bytes 0-99/*"), None);
    }

    #[test]
    fn urls_name_bucket_and_prefix() {
        let c = S3Config::from_url_and_env("s3://bucket/a/b/").unwrap();
        assert_eq!((c.bucket.as_str(), c.prefix.as_str()), ("bucket", "a/b"));
        let c = S3Config::from_url_and_env("s3://bucket").unwrap();
        assert_eq!((c.bucket.as_str(), c.prefix.as_str()), ("bucket", ""));
        assert!(S3Config::from_url_and_env("s3:///x").is_err());
        assert!(S3Config::from_url_and_env("file:///x").is_err());
    }
}
