//! The debt over time as a PNG (`--png`): three lines on one time axis,
//! each scaled to its own range (no text is drawn; docs/operations.md gives
//! the legend): L0 files (blue, 0 to the largest sample), pending compaction
//! bytes (red, 0 to the largest) and space amplification (green, 1 to the
//! largest). Written by hand (an RGB image, one zlib stream) so the
//! simulator needs no plotting library.

use std::io::Write;

const W: usize = 960;
const H: usize = 480;
const MARGIN: usize = 20;

/// One sample: seconds, L0 files, pending bytes, space amplification.
pub type Point = [f64; 4];

const SERIES: [(usize, [u8; 3], f64); 3] = [
    (1, [30, 90, 200], 0.0), // L0 files
    (2, [200, 40, 40], 0.0), // pending bytes
    (3, [30, 150, 60], 1.0), // space amplification, from 1
];

pub fn png(points: &[Point]) -> std::io::Result<Vec<u8>> {
    let mut img = vec![255u8; W * H * 3];
    for i in 0..=10 {
        let x = MARGIN + i * (W - 2 * MARGIN) / 10;
        let y = MARGIN + i * (H - 2 * MARGIN) / 10;
        line(&mut img, (x, MARGIN), (x, H - MARGIN), [225; 3]);
        line(&mut img, (MARGIN, y), (W - MARGIN, y), [225; 3]);
    }
    let t_max = points.last().map_or(1.0, |p| p[0]).max(1e-9);
    for (col, color, floor) in SERIES {
        let max = points.iter().map(|p| p[col]).fold(floor, f64::max);
        let span = (max - floor).max(1e-9);
        let at = |p: &Point| {
            let x = MARGIN as f64 + p[0] / t_max * (W - 2 * MARGIN) as f64;
            let y = (H - MARGIN) as f64
                - ((p[col] - floor) / span).clamp(0.0, 1.0) * (H - 2 * MARGIN) as f64;
            (x.round() as usize, y.round() as usize)
        };
        for pair in points.windows(2) {
            line(&mut img, at(&pair[0]), at(&pair[1]), color);
        }
    }
    encode(&img)
}

/// Bresenham's line.
fn line(img: &mut [u8], from: (usize, usize), to: (usize, usize), color: [u8; 3]) {
    let (mut x, mut y) = (from.0 as i64, from.1 as i64);
    let (x1, y1) = (to.0 as i64, to.1 as i64);
    let (dx, dy) = ((x1 - x).abs(), -(y1 - y).abs());
    let (sx, sy) = (if x < x1 { 1 } else { -1 }, if y < y1 { 1 } else { -1 });
    let mut err = dx + dy;
    loop {
        if (0..W as i64).contains(&x) && (0..H as i64).contains(&y) {
            let i = (y as usize * W + x as usize) * 3;
            img[i..i + 3].copy_from_slice(&color);
        }
        if x == x1 && y == y1 {
            return;
        }
        let e2 = 2 * err;
        if e2 >= dy {
            err += dy;
            x += sx;
        }
        if e2 <= dx {
            err += dx;
            y += sy;
        }
    }
}

/// PNG: signature, IHDR (8-bit RGB), one IDAT of unfiltered rows, IEND.
fn encode(rgb: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut raw = Vec::with_capacity((W * 3 + 1) * H);
    for row in rgb.chunks(W * 3) {
        raw.push(0); // filter: none
        raw.extend_from_slice(row);
    }
    let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
    z.write_all(&raw)?;
    let mut ihdr = Vec::with_capacity(13);
    ihdr.extend_from_slice(&(W as u32).to_be_bytes());
    ihdr.extend_from_slice(&(H as u32).to_be_bytes());
    ihdr.extend_from_slice(&[8, 2, 0, 0, 0]);
    let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
    chunk(&mut out, b"IHDR", &ihdr);
    chunk(&mut out, b"IDAT", &z.finish()?);
    chunk(&mut out, b"IEND", &[]);
    Ok(out)
}

fn chunk(out: &mut Vec<u8>, kind: &[u8; 4], data: &[u8]) {
    out.extend_from_slice(&(data.len() as u32).to_be_bytes());
    let start = out.len();
    out.extend_from_slice(kind);
    out.extend_from_slice(data);
    let crc = crc32fast::hash(&out[start..]);
    out.extend_from_slice(&crc.to_be_bytes());
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_plot_is_a_png_of_the_expected_size() {
        let points: Vec<super::Point> = (0..100)
            .map(|i| [i as f64, (i % 7) as f64, i as f64, 1.0 + i as f64 / 100.0])
            .collect();
        let png = super::png(&points).unwrap();
        assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
        assert_eq!(&png[12..16], b"IHDR");
        assert_eq!(u32::from_be_bytes(png[16..20].try_into().unwrap()), 960);
        assert!(png.ends_with(&[0xae, 0x42, 0x60, 0x82]), "IEND's CRC");
    }
}
