//! Stride-2, 4×4, padding-1 convolutions — DCGAN's down- and up-sampling
//! layers — by Winograd's minimal filtering `F(7×7, 2×2)`, with a third of
//! direct convolution's multiplications.
//!
//! **Space to depth.** Split the zero-padded image `x̄` into its four
//! sub-grids of even/odd rows and columns, `s[(c, a, b), I, J] =
//! x̄[c, 2I + a, 2J + b]`, and the kernel likewise, `w[o, (c, a, b), u, v] =
//! W[o, c, 2u + a, 2v + b]`. Then the convolution is a stride-1 correlation
//! with a 2×2 kernel over `4C` channels:
//!
//! ```text
//! y[o, i, j] = Σ_{c, ky, kx} W[o, c, ky, kx] x̄[c, 2i + ky, 2j + kx] = Σ_{C, u, v} w[o, C, u, v] s[C, i + u, j + v]
//! ```
//!
//! **Minimal filtering.** An 8×8 tile `d` of `s` and a 2×2 kernel `g` give
//! a 7×7 tile of `y` as `Aᵀ [(G g Gᵀ) ⊙ (Bᵀ d B)] A` (Toom–Cook at the
//! points 0, ±1, ±2, ±½ and ∞; `A`, `G`, `B` below): 64 products instead
//! of 196. Summed over the channels, the 64 element-wise products are 64
//! matrix products `M_p = U_p · V_p` (`U_p` `[c_out, 4C]` from the kernels,
//! `V_p` `[4C, tiles]` from the image tiles), which is where the time goes.
//! A 14×14 image (DCGAN's 64 → 128 layer) is one tile per image.
//!
//! **The three products of `conv`.** The map `d ↦ y` is linear, so its
//! adjoint (a transposed convolution, and the input gradient of a
//! convolution) runs the same steps transposed,
//! `∂d = B [Σ_o U ⊙ (A ∂y Aᵀ)] Bᵀ`, and the kernel gradient is
//! `∂g = Gᵀ [Σ_tiles (A ∂y Aᵀ) ⊙ (Bᵀ d B)] G` — both again 64 matrix products.
//! The kernel gradient's two transforms are the other products' own: a
//! layer's backward pass computes each once ([`Layer`]; `conv.rs` keeps the
//! forward pass's).
//!
//! In `f32` the transforms cost about 1e-5 of relative accuracy (tested
//! against a direct `f64` sum); the points ±½ keep the transform's entries
//! within 2⁶ (with 3 in place of −½ it is 4e-4).

use super::im2col::{Geometry, Mat, matmul};
use super::{for_each_chunk, simd};
use candle::WithDType;
use gemm::Parallelism;
use rayon::prelude::*;

/// Output tile side.
const OUT: usize = 7;
/// Input tile side in the space-to-depth grid, `OUT + 2 − 1`.
const TILE: usize = 8;
/// Positions of a transformed tile, `TILE²`: the number of matrix products.
const POS: usize = TILE * TILE;
/// Fewer channels on either side than this and direct convolution wins.
const MIN_CHANNELS: usize = 8;
/// Below this many multiply-adds the work stays on the calling thread.
const PARALLEL_MIN_WORK: usize = 1 << 20;

/// The finite interpolation points; the eighth is ∞.
const POINTS: [f64; 7] = [0.0, 1.0, -1.0, 2.0, -2.0, 0.5, -0.5];

/// Whether a convolution geometry is one this module computes: kernel 4×4,
/// stride 2, padding 1, no dilation, an even image (so the output is half
/// its size) and at least [`MIN_CHANNELS`] channels on both sides.
pub(crate) fn applies(g: &Geometry, m: usize) -> bool {
    (g.kernel_h, g.kernel_w, g.stride, g.padding, g.dilation) == (4, 4, 2, 1, 1)
        && g.height.is_multiple_of(2)
        && g.width.is_multiple_of(2)
        && (g.out_h * 2, g.out_w * 2) == (g.height, g.width)
        && g.channels >= MIN_CHANNELS
        && m >= MIN_CHANNELS
}

/// The Toom–Cook matrices of `F(7, 2)` in `f64`: `y = Aᵀ[(G g) ⊙ (Bᵀ d)]`
/// computes `y_i = Σ_j d_{i+j} g_j` for `d` of 8 and `g` of 2 values.
struct Transforms {
    /// `Aᵀ` `[7, 8]`: `p_kⁱ`, and `[i = 6]` for ∞.
    at: [[f64; TILE]; OUT],
    /// `G` `[8, 2]`: `p_kʲ / Π_{q≠k}(p_k − p_q)`, and `(0, 1)` for ∞.
    g: [[f64; 2]; TILE],
    /// `Bᵀ` `[8, 8]`: the coefficients of `Π_q (x − p_q) / (x − p_k)`, and of
    /// `Π_q (x − p_q)` for ∞.
    bt: [[f64; TILE]; TILE],
}

