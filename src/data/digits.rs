//! The UCI optical handwritten digits data set, embedded in the crate.
//!
//! 1,797 grey-scale 8×8 images of the digits 0–9 with integer pixel values 0..=16, as
//! distributed with scikit-learn (`digits.csv.gz`): one sample per line, 64 comma-separated
//! pixel values followed by the label. Source: E. Alpaydin and C. Kaynak, UCI Machine
//! Learning Repository (CC BY 4.0); see `data/README.md`.

use flate2::read::MultiGzDecoder;

use super::{read_capped, Dataset};
use crate::error::{Error, Result};

/// The gzip-compressed CSV embedded at build time.
const DIGITS_CSV_GZ: &[u8] = include_bytes!(concat!(env!("CARGO_MANIFEST_DIR"), "/data/digits.csv.gz"));

/// Pixels per image (8×8).
const N_PIXELS: usize = 64;
/// Largest pixel value.
const MAX_PIXEL: u32 = 16;
/// Number of digit classes.
const N_CLASSES: usize = 10;
/// Decompressed CSV larger than this is rejected (the real file is about 0.3 MiB).
const MAX_CSV_BYTES: u64 = 256 << 20;

/// The embedded digits data set: 1,797 samples of 64 features scaled to `[0, 1]` (pixel / 16),
/// with labels 0..=9 and `n_classes` 10.
pub fn digits() -> Result<Dataset> {
    parse_digits_csv(DIGITS_CSV_GZ, "digits.csv.gz (embedded)")
}

/// Parses digits-format CSV, gzip-compressed or plain, into a [`Dataset`].
///
/// Each non-blank line holds 64 integer pixel values in `0..=16` and then an integer label in
/// `0..=9`, separated by commas (spaces around values and `\r\n` line ends are accepted).
/// Features are scaled to `[0, 1]` by dividing by 16. `name` is used in error messages, which
/// give the line (and column) of the first problem: a value that is not an integer, a wrong
/// number of fields, a pixel or label out of range, invalid UTF-8, corrupt gzip data, or no
/// data rows at all.
pub fn parse_digits_csv(bytes: &[u8], name: &str) -> Result<Dataset> {
    let decompressed;
    let text: &[u8] = if bytes.starts_with(&[0x1f, 0x8b]) {
        decompressed = gunzip_capped(bytes, name)?;
        &decompressed
    } else {
        bytes
    };
    let mut features = Vec::new();
    let mut labels = Vec::new();
    for (i, raw_line) in text.split(|&b| b == b'\n').enumerate() {
        let line_no = i + 1;
        let line = std::str::from_utf8(raw_line)
            .map_err(|e| Error::format(name, format!("line {line_no}: not valid UTF-8 ({e})")))?;
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let n_fields = line.split(',').count();
        if n_fields != N_PIXELS + 1 {
            return Err(Error::format(
                name,
                format!(
                    "line {line_no}: expected {} comma-separated fields ({N_PIXELS} pixels and a label), found {n_fields}",
                    N_PIXELS + 1
                ),
            ));
        }
        for (col, field) in line.split(',').enumerate() {
            let column = col + 1;
            let field = field.trim();
            let value: u32 = field.parse().map_err(|_| {
                Error::format(
                    name,
                    format!("line {line_no}, column {column}: '{field}' is not a non-negative integer"),
                )
            })?;
            if col < N_PIXELS {
                if value > MAX_PIXEL {
                    return Err(Error::format(
                        name,
                        format!("line {line_no}, column {column}: pixel value {value} is outside 0..={MAX_PIXEL}"),
                    ));
                }
                features.push(value as f32 / MAX_PIXEL as f32);
            } else {
                if value as usize >= N_CLASSES {
                    return Err(Error::format(
                        name,
                        format!(
                            "line {line_no}, column {column}: label {value} is outside 0..={}",
                            N_CLASSES - 1
                        ),
                    ));
                }
                labels.push(value);
            }
        }
    }
    if labels.is_empty() {
        return Err(Error::format(name, "no data rows found"));
    }
    Ok(Dataset {
        features,
        labels,
        n_features: N_PIXELS,
        n_classes: N_CLASSES,
    })
}

