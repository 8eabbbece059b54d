//! Corruption: every damaged file is rejected by every read path, and nothing panics.

use proptest::prelude::*;

use super::*;

#[test]
fn every_single_byte_flip_is_detected() {
    let model = small_model();
    for compression in [Compression::None, Compression::Lz4] {
        let file = build(&model, options(128, compression, 10));
        check_round_trip(&model, &file, &[]).unwrap();
        assert!(Table::from_bytes(file.clone()).unwrap().meta().index.len() > 3);
        for pos in 0..file.len() {
            for mask in [0x01, 0x80, 0xff] {
                let what = format!("{compression:?} byte {pos} ^ {mask:#04x}");
                check_corruption_detected(&model, &flipped(&file, pos, mask), &what).unwrap();
            }
        }
    }
}

#[test]
fn every_truncation_and_extension_is_detected() {
    let model = small_model();
    let file = build(&model, options(128, Compression::Lz4, 10));
    for len in 0..file.len() {
        assert!(
            Table::from_bytes(file.slice(..len)).is_err(),
            "prefix of {len} bytes"
        );
        assert!(
            Table::from_bytes(file.slice(len + 1..)).is_err(),
            "suffix from {len}"
        );
    }
    let mut longer = file.to_vec();
    longer.insert(0, 0);
    assert!(matches!(
        Table::from_bytes(Bytes::from(longer)),
        Err(FormatError::LengthMismatch {
            kind: BlockKind::File,
            ..
        })
    ));
}

/// Rewrites a table with one meta block's contents replaced, with valid crcs and footer: the
/// decoders' structural checks, not the checksums, must stop whatever is wrong.
fn reframe_meta(file: &Bytes, which: BlockKind, mutate: impl FnOnce(&mut Vec<u8>)) -> Bytes {
    let footer = Footer::decode(file).unwrap();
    let blocks = [
        (BlockKind::Index, footer.index_handle()),
        (BlockKind::Filter, footer.filter_handle()),
        (BlockKind::Properties, footer.props_handle()),
    ];
    let mut out = file[..footer.data_len() as usize].to_vec();
    let mut lens = Vec::new();
    let mut mutate = Some(mutate);
    for (kind, handle) in blocks {
        let raw = &file[handle.range().start as usize..handle.range().end as usize];
        let mut contents = frame::decode(kind, handle.offset, raw)
            .unwrap()
            .into_owned();
        if kind == which
            && let Some(mutate) = mutate.take()
        {
            mutate(&mut contents);
        }
        lens.push(frame::encode(&mut out, &contents, Compression::None));
    }
    out.extend_from_slice(&Footer::new(footer.data_len(), lens[0], lens[1], lens[2]).encode());
    Bytes::from(out)
}

#[test]
fn footer_rejects_truncation_magic_version_and_reserved() {
    let file = build(&small_model(), WriterOptions::default());
    let tail = &file[file.len() - FOOTER_LEN..];
    let footer = Footer::decode(tail).unwrap();
    assert_eq!(
        Footer::decode(&file).unwrap(),
        footer,
        "a longer tail is accepted"
    );
    assert_eq!(footer.file_len(), file.len() as u64);
    assert_eq!(&tail[40..], b"SKYV-SST");
    assert!(matches!(
        Footer::decode(&tail[1..]),
        Err(FormatError::Truncated {
            need: 48,
            have: 47,
            ..
        })
    ));
    let mut bad = tail.to_vec();
    bad[47] = b'X';
    assert!(matches!(
        Footer::decode(&bad),
        Err(FormatError::BadMagic(_))
    ));
    let mut newer = tail.to_vec();
    newer[38] = 2;
    assert!(matches!(
        Footer::decode(&newer),
        Err(FormatError::UnsupportedVersion(2))
    ));
    let mut reserved = tail.to_vec();
    reserved[36] = 1;
    let crc = coding::masked_crc(&[&reserved[4..]]);
    reserved[..4].copy_from_slice(&crc.to_le_bytes());
    assert!(matches!(
        Footer::decode(&reserved),
        Err(FormatError::Corrupt { at: 36, .. })
    ));
    // Lengths too small to hold a block, or a file length that overflows.
    for (a, b, c, d) in [(5, 6, 6, 6), (6, 5, 6, 6), (u64::MAX - 10, 6, 6, 6)] {
        assert!(
            Footer::decode(&Footer::new(a, b, c, d).encode()).is_err(),
            "{a} {b} {c} {d}"
        );
    }
}