impl Transforms {
    fn new() -> Self {
        // Π_q (x − p_q), ascending coefficients.
        let mut poly = vec![1.0];
        for &p in &POINTS {
            let mut next = vec![0.0; poly.len() + 1];
            for (i, &c) in poly.iter().enumerate() {
                next[i + 1] += c;
                next[i] -= p * c;
            }
            poly = next;
        }
        let mut at = [[0.0; TILE]; OUT];
        let mut g = [[0.0; 2]; TILE];
        let mut bt = [[0.0; TILE]; TILE];
        for (k, &p) in POINTS.iter().enumerate() {
            for (i, row) in at.iter_mut().enumerate() {
                row[k] = p.powi(i as i32);
            }
            let denominator: f64 = POINTS
                .iter()
                .enumerate()
                .filter(|&(q, _)| q != k)
                .map(|(_, &q)| p - q)
                .product();
            g[k] = [1.0 / denominator, p / denominator];
            // Synthetic division of the product by (x − p).
            let mut carry = 0.0;
            for i in (1..poly.len()).rev() {
                carry = poly[i] + carry * p;
                bt[k][i - 1] = carry;
            }
        }
        at[OUT - 1][TILE - 1] = 1.0;
        g[TILE - 1] = [0.0, 1.0];
        bt[TILE - 1].copy_from_slice(&poly);
        Self { at, g, bt }
    }

    /// The matrices in the working precision, each 8×8 (zero-padded where
    /// a side is 7) for [`sandwich`].
    fn cast<T: WithDType>(&self) -> Coefficients<T> {
        let c = |v: f64| T::from_f64(v);
        let mut at = [[T::zero(); TILE]; TILE];
        let mut a = [[T::zero(); TILE]; TILE];
        for (i, row) in self.at.iter().enumerate() {
            for (r, &v) in row.iter().enumerate() {
                at[i][r] = c(v);
                a[r][i] = c(v);
            }
        }
        let mut b = [[T::zero(); TILE]; TILE];
        for (r, row) in self.bt.iter().enumerate() {
            for (i, &v) in row.iter().enumerate() {
                b[i][r] = c(v);
            }
        }
        Coefficients {
            at,
            a,
            g: self.g.map(|row| row.map(c)),
            bt: self.bt.map(|row| row.map(c)),
            b,
        }
    }
}

/// [`Transforms`] in the working precision, as 8×8 matrices.
struct Coefficients<T> {
    /// `Aᵀ`, an eighth row of zeros.
    at: [[T; TILE]; TILE],
    /// `A`, an eighth column of zeros.
    a: [[T; TILE]; TILE],
    g: [[T; 2]; TILE],
    bt: [[T; TILE]; TILE],
    /// `B`.
    b: [[T; TILE]; TILE],
}

/// Sizes shared by the three products.
#[derive(Clone, Copy, Debug)]
struct Sizes {
    batch: usize,
    /// Image channels `C`; `4C` in the space-to-depth grid.
    c: usize,
    /// Output channels `M`.
    m: usize,
    height: usize,
    width: usize,
    out_h: usize,
    out_w: usize,
    /// Tiles down and across one image.
    tiles_h: usize,
    tiles_w: usize,
}

impl Sizes {
    fn new(g: &Geometry, batch: usize, m: usize) -> Self {
        Self {
            batch,
            c: g.channels,
            m,
            height: g.height,
            width: g.width,
            out_h: g.out_h,
            out_w: g.out_w,
            tiles_h: g.out_h.div_ceil(OUT),
            tiles_w: g.out_w.div_ceil(OUT),
        }
    }

    /// Tiles of the whole batch: the columns of every matrix product.
    fn tiles(&self) -> usize {
        self.batch * self.tiles_h * self.tiles_w
    }

    fn channels_s2d(&self) -> usize {
        4 * self.c
    }

    /// Multiply-adds of the 64 matrix products.
    fn work(&self) -> usize {
        POS * self.m * self.channels_s2d() * self.tiles()
    }

    fn parallel(&self) -> bool {
        self.work() >= PARALLEL_MIN_WORK
    }
}

/// Tiles transformed together, one per SIMD lane.
const LANES: usize = 16;

/// `LANES` tiles of 8×8, lane innermost.
type Block<T> = [[[T; LANES]; TILE]; TILE];

/// A 16×16 window of a padded image plane, two tiles' rows and columns.
type Window<T> = [[T; 2 * TILE]; 2 * TILE];

/// A zeroed [`Block`].
fn zero_block<T: WithDType>() -> Block<T> {
    [[[T::zero(); LANES]; TILE]; TILE]
}

