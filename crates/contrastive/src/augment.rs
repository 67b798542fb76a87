//! Seeded augmentations of batched images `[n, C, H, W]`, each image with
//! its own draw: the views SimCLR contrasts.
//!
//! The random parameters (angles, crops, masks, blur widths) are drawn on
//! the host from the generator given, image after image, one augmentation
//! after another; the pixels are moved by tensor operations (gathers,
//! products, shifted sums) on the batch's own device. The same generator
//! state therefore gives the same views on any device, and every image of a
//! batch gets a different draw.
//!
//! Geometry follows PyTorch's `affine_grid` + `grid_sample`
//! (`align_corners = False`, zero padding): output pixel `(i, j)` sits at
//! normalised coordinates `p = ((2j + 1)/W − 1, (2i + 1)/H − 1)` and takes
//! the bilinear interpolation of the input at `θ·(p, 1)`.

use crate::{Error, Result};
use candle::{D, Device, Tensor};
use deepgen_core::rng::randn;
use rand::Rng;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

/// One augmentation; [`Augmentations`] composes them.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case", deny_unknown_fields)]
pub enum Augmentation {
    /// torchvision's `RandomResizedCrop`: a crop of area fraction
    /// `s ~ U(scale)` and aspect ratio `r` with `log r ~ U(log ratio)` at a
    /// uniform position, resized (bilinearly) to the full image. Ten tries,
    /// then the whole image, as torchvision.
    ResizedCrop {
        /// Range of the crop's area fraction, in (0, 1].
        scale: (f64, f64),
        /// Range of its width/height ratio, positive.
        ratio: (f64, f64),
    },
    /// An affine warp as the anchor's `affine_grid` matrix: rotation by
    /// `a ~ U(±degrees)`, scale `s ~ U(scale)` and translation
    /// `t ~ U(±translate)²` (normalised units, the image spans [−1, 1]),
    /// sampling the input at `s R(a) p + t` — so `s > 1` shows more of the
    /// image (zooms out).
    Affine {
        /// Largest rotation, degrees.
        degrees: f64,
        /// Range of the sampling scale, positive.
        scale: (f64, f64),
        /// Largest translation per axis, normalised units.
        translate: f64,
    },
    /// `x + sd·ε`, `ε ~ N(0, I)` per pixel.
    GaussianNoise {
        /// Standard deviation, non-negative.
        sd: f64,
    },
    /// With probability `p`, a Gaussian blur of width `σ ~ U(sigma)` pixels
    /// (separable, radius ⌈3 σ_max⌉, reflected borders, as torchvision's
    /// `GaussianBlur`).
    Blur {
        /// Range of σ in pixels, positive.
        sigma: (f64, f64),
        /// Probability of blurring an image.
        p: f64,
    },
    /// With probability `p`, a `size × size` square at a uniform position
    /// set to 0 (cutout; the anchor's random erasing).
    Cutout {
        /// Side of the square in pixels, at most the image's side.
        size: usize,
        /// Probability of cutting an image.
        p: f64,
    },
    /// torchvision's `ColorJitter` brightness then contrast: `x ← b x`,
    /// then `x ← c x + (1 − c) mean(x)`, each clamped to [0, 1], with
    /// `b ~ U(1 ± brightness)` and `c ~ U(1 ± contrast)`.
    BrightnessContrast {
        /// Largest relative change of brightness, in [0, 1].
        brightness: f64,
        /// Largest relative change of contrast, in [0, 1].
        contrast: f64,
    },
}

/// A composition of augmentations, applied in order.
///
/// ```
/// use deepgen_contrastive::Augmentations;
/// use deepgen_core::{candle::{Device, Tensor}, rng_from_seed};
/// let images = Tensor::rand(0f32, 1.0, (4, 1, 28, 28), &Device::Cpu)?;
/// let recipe = Augmentations::mnist_default();
/// let a = recipe.apply(&images, &mut rng_from_seed(7))?;
/// let b = recipe.apply(&images, &mut rng_from_seed(7))?;
/// assert_eq!(a.flatten_all()?.to_vec1::<f32>()?, b.flatten_all()?.to_vec1::<f32>()?);
/// # Ok::<(), deepgen_contrastive::Error>(())
/// ```
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Augmentations(pub Vec<Augmentation>);

