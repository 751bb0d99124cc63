//! Where an export's files live: a prefix of an S3 bucket or a local directory, read and
//! written as streams.
//!
//! Writing to S3 is a multipart upload: the bytes of a file are cut into parts of 8 MiB
//! (the part size doubles every 1,000 parts, so a file can reach terabytes within S3's
//! 10,000-part limit), one part uploading while the next fills, so memory stays at two
//! parts whatever the table's size. A file smaller than one part is a single PUT. Every
//! object is written with SSE-KMS. A local directory gets files readable by their owner
//! only, each written under a temporary name and renamed when complete.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, anyhow, bail};
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{
    ChecksumAlgorithm, CompletedMultipartUpload, CompletedPart, ServerSideEncryption,
};
use bytes::Bytes;
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::task::JoinHandle;

/// An S3 call's error with its whole context (service code and message): the SDK's own
/// `Display` of an unmodelled error is just "service error".
fn s3_error<
    E: std::error::Error + Send + Sync + 'static,
    R: std::fmt::Debug + Send + Sync + 'static,
>(
    e: aws_sdk_s3::error::SdkError<E, R>,
) -> anyhow::Error {
    anyhow!("{}", aws_sdk_s3::error::DisplayErrorContext(&e))
}

/// The first parts' size; S3's minimum is 5 MiB.
const PART_SIZE: usize = 8 << 20;
/// Read size of local files.
const READ_CHUNK: usize = 256 << 10;

/// An export's location as the user names it: `s3://bucket/prefix/` or a directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    Dir(PathBuf),
    S3 { bucket: String, prefix: String },
}

impl Location {
    /// `s3://bucket/prefix` (a trailing slash is added) or a local path.
    pub fn parse(raw: &str) -> Result<Location> {
        if let Some(rest) = raw.strip_prefix("s3://") {
            let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
            check_bucket(bucket).map_err(|e| anyhow!("`{raw}`: {e}"))?;
            let prefix = prefix.trim_end_matches('/');
            if prefix.is_empty() {
                bail!(
                    "`{raw}` names a whole bucket: an export lives under a prefix, such as s3://{bucket}/archive/tenants/<id>/<time>/"
                );
            }
            check_prefix(prefix).map_err(|e| anyhow!("`{raw}`: {e}"))?;
            return Ok(Location::S3 {
                bucket: bucket.to_string(),
                prefix: format!("{prefix}/"),
            });
        }
        if raw.is_empty() {
            bail!("an empty location: give a directory or s3://bucket/prefix/");
        }
        if raw.contains("://") {
            bail!("`{raw}` is neither a local directory nor an s3:// location");
        }
        Ok(Location::Dir(PathBuf::from(raw)))
    }
}

impl std::fmt::Display for Location {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Location::Dir(p) => write!(f, "{}", p.display()),
            Location::S3 { bucket, prefix } => write!(f, "s3://{bucket}/{prefix}"),
        }
    }
}

/// S3's bucket naming rule (the general-purpose subset: lower-case letters, digits,
/// dots and hyphens, 3 to 63 characters, a letter or digit at both ends).
pub fn check_bucket(bucket: &str) -> Result<(), String> {
    let ok = (3..=63).contains(&bucket.len())
        && bucket
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'-')
        && bucket
            .bytes()
            .next()
            .is_some_and(|b| b.is_ascii_alphanumeric())
        && bucket
            .bytes()
            .last()
            .is_some_and(|b| b.is_ascii_alphanumeric())
        && !bucket.contains("..");
    if ok {
        Ok(())
    } else {
        Err(format!(
            "`{bucket}` is not an S3 bucket name: 3 to 63 lower-case letters, digits, dots and hyphens, starting and ending with a letter or digit"
        ))
    }
}

/// A key prefix: segments of letters, digits and `! - _ . * ' ( )` separated by single
/// slashes, no `.` or `..` segment, no leading slash.
pub fn check_prefix(prefix: &str) -> Result<(), String> {
    let ok = !prefix.is_empty()
        && prefix.len() <= 512
        && prefix.split('/').all(|seg| {
            !seg.is_empty()
                && seg != "."
                && seg != ".."
                && seg
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"!-_.*'()".contains(&b))
        });
    if ok {
        Ok(())
    } else {
        Err(format!(
            "`{prefix}` is not a key prefix: segments of letters, digits and `! - _ . * ' ( )` separated by single slashes, without a leading or trailing slash or `.`/`..` segments"
        ))
    }
}

