//! The CPU building blocks of the convolutions: `im2col`, its adjoint
//! `col2im`, and a checked wrapper around the `gemm` crate.
//!
//! A convolution reads an *image* `[C, H, W]` through a *grid* of
//! `out_h × out_w` kernel positions. For grid position `(oy, ox)` and kernel
//! tap `(c, ki, kj)` the image pixel read is
//!
//! ```text
//! iy = oy·stride − padding + ki·dilation,   ix = ox·stride − padding + kj·dilation
//! ```
//!
//! (zero when it falls outside the image). `im2col` lays those reads out as
//! the column matrix `cols[(c, ki, kj), (oy, ox)]` of
//! `C·kh·kw` rows and `out_h·out_w` columns, so that a convolution becomes one
//! matrix product `W · cols` with the kernel viewed as a `[c_out, C·kh·kw]`
//! matrix. `col2im` is the adjoint (transpose) of `im2col`: it adds every
//! column entry back onto the pixel it was read from, so
//! `⟨im2col(x), c⟩ = ⟨x, col2im(c)⟩`.
//!
//! Both work on a band of grid rows `oy0..oy1` at a time, so the column
//! matrix of a band stays in the L2 cache while `gemm` consumes it.
//!
//! Two ways to fill it. Stride-1 convolutions on wide images copy whole
//! runs of an image row per column-matrix row. Strided (and, for `im2col`,
//! narrow) grids
//! (DCGAN's 4×4 stride-2 layers on 7- and 14-wide grids, a UNet's lowest
//! levels) would copy runs of 7–14 values, each with its own bounds and
//! padding arithmetic; there a table of source offsets per kernel tap,
//! built once per band, drives a plain gather (a scatter-add for `col2im`)
//! over the whole band, with padding read from (or added to) one spare zero
//! slot after the image plane.

use super::simd::vectorized;
use candle::WithDType;
use gemm::Parallelism;

/// The sizes of a convolution, seen from its image and its grid.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Geometry {
    /// Channels `C` of the image.
    pub channels: usize,
    /// Image height `H`.
    pub height: usize,
    /// Image width `W`.
    pub width: usize,
    /// Kernel height `kh`.
    pub kernel_h: usize,
    /// Kernel width `kw`.
    pub kernel_w: usize,
    /// Grid height (the convolution's output height).
    pub out_h: usize,
    /// Grid width (the convolution's output width).
    pub out_w: usize,
    /// Stride between grid positions, in image pixels.
    pub stride: usize,
    /// Zero padding on every side of the image.
    pub padding: usize,
    /// Spacing between kernel taps, in image pixels.
    pub dilation: usize,
}

impl Geometry {
    /// Rows of the column matrix, `C·kh·kw`.
    pub fn col_rows(&self) -> usize {
        self.channels * self.kernel_h * self.kernel_w
    }

    /// Grid positions, `out_h·out_w`.
    pub fn grid_len(&self) -> usize {
        self.out_h * self.out_w
    }

    /// Pixels of one image, `C·H·W`.
    pub fn image_len(&self) -> usize {
        self.channels * self.height * self.width
    }

    /// The grid columns `ox` whose tap at kernel column `kj` lands inside the
    /// image: `0 ≤ ox·s − p + kj·d < W` ⇔ `lo ≤ ox < hi`.
    fn valid_x(&self, kj: usize) -> (usize, usize) {
        let offset = kj * self.dilation;
        // ox·s ≥ p − offset.
        let lo = if offset >= self.padding {
            0
        } else {
            (self.padding - offset).div_ceil(self.stride)
        };
        // ox·s < W + p − offset.
        let limit = self.width + self.padding;
        let hi = if limit > offset {
            (limit - offset).div_ceil(self.stride)
        } else {
            0
        };
        (lo.min(self.out_w), hi.clamp(lo.min(self.out_w), self.out_w))
    }

