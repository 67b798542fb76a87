//! Checkpoint reading fed arbitrary and adversarially mutated files (issue
//! 18): `Checkpoint::load`, then everything that reads what it returns
//! (`load_varmap`, `metadata_value`, Adam's `load_state`) gives `Ok` or a
//! clean error, never a panic, and allocates no more at once than a small
//! multiple of the file's own size.
//!
//! The allocation bound is measured as in deepgen-data's IDX fuzzing: this
//! test binary's global allocator records the largest single allocation of
//! the thread while a load is watched.

use deepgen_core::alloc_watch::{LargestAllocation, largest_allocation};
use deepgen_core::candle::{DType, Device};
use deepgen_core::candle_nn::{self, VarMap};
use deepgen_core::checkpoint::{METADATA_KEY, load_varmap, save_varmap};
use deepgen_core::{Adam, AdamConfig, Checkpoint, Error, seeded_var_builder};
use proptest::prelude::*;
use std::io::Write;
use std::path::Path;

#[global_allocator]
static ALLOCATOR: LargestAllocation = LargestAllocation;

/// Besides the file's bytes (read whole) and the tensors copied out of them:
/// the parsed header (a shape `[0,0,…]` takes 8 bytes per 2 of JSON), maps,
/// names, messages.
const ALLOWANCE: usize = 256 * 1024;
const PER_FILE_BYTE: usize = 8;

/// A small model's variables: `fc.weight` `[4, 3]` and `fc.bias` `[4]`.
fn model(seed: u64) -> VarMap {
    let varmap = VarMap::new();
    let vb = seeded_var_builder(&varmap, seed, DType::F32, &Device::Cpu);
    candle_nn::linear(3, 4, vb.pp("fc")).expect("build a linear layer");
    varmap
}

/// A valid checkpoint of [`model`] with Adam's state and metadata, as the
/// training loop writes one.
fn valid_checkpoint() -> Vec<u8> {
    let dir = tempfile::tempdir().expect("a temporary folder");
    let path = dir.path().join("valid.safetensors");
    let varmap = model(1);
    let adam = Adam::new(&varmap, AdamConfig::default()).expect("Adam");
    let mut checkpoint = Checkpoint::default();
    checkpoint.add_varmap("model.", &varmap).expect("add the varmap");
    adam.save_state("opt.", &mut checkpoint);
    checkpoint.metadata.insert("epoch".into(), "3".into());
    checkpoint.metadata.insert("seed".into(), "7".into());
    checkpoint.save(&path).expect("save");
    std::fs::read(&path).expect("read back")
}

/// A file with `bytes` in the system's temporary folder, under a unique
/// name; removed when dropped.
fn temp_file(bytes: &[u8]) -> tempfile::NamedTempFile {
    let mut file = tempfile::Builder::new()
        .prefix("deepgen-fuzz-checkpoint-")
        .suffix(".safetensors")
        .tempfile_in(std::env::temp_dir())
        .expect("create a temporary file");
    file.write_all(bytes).expect("write the temporary file");
    file.flush().expect("flush the temporary file");
    file
}

/// Loads `bytes` as a checkpoint and hands it to every reader of a loaded
/// checkpoint; fails the case on an allocation beyond the bound, on an error
/// that does not name the file, or (through proptest) on a panic.
fn check_load(bytes: &[u8]) -> Result<(), TestCaseError> {
    let file = temp_file(bytes);
    let path = file.path();
    let bound = ALLOWANCE + PER_FILE_BYTE * bytes.len();
    let (loaded, largest) = largest_allocation(|| Checkpoint::load(path, &Device::Cpu));
    prop_assert!(
        largest <= bound,
        "allocated {largest} bytes at once loading a {}-byte file: {loaded:?}",
        bytes.len()
    );
    let checkpoint = match loaded {
        Ok(checkpoint) => checkpoint,
        Err(err) => return names_the_file(&err, path),
    };
    // What the training loop and `load_model` do with a loaded checkpoint.
    let varmap = model(2);
    if let Err(err) = checkpoint.load_varmap("model.", &varmap, path) {
        names_the_file(&err, path)?;
    }
    let mut adam = Adam::new(&varmap, AdamConfig::default()).expect("Adam");
    if let Err(err) = adam.load_state("opt.", &checkpoint, path) {
        names_the_file(&err, path)?;
    }
    for key in ["epoch", "seed", "opt.step", "missing"] {
        if let Err(err) = checkpoint.metadata_value::<usize>(key, path) {
            names_the_file(&err, path)?;
        }
        if let Err(err) = checkpoint.metadata_value::<u64>(key, path) {
            names_the_file(&err, path)?;
        }
    }
    // The free function reads the file again, into a model of its own.
    if let Err(err) = load_varmap(&model(3), path) {
        names_the_file(&err, path)?;
    }
    Ok(())
}

