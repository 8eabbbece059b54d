//! SSTable micro-benchmark: build throughput and point-lookup latency.
//!
//! `cargo bench -p skyvault --bench sstable`; numbers and machine in docs/benchmarks.md.

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use skyvault::sstable::{
    Bytes, Compression, DataBlock, FOOTER_LEN, Footer, TableMeta, Value, Writer, WriterOptions,
    xxh64,
};

const ENTRIES: u64 = 100_000;
const VALUE_LEN: usize = 100;

/// 16-byte keys; even numbers are stored, odd ones are in-range misses.
fn key(i: u64) -> [u8; 16] {
    let mut k = [0; 16];
    k.copy_from_slice(format!("{:016}", 2 * i).as_bytes());
    k
}

fn miss_key(i: u64) -> [u8; 16] {
    let mut k = [0; 16];
    k.copy_from_slice(format!("{:016}", 2 * i + 1).as_bytes());
    k
}

/// Half pseudo-random, half repetitive: compresses roughly 2:1, like typical records.
fn value(i: u64) -> Value {
    let mut v = Vec::with_capacity(VALUE_LEN);
    let mut h = i;
    while v.len() < VALUE_LEN / 2 {
        h = xxh64(&h.to_le_bytes(), 0);
        v.extend_from_slice(&h.to_le_bytes());
    }
    v.truncate(VALUE_LEN / 2);
    v.resize(VALUE_LEN, b'.');
    Value::Put(Bytes::from(v))
}

fn options(compression: Compression) -> WriterOptions {
    WriterOptions {
        compression,
        ..WriterOptions::default()
    }
}

fn build(entries: &[([u8; 16], Value)], compression: Compression) -> Bytes {
    let mut w = Writer::new(options(compression));
    for (k, v) in entries {
        w.add(k, v).expect("sorted input");
    }
    w.finish(1, 1).expect("non-empty")
}

fn open(file: &Bytes) -> (Footer, TableMeta) {
    let footer = Footer::decode(&file[file.len() - FOOTER_LEN..]).expect("footer");
    let range = footer.meta_range();
    let meta =
        TableMeta::decode(&footer, &file[range.start as usize..range.end as usize]).expect("meta");
    (footer, meta)
}

fn raw_block(file: &Bytes, meta: &TableMeta, i: usize) -> Bytes {
    let range = meta.index.handle(i).range();
    file.slice(range.start as usize..range.end as usize)
}

/// Lookup against a decoded meta and already-decoded blocks (the block-cache-hit path).
fn get_cached(meta: &TableMeta, blocks: &[DataBlock], key: &[u8]) -> Option<Value> {
    if !meta.may_contain(key) {
        return None;
    }
    blocks[meta.index.find(key)?].get(key)
}

/// Lookup that verifies and decodes the block each time (the block-cache-miss path, minus I/O).
fn get_decoding(file: &Bytes, meta: &TableMeta, key: &[u8]) -> Option<Value> {
    if !meta.may_contain(key) {
        return None;
    }
    let i = meta.index.find(key)?;
    meta.decode_block(i, raw_block(file, meta, i))
        .expect("intact")
        .get(key)
}

fn entries() -> Vec<([u8; 16], Value)> {
    (0..ENTRIES).map(|i| (key(i), value(i))).collect()
}

/// A fixed pseudo-random probe order, so lookups do not walk the file sequentially.
fn probe_order() -> Vec<u64> {
    (0..ENTRIES)
        .map(|i| xxh64(&i.to_le_bytes(), 7) % ENTRIES)
        .collect()
}

fn bench_build(c: &mut Criterion) {
    let entries = entries();
    let mut group = c.benchmark_group("sstable_build_100k");
    group.throughput(Throughput::Elements(ENTRIES));
    for compression in [Compression::None, Compression::Lz4] {
        group.bench_function(format!("{compression:?}"), |b| {
            b.iter(|| build(black_box(&entries), compression))
        });
    }
    group.finish();
}

fn bench_open(c: &mut Criterion) {
    let file = build(&entries(), Compression::Lz4);
    c.bench_function("sstable_open_footer_meta", |b| {
        b.iter(|| open(black_box(&file)))
    });
}

fn bench_get(c: &mut Criterion) {
    let probes = probe_order();
    let hits: Vec<[u8; 16]> = probes.iter().map(|&i| key(i)).collect();
    let misses: Vec<[u8; 16]> = probes.iter().map(|&i| miss_key(i)).collect();
    let mut group = c.benchmark_group("sstable_get");
    group.throughput(Throughput::Elements(1));
    for compression in [Compression::None, Compression::Lz4] {
        let file = build(&entries(), compression);
        let (_, meta) = open(&file);
        let blocks: Vec<DataBlock> = (0..meta.index.len())
            .map(|i| {
                meta.decode_block(i, raw_block(&file, &meta, i))
                    .expect("intact")
            })
            .collect();
        let mut n = 0;
        let mut next = |keys: &[[u8; 16]]| {
            n = (n + 1) % keys.len();
            keys[n]
        };
        group.bench_function(format!("cached_block_hit/{compression:?}"), |b| {
            b.iter(|| assert!(get_cached(&meta, &blocks, &next(&hits)).is_some()))
        });
        group.bench_function(format!("cached_block_miss/{compression:?}"), |b| {
            b.iter(|| assert!(get_cached(&meta, &blocks, &next(&misses)).is_none()))
        });
        group.bench_function(format!("decode_block_hit/{compression:?}"), |b| {
            b.iter(|| assert!(get_decoding(&file, &meta, &next(&hits)).is_some()))
        });
    }
    group.finish();
}

criterion_group! {
    name = benches;
    // Short runs: the shared 2-core machine should not be tied up for minutes.
    config = Criterion::default()
        .sample_size(20)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    targets = bench_build, bench_open, bench_get
}
criterion_main!(benches);
