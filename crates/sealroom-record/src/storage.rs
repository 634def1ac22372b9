//! The customer's storage, through `object_store`: a local directory (`file:///path`) or
//! any S3-compatible endpoint (`s3://bucket/prefix`), chosen by URL, with credentials and
//! endpoint from the options (or the standard `AWS_*` environment variables).
//!
//! Every operation is attempted once with a timeout; retrying with backoff is the
//! recorder's decision ([`crate::recorder`]), so an outage shows in its counters and logs.

use std::collections::BTreeMap;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::TryStreamExt;
use object_store::aws::{AmazonS3Builder, AmazonS3ConfigKey};
use object_store::local::LocalFileSystem;
use object_store::path::Path as ObjectPath;
use object_store::{ClientOptions, ObjectStore, ObjectStoreExt, PutPayload, RetryConfig};
use url::Url;

/// Where recordings go.
#[derive(Clone, Default, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct StorageConfig {
    /// `file:///absolute/dir` or `s3://bucket[/prefix]`.
    pub url: String,
    /// S3 settings by `object_store` name (`endpoint`, `region`, `access_key_id`,
    /// `secret_access_key`, `allow_http`, ...); `AWS_*` environment variables fill in
    /// what is not given here.
    #[serde(default)]
    pub options: BTreeMap<String, String>,
    /// Timeout of one request, in milliseconds (default 10 000).
    #[serde(default)]
    pub timeout_ms: Option<u64>,
}

impl std::fmt::Debug for StorageConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Option values may be credentials: only their names are shown.
        f.debug_struct("StorageConfig")
            .field("url", &self.url)
            .field("options", &self.options.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

impl StorageConfig {
    /// Storage at `url` with no options.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            ..Self::default()
        }
    }

    /// Set one option (see [`StorageConfig::options`]).
    #[must_use]
    pub fn option(mut self, key: &str, value: impl Into<String>) -> Self {
        self.options.insert(key.to_owned(), value.into());
        self
    }
}

/// Why storage could not be set up or used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StorageError {
    /// The URL does not parse or has an unsupported scheme.
    #[error("storage url {url:?}: {detail} (use file:///absolute/dir or s3://bucket/prefix)")]
    BadUrl {
        /// The URL given.
        url: String,
        /// What is wrong.
        detail: String,
    },
    /// An option name `object_store` does not know, or a value it refuses.
    #[error("storage option {0:?} is not an S3 setting object_store knows")]
    BadOption(String),
    /// The store could not be built (a local directory that cannot be created, ...).
    #[error("storage at {url}: {detail}")]
    Setup {
        /// The URL.
        url: String,
        /// What failed.
        detail: String,
    },
    /// A request failed or timed out.
    #[error("storage request for {object} failed: {detail}")]
    Request {
        /// The object.
        object: String,
        /// What failed.
        detail: String,
    },
}

/// A recording's place in the customer's storage: a store and the recording's prefix.
#[derive(Debug, Clone)]
pub struct Storage {
    store: Arc<dyn ObjectStore>,
    prefix: ObjectPath,
    timeout: Duration,
    describe: String,
}