    /// The image row read by grid row `oy` at kernel row `ki`, if inside.
    fn image_row(&self, oy: usize, ki: usize) -> Option<usize> {
        (oy * self.stride + ki * self.dilation)
            .checked_sub(self.padding)
            .filter(|&iy| iy < self.height)
    }

    /// Whether a tap's reads over consecutive grid rows are one contiguous
    /// run of the image, shifted by a constant: stride and dilation 1 and a
    /// grid as wide as the image ("same" padding, `kw = 2p + 1`). Then
    /// [`im2col`] copies and [`col2im`] adds whole bands at once instead of
    /// one image row (7–28 values, mostly the vector loop's scalar tail) at
    /// a time.
    fn runs_flat(&self) -> bool {
        self.stride == 1 && self.dilation == 1 && self.out_w == self.width && self.padding < self.width.max(1)
    }

    /// The grid rows of `oy0..oy1` whose tap at kernel row `ki` reads inside
    /// the image (`0 ≤ oy + ki − p < H`, stride and dilation 1), as a range.
    fn valid_rows(&self, ki: usize, (oy0, oy1): (usize, usize)) -> (usize, usize) {
        let a = oy0.max(self.padding.saturating_sub(ki));
        let b = oy1.min((self.height + self.padding).saturating_sub(ki));
        (a, b.max(a))
    }

    /// Whether [`im2col`] gathers through the offset table rather than
    /// copying row runs: for strided grids and narrow ones. Measured here
    /// on 16 images (f32, ms, gather vs rows): 64 ch 14→7 k4 s2 0.36 vs
    /// 1.27; 64 ch 7×7 k3 0.20 vs 0.55; 64 ch 14×14 k3 1.05 vs 1.13;
    /// 32 ch 28×28 k3 2.3 vs 1.35.
    fn gathers(&self) -> bool {
        self.stride > 1 || self.out_w < 12
    }

    /// Whether [`col2im`] scatters through the offset table: for strided
    /// grids only (64 ch 14→7 k4 s2: 0.72 vs 0.97 ms; stride 1 at 7×7
    /// 0.40 vs 0.39, at 14×14 1.43 vs 1.00).
    fn scatters(&self) -> bool {
        self.stride > 1
    }

    /// For kernel tap `t = ki·kw + kj` and band position `j`, entry
    /// `t·band + j` is the offset within a channel plane of the pixel read,
    /// or `H·W` (the spare zero slot) where it falls in the padding.
    fn tap_offsets(&self, oy0: usize, oy1: usize) -> Vec<u32> {
        let band = (oy1 - oy0) * self.out_w;
        let plane = self.height * self.width;
        let mut offsets = Vec::with_capacity(self.kernel_h * self.kernel_w * band);
        for ki in 0..self.kernel_h {
            for kj in 0..self.kernel_w {
                let (lo, hi) = self.valid_x(kj);
                for oy in oy0..oy1 {
                    let row = self.image_row(oy, ki);
                    for ox in 0..self.out_w {
                        let offset = match row {
                            Some(iy) if (lo..hi).contains(&ox) => {
                                iy * self.width + ox * self.stride + kj * self.dilation - self.padding
                            }
                            _ => plane,
                        };
                        offsets.push(offset as u32);
                    }
                }
            }
        }
        // The gather and scatter index a `plane + 1` buffer unchecked.
        assert!(plane <= u32::MAX as usize && offsets.iter().all(|&o| o as usize <= plane));
        offsets
    }

    /// The band length `(oy1 − oy0)·out_w` after checking that `count`
    /// images and their column matrix (row stride `ld`) fit the slices.
    ///
    /// # Panics
    /// If they do not (an internal invariant: the public ops check shapes).
    fn check_band(
        &self,
        images_len: usize,
        count: usize,
        (oy0, oy1): (usize, usize),
        cols_len: usize,
        ld: usize,
    ) -> usize {
        let band = (oy1 - oy0) * self.out_w;
        assert!(
            images_len >= count * self.image_len()
                && count * band <= ld
                && (count == 0 || cols_len >= (self.col_rows() - 1) * ld + count * band)
        );
        band
    }

