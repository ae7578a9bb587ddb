//! SecureVault's backups in an S3-compatible bucket, through `object_store`
//! (request signing, retries, multipart uploads), and what a failure means to
//! the person who configured it: a missing bucket, refused credentials and an
//! endpoint that does not answer each get a message of their own, with a
//! stable reason. The data plane writes and reads backups with it; the
//! operator lists them to report the newest one's age and any problem.
//!
//! A backup's name carries the time of its snapshot ([`names`]), so name
//! order is time order, and the newest name is the latest backup.

pub mod names;

use std::{path::Path, sync::Arc, time::Duration};

use futures::TryStreamExt;
use object_store::{
    ClientOptions, ObjectStore, ObjectStoreExt, RetryConfig,
    aws::AmazonS3Builder,
    buffered::BufWriter,
    client::{HttpError, HttpErrorKind},
    path::Path as ObjectPath,
};
use tokio::io::AsyncWriteExt;

use url::Url;

/// Parts of a large upload are this big: what one backup holds in memory.
const PART_BYTES: usize = 8 * 1024 * 1024;

/// Where a bucket is and how to reach it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BucketConfig {
    /// `http(s)://host:port`; `None` for AWS S3 itself.
    pub endpoint: Option<Url>,
    /// The bucket's name.
    pub bucket: String,
    /// Region the bucket is in.
    pub region: String,
    /// Folder of the backups: empty, or ending in `/`.
    pub prefix: String,
    /// The access key, when the bucket needs one.
    pub credentials: Option<Credentials>,
}

/// An access key id and its secret; `Debug` shows neither.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    /// The access key id.
    pub access_key_id: String,
    /// The secret access key.
    pub secret_access_key: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Credentials(***)")
    }
}

/// Why the bucket failed us.
#[derive(Debug, thiserror::Error)]
pub enum BucketError {
    /// No such bucket at the endpoint.
    #[error("bucket `{bucket}` does not exist at {endpoint}: create it, or fix BACKUP_S3_BUCKET")]
    NotFound {
        /// The bucket.
        bucket: String,
        /// The endpoint.
        endpoint: String,
    },
    /// The endpoint refused the access key or its signature.
    #[error(
        "{endpoint} refused the credentials for bucket `{bucket}` ({code}): check BACKUP_S3_ACCESS_KEY_ID and BACKUP_S3_SECRET_ACCESS_KEY"
    )]
    CredentialsRefused {
        /// The bucket.
        bucket: String,
        /// The endpoint.
        endpoint: String,
        /// The S3 error code, such as `InvalidAccessKeyId`.
        code: String,
    },
    /// Nothing answered at the endpoint.
    #[error("{endpoint} cannot be reached ({detail}): check BACKUP_S3_ENDPOINT")]
    Unreachable {
        /// The endpoint.
        endpoint: String,
        /// Connection refused, timed out, …
        detail: String,
    },
    /// Any other failure of the object store.
    #[error("{endpoint}: {detail}")]
    Failed {
        /// The endpoint.
        endpoint: String,
        /// What the object store said.
        detail: String,
    },
    /// A local file could not be read or written.
    #[error("{path}: {source}")]
    File {
        /// The file.
        path: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

impl BucketError {
    /// A stable name for the problem (metric label, condition reason).
    pub fn reason(&self) -> &'static str {
        match self {
            Self::NotFound { .. } => "BucketNotFound",
            Self::CredentialsRefused { .. } => "CredentialsRefused",
            Self::Unreachable { .. } => "EndpointUnreachable",
            Self::Failed { .. } => "BucketFailed",
            Self::File { .. } => "LocalFileFailed",
        }
    }
}

/// A bucket and the folder of the backups in it.
pub struct Bucket {
    store: Arc<dyn ObjectStore>,
    name: String,
    prefix: String,
    endpoint: String,
}

impl Bucket {
    /// A client for the bucket; nothing is sent before the first call.
    pub fn new(config: &BucketConfig) -> Result<Self, BucketError> {
        let endpoint = config.endpoint.as_ref().map_or_else(
            || format!("https://s3.{}.amazonaws.com", config.region),
            |e| e.as_str().trim_end_matches('/').to_owned(),
        );
        // reqwest is built without a TLS provider here (`rustls-no-provider`
        // in the workspace); ring is the one every SecureVault client uses.
        // A second install is a no-op.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let mut builder = AmazonS3Builder::new()
            .with_bucket_name(&config.bucket)
            .with_region(&config.region)
            // A backup is retried on the next round anyway: a few quick
            // retries here, not object_store's three minutes.
            .with_retry(RetryConfig {
                max_retries: 3,
                retry_timeout: Duration::from_secs(30),
                ..RetryConfig::default()
            })
            .with_client_options(
                ClientOptions::new()
                    .with_connect_timeout(Duration::from_secs(5))
                    .with_timeout(Duration::from_secs(300))
                    .with_allow_http(true),
            );
        if let Some(url) = &config.endpoint {
            // Path-style requests (`endpoint/bucket/key`): what every
            // S3-compatible server understands, without DNS per bucket.
            builder = builder
                .with_endpoint(url.as_str().trim_end_matches('/'))
                .with_virtual_hosted_style_request(false);
        }
        if let Some(c) = &config.credentials {
            builder = builder
                .with_access_key_id(&c.access_key_id)
                .with_secret_access_key(&c.secret_access_key);
        }
        let store = builder.build().map_err(|e| BucketError::Failed {
            endpoint: endpoint.clone(),
            detail: e.to_string(),
        })?;
        Ok(Self {
            store: Arc::new(store),
            name: config.bucket.clone(),
            prefix: config.prefix.clone(),
            endpoint,
        })
    }

