//! Block framing shared by data, index, filter and properties blocks:
//!
//! ```text
//! payload | type: u8 | crc: u32 LE = masked crc32c(payload | type)
//! ```
//!
//! With type 0 the payload is the block contents; with type 1 it is
//! `varint(uncompressed_len) | lz4 block`.

use std::borrow::Cow;

use bytes::Bytes;

use super::coding::{Cursor, masked_crc, put_varint};
use super::{BlockKind, Compression, FormatError};

/// Bytes after the payload: the type byte and the crc.
pub(crate) const TRAILER_LEN: usize = 5;

/// Largest decompressed block a reader accepts. The declared length of a compressed block is
/// checked against this before anything is allocated, so a corrupt length cannot exhaust memory.
pub const MAX_BLOCK_CONTENTS_LEN: usize = 64 * 1024 * 1024;

/// An lz4 sequence expands at most ~255-fold (each length-extension byte adds 255 bytes), so a
/// declared length beyond this bound is corrupt whatever the data.
const LZ4_MAX_EXPANSION: usize = 255;
const LZ4_SLACK: usize = 64;

/// Appends `contents` as a framed block and returns the framed length. Compression is kept only
/// when it saves at least 1/8 of the contents; otherwise the block is stored as is (type 0).
pub(crate) fn encode(out: &mut Vec<u8>, contents: &[u8], compression: Compression) -> u64 {
    let start = out.len();
    let stored = match compression {
        Compression::Lz4 if contents.len() <= MAX_BLOCK_CONTENTS_LEN => {
            let compressed = lz4_flex::block::compress(contents);
            let mut header = Vec::with_capacity(10);
            put_varint(&mut header, contents.len() as u64);
            let worth_it = header.len() + compressed.len() <= contents.len() - contents.len() / 8;
            if worth_it {
                out.extend_from_slice(&header);
                out.extend_from_slice(&compressed);
                Compression::Lz4
            } else {
                Compression::None
            }
        }
        _ => Compression::None,
    };
    if stored == Compression::None {
        out.extend_from_slice(contents);
    }
    out.push(stored.tag());
    let crc = masked_crc(&[&out[start..]]);
    out.extend_from_slice(&crc.to_le_bytes());
    (out.len() - start) as u64
}

/// Verifies a framed block (exactly the bytes of its handle) and returns its contents,
/// borrowed when the block is stored uncompressed.
pub(crate) fn decode(
    kind: BlockKind,
    offset: u64,
    raw: &[u8],
) -> Result<Cow<'_, [u8]>, FormatError> {
    let payload_len = raw
        .len()
        .checked_sub(TRAILER_LEN)
        .ok_or(FormatError::Truncated {
            kind,
            offset,
            need: TRAILER_LEN as u64,
            have: raw.len() as u64,
        })?;
    let (body, crc_bytes) = raw.split_at(payload_len + 1);
    let expected = u32::from_le_bytes(crc_bytes.try_into().expect("4-byte trailer"));
    let actual = masked_crc(&[body]);
    if expected != actual {
        return Err(FormatError::Checksum {
            kind,
            offset,
            expected,
            actual,
        });
    }
    let (payload, tag) = body.split_at(payload_len);
    match Compression::from_tag(tag[0]) {
        Some(Compression::None) => Ok(Cow::Borrowed(payload)),
        Some(Compression::Lz4) => decompress(kind, offset, payload).map(Cow::Owned),
        None => Err(FormatError::UnknownCompression {
            kind,
            offset,
            tag: tag[0],
        }),
    }
}

/// Like [`decode`], but shares the caller's buffer when the block is stored uncompressed.
pub(crate) fn decode_bytes(
    kind: BlockKind,
    offset: u64,
    raw: &Bytes,
) -> Result<Bytes, FormatError> {
    match decode(kind, offset, raw)? {
        Cow::Borrowed(contents) => Ok(raw.slice_ref(contents)),
        Cow::Owned(contents) => Ok(Bytes::from(contents)),
    }
}

