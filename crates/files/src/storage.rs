//! Where blobs live: `object_store` over the local disk (`<data-dir>/blobs` by default) or S3
//! (`s3://bucket/prefix`, credentials and endpoint from the usual `AWS_*` environment). Object
//! keys are made from ids only — `tenants/<tenant>/blobs/<uuid>` — never from a name a person
//! typed, so no upload can choose or guess its way to another path.

use std::sync::Arc;

use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt};
use uuid::Uuid;

use crate::FilesError;

#[derive(Clone)]
pub struct Storage {
    inner: Arc<dyn ObjectStore>,
    /// Bytes per part of a streamed write (S3 requires at least 5 MiB but for the last).
    part_size: usize,
    describe: String,
}

impl std::fmt::Debug for Storage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.describe)
    }
}

fn config(e: impl std::fmt::Display) -> FilesError {
    FilesError::Invalid { field: "blob_url", reason: e.to_string() }
}

impl Storage {
    /// The local disk under `dir` (created, mode 0700).
    ///
    /// # Errors
    /// When the directory cannot be created.
    pub fn local(dir: &std::path::Path) -> Result<Self, FilesError> {
        std::fs::create_dir_all(dir).map_err(|e| config(format!("{}: {e}", dir.display())))?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
                .map_err(|e| config(format!("{}: {e}", dir.display())))?;
        }
        let fs = object_store::local::LocalFileSystem::new_with_prefix(dir).map_err(config)?;
        Ok(Self { inner: Arc::new(fs), part_size: 1024 * 1024, describe: format!("local disk {}", dir.display()) })
    }

    /// S3 at `s3://bucket[/prefix]`; the rest (credentials, region, endpoint, `AWS_ALLOW_HTTP`)
    /// from the `AWS_*` environment.
    ///
    /// # Errors
    /// When the URL or the environment does not describe a bucket.
    pub fn s3(url: &str) -> Result<Self, FilesError> {
        Self::s3_with(url, object_store::aws::AmazonS3Builder::from_env())
    }

    /// S3 at `s3://bucket[/prefix]` with an explicit endpoint and credentials (tests against a
    /// local S3 server; deployments use [`Storage::s3`] and the environment).
    ///
    /// # Errors
    /// As [`Storage::s3`].
    pub fn s3_at(
        url: &str,
        endpoint: &str,
        region: &str,
        access_key: &str,
        secret_key: &str,
    ) -> Result<Self, FilesError> {
        let b = object_store::aws::AmazonS3Builder::new()
            .with_endpoint(endpoint)
            .with_region(region)
            .with_access_key_id(access_key)
            .with_secret_access_key(secret_key)
            .with_allow_http(endpoint.starts_with("http://"));
        Self::s3_with(url, b)
    }

    fn s3_with(url: &str, builder: object_store::aws::AmazonS3Builder) -> Result<Self, FilesError> {
        let parsed = url::Url::parse(url).map_err(config)?;
        if parsed.scheme() != "s3" {
            return Err(config("expected s3://bucket/prefix"));
        }
        let bucket = parsed.host_str().filter(|b| !b.is_empty()).ok_or_else(|| config("s3:// needs a bucket"))?;
        let prefix = parsed.path().trim_matches('/').to_owned();
        // reqwest is built without a bundled TLS provider; ring is the one this process uses.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let s3 = builder.with_bucket_name(bucket).build().map_err(config)?;
        let inner: Arc<dyn ObjectStore> = if prefix.is_empty() {
            Arc::new(s3)
        } else {
            Arc::new(object_store::prefix::PrefixStore::new(s3, Path::parse(&prefix).map_err(config)?))
        };
        Ok(Self { inner, part_size: 5 * 1024 * 1024, describe: format!("S3 bucket {bucket} prefix {prefix:?}") })
    }

    /// `s3://…`, or a local directory.
    ///
    /// # Errors
    /// See [`Storage::s3`] and [`Storage::local`].
    pub fn from_url(url: &str) -> Result<Self, FilesError> {
        if url.starts_with("s3://") {
            Self::s3(url)
        } else {
            Self::local(std::path::Path::new(url.strip_prefix("file://").unwrap_or(url)))
        }
    }

    /// The object key of a blob: ids only.
    #[must_use]
    pub fn key(tenant: Uuid, blob: Uuid) -> Path {
        Path::from_iter(["tenants", &tenant.to_string(), "blobs", &blob.to_string()])
    }

    pub(crate) fn inner(&self) -> &Arc<dyn ObjectStore> {
        &self.inner
    }

    pub(crate) fn part_size(&self) -> usize {
        self.part_size
    }

    /// Removes a blob's object (purge). Gone already is fine.
    ///
    /// # Errors
    /// When storage refuses.
    pub async fn remove(&self, tenant: Uuid, blob: Uuid) -> Result<(), FilesError> {
        match self.inner.delete(&Self::key(tenant, blob)).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// Whether a blob's object exists (tests, purge checks).
    ///
    /// # Errors
    /// When storage fails other than with "not found".
    pub async fn exists(&self, tenant: Uuid, blob: Uuid) -> Result<bool, FilesError> {
        match self.inner.head(&Self::key(tenant, blob)).await {
            Ok(_) => Ok(true),
            Err(object_store::Error::NotFound { .. }) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn object_keys_are_made_of_ids_only() {
        let (t, b) = (Uuid::from_u128(1), Uuid::from_u128(2));
        assert_eq!(
            Storage::key(t, b).as_ref(),
            "tenants/00000000-0000-0000-0000-000000000001/blobs/00000000-0000-0000-0000-000000000002"
        );
        assert!(Storage::from_url("s3://").is_err());
        assert!(Storage::from_url("s3:///x").is_err());
    }
}
