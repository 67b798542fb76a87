//! Pictures as PNG: image grids, 2-D scatter plots and loss curves.
//!
//! Everything is rendered into an in-memory [`Image`] (8-bit grey or RGB) and
//! written with the `png` crate. Files are written to a temporary name in the
//! target directory and renamed into place, so a crash never leaves a
//! half-written PNG under the final name. The plots carry no text: they are
//! meant to be looked at next to the metrics file, not published.

use crate::{Error, Result};
use candle::{DType, Device, Tensor};
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

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
    pub fn put(&mut self, x: i64, y: i64, rgb: [u8; 3]) {
        let (Ok(x), Ok(y)) = (usize::try_from(x), usize::try_from(y)) else {
            return;
        };
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
    /// [`Error::Io`] if the file cannot be created, written or renamed;
    /// [`Error::Png`] if encoding fails.
    pub fn save_png(&self, path: &Path) -> Result<()> {
        let color = if self.channels == 1 {
            png::ColorType::Grayscale
        } else {
            png::ColorType::Rgb
        };
        // `new` bounds both sides by MAX_SIDE, so they fit in u32.
        let (width, height) = (self.width as u32, self.height as u32);
        write_atomically(path, |out| {
            let png_err = |source| Error::Png {
                path: path.into(),
                source,
            };
            let mut encoder = png::Encoder::new(out, width, height);
            encoder.set_color(color);
            encoder.set_depth(png::BitDepth::Eight);
            let mut writer = encoder.write_header().map_err(png_err)?;
            writer.write_image_data(&self.data).map_err(png_err)?;
            writer.finish().map_err(png_err)
        })
    }
}

