//! The safetensors format: serialising named `f32` tensors (and string metadata) to its bytes,
//! and parsing those bytes back, checking them first so that no input makes the parser panic.

use std::collections::{BTreeMap, HashSet};

use safetensors::tensor::TensorView;
use safetensors::{Dtype, SafeTensors};

use super::{tensor_err, Checkpoint, NamedTensor};
use crate::error::{Error, Result};

/// The header key that safetensors reserves for free-form metadata; no tensor may use it.
const METADATA_KEY: &str = "__metadata__";

/// Serializes `tensors` to the bytes of a safetensors file (dtype `F32`, little-endian).
///
/// Every tensor's shape product must equal its number of values, and names must be unique and
/// must not be `__metadata__`; otherwise an [`Error::Tensor`] naming the tensor is returned.
/// Inside the file the tensors are laid out sorted by name, as the safetensors format does.
pub fn serialize_safetensors(tensors: &[NamedTensor]) -> Result<Vec<u8>> {
    serialize_checkpoint(tensors, &BTreeMap::new())
}

/// [`serialize_safetensors`] with string metadata stored in the header's `__metadata__`
/// entry (omitted when `metadata` is empty).
pub fn serialize_checkpoint(tensors: &[NamedTensor], metadata: &BTreeMap<String, String>) -> Result<Vec<u8>> {
    let mut seen = HashSet::with_capacity(tensors.len());
    let mut bytes = Vec::with_capacity(tensors.len());
    for t in tensors {
        if t.name == METADATA_KEY {
            return Err(tensor_err(
                &t.name,
                "this name is reserved by the safetensors format for metadata",
            ));
        }
        if !seen.insert(t.name.as_str()) {
            return Err(tensor_err(&t.name, "the name appears more than once"));
        }
        let count = checked_product(&t.shape)
            .ok_or_else(|| tensor_err(&t.name, format!("the element count of shape {:?} overflows", t.shape)))?;
        if count != t.data.len() {
            return Err(tensor_err(
                &t.name,
                format!(
                    "shape {:?} holds {count} values but {} were given",
                    t.shape,
                    t.data.len()
                ),
            ));
        }
        let le: Vec<u8> = t.data.iter().flat_map(|v| v.to_le_bytes()).collect();
        bytes.push(le);
    }
    let mut views = Vec::with_capacity(tensors.len());
    for (t, b) in tensors.iter().zip(&bytes) {
        let view = TensorView::new(Dtype::F32, t.shape.clone(), b).map_err(|e| tensor_err(&t.name, e.to_string()))?;
        views.push((t.name.as_str(), view));
    }
    let meta = (!metadata.is_empty()).then(|| metadata.iter().map(|(k, v)| (k.clone(), v.clone())).collect());
    safetensors::serialize(views, meta).map_err(|e| Error::format("<safetensors serialization>", e.to_string()))
}

/// Parses the bytes of a safetensors file into its tensors, sorted by name.
///
/// `name_for_errors` is the file (or stream) name used in error messages. A malformed header
/// or data section gives an [`Error::Format`] naming it. Tensors of dtype `F32` load as they
/// are; `F16`, `BF16` and `F64` are converted to f32 (exactly for the 16-bit ones; an f64
/// beyond f32's range is an error, not an infinity); any other dtype gives an
/// [`Error::Tensor`] naming the tensor and its dtype. Never panics, whatever the bytes.
pub fn deserialize_safetensors(bytes: &[u8], name_for_errors: &str) -> Result<Vec<NamedTensor>> {
    Ok(deserialize_checkpoint(bytes, name_for_errors)?.tensors)
}