/// The blocks a transform works in, one set per task, written in place:
/// returned by value, each 4 KiB block was a `memcpy` call in the
/// AVX-512 build.
struct Blocks<T> {
    input: Block<T>,
    half: Block<T>,
    output: Block<T>,
}

impl<T: WithDType> Blocks<T> {
    fn new() -> Self {
        Self {
            input: zero_block(),
            half: zero_block(),
            output: zero_block(),
        }
    }

    /// `output[r][s] = Σ_{i, j} left[r][i] · input[i][j] · right[s][j]` for
    /// every lane: each transform is one such sandwich of 8×8 matrices
    /// (zero-padded where a side is 7), zero coefficients skipped, each sum
    /// held in one register.
    #[inline(always)]
    fn sandwich(&mut self, left: &[[T; TILE]; TILE], right: &[[T; TILE]; TILE]) {
        let (d, t) = (&self.input, &mut self.half);
        for (t_row, coefficients) in t.iter_mut().zip(left) {
            for (j, slot) in t_row.iter_mut().enumerate() {
                *slot = combine(coefficients, |i| &d[i][j]);
            }
        }
        for (out_row, t_row) in self.output.iter_mut().zip(t.iter()) {
            for (slot, coefficients) in out_row.iter_mut().zip(right) {
                *slot = combine(coefficients, |j| &t_row[j]);
            }
        }
    }
}

/// `Σ_i c[i] · v(i)` over lanes, terms with `c[i] = 0` left out.
#[inline(always)]
fn combine<'a, T: WithDType>(c: &[T; TILE], v: impl Fn(usize) -> &'a [T; LANES]) -> [T; LANES] {
    let mut acc = [T::zero(); LANES];
    for (i, &ci) in c.iter().enumerate() {
        if ci == T::zero() {
            continue;
        }
        let x = v(i);
        for l in 0..LANES {
            acc[l] += ci * x[l];
        }
    }
    acc
}

/// `dst[..count] = src[..count]`, a fixed-size copy for a full group.
#[inline(always)]
fn copy_lanes<T: WithDType>(dst: &mut [T], src: &[T], count: usize) {
    if count == LANES {
        let dst: &mut [T; LANES] = (&mut dst[..LANES]).try_into().expect("a full group");
        let src: &[T; LANES] = src[..LANES].try_into().expect("a full group");
        *dst = *src;
    } else {
        dst[..count].copy_from_slice(&src[..count]);
    }
}

/// The 64 values of tile `p` in lanes `first…` of `[64][tiles][cols]`
/// data into `block` (lanes past `cols` keep what they held: no result
/// reads them).
#[inline(always)]
fn lane_block<T: WithDType>(data: &[T], (tiles, cols): (usize, usize), p: usize, first: usize, block: &mut Block<T>) {
    let count = LANES.min(cols - first);
    for (pos, values) in block.iter_mut().flatten().enumerate() {
        copy_lanes(values, &data[(pos * tiles + p) * cols + first..], count);
    }
}

/// The kernels' 2×2 taps in space-to-depth form, `[4][M][4C]`: tap
/// `2u + v` holds `w[o, (c, a, b), u, v] = W[o, c, 2u + a, 2v + b]`.
fn kernel_taps<T: WithDType>(kernel: &[T], z: &Sizes) -> Vec<T> {
    let (m, c, cs) = (z.m, z.c, z.channels_s2d());
    let mut taps = vec![T::zero(); 4 * m * cs];
    for o in 0..m {
        for ci in 0..c {
            let w = &kernel[(o * c + ci) * 16..][..16];
            for (a, b) in [(0, 0), (0, 1), (1, 0), (1, 1)] {
                let channel = o * cs + ci * 4 + a * 2 + b;
                for (tap, (u, v)) in [(0, 0), (0, 1), (1, 0), (1, 1)].into_iter().enumerate() {
                    taps[tap * m * cs + channel] = w[(2 * u + a) * 4 + 2 * v + b];
                }
            }
        }
    }
    taps
}

/// The weights `G[r][u] G[s][v]` of the four taps at position `(r, s)`.
#[inline(always)]
fn tap_weights<T: WithDType>(k: &Coefficients<T>, pos: usize) -> [T; 4] {
    let (r, s) = (pos / TILE, pos % TILE);
    let (g0, g1, h0, h1) = (k.g[r][0], k.g[r][1], k.g[s][0], k.g[s][1]);
    [g0 * h0, g0 * h1, g1 * h0, g1 * h1]
}

