//! The fixed-size footer: the only structure at a known position (the end of the file), so a
//! reader starts there.
//!
//! ```text
//! offset  width  field
//!  0      4      crc: u32 LE, masked crc32c of footer bytes 4..48
//!  4      8      meta_offset: u64 LE (= length of the data region; index block starts here)
//! 12      8      index_len: u64 LE
//! 20      8      filter_len: u64 LE
//! 28      8      props_len: u64 LE
//! 36      2      reserved: u16 LE, must be 0
//! 38      2      version: u16 LE
//! 40      8      magic: u64 LE
//! ```

use super::coding::{Cursor, masked_crc};
use super::frame::TRAILER_LEN;
use super::{BlockHandle, BlockKind, FormatError};

pub const FOOTER_LEN: usize = 48;
/// The last 8 bytes of every table: ASCII `SKYV-SST`.
pub const MAGIC: u64 = u64::from_le_bytes(*b"SKYV-SST");
/// The only version this code writes and reads.
pub const FORMAT_VERSION: u16 = 1;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Footer {
    meta_offset: u64,
    index_len: u64,
    filter_len: u64,
    props_len: u64,
}

impl Footer {
    pub(crate) fn new(meta_offset: u64, index_len: u64, filter_len: u64, props_len: u64) -> Self {
        Footer {
            meta_offset,
            index_len,
            filter_len,
            props_len,
        }
    }

    /// Decodes the footer from the end of `tail`. `tail` is normally the file's last
    /// [`FOOTER_LEN`] bytes; a longer suffix of the file is also accepted, so a reader may fetch
    /// a generous tail in one request and often get the meta region with it.
    ///
    /// Magic and version are checked before the crc so that a file from a newer writer is
    /// reported as [`FormatError::UnsupportedVersion`], whatever its footer looks like.
    pub fn decode(tail: &[u8]) -> Result<Footer, FormatError> {
        let start = tail
            .len()
            .checked_sub(FOOTER_LEN)
            .ok_or(FormatError::Truncated {
                kind: BlockKind::Footer,
                offset: 0,
                need: FOOTER_LEN as u64,
                have: tail.len() as u64,
            })?;
        let footer = &tail[start..];
        // The cursor cannot run out (the footer is FOOTER_LEN bytes); defaults keep it panic-free.
        let mut c = Cursor::new(footer);
        let expected = c.u32_le().unwrap_or_default();
        let mut next = || c.u64_le().unwrap_or_default();
        let decoded = Footer::new(next(), next(), next(), next());
        let reserved = c.u16_le().unwrap_or_default();
        let version = c.u16_le().unwrap_or_default();
        let magic = c.u64_le().unwrap_or_default();
        if magic != MAGIC {
            return Err(FormatError::BadMagic(magic));
        }
        if version != FORMAT_VERSION {
            return Err(FormatError::UnsupportedVersion(version));
        }
        let actual = masked_crc(&[&footer[4..]]);
        if expected != actual {
            return Err(FormatError::Checksum {
                kind: BlockKind::Footer,
                offset: 0,
                expected,
                actual,
            });
        }
        if reserved != 0 {
            return Err(corrupt(36, "reserved field is not zero"));
        }
        let footer = decoded;
        footer.check()?;
        Ok(footer)
    }

    pub(crate) fn encode(&self) -> [u8; FOOTER_LEN] {
        let mut out = [0u8; FOOTER_LEN];
        for (i, v) in [
            self.meta_offset,
            self.index_len,
            self.filter_len,
            self.props_len,
        ]
        .into_iter()
        .enumerate()
        {
            out[4 + 8 * i..12 + 8 * i].copy_from_slice(&v.to_le_bytes());
        }
        // reserved (36..38) stays 0
        out[38..40].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
        out[40..48].copy_from_slice(&MAGIC.to_le_bytes());
        let crc = masked_crc(&[&out[4..]]);
        out[..4].copy_from_slice(&crc.to_le_bytes());
        out
    }

    /// Every block is at least a trailer long, and the file length must fit in a u64.
    fn check(&self) -> Result<(), FormatError> {
        let min_block = TRAILER_LEN as u64 + 1;
        if self.meta_offset < min_block {
            return Err(corrupt(4, "data region too short to hold a block"));
        }
        if self.index_len < min_block || self.filter_len < min_block || self.props_len < min_block {
            return Err(corrupt(12, "meta block too short to hold a trailer"));
        }
        [
            self.index_len,
            self.filter_len,
            self.props_len,
            FOOTER_LEN as u64,
        ]
        .into_iter()
        .try_fold(self.meta_offset, u64::checked_add)
        .ok_or_else(|| corrupt(4, "file length overflows"))?;
        Ok(())
    }

    /// Where the index, filter and properties blocks live, in this order, back to back.
    pub fn meta_range(&self) -> std::ops::Range<u64> {
        self.meta_offset..self.meta_offset + self.meta_len()
    }

    fn meta_len(&self) -> u64 {
        self.index_len + self.filter_len + self.props_len
    }

    pub fn index_handle(&self) -> BlockHandle {
        BlockHandle {
            offset: self.meta_offset,
            len: self.index_len,
        }
    }

    pub fn filter_handle(&self) -> BlockHandle {
        BlockHandle {
            offset: self.meta_offset + self.index_len,
            len: self.filter_len,
        }
    }

    pub fn props_handle(&self) -> BlockHandle {
        BlockHandle {
            offset: self.meta_offset + self.index_len + self.filter_len,
            len: self.props_len,
        }
    }

    /// Length of the data region, which starts at file offset 0.
    pub fn data_len(&self) -> u64 {
        self.meta_offset
    }

    /// Length of the whole file this footer ends.
    pub fn file_len(&self) -> u64 {
        self.meta_range().end + FOOTER_LEN as u64
    }
}

fn corrupt(at: usize, reason: &'static str) -> FormatError {
    FormatError::corrupt(BlockKind::Footer, 0, at, reason)
}
