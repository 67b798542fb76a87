//! A validating reader and a writer for IDX files, the format MNIST and
//! Fashion-MNIST ship in.
//!
//! An IDX file is a big-endian header followed by the payload:
//!
//! ```text
//! 0x00 0x00 <type> <rank>     magic number; type 0x08 = unsigned byte
//! <dim 0> … <dim rank-1>      one u32 per dimension
//! payload                     dim 0 × … × dim rank-1 items, row-major
//! ```
//!
//! MNIST's images have magic `0x00000803` (bytes, rank 3: `[n, 28, 28]`) and
//! its labels `0x00000801` (bytes, rank 1: `[n]`).
//!
//! The header is untrusted: nothing is allocated from it until it has been
//! checked. The claimed payload must be at most [`MAX_PAYLOAD_BYTES`]; for a raw
//! file it must equal the file's length minus the header exactly; for a gzip
//! file it must be at most [`MAX_GZIP_RATIO`] times the compressed size (no
//! deflate stream expands more), and the decompressed stream is read through
//! `take(claimed + 1)`, so a header that claims four billion images in a 10 kB
//! file is an error, never an out-of-memory abort.
//!
//! Gzip is recognised by its content (the bytes `1f 8b`), not by the name, so a
//! renamed file still loads.
//!
//! [`write_idx_images`] saves generated images in MNIST's own image format
//! (magic `0x00000803`, `u8` pixels `round(255 x)`), so any MNIST evaluator
//! can read them; it writes through deepgen-core's atomic writer and
//! gzip-compresses when the name ends in `.gz`.

use crate::image_grid::to_byte;
use crate::{Error, Result};
use candle::{DType, Tensor};
use flate2::Compression;
use flate2::read::GzDecoder;
use flate2::write::GzEncoder;
use std::fs::File;
use std::io::{BufRead, BufReader, ErrorKind, Read, Write};
use std::path::Path;

/// The IDX type code for unsigned bytes, the only type this reader accepts.
pub const IDX_UBYTE: u8 = 0x08;
/// Magic number of an IDX file of unsigned bytes with rank 3 (MNIST images).
pub const IMAGES_MAGIC: u32 = 0x0000_0803;
/// Magic number of an IDX file of unsigned bytes with rank 1 (MNIST labels).
pub const LABELS_MAGIC: u32 = 0x0000_0801;
/// The largest payload this reader accepts, 1 GiB (MNIST's largest file holds
/// 47 MB).
pub const MAX_PAYLOAD_BYTES: u64 = 1 << 30;
/// The largest expansion factor a deflate stream can reach (about 1032:1), used
/// to reject a gzip file whose header claims more than it can hold.
pub const MAX_GZIP_RATIO: u64 = 1032;

/// The decoded content of an IDX file of unsigned bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IdxArray {
    dims: Vec<usize>,
    data: Vec<u8>,
}

impl IdxArray {
    /// The dimensions from the header, e.g. `[60000, 28, 28]`.
    pub fn dims(&self) -> &[usize] {
        &self.dims
    }

    /// The payload, row-major; its length is the product of [`Self::dims`].
    pub fn data(&self) -> &[u8] {
        &self.data
    }

    /// The payload, consuming the array.
    pub fn into_data(self) -> Vec<u8> {
        self.data
    }

    /// The number of items along the first dimension (images, labels).
    pub fn len(&self) -> usize {
        self.dims.first().copied().unwrap_or(0)
    }