    /// How many grid rows make a band whose column matrix holds about
    /// `target` elements (at least one row).
    pub fn band_rows(&self, target: usize) -> usize {
        (target / (self.col_rows() * self.out_w).max(1)).clamp(1, self.out_h.max(1))
    }
}

/// Writes the column matrices of grid rows `oy0..oy1` of the first `count`
/// images (`[C, H, W]` each, contiguous) of `images` side by side into
/// `cols`: `C·kh·kw` rows, row `r` starting at `r·ld`, image `j`'s
/// `band = (oy1 − oy0)·out_w` entries at columns `j·band..(j + 1)·band`.
///
/// # Panics
/// If a slice is shorter than the geometry says (an internal invariant: the
/// public ops check shapes first).
pub(crate) fn im2col<T: WithDType>(
    g: &Geometry,
    images: &[T],
    count: usize,
    (oy0, oy1): (usize, usize),
    cols: &mut [T],
    ld: usize,
) {
    let band = g.check_band(images.len(), count, (oy0, oy1), cols.len(), ld);
    vectorized(
        #[inline(always)]
        || {
            if g.runs_flat() {
                for j in 0..count {
                    im2col_flat(g, &images[j * g.image_len()..], oy0, oy1, &mut cols[j * band..], ld);
                }
            } else if g.gathers() {
                im2col_gather(g, images, count, oy0, oy1, cols, ld);
            } else {
                for j in 0..count {
                    im2col_rows(g, &images[j * g.image_len()..], oy0, oy1, &mut cols[j * band..], ld);
                }
            }
        },
    )
}

/// The part of one tap's column-matrix row that [`Geometry::runs_flat`]
/// treats as one run: grid rows `a..b` (those reading inside the image)
/// start at `dst` in the row; the image index of column-matrix position
/// `k` of the run is `k + src`, which is negative or past the plane only
/// for padding taps at the run's ends (clipped to `skip..len`).
struct FlatRun {
    dst: usize,
    len: usize,
    src: isize,
    skip: usize,
    keep: usize,
}

impl Geometry {
    /// The [`FlatRun`] of tap `(ki, kj)` for grid rows `oy0..oy1`, or `None`
    /// when no grid row reads inside the image.
    fn flat_run(&self, ki: usize, kj: usize, (oy0, oy1): (usize, usize)) -> Option<FlatRun> {
        let (a, b) = self.valid_rows(ki, (oy0, oy1));
        if a >= b {
            return None;
        }
        let w = self.width as isize;
        let len = (b - a) * self.out_w;
        // iy·W + ix = (oy + ki − p)·W + ox + kj − p for grid position (oy, ox).
        let src = (a + ki) as isize * w - self.padding as isize * w + kj as isize - self.padding as isize;
        let plane = (self.height * self.width) as isize;
        let skip = (-src).clamp(0, len as isize) as usize;
        let keep = (plane - src).clamp(skip as isize, len as isize) as usize;
        Some(FlatRun {
            dst: (a - oy0) * self.out_w,
            len,
            src,
            skip,
            keep,
        })
    }
}

