//! The IDX reader fed arbitrary and adversarially mutated files (issue 18):
//! it returns `Ok` or a clean error, never panics, and never allocates by a
//! size the header declares before checking it against what the file holds.
//!
//! The allocation claim is measured: this test binary's global allocator
//! records the largest single allocation made on the current thread while a
//! read is watched, and every property bounds it by the bytes the file
//! actually holds (raw and decompressed) plus a fixed allowance for the
//! buffers of `BufReader` and the inflater. A header claiming a gigabyte in a
//! file of a few bytes would blow that bound long before it exhausted memory.

use deepgen_core::alloc_watch::{LargestAllocation, largest_allocation};
use deepgen_data::idx::{IMAGES_MAGIC, LABELS_MAGIC, MAX_PAYLOAD_BYTES, read_idx};
use deepgen_data::{Error, IdxArray};
use flate2::Compression;
use flate2::write::GzEncoder;
use proptest::prelude::*;
use std::io::Write;
use std::path::Path;

#[global_allocator]
static ALLOCATOR: LargestAllocation = LargestAllocation;

/// What the reader may allocate besides the data itself: `BufReader`'s 8 KiB,
/// the inflater's state and window (about 40 KiB), paths and messages.
const ALLOWANCE: usize = 256 * 1024;

/// Reads `path` as IDX; returns the result and the largest single allocation
/// made meanwhile.
fn watched_read(path: &Path, magic: Option<u32>) -> (Result<IdxArray, Error>, usize) {
    largest_allocation(|| read_idx(path, magic))
}

/// The bytes of an IDX file: `magic`, the header dimensions (which may lie),
/// the payload.
fn idx_bytes(magic: u32, dims: &[u32], data: &[u8]) -> Vec<u8> {
    let mut out = magic.to_be_bytes().to_vec();
    for d in dims {
        out.extend_from_slice(&d.to_be_bytes());
    }
    out.extend_from_slice(data);
    out
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut enc = GzEncoder::new(Vec::new(), Compression::default());
    enc.write_all(bytes).expect("write to a Vec");
    enc.finish().expect("finish a Vec")
}

/// A file with `bytes` in the system's temporary folder, under a unique
/// name; removed when dropped.
fn temp_file(bytes: &[u8]) -> tempfile::NamedTempFile {
    let mut file = tempfile::Builder::new()
        .prefix("deepgen-fuzz-idx-")
        .tempfile_in(std::env::temp_dir())
        .expect("create a temporary file");
    file.write_all(bytes).expect("write the temporary file");
    file.flush().expect("flush the temporary file");
    file
}

/// Reads `bytes` (whose decompressed content is `content_len` bytes long;
/// `bytes.len()` for a raw file) with every magic the loaders ask for, and
/// checks the outcome: no panic (proptest reports one as a failure), a
/// result consistent with the header, and no allocation beyond what the
/// file holds.
fn check_read(bytes: &[u8], content_len: usize) -> Result<(), TestCaseError> {
    let file = temp_file(bytes);
    let bound = ALLOWANCE + 2 * bytes.len().max(content_len);
    for magic in [None, Some(IMAGES_MAGIC), Some(LABELS_MAGIC)] {
        let (result, largest) = watched_read(file.path(), magic);
        prop_assert!(
            largest <= bound,
            "allocated {largest} bytes at once reading a {}-byte file ({content_len} decompressed): {result:?}",
            bytes.len()
        );
        match result {
            Ok(array) => {
                let product = array.dims().iter().try_fold(1usize, |a, &d| a.checked_mul(d));
                prop_assert_eq!(product, Some(array.data().len()));
                prop_assert!(array.data().len() as u64 <= MAX_PAYLOAD_BYTES);
                if let Some(magic) = magic {
                    prop_assert_eq!(array.dims().len(), (magic & 0xff) as usize);
                }
            }
            Err(err) => {
                // A clean error names the file.
                let message = err.to_string();
                prop_assert!(message.contains(&file.path().display().to_string()), "{message}");
            }
        }
    }
    Ok(())
}

/// A dimension: mostly small, sometimes 0, `u32::MAX` or a power of two, so
/// that products are empty, fit, or overflow `u32`, `u64` and `usize`.
fn arb_dim() -> impl Strategy<Value = u32> {
    prop_oneof![
        4 => 0u32..8,
        2 => 0u32..70_000,
        2 => 1u32..4_000_000,
        1 => Just(0),
        1 => Just(u32::MAX),
        1 => (0u32..32).prop_map(|s| 1 << s),
        1 => any::<u32>(),
    ]
}

/// A header with `rank` = the number of dims, a `0x08` or random type and
/// the dims, and a payload of random bytes (so that gzip cannot shrink it)
/// whose length is the declared one ± a few bytes when that is small, or
/// anything up to 3000 bytes (a header that lies; compressed, such a file
/// passes the ratio check for claims up to about 3 MB, so only reading with
/// the data, not the claim, keeps the allocations small).
fn arb_header_and_payload() -> impl Strategy<Value = (Vec<u8>, usize)> {
    (
        prop::collection::vec(arb_dim(), 0..5),
        prop_oneof![4 => Just(0x08u8), 1 => any::<u8>()],
        -3i64..3,
        0usize..3000,
        any::<bool>(),
    )
        .prop_flat_map(|(dims, type_code, slack, other_len, near)| {
            let declared = dims.iter().try_fold(1u64, |a, &d| a.checked_mul(u64::from(d)));
            let len = match declared {
                Some(n) if near && n <= 4096 => (n as i64 + slack).max(0) as usize,
                _ => other_len,
            };
            let magic = u32::from_be_bytes([0, 0, type_code, dims.len() as u8]);
            prop::collection::vec(any::<u8>(), len).prop_map(move |payload| {
                let bytes = idx_bytes(magic, &dims, &payload);
                let content = bytes.len();
                (bytes, content)
            })
        })
}