    /// Whether the first dimension is 0.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Reads an IDX file of unsigned bytes, raw or gzip-compressed.
///
/// With `expected_magic = Some(m)` the file's magic number must equal `m`
/// (e.g. [`IMAGES_MAGIC`]); with `None` any rank is accepted.
///
/// # Errors
///
/// Each names `path` and the numbers involved: [`Error::Io`] when the file
/// cannot be opened or decompressed; [`Error::BadMagic`],
/// [`Error::UnsupportedIdxType`] or [`Error::BadDims`] for a bad header;
/// [`Error::Oversized`] when the header claims more than the limits in the
/// module docs; [`Error::Truncated`] or [`Error::TrailingBytes`] when the
/// payload is shorter or longer than the header says.
pub fn read_idx(path: &Path, expected_magic: Option<u32>) -> Result<IdxArray> {
    read_idx_checked(path, expected_magic, |_| Ok(()))
}

/// [`read_idx`] with an extra check of the header's dimensions, run before the
/// payload is read.
pub(crate) fn read_idx_checked(
    path: &Path,
    expected_magic: Option<u32>,
    check_dims: impl FnOnce(&[u32]) -> Result<()>,
) -> Result<IdxArray> {
    let file = File::open(path).map_err(|e| Error::io("open", path, e))?;
    let file_len = file.metadata().map_err(|e| Error::io("stat", path, e))?.len();
    let mut reader = BufReader::new(file);
    let head = reader.fill_buf().map_err(|e| Error::io("read", path, e))?;
    if head.starts_with(&[0x1f, 0x8b]) {
        let source = Source::Gzip {
            compressed_len: file_len,
        };
        decode(GzDecoder::new(reader), path, expected_magic, check_dims, source)
    } else {
        let source = Source::Raw { file_len };
        decode(reader, path, expected_magic, check_dims, source)
    }
}

/// What is known about the stream's length before decoding.
#[derive(Clone, Copy, Debug)]
enum Source {
    Raw { file_len: u64 },
    Gzip { compressed_len: u64 },
}

impl Source {
    fn read_op(self) -> &'static str {
        match self {
            Source::Raw { .. } => "read",
            Source::Gzip { .. } => "decompress",
        }
    }
}

