//! Streamed uploads to S3: a small object is one PUT; once the data passes
//! one part ([`PART_BYTES`]) it becomes a multipart upload, one part in
//! flight at a time, completed by `finish` (the object appears whole then)
//! or aborted by `abort`.

use super::s3::S3Store;
use super::upload::PartBuffer;
use super::{ObjectStore, StoreError, StoreResult, Upload};
use async_trait::async_trait;
use aws_sdk_s3::error::SdkError;
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};
use bytes::Bytes;

pub(super) struct S3Upload<'a> {
    store: &'a S3Store,
    path: String,
    buffer: PartBuffer,
    /// Set once the first full part is sent.
    upload_id: Option<String>,
    parts: Vec<CompletedPart>,
    /// Bytes written so far (the object's size once finished).
    len: u64,
}

impl<'a> S3Upload<'a> {
    pub(super) fn new(store: &'a S3Store, path: &str) -> Self {
        S3Upload {
            store,
            path: path.into(),
            buffer: PartBuffer::default(),
            upload_id: None,
            parts: Vec::new(),
            len: 0,
        }
    }

    async fn upload_id(&mut self) -> StoreResult<String> {
        if let Some(id) = &self.upload_id {
            return Ok(id.clone());
        }
        let out = self
            .store
            .client
            .create_multipart_upload()
            .bucket(&self.store.config.bucket)
            .key(self.store.key(&self.path))
            .send()
            .await
            .map_err(|e| self.store.error(&self.path, e))?;
        let id = out.upload_id().unwrap_or_default().to_string();
        self.upload_id = Some(id.clone());
        Ok(id)
    }

    async fn send_part(&mut self, data: Bytes) -> StoreResult<()> {
        let id = self.upload_id().await?;
        let number = self.parts.len() as i32 + 1;
        let out = self
            .store
            .client
            .upload_part()
            .bucket(&self.store.config.bucket)
            .key(self.store.key(&self.path))
            .upload_id(id)
            .part_number(number)
            .body(ByteStream::from(data))
            .send()
            .await
            .map_err(|e| self.store.error(&self.path, e))?;
        self.parts.push(
            CompletedPart::builder()
                .part_number(number)
                .set_e_tag(out.e_tag().map(str::to_string))
                .build(),
        );
        Ok(())
    }
}

#[async_trait]
impl Upload for S3Upload<'_> {
    async fn write(&mut self, data: Bytes) -> StoreResult<()> {
        self.len += data.len() as u64;
        for part in self.buffer.push(&data) {
            self.send_part(part).await?;
        }
        Ok(())
    }

    async fn finish(mut self: Box<Self>) -> StoreResult<()> {
        let rest = self.buffer.rest();
        let Some(id) = self.upload_id.clone() else {
            return self.store.put(&self.path, rest).await;
        };
        if !rest.is_empty() {
            self.send_part(rest).await?;
        }
        let parts = CompletedMultipartUpload::builder()
            .set_parts(Some(std::mem::take(&mut self.parts)))
            .build();
        let done = self
            .store
            .client
            .complete_multipart_upload()
            .bucket(&self.store.config.bucket)
            .key(self.store.key(&self.path))
            .upload_id(id)
            .multipart_upload(parts)
            .send()
            .await;
        match done {
            Ok(_) => Ok(()),
            // Some S3-compatible servers (moto) answer 200 with a body the
            // SDK cannot parse; the upload did complete if the object now
            // exists with every byte we sent.
            Err(SdkError::ServiceError(e)) if e.raw().status().as_u16() == 200 => {
                match self.store.get_suffix(&self.path, 1).await {
                    Ok((_, size)) if size == self.len => Ok(()),
                    _ => Err(StoreError::Unavailable(format!(
                        "completing the multipart upload of {:?}: unreadable answer and no complete object",
                        self.path
                    ))),
                }
            }
            Err(e) => Err(self.store.error(&self.path, e)),
        }
    }

    async fn abort(self: Box<Self>) {
        let Some(id) = &self.upload_id else { return };
        let result = self
            .store
            .client
            .abort_multipart_upload()
            .bucket(&self.store.config.bucket)
            .key(self.store.key(&self.path))
            .upload_id(id)
            .send()
            .await;
        if let Err(e) = result {
            tracing::warn!(path = %self.path, error = %e, "aborting a multipart upload failed; a bucket lifecycle rule removes it");
        }
    }
}