/// [`im2col`] for [`Geometry::runs_flat`] grids: per tap, one copy of the
/// run of grid rows that read inside the image, then zeros written over the
/// padding columns (which the copy filled from the neighbouring image row).
#[inline(always)]
fn im2col_flat<T: WithDType>(g: &Geometry, image: &[T], oy0: usize, oy1: usize, cols: &mut [T], ld: usize) {
    let zero = T::zero();
    for_each_tap_row(
        g,
        image,
        (oy1 - oy0) * g.out_w,
        (cols, ld),
        #[inline(always)]
        |src, (ki, kj), dst| {
            let Some(run) = g.flat_run(ki, kj, (oy0, oy1)) else {
                dst.fill(zero);
                return;
            };
            dst[..run.dst].fill(zero);
            dst[run.dst + run.len..].fill(zero);
            let out = &mut dst[run.dst..run.dst + run.len];
            out[..run.skip].fill(zero);
            out[run.keep..].fill(zero);
            let from = (run.src + run.skip as isize) as usize;
            out[run.skip..run.keep].copy_from_slice(&src[from..from + (run.keep - run.skip)]);
            let (lo, hi) = g.valid_x(kj);
            // Column by column, strided: a `fill` per line of one or two
            // values would be a `memset` call each.
            for x in (0..lo).chain(hi..g.out_w) {
                for v in out[x..].iter_mut().step_by(g.out_w) {
                    *v = zero;
                }
            }
        },
    );
}

/// Calls `f(plane, (ki, kj), row)` for every tap `(c, ki, kj)`, with
/// channel `c`'s image plane and the tap's column-matrix row (its first
/// `band` entries; rows `ld` apart in `cols`).
#[inline(always)]
fn for_each_tap_row<T: WithDType>(
    g: &Geometry,
    image: &[T],
    band: usize,
    (cols, ld): (&mut [T], usize),
    mut f: impl FnMut(&[T], (usize, usize), &mut [T]),
) {
    let plane = g.height * g.width;
    for c in 0..g.channels {
        let src = &image[c * plane..(c + 1) * plane];
        for ki in 0..g.kernel_h {
            for kj in 0..g.kernel_w {
                let row = (c * g.kernel_h + ki) * g.kernel_w + kj;
                f(src, (ki, kj), &mut cols[row * ld..row * ld + band]);
            }
        }
    }
}

/// [`col2im`] for [`Geometry::runs_flat`] grids: per tap, one sweep over
/// the run of grid rows that read inside the image, adding zero where a
/// grid column falls in the padding (`x + 0 = x`, so the sum is exactly
/// that of the row-by-row adds).
#[inline(always)]
fn col2im_flat<T: WithDType>(g: &Geometry, cols: &[T], oy0: usize, oy1: usize, image: &mut [T], ld: usize) {
    let band = (oy1 - oy0) * g.out_w;
    let plane = g.height * g.width;
    let zero = T::zero();
    // Per kernel column, which grid columns read inside the image, repeated
    // over the band's rows (`None`: all of them).
    let inside: Vec<Option<Vec<bool>>> = (0..g.kernel_w)
        .map(|kj| {
            let (lo, hi) = g.valid_x(kj);
            (lo > 0 || hi < g.out_w).then(|| (0..band).map(|k| (lo..hi).contains(&(k % g.out_w))).collect())
        })
        .collect();
    for c in 0..g.channels {
        let dst = &mut image[c * plane..(c + 1) * plane];
        for (kj, inside) in inside.iter().enumerate() {
            for ki in 0..g.kernel_h {
                let row = (c * g.kernel_h + ki) * g.kernel_w + kj;
                let Some(run) = g.flat_run(ki, kj, (oy0, oy1)) else {
                    continue;
                };
                let src = &cols[row * ld + run.dst..row * ld + run.dst + run.keep];
                let from = (run.src + run.skip as isize) as usize;
                let to = &mut dst[from..from + (run.keep - run.skip)];
                let src = &src[run.skip..];
                match inside {
                    None => {
                        for (d, &s) in to.iter_mut().zip(src) {
                            *d += s;
                        }
                    }
                    Some(inside) => {
                        let mask = &inside[run.dst + run.skip..run.dst + run.keep];
                        for ((d, &s), &m) in to.iter_mut().zip(src).zip(mask) {
                            *d += if m { s } else { zero };
                        }
                    }
                }
            }
        }
    }
}

