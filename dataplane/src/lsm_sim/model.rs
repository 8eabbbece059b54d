//! What a synthetic file holds, and what a merge of files produces.
//!
//! A file is metadata only: its key range as an interval `[lo, hi)` of the
//! key space `[0, 1)` (see `keys`), the fraction of that range's keys it
//! holds (`coverage`) and the fraction of its entries that are tombstones.
//! Its `FileRecord` (what the picker reads) carries the same range as 8-byte
//! big-endian keys, its entry count and its size.
//!
//! A merge cuts the inputs' ranges into segments at every file boundary. In
//! each segment the inputs' exposures add (they hold writes of disjoint time
//! windows), so the distinct keys out are `keys × coverage(Σ exposure)`:
//! overwritten versions disappear, and space amplification follows from the
//! merges that actually ran instead of being assumed. The newest input holding
//! a key decides whether it is a tombstone; tombstones are dropped where no
//! deeper level may hold the key (the real merge's rule). The result is cut
//! into files of `target_file_bytes`, as the real output writer does.

use super::keys::Keys;
use crate::lsm::Levels;
use crate::meta::{FileKind, FileRecord};

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct FileModel {
    pub lo: f64,
    pub hi: f64,
    pub coverage: f64,
    /// Fraction of the entries that are tombstones.
    pub tombstones: f64,
}

/// Bytes per entry: a put is key + value, a tombstone its key.
#[derive(Clone, Copy, Debug)]
pub struct EntrySize {
    pub key: u64,
    pub value: u64,
}

impl EntrySize {
    /// Logical bytes of one write when a fraction `deletes` of writes are deletes.
    pub fn logical(&self, deletes: f64) -> f64 {
        self.bytes(1.0, deletes)
    }

    pub fn bytes(&self, entries: f64, tombstones: f64) -> f64 {
        entries
            * ((1.0 - tombstones) * (self.key + self.value) as f64 + tombstones * self.key as f64)
    }
}

/// The 8-byte key at position `x` of the key space.
pub fn key_at(x: f64) -> u64 {
    if x >= 1.0 {
        u64::MAX
    } else {
        (x * 2f64.powi(64)) as u64
    }
}

/// A file's record: inclusive `[key_at(lo), key_at(hi) - 1]`.
pub fn record(
    id: i64,
    level: u32,
    seq: u64,
    kind: FileKind,
    m: &FileModel,
    entries: f64,
    bytes: f64,
) -> FileRecord {
    let max = if m.hi >= 1.0 {
        u64::MAX
    } else {
        key_at(m.hi).saturating_sub(1)
    };
    FileRecord {
        id,
        // Only the WAL tier's rows are told apart by name (`is_wal_tier`).
        object: if kind == FileKind::Wal {
            "wal/".to_string()
        } else {
            String::new()
        },
        kind,
        level,
        seq,
        min_key: key_at(m.lo).to_be_bytes().to_vec(),
        max_key: max.max(key_at(m.lo)).to_be_bytes().to_vec(),
        entry_count: entries.round() as u64,
        // The picker's deletion trigger reads it (`lsm::tombstone_heavy`).
        tombstone_count: (entries * m.tombstones).round() as u64,
        size_bytes: bytes.round().max(1.0) as u64,
        added_version: 0,
        removed_version: None,
        created_at_ms: 0,
        removed_at_ms: None,
    }
}

/// One output of a merge, before it gets an id.
#[derive(Clone, Debug, PartialEq)]
pub struct Output {
    pub model: FileModel,
    pub entries: f64,
    pub bytes: f64,
}

/// A stretch of the merged key space with uniform contents.
struct Segment {
    lo: f64,
    hi: f64,
    entries: f64,
    tombstones: f64,
}

/// What merging `inputs` (newest first, as a pick lists them) into
/// `output_level` writes, cut at `target_bytes`.
pub fn merge(
    keys: &Keys,
    size: EntrySize,
    inputs: &[FileModel],
    output_level: u32,
    levels: &Levels,
    target_bytes: u64,
) -> Vec<Output> {
    let segments = segments(keys, inputs, output_level, levels);
    split(keys, size, &segments, target_bytes as f64)
}

fn segments(keys: &Keys, inputs: &[FileModel], output_level: u32, levels: &Levels) -> Vec<Segment> {
    let mut cuts: Vec<f64> = inputs.iter().flat_map(|m| [m.lo, m.hi]).collect();
    cuts.sort_by(f64::total_cmp);
    cuts.dedup();
    let mut out = Vec::with_capacity(cuts.len());
    for w in cuts.windows(2) {
        let (lo, hi) = (w[0], w[1]);
        let (mut exposure, mut unclaimed, mut dead) = (0.0, 1.0, 0.0);
        for m in inputs.iter().filter(|m| m.lo < hi && m.hi > lo) {
            exposure += keys.exposure(m.coverage);
            // Keys whose newest version is in `m`: it holds them and no newer input does.
            dead += unclaimed * m.coverage * m.tombstones;
            unclaimed *= 1.0 - m.coverage;
        }
        if exposure == 0.0 {
            continue;
        }
        let entries = keys.count * (hi - lo) * keys.coverage(exposure);
        let held = 1.0 - unclaimed;
        let mut tombstones = if held > 0.0 {
            (dead / held).min(1.0)
        } else {
            0.0
        };
        let mid = key_at((lo + hi) / 2.0).to_be_bytes();
        let mut kept = entries;
        if output_level > 0 && tombstones > 0.0 && !levels.deeper_may_hold(output_level, &mid) {
            kept = entries * (1.0 - tombstones);
            tombstones = 0.0;
        }
        out.push(Segment {
            lo,
            hi,
            entries: kept,
            tombstones,
        });
    }
    out
}