/// SSE-KMS for what is written to S3: the key, or None for the bucket's AWS-managed key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sse {
    pub kms_key_id: Option<String>,
}

/// An open location.
#[derive(Clone, Debug)]
pub enum Store {
    Dir(PathBuf),
    S3 {
        client: aws_sdk_s3::Client,
        bucket: String,
        /// Ends with `/`.
        prefix: String,
        /// None when only reading.
        sse: Option<Sse>,
    },
}

/// What a finished write stored.
#[derive(Debug, Clone)]
pub struct Written {
    pub bytes: u64,
    pub sha256: String,
    /// The key S3 reports having encrypted the object with.
    pub kms_key_id: Option<String>,
}

impl Store {
    pub fn open(
        location: &Location,
        s3: Option<&aws_sdk_s3::Client>,
        sse: Option<Sse>,
    ) -> Result<Store> {
        match location {
            Location::Dir(p) => Ok(Store::Dir(p.clone())),
            Location::S3 { bucket, prefix } => Ok(Store::S3 {
                client: s3.context("an s3:// location needs AWS clients")?.clone(),
                bucket: bucket.clone(),
                prefix: prefix.clone(),
                sse,
            }),
        }
    }

    pub fn location(&self) -> Location {
        match self {
            Store::Dir(p) => Location::Dir(p.clone()),
            Store::S3 { bucket, prefix, .. } => Location::S3 {
                bucket: bucket.clone(),
                prefix: prefix.clone(),
            },
        }
    }

    /// `name` within the location, for messages.
    pub fn describe(&self, name: &str) -> String {
        match self {
            Store::Dir(p) => format!("`{}`", p.join(name).display()),
            Store::S3 { bucket, prefix, .. } => format!("s3://{bucket}/{prefix}{name}"),
        }
    }

    /// Refuses a location that already holds something: an export never overwrites or
    /// mixes with another. A missing directory is created (owner-only).
    pub async fn prepare_empty(&self) -> Result<()> {
        match self {
            Store::Dir(dir) => {
                match std::fs::read_dir(dir) {
                    Ok(mut entries) => {
                        if entries.next().is_some() {
                            bail!(
                                "`{}` is not empty: an export goes into a new or empty directory",
                                dir.display()
                            );
                        }
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                        create_private_dir(dir)?;
                    }
                    Err(e) => {
                        return Err(e).with_context(|| format!("cannot read `{}`", dir.display()));
                    }
                }
                Ok(())
            }
            Store::S3 {
                client,
                bucket,
                prefix,
                ..
            } => {
                let out = client
                    .list_objects_v2()
                    .bucket(bucket)
                    .prefix(prefix.as_str())
                    .max_keys(1)
                    .send()
                    .await
                    .map_err(s3_error)
                    .with_context(|| format!("cannot list s3://{bucket}/{prefix}"))?;
                if !out.contents().is_empty() {
                    bail!(
                        "s3://{bucket}/{prefix} already holds objects: an export never overwrites another"
                    );
                }
                Ok(())
            }
        }
    }

    /// Starts writing `name`.
    pub async fn create(&self, name: &str, content_type: &str) -> Result<ObjectWriter> {
        let sink = match self {
            Store::Dir(dir) => {
                let path = dir.join(name);
                let tmp = dir.join(format!(".{name}.partial"));
                let file = private_file(&tmp)
                    .await
                    .with_context(|| format!("cannot create `{}`", tmp.display()))?;
                Sink::File { file, tmp, path }
            }
            Store::S3 {
                client,
                bucket,
                prefix,
                sse,
            } => Sink::S3(Box::new(Upload {
                client: client.clone(),
                bucket: bucket.clone(),
                key: format!("{prefix}{name}"),
                sse: sse.clone(),
                content_type: content_type.to_string(),
                upload_id: None,
                buf: Vec::new(),
                parts: Vec::new(),
                in_flight: None,
            })),
        };
        Ok(ObjectWriter {
            sink,
            hasher: Sha256::new(),
            bytes: 0,
        })
    }

