//! XXH64 (xxHash, 64-bit variant), implemented here so the bloom filter's hash is pinned by the
//! format rather than by a dependency's version. Matches the reference implementation
//! (<https://github.com/Cyan4973/xxHash>, `XXH64`) bit for bit; see the test vectors below.

const P1: u64 = 0x9e37_79b1_85eb_ca87;
const P2: u64 = 0xc2b2_ae3d_27d4_eb4f;
const P3: u64 = 0x1656_67b1_9e37_79f9;
const P4: u64 = 0x85eb_ca77_c2b2_ae63;
const P5: u64 = 0x27d4_eb2f_1656_67c5;

/// XXH64 of `input` with `seed`.
pub fn xxh64(input: &[u8], seed: u64) -> u64 {
    let mut rest = input;
    let mut h = if input.len() >= 32 {
        let mut acc = [
            seed.wrapping_add(P1).wrapping_add(P2),
            seed.wrapping_add(P2),
            seed,
            seed.wrapping_sub(P1),
        ];
        while let Some((stripe, tail)) = rest.split_first_chunk::<32>() {
            for (lane, v) in acc.iter_mut().enumerate() {
                *v = round(*v, read_u64(&stripe[lane * 8..]));
            }
            rest = tail;
        }
        let mut h = acc[0]
            .rotate_left(1)
            .wrapping_add(acc[1].rotate_left(7))
            .wrapping_add(acc[2].rotate_left(12))
            .wrapping_add(acc[3].rotate_left(18));
        for v in acc {
            h = merge_round(h, v);
        }
        h
    } else {
        seed.wrapping_add(P5)
    };
    h = h.wrapping_add(input.len() as u64);

    while let Some((word, tail)) = rest.split_first_chunk::<8>() {
        h ^= round(0, u64::from_le_bytes(*word));
        h = h.rotate_left(27).wrapping_mul(P1).wrapping_add(P4);
        rest = tail;
    }
    if let Some((word, tail)) = rest.split_first_chunk::<4>() {
        h ^= u64::from(u32::from_le_bytes(*word)).wrapping_mul(P1);
        h = h.rotate_left(23).wrapping_mul(P2).wrapping_add(P3);
        rest = tail;
    }
    for &byte in rest {
        h ^= u64::from(byte).wrapping_mul(P5);
        h = h.rotate_left(11).wrapping_mul(P1);
    }
    avalanche(h)
}

fn read_u64(bytes: &[u8]) -> u64 {
    let mut word = [0; 8];
    word.copy_from_slice(&bytes[..8]);
    u64::from_le_bytes(word)
}

fn round(acc: u64, input: u64) -> u64 {
    acc.wrapping_add(input.wrapping_mul(P2))
        .rotate_left(31)
        .wrapping_mul(P1)
}

fn merge_round(acc: u64, v: u64) -> u64 {
    (acc ^ round(0, v)).wrapping_mul(P1).wrapping_add(P4)
}

fn avalanche(mut h: u64) -> u64 {
    h ^= h >> 33;
    h = h.wrapping_mul(P2);
    h ^= h >> 29;
    h = h.wrapping_mul(P3);
    h ^ (h >> 32)
}

#[cfg(test)]
mod tests {
    use super::xxh64;

    /// Vectors computed with the reference implementation (python `xxhash` 3.5, seed 0).
    #[test]
    fn matches_reference_vectors() {
        let hundred: Vec<u8> = (0..100).collect();
        let cases: &[(&[u8], u64)] = &[
            (b"", 0xef46_db37_51d8_e999),
            (b"a", 0xd24e_c4f1_a98c_6e5b),
            (b"abc", 0x44bc_2cf5_ad77_0999),
            (
                b"Nobody inspects the spammish repetition",
                0xfbce_a83c_8a37_8bf1,
            ),
            (&hundred, 0x6ac1_e580_3216_6597),
        ];
        for &(input, expected) in cases {
            assert_eq!(
                xxh64(input, 0),
                expected,
                "xxh64({:?})",
                input.escape_ascii().to_string()
            );
        }
        assert_eq!(xxh64(b"abc", 1), 0xbea9_ca81_9932_8908);
        let thirty_seven: Vec<u8> = (0..37).collect();
        assert_eq!(xxh64(&thirty_seven, 0x1_2345_6789), 0xe81a_25c1_6159_3bf3);
    }
}