/// A small valid IDX file of rank 1 to 3.
fn arb_valid_file() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(1u32..6, 1..4).prop_flat_map(|dims| {
        let n: u32 = dims.iter().product();
        prop::collection::vec(any::<u8>(), n as usize).prop_map(move |data| {
            let magic = u32::from_be_bytes([0, 0, 0x08, dims.len() as u8]);
            idx_bytes(magic, &dims, &data)
        })
    })
}

/// A mutation of a file: flip bytes, overwrite a header dimension, cut or
/// extend it.
#[derive(Debug, Clone)]
enum Mutation {
    Flip { at: usize, xor: u8 },
    SetWord { at: usize, value: u32 },
    Truncate { keep: usize },
    Append { bytes: Vec<u8> },
}

fn arb_mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        3 => (any::<usize>(), 1u8..=255).prop_map(|(at, xor)| Mutation::Flip { at, xor }),
        2 => (any::<usize>(), arb_dim()).prop_map(|(at, value)| Mutation::SetWord { at, value }),
        1 => any::<usize>().prop_map(|keep| Mutation::Truncate { keep }),
        1 => prop::collection::vec(any::<u8>(), 1..16).prop_map(|bytes| Mutation::Append { bytes }),
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
        Mutation::SetWord { at, value } => {
            // A word of the header (magic or a dimension) when there is one.
            let words = (bytes.len() / 4).clamp(1, 5);
            let at = 4 * (at % words);
            for (i, b) in value.to_be_bytes().into_iter().enumerate() {
                if let Some(slot) = bytes.get_mut(at + i) {
                    *slot = b;
                }
            }
        }
        Mutation::Truncate { keep } => bytes.truncate(keep % bytes.len()),
        Mutation::Append { bytes: more } => bytes.extend_from_slice(more),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Arbitrary bytes, raw: `Ok` or an error naming the file.
    #[test]
    fn prop_random_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..300)) {
        check_read(&bytes, bytes.len())?;
    }

    /// A well-formed header with arbitrary dimensions (0, `u32::MAX`, products
    /// that overflow) and a payload shorter, longer or equal to the claim:
    /// nothing is allocated by the claim.
    #[test]
    fn prop_lying_headers_are_checked_before_allocating((bytes, content) in arb_header_and_payload(), gz: bool) {
        if gz {
            check_read(&gzip(&bytes), content)?;
        } else {
            check_read(&bytes, content)?;
        }
    }

    /// Up to four byte flips, dimension overwrites, truncations or
    /// extensions of a valid file, read raw and gzip-compressed.
    #[test]
    fn prop_mutated_files_never_panic(
        file in arb_valid_file(),
        mutations in prop::collection::vec(arb_mutation(), 1..5),
    ) {
        let mut bytes = file;
        for m in &mutations {
            mutate(&mut bytes, m);
        }
        check_read(&bytes, bytes.len())?;
        check_read(&gzip(&bytes), bytes.len())?;
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    /// Gzip streams that lie: random bytes behind the gzip magic, a valid
    /// stream cut short or with flipped bytes (the CRC, the length trailer,
    /// the deflate data), and a large zero payload whose header claims more
    /// or less than it holds.
    #[test]
    fn prop_broken_gzip_never_panics(
        noise in prop::collection::vec(any::<u8>(), 0..200),
        file in arb_valid_file(),
        mutation in arb_mutation(),
        zeros in 0usize..200_000,
        claim_slack in -2i64..2,
    ) {
        // Random bytes that start like gzip.
        let mut fake = vec![0x1f, 0x8b];
        fake.extend_from_slice(&noise);
        check_read(&fake, fake.len())?;

        // A valid gzip file, mutated after compression.
        let mut gz = gzip(&file);
        mutate(&mut gz, &mutation);
        check_read(&gz, file.len())?;

        // Highly compressible content (a deflate stream of zeros expands
        // about a thousandfold): the reader must grow with the data, not
        // with the header's claim.
        let claim = (zeros as i64 + claim_slack).max(0) as u32;
        let bytes = idx_bytes(LABELS_MAGIC, &[claim], &vec![0; zeros]);
        check_read(&gzip(&bytes), bytes.len())?;
    }
}

/// Headers that claim far more than the file holds, each read in well under
/// the time an allocation of the claim would take, and with the bound above.
#[test]
fn huge_claims_are_refused_without_allocating() -> Result<(), TestCaseError> {
    let claims: [&[u32]; 5] = [
        &[u32::MAX],
        &[u32::MAX, u32::MAX, u32::MAX],
        &[1 << 30],
        &[1 << 20],
        &[60_000, 28, 28],
    ];
    for dims in claims {
        let magic = u32::from_be_bytes([0, 0, 0x08, dims.len() as u8]);
        let bytes = idx_bytes(magic, dims, &[7; 100]);
        check_read(&bytes, bytes.len())?;
        check_read(&gzip(&bytes), bytes.len())?;
    }
    Ok(())
}