/// Runs `write` on a buffered temporary file next to `path`, then flushes,
/// syncs and renames it to `path`. On failure the temporary file is removed.
fn write_atomically(path: &Path, write: impl FnOnce(&mut BufWriter<File>) -> Result<()>) -> Result<()> {
    let file_name = path
        .file_name()
        .ok_or_else(|| Error::invalid("path", path.display(), "must name a file"))?;
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let tmp = dir.join(format!(".{}.{}.part", file_name.to_string_lossy(), std::process::id()));
    let result = (|| {
        let file = File::create(&tmp).map_err(|e| Error::io("create", &tmp, e))?;
        let mut out = BufWriter::new(file);
        write(&mut out)?;
        out.flush().map_err(|e| Error::io("write", &tmp, e))?;
        let file = out.into_inner().map_err(|e| Error::io("write", &tmp, e.into_error()))?;
        file.sync_all().map_err(|e| Error::io("sync", &tmp, e))?;
        std::fs::rename(&tmp, path).map_err(|e| Error::io("rename into", path, e))
    })();
    if result.is_err() {
        // Best effort: the error being returned matters more.
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// `x ∈ [0, 1] ↦ round(255 x)`, clamped; NaN maps to 0.
fn to_byte(x: f32) -> u8 {
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
                grid.put((x0 + x) as i64, (y0 + y) as i64, rgb);
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

/// The region of the plane a plot shows.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Extent {
    /// Left edge.
    pub x_min: f64,
    /// Right edge.
    pub x_max: f64,
    /// Bottom edge.
    pub y_min: f64,
    /// Top edge.
    pub y_max: f64,
}

impl Extent {
    /// `[−r, r]²`.
    pub fn square(r: f64) -> Self {
        Extent {
            x_min: -r,
            x_max: r,
            y_min: -r,
            y_max: r,
        }
    }

    /// The smallest square centred at the origin holding all finite `points`,
    /// enlarged by `margin` (a fraction, e.g. 0.1); `[−1, 1]²` for no points.
    pub fn around(points: &[[f64; 2]], margin: f64) -> Self {
        let r = points
            .iter()
            .flatten()
            .filter(|v| v.is_finite())
            .fold(0.0f64, |acc, v| acc.max(v.abs()));
        let r = if r > 0.0 { r } else { 1.0 };
        Extent::square(r * (1.0 + margin.max(0.0)))
    }

    fn validate(&self) -> Result<()> {
        let ok = |lo: f64, hi: f64| lo.is_finite() && hi.is_finite() && lo < hi;
        if ok(self.x_min, self.x_max) && ok(self.y_min, self.y_max) {
            Ok(())
        } else {
            Err(Error::invalid(
                "extent",
                format!("{self:?}"),
                "finite with min < max on both axes",
            ))
        }
    }
}

/// One set of points in a scatter plot.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ScatterLayer<'a> {
    /// The points; non-finite ones and those outside the extent are skipped.
    pub points: &'a [[f64; 2]],
    /// RGB colour.
    pub color: [u8; 3],
    /// Half-width of the square marker in pixels (0 draws single pixels).
    pub radius: usize,
}

/// Blue, the colour of samples in [`save_scatter_png`].
pub const SAMPLE_COLOR: [u8; 3] = [31, 119, 180];
/// Red, the colour of modes in [`save_scatter_with_modes_png`].
pub const MODE_COLOR: [u8; 3] = [214, 39, 40];

/// Renders a `size × size` RGB scatter plot of `layers` (drawn in order) over
/// `extent` on white, with light grey axes through the origin when it is
/// visible and a grey frame.
///
/// # Errors
///
/// [`Error::InvalidArgument`] for an empty or non-finite extent or a size
/// outside `8..=MAX_SIDE`.
pub fn render_scatter(layers: &[ScatterLayer<'_>], extent: Extent, size: usize) -> Result<Image> {
    extent.validate()?;
    if !(8..=MAX_SIDE).contains(&size) {
        return Err(Error::invalid("size", size, format!("in 8..={MAX_SIDE}")));
    }
    let mut img = Image::new(size, size, 3, [255, 255, 255])?;
    let last = (size - 1) as f64;
    let to_px = |p: [f64; 2]| -> Option<(i64, i64)> {
        let u = (p[0] - extent.x_min) / (extent.x_max - extent.x_min);
        let v = (extent.y_max - p[1]) / (extent.y_max - extent.y_min);
        ((0.0..=1.0).contains(&u) && (0.0..=1.0).contains(&v))
            .then(|| ((u * last).round() as i64, (v * last).round() as i64))
    };
    let axis = [210, 210, 210];
    if let Some((x0, _)) = to_px([0.0, extent.y_min]) {
        draw_line(&mut img, (x0, 0), (x0, size as i64 - 1), axis);
    }
    if let Some((_, y0)) = to_px([extent.x_min, 0.0]) {
        draw_line(&mut img, (0, y0), (size as i64 - 1, y0), axis);
    }
    draw_frame(&mut img, [128, 128, 128]);
    for layer in layers {
        let r = layer.radius as i64;
        for &p in layer.points {
            if let Some((x, y)) = to_px(p) {
                for dy in -r..=r {
                    for dx in -r..=r {
                        img.put(x + dx, y + dy, layer.color);
                    }
                }
            }
        }
    }
    Ok(img)
}

/// Writes a `size × size` scatter plot of `points` (blue, 3×3 markers) over
/// `extent` to `path`, atomically. Use
/// [`tensor_to_points`](crate::tensor_to_points) for an `[n, 2]` tensor.
///
/// # Errors
///
/// As [`render_scatter`] and [`Image::save_png`].
pub fn save_scatter_png(points: &[[f64; 2]], extent: Extent, size: usize, path: &Path) -> Result<()> {
    let layer = ScatterLayer {
        points,
        color: SAMPLE_COLOR,
        radius: 1,
    };
    render_scatter(&[layer], extent, size)?.save_png(path)
}

/// [`save_scatter_png`] with `modes` drawn on top as red 5×5 markers, for
/// mode-coverage pictures (ring, grid).
///
/// # Errors
///
/// As [`render_scatter`] and [`Image::save_png`].
pub fn save_scatter_with_modes_png(
    points: &[[f64; 2]],
    modes: &[[f64; 2]],
    extent: Extent,
    size: usize,
    path: &Path,
) -> Result<()> {
    let layers = [
        ScatterLayer {
            points,
            color: SAMPLE_COLOR,
            radius: 1,
        },
        ScatterLayer {
            points: modes,
            color: MODE_COLOR,
            radius: 2,
        },
    ];
    render_scatter(&layers, extent, size)?.save_png(path)
}

/// The colours of successive series in a line plot (matplotlib's `tab10`).
pub const PALETTE: [[u8; 3]; 10] = [
    [31, 119, 180],
    [255, 127, 14],
    [44, 160, 44],
    [214, 39, 40],
    [148, 103, 189],
    [140, 86, 75],
    [227, 119, 194],
    [127, 127, 127],
    [188, 189, 34],
    [23, 190, 207],
];

/// Width of the pictures written by [`save_line_plot_png`].
pub const LINE_PLOT_WIDTH: usize = 640;
/// Height of the pictures written by [`save_line_plot_png`].
pub const LINE_PLOT_HEIGHT: usize = 400;

/// Plot area margins: left, right, top, bottom.
const MARGINS: (usize, usize, usize, usize) = (40, 40, 12, 30);

/// Renders loss curves: series `i` is drawn in `PALETTE[i % 10]` against its
/// index (step), all sharing one y range spanning the finite values (padded by
/// 5 %). Axes with 5 ticks each, light grid lines, and a legend of colour
/// swatches (in series order, top right) are drawn; there is no text, so the
/// names are unused. Non-finite values break a line.
///
/// # Errors
///
/// [`Error::InvalidArgument`] when no series has a finite value, or the
/// picture is smaller than 100 × 60 or larger than [`MAX_SIDE`].
pub fn render_line_plot(series: &[(&str, &[f64])], width: usize, height: usize) -> Result<Image> {
    if width < 100 || height < 60 {
        return Err(Error::invalid(
            "line plot size",
            format!("{width}x{height}"),
            "at least 100x60",
        ));
    }
    let finite = series.iter().flat_map(|(_, ys)| ys.iter()).filter(|v| v.is_finite());
    let (y_lo, y_hi) = finite.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), &v| {
        (lo.min(v), hi.max(v))
    });
    if y_lo > y_hi {
        return Err(Error::invalid(
            "series",
            format!("{} series", series.len()),
            "at least one finite value",
        ));
    }
    let pad = if y_hi > y_lo {
        0.05 * (y_hi - y_lo)
    } else {
        0.5 * y_lo.abs().max(1.0)
    };
    let (y_lo, y_hi) = (y_lo - pad, y_hi + pad);
    let n_max = series.iter().map(|(_, ys)| ys.len()).max().unwrap_or(1);
    let x_hi = (n_max.max(2) - 1) as f64;

    let mut img = Image::new(width, height, 3, [255, 255, 255])?;
    let (ml, mr, mt, mb) = MARGINS;
    let (left, right) = (ml as i64, (width - mr) as i64);
    let (top, bottom) = (mt as i64, (height - mb) as i64);
    let to_px = |i: usize, y: f64| -> (i64, i64) {
        let u = i as f64 / x_hi;
        let v = (y - y_lo) / (y_hi - y_lo);
        let x = left as f64 + u * (right - left) as f64;
        let y = bottom as f64 - v * (bottom - top) as f64;
        (x.round() as i64, y.round() as i64)
    };

    // Grid lines and ticks at five evenly spaced positions.
    let n_ticks = 5;
    for t in 0..n_ticks {
        let f = t as f64 / (n_ticks - 1) as f64;
        let y = bottom - (f * (bottom - top) as f64).round() as i64;
        let x = left + (f * (right - left) as f64).round() as i64;
        draw_line(&mut img, (left, y), (right, y), [230, 230, 230]);
        draw_line(&mut img, (left - 5, y), (left, y), [0, 0, 0]);
        draw_line(&mut img, (x, bottom), (x, bottom + 5), [0, 0, 0]);
    }
    draw_line(&mut img, (left, top), (left, bottom), [0, 0, 0]);
    draw_line(&mut img, (left, bottom), (right, bottom), [0, 0, 0]);

    for (k, (_, ys)) in series.iter().enumerate() {
        let color = PALETTE[k % PALETTE.len()];
        let mut prev: Option<(i64, i64)> = None;
        for (i, &y) in ys.iter().enumerate() {
            if !y.is_finite() {
                prev = None;
                continue;
            }
            let p = to_px(i, y);
            match prev {
                Some(q) => {
                    draw_line(&mut img, q, p, color);
                    // A second line one pixel lower makes curves 2 px thick.
                    draw_line(&mut img, (q.0, q.1 + 1), (p.0, p.1 + 1), color);
                }
                None => {
                    for (dx, dy) in [(0, 0), (1, 0), (0, 1), (1, 1)] {
                        img.put(p.0 + dx, p.1 + dy, color);
                    }
                }
            }
            prev = Some(p);
        }
        // Legend swatch: 12×8 pixels in the right margin, one row per series.
        let (sx, sy) = (right + 10, top + (k as i64) * 12);
        for dy in 0..8 {
            for dx in 0..12 {
                img.put(sx + dx, sy + dy, color);
            }
        }
    }
    Ok(img)
}