/// [`im2col`] by the offset table, built once for all `count` images.
#[inline(always)]
fn im2col_gather<T: WithDType>(
    g: &Geometry,
    images: &[T],
    count: usize,
    oy0: usize,
    oy1: usize,
    cols: &mut [T],
    ld: usize,
) {
    let band = (oy1 - oy0) * g.out_w;
    let (plane, taps) = (g.height * g.width, g.kernel_h * g.kernel_w);
    let offsets = g.tap_offsets(oy0, oy1);
    let mut padded = vec![T::zero(); plane + 1];
    for j in 0..count {
        let image = &images[j * g.image_len()..(j + 1) * g.image_len()];
        for c in 0..g.channels {
            padded[..plane].copy_from_slice(&image[c * plane..(c + 1) * plane]);
            for (t, table) in offsets.chunks_exact(band.max(1)).enumerate().take(taps) {
                let start = (c * taps + t) * ld + j * band;
                for (d, &o) in cols[start..start + band].iter_mut().zip(table) {
                    // SAFETY: every offset is at most `plane` (`tap_offsets`
                    // asserts it) and `padded` holds `plane + 1` values.
                    *d = unsafe { *padded.get_unchecked(o as usize) };
                }
            }
        }
    }
}

/// [`im2col`] by copying runs of image rows.
#[inline(always)]
fn im2col_rows<T: WithDType>(g: &Geometry, image: &[T], oy0: usize, oy1: usize, cols: &mut [T], ld: usize) {
    let zero = T::zero();
    for_each_tap_row(
        g,
        image,
        (oy1 - oy0) * g.out_w,
        (cols, ld),
        #[inline(always)]
        |src, (ki, kj), dst_row| {
            let (lo, hi) = g.valid_x(kj);
            for oy in oy0..oy1 {
                let dst = &mut dst_row[(oy - oy0) * g.out_w..(oy - oy0 + 1) * g.out_w];
                let Some(iy) = g.image_row(oy, ki) else {
                    dst.fill(zero);
                    continue;
                };
                dst[..lo].fill(zero);
                dst[hi..].fill(zero);
                if lo < hi {
                    // ix = ox·s − p + kj·d, non-negative for ox ≥ lo.
                    let ix0 = lo * g.stride + kj * g.dilation - g.padding;
                    let src_row = &src[iy * g.width..(iy + 1) * g.width];
                    if g.stride == 1 {
                        dst[lo..hi].copy_from_slice(&src_row[ix0..ix0 + (hi - lo)]);
                    } else {
                        for (d, s) in dst[lo..hi].iter_mut().zip(src_row[ix0..].iter().step_by(g.stride)) {
                            *d = *s;
                        }
                    }
                }
            }
        },
    );
}

/// Adds the column matrices `cols` (laid out as [`im2col`] writes them) of
/// grid rows `oy0..oy1` back onto the first `count` images of `images`
/// (the adjoint of [`im2col`]); the images are accumulated into, not
/// cleared.
///
/// # Panics
/// If a slice is shorter than the geometry says (internal invariant).
pub(crate) fn col2im<T: WithDType>(
    g: &Geometry,
    cols: &[T],
    count: usize,
    (oy0, oy1): (usize, usize),
    images: &mut [T],
    ld: usize,
) {
    let band = g.check_band(images.len(), count, (oy0, oy1), cols.len(), ld);
    vectorized(
        #[inline(always)]
        || {
            if g.runs_flat() {
                for j in 0..count {
                    col2im_flat(g, &cols[j * band..], oy0, oy1, &mut images[j * g.image_len()..], ld);
                }
            } else if g.scatters() {
                col2im_scatter(g, cols, count, oy0, oy1, images, ld);
            } else {
                for j in 0..count {
                    col2im_rows(g, &cols[j * band..], oy0, oy1, &mut images[j * g.image_len()..], ld);
                }
            }
        },
    )
}

