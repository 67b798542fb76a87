//! Image grids as PNG: a batch of images laid out in rows and columns, as
//! torchvision's `make_grid` does, for samples, reconstructions and
//! interpolations.
//!
//! [`image_grid`] renders into an in-memory [`Image`] (8-bit grey or RGB);
//! [`Image::save_png`] encodes it with the `png` crate and writes it with
//! deepgen-core's atomic writer ([`write_atomic`]: a temporary name, then a
//! rename), so a crash never leaves a half-written PNG under the final name.
//! Plots (loss curves, scatter plots) are the CLI's, drawn by plotters.

use crate::{Error, Result};
use candle::{DType, Device, Tensor};
use deepgen_core::checkpoint::write_atomic;
use std::path::Path;

/// Pixels between neighbouring images of a grid and around its border
/// (torchvision's `make_grid` default).
pub const GRID_PADDING: usize = 2;

/// The largest width or height of a picture this module writes.
pub const MAX_SIDE: usize = 1 << 15;

/// An 8-bit picture in memory, row-major, `channels` bytes per pixel.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Image {
    width: usize,
    height: usize,
    channels: usize,
    data: Vec<u8>,
}

impl Image {
    /// A `width × height` picture with 1 (grey) or 3 (RGB) channels, every
    /// pixel set to `fill` (its first `channels` bytes).
    ///
    /// # Errors
    ///
    /// [`Error::InvalidArgument`] for `channels` other than 1 or 3, or a side of
    /// 0 or above [`MAX_SIDE`].
    pub fn new(width: usize, height: usize, channels: usize, fill: [u8; 3]) -> Result<Self> {
        if channels != 1 && channels != 3 {
            return Err(Error::invalid("channels", channels, "1 (grey) or 3 (RGB)"));
        }
        for (name, side) in [("width", width), ("height", height)] {
            if side == 0 || side > MAX_SIDE {
                return Err(Error::invalid(name, side, format!("in 1..={MAX_SIDE}")));
            }
        }
        let pixel = fill.get(..channels).unwrap_or(&fill[..1]);
        let data = pixel.iter().copied().cycle().take(width * height * channels).collect();
        Ok(Image {
            width,
            height,
            channels,
            data,
        })
    }

    /// Width in pixels.
    pub fn width(&self) -> usize {
        self.width
    }

    /// Height in pixels.
    pub fn height(&self) -> usize {
        self.height
    }

    /// 1 (grey) or 3 (RGB).
    pub fn channels(&self) -> usize {
        self.channels
    }

    /// The raw bytes, row-major.
    pub fn data(&self) -> &[u8] {
        &self.data
    }

    /// The bytes of pixel `(x, y)` (`x` to the right, `y` down), or `None`
    /// outside the picture.
    pub fn pixel(&self, x: usize, y: usize) -> Option<&[u8]> {
        if x >= self.width || y >= self.height {
            return None;
        }
        let i = (y * self.width + x) * self.channels;
        self.data.get(i..i + self.channels)
    }

    /// Sets pixel `(x, y)` to the first `channels` bytes of `rgb` (for grey,
    /// the first); does nothing outside the picture.
    fn put(&mut self, x: usize, y: usize, rgb: [u8; 3]) {
        if x >= self.width || y >= self.height {
            return;
        }
        let c = self.channels;
        let i = (y * self.width + x) * c;
        if let (Some(dst), Some(src)) = (self.data.get_mut(i..i + c), rgb.get(..c)) {
            dst.copy_from_slice(src);
        }
    }

    /// Writes the picture as a PNG, atomically (temporary file, then rename).
    ///
    /// # Errors
    ///
    /// [`Error::Png`] if encoding fails; [`Error::Core`] (an I/O error naming
    /// the file) if it cannot be written or renamed.
    pub fn save_png(&self, path: &Path) -> Result<()> {
        let color = if self.channels == 1 {
            png::ColorType::Grayscale
        } else {
            png::ColorType::Rgb
        };
        let png_err = |source| Error::Png {
            path: path.into(),
            source,
        };
        // `new` bounds both sides by MAX_SIDE, so they fit in u32.
        let mut bytes = Vec::new();
        let mut encoder = png::Encoder::new(&mut bytes, self.width as u32, self.height as u32);
        encoder.set_color(color);
        encoder.set_depth(png::BitDepth::Eight);
        let mut writer = encoder.write_header().map_err(png_err)?;
        writer.write_image_data(&self.data).map_err(png_err)?;
        writer.finish().map_err(png_err)?;
        Ok(write_atomic(path, &bytes)?)
    }
}