impl Augmentations {
    /// The anchor's recipe (`torch_simclr_mnist.py`): an affine warp (±20°,
    /// scale 0.8–1.2, translation ±0.2), noise of sd 0.1, and with
    /// probability ½ an 8 × 8 cutout.
    pub fn mnist_default() -> Self {
        Self(vec![
            Augmentation::Affine {
                degrees: 20.0,
                scale: (0.8, 1.2),
                translate: 0.2,
            },
            Augmentation::GaussianNoise { sd: 0.1 },
            Augmentation::Cutout { size: 8, p: 0.5 },
        ])
    }

    /// Checks every augmentation's parameters.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] naming the first bad value.
    pub fn validate(&self) -> Result<()> {
        self.0.iter().try_for_each(Augmentation::validate)
    }

    /// The views of `images` `[n, C, H, W]` (flat rows: see [`as_images`]),
    /// each image with its own draws from `rng`.
    ///
    /// # Errors
    /// Invalid parameters; an image too small for a cutout or a blur;
    /// shapes; Candle errors.
    pub fn apply(&self, images: &Tensor, rng: &mut impl Rng) -> Result<Tensor> {
        self.validate()?;
        let mut xs = images.clone();
        for augmentation in &self.0 {
            xs = augmentation.apply(&xs, rng)?;
        }
        Ok(xs)
    }
}

/// `0 < lo ≤ hi ≤ max`, both finite.
fn check_range(name: &'static str, (lo, hi): (f64, f64), max: f64) -> Result<()> {
    if !(lo.is_finite() && hi.is_finite() && lo > 0.0 && lo <= hi && hi <= max) {
        let bound = if max == f64::MAX {
            "∞".to_string()
        } else {
            max.to_string()
        };
        return Err(Error::invalid(name, (lo, hi), format!("need 0 < lo ≤ hi ≤ {bound}")));
    }
    Ok(())
}

fn check_probability(name: &'static str, p: f64) -> Result<()> {
    if !(0.0..=1.0).contains(&p) {
        return Err(Error::invalid(name, p, "a probability, in [0, 1]"));
    }
    Ok(())
}

impl Augmentation {
    /// Checks the parameters.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] naming the bad value.
    pub fn validate(&self) -> Result<()> {
        match *self {
            Augmentation::ResizedCrop { scale, ratio } => {
                check_range("resized-crop scale", scale, 1.0)?;
                check_range("resized-crop ratio", ratio, f64::MAX)
            }
            Augmentation::Affine {
                degrees,
                scale,
                translate,
            } => {
                if !(degrees.is_finite() && degrees >= 0.0) {
                    return Err(Error::invalid("affine degrees", degrees, "a non-negative angle"));
                }
                if !(translate.is_finite() && translate >= 0.0) {
                    return Err(Error::invalid("affine translate", translate, "non-negative"));
                }
                check_range("affine scale", scale, f64::MAX)
            }
            Augmentation::GaussianNoise { sd } => {
                if !(sd.is_finite() && sd >= 0.0) {
                    return Err(Error::invalid("noise sd", sd, "a non-negative standard deviation"));
                }
                Ok(())
            }
            Augmentation::Blur { sigma, p } => {
                check_range("blur sigma", sigma, 1e3)?;
                check_probability("blur p", p)
            }
            Augmentation::Cutout { size, p } => {
                if size == 0 {
                    return Err(Error::invalid("cutout size", size, "at least 1 pixel"));
                }
                check_probability("cutout p", p)
            }
            Augmentation::BrightnessContrast { brightness, contrast } => {
                for (name, value) in [("brightness", brightness), ("contrast", contrast)] {
                    if !(0.0..=1.0).contains(&value) {
                        return Err(Error::invalid(name, value, "a relative change, in [0, 1]"));
                    }
                }
                Ok(())
            }
        }
    }

