//! Writing merged entries into output files of about the target size, each
//! streamed to the object store as it is built (finished data blocks are
//! handed to the upload every [`FLUSH_BYTES`]) and completed as soon as it is
//! cut. Memory: one block, the part the upload is filling, and the file's
//! index and filter.

use super::{CompactionConfig, CompactionError, crash_point};
use crate::meta::{FileKind, NewFile};
use crate::objstore::{BoxUpload, DynStore};
use crate::sstable::{Entry, FormatError, Writer};
use bytes::Bytes;

/// Finished blocks are passed to the upload once this many bytes are pending.
const FLUSH_BYTES: usize = 1 << 20;

struct Open<'a> {
    object: String,
    writer: Writer,
    upload: BoxUpload<'a>,
    first: Bytes,
    last: Bytes,
    /// Bytes handed to the upload so far.
    written: u64,
}

pub struct Outputs<'a> {
    store: &'a DynStore,
    /// The job's id: output names carry it, so purge can tell outputs of a
    /// running job (claim live) from orphans.
    job: &'a str,
    config: &'a CompactionConfig,
    level: u32,
    seqs: (u64, u64),
    open: Option<Open<'a>>,
    pub done: Vec<NewFile>,
    pub entries: u64,
}

impl<'a> Outputs<'a> {
    pub fn new(
        store: &'a DynStore,
        job: &'a str,
        config: &'a CompactionConfig,
        level: u32,
        seqs: (u64, u64),
    ) -> Self {
        Outputs {
            store,
            job,
            config,
            level,
            seqs,
            open: None,
            done: Vec::new(),
            entries: 0,
        }
    }

    pub async fn add(&mut self, entry: &Entry) -> Result<(), CompactionError> {
        if self.open.is_none() {
            self.open = Some(self.start(&entry.key).await?);
        }
        let open = self.open.as_mut().expect("opened above");
        open.writer
            .add(&entry.key, &entry.value)
            .map_err(|e| output_corrupt(&open.object, e))?;
        open.last = entry.key.clone();
        self.entries += 1;
        if open.writer.pending_data_len() >= FLUSH_BYTES {
            let data = open.writer.take_data();
            open.written += data.len() as u64;
            open.upload.write(data).await?;
        }
        if open.writer.estimated_size() as u64 >= self.config.target_file_bytes {
            self.cut().await?;
        }
        Ok(())
    }

    async fn start(&self, first: &Bytes) -> Result<Open<'a>, CompactionError> {
        let object = output_name(self.job, self.done.len());
        crash_point("before_output_upload");
        let upload = self.store.upload(&object).await?;
        Ok(Open {
            object,
            writer: Writer::new(self.config.writer.clone()),
            upload,
            first: first.clone(),
            last: first.clone(),
            written: 0,
        })
    }

    /// Completes the open output, if any.
    pub async fn cut(&mut self) -> Result<(), CompactionError> {
        let Some(mut open) = self.open.take() else {
            return Ok(());
        };
        let entry_count = open.writer.entry_count();
        let tombstone_count = open.writer.tombstone_count();
        let tail = open
            .writer
            .finish(self.seqs.0, self.seqs.1)
            .map_err(|e| output_corrupt(&open.object, e))?;
        let size_bytes = open.written + tail.len() as u64;
        open.upload.write(tail).await?;
        open.upload.finish().await?;
        crash_point("after_output_upload");
        self.done.push(NewFile {
            object: open.object,
            // Compaction outputs are runs on every level: an L0 output
            // (a flush, an intra-L0 merge) is an L0 file, not the WAL tier.
            kind: FileKind::Run,
            level: self.level,
            min_key: open.first.to_vec(),
            max_key: open.last.to_vec(),
            entry_count,
            tombstone_count,
            size_bytes,
        });
        Ok(())
    }

    /// Gives up the open output (after an error): it never appears.
    pub async fn abort(&mut self) {
        if let Some(open) = self.open.take() {
            open.upload.abort().await;
        }
    }
}

/// `run/<ms>-<job>-<n>.sst`; see [`job_of_output`].
pub fn output_name(job: &str, n: usize) -> String {
    format!("run/{:013}-{job}-{n:04}.sst", crate::meta::now_ms())
}

/// The job that wrote an output named by [`output_name`] (None for other names).
pub fn job_of_output(path: &str) -> Option<&str> {
    let name = path.strip_prefix("run/")?.strip_suffix(".sst")?;
    let mut parts = name.split('-');
    let (_ms, job, _n) = (parts.next()?, parts.next()?, parts.next()?);
    (parts.next().is_none() && !job.is_empty()).then_some(job)
}

fn output_corrupt(object: &str, source: FormatError) -> CompactionError {
    CompactionError::Corrupt {
        object: object.to_string(),
        source,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_names_carry_their_job() {
        let name = output_name("0123456789abcdef", 7);
        assert_eq!(job_of_output(&name), Some("0123456789abcdef"));
        assert_eq!(
            job_of_output("run/1796033117710-60e0d134f8959356.sst"),
            None
        );
        assert_eq!(job_of_output("wal/1-2-3.sst"), None);
    }
}