/// Reads into `buf` until it is full or the stream ends; returns the bytes read.
fn read_up_to(reader: &mut impl Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        let rest = buf.get_mut(filled..).unwrap_or_default();
        match reader.read(rest) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

fn decode<R: Read>(
    mut reader: R,
    path: &Path,
    expected_magic: Option<u32>,
    check_dims: impl FnOnce(&[u32]) -> Result<()>,
    source: Source,
) -> Result<IdxArray> {
    let op = source.read_op();
    let mut magic = [0u8; 4];
    let got = read_up_to(&mut reader, &mut magic).map_err(|e| Error::io(op, path, e))?;
    if got < magic.len() {
        return Err(Error::Truncated {
            path: path.into(),
            part: "header",
            expected: 4,
            found: got as u64,
        });
    }
    let found = u32::from_be_bytes(magic);
    let [zero_a, zero_b, type_code, rank] = magic;
    if let Some(expected) = expected_magic
        && found != expected
    {
        return Err(Error::BadMagic {
            path: path.into(),
            found,
            expected: describe_magic(expected),
        });
    }
    if zero_a != 0 || zero_b != 0 {
        return Err(Error::BadMagic {
            path: path.into(),
            found,
            expected: "0x0000TTRR (IDX: two zero bytes, type TT, rank RR)".into(),
        });
    }
    if type_code != IDX_UBYTE {
        return Err(Error::UnsupportedIdxType {
            path: path.into(),
            type_code,
        });
    }
    if rank == 0 {
        return Err(Error::BadDims {
            path: path.into(),
            found: Vec::new(),
            expected: "at least one dimension".into(),
        });
    }

    let header_len = 4 + 4 * u64::from(rank);
    let mut dims = Vec::with_capacity(usize::from(rank));
    for i in 0..u64::from(rank) {
        let mut dim = [0u8; 4];
        let got = read_up_to(&mut reader, &mut dim).map_err(|e| Error::io(op, path, e))?;
        if got < dim.len() {
            return Err(Error::Truncated {
                path: path.into(),
                part: "header",
                expected: header_len,
                found: 4 + 4 * i + got as u64,
            });
        }
        dims.push(u32::from_be_bytes(dim));
    }
    let claimed = dims
        .iter()
        .try_fold(1u64, |acc, &d| acc.checked_mul(u64::from(d)))
        .unwrap_or(u64::MAX);

    if claimed > MAX_PAYLOAD_BYTES {
        return Err(Error::Oversized {
            path: path.into(),
            dims,
            claimed,
            limit: MAX_PAYLOAD_BYTES,
            why: " (the reader's cap)".into(),
        });
    }
    if let Source::Gzip { compressed_len } = source {
        let limit = compressed_len.saturating_mul(MAX_GZIP_RATIO);
        if claimed > limit {
            return Err(Error::Oversized {
                path: path.into(),
                dims,
                claimed,
                limit,
                why: format!(" (a {compressed_len}-byte gzip file cannot decompress to more)"),
            });
        }
    }
    check_dims(&dims)?;

    let data = match source {
        Source::Raw { file_len } => {
            let payload = file_len.saturating_sub(header_len);
            if payload < claimed {
                return Err(Error::Truncated {
                    path: path.into(),
                    part: "payload",
                    expected: claimed,
                    found: payload,
                });
            }
            if payload > claimed {
                return Err(Error::TrailingBytes {
                    path: path.into(),
                    expected: claimed,
                    extra: payload - claimed,
                });
            }
            // Safe to allocate: `claimed` equals the bytes on disk and is at most
            // MAX_PAYLOAD_BYTES.
            let mut data = vec![0u8; to_usize(claimed, path)?];
            let got = read_up_to(&mut reader, &mut data).map_err(|e| Error::io(op, path, e))?;
            if (got as u64) < claimed {
                // The file shrank while being read.
                return Err(Error::Truncated {
                    path: path.into(),
                    part: "payload",
                    expected: claimed,
                    found: got as u64,
                });
            }
            data
        }
        Source::Gzip { .. } => {
            // Never trust the header with an allocation: grow as bytes arrive and
            // read one byte past the claim to detect trailing data.
            let mut data = Vec::new();
            reader
                .take(claimed.saturating_add(1))
                .read_to_end(&mut data)
                .map_err(|e| Error::io(op, path, e))?;
            let got = data.len() as u64;
            if got < claimed {
                return Err(Error::Truncated {
                    path: path.into(),
                    part: "payload",
                    expected: claimed,
                    found: got,
                });
            }
            if got > claimed {
                return Err(Error::TrailingBytes {
                    path: path.into(),
                    expected: claimed,
                    extra: got - claimed,
                });
            }
            data
        }
    };

    let dims = dims
        .iter()
        .map(|&d| to_usize(u64::from(d), path))
        .collect::<Result<Vec<_>>>()?;
    Ok(IdxArray { dims, data })
}

fn to_usize(n: u64, path: &Path) -> Result<usize> {
    usize::try_from(n).map_err(|_| Error::Oversized {
        path: path.into(),
        dims: Vec::new(),
        claimed: n,
        limit: usize::MAX as u64,
        why: " (does not fit this platform's usize)".into(),
    })
}

fn describe_magic(magic: u32) -> String {
    let [_, _, type_code, rank] = magic.to_be_bytes();
    let kind = if type_code == IDX_UBYTE {
        "unsigned bytes".to_string()
    } else {
        format!("type {type_code:#04x}")
    };
    format!("{magic:#010x} ({kind}, {rank} dimension(s))")
}

/// Writes `images` as an IDX file of unsigned bytes with magic
/// [`IMAGES_MAGIC`] and dimensions `[n, h, w]`, the layout of MNIST's image
/// files, so generated samples can be scored by any MNIST evaluator.
///
/// Accepted shapes: `[n, h, w]`, `[n, 1, h, w]`, and flat MNIST `[n, 784]`
/// (written as `28 × 28`). Values of any float dtype and device are clamped to
/// `[0, 1]` and stored as `round(255 x)`, the inverse of the loaders' `b / 255`,
/// so a loaded data set is written back byte for byte. A path ending in `.gz`
/// is gzip-compressed. The file is written to a temporary name and renamed
/// ([`deepgen_core::checkpoint::write_atomic`]), so it is never half-written.
///
/// # Errors
///
/// Nothing is written on error. [`Error::BadShape`] for another rank, a flat
/// width other than 784, more than one channel, no images or an empty image;
/// [`Error::InvalidArgument`] for a non-float dtype or a non-finite value
/// (naming its index) and for a dimension beyond `u32`; [`Error::Core`] when
/// the file cannot be written.
pub fn write_idx_images(path: &Path, images: &Tensor) -> Result<()> {
    let bytes = idx_image_bytes(images)?;
    let bytes = if path.extension().is_some_and(|e| e == "gz") {
        let mut gz = GzEncoder::new(Vec::new(), Compression::default());
        gz.write_all(&bytes)
            .and_then(|()| gz.finish())
            .map_err(|e| Error::io("compress", path, e))?
    } else {
        bytes
    };
    Ok(deepgen_core::checkpoint::write_atomic(path, &bytes)?)
}

/// The bytes of the IDX images file [`write_idx_images`] writes (uncompressed).
fn idx_image_bytes(images: &Tensor) -> Result<Vec<u8>> {
    let side = crate::mnist::IMAGE_SIDE;
    let bad_shape = |expected: &str| Error::BadShape {
        what: "images to write as IDX",
        got: images.dims().to_vec(),
        expected: expected.into(),
    };
    let (n, h, w) = match *images.dims() {
        [n, d] if d == side * side => (n, side, side),
        [n, h, w] | [n, 1, h, w] => (n, h, w),
        _ => return Err(bad_shape("[n, h, w], [n, 1, h, w] or [n, 784]")),
    };
    if n == 0 || h == 0 || w == 0 {
        return Err(bad_shape("at least one image of at least one pixel"));
    }
    let to_u32 = |d: usize| {
        u32::try_from(d).map_err(|_| Error::invalid("images dimension", d, "an IDX dimension is at most u32::MAX"))
    };
    let header_dims = [to_u32(n)?, to_u32(h)?, to_u32(w)?];
    if !images.dtype().is_float() {
        return Err(Error::invalid(
            "images dtype",
            format!("{:?}", images.dtype()),
            "pixel values must be floats in [0, 1]",
        ));
    }
    let values = images.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?;
    if let Some((index, value)) = values.iter().enumerate().find(|(_, v)| !v.is_finite()) {
        return Err(Error::invalid(
            "images",
            format!("{value} at flat index {index}"),
            "pixel values must be finite",
        ));
    }
    let mut out = Vec::with_capacity(16 + values.len());
    out.extend_from_slice(&IMAGES_MAGIC.to_be_bytes());
    for d in header_dims {
        out.extend_from_slice(&d.to_be_bytes());
    }
    out.extend(values.into_iter().map(to_byte));
    Ok(out)
}

#[cfg(test)]
pub(crate) mod test_files {
    //! Writers of small, valid or deliberately broken IDX files for tests.

    use flate2::Compression;
    use flate2::write::GzEncoder;
    use std::io::Write;
    use std::path::{Path, PathBuf};

    /// The bytes of an IDX file: `magic`, the header dimensions `dims` (which
    /// may lie) and the payload `data`.
    pub fn idx_bytes(magic: u32, dims: &[u32], data: &[u8]) -> Vec<u8> {
        let mut out = magic.to_be_bytes().to_vec();
        for d in dims {
            out.extend_from_slice(&d.to_be_bytes());
        }
        out.extend_from_slice(data);
        out
    }

    /// Gzip-compresses `bytes`.
    pub fn gzip(bytes: &[u8]) -> Vec<u8> {
        let mut enc = GzEncoder::new(Vec::new(), Compression::default());
        enc.write_all(bytes).expect("write to a Vec");
        enc.finish().expect("finish a Vec")
    }

    /// Writes `bytes` to `dir/name`, gzip-compressed (and `.gz` appended) when
    /// `gz`; returns the path.
    pub fn write(dir: &Path, name: &str, bytes: &[u8], gz: bool) -> PathBuf {
        let (path, content) = if gz {
            (dir.join(format!("{name}.gz")), gzip(bytes))
        } else {
            (dir.join(name), bytes.to_vec())
        };
        std::fs::write(&path, content).expect("write test file");
        path
    }

    /// `n` images of `rows × cols` with pixel `(i, r, c) = (i + r + c) mod 256`.
    pub fn images(n: usize, rows: usize, cols: usize) -> Vec<u8> {
        (0..n)
            .flat_map(|i| (0..rows * cols).map(move |p| ((i + p / cols + p % cols) % 256) as u8))
            .collect()
    }

    /// Writes an images file with `n` images of `rows × cols` and a labels file
    /// with labels `i mod 10` under the MNIST names `{prefix}-images-idx3-ubyte`
    /// and `{prefix}-labels-idx1-ubyte`.
    pub fn write_split(dir: &Path, prefix: &str, n: usize, rows: u32, cols: u32, gz: bool) {
        let pixels = images(n, rows as usize, cols as usize);
        let labels: Vec<u8> = (0..n).map(|i| (i % 10) as u8).collect();
        write(
            dir,
            &format!("{prefix}-images-idx3-ubyte"),
            &idx_bytes(0x803, &[n as u32, rows, cols], &pixels),
            gz,
        );
        write(
            dir,
            &format!("{prefix}-labels-idx1-ubyte"),
            &idx_bytes(0x801, &[n as u32], &labels),
            gz,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::test_files::*;
    use super::*;
    use proptest::prelude::*;
    use std::time::Instant;

    #[test]
    fn round_trip_raw_and_gz() {
        let dir = tempfile::tempdir().unwrap();
        let pixels = images(3, 4, 5);
        let bytes = idx_bytes(IMAGES_MAGIC, &[3, 4, 5], &pixels);
        for gz in [false, true] {
            let path = write(dir.path(), "x", &bytes, gz);
            let arr = read_idx(&path, Some(IMAGES_MAGIC)).unwrap();
            assert_eq!(arr.dims(), &[3, 4, 5]);
            assert_eq!(arr.len(), 3);
            assert_eq!(arr.data(), pixels.as_slice());
            // Generic reading accepts any rank.
            assert_eq!(read_idx(&path, None).unwrap(), arr);
        }
    }

    #[test]
    fn gzip_is_detected_by_content_not_name() {
        let dir = tempfile::tempdir().unwrap();
        let bytes = idx_bytes(LABELS_MAGIC, &[4], &[1, 2, 3, 4]);
        let path = dir.path().join("labels-without-suffix");
        std::fs::write(&path, gzip(&bytes)).unwrap();
        let arr = read_idx(&path, Some(LABELS_MAGIC)).unwrap();
        assert_eq!(arr.data(), &[1, 2, 3, 4]);
    }

    #[test]
    fn wrong_magic_names_file_and_numbers() {
        let dir = tempfile::tempdir().unwrap();
        let bytes = idx_bytes(LABELS_MAGIC, &[2], &[0, 1]);
        for gz in [false, true] {
            let path = write(dir.path(), "labels", &bytes, gz);
            let err = read_idx(&path, Some(IMAGES_MAGIC)).unwrap_err();
            assert!(matches!(err, Error::BadMagic { found: 0x801, .. }), "{err}");
            let msg = err.to_string();
            assert!(msg.contains(&path.display().to_string()), "{msg}");
            assert!(msg.contains("0x00000801") && msg.contains("0x00000803"), "{msg}");
        }
    }

    #[test]
    fn non_idx_bytes_are_rejected() {
        let dir = tempfile::tempdir().unwrap();
        let path = write(dir.path(), "text", b"hello world, not an idx file", false);
        let err = read_idx(&path, None).unwrap_err();
        assert!(matches!(err, Error::BadMagic { .. }), "{err}");
        let path = write(dir.path(), "floats", &idx_bytes(0x0d01, &[1], &[0; 4]), false);
        let err = read_idx(&path, None).unwrap_err();
        assert!(
            matches!(err, Error::UnsupportedIdxType { type_code: 0x0d, .. }),
            "{err}"
        );
    }

    #[test]
    fn truncated_header_and_payload() {
        let dir = tempfile::tempdir().unwrap();
        let full = idx_bytes(IMAGES_MAGIC, &[2, 3, 3], &images(2, 3, 3));
        for gz in [false, true] {
            // Cut inside the magic, inside the dimensions, inside the payload.
            for (cut, part) in [(2, "header"), (9, "header"), (full.len() - 1, "payload")] {
                let path = write(dir.path(), "cut", &full[..cut], gz);
                let err = read_idx(&path, Some(IMAGES_MAGIC)).unwrap_err();
                match &err {
                    Error::Truncated { part: p, path: ep, .. } => {
                        assert_eq!(*p, part, "{err}");
                        assert_eq!(ep, &path);
                    }
                    other => panic!("cut at {cut} (gz {gz}): {other}"),
                }
            }
        }
        let path = write(dir.path(), "cut", &full[..full.len() - 1], false);
        let msg = read_idx(&path, None).unwrap_err().to_string();
        assert!(msg.contains("expected 18 bytes, found 17"), "{msg}");
    }

    #[test]
    fn trailing_bytes_are_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let mut bytes = idx_bytes(LABELS_MAGIC, &[3], &[1, 2, 3]);
        bytes.extend_from_slice(&[9, 9]);
        let path = write(dir.path(), "raw", &bytes, false);
        let err = read_idx(&path, None).unwrap_err();
        assert!(
            matches!(
                err,
                Error::TrailingBytes {
                    expected: 3,
                    extra: 2,
                    ..
                }
            ),
            "{err}"
        );
        let path = write(dir.path(), "raw", &bytes, true);
        let err = read_idx(&path, None).unwrap_err();
        // Reading stops one byte past the claim, so gzip reports "at least one".
        assert!(
            matches!(
                err,
                Error::TrailingBytes {
                    expected: 3,
                    extra: 1,
                    ..
                }
            ),
            "{err}"
        );
    }

    #[test]
    fn oversized_header_fails_fast_without_allocating() {
        // 4e9 images of 28×28 claimed in a file of a few bytes.
        let dir = tempfile::tempdir().unwrap();
        let bytes = idx_bytes(IMAGES_MAGIC, &[4_000_000_000, 28, 28], &images(2, 28, 28));
        for gz in [false, true] {
            let path = write(dir.path(), "huge", &bytes, gz);
            let start = Instant::now();
            let err = read_idx(&path, Some(IMAGES_MAGIC)).unwrap_err();
            assert!(start.elapsed().as_secs_f64() < 1.0);
            assert!(matches!(err, Error::Oversized { .. }), "{err}");
            assert!(err.to_string().contains("4000000000"), "{err}");
        }
        // Under the global cap but far more than a small gzip file can hold:
        // 100 × 1000 × 1000 = 1e8 bytes from a file of about 100 bytes.
        let bytes = idx_bytes(IMAGES_MAGIC, &[100, 1000, 1000], &[7; 50]);
        let path = write(dir.path(), "ratio", &bytes, true);
        let err = read_idx(&path, Some(IMAGES_MAGIC)).unwrap_err();
        assert!(
            matches!(
                err,
                Error::Oversized {
                    claimed: 100_000_000,
                    ..
                }
            ),
            "{err}"
        );
        assert!(err.to_string().contains("gzip"), "{err}");
        // The raw file is rejected by the exact length check instead.
        let path = write(dir.path(), "ratio", &bytes, false);
        let err = read_idx(&path, Some(IMAGES_MAGIC)).unwrap_err();
        assert!(matches!(err, Error::Truncated { found: 50, .. }), "{err}");
    }

    #[test]
    fn corrupt_gzip_is_an_io_error_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let mut gz = gzip(&idx_bytes(LABELS_MAGIC, &[200], &[3; 200]));
        // Break the CRC in the trailer.
        let n = gz.len();
        gz[n - 6] ^= 0xff;
        let path = dir.path().join("bad.gz");
        std::fs::write(&path, gz).unwrap();
        let err = read_idx(&path, None).unwrap_err();
        assert!(matches!(err, Error::Io { op: "decompress", .. }), "{err}");
        assert!(err.to_string().contains("bad.gz"), "{err}");
    }

    #[test]
    fn missing_file_is_an_io_error() {
        let dir = tempfile::tempdir().unwrap();
        let err = read_idx(&dir.path().join("nope"), None).unwrap_err();
        assert!(matches!(err, Error::Io { op: "open", .. }), "{err}");
    }

    #[test]
    fn zero_rank_is_rejected() {
        let dir = tempfile::tempdir().unwrap();
        let path = write(dir.path(), "scalar", &idx_bytes(0x800, &[], &[5]), false);
        let err = read_idx(&path, None).unwrap_err();
        assert!(matches!(err, Error::BadDims { .. }), "{err}");
    }

    /// `n` images of `h × w` whose pixels are `images(n, h, w) / 255` as `f32`.
    fn pixel_tensor(bytes: &[u8], shape: &[usize]) -> Tensor {
        let values: Vec<f32> = bytes.iter().map(|&b| f32::from(b) / 255.0).collect();
        Tensor::from_vec(values, shape, &candle::Device::Cpu).unwrap()
    }

    #[test]
    fn written_images_read_back_byte_for_byte() {
        let dir = tempfile::tempdir().unwrap();
        let pixels = images(3, 28, 28);
        for gz in [false, true] {
            let name = if gz { "x.gz" } else { "x" };
            let path = dir.path().join(name);
            // The three accepted layouts of the same images give the same file.
            let mut files = Vec::new();
            for shape in [&[3, 784][..], &[3, 28, 28], &[3, 1, 28, 28]] {
                write_idx_images(&path, &pixel_tensor(&pixels, shape)).unwrap();
                files.push(std::fs::read(&path).unwrap());
            }
            assert!(files.iter().all(|f| f == &files[0]));
            assert_eq!(files[0].starts_with(&[0x1f, 0x8b]), gz);
            let arr = read_idx(&path, Some(IMAGES_MAGIC)).unwrap();
            assert_eq!(arr.dims(), &[3, 28, 28]);
            assert_eq!(arr.data(), pixels.as_slice());
            let dir = path.parent().unwrap();
            let temporary = std::fs::read_dir(dir).unwrap().filter_map(|e| e.ok());
            assert!(
                !temporary
                    .into_iter()
                    .any(|e| deepgen_core::checkpoint::is_temporary(&e.path()))
            );
        }
    }

    #[test]
    fn written_images_load_as_mnist_and_write_back_identically() {
        let dir = tempfile::tempdir().unwrap();
        write_split(dir.path(), "t10k", 5, 28, 28, true);
        let images_path = dir.path().join("t10k-images-idx3-ubyte.gz");
        let labels_path = dir.path().join("t10k-labels-idx1-ubyte.gz");
        let (xs, _) = crate::load_images_and_labels(&images_path, &labels_path).unwrap();
        let out = dir.path().join("samples-idx3-ubyte.gz");
        write_idx_images(&out, &xs).unwrap();
        assert_eq!(read_idx(&out, None).unwrap(), read_idx(&images_path, None).unwrap());
        let (again, _) = crate::load_images_and_labels(&out, &labels_path).unwrap();
        let (a, b): (Vec<f32>, Vec<f32>) = (
            xs.flatten_all().unwrap().to_vec1().unwrap(),
            again.flatten_all().unwrap().to_vec1().unwrap(),
        );
        assert_eq!(a, b);
    }

    #[test]
    fn writer_clamps_rounds_and_keeps_any_side() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("odd");
        let values = [-0.5f32, 0.0, 0.4 / 255.0, 0.6 / 255.0, 0.5, 1.0, 7.0];
        let xs = Tensor::from_slice(&values, (1, 1, 7), &candle::Device::Cpu).unwrap();
        write_idx_images(&path, &xs.to_dtype(DType::F64).unwrap()).unwrap();
        let arr = read_idx(&path, Some(IMAGES_MAGIC)).unwrap();
        assert_eq!(arr.dims(), &[1, 1, 7]);
        assert_eq!(arr.data(), &[0, 0, 0, 1, 128, 255, 255]);
    }

    #[test]
    fn bad_images_are_errors_and_write_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let dev = candle::Device::Cpu;
        let path = dir.path().join("bad.gz");
        let zeros = |shape: &[usize]| Tensor::zeros(shape, DType::F32, &dev).unwrap();
        let mut nan = vec![0.5f32; 2 * 4 * 4];
        nan[21] = f32::NAN;
        let nan = Tensor::from_vec(nan, (2, 4, 4), &dev).unwrap();
        let inf = Tensor::from_vec(vec![0.0, f32::INFINITY], (1, 1, 2), &dev).unwrap();
        let cases = [
            (zeros(&[0, 784]), "at least one image"),
            (zeros(&[0, 28, 28]), "at least one image"),
            (zeros(&[2, 0, 28]), "at least one image"),
            (zeros(&[784]), "[n, h, w]"),
            (zeros(&[2, 100]), "[n, 784]"),
            (zeros(&[2, 3, 28, 28]), "[n, 1, h, w]"),
            (zeros(&[1, 1, 1, 28, 28]), "[n, h, w]"),
            (Tensor::zeros((2, 4, 4), DType::U8, &dev).unwrap(), "floats"),
            (nan, "NaN at flat index 21"),
            (inf, "inf at flat index 1"),
        ];
        for (xs, needle) in cases {
            let err = write_idx_images(&path, &xs).unwrap_err();
            assert!(
                matches!(err, Error::BadShape { .. } | Error::InvalidArgument { .. }),
                "{err}"
            );
            assert!(err.to_string().contains(needle), "{err}");
        }
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
        // An unwritable destination is an error naming it, and leaves nothing.
        let missing = dir.path().join("no-such-dir").join("x");
        let err = write_idx_images(&missing, &zeros(&[1, 2, 2])).unwrap_err();
        assert!(err.to_string().contains("no-such-dir"), "{err}");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// Any bytes, shapes, layouts and compression: writing `b / 255`
        /// (jittered by less than half a level) reads back as `b`.
        #[test]
        fn prop_idx_round_trip(
            (n, h, w, bytes) in (1usize..5, 1usize..7, 1usize..7).prop_flat_map(|(n, h, w)| {
                (Just(n), Just(h), Just(w), prop::collection::vec(any::<u8>(), n * h * w))
            }),
            jitter in -0.45f32..0.45,
            with_channel: bool,
            gz: bool,
        ) {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join(if gz { "p.gz" } else { "p" });
            let values: Vec<f32> = bytes.iter().map(|&b| (f32::from(b) + jitter) / 255.0).collect();
            let shape = if with_channel { vec![n, 1, h, w] } else { vec![n, h, w] };
            let xs = Tensor::from_vec(values, shape, &candle::Device::Cpu).unwrap();
            write_idx_images(&path, &xs).unwrap();
            let arr = read_idx(&path, Some(IMAGES_MAGIC)).unwrap();
            prop_assert_eq!(arr.dims(), &[n, h, w]);
            prop_assert_eq!(arr.data(), bytes.as_slice());
        }
    }
}