    /// Writes a small object at once.
    pub async fn put(&self, name: &str, body: &[u8], content_type: &str) -> Result<Written> {
        let mut w = self.create(name, content_type).await?;
        if let Err(e) = w.write(body).await {
            w.abort().await;
            return Err(e);
        }
        w.finish().await
    }

    /// Starts reading `name`.
    pub async fn read(&self, name: &str) -> Result<ObjectReader> {
        match self {
            Store::Dir(dir) => {
                let path = dir.join(name);
                let file = tokio::fs::File::open(&path)
                    .await
                    .with_context(|| format!("cannot open `{}`", path.display()))?;
                Ok(ObjectReader::File(file, vec![0; READ_CHUNK]))
            }
            Store::S3 {
                client,
                bucket,
                prefix,
                ..
            } => {
                let key = format!("{prefix}{name}");
                let out = client
                    .get_object()
                    .bucket(bucket)
                    .key(&key)
                    .send()
                    .await
                    .map_err(s3_error)
                    .with_context(|| format!("cannot read s3://{bucket}/{key}"))?;
                Ok(ObjectReader::S3(out.body))
            }
        }
    }

    /// Reads a whole small object, refusing one larger than `max` bytes.
    pub async fn read_all(&self, name: &str, max: usize) -> Result<Vec<u8>> {
        let mut r = self.read(name).await?;
        let mut out = Vec::new();
        while let Some(chunk) = r.next().await.with_context(|| self.describe(name))? {
            out.extend_from_slice(&chunk);
            if out.len() > max {
                bail!("{} is larger than {max} bytes", self.describe(name));
            }
        }
        Ok(out)
    }

    /// Best effort: removes what a failed export wrote, so no incomplete export stays.
    pub async fn remove_all(&self, names: &[String]) {
        match self {
            Store::Dir(dir) => {
                for n in names {
                    let _ = std::fs::remove_file(dir.join(n));
                }
                // Only if nothing else is there (the directory was new or empty).
                let _ = std::fs::remove_dir(dir);
            }
            Store::S3 {
                client,
                bucket,
                prefix,
                ..
            } => {
                for n in names {
                    let _ = client
                        .delete_object()
                        .bucket(bucket)
                        .key(format!("{prefix}{n}"))
                        .send()
                        .await;
                }
            }
        }
    }
}

fn create_private_dir(dir: &Path) -> Result<()> {
    let mut b = std::fs::DirBuilder::new();
    b.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut b, 0o700);
    b.create(dir)
        .with_context(|| format!("cannot create `{}`", dir.display()))
}

async fn private_file(path: &Path) -> std::io::Result<tokio::fs::File> {
    let mut o = tokio::fs::OpenOptions::new();
    o.write(true).create(true).truncate(true);
    #[cfg(unix)]
    o.mode(0o600);
    o.open(path).await
}

/// A file being read, chunk by chunk.
pub enum ObjectReader {
    File(tokio::fs::File, Vec<u8>),
    S3(ByteStream),
}

impl ObjectReader {
    pub async fn next(&mut self) -> Result<Option<Bytes>> {
        match self {
            ObjectReader::File(f, buf) => {
                let n = f.read(buf).await?;
                Ok((n > 0).then(|| Bytes::copy_from_slice(&buf[..n])))
            }
            ObjectReader::S3(body) => Ok(body.try_next().await?),
        }
    }
}

/// A file being written; [`finish`](Self::finish) makes it visible, [`abort`](Self::abort)
/// discards it.
pub struct ObjectWriter {
    sink: Sink,
    hasher: Sha256,
    bytes: u64,
}

enum Sink {
    File {
        file: tokio::fs::File,
        tmp: PathBuf,
        path: PathBuf,
    },
    S3(Box<Upload>),
}

struct Upload {
    client: aws_sdk_s3::Client,
    bucket: String,
    key: String,
    sse: Option<Sse>,
    content_type: String,
    upload_id: Option<String>,
    buf: Vec<u8>,
    parts: Vec<CompletedPart>,
    /// The part being uploaded while the next one fills.
    in_flight: Option<JoinHandle<Result<CompletedPart>>>,
}