/// `U_p = G w Gᵀ` at position `p` for every kernel pair into `u` `[M][4C]`:
/// with `w` 2×2, four multiply-adds of the taps per entry.
#[inline(always)]
fn kernel_at<T: WithDType>(taps: &[T], pos: usize, k: &Coefficients<T>, u: &mut [T]) {
    let [c0, c1, c2, c3] = tap_weights(k, pos);
    let n = u.len();
    let (t0, t1, t2, t3) = (&taps[..n], &taps[n..2 * n], &taps[2 * n..3 * n], &taps[3 * n..4 * n]);
    for (i, value) in u.iter_mut().enumerate() {
        *value = c0 * t0[i] + c1 * t1[i] + c2 * t2[i] + c3 * t3[i];
    }
}

/// `(tile row, tile column)` of every tile of one image.
fn image_tiles(z: &Sizes) -> impl Iterator<Item = (usize, usize)> + use<> {
    let tiles_w = z.tiles_w;
    (0..z.tiles_h * tiles_w).map(move |t| (t / tiles_w, t % tiles_w))
}

/// The padded columns `[lo, hi)` of a 16-wide window starting at padded
/// column `start` that hold image pixels (padded column `p` is image column
/// `p − 1`).
#[inline(always)]
fn inside(start: usize, side: usize) -> (usize, usize) {
    (usize::from(start == 0), (side + 1 - start).min(2 * TILE))
}

/// The 16×16 window of the zero-padded image `x̄` (one plane of `z`'s
/// images) that tile `(ti, tj)` reads into `w`: padded rows and columns
/// `14t … 14t + 15`.
#[inline(always)]
fn window<T: WithDType>(x: &[T], z: &Sizes, ti: usize, tj: usize, w: &mut Window<T>) {
    *w = [[T::zero(); 2 * TILE]; 2 * TILE];
    let (y0, x0) = (2 * OUT * ti, 2 * OUT * tj);
    let (rows, cols) = (inside(y0, z.height), inside(x0, z.width));
    if cols.0 < cols.1 {
        for (r, row) in w.iter_mut().enumerate().take(rows.1).skip(rows.0) {
            let line = &x[(y0 + r - 1) * z.width..][..z.width];
            row[cols.0..cols.1].copy_from_slice(&line[x0 + cols.0 - 1..x0 + cols.1 - 1]);
        }
    }
}

/// Adds a 16×16 window of the padded image back into the image plane
/// `x`: the adjoint of [`window`].
#[inline(always)]
fn add_window<T: WithDType>(x: &mut [T], w: &Window<T>, z: &Sizes, ti: usize, tj: usize) {
    let (y0, x0) = (2 * OUT * ti, 2 * OUT * tj);
    let (rows, cols) = (inside(y0, z.height), inside(x0, z.width));
    if cols.0 < cols.1 {
        for (r, row) in w.iter().enumerate().take(rows.1).skip(rows.0) {
            let line = &mut x[(y0 + r - 1) * z.width..][..z.width];
            for (acc, &v) in line[x0 + cols.0 - 1..x0 + cols.1 - 1]
                .iter_mut()
                .zip(&row[cols.0..cols.1])
            {
                *acc += v;
            }
        }
    }
}

/// `V = Bᵀ d B` for every 8×8 tile `d` of every space-to-depth channel of
/// `xs` `[B, C, H, W]`, as `[tiles][64][4C]`; channels are the lanes.
fn input_transform<T: WithDType>(xs: &[T], z: &Sizes, k: &Coefficients<T>) -> Vec<T> {
    let (cs, plane) = (z.channels_s2d(), z.height * z.width);
    let per_image = z.tiles_h * z.tiles_w;
    let mut v = vec![T::zero(); z.tiles() * POS * cs];
    for_each_chunk(
        &mut v,
        per_image * POS * cs,
        z.parallel(),
        #[inline(always)]
        |image, out| {
            let (mut blocks, mut w) = (Blocks::new(), [[T::zero(); 2 * TILE]; 2 * TILE]);
            for (t, (ti, tj)) in image_tiles(z).enumerate() {
                for first in (0..cs).step_by(LANES) {
                    let count = LANES.min(cs - first);
                    // d[r][s] = x̄[c, 2(7ti + r) + a, 2(7tj + s) + b], x̄ padded
                    // by one (lanes past `count` keep stale values, unread).
                    for ci in first / 4..(first + count) / 4 {
                        window(&xs[(image * z.c + ci) * plane..][..plane], z, ti, tj, &mut w);
                        for (a, b) in [(0, 0), (0, 1), (1, 0), (1, 1)] {
                            let l = ci * 4 + a * 2 + b - first;
                            for (r, row) in blocks.input.iter_mut().enumerate() {
                                for (s, value) in row.iter_mut().enumerate() {
                                    value[l] = w[2 * r + a][2 * s + b];
                                }
                            }
                        }
                    }
                    blocks.sandwich(&k.bt, &k.bt);
                    for (pos, values) in blocks.output.iter().flatten().enumerate() {
                        copy_lanes(&mut out[(t * POS + pos) * cs + first..], values, count);
                    }
                }
            }
        },
    );
    v
}