    /// This augmentation applied to `images` `[n, C, H, W]`.
    ///
    /// # Errors
    /// As [`Augmentations::apply`].
    pub fn apply(&self, images: &Tensor, rng: &mut impl Rng) -> Result<Tensor> {
        let (n, _, h, w) = images
            .dims4()
            .map_err(|_| Error::shape("augmented images", images.dims(), "[n, C, H, W]"))?;
        match *self {
            Augmentation::ResizedCrop { scale, ratio } => {
                let thetas: Vec<[f64; 6]> = (0..n).map(|_| crop_theta(scale, ratio, h, w, rng)).collect();
                warp(images, &thetas)
            }
            Augmentation::Affine {
                degrees,
                scale,
                translate,
            } => {
                let thetas: Vec<[f64; 6]> = (0..n)
                    .map(|_| {
                        let angle = uniform(rng, -degrees, degrees).to_radians();
                        let s = uniform(rng, scale.0, scale.1);
                        let (tx, ty) = (uniform(rng, -translate, translate), uniform(rng, -translate, translate));
                        let (sin, cos) = angle.sin_cos();
                        [s * cos, -s * sin, tx, s * sin, s * cos, ty]
                    })
                    .collect();
                warp(images, &thetas)
            }
            Augmentation::GaussianNoise { sd } => {
                let noise = randn(rng, images.dims(), images.device())?.to_dtype(images.dtype())?;
                Ok((images + (noise * sd)?)?)
            }
            Augmentation::Blur { sigma, p } => {
                let radius = (3.0 * sigma.1).ceil() as usize;
                if radius >= h.min(w) {
                    return Err(Error::invalid(
                        "blur sigma",
                        sigma,
                        format!("the blur's radius {radius} must be below the image's side {}", h.min(w)),
                    ));
                }
                let sigmas: Vec<Option<f64>> = (0..n)
                    .map(|_| {
                        let blur = rng.random::<f64>() < p;
                        let s = uniform(rng, sigma.0, sigma.1);
                        blur.then_some(s)
                    })
                    .collect();
                blur(images, &sigmas, radius)
            }
            Augmentation::Cutout { size, p } => {
                if size > h || size > w {
                    return Err(Error::invalid(
                        "cutout size",
                        size,
                        format!("at most the image's side ({h} × {w})"),
                    ));
                }
                let mut mask = vec![1f32; n * h * w];
                for image in mask.chunks_exact_mut(h * w) {
                    let cut = rng.random::<f64>() < p;
                    let (top, left) = (rng.random_range(0..=h - size), rng.random_range(0..=w - size));
                    if cut {
                        for row in image.chunks_exact_mut(w).skip(top).take(size) {
                            row[left..left + size].fill(0.0);
                        }
                    }
                }
                let mask = Tensor::from_vec(mask, (n, 1, h, w), images.device())?.to_dtype(images.dtype())?;
                Ok(images.broadcast_mul(&mask)?)
            }
            Augmentation::BrightnessContrast { brightness, contrast } => {
                let mut factors = Vec::with_capacity(2 * n);
                for _ in 0..n {
                    factors.push(uniform(rng, 1.0 - brightness, 1.0 + brightness));
                    factors.push(uniform(rng, 1.0 - contrast, 1.0 + contrast));
                }
                let column = |k: usize| -> Result<Tensor> {
                    let v: Vec<f64> = factors.iter().skip(k).step_by(2).copied().collect();
                    Ok(Tensor::from_vec(v, (n, 1, 1, 1), images.device())?.to_dtype(images.dtype())?)
                };
                let (b, c) = (column(0)?, column(1)?);
                let bright = images.broadcast_mul(&b)?.clamp(0.0, 1.0)?;
                let mean = bright.flatten_from(1)?.mean(D::Minus1)?.reshape((n, 1, 1, 1))?;
                let blend = bright.broadcast_sub(&mean)?.broadcast_mul(&c)?.broadcast_add(&mean)?;
                Ok(blend.clamp(0.0, 1.0)?)
            }
        }
    }
}

