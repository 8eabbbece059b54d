//! Bloom filter over a table's keys, so a point lookup for an absent key usually costs no
//! data-block fetch.
//!
//! Contents: `num_probes: u8 | bit array`. Bit `i` is bit `i % 8` (least significant first) of
//! byte `i / 8`. A key is hashed once with [`xxh64`] (seed 0); probe `j` (0-based) tests bit
//! `(h + j * delta) mod m` (wrapping u64 arithmetic) where `delta = rotate_left(h, 32) | 1` and
//! `m` is the number of bits (Kirsch–Mitzenmacher double hashing). An empty bit array
//! (`num_probes` 0) never rules a key out.

use super::hash::xxh64;
use super::{BlockKind, FormatError};

/// More probes than this only cost time: the optimum for 64 bits per key is 44, but the false
/// positive rate is already ~1e-13 at 30.
const MAX_PROBES: u8 = 30;
const MAX_BITS_PER_KEY: u32 = 64;
const MIN_BITS: u64 = 64;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BloomFilter {
    num_probes: u8,
    bits: Vec<u8>,
}

impl BloomFilter {
    /// False means the key is certainly absent; true means it may be present.
    pub fn may_contain(&self, key: &[u8]) -> bool {
        self.may_contain_hash(key_hash(key))
    }

    /// [`Self::may_contain`] for a precomputed [`key_hash`], so a reader probing many tables
    /// hashes each key once.
    pub fn may_contain_hash(&self, hash: u64) -> bool {
        let bit_len = self.bit_len();
        if bit_len == 0 {
            return true;
        }
        probes(hash, self.num_probes, bit_len).all(|bit| {
            // `bit < bit_len`, so the index is in bounds; `get` keeps that obvious.
            self.bits
                .get((bit / 8) as usize)
                .is_some_and(|byte| byte & (1 << (bit % 8)) != 0)
        })
    }

    pub fn num_probes(&self) -> u8 {
        self.num_probes
    }

    pub fn bit_len(&self) -> u64 {
        self.bits.len() as u64 * 8
    }

    pub fn mem_size(&self) -> usize {
        std::mem::size_of::<Self>() + self.bits.capacity()
    }

    pub(crate) fn decode(offset: u64, contents: &[u8]) -> Result<Self, FormatError> {
        let corrupt = |at, reason| FormatError::corrupt(BlockKind::Filter, offset, at, reason);
        let (&num_probes, bits) = contents
            .split_first()
            .ok_or_else(|| corrupt(0, "empty filter block"))?;
        if num_probes > MAX_PROBES {
            return Err(corrupt(0, "too many probes"));
        }
        if (num_probes == 0) != bits.is_empty() {
            return Err(corrupt(0, "probe count and bit array disagree"));
        }
        Ok(BloomFilter {
            num_probes,
            bits: bits.to_vec(),
        })
    }

    /// Filter-block contents for keys with these [`key_hash`]es.
    pub(crate) fn build(hashes: &[u64], bits_per_key: u32) -> Vec<u8> {
        let bits_per_key = bits_per_key.min(MAX_BITS_PER_KEY);
        if bits_per_key == 0 || hashes.is_empty() {
            return vec![0];
        }
        let bit_len = (hashes.len() as u64 * u64::from(bits_per_key)).max(MIN_BITS);
        let byte_len = bit_len.div_ceil(8);
        let bit_len = byte_len * 8;
        let num_probes = probes_for(bits_per_key);
        let mut contents = vec![0u8; 1 + byte_len as usize];
        contents[0] = num_probes;
        let bits = &mut contents[1..];
        for &hash in hashes {
            for bit in probes(hash, num_probes, bit_len) {
                bits[(bit / 8) as usize] |= 1 << (bit % 8);
            }
        }
        contents
    }
}

/// The hash the filter is built on.
pub fn key_hash(key: &[u8]) -> u64 {
    xxh64(key, 0)
}

/// `round(bits_per_key * ln 2)`, the probe count minimising false positives, in integer maths
/// so every implementation agrees.
fn probes_for(bits_per_key: u32) -> u8 {
    ((bits_per_key * 69 + 50) / 100).clamp(1, u32::from(MAX_PROBES)) as u8
}

fn probes(hash: u64, num_probes: u8, bit_len: u64) -> impl Iterator<Item = u64> {
    let delta = hash.rotate_left(32) | 1;
    (0..u64::from(num_probes)).map(move |j| hash.wrapping_add(j.wrapping_mul(delta)) % bit_len)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn filter(keys: &[Vec<u8>], bits_per_key: u32) -> BloomFilter {
        let hashes: Vec<u64> = keys.iter().map(|k| key_hash(k)).collect();
        BloomFilter::decode(0, &BloomFilter::build(&hashes, bits_per_key)).unwrap()
    }

    #[test]
    fn false_positive_rate_is_near_theory() {
        let keys: Vec<Vec<u8>> = (0..10_000u32)
            .map(|i| format!("key{i:08}").into_bytes())
            .collect();
        let f = filter(&keys, 10);
        assert_eq!(f.num_probes(), 7);
        let false_positives = (0..10_000u32)
            .filter(|i| f.may_contain(format!("absent{i:08}").as_bytes()))
            .count();
        // Theory for 10 bits/key, 7 probes: 0.82%.
        assert!(
            false_positives < 200,
            "{false_positives} false positives in 10000"
        );
    }

    #[test]
    fn empty_filter_never_rules_out() {
        let f = filter(&[b"a".to_vec()], 0);
        assert_eq!(f.bit_len(), 0);
        assert!(f.may_contain(b"anything"));
        assert_eq!(BloomFilter::build(&[], 10), vec![0]);
    }

    #[test]
    fn rejects_malformed_contents() {
        assert!(BloomFilter::decode(0, &[]).is_err());
        assert!(BloomFilter::decode(0, &[0, 0xff]).is_err());
        assert!(BloomFilter::decode(0, &[3]).is_err());
        assert!(BloomFilter::decode(0, &[31, 0xff]).is_err());
    }

    /// Pins the probe sequence: a change here breaks every filter already written.
    #[test]
    fn layout_is_stable() {
        let contents = BloomFilter::build(&[key_hash(b"skyvault")], 10);
        assert_eq!(contents.len(), 1 + 8);
        assert_eq!(contents[0], 7);
        let set: Vec<u64> = (0..64u64)
            .filter(|b| contents[1 + (b / 8) as usize] & (1 << (b % 8)) != 0)
            .collect();
        // Computed independently (python xxhash) from the spec in docs/format.md:
        // h = 0x02bd7bc81c9f948b, delta = rotl(h, 32) | 1, bits (h + j * delta) mod 64.
        assert_eq!(xxh64(b"skyvault", 0), 0x02bd_7bc8_1c9f_948b);
        let expected = vec![1, 11, 20, 29, 38, 47, 56];
        assert_eq!(set, expected);
    }

    proptest! {
        #[test]
        fn no_false_negatives(
            keys in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..40), 1..300),
            bits_per_key in 1u32..20,
        ) {
            let f = filter(&keys, bits_per_key);
            for key in &keys {
                prop_assert!(f.may_contain(key));
            }
        }
    }
}