/// `A ∂y Aᵀ` for every 7×7 tile of `us` `[B, M, out_h, out_w]` (zero past
/// the edge), as `[tiles][64][M]`: the adjoint of the output transform.
fn output_gradient_transform<T: WithDType>(us: &[T], z: &Sizes, k: &Coefficients<T>) -> Vec<T> {
    let (m, grid) = (z.m, z.out_h * z.out_w);
    let per_image = z.tiles_h * z.tiles_w;
    let mut dm = vec![T::zero(); z.tiles() * POS * m];
    for_each_chunk(
        &mut dm,
        per_image * POS * m,
        z.parallel(),
        #[inline(always)]
        |image, out| {
            let mut blocks = Blocks::new();
            for (t, (ti, tj)) in image_tiles(z).enumerate() {
                let (rows, cols) = (OUT.min(z.out_h - OUT * ti), OUT.min(z.out_w - OUT * tj));
                for first in (0..m).step_by(LANES) {
                    let count = LANES.min(m - first);
                    // Zero past the image's edge; the eighth row and column
                    // meet zero coefficients of `A` and are never read.
                    let dy = &mut blocks.input;
                    if (rows, cols) != (OUT, OUT) {
                        *dy = zero_block();
                    }
                    for l in 0..count {
                        let u = &us[(image * m + first + l) * grid..][..grid];
                        for (i, row) in dy.iter_mut().take(rows).enumerate() {
                            let line = &u[(OUT * ti + i) * z.out_w + OUT * tj..];
                            for (value, &v) in row.iter_mut().zip(line).take(cols) {
                                value[l] = v;
                            }
                        }
                    }
                    blocks.sandwich(&k.a, &k.a);
                    for (pos, values) in blocks.output.iter().flatten().enumerate() {
                        copy_lanes(&mut out[(t * POS + pos) * m + first..], values, count);
                    }
                }
            }
        },
    );
    dm
}

/// `f(position, output chunk, scratch)` for each `chunk`-sized piece of
/// `dst`, in parallel when asked, with a scratch buffer per worker,
/// compiled for the CPU's widest vectors ([`simd::vectorized`]; give `f`
/// `#[inline(always)]`).
fn for_each_position<T: WithDType>(
    dst: &mut [T],
    chunk: usize,
    parallel: bool,
    scratch_len: usize,
    f: impl Fn(usize, &mut [T], &mut [T]) + Sync + Send,
) {
    if parallel {
        dst.par_chunks_mut(chunk).enumerate().for_each_init(
            || vec![T::zero(); scratch_len],
            |scratch, (pos, out)| {
                simd::vectorized(
                    #[inline(always)]
                    || f(pos, out, scratch),
                )
            },
        );
    } else {
        let mut scratch = vec![T::zero(); scratch_len];
        for (pos, out) in dst.chunks_mut(chunk).enumerate() {
            simd::vectorized(
                #[inline(always)]
                || f(pos, out, &mut scratch),
            );
        }
    }
}

/// The `[tiles][cols]` matrix at position `pos` of `[tiles][64][cols]` data.
fn slab<T>(data: &[T], pos: usize, cols: usize) -> Mat<'_, T> {
    Mat {
        data: &data[pos * cols..],
        row_stride: POS * cols,
        col_stride: 1,
    }
}

/// For each position `p`, `lhs_p · U_pᵀ` (`[tiles, M]`, from `lhs_p` `[tiles,
/// 4C]`) when `transposed`, else `lhs_p · U_p` (`[tiles, 4C]` from `[tiles,
/// M]`), with `U_p` built from the taps into a scratch per worker; as
/// `[64][tiles][·]`.
fn kernel_products<T: WithDType>(taps: &[T], k: &Coefficients<T>, z: &Sizes, lhs: &[T], transposed: bool) -> Vec<T> {
    let (m, cs, tiles) = (z.m, z.channels_s2d(), z.tiles());
    let (cols, inner) = if transposed { (m, cs) } else { (cs, m) };
    let mut dst = vec![T::zero(); POS * tiles * cols];
    for_each_position(
        &mut dst,
        tiles * cols,
        z.parallel(),
        m * cs,
        #[inline(always)]
        |pos, out, u| {
            kernel_at(taps, pos, k, u);
            let u = Mat::rows(u, cs);
            let rhs = if transposed { u.t() } else { u };
            matmul(
                (tiles, cols, inner),
                out,
                cols,
                false,
                slab(lhs, pos, inner),
                rhs,
                Parallelism::None,
            );
        },
    );
    dst
}