/// `U(lo, hi)` (`lo` when the range is empty).
fn uniform(rng: &mut impl Rng, lo: f64, hi: f64) -> f64 {
    lo + (hi - lo) * rng.random::<f64>()
}

/// The sampling matrix of a torchvision resized crop: a `cw × ch` window
/// at `(left, top)` pixels maps onto the whole image.
fn crop_theta(scale: (f64, f64), ratio: (f64, f64), h: usize, w: usize, rng: &mut impl Rng) -> [f64; 6] {
    let (hf, wf) = (h as f64, w as f64);
    let area = hf * wf;
    let (log_lo, log_hi) = (ratio.0.ln(), ratio.1.ln());
    let window = (0..10)
        .find_map(|_| {
            let target = area * uniform(rng, scale.0, scale.1);
            let aspect = uniform(rng, log_lo, log_hi).exp();
            let cw = (target * aspect).sqrt().round();
            let ch = (target / aspect).sqrt().round();
            if cw >= 1.0 && ch >= 1.0 && cw <= wf && ch <= hf {
                let top = rng.random_range(0..=(hf - ch) as usize) as f64;
                let left = rng.random_range(0..=(wf - cw) as usize) as f64;
                Some((left, top, cw, ch))
            } else {
                None
            }
        })
        .unwrap_or((0.0, 0.0, wf, hf));
    let (left, top, cw, ch) = window;
    // Normalised output p ∈ [−1, 1] ↦ the window: x = (2 left + cw)/W − 1 + (cw/W) p.
    [
        cw / wf,
        0.0,
        (2.0 * left + cw) / wf - 1.0,
        0.0,
        ch / hf,
        (2.0 * top + ch) / hf - 1.0,
    ]
}

/// Bilinear sampling of each image `k` of `images` `[n, C, H, W]` at
/// `θ_k·(p, 1)` for every output pixel `p` (`θ_k` row-major 2 × 3), zero
/// outside: PyTorch's `grid_sample(affine_grid(θ), align_corners=False)`.
///
/// # Errors
/// One matrix per image; Candle errors.
pub fn warp(images: &Tensor, thetas: &[[f64; 6]]) -> Result<Tensor> {
    let (n, c, h, w) = images.dims4()?;
    if thetas.len() != n {
        return Err(Error::invalid(
            "warp matrices",
            thetas.len(),
            format!("one per image ({n})"),
        ));
    }
    let hw = h * w;
    // Output pixel `p` of image `k` reads the four corners
    // `indices[k·hw + p][q]` with weights `weights[k·hw + p][q]` (0 where a
    // corner falls outside). The tables are built on the host, one image
    // per task (an epoch of the anchor's recipe warps 120,000 images), and
    // the pixels are read by one gather where the tensors are.
    let mut indices = vec![[0u32; 4]; n * hw];
    let mut weights = vec![[0f32; 4]; n * hw];
    indices
        .par_chunks_mut(hw.max(1))
        .zip(weights.par_chunks_mut(hw.max(1)))
        .zip(thetas.par_iter())
        .for_each(|((index, weight), theta)| bilinear_taps(theta, h, w, index, weight));
    let device = images.device();
    let index = Tensor::from_vec(indices.into_flattened(), (n, 1, hw * 4), device)?
        .broadcast_as((n, c, hw * 4))?
        .contiguous()?;
    let weight = Tensor::from_vec(weights.into_flattened(), (n, 1, hw * 4), device)?.to_dtype(images.dtype())?;
    let taps = images.reshape((n, c, hw))?.gather(&index, 2)?.broadcast_mul(&weight)?;
    Ok(taps.reshape((n, c, hw, 4))?.sum(D::Minus1)?.reshape((n, c, h, w))?)
}

