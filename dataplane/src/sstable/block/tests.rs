use super::*;
use proptest::prelude::*;

fn put(v: &'static [u8]) -> Value {
    Value::Put(Bytes::from_static(v))
}

fn contents(entries: &[(&[u8], Value)]) -> Vec<u8> {
    let mut b = BlockBuilder::default();
    for (k, v) in entries {
        b.add(k, v);
    }
    b.finish()
}

fn sample() -> Vec<(Vec<u8>, Value)> {
    let mut entries: Vec<(Vec<u8>, Value)> = (0..40u32)
        .map(|i| {
            let key = format!("user/{:04}", i * 2).into_bytes();
            let value = match i % 3 {
                0 => Value::Delete,
                1 => put(b""),
                _ => Value::Put(Bytes::from(format!("value-{i}"))),
            };
            (key, value)
        })
        .collect();
    entries.insert(0, (vec![0x00], put(b"binary")));
    entries.push((vec![0xff, 0xff], put(b"last")));
    entries
}

fn block_of(entries: &[(Vec<u8>, Value)]) -> DataBlock {
    let refs: Vec<(&[u8], Value)> = entries.iter().map(|(k, v)| (&k[..], v.clone())).collect();
    DataBlock::from_contents(Bytes::from(contents(&refs))).unwrap()
}

#[test]
fn get_and_iterate() {
    let entries = sample();
    let block = block_of(&entries);
    assert_eq!(block.len(), entries.len());
    assert_eq!(block.first_key(), [0x00]);
    assert_eq!(block.last_key(), [0xff, 0xff]);
    for (k, v) in &entries {
        assert_eq!(block.get(k).as_ref(), Some(v), "{k:?}");
    }
    for miss in [
        &b""[..],
        b"\x00\x00",
        b"user/0001",
        b"user/0079",
        b"user/1",
        b"\xff\xff\xff",
    ] {
        assert_eq!(block.get(miss), None, "{miss:?}");
    }
    let all: Vec<(Vec<u8>, Value)> = block.entries().map(|e| (e.key.to_vec(), e.value)).collect();
    assert_eq!(all, entries);
    for (i, (k, _)) in entries.iter().enumerate() {
        let from: Vec<Vec<u8>> = block.entries_from(k).map(|e| e.key.to_vec()).collect();
        let expected: Vec<Vec<u8>> = entries[i..].iter().map(|(k, _)| k.clone()).collect();
        assert_eq!(from, expected);
        // Just above k: everything after it.
        let mut above = k.clone();
        above.push(0);
        assert_eq!(block.entries_from(&above).count(), entries.len() - i - 1);
    }
    assert_eq!(block.clone().into_entries().count(), entries.len());
    assert_eq!(block.into_entries_from(b"user/0040").count(), 21);
}

#[test]
fn tombstone_and_empty_value_are_distinct() {
    let block = block_of(&[(b"a".to_vec(), Value::Delete), (b"b".to_vec(), put(b""))]);
    assert_eq!(block.get(b"a"), Some(Value::Delete));
    assert_eq!(block.get(b"b"), Some(put(b"")));
}

#[test]
fn rejects_malformed_contents() {
    let ok = contents(&[(b"a", put(b"1")), (b"b", put(b"2"))]);
    let r = |v: u32| v.to_le_bytes();
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (vec![1, 2], "block shorter than its restart count"),
        (
            [&[0u8; 4][..], &r(5)].concat(),
            "restart array larger than the block",
        ),
        (r(0).to_vec(), "no restart points"),
        (
            [&r(0)[..], &r(1)].concat(),
            "restart point past the last entry",
        ),
        (
            [&ok[..4], &r(1)[..], &r(1)].concat(),
            "first restart point is not 0",
        ),
        (
            [&[0, 1, 1, b'a', 2, 1, 1, b'a'][..], &r(0), &r(1)].concat(),
            "shared prefix longer than the previous key",
        ),
        (
            [&[0, 1, 1, b'b', 0, 1, 1, b'a'][..], &r(0), &r(1)].concat(),
            "keys not strictly increasing",
        ),
        (
            [&[0, 1, 1, b'a', 1, 0, 1][..], &r(0), &r(1)].concat(),
            "keys not strictly increasing",
        ),
        ([&[0, 0, 1][..], &r(0), &r(1)].concat(), "empty key"),
        (
            [&[0, 1, 9, b'a'][..], &r(0), &r(1)].concat(),
            "entry runs past the end",
        ),
        (
            [&[0, 1, 1, b'a', 0, 1, 1, b'b'][..], &r(0), &r(2), &r(2)].concat(),
            "restart point not on an entry boundary",
        ),
        (
            [&[0, 1, 1, b'a', 1, 1, 1, b'b'][..], &r(0), &r(4), &r(2)].concat(),
            "restart entry shares a prefix",
        ),
    ];
    for (contents, reason) in cases {
        match DataBlock::from_contents(Bytes::from(contents.clone())) {
            Err((_, r)) => assert_eq!(r, reason, "{contents:?}"),
            Ok(_) => panic!("accepted {contents:?}, expected {reason}"),
        }
    }
}

proptest! {
    /// Structural validation alone (crc bypassed) must never panic, and whatever it accepts
    /// must iterate in strictly increasing key order.
    #[test]
    fn mutated_contents_never_panic(
        flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..4),
        cut in any::<prop::sample::Index>(),
        truncate: bool,
    ) {
        let entries = sample();
        let refs: Vec<(&[u8], Value)> = entries.iter().map(|(k, v)| (&k[..], v.clone())).collect();
        let mut bytes = contents(&refs);
        for (i, x) in flips {
            let i = i.index(bytes.len());
            bytes[i] ^= x;
        }
        if truncate {
            bytes.truncate(cut.index(bytes.len()));
        }
        if let Ok(block) = DataBlock::from_contents(Bytes::from(bytes)) {
            let keys: Vec<Bytes> = block.entries().map(|e| e.key).collect();
            prop_assert_eq!(keys.len(), block.len());
            prop_assert!(keys.windows(2).all(|w| w[0] < w[1]));
            for k in &keys {
                prop_assert!(block.get(k).is_some());
                prop_assert_eq!(block.entries_from(k).next().map(|e| e.key), Some(k.clone()));
            }
        }
    }
}