fn names_the_file(err: &Error, path: &Path) -> Result<(), TestCaseError> {
    let message = err.to_string();
    prop_assert!(message.contains(&path.display().to_string()), "{message}");
    Ok(())
}

/// A mutation of a file: flip a byte, set the header length (the first 8
/// bytes, little-endian) to another value, overwrite a byte of the header
/// with a JSON-significant one, cut or extend the file.
#[derive(Debug, Clone)]
enum Mutation {
    Flip { at: usize, xor: u8 },
    HeaderLength(u64),
    HeaderByte { at: usize, byte: u8 },
    Truncate { keep: usize },
    Append(Vec<u8>),
}

/// Header lengths: off by a little, the file's length, past it, huge.
fn arb_header_length() -> impl Strategy<Value = u64> {
    prop_oneof![
        0u64..2000,
        Just(u64::MAX),
        Just(u64::MAX - 7),
        Just(1 << 63),
        Just(100_000_000),
        Just(100_000_001),
        (0u32..64).prop_map(|s| 1u64 << s),
        any::<u64>(),
    ]
}

fn arb_mutation() -> impl Strategy<Value = Mutation> {
    let json_byte = prop::sample::select(b"{}[]\":,0123456789-e.\\ \x00\xff".to_vec());
    prop_oneof![
        3 => (any::<usize>(), 1u8..=255).prop_map(|(at, xor)| Mutation::Flip { at, xor }),
        2 => arb_header_length().prop_map(Mutation::HeaderLength),
        3 => (any::<usize>(), json_byte).prop_map(|(at, byte)| Mutation::HeaderByte { at, byte }),
        1 => any::<usize>().prop_map(|keep| Mutation::Truncate { keep }),
        1 => prop::collection::vec(any::<u8>(), 1..64).prop_map(Mutation::Append),
    ]
}

fn mutate(bytes: &mut Vec<u8>, mutation: &Mutation) {
    if bytes.is_empty() {
        return;
    }
    match mutation {
        Mutation::Flip { at, xor } => {
            let at = at % bytes.len();
            bytes[at] ^= xor;
        }
        Mutation::HeaderLength(n) => {
            for (slot, b) in bytes.iter_mut().zip(n.to_le_bytes()) {
                *slot = b;
            }
        }
        Mutation::HeaderByte { at, byte } => {
            // Inside the JSON header as the file says it is, when it says so.
            let header_end = bytes
                .get(..8)
                .and_then(|n| <[u8; 8]>::try_from(n).ok())
                .map_or(bytes.len(), |n| (u64::from_le_bytes(n) as usize).saturating_add(8))
                .min(bytes.len());
            let span = header_end.saturating_sub(8).max(1);
            let at = (8 + at % span).min(bytes.len() - 1);
            bytes[at] = *byte;
        }
        Mutation::Truncate { keep } => bytes.truncate(keep % bytes.len()),
        Mutation::Append(more) => bytes.extend_from_slice(more),
    }
}

/// A safetensors dtype name, known to safetensors or not.
fn arb_dtype() -> impl Strategy<Value = String> {
    prop::sample::select(vec![
        "F32", "F16", "BF16", "F64", "U8", "I8", "U16", "I16", "U32", "I32", "U64", "I64", "BOOL", "F8_E4M3",
        "F8_E5M2", "F8_E8M0", "F6_E2M3", "F6_E3M2", "F4", "C64", "f32", "X",
    ])
    .prop_map(str::to_string)
}