/// `x ∈ [0, 1] ↦ round(255 x)`, clamped; NaN maps to 0.
pub(crate) fn to_byte(x: f32) -> u8 {
    if x.is_nan() {
        0
    } else {
        (x.clamp(0.0, 1.0) * 255.0).round() as u8
    }
}

/// Lays out `images` in a grid with `n_cols` columns (fewer if there are fewer
/// images) and [`GRID_PADDING`] black pixels between and around them, as
/// torchvision's `make_grid` does.
///
/// Accepted shapes: `[n, c, h, w]` with `c` = 1 (grey) or 3 (RGB);
/// `[n, h, w]` (grey); `[n, d]` with `d` a perfect square (grey `√d × √d`,
/// e.g. flat MNIST `[n, 784]`). Values are clamped to `[0, 1]` and mapped to
/// `round(255 x)`. Any dtype and device.
///
/// # Errors
///
/// [`Error::BadShape`] for another shape or no images;
/// [`Error::InvalidArgument`] for `n_cols == 0` or a grid wider or taller than
/// [`MAX_SIDE`]; a Candle error if the copy to the host fails.
pub fn image_grid(images: &Tensor, n_cols: usize) -> Result<Image> {
    let bad_shape = || Error::BadShape {
        what: "image grid",
        got: images.dims().to_vec(),
        expected: "[n, 1 or 3, h, w], [n, h, w] or [n, d] with d a perfect square, n ≥ 1".into(),
    };
    let (n, c, h, w) = match *images.dims() {
        [n, c, h, w] if c == 1 || c == 3 => (n, c, h, w),
        [n, h, w] => (n, 1, h, w),
        [n, d] => {
            let side = (d as f64).sqrt().round() as usize;
            if side * side != d {
                return Err(bad_shape());
            }
            (n, 1, side, side)
        }
        _ => return Err(bad_shape()),
    };
    if n == 0 || h == 0 || w == 0 {
        return Err(bad_shape());
    }
    if n_cols == 0 {
        return Err(Error::invalid("n_cols", 0, "at least 1"));
    }
    let cols = n_cols.min(n);
    let rows = n.div_ceil(cols);
    let p = GRID_PADDING;
    let width = cols
        .checked_mul(w + p)
        .and_then(|v| v.checked_add(p))
        .filter(|&v| v <= MAX_SIDE);
    let height = rows
        .checked_mul(h + p)
        .and_then(|v| v.checked_add(p))
        .filter(|&v| v <= MAX_SIDE);
    let (Some(width), Some(height)) = (width, height) else {
        return Err(Error::invalid(
            "image grid",
            format!("{rows} rows × {cols} columns of {h}×{w}"),
            format!("at most {MAX_SIDE} pixels a side"),
        ));
    };
    let values = images
        .to_device(&Device::Cpu)?
        .to_dtype(DType::F32)?
        .flatten_all()?
        .to_vec1::<f32>()?;
    let mut grid = Image::new(width, height, c, [0, 0, 0])?;
    let plane = h * w;
    for (i, image) in values.chunks_exact(c * plane).enumerate() {
        let (x0, y0) = (p + (i % cols) * (w + p), p + (i / cols) * (h + p));
        for y in 0..h {
            for x in 0..w {
                let mut rgb = [0u8; 3];
                for (ch, v) in rgb.iter_mut().enumerate().take(c) {
                    *v = to_byte(image.get(ch * plane + y * w + x).copied().unwrap_or(0.0));
                }
                grid.put(x0 + x, y0 + y, rgb);
            }
        }
    }
    Ok(grid)
}