/// The four corners (offsets in the `h × w` plane) and bilinear weights
/// that output pixel `p` of an `h × w` image reads at `θ·(p, 1)`, for every
/// `p`; a corner outside the image gets weight 0.
fn bilinear_taps(theta: &[f64; 6], h: usize, w: usize, index: &mut [[u32; 4]], weight: &mut [[f32; 4]]) {
    // Normalised coordinates of pixel centres (align_corners = False), and
    // the input pixel coordinate of a normalised one: u = ((x + 1)·W − 1)/2.
    let normalised = |k: usize, len: usize| (2 * k + 1) as f64 / len as f64 - 1.0;
    let columns: Vec<f64> = (0..w).map(|j| normalised(j, w)).collect();
    let (half_w, half_h) = (w as f64 / 2.0, h as f64 / 2.0);
    let (wi, hi) = (w as i64, h as i64);
    for (i, (index, weight)) in index.chunks_exact_mut(w).zip(weight.chunks_exact_mut(w)).enumerate() {
        let yn = normalised(i, h);
        for (j, &xn) in columns.iter().enumerate() {
            let xs = theta[0] * xn + theta[1] * yn + theta[2];
            let ys = theta[3] * xn + theta[4] * yn + theta[5];
            let (u, v) = ((xs + 1.0) * half_w - 0.5, (ys + 1.0) * half_h - 0.5);
            if !(u.is_finite() && v.is_finite()) {
                continue;
            }
            // ⌊u⌋ without a libm call; values beyond ±2³¹ saturate and
            // land outside the image either way.
            let floor = |t: f64| {
                let k = t as i64;
                k - i64::from((k as f64) > t)
            };
            let (x0, y0) = (floor(u), floor(v));
            let (fx, fy) = (u - x0 as f64, v - y0 as f64);
            let corners = [
                (x0, y0, (1.0 - fx) * (1.0 - fy)),
                (x0 + 1, y0, fx * (1.0 - fy)),
                (x0, y0 + 1, (1.0 - fx) * fy),
                (x0 + 1, y0 + 1, fx * fy),
            ];
            for (q, &(x, y, wq)) in corners.iter().enumerate() {
                if (0..wi).contains(&x) && (0..hi).contains(&y) && wq != 0.0 {
                    index[j][q] = (y * wi + x) as u32;
                    weight[j][q] = wq as f32;
                }
            }
        }
    }
}

/// Each image blurred by a separable Gaussian of its own σ (`None`: left
/// as it is), radius `radius`, with reflected borders.
fn blur(images: &Tensor, sigmas: &[Option<f64>], radius: usize) -> Result<Tensor> {
    let n = sigmas.len();
    let taps = 2 * radius + 1;
    let mut kernel = vec![0f64; n * taps];
    for (row, sigma) in kernel.chunks_exact_mut(taps).zip(sigmas) {
        match sigma {
            Some(s) => {
                for (d, k) in row.iter_mut().enumerate() {
                    let x = d as f64 - radius as f64;
                    *k = (-x * x / (2.0 * s * s)).exp();
                }
                let total: f64 = row.iter().sum();
                row.iter_mut().for_each(|k| *k /= total);
            }
            None => row[radius] = 1.0,
        }
    }
    let device = images.device();
    let tap = |d: usize| -> Result<Tensor> {
        let v: Vec<f64> = kernel.iter().skip(d).step_by(taps).copied().collect();
        Ok(Tensor::from_vec(v, (n, 1, 1, 1), device)?.to_dtype(images.dtype())?)
    };
    let taps_tensors: Vec<Tensor> = (0..taps).map(tap).collect::<Result<_>>()?;
    let along = |xs: &Tensor, dim: usize| -> Result<Tensor> {
        let len = xs.dim(dim)?;
        let padded = xs.index_select(&reflect_indices(len, radius, device)?, dim)?;
        let mut sum: Option<Tensor> = None;
        for (d, weight) in taps_tensors.iter().enumerate() {
            let term = padded.narrow(dim, d, len)?.broadcast_mul(weight)?;
            sum = Some(match sum {
                Some(s) => (s + term)?,
                None => term,
            });
        }
        Ok(sum.unwrap_or_else(|| xs.clone()))
    };
    let across = along(images, 3)?;
    along(&across, 2)
}