/// One layer's sizes and transform matrices: the transforms of its
/// operands ([`Layer::input`], [`Layer::output_gradient`]) and the three
/// products from them. A backward pass that needs both gradients computes
/// each transform once (and the convolution's `V` or the transposed
/// convolution's `A u Aᵀ` comes from the forward pass), instead of once per
/// product.
pub(crate) struct Layer<T> {
    z: Sizes,
    k: Coefficients<T>,
}

impl<T: WithDType> Layer<T> {
    /// A `[B, C, H, W]` ⋆ `[M, C, 4, 4]` → `[B, M, H/2, W/2]` layer of
    /// geometry `g` ([`applies`]).
    pub(crate) fn new(g: &Geometry, batch: usize, m: usize) -> Self {
        Self {
            z: Sizes::new(g, batch, m),
            k: Transforms::new().cast::<T>(),
        }
    }

    /// `V = Bᵀ d B` of every tile of `xs` `[B, C, H, W]`, `[tiles][64][4C]`.
    pub(crate) fn input(&self, xs: &[T]) -> Vec<T> {
        input_transform(xs, &self.z, &self.k)
    }

    /// `A u Aᵀ` of every tile of `us` `[B, M, H/2, W/2]`, `[tiles][64][M]`.
    pub(crate) fn output_gradient(&self, us: &[T]) -> Vec<T> {
        output_gradient_transform(us, &self.z, &self.k)
    }

    /// `y = conv(x, W)` from `v` = [`Layer::input`]`(x)` and `kernel`
    /// `[M, C, 4, 4]`: `[B, M, H/2, W/2]`.
    pub(crate) fn forward(&self, kernel: &[T], v: &[T]) -> Vec<T> {
        let (z, k) = (&self.z, &self.k);
        let (m, tiles) = (z.m, z.tiles());
        let taps = kernel_taps(kernel, z);
        // M_p [tiles, M] = V_p [tiles, 4C] · U_pᵀ, for each position p.
        let product = kernel_products(&taps, k, z, v, true);
        // y tile = Aᵀ M A, cropped to the image; output channels are the lanes.
        let (grid, per_image) = (z.out_h * z.out_w, z.tiles_h * z.tiles_w);
        let mut ys = vec![T::zero(); z.batch * m * grid];
        for_each_chunk(
            &mut ys,
            m * grid,
            z.parallel(),
            #[inline(always)]
            |image, out| {
                let mut blocks = Blocks::new();
                for (t, (ti, tj)) in image_tiles(z).enumerate() {
                    let p = image * per_image + t;
                    for first in (0..m).step_by(LANES) {
                        let count = LANES.min(m - first);
                        lane_block(&product, (tiles, m), p, first, &mut blocks.input);
                        blocks.sandwich(&k.at, &k.at);
                        let y = &blocks.output;
                        for l in 0..count {
                            let plane = &mut out[(first + l) * grid..][..grid];
                            for (i, row) in y.iter().take(OUT.min(z.out_h - OUT * ti)).enumerate() {
                                let line = &mut plane[(OUT * ti + i) * z.out_w + OUT * tj..];
                                for (value, v) in line.iter_mut().zip(row).take(OUT.min(z.out_w - OUT * tj)) {
                                    *value = v[l];
                                }
                            }
                        }
                    }
                }
            },
        );
        ys
    }

    /// The adjoint `convᵀ(u, W)` from `dm` = [`Layer::output_gradient`]`(u)`
    /// and `kernel` `[M, C, 4, 4]`: `[B, C, H, W]` (a transposed
    /// convolution; a convolution's input gradient).
    pub(crate) fn adjoint(&self, kernel: &[T], dm: &[T]) -> Vec<T> {
        let (z, k) = (&self.z, &self.k);
        let (cs, tiles) = (z.channels_s2d(), z.tiles());
        let taps = kernel_taps(kernel, z);
        // ∂V_p [tiles, 4C] = ∂M_p [tiles, M] · U_p, for each position p.
        let dv = kernel_products(&taps, k, z, dm, false);
        // d tile = B ∂V Bᵀ, added into the padded image (tiles overlap by one);
        // space-to-depth channels are the lanes.
        let (plane, per_image) = (z.height * z.width, z.tiles_h * z.tiles_w);
        let mut zs = vec![T::zero(); z.batch * z.c * plane];
        for_each_chunk(
            &mut zs,
            z.c * plane,
            z.parallel(),
            #[inline(always)]
            |image, out| {
                let (mut blocks, mut w) = (Blocks::new(), [[T::zero(); 2 * TILE]; 2 * TILE]);
                for (t, (ti, tj)) in image_tiles(z).enumerate() {
                    let p = image * per_image + t;
                    for first in (0..cs).step_by(LANES) {
                        let count = LANES.min(cs - first);
                        lane_block(&dv, (tiles, cs), p, first, &mut blocks.input);
                        blocks.sandwich(&k.b, &k.b);
                        let d = &blocks.output;
                        // Every entry of `w` is written: 8×8 values in four phases.
                        for ci in first / 4..(first + count) / 4 {
                            for (a, b) in [(0, 0), (0, 1), (1, 0), (1, 1)] {
                                let l = ci * 4 + a * 2 + b - first;
                                for (i, row) in d.iter().enumerate() {
                                    for (j, v) in row.iter().enumerate() {
                                        w[2 * i + a][2 * j + b] = v[l];
                                    }
                                }
                            }
                            add_window(&mut out[ci * plane..][..plane], &w, z, ti, tj);
                        }
                    }
                }
            },
        );
        zs
    }

