//! Byte sizes on the command line: `268435456`, `256MiB`, `1TiB`, `1.5GiB`,
//! `64MB` (binary suffixes are powers of 1024, decimal ones of 1000), so a
//! flag reads as the size it means.

use clap::builder::TypedValueParser;

const SUFFIXES: [(&str, u64); 11] = [
    ("TiB", 1 << 40),
    ("GiB", 1 << 30),
    ("MiB", 1 << 20),
    ("KiB", 1 << 10),
    ("TB", 1_000_000_000_000),
    ("GB", 1_000_000_000),
    ("MB", 1_000_000),
    ("KB", 1_000),
    ("kB", 1_000),
    ("B", 1),
    ("", 1),
];

/// `s` in bytes, or what is wrong with it.
pub fn parse(s: &str) -> Result<u64, String> {
    let bad =
        || format!("invalid size {s:?}: use bytes or a suffix, e.g. 4096, 64MiB, 1TiB, 500MB");
    let t = s.trim();
    let (number, unit) = SUFFIXES
        .iter()
        .find_map(|(suffix, unit)| t.strip_suffix(suffix).map(|n| (n.trim(), *unit)))
        .ok_or_else(bad)?;
    if let Ok(n) = number.parse::<u64>() {
        return n
            .checked_mul(unit)
            .ok_or_else(|| format!("size {s:?} is too large"));
    }
    let x: f64 = number.parse().map_err(|_| bad())?;
    let bytes = x * unit as f64;
    if !(x.is_finite() && x >= 0.0 && bytes < u64::MAX as f64) {
        return Err(bad());
    }
    Ok(bytes.round() as u64)
}

/// A clap value parser for sizes within `min..=max` bytes.
#[derive(Clone, Copy, Debug)]
pub struct Bytes {
    min: u64,
    max: u64,
}

impl Bytes {
    pub fn range(range: std::ops::RangeInclusive<u64>) -> Bytes {
        Bytes {
            min: *range.start(),
            max: *range.end(),
        }
    }
}

impl TypedValueParser for Bytes {
    type Value = u64;

    fn parse_ref(
        &self,
        cmd: &clap::Command,
        arg: Option<&clap::Arg>,
        value: &std::ffi::OsStr,
    ) -> Result<u64, clap::Error> {
        // Worded as clap words its own value errors.
        let fail = |message: String| {
            let flag = arg.map_or("the value".to_string(), |a| a.to_string());
            let given = value.to_string_lossy();
            clap::Error::raw(
                clap::error::ErrorKind::ValueValidation,
                format!("invalid value '{given}' for '{flag}': {message}\n"),
            )
            .with_cmd(cmd)
        };
        let s = value
            .to_str()
            .ok_or_else(|| fail("not UTF-8".to_string()))?;
        let n = parse(s).map_err(fail)?;
        if n < self.min || n > self.max {
            return Err(fail(format!(
                "{s} = {n} bytes is outside {}..={} bytes",
                self.min, self.max
            )));
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::parse;

    #[test]
    fn sizes_read_as_they_are_written() {
        assert_eq!(parse("4096"), Ok(4096));
        assert_eq!(parse("64MiB"), Ok(64 << 20));
        assert_eq!(parse("1TiB"), Ok(1 << 40));
        assert_eq!(parse("1.5GiB"), Ok(3 << 29));
        assert_eq!(parse("500MB"), Ok(500_000_000));
        assert_eq!(parse("7B"), Ok(7));
        assert!(parse("12 parsecs").is_err());
        assert!(parse("-1MiB").is_err());
        assert!(parse("99999999999TiB").is_err());
    }
}