/// [`col2im`] by the offset table (built once for all `count` images):
/// padding taps land in the spare slot.
#[inline(always)]
fn col2im_scatter<T: WithDType>(
    g: &Geometry,
    cols: &[T],
    count: usize,
    oy0: usize,
    oy1: usize,
    images: &mut [T],
    ld: usize,
) {
    let band = (oy1 - oy0) * g.out_w;
    let (plane, taps) = (g.height * g.width, g.kernel_h * g.kernel_w);
    let offsets = g.tap_offsets(oy0, oy1);
    let mut padded = vec![T::zero(); plane + 1];
    for j in 0..count {
        let image = &mut images[j * g.image_len()..(j + 1) * g.image_len()];
        for c in 0..g.channels {
            padded[..plane].copy_from_slice(&image[c * plane..(c + 1) * plane]);
            for (t, table) in offsets.chunks_exact(band.max(1)).enumerate().take(taps) {
                let start = (c * taps + t) * ld + j * band;
                for (&v, &o) in cols[start..start + band].iter().zip(table) {
                    // SAFETY: as in `im2col_gather`.
                    unsafe { *padded.get_unchecked_mut(o as usize) += v };
                }
            }
            image[c * plane..(c + 1) * plane].copy_from_slice(&padded[..plane]);
        }
    }
}

/// [`col2im`] by adding runs of image rows.
#[inline(always)]
fn col2im_rows<T: WithDType>(g: &Geometry, cols: &[T], oy0: usize, oy1: usize, image: &mut [T], ld: usize) {
    let band = (oy1 - oy0) * g.out_w;
    let plane = g.height * g.width;
    for c in 0..g.channels {
        let dst = &mut image[c * plane..(c + 1) * plane];
        for ki in 0..g.kernel_h {
            for kj in 0..g.kernel_w {
                let row = (c * g.kernel_h + ki) * g.kernel_w + kj;
                let src_row = &cols[row * ld..row * ld + band];
                let (lo, hi) = g.valid_x(kj);
                if lo >= hi {
                    continue;
                }
                let ix0 = lo * g.stride + kj * g.dilation - g.padding;
                for oy in oy0..oy1 {
                    let Some(iy) = g.image_row(oy, ki) else { continue };
                    let src = &src_row[(oy - oy0) * g.out_w + lo..(oy - oy0) * g.out_w + hi];
                    let dst_row = &mut dst[iy * g.width..(iy + 1) * g.width];
                    if g.stride == 1 {
                        for (d, s) in dst_row[ix0..ix0 + (hi - lo)].iter_mut().zip(src) {
                            *d += *s;
                        }
                    } else {
                        for (d, s) in dst_row[ix0..].iter_mut().step_by(g.stride).zip(src) {
                            *d += *s;
                        }
                    }
                }
            }
        }
    }
}

/// A matrix view into a slice: element `(i, j)` is `data[i·row_stride + j·col_stride]`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Mat<'a, T> {
    pub data: &'a [T],
    pub row_stride: usize,
    pub col_stride: usize,
}

impl<'a, T> Mat<'a, T> {
    /// A row-major matrix with `cols` columns.
    pub fn rows(data: &'a [T], cols: usize) -> Self {
        Self {
            data,
            row_stride: cols,
            col_stride: 1,
        }
    }

    /// The transpose of a row-major matrix with `cols` columns.
    pub fn transposed(data: &'a [T], cols: usize) -> Self {
        Self {
            data,
            row_stride: 1,
            col_stride: cols,
        }
    }

    /// The transpose of this view (no copy).
    pub fn t(self) -> Self {
        Self {
            data: self.data,
            row_stride: self.col_stride,
            col_stride: self.row_stride,
        }
    }

    fn fits(&self, rows: usize, cols: usize) -> bool {
        rows == 0 || cols == 0 || (rows - 1) * self.row_stride + (cols - 1) * self.col_stride < self.data.len()
    }
}