impl Upload {
    fn at(&self) -> String {
        format!("s3://{}/{}", self.bucket, self.key)
    }

    /// The size of the part being filled: 8 MiB, doubling every 1,000 parts.
    fn part_size(&self) -> usize {
        let n = self.parts.len() + usize::from(self.in_flight.is_some());
        PART_SIZE << (n / 1000).min(8)
    }

    async fn start(&mut self) -> Result<String> {
        if let Some(id) = &self.upload_id {
            return Ok(id.clone());
        }
        let mut req = self
            .client
            .create_multipart_upload()
            .bucket(&self.bucket)
            .key(&self.key)
            .content_type(&self.content_type)
            .checksum_algorithm(ChecksumAlgorithm::Crc32);
        if let Some(sse) = &self.sse {
            req = req
                .server_side_encryption(ServerSideEncryption::AwsKms)
                .set_ssekms_key_id(sse.kms_key_id.clone());
        }
        let out = req
            .send()
            .await
            .map_err(s3_error)
            .with_context(|| format!("cannot start the upload of {}", self.at()))?;
        let id = out
            .upload_id()
            .with_context(|| format!("S3 returned no upload id for {}", self.at()))?
            .to_string();
        self.upload_id = Some(id.clone());
        Ok(id)
    }

    /// Sends the filled buffer as the next part, after the previous one completed.
    async fn send_part(&mut self) -> Result<()> {
        let upload_id = self.start().await?;
        self.wait().await?;
        let number = self.parts.len() as i32 + 1;
        let body = std::mem::take(&mut self.buf);
        let req = self
            .client
            .upload_part()
            .bucket(&self.bucket)
            .key(&self.key)
            .upload_id(upload_id)
            .part_number(number)
            .checksum_algorithm(ChecksumAlgorithm::Crc32)
            .body(ByteStream::from(body));
        let at = self.at();
        self.in_flight = Some(tokio::spawn(async move {
            let out = req
                .send()
                .await
                .map_err(s3_error)
                .with_context(|| format!("cannot upload part {number} of {at}"))?;
            Ok(CompletedPart::builder()
                .part_number(number)
                .set_e_tag(out.e_tag().map(str::to_string))
                .set_checksum_crc32(out.checksum_crc32().map(str::to_string))
                .build())
        }));
        Ok(())
    }

    async fn wait(&mut self) -> Result<()> {
        if let Some(h) = self.in_flight.take() {
            let part = h.await.map_err(|e| anyhow!("upload task failed: {e}"))??;
            self.parts.push(part);
        }
        Ok(())
    }

    async fn finish(&mut self) -> Result<Option<String>> {
        let Some(upload_id) = self.upload_id.clone() else {
            // Smaller than one part: a single PUT.
            let mut req = self
                .client
                .put_object()
                .bucket(&self.bucket)
                .key(&self.key)
                .content_type(&self.content_type)
                .body(ByteStream::from(std::mem::take(&mut self.buf)));
            if let Some(sse) = &self.sse {
                req = req
                    .server_side_encryption(ServerSideEncryption::AwsKms)
                    .set_ssekms_key_id(sse.kms_key_id.clone());
            }
            let out = req
                .send()
                .await
                .map_err(s3_error)
                .with_context(|| format!("cannot write {}", self.at()))?;
            return Ok(out.ssekms_key_id().map(str::to_string));
        };
        if !self.buf.is_empty() {
            self.send_part().await?;
        }
        self.wait().await?;
        let out = self
            .client
            .complete_multipart_upload()
            .bucket(&self.bucket)
            .key(&self.key)
            .upload_id(upload_id)
            .multipart_upload(
                CompletedMultipartUpload::builder()
                    .set_parts(Some(std::mem::take(&mut self.parts)))
                    .build(),
            )
            .send()
            .await
            .map_err(s3_error)
            .with_context(|| format!("cannot complete the upload of {}", self.at()))?;
        Ok(out.ssekms_key_id().map(str::to_string))
    }

