//! Streamed uploads: an object written part by part and made visible whole,
//! so a writer never holds a large file in memory (S3 multipart upload; a
//! temporary file renamed into place on a local directory).

use super::StoreResult;
use async_trait::async_trait;
use bytes::{Bytes, BytesMut};

/// Parts sent to S3 (and buffered by layers) are this large; S3 requires at
/// least 5 MiB for every part but the last.
pub const PART_BYTES: usize = 8 << 20;

/// An object being written. Nothing is visible until `finish` succeeds;
/// dropping it without `finish` leaves nothing visible either (an S3
/// multipart upload left open is aborted by `abort`, or by a bucket
/// lifecycle rule if the process dies; a local temp file is removed by `abort`).
#[async_trait]
pub trait Upload: Send + Sync {
    /// Appends `data` to the object.
    async fn write(&mut self, data: Bytes) -> StoreResult<()>;
    /// Completes the object: afterwards readers see all of it.
    async fn finish(self: Box<Self>) -> StoreResult<()>;
    /// Gives up: the object never appears. Best effort.
    async fn abort(self: Box<Self>);
}

pub type BoxUpload<'a> = Box<dyn Upload + 'a>;

/// Collects bytes into parts of [`PART_BYTES`]: `push` returns the parts that
/// are full, `rest` what is left at the end.
#[derive(Default)]
pub(crate) struct PartBuffer {
    buf: BytesMut,
}

impl PartBuffer {
    pub(crate) fn push(&mut self, data: &[u8]) -> Vec<Bytes> {
        self.buf.extend_from_slice(data);
        let mut full = Vec::new();
        while self.buf.len() >= PART_BYTES {
            full.push(self.buf.split_to(PART_BYTES).freeze());
        }
        full
    }

    pub(crate) fn rest(&mut self) -> Bytes {
        std::mem::take(&mut self.buf).freeze()
    }
}