    /// `s3://bucket/prefix at endpoint`.
    pub fn describe(&self) -> String {
        format!("s3://{}/{} at {}", self.name, self.prefix, self.endpoint)
    }

    fn path(&self, name: &str) -> ObjectPath {
        ObjectPath::from(format!("{}{name}", self.prefix))
    }

    /// Names of the objects directly in the folder.
    pub async fn names(&self) -> Result<Vec<String>, BucketError> {
        let folder = ObjectPath::from(self.prefix.trim_end_matches('/'));
        let listed = self
            .store
            .list_with_delimiter(Some(&folder))
            .await
            .map_err(|e| self.classify(e))?;
        Ok(listed
            .objects
            .into_iter()
            .filter_map(|o| o.location.filename().map(str::to_owned))
            .collect())
    }

    /// Uploads the file at `from` as `name`, in parts.
    pub async fn upload(&self, from: &Path, name: &str) -> Result<(), BucketError> {
        let file_error = |source| BucketError::File {
            path: from.display().to_string(),
            source,
        };
        let mut file = tokio::fs::File::open(from).await.map_err(file_error)?;
        let mut writer = BufWriter::with_capacity(self.store.clone(), self.path(name), PART_BYTES);
        if let Err(e) = tokio::io::copy(&mut file, &mut writer).await {
            let _ = writer.abort().await;
            return Err(self.classify_io(e));
        }
        writer.shutdown().await.map_err(|e| self.classify_io(e))
    }

    /// Downloads `name` into `to`, a file the caller opened (and made
    /// private: a backup holds password hashes and mail), and flushes it
    /// to disk.
    pub async fn download(&self, name: &str, to: &mut std::fs::File) -> Result<(), BucketError> {
        let file_error = |source| BucketError::File {
            path: name.to_owned(),
            source,
        };
        let got = self
            .store
            .get(&self.path(name))
            .await
            .map_err(|e| self.classify(e))?;
        let mut chunks = got.into_stream();
        while let Some(chunk) = chunks.try_next().await.map_err(|e| self.classify(e))? {
            std::io::Write::write_all(to, &chunk).map_err(file_error)?;
        }
        to.sync_all().map_err(file_error)
    }

    /// Deletes `name`.
    pub async fn delete(&self, name: &str) -> Result<(), BucketError> {
        self.store
            .delete(&self.path(name))
            .await
            .map_err(|e| self.classify(e))
    }

    /// `BufWriter` reports the store's errors inside an `io::Error`.
    fn classify_io(&self, e: std::io::Error) -> BucketError {
        match e.into_inner() {
            Some(inner) => match inner.downcast::<object_store::Error>() {
                Ok(store_error) => self.classify(*store_error),
                Err(other) => self.failed(other.to_string()),
            },
            None => self.failed("the upload failed".into()),
        }
    }

    /// What a failure means, from the S3 error code in the answer or the
    /// HTTP client's error kind.
    fn classify(&self, e: object_store::Error) -> BucketError {
        let text = chain(&e);
        if text.contains("NoSuchBucket") {
            return BucketError::NotFound {
                bucket: self.name.clone(),
                endpoint: self.endpoint.clone(),
            };
        }
        for code in [
            "InvalidAccessKeyId",
            "SignatureDoesNotMatch",
            "AccessDenied",
        ] {
            if text.contains(code) {
                return BucketError::CredentialsRefused {
                    bucket: self.name.clone(),
                    endpoint: self.endpoint.clone(),
                    code: code.into(),
                };
            }
        }
        if let Some(kind) = http_error_kind(&e)
            && matches!(kind, HttpErrorKind::Connect | HttpErrorKind::Timeout)
        {
            let detail = if kind == HttpErrorKind::Timeout {
                "timed out".to_owned()
            } else {
                last_source(&e)
            };
            return BucketError::Unreachable {
                endpoint: self.endpoint.clone(),
                detail,
            };
        }
        self.failed(text)
    }

    fn failed(&self, detail: String) -> BucketError {
        BucketError::Failed {
            endpoint: self.endpoint.clone(),
            detail,
        }
    }
}

/// Every message of the error's chain, joined.
fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

/// The innermost message: `Connection refused (os error 111)` rather than
/// the layers of retries around it.
fn last_source(e: &(dyn std::error::Error + 'static)) -> String {
    let mut last = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        last = s.to_string();
        source = s.source();
    }
    last
}

fn http_error_kind(e: &(dyn std::error::Error + 'static)) -> Option<HttpErrorKind> {
    let mut source = e.source();
    while let Some(s) = source {
        if let Some(http) = s.downcast_ref::<HttpError>() {
            return Some(http.kind());
        }
        source = s.source();
    }
    None
}