/// A dimension: small, 0, or large enough that products and strides
/// overflow `usize`.
fn arb_dim() -> impl Strategy<Value = u64> {
    prop_oneof![
        4 => 0u64..5,
        1 => Just(0),
        1 => (16u32..64).prop_map(|s| 1u64 << s),
        1 => Just(u64::MAX),
        1 => any::<u64>(),
    ]
}

/// The bytes per element of a dtype name, as safetensors counts them (bits
/// for the sub-byte types), `None` when unknown.
fn bits(dtype: &str) -> Option<u64> {
    Some(match dtype {
        "F64" | "U64" | "I64" | "C64" => 64,
        "F32" | "U32" | "I32" => 32,
        "F16" | "BF16" | "U16" | "I16" => 16,
        "U8" | "I8" | "BOOL" | "F8_E4M3" | "F8_E5M2" | "F8_E8M0" => 8,
        "F6_E2M3" | "F6_E3M2" => 6,
        "F4" => 4,
        _ => return None,
    })
}

/// One tensor entry of a hand-written header: name, dtype, shape, and
/// whether its offsets are the consistent ones (else random).
fn arb_entry() -> impl Strategy<Value = (String, String, Vec<u64>, Option<(u64, u64)>)> {
    (
        prop::sample::select(vec!["model.fc.weight", "model.fc.bias", "opt.m.fc.weight", "x", ""]),
        arb_dtype(),
        prop_oneof![
            // The model's own shapes, so that `load_varmap` converts the dtype.
            2 => prop::sample::select(vec![vec![4u64, 3], vec![4]]),
            3 => prop::collection::vec(arb_dim(), 0..4),
            // No elements, but dimensions whose products overflow.
            2 => (prop::collection::vec(arb_dim(), 0..3), prop::collection::vec(arb_dim(), 2..4))
                .prop_map(|(mut a, b)| { a.push(0); a.extend(b); a }),
        ],
        prop_oneof![3 => Just(None), 1 => (0u64..64, 0u64..64).prop_map(Some)],
    )
        .prop_map(|(name, dtype, shape, offsets)| (name.to_string(), dtype, shape, offsets))
}

