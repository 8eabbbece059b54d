//! Object → replica by rendezvous (highest-random-weight) hashing: every
//! replica scores every object and the highest score owns it. Scores depend
//! only on the (replica name, object) pair, so adding a replica moves just
//! the objects it now wins (~1/N) and removing one moves only its own.
//!
//! Names are the replicas' stable addresses (e.g. StatefulSet Pod DNS names),
//! so a restarted Pod keeps its objects.

use crate::sstable::xxh64;

/// Seed for the per-replica hash; any fixed value works, it only has to be
/// the same in every index process.
const RING_SEED: u64 = 0x5ca1_ab1e_cace_d00d;

#[derive(Clone, Debug)]
pub struct Ring {
    /// Per replica: its name's hash, used as the seed of its object scores.
    seeds: Vec<u64>,
}

impl Ring {
    pub fn new<S: AsRef<str>>(names: &[S]) -> Ring {
        Ring {
            seeds: names
                .iter()
                .map(|n| xxh64(n.as_ref().as_bytes(), RING_SEED))
                .collect(),
        }
    }

    pub fn len(&self) -> usize {
        self.seeds.len()
    }

    pub fn is_empty(&self) -> bool {
        self.seeds.is_empty()
    }

    /// The position (in the names given to [`Ring::new`]) of the replica that
    /// owns `object`; `None` for an empty ring. Ties (astronomically rare) go
    /// to the earlier name, so every index agrees.
    pub fn owner(&self, object: &str) -> Option<usize> {
        let mut best: Option<(u64, usize)> = None;
        for (i, seed) in self.seeds.iter().enumerate() {
            let score = xxh64(object.as_bytes(), *seed);
            if best.is_none_or(|(b, _)| score > b) {
                best = Some((score, i));
            }
        }
        best.map(|(_, i)| i)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(n: usize) -> Vec<String> {
        (0..n)
            .map(|i| format!("sv-cache-{i}.sv-cache-headless.default.svc:50051"))
            .collect()
    }

    fn objects(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("wal/{i:020}.sst")).collect()
    }

    #[test]
    fn deterministic_and_independent_of_construction() {
        let (a, b) = (Ring::new(&names(5)), Ring::new(&names(5)));
        for o in objects(1000) {
            assert_eq!(a.owner(&o), b.owner(&o));
        }
        assert_eq!(Ring::new(&Vec::<String>::new()).owner("x"), None);
        assert_eq!(Ring::new(&names(1)).owner("x"), Some(0));
    }

    #[test]
    fn balanced_within_tolerance() {
        let n = 5;
        let ring = Ring::new(&names(n));
        let total = 20_000;
        let mut counts = vec![0usize; n];
        for o in objects(total) {
            counts[ring.owner(&o).unwrap()] += 1;
        }
        let fair = total / n;
        for (i, c) in counts.iter().enumerate() {
            assert!(
                c.abs_diff(fair) * 10 < fair,
                "replica {i} owns {c} of {total} (fair share {fair}): {counts:?}"
            );
        }
    }

    #[test]
    fn adding_a_replica_moves_about_one_nth() {
        let total = 20_000;
        for n in [2usize, 3, 8] {
            let before = Ring::new(&names(n));
            let after = Ring::new(&names(n + 1));
            let mut moved = 0usize;
            for o in objects(total) {
                let (b, a) = (before.owner(&o).unwrap(), after.owner(&o).unwrap());
                if a != b {
                    // Only to the new replica, never between old ones.
                    assert_eq!(a, n, "{o} moved between existing replicas");
                    moved += 1;
                }
            }
            let expected = total / (n + 1);
            assert!(
                moved.abs_diff(expected) * 10 < expected,
                "{n}->{} replicas moved {moved} of {total}, expected ~{expected}",
                n + 1
            );
        }
    }

    #[test]
    fn removing_a_replica_moves_only_its_objects() {
        let all = names(4);
        let full = Ring::new(&all);
        let without: Vec<String> = all.iter().filter(|n| *n != &all[1]).cloned().collect();
        let reduced = Ring::new(&without);
        for o in objects(5000) {
            let f = full.owner(&o).unwrap();
            if f != 1 {
                assert_eq!(without[reduced.owner(&o).unwrap()], all[f], "{o}");
            }
        }
    }
}