    async fn abort(&mut self) {
        if let Some(h) = self.in_flight.take() {
            let _ = h.await;
        }
        if let Some(id) = self.upload_id.take() {
            let _ = self
                .client
                .abort_multipart_upload()
                .bucket(&self.bucket)
                .key(&self.key)
                .upload_id(id)
                .send()
                .await;
        }
    }
}

impl ObjectWriter {
    pub async fn write(&mut self, data: &[u8]) -> Result<()> {
        self.hasher.update(data);
        self.bytes += data.len() as u64;
        match &mut self.sink {
            Sink::File { file, tmp, .. } => file
                .write_all(data)
                .await
                .with_context(|| format!("cannot write `{}`", tmp.display())),
            Sink::S3(up) => {
                up.buf.extend_from_slice(data);
                if up.buf.len() >= up.part_size() {
                    up.send_part().await?;
                }
                Ok(())
            }
        }
    }

    pub async fn finish(mut self) -> Result<Written> {
        let kms_key_id = match &mut self.sink {
            Sink::File { file, tmp, path } => {
                file.flush().await?;
                file.sync_all()
                    .await
                    .with_context(|| format!("cannot write `{}`", tmp.display()))?;
                tokio::fs::rename(&tmp, &path)
                    .await
                    .with_context(|| format!("cannot write `{}`", path.display()))?;
                None
            }
            Sink::S3(up) => match up.finish().await {
                Ok(k) => k,
                Err(e) => {
                    up.abort().await;
                    return Err(e);
                }
            },
        };
        Ok(Written {
            bytes: self.bytes,
            sha256: hex::encode(self.hasher.finalize()),
            kms_key_id,
        })
    }

    pub async fn abort(mut self) {
        match &mut self.sink {
            Sink::File { tmp, .. } => {
                let _ = tokio::fs::remove_file(&tmp).await;
            }
            Sink::S3(up) => up.abort().await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locations_parse_and_bad_ones_name_the_rule() {
        assert_eq!(
            Location::parse("s3://my-bucket/archive/tenants/acme/20250101T000000Z").unwrap(),
            Location::S3 {
                bucket: "my-bucket".into(),
                prefix: "archive/tenants/acme/20250101T000000Z/".into()
            }
        );
        assert_eq!(
            Location::parse("./out/acme").unwrap(),
            Location::Dir("./out/acme".into())
        );
        let err = |s: &str| Location::parse(s).unwrap_err().to_string();
        assert!(err("s3://My_Bucket/x").contains("not an S3 bucket name"));
        assert!(err("s3://bucket").contains("whole bucket"));
        assert!(err("s3://bucket/a//b").contains("not a key prefix"));
        assert!(err("s3://bucket/a/../b").contains("not a key prefix"));
        assert!(err("https://example.com/x").contains("neither"));
        assert_eq!(check_prefix("archive/tenants"), Ok(()));
        assert!(check_prefix("/archive").is_err());
        assert!(check_bucket("ab").is_err());
    }

    #[tokio::test]
    async fn a_directory_export_is_private_and_never_mixed_with_another() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("exp");
        let store = Store::Dir(dir.clone());
        store.prepare_empty().await.unwrap();
        let mut w = store.create("a.csv.gz", "application/gzip").await.unwrap();
        w.write(b"hello ").await.unwrap();
        w.write(b"world").await.unwrap();
        assert!(!dir.join("a.csv.gz").exists(), "visible only when finished");
        let written = w.finish().await.unwrap();
        assert_eq!(written.bytes, 11);
        assert_eq!(written.sha256, hex::encode(Sha256::digest(b"hello world")));
        assert_eq!(
            store.read_all("a.csv.gz", 100).await.unwrap(),
            b"hello world"
        );
        assert!(store.read_all("a.csv.gz", 5).await.is_err());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.join("a.csv.gz"))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o077, 0, "{mode:o}");
        }
        let err = store.prepare_empty().await.unwrap_err().to_string();
        assert!(err.contains("not empty"), "{err}");
        let w = store.create("b.csv.gz", "application/gzip").await.unwrap();
        w.abort().await;
        assert!(!dir.join(".b.csv.gz.partial").exists());
    }
}