/// Writes [`image_grid`]`(images, n_cols)` to `path` as a PNG, atomically.
///
/// # Errors
///
/// As [`image_grid`] and [`Image::save_png`].
pub fn save_image_grid(images: &Tensor, n_cols: usize, path: &Path) -> Result<()> {
    image_grid(images, n_cols)?.save_png(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Decodes a PNG: `(width, height, color type, bytes)`.
    fn decode(path: &Path) -> (u32, u32, png::ColorType, Vec<u8>) {
        let file = std::io::BufReader::new(std::fs::File::open(path).unwrap());
        let mut reader = png::Decoder::new(file).read_info().unwrap();
        let mut buf = vec![0; reader.output_buffer_size().unwrap()];
        let info = reader.next_frame(&mut buf).unwrap();
        buf.truncate(info.buffer_size());
        (info.width, info.height, info.color_type, buf)
    }

    fn no_temporary_files(dir: &Path) {
        let leftovers: Vec<_> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .filter(|n| n.to_string_lossy().ends_with(".tmp"))
            .collect();
        assert!(leftovers.is_empty(), "{leftovers:?}");
    }

    #[test]
    fn grey_grid_round_trip() {
        // 5 images of 3×4 in 2 columns: 3 rows; width 2·(4+2)+2 = 14, height
        // 3·(3+2)+2 = 17. Image i is filled with i/4.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("grid.png");
        let xs = Tensor::arange(0f32, 5.0, &Device::Cpu)
            .unwrap()
            .affine(0.25, 0.0)
            .unwrap()
            .reshape((5, 1, 1, 1))
            .unwrap()
            .repeat((1, 1, 3, 4))
            .unwrap();
        save_image_grid(&xs, 2, &path).unwrap();
        let (w, h, color, data) = decode(&path);
        assert_eq!((w, h, color), (14, 17, png::ColorType::Grayscale));
        let px = |x: usize, y: usize| data[y * 14 + x];
        // Image 3 (row 1, column 1) starts at (2 + 6, 2 + 5); value 0.75 → 191.
        assert_eq!(px(8, 7), 191);
        assert_eq!(px(11, 9), 191);
        // Image 4 (row 2, column 0): 1.0 → 255; padding is black.
        assert_eq!(px(2, 12), 255);
        assert_eq!(px(0, 0), 0);
        assert_eq!(px(6, 7), 0);
        // The missing sixth image stays black.
        assert_eq!(px(9, 13), 0);
        no_temporary_files(dir.path());
    }

    #[test]
    fn rgb_grid_and_clamping() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("rgb.png");
        // One 2×2 RGB image: R = 2.0 (clamped to 1), G = −1 (clamped to 0),
        // B = 0.5 → 128.
        let xs = Tensor::new(&[2f32, -1.0, 0.5], &Device::Cpu)
            .unwrap()
            .reshape((1, 3, 1, 1))
            .unwrap()
            .repeat((1, 1, 2, 2))
            .unwrap();
        save_image_grid(&xs, 8, &path).unwrap();
        let (w, h, color, data) = decode(&path);
        assert_eq!((w, h, color), (6, 6, png::ColorType::Rgb));
        let i = (2 * 6 + 2) * 3;
        assert_eq!(&data[i..i + 3], &[255, 0, 128]);
    }

    #[test]
    fn flat_and_three_dim_inputs() {
        let flat = Tensor::full(0.5f32, (3, 784), &Device::Cpu).unwrap();
        let img = image_grid(&flat, 3).unwrap();
        assert_eq!((img.width(), img.height()), (3 * 30 + 2, 32));
        assert_eq!(img.pixel(2, 2), Some(&[128u8][..]));
        let three = Tensor::full(1f64, (2, 5, 7), &Device::Cpu).unwrap();
        let img = image_grid(&three, 1).unwrap();
        assert_eq!((img.width(), img.height(), img.channels()), (11, 16, 1));
    }

    #[test]
    fn bad_shapes_and_arguments() {
        let dev = &Device::Cpu;
        for dims in [vec![3, 2, 4, 4], vec![5], vec![3, 10], vec![0, 1, 2, 2]] {
            let xs = Tensor::zeros(dims.as_slice(), DType::F32, dev).unwrap();
            let err = image_grid(&xs, 2).unwrap_err();
            assert!(matches!(err, Error::BadShape { .. }), "{dims:?}: {err}");
        }
        let xs = Tensor::zeros((2, 1, 4, 4), DType::F32, dev).unwrap();
        assert!(matches!(image_grid(&xs, 0), Err(Error::InvalidArgument { .. })));
        // A grid wider than MAX_SIDE is refused before allocation.
        let wide = Tensor::zeros((2, 1, 1, MAX_SIDE), DType::U8, dev).unwrap();
        assert!(image_grid(&wide, 2).is_err());
    }

    #[test]
    fn unwritable_path_is_an_io_error_and_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let xs = Tensor::zeros((1, 1, 2, 2), DType::F32, &Device::Cpu).unwrap();
        let path = dir.path().join("missing-dir").join("g.png");
        let err = save_image_grid(&xs, 1, &path).unwrap_err();
        assert!(matches!(err, Error::Core(deepgen_core::Error::Io { .. })), "{err}");
        assert!(err.to_string().contains("g.png"), "{err}");
        // A directory in the way of the final name: rename fails, temp removed.
        let blocked = dir.path().join("blocked.png");
        std::fs::create_dir(&blocked).unwrap();
        std::fs::write(blocked.join("x"), b"x").unwrap();
        assert!(save_image_grid(&xs, 1, &blocked).is_err());
        no_temporary_files(dir.path());
    }
}