/// `[r, …, 1, 0, 1, …, len − 1, len − 2, …, len − 1 − r]`: PyTorch's
/// `reflect` padding of a line of `len` by `r` on each side.
fn reflect_indices(len: usize, r: usize, device: &Device) -> Result<Tensor> {
    let reflect = |i: isize| -> u32 {
        let last = len as isize - 1;
        let folded = if i < 0 {
            -i
        } else if i > last {
            2 * last - i
        } else {
            i
        };
        folded as u32
    };
    let v: Vec<u32> = (-(r as isize)..(len + r) as isize).map(reflect).collect();
    Ok(Tensor::from_vec(v, len + 2 * r, device)?)
}

/// `[n, C·H·W]` rows ↔ `[n, C, H, W]` images, for data held flat.
///
/// # Errors
/// When the rows do not hold `C·H·W` values.
pub fn as_images(rows: &Tensor, (c, h, w): (usize, usize, usize)) -> Result<Tensor> {
    match rows.dims() {
        [n, d] if *d == c * h * w => Ok(rows.reshape((*n, c, h, w))?),
        [_, cc, hh, ww] if (*cc, *hh, *ww) == (c, h, w) => Ok(rows.clone()),
        other => Err(Error::shape(
            "images",
            other,
            format!("[n, {}] or [n, {c}, {h}, {w}]", c * h * w),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle::DType;
    use deepgen_core::rng_from_seed;

    #[test]
    fn reflect_padding_matches_pytorch() -> Result<()> {
        let v = reflect_indices(5, 2, &Device::Cpu)?.to_vec1::<u32>()?;
        assert_eq!(v, [2, 1, 0, 1, 2, 3, 4, 3, 2]);
        Ok(())
    }

    #[test]
    fn a_crop_window_lies_inside_the_image() {
        let mut rng = rng_from_seed(3);
        for _ in 0..200 {
            let t = crop_theta((0.2, 1.0), (0.75, 4.0 / 3.0), 28, 28, &mut rng);
            // The output corners p = ±1 land inside [−1, 1].
            for p in [-1.0, 1.0] {
                assert!((t[0] * p + t[2]).abs() <= 1.0 + 1e-12);
                assert!((t[4] * p + t[5]).abs() <= 1.0 + 1e-12);
            }
            assert!(
                t[0] * t[4] >= 0.2 * 0.9 && t[0] * t[4] <= 1.0 + 1e-12,
                "area {}",
                t[0] * t[4]
            );
        }
    }

    #[test]
    fn blur_keeps_a_constant_image_and_the_mass() -> Result<()> {
        let ones = Tensor::ones((2, 1, 9, 9), DType::F32, &Device::Cpu)?;
        let out = blur(&ones, &[Some(1.0), Some(0.7)], 3)?;
        for v in out.flatten_all()?.to_vec1::<f32>()? {
            assert!((v - 1.0).abs() < 1e-5, "{v}");
        }
        // A centred dot keeps its mass (reflection does not reach it).
        let mut dot = vec![0f32; 81];
        dot[40] = 1.0;
        let dot = Tensor::from_vec(dot, (1, 1, 9, 9), &Device::Cpu)?;
        let out = blur(&dot, &[Some(1.0)], 3)?;
        let mass = out.sum_all()?.to_scalar::<f32>()?;
        assert!((mass - 1.0).abs() < 1e-5, "{mass}");
        Ok(())
    }
}