/// An output being filled.
struct Open {
    lo: f64,
    hi: f64,
    entries: f64,
    dead: f64,
    bytes: f64,
}

/// Cuts the segments into files of about `target` bytes (the last one
/// smaller), each spanning from its first key to its last.
fn split(keys: &Keys, size: EntrySize, segments: &[Segment], target: f64) -> Vec<Output> {
    let mut outputs = Vec::new();
    let mut cur: Option<Open> = None;
    for s in segments.iter().filter(|s| s.entries > 0.0 && s.hi > s.lo) {
        let per_entry = size.bytes(1.0, s.tombstones);
        let density = s.entries / (s.hi - s.lo);
        let (mut lo, mut left) = (s.lo, s.entries);
        while left > 0.0 {
            let open = cur.get_or_insert(Open {
                lo,
                hi: lo,
                entries: 0.0,
                dead: 0.0,
                bytes: 0.0,
            });
            let room = ((target - open.bytes) / per_entry).max(0.0);
            let take = left.min(room);
            open.entries += take;
            open.dead += take * s.tombstones;
            open.bytes += take * per_entry;
            if left <= room {
                open.hi = s.hi;
                break;
            }
            // The file fills inside this segment: cut at the key where it does.
            lo += take / density;
            open.hi = lo;
            left -= take;
            outputs.extend(cur.take().and_then(|o| close(keys, size, o)));
        }
    }
    outputs.extend(cur.and_then(|o| close(keys, size, o)));
    outputs
}

fn close(keys: &Keys, size: EntrySize, o: Open) -> Option<Output> {
    if o.entries <= 0.0 || o.hi <= o.lo {
        return None;
    }
    let tombstones = o.dead / o.entries;
    Some(Output {
        model: FileModel {
            lo: o.lo,
            hi: o.hi,
            coverage: (o.entries / (keys.count * (o.hi - o.lo))).min(1.0),
            tombstones,
        },
        entries: o.entries,
        bytes: size.bytes(o.entries, tombstones),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lsm::Levels;

    const SIZE: EntrySize = EntrySize {
        key: 16,
        value: 4080,
    };

    fn full(keys: &Keys, exposure: f64, tombstones: f64) -> FileModel {
        FileModel {
            lo: 0.0,
            hi: 1.0,
            coverage: keys.coverage(exposure),
            tombstones,
        }
    }

    #[test]
    fn a_merge_keeps_one_version_per_key_and_cuts_at_the_target() {
        let keys = Keys::new(super::super::keys::KeyDist::Uniform, 1e6);
        // Two windows of one write per key each: 1 - e^-2 of the keys survive.
        let inputs = [full(&keys, 1.0, 0.0), full(&keys, 1.0, 0.0)];
        let out = merge(&keys, SIZE, &inputs, 0, &Levels::new(vec![]), 64 << 20);
        let entries: f64 = out.iter().map(|o| o.entries).sum();
        assert!((entries / 1e6 - 0.8647).abs() < 1e-3, "{entries}");
        assert!(
            out[..out.len() - 1]
                .iter()
                .all(|o| (o.bytes - (64 << 20) as f64).abs() < 1.0)
        );
        // Outputs tile the key space in order, without overlap.
        assert_eq!(out[0].model.lo, 0.0);
        assert!(out.windows(2).all(|w| w[0].model.hi == w[1].model.lo));
        assert_eq!(out.last().map(|o| o.model.hi), Some(1.0));
    }

    #[test]
    fn tombstones_drop_only_where_nothing_deeper_may_hold_the_key() {
        let keys = Keys::new(super::super::keys::KeyDist::Uniform, 1e6);
        let inputs = [full(&keys, 0.5, 0.2)];
        let kept = merge(&keys, SIZE, &inputs, 0, &Levels::new(vec![]), u64::MAX);
        assert!(
            (kept[0].model.tombstones - 0.2).abs() < 1e-9,
            "into L0: kept"
        );
        let last = merge(&keys, SIZE, &inputs, 6, &Levels::new(vec![]), u64::MAX);
        assert_eq!(last[0].model.tombstones, 0.0);
        assert!((last[0].entries / kept[0].entries - 0.8).abs() < 1e-9);
        // Data on L6 under the output keeps L5's tombstones.
        let below = FileModel {
            lo: 0.0,
            hi: 1.0,
            coverage: 0.5,
            tombstones: 0.0,
        };
        let l6 = record(1, 6, 1, FileKind::Run, &below, 1.0, 1.0);
        let mid = merge(&keys, SIZE, &inputs, 5, &Levels::new(vec![l6]), u64::MAX);
        assert!(mid[0].model.tombstones > 0.0);
    }

    #[test]
    fn the_newest_version_decides_whether_a_key_is_deleted() {
        let keys = Keys::new(super::super::keys::KeyDist::Uniform, 1e6);
        // Everything newer is a tombstone over data without any.
        let inputs = [full(&keys, 50.0, 1.0), full(&keys, 50.0, 0.0)];
        let out = merge(&keys, SIZE, &inputs, 6, &Levels::new(vec![]), u64::MAX);
        assert!(out.iter().map(|o| o.entries).sum::<f64>() < 1.0, "{out:?}");
    }
}