/// [`deserialize_safetensors`], also returning the file's metadata.
pub fn deserialize_checkpoint(bytes: &[u8], name_for_errors: &str) -> Result<Checkpoint> {
    precheck_offsets(bytes, name_for_errors)?;
    let invalid =
        |e: safetensors::SafeTensorError| Error::format(name_for_errors, format!("not a valid safetensors file: {e}"));
    let st = SafeTensors::deserialize(bytes).map_err(invalid)?;
    let (_, header) = SafeTensors::read_metadata(bytes).map_err(invalid)?;
    let metadata = header
        .metadata()
        .as_ref()
        .map(|m| m.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
        .unwrap_or_default();
    let mut out = Vec::with_capacity(st.len());
    for (name, view) in st.iter() {
        let width = match view.dtype() {
            Dtype::F32 => 4,
            Dtype::F16 | Dtype::BF16 => 2,
            Dtype::F64 => 8,
            other => {
                return Err(tensor_err(
                    name,
                    format!("in {name_for_errors}: dtype {other} is not supported (F32, F16, BF16 and F64 are)"),
                ))
            }
        };
        let raw = view.data();
        let count = checked_product(view.shape());
        if count.and_then(|c| c.checked_mul(width)) != Some(raw.len()) {
            return Err(tensor_err(
                name,
                format!(
                    "in {name_for_errors}: shape {:?} does not match its {} data bytes",
                    view.shape(),
                    raw.len()
                ),
            ));
        }
        let data: Vec<f32> = match view.dtype() {
            Dtype::F16 => raw
                .chunks_exact(2)
                .map(|c| f16_to_f32(u16::from_le_bytes([c[0], c[1]])))
                .collect(),
            Dtype::BF16 => raw
                .chunks_exact(2)
                .map(|c| f32::from_bits((u16::from_le_bytes([c[0], c[1]]) as u32) << 16))
                .collect(),
            Dtype::F64 => {
                let mut v = Vec::with_capacity(raw.len() / 8);
                for (i, c) in raw.chunks_exact(8).enumerate() {
                    let x = f64::from_le_bytes(c.try_into().expect("chunks of 8"));
                    if x.is_finite() && !(x as f32).is_finite() {
                        return Err(tensor_err(
                            name,
                            format!("in {name_for_errors}: element {i} = {x} is beyond the range of f32"),
                        ));
                    }
                    v.push(x as f32);
                }
                v
            }
            _ => raw
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect(),
        };
        out.push(NamedTensor {
            name: name.to_string(),
            shape: view.shape().to_vec(),
            data,
        });
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(Checkpoint { tensors: out, metadata })
}

/// An IEEE half-precision value as f32 (every f16 is exactly an f32).
fn f16_to_f32(h: u16) -> f32 {
    let sign = if h >> 15 == 1 { -1.0 } else { 1.0 };
    let exp = ((h >> 10) & 0x1f) as i32;
    let mant = (h & 0x3ff) as f32;
    match exp {
        0 => sign * mant * 2f32.powi(-24),
        0x1f if mant == 0.0 => sign * f32::INFINITY,
        0x1f => f32::NAN,
        e => sign * (1.0 + mant / 1024.0) * 2f32.powi(e - 15),
    }
}

fn checked_product(shape: &[usize]) -> Option<usize> {
    shape.iter().try_fold(1usize, |acc, &d| acc.checked_mul(d))
}

/// Rejects headers whose `data_offsets` point past the end of the file.
///
/// The safetensors crate adds the end offset to the header size without overflow checks, so an
/// offset near `usize::MAX` would make it panic in builds with overflow checks. Such an offset
/// can never be valid, so it is rejected here first. The scan tokenizes the JSON header just
/// enough to find `"data_offsets"` keys; anything it does not understand is left to the full
/// parser.
fn precheck_offsets(bytes: &[u8], file: &str) -> Result<()> {
    let Some(len_bytes) = bytes.get(..8) else {
        return Err(Error::format(
            file,
            format!(
                "not a valid safetensors file: {} bytes is too short for the 8-byte header length",
                bytes.len()
            ),
        ));
    };
    let mut le = [0u8; 8];
    le.copy_from_slice(len_bytes);
    let header_len = u64::from_le_bytes(le);
    let available = (bytes.len() - 8) as u64;
    if header_len > available {
        return Err(Error::format(
            file,
            format!("not a valid safetensors file: the header claims {header_len} bytes but only {available} follow"),
        ));
    }
    // `header_len <= available` fits in usize because `available` came from a usize.
    let header = &bytes[8..8 + header_len as usize];
    let data_len = (available - header_len) as u128;
    let key = b"data_offsets";
    let mut i = 0;
    while i < header.len() {
        if header[i] != b'"' {
            i += 1;
            continue;
        }
        // A JSON string starts at i; find its end, honouring backslash escapes.
        let start = i + 1;
        let mut j = start;
        while j < header.len() && header[j] != b'"' {
            j += if header[j] == b'\\' { 2 } else { 1 };
        }
        if j >= header.len() {
            return Ok(()); // unterminated string: the full parser reports it
        }
        let content = &header[start..j];
        i = j + 1;
        if content != key {
            continue;
        }
        let mut k = skip_ws(header, i);
        if header.get(k) != Some(&b':') {
            continue;
        }
        k = skip_ws(header, k + 1);
        if header.get(k) != Some(&b'[') {
            continue;
        }
        k += 1;
        loop {
            k = skip_ws(header, k);
            let digits_start = k;
            while k < header.len() && header[k].is_ascii_digit() {
                k += 1;
            }
            if k == digits_start {
                break;
            }
            // Compare as u128 from at most 39 digits; a longer run is certainly too large.
            let digits = &header[digits_start..k];
            let too_large = digits.len() > 38 || {
                let v = digits.iter().fold(0u128, |acc, d| acc * 10 + u128::from(d - b'0'));
                v > data_len
            };
            if too_large {
                return Err(Error::format(
                    file,
                    format!(
                        "not a valid safetensors file: a data offset ({}) lies beyond the {data_len}-byte data section",
                        String::from_utf8_lossy(digits)
                    ),
                ));
            }
            k = skip_ws(header, k);
            if header.get(k) == Some(&b',') {
                k += 1;
            } else {
                break;
            }
        }
        i = k;
    }
    Ok(())
}

fn skip_ws(s: &[u8], mut i: usize) -> usize {
    while i < s.len() && matches!(s[i], b' ' | b'\t' | b'\n' | b'\r') {
        i += 1;
    }
    i
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::Rng;
    use crate::io::tests::sample;
    use crate::io::{layout_metadata, Layout, LAYOUT_KEY};

    fn header_bytes(json: &str, data: &[u8]) -> Vec<u8> {
        let mut v = (json.len() as u64).to_le_bytes().to_vec();
        v.extend_from_slice(json.as_bytes());
        v.extend_from_slice(data);
        v
    }

    #[test]
    fn half_bfloat_and_double_tensors_load_as_f32() {
        // f16: 1.0 (0x3c00), -2.5 (0xc100), the smallest subnormal (0x0001), 65504 (0x7bff).
        let f16: Vec<u8> = [0x3c00u16, 0xc100, 0x0001, 0x7bff]
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect();
        // bf16: 1.0 (0x3f80), -0.15625 (0xbe20).
        let bf16: Vec<u8> = [0x3f80u16, 0xbe20].iter().flat_map(|v| v.to_le_bytes()).collect();
        let f64s: Vec<u8> = [0.1f64, -3.0].iter().flat_map(|v| v.to_le_bytes()).collect();
        let mut data = f16.clone();
        data.extend(&bf16);
        data.extend(&f64s);
        let json = r#"{"__metadata__":{"k":"v"},"a":{"dtype":"F16","shape":[4],"data_offsets":[0,8]},"b":{"dtype":"BF16","shape":[2],"data_offsets":[8,12]},"c":{"dtype":"F64","shape":[2],"data_offsets":[12,28]}}"#;
        let ck = deserialize_checkpoint(&header_bytes(json, &data), "mem").unwrap();
        assert_eq!(ck.metadata.get("k").map(String::as_str), Some("v"));
        assert_eq!(ck.tensors[0].data, vec![1.0, -2.5, 2f32.powi(-24), 65504.0]);
        assert_eq!(ck.tensors[1].data, vec![1.0, -0.15625]);
        assert_eq!(ck.tensors[2].data, vec![0.1f32, -3.0]);
        // An f64 beyond f32's range is refused, naming the tensor.
        let big = 1e300f64.to_le_bytes();
        let json = r#"{"big":{"dtype":"F64","shape":[1],"data_offsets":[0,8]}}"#;
        let e = deserialize_checkpoint(&header_bytes(json, &big), "mem")
            .unwrap_err()
            .to_string();
        assert!(e.contains("big") && e.contains("range of f32"), "{e}");
        let json = r#"{"i":{"dtype":"I32","shape":[1],"data_offsets":[0,4]}}"#;
        let e = deserialize_checkpoint(&header_bytes(json, &[0; 4]), "mem")
            .unwrap_err()
            .to_string();
        assert!(e.contains("I32") && e.contains("not supported"), "{e}");
    }

    #[test]
    fn round_trip_bytes_sorted_by_name() {
        let bytes = serialize_safetensors(&sample()).unwrap();
        let loaded = deserialize_safetensors(&bytes, "mem").unwrap();
        let names: Vec<&str> = loaded.iter().map(|t| t.name.as_str()).collect();
        assert_eq!(names, ["b1", "empty", "scalar", "w1"]);
        assert_eq!(loaded[3], sample()[0]);
    }

    #[test]
    fn empty_list_round_trips() {
        let bytes = serialize_safetensors(&[]).unwrap();
        assert!(deserialize_safetensors(&bytes, "mem").unwrap().is_empty());
    }

    #[test]
    fn shape_mismatch_names_tensor() {
        let bad = [NamedTensor::new("layer.weight", vec![2, 2], vec![1.0; 3])];
        let err = serialize_safetensors(&bad).unwrap_err();
        match &err {
            Error::Tensor { name, reason } => {
                assert_eq!(name, "layer.weight");
                assert!(reason.contains("4 values"), "{reason}");
            }
            other => panic!("unexpected error {other:?}"),
        }
        let overflow = [NamedTensor::new("big", vec![usize::MAX, 2], vec![])];
        assert!(matches!(serialize_safetensors(&overflow), Err(Error::Tensor { .. })));
    }

    #[test]
    fn duplicate_and_reserved_names() {
        let t = NamedTensor::new("a", vec![1], vec![1.0]);
        let err = serialize_safetensors(&[t.clone(), t]).unwrap_err();
        assert!(matches!(&err, Error::Tensor { name, .. } if name == "a"), "{err}");
        let m = NamedTensor::new("__metadata__", vec![1], vec![1.0]);
        assert!(matches!(serialize_safetensors(&[m]), Err(Error::Tensor { .. })));
    }

    #[test]
    fn corrupt_headers_are_format_errors() {
        let good = serialize_safetensors(&sample()).unwrap();
        let cases: Vec<(&str, Vec<u8>)> = vec![
            ("empty", vec![]),
            ("short", vec![1, 2, 3]),
            ("truncated", good[..good.len() - 3].to_vec()),
            ("truncated header", good[..20].to_vec()),
            ("header longer than file", {
                let mut v = good.clone();
                v[..8].copy_from_slice(&(1_000_000u64).to_le_bytes());
                v
            }),
            ("huge header length", {
                let mut v = good.clone();
                v[..8].copy_from_slice(&u64::MAX.to_le_bytes());
                v
            }),
            ("trailing byte", {
                let mut v = good.clone();
                v.push(0);
                v
            }),
            ("not json", header_bytes("hello world!", &[])),
            (
                "bad utf8",
                header_bytes("\u{0}", &[]).into_iter().map(|b| b | 0x80).collect(),
            ),
            // Offsets summing to nearly 2^64: the safetensors crate alone would overflow
            // (and panic with overflow checks) when adding the header size to them.
            ("offset overflow", {
                let size = (1u64 << 61) - 1;
                let parts: Vec<String> = (0..8u64)
                    .map(|i| {
                        format!(
                            r#""t{i}":{{"dtype":"U8","shape":[{size}],"data_offsets":[{},{}]}}"#,
                            i * size,
                            (i + 1) * size
                        )
                    })
                    .collect();
                header_bytes(&format!("{{{}}}", parts.join(",")), &[])
            }),
            (
                "shape overflow",
                header_bytes(
                    r#"{"a":{"dtype":"F32","shape":[4611686018427387904,8],"data_offsets":[0,0]}}"#,
                    &[],
                ),
            ),
            (
                "bad offsets",
                header_bytes(r#"{"a":{"dtype":"F32","shape":[1],"data_offsets":[4,0]}}"#, &[0; 4]),
            ),
            (
                "shape/bytes mismatch",
                header_bytes(r#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,4]}}"#, &[0; 4]),
            ),
        ];
        for (what, bytes) in cases {
            match deserialize_safetensors(&bytes, "model.st") {
                Err(Error::Format { file, reason }) => {
                    assert_eq!(file, "model.st", "{what}");
                    assert!(!reason.is_empty(), "{what}");
                }
                other => panic!("{what}: expected a format error, got {other:?}"),
            }
        }
    }

    #[test]
    fn wrong_dtype_names_tensor_and_dtype() {
        let bytes = header_bytes(
            r#"{"weights":{"dtype":"U8","shape":[4],"data_offsets":[0,4]}}"#,
            &[0; 4],
        );
        let err = deserialize_safetensors(&bytes, "m.st").unwrap_err();
        match &err {
            Error::Tensor { name, reason } => {
                assert_eq!(name, "weights");
                assert!(reason.contains("U8"), "{reason}");
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn escaped_names_do_not_confuse_the_offset_check() {
        // A tensor literally named `data_offsets`, plus escapes inside names.
        let tensors = [
            NamedTensor::new("data_offsets", vec![1], vec![1.0]),
            NamedTensor::new("q\"uote\\", vec![2], vec![2.0, 3.0]),
        ];
        let bytes = serialize_safetensors(&tensors).unwrap();
        let loaded = deserialize_safetensors(&bytes, "mem").unwrap();
        assert_eq!(loaded.len(), 2);
        assert_eq!(loaded[0].name, "data_offsets");
        assert_eq!(loaded[1].data, [2.0, 3.0]);
    }

    #[test]
    fn metadata_round_trips_and_plain_files_have_none() {
        let meta = layout_metadata(Layout::Torch);
        let bytes = serialize_checkpoint(&sample(), &meta).unwrap();
        let ckpt = deserialize_checkpoint(&bytes, "mem").unwrap();
        assert_eq!(ckpt.metadata, meta);
        assert_eq!(ckpt.layout("mem").unwrap(), Some(Layout::Torch));
        assert_eq!(ckpt.tensors, deserialize_safetensors(&bytes, "mem").unwrap());
        let plain = deserialize_checkpoint(&serialize_safetensors(&sample()).unwrap(), "mem").unwrap();
        assert!(plain.metadata.is_empty());
        assert_eq!(plain.layout("mem").unwrap(), None);
        let odd = BTreeMap::from([(LAYOUT_KEY.to_string(), "Torch ".to_string())]);
        let ckpt = deserialize_checkpoint(&serialize_checkpoint(&sample(), &odd).unwrap(), "m.st").unwrap();
        let err = ckpt.layout("m.st").unwrap_err();
        assert!(matches!(&err, Error::Format { file, .. } if file == "m.st"), "{err:?}");
        assert!(err.to_string().contains("'Torch '"), "{err}");
    }

    #[test]
    fn random_bytes_never_panic() {
        let mut rng = Rng::new(0x5eed);
        let good = serialize_safetensors(&sample()).unwrap();
        for i in 0..500 {
            let len = rng.below(300);
            let mut bytes: Vec<u8> = (0..len).map(|_| rng.next_u64() as u8).collect();
            match i % 4 {
                // A plausible header length so the JSON parser is reached.
                1 if len >= 8 => {
                    let n = rng.below(len - 7) as u64;
                    bytes[..8].copy_from_slice(&n.to_le_bytes());
                }
                // A valid file with a few bytes flipped.
                2 => {
                    bytes = good.clone();
                    for _ in 0..1 + rng.below(4) {
                        let at = rng.below(bytes.len());
                        bytes[at] ^= 1 << rng.below(8);
                    }
                }
                // A valid file cut short.
                3 => bytes = good[..rng.below(good.len())].to_vec(),
                _ => {}
            }
            let _ = deserialize_safetensors(&bytes, "fuzz");
        }
    }
}