/// Writes [`render_line_plot`] at [`LINE_PLOT_WIDTH`] × [`LINE_PLOT_HEIGHT`]
/// to `path`, atomically.
///
/// # Errors
///
/// As [`render_line_plot`] and [`Image::save_png`].
pub fn save_line_plot_png(series: &[(&str, &[f64])], path: &Path) -> Result<()> {
    render_line_plot(series, LINE_PLOT_WIDTH, LINE_PLOT_HEIGHT)?.save_png(path)
}

/// Bresenham's line from `a` to `b`, both ends included; pixels outside the
/// picture are skipped.
fn draw_line(img: &mut Image, a: (i64, i64), b: (i64, i64), color: [u8; 3]) {
    let (mut x, mut y) = a;
    let (dx, dy) = ((b.0 - a.0).abs(), -(b.1 - a.1).abs());
    let (sx, sy) = ((b.0 - a.0).signum(), (b.1 - a.1).signum());
    let mut err = dx + dy;
    loop {
        img.put(x, y, color);
        if (x, y) == b {
            break;
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

fn draw_frame(img: &mut Image, color: [u8; 3]) {
    let (w, h) = (img.width() as i64 - 1, img.height() as i64 - 1);
    draw_line(img, (0, 0), (w, 0), color);
    draw_line(img, (0, h), (w, h), color);
    draw_line(img, (0, 0), (0, h), color);
    draw_line(img, (w, 0), (w, h), color);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Decodes a PNG: `(width, height, color type, bytes)`.
    fn decode(path: &Path) -> (u32, u32, png::ColorType, Vec<u8>) {
        let file = std::io::BufReader::new(File::open(path).unwrap());
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
            .filter(|n| n.to_string_lossy().ends_with(".part"))
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
        assert!(matches!(err, Error::Io { .. }), "{err}");
        // A directory in the way of the final name: rename fails, temp removed.
        let blocked = dir.path().join("blocked.png");
        std::fs::create_dir(&blocked).unwrap();
        std::fs::write(blocked.join("x"), b"x").unwrap();
        assert!(save_image_grid(&xs, 1, &blocked).is_err());
        no_temporary_files(dir.path());
    }

    #[test]
    fn scatter_marks_points_and_modes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("scatter.png");
        // Extent [−1, 1]², 101 px: (0.5, 0.5) → pixel (75, 25).
        let points = [[0.5, 0.5], [f64::NAN, 0.0], [5.0, 5.0]];
        let modes = [[-0.5, -0.5]];
        save_scatter_with_modes_png(&points, &modes, Extent::square(1.0), 101, &path).unwrap();
        let (w, h, color, data) = decode(&path);
        assert_eq!((w, h, color), (101, 101, png::ColorType::Rgb));
        let px = |x: usize, y: usize| &data[(y * 101 + x) * 3..(y * 101 + x) * 3 + 3];
        assert_eq!(px(75, 25), &SAMPLE_COLOR);
        assert_eq!(px(76, 26), &SAMPLE_COLOR);
        assert_eq!(px(25, 75), &MODE_COLOR);
        assert_eq!(px(90, 10), &[255, 255, 255]);
        // The axes cross at the centre.
        assert_eq!(px(50, 10), &[210, 210, 210]);
        let err = save_scatter_png(&points, Extent::square(0.0), 101, &path).unwrap_err();
        assert!(matches!(err, Error::InvalidArgument { .. }), "{err}");
        assert!(save_scatter_png(&points, Extent::square(1.0), 2, &path).is_err());
    }

    #[test]
    fn extent_around_points() {
        let e = Extent::around(&[[1.0, -3.0], [f64::INFINITY, 0.0]], 0.1);
        assert!((e.x_max - 3.3).abs() < 1e-12 && (e.y_min + 3.3).abs() < 1e-12);
        assert_eq!(Extent::around(&[], 0.0), Extent::square(1.0));
    }

    #[test]
    fn line_plot_draws_each_series_in_its_colour() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("loss.png");
        let falling: Vec<f64> = (0..50).map(|i| 1.0 / (1.0 + i as f64)).collect();
        let rising: Vec<f64> = (0..30).map(|i| 0.02 * i as f64).collect();
        let broken = [0.5, f64::NAN, 0.4, f64::INFINITY];
        save_line_plot_png(&[("train", &falling), ("eval", &rising), ("broken", &broken)], &path).unwrap();
        let (w, h, color, data) = decode(&path);
        assert_eq!((w as usize, h as usize), (LINE_PLOT_WIDTH, LINE_PLOT_HEIGHT));
        assert_eq!(color, png::ColorType::Rgb);
        let count = |c: [u8; 3]| data.chunks_exact(3).filter(|p| *p == c).count();
        // Each curve leaves many pixels of its colour (the legend alone is 96).
        assert!(count(PALETTE[0]) > 300, "{}", count(PALETTE[0]));
        assert!(count(PALETTE[1]) > 300, "{}", count(PALETTE[1]));
        assert!(count(PALETTE[2]) >= 96);
        // Black axes.
        assert!(count([0, 0, 0]) > 500);
        // The first value of `falling` is the global maximum: top left of the plot area.
        let (left, top) = (MARGINS.0, MARGINS.2);
        let y_top = top + ((0.05 * 1.0) / (1.1 * 1.0) * (h as usize - MARGINS.2 - MARGINS.3) as f64).round() as usize;
        let i = (y_top * w as usize + left) * 3;
        assert_eq!(&data[i..i + 3], &PALETTE[0]);

        let none: [f64; 0] = [];
        assert!(save_line_plot_png(&[("empty", &none)], &path).is_err());
        assert!(save_line_plot_png(&[("nan", &[f64::NAN])], &path).is_err());
        // A single point or a constant series still plots.
        save_line_plot_png(&[("one", &[3.0])], &path).unwrap();
        save_line_plot_png(&[("flat", &[2.0, 2.0, 2.0])], &path).unwrap();
    }
}