impl Storage {
    /// Open the storage for the recording at `recording` under the configured URL.
    ///
    /// # Errors
    /// [`StorageError`] when the URL, an option or the store is not usable.
    pub fn open(config: &StorageConfig, recording: &str) -> Result<Self, StorageError> {
        let bad = |detail: String| StorageError::BadUrl {
            url: config.url.clone(),
            detail,
        };
        let url = Url::parse(&config.url).map_err(|e| bad(e.to_string()))?;
        let timeout = Duration::from_millis(config.timeout_ms.unwrap_or(10_000));
        let (store, base): (Arc<dyn ObjectStore>, String) = match url.scheme() {
            "file" => {
                let dir = url
                    .to_file_path()
                    .map_err(|()| bad(String::from("not an absolute local path")))?;
                std::fs::create_dir_all(&dir).map_err(|e| StorageError::Setup {
                    url: config.url.clone(),
                    detail: e.to_string(),
                })?;
                let local =
                    LocalFileSystem::new_with_prefix(&dir).map_err(|e| StorageError::Setup {
                        url: config.url.clone(),
                        detail: e.to_string(),
                    })?;
                (Arc::new(local), String::new())
            }
            "s3" => {
                let mut builder = AmazonS3Builder::from_env()
                    .with_url(config.url.as_str())
                    .with_retry(RetryConfig {
                        max_retries: 0,
                        ..RetryConfig::default()
                    })
                    .with_client_options(
                        ClientOptions::new()
                            .with_timeout(timeout)
                            .with_connect_timeout(timeout),
                    );
                for (key, value) in &config.options {
                    let key = AmazonS3ConfigKey::from_str(key)
                        .map_err(|_| StorageError::BadOption(key.clone()))?;
                    builder = builder.with_config(key, value);
                }
                let s3 = builder.build().map_err(|e| StorageError::Setup {
                    url: config.url.clone(),
                    detail: e.to_string(),
                })?;
                (Arc::new(s3), url.path().trim_matches('/').to_owned())
            }
            other => return Err(bad(format!("unsupported scheme {other:?}"))),
        };
        let joined = [base.as_str(), recording.trim_matches('/')]
            .iter()
            .filter(|p| !p.is_empty())
            .copied()
            .collect::<Vec<_>>()
            .join("/");
        let prefix = ObjectPath::parse(&joined).map_err(|e| bad(e.to_string()))?;
        Ok(Self {
            store,
            prefix,
            timeout,
            describe: format!("{}/{}", config.url.trim_end_matches('/'), recording),
        })
    }

    /// The recording's location, for messages.
    pub fn describe(&self) -> &str {
        &self.describe
    }

    fn path(&self, name: &str) -> ObjectPath {
        let mut path = self.prefix.clone();
        for part in name.split('/') {
            path = path.join(part);
        }
        path
    }

    fn failed(&self, name: &str, detail: impl ToString) -> StorageError {
        StorageError::Request {
            object: format!("{}/{name}", self.describe),
            detail: detail.to_string(),
        }
    }

    /// Store `bytes` as the object `name` under the recording's prefix.
    ///
    /// # Errors
    /// [`StorageError::Request`] when the request fails or times out.
    pub async fn put(&self, name: &str, bytes: Bytes) -> Result<(), StorageError> {
        let path = self.path(name);
        let put = self.store.put(&path, PutPayload::from(bytes));
        match tokio::time::timeout(self.timeout, put).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(self.failed(name, e)),
            Err(_) => Err(self.failed(name, "timed out")),
        }
    }

    /// The object `name`, or `None` when it does not exist.
    ///
    /// # Errors
    /// [`StorageError::Request`] when the request fails or times out.
    pub async fn get(&self, name: &str) -> Result<Option<Bytes>, StorageError> {
        let path = self.path(name);
        let get = async {
            match self.store.get(&path).await {
                Ok(result) => result.bytes().await.map(Some),
                Err(object_store::Error::NotFound { .. }) => Ok(None),
                Err(e) => Err(e),
            }
        };
        match tokio::time::timeout(self.timeout, get).await {
            Ok(Ok(bytes)) => Ok(bytes),
            Ok(Err(e)) => Err(self.failed(name, e)),
            Err(_) => Err(self.failed(name, "timed out")),
        }
    }

    /// The names (relative to the recording) of every object under `dir`, sorted.
    ///
    /// # Errors
    /// [`StorageError::Request`] when the listing fails.
    pub async fn list(&self, dir: &str) -> Result<Vec<String>, StorageError> {
        let prefix = self.path(dir);
        let list = self.store.list(Some(&prefix)).try_collect::<Vec<_>>();
        let metas = match tokio::time::timeout(self.timeout, list).await {
            Ok(Ok(metas)) => metas,
            Ok(Err(e)) => return Err(self.failed(dir, e)),
            Err(_) => return Err(self.failed(dir, "timed out")),
        };
        let base = self.prefix.as_ref();
        let mut names: Vec<String> = metas
            .into_iter()
            .filter_map(|meta| {
                let full = meta.location.as_ref().to_owned();
                let rest = if base.is_empty() {
                    full
                } else {
                    full.strip_prefix(base)?.trim_start_matches('/').to_owned()
                };
                Some(rest)
            })
            .collect();
        names.sort();
        Ok(names)
    }
}