#[test]
fn meta_cross_checks_catch_inconsistent_blocks() {
    let model = small_model();
    let file = build(&model, options(128, Compression::Lz4, 10));
    // Sanity: reframing without a change still reads.
    check_round_trip(&model, &reframe_meta(&file, BlockKind::Index, |_| {}), &[]).unwrap();

    let props = Table::from_bytes(file.clone())
        .unwrap()
        .meta()
        .props
        .clone();
    let with_props =
        |p: Properties| reframe_meta(&file, BlockKind::Properties, move |c| *c = p.encode());
    let cases: [(&str, Properties); 5] = [
        (
            "data_bytes",
            Properties {
                data_bytes: props.data_bytes + 1,
                ..props.clone()
            },
        ),
        (
            "block count",
            Properties {
                data_block_count: props.data_block_count - 1,
                ..props.clone()
            },
        ),
        (
            "max_key",
            Properties {
                max_key: Bytes::from_static(b"\xff\xff"),
                ..props.clone()
            },
        ),
        (
            "min_key",
            Properties {
                min_key: Bytes::from_static(b"prefix/shared/key000\0"),
                ..props.clone()
            },
        ),
        (
            "entry_count",
            Properties {
                entry_count: props.entry_count + 1,
                ..props.clone()
            },
        ),
    ];
    for (what, p) in cases {
        let bad = with_props(p);
        let res = Table::from_bytes(bad.clone()).and_then(|t| t.verify());
        assert!(res.is_err(), "{what} accepted");
        assert!(
            remote_scan(&bad).is_err() || what == "entry_count",
            "{what} accepted remotely"
        );
    }
    // An index that swaps two blocks' lengths still covers the data region exactly.
    let bad = reframe_meta(&file, BlockKind::Index, |c| {
        let index = BlockIndex::decode(0, c).unwrap();
        let mut b = index::IndexBuilder::default();
        for i in 0..index.len() {
            let j = if i < 2 { 1 - i } else { i };
            b.add(index.last_key(i), index.handle(j).len);
        }
        *c = b.contents().to_vec();
    });
    assert!(
        Table::from_bytes(bad.clone())
            .and_then(|t| t.verify())
            .is_err()
    );
    assert!(remote_scan(&bad).is_err());
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn any_single_byte_flip_is_detected(
        model in model_strategy(120),
        opts in opts_strategy(),
        flips in proptest::collection::vec((any::<prop::sample::Index>(), 1u8..=255), 8),
    ) {
        let file = build(&model, opts);
        for (pos, mask) in flips {
            let pos = pos.index(file.len());
            check_corruption_detected(&model, &flipped(&file, pos, mask), &format!("byte {pos} ^ {mask:#04x}"))?;
        }
    }

    #[test]
    fn garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
        let file = Bytes::from(bytes);
        let _ = Table::from_bytes(file.clone()).map(|t| t.verify());
        let _ = remote_scan(&file);
        let _ = DataBlock::decode(BlockHandle { offset: 0, len: file.len() as u64 }, file);
    }

    /// Meta blocks with valid crcs but mutated contents: decoding may fail, must not panic,
    /// and a table that still opens must iterate without panicking.
    #[test]
    fn reframed_meta_mutations_never_panic(
        which in prop_oneof![Just(BlockKind::Index), Just(BlockKind::Filter), Just(BlockKind::Properties)],
        flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..4),
        cut in proptest::option::of(any::<prop::sample::Index>()),
    ) {
        let file = build(&small_model(), options(128, Compression::Lz4, 10));
        let bad = reframe_meta(&file, which, |c| {
            for (i, x) in flips {
                let i = i.index(c.len());
                c[i] ^= x;
            }
            if let Some(cut) = cut {
                c.truncate(cut.index(c.len() + 1));
            }
        });
        if let Ok(table) = Table::from_bytes(bad.clone()) {
            let _ = table.verify();
            for k in small_model().keys() {
                let _ = table.get(k);
            }
        }
        let _ = remote_scan(&bad);
    }
}