    /// The kernel gradient `Σ_batch ∂y ⋆ x` from `v` = [`Layer::input`]`(x)`
    /// and `dm` = [`Layer::output_gradient`]`(∂y)`: `[M, C, 4, 4]`.
    pub(crate) fn kernel_grad(&self, v: &[T], dm: &[T]) -> Vec<T> {
        let (z, k) = (&self.z, &self.k);
        let (m, cs, tiles) = (z.m, z.channels_s2d(), z.tiles());
        // ∂U_p [M, 4C] = ∂M_pᵀ · V_p, and ∂w = Gᵀ ∂U G as four taps, summed
        // over the positions of each part.
        let n = m * cs;
        let mut parts = vec![T::zero(); KERNEL_PARTS * 4 * n];
        for_each_position(
            &mut parts,
            4 * n,
            z.parallel(),
            n,
            #[inline(always)]
            |part, taps, du| {
                let per_part = POS / KERNEL_PARTS;
                for pos in part * per_part..(part + 1) * per_part {
                    matmul(
                        (m, cs, tiles),
                        du,
                        cs,
                        false,
                        slab(dm, pos, m).t(),
                        slab(v, pos, cs),
                        Parallelism::None,
                    );
                    for (tap, weight) in tap_weights(k, pos).into_iter().enumerate() {
                        for (acc, &value) in taps[tap * n..][..n].iter_mut().zip(du.iter()) {
                            *acc += weight * value;
                        }
                    }
                }
            },
        );
        let (first, rest) = parts.split_at_mut(4 * n);
        for part in rest.chunks_exact(4 * n) {
            for (acc, &value) in first.iter_mut().zip(part) {
                *acc += value;
            }
        }
        // Back to 4×4 kernels: W[o, c, 2u + a, 2v + b] = w[o, (c, a, b), u, v].
        let mut dw = vec![T::zero(); m * z.c * 16];
        for o in 0..m {
            for channel in 0..cs {
                let (ci, a, b) = (channel / 4, (channel / 2) % 2, channel % 2);
                for (tap, (u, vv)) in [(0, 0), (0, 1), (1, 0), (1, 1)].into_iter().enumerate() {
                    dw[(o * z.c + ci) * 16 + (2 * u + a) * 4 + 2 * vv + b] = first[tap * n + o * cs + channel];
                }
            }
        }
        dw
    }
}

