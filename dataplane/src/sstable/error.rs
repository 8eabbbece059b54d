//! Errors of the writer and of every decoder. Decode errors name the structure and its file
//! offset so an operator can tell a torn upload from a bit flip from a writer bug.

use bytes::Bytes;

use super::{FORMAT_VERSION, MAX_KEY_LEN, MAX_VALUE_LEN};

/// The structure an error refers to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BlockKind {
    Data,
    Index,
    Filter,
    Properties,
    Footer,
    /// The region holding the index, filter and properties blocks.
    Meta,
    /// The file as a whole (its length against the footer).
    File,
}

impl std::fmt::Display for BlockKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            BlockKind::Data => "data block",
            BlockKind::Index => "index block",
            BlockKind::Filter => "filter block",
            BlockKind::Properties => "properties block",
            BlockKind::Footer => "footer",
            BlockKind::Meta => "meta region",
            BlockKind::File => "file",
        })
    }
}

/// `offset` fields are file offsets of the structure's first byte, except for the footer,
/// whose position a reader holding only the tail does not know: there they are 0 and `at` is
/// the position within the footer.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum FormatError {
    #[error(
        "{kind} at file offset {offset}: checksum mismatch \
         (stored {expected:#010x}, computed {actual:#010x})"
    )]
    Checksum {
        kind: BlockKind,
        offset: u64,
        expected: u32,
        actual: u32,
    },
    #[error("{kind} at file offset {offset}: truncated: need {need} bytes, have {have}")]
    Truncated {
        kind: BlockKind,
        offset: u64,
        need: u64,
        have: u64,
    },
    #[error("{kind} at file offset {offset}: expected {expected} bytes, got {actual}")]
    LengthMismatch {
        kind: BlockKind,
        offset: u64,
        expected: u64,
        actual: u64,
    },
    #[error("bad magic {0:#018x}: not a SkyVault SSTable (or not its last bytes)")]
    BadMagic(u64),
    #[error("unsupported format version {0} (this reader supports {FORMAT_VERSION})")]
    UnsupportedVersion(u16),
    #[error("{kind} at file offset {offset}: unknown compression type {tag}")]
    UnknownCompression {
        kind: BlockKind,
        offset: u64,
        tag: u8,
    },
    #[error("{kind} at file offset {offset}: lz4 decompression failed: {reason}")]
    Decompress {
        kind: BlockKind,
        offset: u64,
        reason: String,
    },
    #[error("{kind} at file offset {offset}: corrupt at byte {at} of its contents: {reason}")]
    Corrupt {
        kind: BlockKind,
        offset: u64,
        /// Position inside the block's (decompressed) contents.
        at: usize,
        reason: &'static str,
    },
    #[error(
        "keys must be strictly increasing: {} after {}",
        .key.escape_ascii(),
        .prev.escape_ascii()
    )]
    KeyOrder { prev: Bytes, key: Bytes },
    #[error("keys must not be empty")]
    EmptyKey,
    #[error("key of {0} bytes exceeds the {MAX_KEY_LEN}-byte limit")]
    KeyTooLarge(usize),
    #[error("value of {0} bytes exceeds the {MAX_VALUE_LEN}-byte limit")]
    ValueTooLarge(usize),
    #[error("a table must hold at least one entry")]
    EmptyTable,
    #[error("min_seq {min} is greater than max_seq {max}")]
    SeqRange { min: u64, max: u64 },
}

impl FormatError {
    pub(crate) fn corrupt(kind: BlockKind, offset: u64, at: usize, reason: &'static str) -> Self {
        FormatError::Corrupt {
            kind,
            offset,
            at,
            reason,
        }
    }
}
