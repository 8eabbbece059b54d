//! Whole-table tests: round trips through both read paths, corruption detection, robustness.
//! This module holds the shared model, strategies and checks.

use std::collections::BTreeMap;

use proptest::prelude::*;

use super::*;

mod corruption;
mod round_trip;

type Model = BTreeMap<Vec<u8>, Value>;

fn options(block_size: usize, compression: Compression, bloom_bits_per_key: u32) -> WriterOptions {
    WriterOptions {
        block_size,
        bloom_bits_per_key,
        compression,
    }
}

fn build(model: &Model, opts: WriterOptions) -> Bytes {
    let mut w = Writer::new(opts);
    for (k, v) in model {
        w.add(k, v).unwrap();
    }
    assert_eq!(w.entry_count(), model.len() as u64);
    w.finish(3, 7).unwrap()
}

fn slice(file: &Bytes, range: std::ops::Range<u64>) -> Result<Bytes, FormatError> {
    // A real reader's ranged GET would fail the same way.
    if range.start > range.end || range.end > file.len() as u64 {
        return Err(FormatError::Truncated {
            kind: BlockKind::File,
            offset: range.start,
            need: range.end,
            have: file.len() as u64,
        });
    }
    Ok(file.slice(range.start as usize..range.end as usize))
}

/// The remote read path: footer, then meta, then exactly one data block per lookup.
fn open_remote(file: &Bytes) -> Result<TableMeta, FormatError> {
    let tail_start = file.len().saturating_sub(FOOTER_LEN) as u64;
    let footer = Footer::decode(&slice(file, tail_start..file.len() as u64)?)?;
    TableMeta::decode(&footer, &slice(file, footer.meta_range())?)
}

fn remote_get(file: &Bytes, key: &[u8]) -> Result<Option<Value>, FormatError> {
    let meta = open_remote(file)?;
    if !meta.may_contain(key) {
        return Ok(None);
    }
    let Some(i) = meta.index.find(key) else {
        return Ok(None);
    };
    let handle = meta.index.handle(i);
    Ok(DataBlock::decode(handle, slice(file, handle.range())?)?.get(key))
}

fn remote_scan(file: &Bytes) -> Result<Vec<Entry>, FormatError> {
    let meta = open_remote(file)?;
    let mut out = Vec::new();
    for i in 0..meta.index.len() {
        let raw = slice(file, meta.index.handle(i).range())?;
        out.extend(meta.decode_block(i, raw)?.entries());
    }
    Ok(out)
}

fn entries(model: &Model) -> Vec<Entry> {
    model
        .iter()
        .map(|(k, v)| Entry {
            key: Bytes::copy_from_slice(k),
            value: v.clone(),
        })
        .collect()
}

fn value_strategy() -> impl Strategy<Value = Value> {
    prop_oneof![
        2 => Just(Value::Delete),
        1 => Just(Value::Put(Bytes::new())),
        4 => proptest::collection::vec(any::<u8>(), 0..100).prop_map(|v| Value::Put(v.into())),
        // Compressible values, so lz4 blocks are exercised, not just stored-as-is fallbacks.
        2 => (any::<u8>(), 0..2000usize).prop_map(|(b, n)| Value::Put(vec![b; n].into())),
    ]
}

/// Sorted unique non-empty binary keys, many sharing a long common prefix.
fn model_strategy(max_entries: usize) -> impl Strategy<Value = Model> {
    (
        proptest::collection::vec(any::<u8>(), 0..300),
        proptest::collection::vec(
            (
                any::<bool>(),
                proptest::collection::vec(any::<u8>(), 0..12),
                value_strategy(),
            ),
            1..max_entries,
        ),
    )
        .prop_map(|(prefix, items)| {
            items
                .into_iter()
                .map(|(prefixed, suffix, v)| {
                    let key = if prefixed {
                        [&prefix[..], &suffix].concat()
                    } else {
                        suffix
                    };
                    (key, v)
                })
                .filter(|(k, _)| !k.is_empty())
                .collect()
        })
        .prop_filter("at least one key", |m: &Model| !m.is_empty())
}

