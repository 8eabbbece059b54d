//! Round trips: what is written is what every read path returns.

use proptest::prelude::*;

use super::*;

#[test]
fn writer_rejects_bad_input_and_carries_on() {
    let mut w = Writer::new(WriterOptions::default());
    let put = Value::Put(Bytes::from_static(b"v"));
    assert!(matches!(w.add(b"", &put), Err(FormatError::EmptyKey)));
    w.add(b"b", &put).unwrap();
    let err = w.add(b"a", &put).unwrap_err();
    assert_eq!(
        err.to_string(),
        "keys must be strictly increasing: a after b"
    );
    assert!(matches!(
        w.add(b"b", &put),
        Err(FormatError::KeyOrder { .. })
    ));
    let long_key = vec![b'c'; MAX_KEY_LEN + 1];
    assert!(matches!(
        w.add(&long_key, &put),
        Err(FormatError::KeyTooLarge(_))
    ));
    let big = Value::Put(Bytes::from(vec![0; MAX_VALUE_LEN + 1]));
    assert!(matches!(
        w.add(b"c", &big),
        Err(FormatError::ValueTooLarge(_))
    ));
    w.add(b"c", &Value::Delete).unwrap();
    assert_eq!(w.entry_count(), 2);
    let estimate = w.estimated_size();
    let file = w.finish(1, 1).unwrap();
    assert!(
        estimate >= file.len(),
        "estimate {estimate} < actual {}",
        file.len()
    );

    let table = Table::from_bytes(file).unwrap();
    assert_eq!(table.get(b"b").unwrap(), Some(put));
    assert_eq!(table.get(b"c").unwrap(), Some(Value::Delete));
    assert_eq!(table.get(b"a").unwrap(), None);

    assert!(matches!(
        Writer::new(WriterOptions::default()).finish(0, 0),
        Err(FormatError::EmptyTable)
    ));
    let mut w = Writer::new(WriterOptions::default());
    w.add(b"k", &Value::Delete).unwrap();
    assert!(matches!(
        w.finish(2, 1),
        Err(FormatError::SeqRange { min: 2, max: 1 })
    ));
}

#[test]
fn large_entries_round_trip() {
    let mut model = Model::new();
    model.insert(
        vec![b'k'; MAX_KEY_LEN],
        Value::Put(Bytes::from(vec![7; 1 << 20])),
    );
    model.insert(vec![b'l'], Value::Put(Bytes::from(vec![9; 3 << 20])));
    for compression in [Compression::None, Compression::Lz4] {
        let file = build(&model, options(16 * 1024, compression, 10));
        check_round_trip(&model, &file, &[b"j".to_vec(), vec![b'k'; 5]]).unwrap();
    }
}

#[test]
fn defaults_make_multi_block_tables_that_compress() {
    let model: Model = (0..5000u32)
        .map(|i| {
            (
                format!("{i:016}").into_bytes(),
                Value::Put(Bytes::from(format!("{i:0100}"))),
            )
        })
        .collect();
    let file = build(&model, WriterOptions::default());
    let table = Table::from_bytes(file.clone()).unwrap();
    let props = &table.meta().props;
    assert!(props.data_block_count > 10);
    assert!(props.data_bytes < (props.raw_key_bytes + props.raw_value_bytes) / 2);
    assert_eq!(props.compression, Compression::Lz4);
    assert!(table.meta().mem_size() > table.meta().filter.bit_len() as usize / 8);
    check_round_trip(
        &model,
        &file,
        &[b"0".to_vec(), b"00000000000049999".to_vec()],
    )
    .unwrap();
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn round_trips(
        model in model_strategy(300),
        opts in opts_strategy(),
        probes in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..8), 0..20),
    ) {
        let file = build(&model, opts);
        // Probes include near misses: every key with a byte appended.
        let mut probes = probes;
        probes.extend(model.keys().take(10).map(|k| [&k[..], &[0]].concat()));
        check_round_trip(&model, &file, &probes)?;
    }
}

/// The worked example of docs/format.md, byte for byte: the spec and the writer cannot drift.
#[test]
fn golden_file_matches_format_md() {
    let doc = include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/format.md"));
    let start = doc
        .find("<!-- golden-begin -->")
        .expect("golden-begin marker");
    let end = doc.find("<!-- golden-end -->").expect("golden-end marker");
    let expected: Vec<u8> = doc[start..end]
        .lines()
        .skip(1)
        .filter(|line| !line.starts_with("```"))
        .flat_map(|line| line.split('|').next().unwrap_or("").split_whitespace())
        .map(|hex| u8::from_str_radix(hex, 16).expect("hex byte"))
        .collect();

    let mut w = Writer::new(options(4096, Compression::None, 10));
    w.add(b"apple", &Value::Put(Bytes::from_static(b"red")))
        .unwrap();
    w.add(b"apricot", &Value::Delete).unwrap();
    w.add(b"banana", &Value::Put(Bytes::new())).unwrap();
    let file = w.finish(5, 9).unwrap();
    assert_eq!(file.len(), 144);
    assert_eq!(file[..], expected[..]);

    let table = Table::from_bytes(file).unwrap();
    assert_eq!(table.get(b"apricot").unwrap(), Some(Value::Delete));
    assert_eq!(
        table.get(b"banana").unwrap(),
        Some(Value::Put(Bytes::new()))
    );
    assert_eq!(table.get(b"cherry").unwrap(), None);
}