/// `dst[m×n] = (accumulate ? dst : 0) + lhs[m×k] · rhs[k×n]` with `dst`
/// row-major with row stride `dst_row_stride`.
///
/// # Panics
/// If a view does not hold the matrix it is used as (internal invariant).
#[allow(clippy::too_many_arguments)]
pub(crate) fn matmul<T: WithDType>(
    (m, n, k): (usize, usize, usize),
    dst: &mut [T],
    dst_row_stride: usize,
    accumulate: bool,
    lhs: Mat<'_, T>,
    rhs: Mat<'_, T>,
    parallelism: Parallelism,
) {
    if m == 0 || n == 0 {
        return;
    }
    let dst_view = Mat {
        data: &*dst,
        row_stride: dst_row_stride,
        col_stride: 1,
    };
    assert!(dst_view.fits(m, n) && lhs.fits(m, k) && rhs.fits(k, n));
    // SAFETY: the asserts above keep every element gemm touches inside the
    // three slices; `dst` is borrowed mutably and so aliases neither input.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.as_mut_ptr(),
            1,
            dst_row_stride as isize,
            accumulate,
            lhs.data.as_ptr(),
            lhs.col_stride as isize,
            lhs.row_stride as isize,
            rhs.data.as_ptr(),
            rhs.col_stride as isize,
            rhs.row_stride as isize,
            T::one(),
            T::one(),
            false,
            false,
            false,
            parallelism,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn geometry(
        channels: usize,
        size: usize,
        kernel: usize,
        stride: usize,
        padding: usize,
        dilation: usize,
    ) -> Geometry {
        let out = (size + 2 * padding - dilation * (kernel - 1) - 1) / stride + 1;
        Geometry {
            channels,
            height: size,
            width: size,
            kernel_h: kernel,
            kernel_w: kernel,
            out_h: out,
            out_w: out,
            stride,
            padding,
            dilation,
        }
    }

    /// `im2col` by its definition, one entry at a time.
    fn im2col_naive(g: &Geometry, image: &[f64]) -> Vec<f64> {
        let mut cols = vec![0.0; g.col_rows() * g.grid_len()];
        for c in 0..g.channels {
            for ki in 0..g.kernel_h {
                for kj in 0..g.kernel_w {
                    for oy in 0..g.out_h {
                        for ox in 0..g.out_w {
                            let iy = (oy * g.stride + ki * g.dilation) as isize - g.padding as isize;
                            let ix = (ox * g.stride + kj * g.dilation) as isize - g.padding as isize;
                            if (0..g.height as isize).contains(&iy) && (0..g.width as isize).contains(&ix) {
                                let row = (c * g.kernel_h + ki) * g.kernel_w + kj;
                                cols[row * g.grid_len() + oy * g.out_w + ox] =
                                    image[(c * g.height + iy as usize) * g.width + ix as usize];
                            }
                        }
                    }
                }
            }
        }
        cols
    }

    #[test]
    fn im2col_matches_its_definition_and_col2im_is_its_adjoint() {
        for (channels, size, kernel, stride, padding, dilation) in [
            (1, 5, 3, 1, 0, 1),
            (2, 7, 3, 2, 1, 1),
            (3, 6, 2, 3, 2, 2),
            (2, 4, 4, 1, 2, 1),
            (1, 3, 1, 2, 0, 1),
            (3, 14, 4, 2, 1, 1),
            (2, 40, 3, 1, 1, 1),
            (3, 7, 3, 1, 1, 1),
            (2, 14, 3, 1, 1, 1),
            (1, 6, 5, 1, 2, 1),
            (2, 5, 1, 1, 0, 1),
            (1, 2, 3, 1, 1, 1),
        ] {
            let g = geometry(channels, size, kernel, stride, padding, dilation);
            check_both_ways(&g);
        }
    }

    /// Both implementations (offset table and row runs) against the
    /// definition, in bands, and as adjoints.
    fn check_both_ways(g: &Geometry) {
        type Im2col = fn(&Geometry, &[f64], usize, usize, &mut [f64], usize);
        type Col2im = fn(&Geometry, &[f64], usize, usize, &mut [f64], usize);
        let gather: Im2col = |g, x, oy0, oy1, cols, ld| im2col_gather(g, x, 1, oy0, oy1, cols, ld);
        let scatter: Col2im = |g, cols, oy0, oy1, x, ld| col2im_scatter(g, cols, 1, oy0, oy1, x, ld);
        let mut ways: Vec<(Im2col, Col2im)> = vec![(gather, scatter), (im2col_rows, col2im_rows)];
        if g.runs_flat() {
            ways.push((im2col_flat, col2im_flat));
        }
        for (im2col, col2im) in ways {
            let g = *g;
            let image: Vec<f64> = (0..g.image_len()).map(|i| (i as f64 * 0.37).sin()).collect();
            let expected = im2col_naive(&g, &image);
            // Whole grid at once and in bands of one row must agree.
            let mut cols = vec![f64::NAN; expected.len()];
            im2col(&g, &image, 0, g.out_h, &mut cols, g.grid_len());
            assert_eq!(cols, expected, "{g:?}");
            for oy in 0..g.out_h {
                let mut band = vec![f64::NAN; g.col_rows() * g.out_w];
                im2col(&g, &image, oy, oy + 1, &mut band, g.out_w);
                for row in 0..g.col_rows() {
                    let whole = &expected[row * g.grid_len() + oy * g.out_w..][..g.out_w];
                    assert_eq!(&band[row * g.out_w..][..g.out_w], whole);
                }
            }
            // ⟨im2col(x), c⟩ = ⟨x, col2im(c)⟩.
            let c: Vec<f64> = (0..expected.len()).map(|i| (i as f64 * 0.11).cos()).collect();
            let mut back = vec![0.0; g.image_len()];
            col2im(&g, &c, 0, g.out_h, &mut back, g.grid_len());
            let lhs: f64 = expected.iter().zip(&c).map(|(a, b)| a * b).sum();
            let rhs: f64 = image.iter().zip(&back).map(|(a, b)| a * b).sum();
            assert!((lhs - rhs).abs() < 1e-9 * lhs.abs().max(1.0), "{lhs} vs {rhs}");
            // col2im accumulates: a second pass doubles the result, in bands too.
            let mut twice = back.clone();
            for oy in 0..g.out_h {
                let band: Vec<f64> = (0..g.col_rows())
                    .flat_map(|row| c[row * g.grid_len() + oy * g.out_w..][..g.out_w].to_vec())
                    .collect();
                col2im(&g, &band, oy, oy + 1, &mut twice, g.out_w);
            }
            for (t, b) in twice.iter().zip(&back) {
                assert!((t - 2.0 * b).abs() < 1e-12, "{g:?}");
            }
        }
    }

    #[test]
    fn matmul_handles_transposed_views_and_accumulation() {
        // A = [[1, 2], [3, 4]], B = [[5, 6], [7, 8]]: A·B = [[19, 22], [43, 50]], Aᵀ·B = [[26, 30], [38, 44]].
        let a = [1.0f32, 2.0, 3.0, 4.0];
        let b = [5.0f32, 6.0, 7.0, 8.0];
        let mut dst = [0.0f32; 4];
        // The second product accumulates onto the first: A·B + Aᵀ·B.
        for (accumulate, lhs, expected) in [
            (false, Mat::rows(&a, 2), [19.0, 22.0, 43.0, 50.0]),
            (true, Mat::transposed(&a, 2), [45.0, 52.0, 81.0, 94.0]),
        ] {
            matmul(
                (2, 2, 2),
                &mut dst,
                2,
                accumulate,
                lhs,
                Mat::rows(&b, 2),
                Parallelism::None,
            );
            assert_eq!(dst, expected);
        }
    }
}
