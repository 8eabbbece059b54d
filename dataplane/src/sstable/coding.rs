//! Primitive encodings shared by every structure: LEB128 varints, little-endian fixed-width
//! integers and the masked crc32c.

/// Appends `v` as an unsigned LEB128 varint (7 bits per byte, low group first, high bit set on
/// every byte but the last).
pub(crate) fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// Added to the rotated crc so that a block which itself contains crcs does not checksum to a
/// predictable value (the LevelDB/RocksDB convention).
const CRC_MASK_DELTA: u32 = 0xa282_ead8;

/// The masked crc32c (Castagnoli) of the concatenation of `parts`.
pub(crate) fn masked_crc(parts: &[&[u8]]) -> u32 {
    let crc = parts
        .iter()
        .fold(0, |crc, part| crc32c::crc32c_append(crc, part));
    crc.rotate_right(15).wrapping_add(CRC_MASK_DELTA)
}

/// Length of the common prefix of `a` and `b`.
pub(crate) fn shared_prefix_len(a: &[u8], b: &[u8]) -> usize {
    a.iter().zip(b).take_while(|(x, y)| x == y).count()
}

/// A bounds-checked reader over a byte slice. Every read returns `None` instead of reading past
/// the end, so decoders cannot panic on short or corrupt input; callers attach the context
/// (structure, offset) when they turn `None` into a `FormatError`.
pub(crate) struct Cursor<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    pub(crate) fn new(buf: &'a [u8]) -> Self {
        Cursor { buf, pos: 0 }
    }

    pub(crate) fn at(buf: &'a [u8], pos: usize) -> Self {
        Cursor { buf, pos }
    }

    /// Position of the next unread byte.
    pub(crate) fn pos(&self) -> usize {
        self.pos
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.pos >= self.buf.len()
    }

    pub(crate) fn bytes(&mut self, n: usize) -> Option<&'a [u8]> {
        let end = self.pos.checked_add(n)?;
        let out = self.buf.get(self.pos..end)?;
        self.pos = end;
        Some(out)
    }

    pub(crate) fn u8(&mut self) -> Option<u8> {
        self.bytes(1).map(|b| b[0])
    }

    pub(crate) fn u16_le(&mut self) -> Option<u16> {
        self.array().map(u16::from_le_bytes)
    }

    pub(crate) fn u32_le(&mut self) -> Option<u32> {
        self.array().map(u32::from_le_bytes)
    }

    pub(crate) fn u64_le(&mut self) -> Option<u64> {
        self.array().map(u64::from_le_bytes)
    }

    fn array<const N: usize>(&mut self) -> Option<[u8; N]> {
        self.bytes(N)?.try_into().ok()
    }

    /// Reads a minimally encoded LEB128 varint of at most 10 bytes. Overlong encodings
    /// (a trailing 0x00 group) and values above `u64::MAX` are rejected, so every value has
    /// exactly one valid encoding.
    pub(crate) fn varint(&mut self) -> Option<u64> {
        let mut value = 0u64;
        for i in 0..10 {
            let byte = self.u8()?;
            let group = u64::from(byte & 0x7f);
            // The 10th byte may only carry bit 63.
            if i == 9 && byte > 1 {
                return None;
            }
            value |= group << (7 * i);
            if byte & 0x80 == 0 {
                return (i == 0 || byte != 0).then_some(value);
            }
        }
        None
    }

    /// A varint that must fit in `usize` (lengths and counts).
    pub(crate) fn varint_usize(&mut self) -> Option<usize> {
        self.varint().and_then(|v| usize::try_from(v).ok())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn varint_known_encodings() {
        let cases: &[(u64, &[u8])] = &[
            (0, &[0x00]),
            (1, &[0x01]),
            (127, &[0x7f]),
            (128, &[0x80, 0x01]),
            (300, &[0xac, 0x02]),
            (
                u64::MAX,
                &[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01],
            ),
        ];
        for &(v, enc) in cases {
            let mut out = Vec::new();
            put_varint(&mut out, v);
            assert_eq!(out, enc, "encoding {v}");
            assert_eq!(Cursor::new(enc).varint(), Some(v), "decoding {v}");
        }
    }

    #[test]
    fn varint_rejects_malformed() {
        let bad: &[&[u8]] = &[
            &[],
            &[0x80],                                                       // truncated
            &[0x80, 0x00],                                                 // overlong
            &[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02], // > u64::MAX
            &[0xff; 11],                                                   // too long
        ];
        for enc in bad {
            assert_eq!(Cursor::new(enc).varint(), None, "{enc:02x?}");
        }
    }

    #[test]
    fn masked_crc_is_not_the_plain_crc() {
        // crc32c("123456789") = 0xe3069283 is the standard check value.
        assert_eq!(crc32c::crc32c(b"123456789"), 0xe306_9283);
        assert_eq!(
            masked_crc(&[b"1234", b"56789"]),
            0xe306_9283u32.rotate_right(15).wrapping_add(CRC_MASK_DELTA)
        );
    }

    #[test]
    fn cursor_never_reads_past_the_end() {
        let mut c = Cursor::new(&[1, 2, 3]);
        assert_eq!(c.u32_le(), None);
        assert_eq!(c.bytes(usize::MAX), None);
        assert_eq!(c.u16_le(), Some(0x0201));
        assert_eq!(c.u8(), Some(3));
        assert!(c.is_empty());
        assert_eq!(c.u8(), None);
    }

    proptest! {
        #[test]
        fn varint_round_trips(v: u64) {
            let mut out = Vec::new();
            put_varint(&mut out, v);
            let mut c = Cursor::new(&out);
            prop_assert_eq!(c.varint(), Some(v));
            prop_assert!(c.is_empty());
        }
    }
}