fn opts_strategy() -> impl Strategy<Value = WriterOptions> {
    (
        prop_oneof![Just(1usize), Just(64), Just(512), Just(4096)],
        prop_oneof![Just(Compression::None), Just(Compression::Lz4)],
        prop_oneof![Just(0u32), Just(1), Just(10)],
    )
        .prop_map(|(b, c, f)| options(b, c, f))
}

fn check_round_trip(model: &Model, file: &Bytes, probes: &[Vec<u8>]) -> Result<(), TestCaseError> {
    let table = Table::from_bytes(file.clone())?;
    let props = &table.meta().props;
    prop_assert_eq!(props.entry_count, model.len() as u64);
    prop_assert_eq!(
        props.tombstone_count,
        model.values().filter(|v| v.is_delete()).count() as u64
    );
    prop_assert_eq!(&props.min_key[..], &model.keys().next().unwrap()[..]);
    prop_assert_eq!(&props.max_key[..], &model.keys().next_back().unwrap()[..]);
    prop_assert_eq!((props.min_seq, props.max_seq), (3, 7));

    let all: Vec<Entry> = table.iter().collect::<Result<_, _>>()?;
    prop_assert_eq!(&all, &entries(model));
    prop_assert_eq!(&remote_scan(file)?, &entries(model));
    for (k, v) in model {
        prop_assert_eq!(table.get(k)?, Some(v.clone()));
        prop_assert_eq!(remote_get(file, k)?, Some(v.clone()));
    }
    for probe in probes {
        prop_assert_eq!(table.get(probe)?, model.get(probe).cloned());
        prop_assert_eq!(remote_get(file, probe)?, model.get(probe).cloned());
        let from: Vec<Entry> = table.iter_from(probe).collect::<Result<_, _>>()?;
        let expected: Vec<Entry> = entries(model)
            .into_iter()
            .filter(|e| e.key >= probe[..])
            .collect();
        prop_assert_eq!(from, expected);
    }
    Ok(())
}

/// Every way of reading `file` must fail, and whatever is returned before failing must be right.
fn check_corruption_detected(model: &Model, file: &Bytes, what: &str) -> Result<(), TestCaseError> {
    let whole = Table::from_bytes(file.clone()).and_then(|t| t.verify());
    prop_assert!(
        whole.is_err(),
        "{}: Table::from_bytes + verify accepted it",
        what
    );
    prop_assert!(
        remote_scan(file).is_err(),
        "{}: footer→meta→blocks accepted it",
        what
    );

    if let Ok(table) = Table::from_bytes(file.clone()) {
        let expected = entries(model);
        let read: Vec<Result<Entry, FormatError>> = table.iter().collect();
        let good = read.iter().take_while(|r| r.is_ok()).count();
        prop_assert_eq!(
            good + 1,
            read.len(),
            "{}: iteration must end at its first error",
            what
        );
        for (got, want) in read.iter().zip(&expected) {
            if let Ok(got) = got {
                prop_assert_eq!(got, want, "{}: wrong data before the error", what);
            }
        }
        for (k, v) in model {
            if let Ok(got) = table.get(k) {
                prop_assert_eq!(got.as_ref(), Some(v), "{}: wrong value", what);
            }
        }
    }
    for (k, v) in model {
        if let Ok(got) = remote_get(file, k) {
            prop_assert_eq!(got.as_ref(), Some(v), "{}: wrong value (remote)", what);
        }
    }
    Ok(())
}

fn flipped(file: &Bytes, pos: usize, mask: u8) -> Bytes {
    let mut bytes = file.to_vec();
    bytes[pos] ^= mask;
    Bytes::from(bytes)
}

fn small_model() -> Model {
    let mut model: Model = (0..30u32)
        .map(|i| {
            let v = match i % 4 {
                0 => Value::Delete,
                1 => Value::Put(Bytes::new()),
                _ => Value::Put(Bytes::from(format!("value {i} value {i} value {i}"))),
            };
            (format!("prefix/shared/key{i:03}").into_bytes(), v)
        })
        .collect();
    model.insert(
        vec![0xff, 0x00, 0x01],
        Value::Put(Bytes::from_static(&[0; 40])),
    );
    model
}