/// Position groups of the kernel gradient, summed in a fixed order so the
/// result does not depend on the scheduling.
const KERNEL_PARTS: usize = 4;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::test_util::max_rel_err;
    use proptest::prelude::*;
    use rand::{Rng, SeedableRng};

    /// `F(7, 2)` in one dimension against the direct correlation, in `f64`.
    #[test]
    fn the_transforms_compute_a_correlation_exactly() {
        let t = Transforms::new();
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        for _ in 0..20 {
            let d: Vec<f64> = (0..TILE).map(|_| rng.random_range(-1.0..1.0)).collect();
            let w: Vec<f64> = (0..2).map(|_| rng.random_range(-1.0..1.0)).collect();
            let gw: Vec<f64> = (0..TILE).map(|k| t.g[k][0] * w[0] + t.g[k][1] * w[1]).collect();
            let bd: Vec<f64> = (0..TILE).map(|k| (0..TILE).map(|j| t.bt[k][j] * d[j]).sum()).collect();
            for i in 0..OUT {
                let winograd: f64 = (0..TILE).map(|k| t.at[i][k] * gw[k] * bd[k]).sum();
                let direct = d[i] * w[0] + d[i + 1] * w[1];
                assert!((winograd - direct).abs() < 1e-12, "{i}: {winograd} vs {direct}");
            }
        }
    }

    /// The three products by their definitions, in `f64`.
    fn direct(
        xs: &[f64],
        w: &[f64],
        u: &[f64],
        (b, c, m, h, wd): (usize, usize, usize, usize, usize),
    ) -> [Vec<f64>; 3] {
        let (oh, ow) = (h / 2, wd / 2);
        let mut y = vec![0.0; b * m * oh * ow];
        let mut z = vec![0.0; b * c * h * wd];
        let mut dw = vec![0.0; m * c * 16];
        for n in 0..b {
            for o in 0..m {
                for i in 0..oh {
                    for j in 0..ow {
                        let yi = ((n * m + o) * oh + i) * ow + j;
                        for ci in 0..c {
                            for ky in 0..4 {
                                for kx in 0..4 {
                                    let (py, px) = ((2 * i + ky) as isize - 1, (2 * j + kx) as isize - 1);
                                    if py < 0 || px < 0 || py >= h as isize || px >= wd as isize {
                                        continue;
                                    }
                                    let xi = ((n * c + ci) * h + py as usize) * wd + px as usize;
                                    let wi = ((o * c + ci) * 4 + ky) * 4 + kx;
                                    y[yi] += w[wi] * xs[xi];
                                    z[xi] += w[wi] * u[yi];
                                    dw[wi] += u[yi] * xs[xi];
                                }
                            }
                        }
                    }
                }
            }
        }
        [y, z, dw]
    }

    fn check<T: WithDType>(
        (b, c, m, h, wd): (usize, usize, usize, usize, usize),
        seed: u64,
        tol: f64,
    ) -> Result<(), TestCaseError> {
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let mut draw = |n: usize| -> Vec<f64> { (0..n).map(|_| rng.random_range(-1.0..1.0)).collect() };
        let (xs, w, u) = (draw(b * c * h * wd), draw(m * c * 16), draw(b * m * (h / 2) * (wd / 2)));
        let g = Geometry {
            channels: c,
            height: h,
            width: wd,
            kernel_h: 4,
            kernel_w: 4,
            out_h: h / 2,
            out_w: wd / 2,
            stride: 2,
            padding: 1,
            dilation: 1,
        };
        let cast = |v: &[f64]| -> Vec<T> { v.iter().map(|&x| T::from_f64(x)).collect() };
        let back = |v: Vec<T>| -> Vec<f64> { v.into_iter().map(|x| x.to_f64()).collect() };
        let [y, z, dw] = direct(&xs, &w, &u, (b, c, m, h, wd));
        let layer = Layer::<T>::new(&g, b, m);
        let (v, dm) = (layer.input(&cast(&xs)), layer.output_gradient(&cast(&u)));
        let ours = [
            back(layer.forward(&cast(&w), &v)),
            back(layer.adjoint(&cast(&w), &dm)),
            back(layer.kernel_grad(&v, &dm)),
        ];
        for (what, (got, expected)) in ["forward", "adjoint", "kernel"].iter().zip(ours.iter().zip([y, z, dw])) {
            let err = max_rel_err(got, &expected);
            prop_assert!(err <= tol, "{what}: relative error {err:e} for {:?}", (b, c, m, h, wd));
        }
        Ok(())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(24))]
        /// Forward, adjoint and kernel gradient equal the direct sums for
        /// random batches, channels and even image sizes (one tile, several,
        /// and partial ones), in f32 (≤ 1e-4) and f64 (≤ 1e-10).
        #[test]
        fn prop_winograd_products_match_the_direct_sums(
            b in 1usize..3,
            c in 1usize..6,
            m in 1usize..6,
            half_h in 1usize..16,
            half_w in 1usize..16,
            seed in 0u64..10_000,
            f64_ in any::<bool>(),
        ) {
            let dims = (b, c, m, 2 * half_h, 2 * half_w);
            if f64_ { check::<f64>(dims, seed, 1e-10)? } else { check::<f32>(dims, seed, 1e-4)? }
        }
    }

    /// DCGAN's two layers at their own sizes, with the parallel paths.
    #[test]
    fn dcgan_sizes() -> Result<(), TestCaseError> {
        check::<f32>((4, 64, 32, 14, 14), 1, 1e-4)?;
        check::<f32>((3, 16, 64, 14, 14), 2, 1e-4)
    }

    #[test]
    fn only_stride_two_four_by_four_layers_with_enough_channels_apply() {
        let g = Geometry {
            channels: 64,
            height: 14,
            width: 14,
            kernel_h: 4,
            kernel_w: 4,
            out_h: 7,
            out_w: 7,
            stride: 2,
            padding: 1,
            dilation: 1,
        };
        assert!(applies(&g, 128));
        assert!(!applies(&g, 1));
        assert!(!applies(&Geometry { channels: 1, ..g }, 128));
        assert!(!applies(
            &Geometry {
                padding: 0,
                out_h: 6,
                out_w: 6,
                ..g
            },
            128
        ));
        assert!(!applies(&Geometry { height: 15, ..g }, 128));
        assert!(!applies(
            &Geometry {
                kernel_h: 3,
                kernel_w: 3,
                ..g
            },
            128
        ));
    }
}
