//! The key space and how writes fall on it.
//!
//! The simulator never draws a key. Keys are positions in `[0, 1)` (a file's
//! range is an interval of it, see `model`), and what a set of writes leaves
//! behind is described by its *coverage*: the fraction of the key space's
//! keys in a range that the set holds. `e` is the writes per key a set
//! received (its exposure); exposures of disjoint time windows add, and
//! [`Keys::coverage`] turns the sum into distinct keys:
//! - uniform: each key is hit by a Poisson number of writes, `1 - e^-e`;
//! - zipf (exponent `s`, hot keys scattered over the key space as a hash
//!   would): `(1/K) Σ_k (1 - e^(-e K p_k))`, tabulated once per run;
//! - sequential: writes walk the key space in order, so a window covers its
//!   range once: `min(e, 1)`.

/// How writes choose keys.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum KeyDist {
    Uniform,
    /// Zipf with this exponent (YCSB's default is 0.99).
    Zipf(f64),
    Sequential,
}

/// `uniform`, `zipf` (exponent 0.99), `zipf:S` or `sequential`.
pub fn parse_key_dist(s: &str) -> Result<KeyDist, String> {
    match s {
        "uniform" => Ok(KeyDist::Uniform),
        "sequential" => Ok(KeyDist::Sequential),
        "zipf" => Ok(KeyDist::Zipf(0.99)),
        _ => match s.strip_prefix("zipf:").map(str::parse::<f64>) {
            Some(Ok(exp)) if exp > 0.0 && exp.is_finite() => Ok(KeyDist::Zipf(exp)),
            _ => Err(format!(
                "unknown key distribution {s:?}: use uniform, zipf, zipf:S (S > 0) or sequential"
            )),
        },
    }
}

/// Exposures of the zipf table: `E_MIN * STEP^i`.
const E_MIN: f64 = 1e-9;
const STEP: f64 = 1.02;
const TABLE_POINTS: usize = 2100; // up to ~1e9 writes per key

pub struct Keys {
    pub dist: KeyDist,
    /// Distinct keys in the key space.
    pub count: f64,
    /// Zipf: coverage at each exposure of the grid.
    table: Vec<f64>,
    /// Sequential: where the next write lands.
    cursor: f64,
}

impl Keys {
    pub fn new(dist: KeyDist, count: f64) -> Keys {
        let table = match dist {
            KeyDist::Zipf(s) => zipf_table(s, count),
            _ => Vec::new(),
        };
        Keys {
            dist,
            count,
            table,
            cursor: 0.0,
        }
    }

    /// Fraction of a range's keys present after `e` writes per key.
    pub fn coverage(&self, e: f64) -> f64 {
        match self.dist {
            KeyDist::Uniform => 1.0 - (-e).exp(),
            KeyDist::Sequential => e.min(1.0),
            KeyDist::Zipf(_) => {
                if e <= E_MIN {
                    return e * self.table[0] / E_MIN;
                }
                let x = (e / E_MIN).ln() / STEP.ln();
                let i = x.floor() as usize;
                if i + 1 >= self.table.len() {
                    return *self.table.last().unwrap_or(&1.0);
                }
                let f = x - i as f64;
                self.table[i] * (1.0 - f) + self.table[i + 1] * f
            }
        }
    }

    /// The exposure whose coverage is `c` (the inverse of [`Keys::coverage`]).
    pub fn exposure(&self, c: f64) -> f64 {
        let c = c.clamp(0.0, 1.0);
        match self.dist {
            KeyDist::Uniform => -(1.0 - c).max(1e-15).ln(),
            KeyDist::Sequential => c,
            KeyDist::Zipf(_) => {
                let i = self.table.partition_point(|&t| t < c);
                if i == 0 {
                    return c / self.table[0] * E_MIN;
                }
                if i >= self.table.len() {
                    return E_MIN * STEP.powi(self.table.len() as i32 - 1);
                }
                let (lo, hi) = (self.table[i - 1], self.table[i]);
                let f = if hi > lo { (c - lo) / (hi - lo) } else { 0.0 };
                E_MIN * STEP.powf(i as f64 - 1.0 + f)
            }
        }
    }

    /// The ranges `writes` writes fall on, each with its exposure: the whole
    /// key space, or for sequential keys the next stretch (two when it wraps).
    pub fn window(&mut self, writes: f64) -> Vec<(f64, f64, f64)> {
        if self.dist != KeyDist::Sequential {
            return vec![(0.0, 1.0, writes / self.count)];
        }
        let width = (writes / self.count).min(1.0);
        let start = self.cursor;
        let end = start + width;
        if end <= 1.0 {
            self.cursor = if end >= 1.0 { 0.0 } else { end };
            return vec![(start, end, 1.0)];
        }
        self.cursor = end - 1.0;
        vec![(start, 1.0, 1.0), (0.0, end - 1.0, 1.0)]
    }
}

/// Zipf coverage on the exposure grid. Ranks are grouped geometrically
/// (each group's keys share the probability at its middle rank), which keeps
/// a 268 M-key space to a few thousand groups.
fn zipf_table(s: f64, count: f64) -> Vec<f64> {
    let mut groups: Vec<(f64, f64)> = Vec::new(); // (keys, k^-s)
    let mut rank = 1.0f64;
    while rank <= count {
        let next = (rank * 1.01).floor().max(rank + 1.0).min(count + 1.0);
        let n = next - rank;
        let mid = (rank * (next - 1.0)).sqrt();
        groups.push((n, mid.powf(-s)));
        rank = next;
    }
    let h: f64 = groups.iter().map(|(n, w)| n * w).sum();
    (0..TABLE_POINTS)
        .map(|i| {
            let e = E_MIN * STEP.powi(i as i32);
            let hit: f64 = groups
                .iter()
                .map(|(n, w)| n * -(-e * count * w / h).exp_m1())
                .sum();
            hit / count
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn coverage_and_exposure_are_inverse() {
        for dist in [KeyDist::Uniform, KeyDist::Zipf(0.99), KeyDist::Sequential] {
            let keys = Keys::new(dist, 1e6);
            for e in [1e-6, 0.01, 0.5, 0.9] {
                let c = keys.coverage(e);
                let back = keys.exposure(c);
                assert!((back - e).abs() / e < 0.02, "{dist:?} {e} -> {c} -> {back}");
            }
        }
    }

    #[test]
    fn skewed_writes_reach_fewer_distinct_keys() {
        let (uniform, zipf) = (
            Keys::new(KeyDist::Uniform, 1e6),
            Keys::new(KeyDist::Zipf(0.99), 1e6),
        );
        // Two writes per key: 86 % of the keys uniformly, far fewer under zipf.
        assert!((uniform.coverage(2.0) - 0.8647).abs() < 1e-3);
        assert!(zipf.coverage(2.0) < 0.6, "{}", zipf.coverage(2.0));
        // A handful of writes hits a distinct key each, either way.
        assert!((zipf.coverage(1e-7) / 1e-7 - 1.0).abs() < 0.05);
    }

    #[test]
    fn sequential_writes_walk_the_key_space_and_wrap() {
        let mut keys = Keys::new(KeyDist::Sequential, 100.0);
        assert_eq!(keys.window(60.0), vec![(0.0, 0.6, 1.0)]);
        let wrapped = keys.window(60.0);
        assert_eq!(wrapped.len(), 2);
        assert!((wrapped[1].1 - 0.2).abs() < 1e-9);
    }
}