fn decompress(kind: BlockKind, offset: u64, payload: &[u8]) -> Result<Vec<u8>, FormatError> {
    let corrupt = |at, reason| FormatError::corrupt(kind, offset, at, reason);
    let mut cursor = Cursor::new(payload);
    let declared = cursor
        .varint_usize()
        .ok_or_else(|| corrupt(0, "bad uncompressed-length varint"))?;
    let compressed = &payload[cursor.pos()..];
    if declared > MAX_BLOCK_CONTENTS_LEN {
        return Err(corrupt(0, "uncompressed length above the 64 MiB limit"));
    }
    let max_plausible = compressed
        .len()
        .saturating_mul(LZ4_MAX_EXPANSION)
        .saturating_add(LZ4_SLACK);
    if declared > max_plausible {
        return Err(corrupt(
            0,
            "uncompressed length impossible for this lz4 payload",
        ));
    }
    let mut out = vec![0; declared];
    let written = lz4_flex::block::decompress_into(compressed, &mut out).map_err(|e| {
        FormatError::Decompress {
            kind,
            offset,
            reason: e.to_string(),
        }
    })?;
    if written != declared {
        return Err(FormatError::Decompress {
            kind,
            offset,
            reason: format!("declared {declared} bytes, decompressed {written}"),
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(contents: &[u8], compression: Compression) -> Vec<u8> {
        let mut out = vec![0xaa; 3]; // framing must not depend on what precedes it
        let len = encode(&mut out, contents, compression);
        assert_eq!(len as usize, out.len() - 3);
        out.split_off(3)
    }

    #[test]
    fn round_trips_both_compressions() {
        let compressible = b"abcdefgh".repeat(100);
        for compression in [Compression::None, Compression::Lz4] {
            for contents in [&b""[..], b"x", &compressible] {
                let raw = frame(contents, compression);
                let decoded = decode(BlockKind::Data, 7, &raw).unwrap();
                assert_eq!(&*decoded, contents);
            }
        }
    }

    #[test]
    fn compresses_only_when_it_pays() {
        let compressible = b"abcdefgh".repeat(100);
        let raw = frame(&compressible, Compression::Lz4);
        assert_eq!(raw[raw.len() - TRAILER_LEN], Compression::Lz4.tag());
        assert!(raw.len() < compressible.len() / 2);

        let incompressible: Vec<u8> = (0..200u64)
            .map(|i| super::super::xxh64(&i.to_le_bytes(), 0) as u8)
            .collect();
        let raw = frame(&incompressible, Compression::Lz4);
        assert_eq!(raw[raw.len() - TRAILER_LEN], Compression::None.tag());
        assert_eq!(raw.len(), incompressible.len() + TRAILER_LEN);
    }

    #[test]
    fn every_single_byte_flip_is_detected() {
        let contents = b"hello hello hello hello hello hello".to_vec();
        for compression in [Compression::None, Compression::Lz4] {
            let raw = frame(&contents, compression);
            for i in 0..raw.len() {
                for mask in [0x01, 0x80, 0xff] {
                    let mut bad = raw.clone();
                    bad[i] ^= mask;
                    assert!(
                        decode(BlockKind::Index, 0, &bad).is_err(),
                        "flip {i} {mask:#x}"
                    );
                }
            }
        }
    }

    /// Frames `payload` with a valid crc under an arbitrary type, bypassing the encoder.
    fn forge(payload: &[u8], tag: u8) -> Vec<u8> {
        let mut raw = payload.to_vec();
        raw.push(tag);
        let crc = masked_crc(&[&raw]);
        raw.extend_from_slice(&crc.to_le_bytes());
        raw
    }

    #[test]
    fn rejects_forged_blocks_with_valid_crc() {
        let err = decode(BlockKind::Filter, 9, &forge(b"abc", 7)).unwrap_err();
        assert!(matches!(
            err,
            FormatError::UnknownCompression {
                tag: 7,
                offset: 9,
                ..
            }
        ));

        // Declared length above the cap: refused before allocating.
        let mut huge = Vec::new();
        put_varint(&mut huge, (MAX_BLOCK_CONTENTS_LEN + 1) as u64);
        huge.extend_from_slice(&[0; 100]);
        assert!(matches!(
            decode(BlockKind::Data, 0, &forge(&huge, 1)).unwrap_err(),
            FormatError::Corrupt { .. }
        ));

        // Declared length far beyond what 3 bytes of lz4 can produce.
        let mut implausible = Vec::new();
        put_varint(&mut implausible, 1 << 20);
        implausible.extend_from_slice(&[0x10, b'a', 0]);
        assert!(decode(BlockKind::Data, 0, &forge(&implausible, 1)).is_err());

        // Declared length that disagrees with the real one.
        let mut wrong = Vec::new();
        put_varint(&mut wrong, 5);
        wrong.extend_from_slice(&lz4_flex::block::compress(b"abc"));
        assert!(matches!(
            decode(BlockKind::Data, 0, &forge(&wrong, 1)).unwrap_err(),
            FormatError::Decompress { .. }
        ));

        assert!(matches!(
            decode(BlockKind::Data, 0, &[1, 2, 3]).unwrap_err(),
            FormatError::Truncated {
                need: 5,
                have: 3,
                ..
            }
        ));
    }
}