/// Decompresses gzip data, refusing output larger than [`MAX_CSV_BYTES`].
fn gunzip_capped(bytes: &[u8], name: &str) -> Result<Vec<u8>> {
    let out = read_capped(MultiGzDecoder::new(bytes), MAX_CSV_BYTES + 1)
        .map_err(|e| Error::format(name, format!("corrupt gzip data: {e}")))?;
    if out.len() as u64 > MAX_CSV_BYTES {
        return Err(Error::format(
            name,
            format!("decompressed data exceeds the {} MiB limit", MAX_CSV_BYTES >> 20),
        ));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use flate2::write::GzEncoder;
    use flate2::Compression;
    use std::io::Write;

    fn row(pixel: u32, label: u32) -> String {
        let mut s = vec![pixel.to_string(); N_PIXELS].join(",");
        s.push_str(&format!(",{label}"));
        s
    }

    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut enc = GzEncoder::new(Vec::new(), Compression::default());
        enc.write_all(data).unwrap();
        enc.finish().unwrap()
    }

    fn err_text(bytes: &[u8]) -> String {
        parse_digits_csv(bytes, "test.csv").unwrap_err().to_string()
    }

    #[test]
    fn embedded_digits() {
        let d = digits().unwrap();
        assert_eq!(d.len(), 1797);
        assert_eq!(d.n_features, 64);
        assert_eq!(d.n_classes, 10);
        assert_eq!(d.features.len(), 1797 * 64);
        assert!(d.features.iter().all(|&v| (0.0..=1.0).contains(&v)));
        assert!(d.features.contains(&1.0));
        let mut counts = [0usize; 10];
        for &l in &d.labels {
            counts[l as usize] += 1;
        }
        for (class, &c) in counts.iter().enumerate() {
            assert!((170..=190).contains(&c), "class {class}: {c} samples");
        }
        d.validate().unwrap();
        // First sample is a zero: pixel 2 is 5/16.
        assert_eq!(d.labels[0], 0);
        assert_eq!(d.features[2], 5.0 / 16.0);
    }

    #[test]
    fn plain_and_gzip_agree() {
        let text = format!("{}\r\n{}\n\n  \n{}", row(0, 3), row(16, 9), row(8, 0));
        let plain = parse_digits_csv(text.as_bytes(), "p").unwrap();
        let gz = parse_digits_csv(&gzip(text.as_bytes()), "g").unwrap();
        assert_eq!(plain.labels, [3, 9, 0]);
        assert_eq!(plain.labels, gz.labels);
        assert_eq!(plain.features, gz.features);
        assert_eq!(plain.features[64], 1.0);
        assert_eq!(plain.features[128], 0.5);
    }

    #[test]
    fn bad_inputs_name_the_line() {
        let good = row(1, 1);
        let e = err_text(format!("{good}\n{}", row(1, 10)).as_bytes());
        assert!(e.contains("line 2") && e.contains("label 10"), "{e}");
        let e = err_text(format!("{good}\n{good}\n{}", row(17, 1)).as_bytes());
        assert!(e.contains("line 3, column 1") && e.contains("pixel value 17"), "{e}");
        let e = err_text(format!("{good}\n1,2,3").as_bytes());
        assert!(e.contains("line 2") && e.contains("found 3"), "{e}");
        let e = err_text(format!("{good},4").as_bytes());
        assert!(e.contains("line 1") && e.contains("found 66"), "{e}");
        let e = err_text(row(1, 1).replacen("1", "x1", 1).as_bytes());
        assert!(e.contains("line 1, column 1") && e.contains("'x1'"), "{e}");
        let e = err_text(row(1, 1).replacen("1", "-1", 1).as_bytes());
        assert!(e.contains("'-1'"), "{e}");
        let e = err_text(row(1, 1).replacen("1", "1.5", 1).as_bytes());
        assert!(e.contains("'1.5'"), "{e}");
        let e = err_text(row(1, 1).replacen("1", "99999999999", 1).as_bytes());
        assert!(e.contains("column 1"), "{e}");
        let e = err_text(b"\xff\xfe\n");
        assert!(e.contains("line 1") && e.contains("UTF-8"), "{e}");
        let e = err_text(b"");
        assert!(e.contains("no data rows"), "{e}");
        let e = err_text(b"\n\n \n");
        assert!(e.contains("no data rows"), "{e}");
        assert!(e.starts_with("test.csv:"), "{e}");
    }

    #[test]
    fn corrupt_gzip() {
        let gz = gzip(row(1, 1).as_bytes());
        let e = err_text(&gz[..gz.len() / 2]);
        assert!(e.contains("gzip"), "{e}");
        let e = err_text(&[0x1f, 0x8b]);
        assert!(e.contains("gzip"), "{e}");
        let mut flipped = gz.clone();
        let mid = flipped.len() / 2;
        flipped[mid] ^= 0xff;
        assert!(parse_digits_csv(&flipped, "x").is_err());
    }
}