/// A safetensors file written by hand: a JSON header whose tensors have any
/// dtype, shapes with zero and huge dimensions and offsets consistent with
/// them or not, optional metadata (deepgen's one JSON entry or free
/// strings), then the data section the offsets describe or one of random
/// length; the length field is the header's or a random one.
fn arb_crafted_file() -> impl Strategy<Value = Vec<u8>> {
    (
        prop::collection::vec(arb_entry(), 0..4),
        prop_oneof![
            Just(None),
            ".{0,40}".prop_map(Some),
            Just(Some(
                r#"{"epoch":"3","seed":"7","opt.step":"18446744073709551616"}"#.to_string()
            )),
            Just(Some(r#"{"epoch":3}"#.to_string())),
            Just(Some(r#"[["epoch","3"]]"#.to_string())),
        ],
        any::<bool>(),
        prop_oneof![3 => Just(None), 1 => (0usize..256).prop_map(Some)],
        prop_oneof![3 => Just(None), 1 => any::<u64>().prop_map(Some)],
    )
        .prop_map(|(entries, deepgen, extra_entry, data_len, lied_length)| {
            let mut header = serde_json::Map::new();
            let mut offset = 0u64;
            for (i, (name, dtype, shape, offsets)) in entries.into_iter().enumerate() {
                let (start, end) = offsets.unwrap_or_else(|| {
                    let elements = shape.iter().try_fold(1u64, |a, &d| a.checked_mul(d));
                    let size = elements
                        .zip(bits(&dtype))
                        .and_then(|(n, b)| n.checked_mul(b))
                        .map_or(8, |b| b / 8);
                    (offset, offset.saturating_add(size))
                });
                offset = end;
                let key = if header.contains_key(&name) {
                    format!("{name}{i}")
                } else {
                    name
                };
                header.insert(
                    key,
                    serde_json::json!({"dtype": dtype, "shape": shape, "data_offsets": [start, end]}),
                );
            }
            let mut metadata = serde_json::Map::new();
            if let Some(json) = deepgen {
                metadata.insert(METADATA_KEY.into(), json.into());
            }
            if extra_entry {
                metadata.insert("epoch".into(), "2".into());
            }
            if !metadata.is_empty() {
                header.insert("__metadata__".into(), metadata.into());
            }
            let json = serde_json::Value::Object(header).to_string();
            let length = lied_length.unwrap_or(json.len() as u64);
            let mut bytes = length.to_le_bytes().to_vec();
            bytes.extend_from_slice(json.as_bytes());
            // The data section the offsets describe (when small), or any length.
            let data_len = data_len.unwrap_or(if offset <= 4096 { offset as usize } else { 16 });
            bytes.extend((0..data_len).map(|i| i as u8));
            bytes
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Arbitrary bytes.
    #[test]
    fn prop_random_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..400)) {
        check_load(&bytes)?;
    }

    /// Arbitrary bytes behind a header length that is small, exact or huge.
    #[test]
    fn prop_random_header_never_panics(
        length in arb_header_length(),
        rest in prop::collection::vec(any::<u8>(), 0..400),
    ) {
        let mut bytes = length.to_le_bytes().to_vec();
        bytes.extend_from_slice(&rest);
        check_load(&bytes)?;
    }

    /// Hand-written headers: every dtype name, zero and huge dimensions,
    /// consistent and inconsistent offsets, odd metadata.
    #[test]
    fn prop_crafted_headers_never_panic(bytes in arb_crafted_file()) {
        check_load(&bytes)?;
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    /// Up to four mutations of a valid checkpoint (model, Adam state,
    /// metadata): byte flips, header lengths, JSON bytes in the header,
    /// truncations, extensions.
    #[test]
    fn prop_mutated_checkpoints_never_panic(mutations in prop::collection::vec(arb_mutation(), 1..5)) {
        let mut bytes = valid_checkpoint();
        for m in &mutations {
            mutate(&mut bytes, m);
        }
        check_load(&bytes)?;
    }
}

/// The unmutated checkpoint loads and restores everything.
#[test]
fn the_valid_checkpoint_loads() -> deepgen_core::Result<()> {
    let bytes = valid_checkpoint();
    let file = temp_file(&bytes);
    let checkpoint = Checkpoint::load(file.path(), &Device::Cpu)?;
    let varmap = model(2);
    checkpoint.load_varmap("model.", &varmap, file.path())?;
    Adam::new(&varmap, AdamConfig::default())?.load_state("opt.", &checkpoint, file.path())?;
    assert_eq!(checkpoint.metadata_value::<usize>("epoch", file.path())?, 3);
    let dir = tempfile::tempdir().map_err(|e| Error::io("tempdir", "", e))?;
    let path = dir.path().join("plain.safetensors");
    save_varmap(&model(1), &[("epoch", "1".into())], &path)?;
    assert_eq!(
        load_varmap(&model(2), &path)?.get("epoch").map(String::as_str),
        Some("1")
    );
    Ok(())
}

/// The model's tensors stored in every dtype safetensors knows (the
/// sub-byte ones included): each loads into the `F32` model or is a clean
/// error.
#[test]
fn every_dtype_at_the_models_shapes() -> Result<(), TestCaseError> {
    let dtypes = [
        "F32", "F16", "BF16", "F64", "U8", "I8", "U16", "I16", "U32", "I32", "U64", "I64", "BOOL", "F8_E4M3",
        "F8_E5M2", "F8_E8M0", "F6_E2M3", "F6_E3M2", "F4", "C64",
    ];
    for dtype in dtypes {
        let Some(bits) = bits(dtype) else { continue };
        let (weight, bias) = ((12 * bits / 8) as usize, (4 * bits / 8) as usize);
        let json = serde_json::json!({
            "model.fc.weight": {"dtype": dtype, "shape": [4, 3], "data_offsets": [0, weight]},
            "model.fc.bias": {"dtype": dtype, "shape": [4], "data_offsets": [weight, weight + bias]},
        })
        .to_string();
        let mut bytes = (json.len() as u64).to_le_bytes().to_vec();
        bytes.extend_from_slice(json.as_bytes());
        bytes.extend((0..weight + bias).map(|i| (i * 37) as u8));
        check_load(&bytes).map_err(|e| TestCaseError::fail(format!("{dtype}: {e}")))?;
    }
    Ok(())
}
