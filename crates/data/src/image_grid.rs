//! Pictures as PNG: image grids, 2-D scatter plots and loss curves.
//!
//! Everything is rendered into an in-memory [`Image`] (8-bit grey or RGB) and
//! written with the `png` crate. Files are written to a temporary name in the
//! target directory and renamed into place, so a crash never leaves a
//! half-written PNG under the final name. Plots are labelled in the tiny
//! bitmap [`font`]: tick values at nice steps (1, 2 or 5 ×
//! 10^k) on both axes, and for line plots the series names in a legend and
//! optional axis titles and title ([`PlotLabels`]).

use crate::{Error, Result, font};
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

    /// Draws `text` in the built-in [`font`] with the top left
    /// of its first glyph at `(x, y)`, one glyph every
    /// [`font::ADVANCE`] pixels; only the glyphs' pixels are set, and those
    /// outside the picture are skipped. See [`font::text_width`] for the
    /// width it takes.
    pub fn draw_text(&mut self, x: i64, y: i64, text: &str, rgb: [u8; 3]) {
        for (i, c) in text.chars().enumerate() {
            let x0 = x + (i * font::ADVANCE) as i64;
            for gy in 0..font::GLYPH_HEIGHT {
                for gx in 0..font::GLYPH_WIDTH {
                    if font::is_set(c, gx, gy) {
                        self.put(x0 + gx as i64, y + gy as i64, rgb);
                    }
                }
            }
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

/// Colour of tick labels, axis titles, legend names and titles.
const TEXT_COLOR: [u8; 3] = [0, 0, 0];
/// Colour of the axes of line plots and of tick marks.
const AXIS_COLOR: [u8; 3] = [0, 0, 0];
/// Colour of the grid lines of line plots.
const GRID_COLOR: [u8; 3] = [230, 230, 230];
/// Blank pixels between the picture's edge and its outermost text.
const PAD: i64 = 6;
/// Length of a tick mark outside the plot area.
const TICK: i64 = 5;
/// Blank pixels between a tick mark and its label.
const TICK_GAP: i64 = 3;
/// Vertical distance between two lines of text.
const LINE_PITCH: i64 = 12;
/// Height of one line of text (a glyph with its descender row).
const TEXT_HEIGHT: i64 = font::GLYPH_HEIGHT as i64;

/// A rectangle of pixels, all four edges included.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Rect {
    left: i64,
    top: i64,
    right: i64,
    bottom: i64,
}

impl Rect {
    fn contains(&self, x: i64, y: i64) -> bool {
        (self.left..=self.right).contains(&x) && (self.top..=self.bottom).contains(&y)
    }

    fn width(&self) -> i64 {
        self.right - self.left + 1
    }

    fn height(&self) -> i64 {
        self.bottom - self.top + 1
    }
}

/// The pixel width of `text` in the built-in font.
fn text_px(text: &str) -> i64 {
    font::text_width(text) as i64
}

/// The text of one picture: every string placed is recorded with its box, and
/// drawn unless `hidden` (which the tests use to see where text lands; the
/// layout never depends on it).
#[derive(Debug, Default)]
struct TextLayer {
    hidden: bool,
    boxes: Vec<Rect>,
}

impl TextLayer {
    /// Places `text` with the top left of its first glyph at `(x, y)`.
    fn put(&mut self, img: &mut Image, x: i64, y: i64, text: &str) {
        if text.is_empty() {
            return;
        }
        self.boxes.push(Rect {
            left: x,
            top: y,
            right: x + text_px(text) - 1,
            bottom: y + TEXT_HEIGHT - 1,
        });
        if !self.hidden {
            img.draw_text(x, y, text, TEXT_COLOR);
        }
    }
}

/// A plot area in pixels and the data ranges it shows: `x.0` at its left
/// edge, `x.1` at its right, `y.0` at its bottom, `y.1` at its top.
#[derive(Clone, Copy, Debug)]
struct Axes {
    area: Rect,
    x: (f64, f64),
    y: (f64, f64),
}

impl Axes {
    /// The column of data value `x` (not clamped to the area).
    fn column(&self, x: f64) -> i64 {
        let u = (x - self.x.0) / (self.x.1 - self.x.0);
        (self.area.left as f64 + u * (self.area.width() - 1) as f64).round() as i64
    }

    /// The row of data value `y` (not clamped to the area).
    fn row(&self, y: f64) -> i64 {
        let v = (self.y.1 - y) / (self.y.1 - self.y.0);
        (self.area.top as f64 + v * (self.area.height() - 1) as f64).round() as i64
    }

    /// The pixel of `p`, or `None` when it lies outside the data ranges.
    fn pixel(&self, p: [f64; 2]) -> Option<(i64, i64)> {
        let inside = |v: f64, (lo, hi): (f64, f64)| (lo..=hi).contains(&v);
        (inside(p[0], self.x) && inside(p[1], self.y)).then(|| (self.column(p[0]), self.row(p[1])))
    }
}

/// Tick positions on an axis: consecutive multiples of a step
/// `mantissa × 10^exponent` with `mantissa` 1, 2 or 5.
#[derive(Clone, Debug, PartialEq)]
struct Ticks {
    values: Vec<f64>,
    exponent: i32,
}

impl Ticks {
    /// Ticks for the finite range `lo < hi`. With `cover` the first tick is at
    /// or below `lo` and the last at or above `hi` (the axis is then stretched
    /// to them); otherwise every tick lies inside the range. `integer` allows
    /// only steps of at least 1. The step chosen gives 4 to 6 ticks when one
    /// can, else 4 to 8, else the count nearest 5; among those, covering
    /// ticks stretch the axis least, then the count nearest 5 and the larger
    /// step win.
    fn nice(lo: f64, hi: f64, cover: bool, integer: bool) -> Ticks {
        let k0 = (hi - lo).log10().floor() as i32;
        let min_k = if integer { 0 } else { k0 - 2 };
        let mut best: Option<((u8, u64, u64), Ticks)> = None;
        for exponent in (min_k.min(k0 + 1)..=k0 + 1).rev() {
            for mantissa in [5i64, 2, 1] {
                // Tick i sits at i·mantissa·10^exponent; dividing by an exact
                // power of ten keeps values like 0.3 exact to the last bit.
                let at = |i: i64| {
                    let units = (i * mantissa) as f64;
                    if exponent >= 0 {
                        units * 10f64.powi(exponent)
                    } else {
                        units / 10f64.powi(-exponent)
                    }
                };
                let step = at(1);
                let (first, last) = if cover {
                    ((lo / step).floor(), (hi / step).ceil())
                } else {
                    ((lo / step - 1e-9).ceil(), (hi / step + 1e-9).floor())
                };
                if last < first {
                    continue;
                }
                let (first, last) = (first as i64, last as i64);
                let count = (last - first + 1) as u64;
                let rank = if (4..=6).contains(&count) {
                    0
                } else if (4..=8).contains(&count) {
                    1
                } else {
                    2
                };
                // Covering ticks stretch the axis: prefer the least stretch
                // (in thousandths of the range), then the count nearest 5.
                let stretch = if cover {
                    ((at(last) - at(first)) / (hi - lo) * 1000.0).round() as u64
                } else {
                    0
                };
                let key = (rank, stretch, count.abs_diff(5));
                if best.as_ref().is_none_or(|(k, _)| key < *k) {
                    let values = (first..=last).map(at).collect();
                    best = Some((key, Ticks { values, exponent }));
                }
            }
        }
        best.map_or_else(
            || Ticks {
                values: vec![lo, hi],
                exponent: k0,
            },
            |(_, t)| t,
        )
    }

    /// The first and last tick (the axis range of covering ticks).
    fn range(&self) -> (f64, f64) {
        let first = self.values.first().copied().unwrap_or(0.0);
        (first, self.values.last().copied().unwrap_or(first))
    }

    /// Short labels: fixed point with the step's decimals (`105`, `0.25`,
    /// `-0.5`), or, when the largest magnitude is at least 10⁵ or below 0.01
    /// and it is no wider, scientific with the digits the step needs (`1e-3`,
    /// `2.5e5`). Zero is always `0`.
    fn labels(&self) -> Vec<String> {
        let fixed: Vec<String> = self.values.iter().map(|&v| self.fixed(v)).collect();
        let largest = self.values.iter().fold(0.0f64, |m, v| m.max(v.abs()));
        if largest >= 1e5 || (largest > 0.0 && largest < 1e-2) {
            let scientific: Vec<String> = self.values.iter().map(|&v| self.scientific(v)).collect();
            let widest = |labels: &[String]| labels.iter().map(String::len).max();
            if widest(&scientific) <= widest(&fixed) {
                return scientific;
            }
        }
        fixed
    }

    /// `v` with as many decimals as the step has (`0` for zero).
    fn fixed(&self, v: f64) -> String {
        let digits = (-self.exponent).max(0) as usize;
        let text = format!("{v:.digits$}");
        if text.parse::<f64>() == Ok(0.0) {
            "0".into()
        } else {
            text
        }
    }

    /// `v` as `1.5e-3`, with the mantissa digits the step needs, trailing
    /// zeros dropped (`0` for zero).
    fn scientific(&self, v: f64) -> String {
        if v == 0.0 {
            return "0".into();
        }
        // The decimal exponent, exactly: from Rust's own formatting.
        let magnitude: i32 = format!("{v:e}")
            .split_once('e')
            .and_then(|(_, e)| e.parse().ok())
            .unwrap_or(0);
        let digits = (magnitude - self.exponent).max(0) as usize;
        let text = format!("{v:.digits$e}");
        match text.split_once('e') {
            Some((mantissa, exp)) if mantissa.contains('.') => {
                format!("{}e{exp}", mantissa.trim_end_matches('0').trim_end_matches('.'))
            }
            _ => text,
        }
    }
}

/// An axis's ticks with their labels.
#[derive(Clone, Debug)]
struct LabelledTicks {
    ticks: Ticks,
    labels: Vec<String>,
}

impl LabelledTicks {
    fn new(ticks: Ticks) -> Self {
        let labels = ticks.labels();
        LabelledTicks { ticks, labels }
    }

    /// The width of the widest label.
    fn widest(&self) -> i64 {
        self.labels.iter().map(|l| text_px(l)).max().unwrap_or(0)
    }

    /// The width of the last label.
    fn last_width(&self) -> i64 {
        self.labels.last().map_or(0, |l| text_px(l))
    }
}

/// Tick marks and labels below the bottom edge of `axes.area` (`x`) and left
/// of its left edge (`y`), and with `grid` a line across the area at every y
/// tick.
fn draw_ticks(
    img: &mut Image,
    text: &mut TextLayer,
    axes: &Axes,
    x: &LabelledTicks,
    y: &LabelledTicks,
    grid: Option<[u8; 3]>,
) {
    let a = axes.area;
    for (&v, label) in y.ticks.values.iter().zip(&y.labels) {
        let row = axes.row(v);
        if let Some(color) = grid {
            draw_line(img, (a.left, row), (a.right, row), color);
        }
        draw_line(img, (a.left - TICK, row), (a.left - 1, row), AXIS_COLOR);
        // Digits are CAP_HEIGHT tall: centre them on the tick.
        let top = row - font::CAP_HEIGHT as i64 / 2;
        text.put(img, a.left - TICK - TICK_GAP - text_px(label), top, label);
    }
    for (&v, label) in x.ticks.values.iter().zip(&x.labels) {
        let column = axes.column(v);
        draw_line(img, (column, a.bottom + 1), (column, a.bottom + TICK), AXIS_COLOR);
        text.put(img, column - text_px(label) / 2, a.bottom + TICK + TICK_GAP, label);
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

/// The smallest scatter plot with tick labels; smaller ones give the whole
/// picture to the points.
pub const SCATTER_LABELS_MIN_SIZE: usize = 128;

/// Renders a `size × size` RGB scatter plot of `layers` (drawn in order) over
/// `extent` on white, with light grey axes through the origin when it is
/// visible and a grey frame. From [`SCATTER_LABELS_MIN_SIZE`] on, the frame
/// is a square plot area with ticks at nice values (1, 2 or 5 × 10^k)
/// labelled below and to the left; smaller plots fill the picture and carry
/// no text. Markers are clipped to the frame.
///
/// # Errors
///
/// [`Error::InvalidArgument`] for an empty or non-finite extent or a size
/// outside `8..=MAX_SIDE`.
pub fn render_scatter(layers: &[ScatterLayer<'_>], extent: Extent, size: usize) -> Result<Image> {
    Ok(scatter(layers, extent, size, &mut TextLayer::default())?.0)
}

/// [`render_scatter`], with its text going through `text`; also returns the
/// plot's axes.
fn scatter(layers: &[ScatterLayer<'_>], extent: Extent, size: usize, text: &mut TextLayer) -> Result<(Image, Axes)> {
    extent.validate()?;
    if !(8..=MAX_SIDE).contains(&size) {
        return Err(Error::invalid("size", size, format!("in 8..={MAX_SIDE}")));
    }
    let mut img = Image::new(size, size, 3, [255, 255, 255])?;
    let (x, y) = ((extent.x_min, extent.x_max), (extent.y_min, extent.y_max));
    let last = size as i64 - 1;
    let mut axes = Axes {
        area: Rect {
            left: 0,
            top: 0,
            right: last,
            bottom: last,
        },
        x,
        y,
    };
    if size >= SCATTER_LABELS_MIN_SIZE {
        let x_ticks = LabelledTicks::new(Ticks::nice(x.0, x.1, false, false));
        let y_ticks = LabelledTicks::new(Ticks::nice(y.0, y.1, false, false));
        let left = PAD + y_ticks.widest() + TICK_GAP + TICK;
        let right_margin = PAD.max(x_ticks.last_width() / 2 + 2);
        let top = PAD + 2;
        let bottom_margin = TICK + TICK_GAP + TEXT_HEIGHT + PAD;
        let side = (size as i64 - left - right_margin).min(size as i64 - top - bottom_margin);
        axes.area = Rect {
            left,
            top,
            right: left + side - 1,
            bottom: top + side - 1,
        };
        draw_ticks(&mut img, text, &axes, &x_ticks, &y_ticks, None);
    }
    let a = axes.area;
    let origin_color = [210, 210, 210];
    if let Some((x0, _)) = axes.pixel([0.0, y.0]) {
        draw_line(&mut img, (x0, a.top), (x0, a.bottom), origin_color);
    }
    if let Some((_, y0)) = axes.pixel([x.0, 0.0]) {
        draw_line(&mut img, (a.left, y0), (a.right, y0), origin_color);
    }
    draw_rect(&mut img, a, [128, 128, 128]);
    for layer in layers {
        let r = layer.radius as i64;
        for &p in layer.points {
            if let Some((px, py)) = axes.pixel(p) {
                for dy in -r..=r {
                    for dx in -r..=r {
                        if a.contains(px + dx, py + dy) {
                            img.put(px + dx, py + dy, layer.color);
                        }
                    }
                }
            }
        }
    }
    Ok((img, axes))
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

/// The text of a line plot besides its tick labels and series names, and the
/// x value of its first point. Every field is optional: the default has no
/// title, no axis titles, and x counting from 0.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PlotLabels {
    /// A line centred above the plot (empty: none).
    pub title: String,
    /// The x axis's title, centred under its tick labels (e.g. `epoch`).
    pub x_label: String,
    /// The y axis's title, written level at the top left, above the y axis
    /// (e.g. `loss (nats)`).
    pub y_label: String,
    /// The x value of every series' first point; point `i` is at
    /// `x_start + i`. When it is a whole number the x ticks are too.
    pub x_start: f64,
}

impl PlotLabels {
    /// Labels with the x axis titled `x_label` and starting at `x_start`, and
    /// the y axis titled `y_label`.
    pub fn axes(x_label: &str, x_start: f64, y_label: &str) -> Self {
        PlotLabels {
            x_label: x_label.into(),
            y_label: y_label.into(),
            x_start,
            ..PlotLabels::default()
        }
    }

    /// These labels with the title `title`.
    #[must_use]
    pub fn with_title(mut self, title: &str) -> Self {
        self.title = title.into();
        self
    }
}

/// Width of a legend's colour sample.
const LEGEND_SAMPLE: i64 = 16;
/// Blank pixels between a legend's colour sample and its name.
const LEGEND_GAP: i64 = 4;
/// Blank pixels between two legend entries on one line.
const LEGEND_SPACING: i64 = 14;

/// The legend's entries, line by line: `(series index, left edge)`, each
/// line right-aligned to `right` and no entry left of `left` unless it is
/// alone on its line.
fn legend_lines(names: &[&str], left: i64, right: i64) -> Vec<Vec<(usize, i64)>> {
    let width = |name: &str| LEGEND_SAMPLE + LEGEND_GAP + text_px(name);
    let mut lines: Vec<Vec<(usize, i64)>> = Vec::new();
    let mut line: Vec<usize> = Vec::new();
    let mut used = 0;
    for (k, name) in names.iter().enumerate() {
        let w = width(name);
        let need = if line.is_empty() { w } else { used + LEGEND_SPACING + w };
        if !line.is_empty() && need > right - left + 1 {
            lines.push(std::mem::take(&mut line).into_iter().map(|k| (k, 0)).collect());
            used = w;
        } else {
            used = need;
        }
        line.push(k);
    }
    if !line.is_empty() {
        lines.push(line.into_iter().map(|k| (k, 0)).collect());
    }
    // Right-align every line.
    for line in &mut lines {
        let total: i64 =
            line.iter().map(|&(k, _)| width(names[k])).sum::<i64>() + LEGEND_SPACING * (line.len() as i64 - 1);
        let mut x = right + 1 - total;
        for entry in line.iter_mut() {
            entry.1 = x;
            x += width(names[entry.0]) + LEGEND_SPACING;
        }
    }
    lines
}

/// Where the parts of a line plot go, top down: the title, a header with the
/// y axis's title (left) and the legend (right), the plot area, the x tick
/// labels and the x axis's title.
#[derive(Clone, Debug)]
struct LineLayout {
    /// Top of the title line, when there is a title.
    title_top: Option<i64>,
    /// Top of the header's first line.
    header_top: i64,
    /// Whether the axis titles are drawn.
    axis_titles: bool,
    /// The legend's lines, as [`legend_lines`].
    legend: Vec<Vec<(usize, i64)>>,
    area: Rect,
}

impl LineLayout {
    /// The layout of a `w × h` plot with series `names` and `labels`, or
    /// with `None` of the tick labels alone; `None` when it leaves the plot
    /// area narrower than 20 or lower than 10 pixels.
    fn new(
        text: Option<(&[&str], &PlotLabels)>,
        (w, h): (i64, i64),
        x_ticks: &LabelledTicks,
        y_ticks: &LabelledTicks,
    ) -> Option<Self> {
        let no_labels = PlotLabels::default();
        let (names, labels) = text.unwrap_or((&[], &no_labels));
        let left = PAD + y_ticks.widest() + TICK_GAP + TICK;
        let right = w - 1 - PAD.max(x_ticks.last_width() / 2 + 2);
        let title_top = (!labels.title.is_empty()).then_some(PAD);
        let header_top = PAD + title_top.map_or(0, |_| LINE_PITCH + 4);
        let legend_left = if labels.y_label.is_empty() {
            PAD
        } else {
            PAD + text_px(&labels.y_label) + 2 * LEGEND_SPACING
        };
        let legend = legend_lines(names, legend_left, right);
        let header_lines = legend.len().max(usize::from(!labels.y_label.is_empty())) as i64;
        // The top tick label reaches CAP_HEIGHT / 2 above the plot area.
        let top = header_top + header_lines * LINE_PITCH + 4;
        let x_title_lines = i64::from(!labels.x_label.is_empty());
        let bottom = h - 1 - (TICK + TICK_GAP + TEXT_HEIGHT + x_title_lines * LINE_PITCH + PAD);
        (right - left >= 20 && bottom - top >= 10).then(|| LineLayout {
            title_top,
            header_top,
            axis_titles: text.is_some(),
            legend,
            area: Rect {
                left,
                top,
                right,
                bottom,
            },
        })
    }
}

/// Renders loss curves: series `i` is drawn in `PALETTE[i % 10]` against its
/// index (step), all sharing one y range. Non-finite values break a line.
/// The y axis runs between nice values (1, 2 or 5 × 10^k apart, 4 to 8 of
/// them) that cover the finite values, with light grid lines at each; both
/// axes carry labelled ticks, and a legend of colour and name (in series
/// order) sits above the plot, right-aligned, on as many lines as it needs.
/// A picture too small for the legend and titles keeps only the ticks.
///
/// # Errors
///
/// As [`render_line_plot_labelled`].
pub fn render_line_plot(series: &[(&str, &[f64])], width: usize, height: usize) -> Result<Image> {
    render_line_plot_labelled(series, &PlotLabels::default(), width, height)
}

/// [`render_line_plot`] with a title, axis titles and the x value of the
/// first point from `labels`.
///
/// # Errors
///
/// [`Error::InvalidArgument`] when no series has a finite value,
/// `labels.x_start` is not finite, or the picture is smaller than 100 × 60,
/// larger than [`MAX_SIDE`] or too small to leave room for the plot next to
/// its text.
pub fn render_line_plot_labelled(
    series: &[(&str, &[f64])],
    labels: &PlotLabels,
    width: usize,
    height: usize,
) -> Result<Image> {
    Ok(line_plot(series, labels, width, height, &mut TextLayer::default())?.0)
}

/// [`render_line_plot_labelled`], with its text going through `text`; also
/// returns the plot's axes.
fn line_plot(
    series: &[(&str, &[f64])],
    labels: &PlotLabels,
    width: usize,
    height: usize,
    text: &mut TextLayer,
) -> Result<(Image, Axes)> {
    if width < 100 || height < 60 {
        return Err(Error::invalid(
            "line plot size",
            format!("{width}x{height}"),
            "at least 100x60",
        ));
    }
    if !labels.x_start.is_finite() {
        return Err(Error::invalid("x_start", labels.x_start, "finite"));
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
    let (y_lo, y_hi) = if y_hi > y_lo {
        (y_lo, y_hi)
    } else {
        let pad = 0.5 * y_lo.abs().max(1.0);
        (y_lo - pad, y_hi + pad)
    };
    let y_ticks = LabelledTicks::new(Ticks::nice(y_lo, y_hi, true, false));
    let n_max = series.iter().map(|(_, ys)| ys.len()).max().unwrap_or(1);
    let x0 = labels.x_start;
    let x1 = x0 + (n_max.max(2) - 1) as f64;
    let x_ticks = LabelledTicks::new(Ticks::nice(x0, x1, false, x0.fract() == 0.0));

    let names: Vec<&str> = series.iter().map(|(name, _)| *name).collect();
    let (w, h) = (width as i64, height as i64);
    // A picture too small for the titles and legend keeps only the ticks.
    let layout = LineLayout::new(Some((&names, labels)), (w, h), &x_ticks, &y_ticks)
        .or_else(|| LineLayout::new(None, (w, h), &x_ticks, &y_ticks))
        .ok_or_else(|| {
            Error::invalid(
                "line plot size",
                format!("{width}x{height}"),
                "large enough for the plot and its tick labels",
            )
        })?;
    let area = layout.area;
    let axes = Axes {
        area,
        x: (x0, x1),
        y: y_ticks.ticks.range(),
    };

    let mut img = Image::new(width, height, 3, [255, 255, 255])?;
    if let Some(y) = layout.title_top {
        text.put(&mut img, (w - text_px(&labels.title)) / 2, y, &labels.title);
    }
    if layout.axis_titles {
        text.put(&mut img, PAD, layout.header_top, &labels.y_label);
        let x_title_left = (area.left + area.right - text_px(&labels.x_label)) / 2;
        text.put(
            &mut img,
            x_title_left,
            area.bottom + TICK + TICK_GAP + LINE_PITCH,
            &labels.x_label,
        );
    }
    for (i, line) in layout.legend.iter().enumerate() {
        let y = layout.header_top + i as i64 * LINE_PITCH;
        for &(k, x) in line {
            let color = PALETTE[k % PALETTE.len()];
            // A thick stroke through the middle of the capitals.
            for dy in 2..5 {
                draw_line(&mut img, (x, y + dy), (x + LEGEND_SAMPLE - 1, y + dy), color);
            }
            text.put(&mut img, x + LEGEND_SAMPLE + LEGEND_GAP, y, names[k]);
        }
    }
    draw_ticks(&mut img, text, &axes, &x_ticks, &y_ticks, Some(GRID_COLOR));
    draw_line(&mut img, (area.left, area.top), (area.left, area.bottom), AXIS_COLOR);
    draw_line(
        &mut img,
        (area.left, area.bottom),
        (area.right, area.bottom),
        AXIS_COLOR,
    );

    for (k, (_, ys)) in series.iter().enumerate() {
        let color = PALETTE[k % PALETTE.len()];
        let mut prev: Option<(i64, i64)> = None;
        for (i, &y) in ys.iter().enumerate() {
            if !y.is_finite() {
                prev = None;
                continue;
            }
            let p = (axes.column(x0 + i as f64), axes.row(y));
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
    }
    Ok((img, axes))
}

/// Writes [`render_line_plot`] at [`LINE_PLOT_WIDTH`] × [`LINE_PLOT_HEIGHT`]
/// to `path`, atomically.
///
/// # Errors
///
/// As [`render_line_plot`] and [`Image::save_png`].
pub fn save_line_plot_png(series: &[(&str, &[f64])], path: &Path) -> Result<()> {
    save_line_plot_labelled_png(series, &PlotLabels::default(), path)
}

/// Writes [`render_line_plot_labelled`] at [`LINE_PLOT_WIDTH`] ×
/// [`LINE_PLOT_HEIGHT`] to `path`, atomically.
///
/// # Errors
///
/// As [`render_line_plot_labelled`] and [`Image::save_png`].
pub fn save_line_plot_labelled_png(series: &[(&str, &[f64])], labels: &PlotLabels, path: &Path) -> Result<()> {
    render_line_plot_labelled(series, labels, LINE_PLOT_WIDTH, LINE_PLOT_HEIGHT)?.save_png(path)
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

/// The outline of `r`.
fn draw_rect(img: &mut Image, r: Rect, color: [u8; 3]) {
    draw_line(img, (r.left, r.top), (r.right, r.top), color);
    draw_line(img, (r.left, r.bottom), (r.right, r.bottom), color);
    draw_line(img, (r.left, r.top), (r.left, r.bottom), color);
    draw_line(img, (r.right, r.top), (r.right, r.bottom), color);
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
        let series: [(&str, &[f64]); 3] = [("train", &falling), ("eval", &rising), ("broken", &broken)];
        save_line_plot_png(&series, &path).unwrap();
        let (w, h, color, data) = decode(&path);
        assert_eq!((w as usize, h as usize), (LINE_PLOT_WIDTH, LINE_PLOT_HEIGHT));
        assert_eq!(color, png::ColorType::Rgb);
        let count = |c: [u8; 3]| data.chunks_exact(3).filter(|p| *p == c).count();
        // Each curve leaves many pixels of its colour (the legend's sample alone is 48).
        assert!(count(PALETTE[0]) > 300, "{}", count(PALETTE[0]));
        assert!(count(PALETTE[1]) > 300, "{}", count(PALETTE[1]));
        assert!(count(PALETTE[2]) >= 48);
        // Black axes and text.
        assert!(count([0, 0, 0]) > 500);
        // The values span [0, 1]: the y axis runs from tick 0 to tick 1, and the
        // first value of `falling`, the maximum, sits at the top left corner.
        let (img, axes) = line_plot(
            &series,
            &PlotLabels::default(),
            w as usize,
            h as usize,
            &mut TextLayer::default(),
        )
        .unwrap();
        assert_eq!(img.data(), &data[..]);
        assert_eq!(axes.y, (0.0, 1.0));
        assert_eq!(
            img.pixel(axes.area.left as usize, axes.area.top as usize),
            Some(&PALETTE[0][..])
        );

        let none: [f64; 0] = [];
        assert!(save_line_plot_png(&[("empty", &none)], &path).is_err());
        assert!(save_line_plot_png(&[("nan", &[f64::NAN])], &path).is_err());
        // A single point or a constant series still plots.
        save_line_plot_png(&[("one", &[3.0])], &path).unwrap();
        save_line_plot_png(&[("flat", &[2.0, 2.0, 2.0])], &path).unwrap();
        // The smallest picture still has room for the plot.
        render_line_plot(&series, 100, 60).unwrap();
        let labels = PlotLabels::axes("epoch", f64::NAN, "nats");
        assert!(render_line_plot_labelled(&series, &labels, 200, 200).is_err());
        no_temporary_files(dir.path());
    }

    fn ticks(lo: f64, hi: f64, cover: bool, integer: bool) -> (Vec<f64>, Vec<String>) {
        let t = Ticks::nice(lo, hi, cover, integer);
        let labels = t.labels();
        (t.values, labels)
    }

    #[test]
    fn tick_labels_are_short() {
        let labels = |lo, hi| ticks(lo, hi, true, false).1;
        assert_eq!(labels(0.0, 0.004), ["0", "1e-3", "2e-3", "3e-3", "4e-3"]);
        assert_eq!(labels(0.0, 0.006), ["0", "2e-3", "4e-3", "6e-3"]);
        assert_eq!(labels(0.0, 4e5), ["0", "1e5", "2e5", "3e5", "4e5"]);
        assert_eq!(labels(1e5, 2e5), ["1e5", "1.2e5", "1.4e5", "1.6e5", "1.8e5", "2e5"]);
        assert_eq!(labels(-1.0, 1.0), ["-1.0", "-0.5", "0", "0.5", "1.0"]);
        assert_eq!(labels(-0.3, -0.1), ["-0.30", "-0.25", "-0.20", "-0.15", "-0.10"]);
        assert_eq!(labels(100.0, 120.0), ["100", "105", "110", "115", "120"]);
        assert_eq!(labels(0.2, 0.4), ["0.20", "0.25", "0.30", "0.35", "0.40"]);
        assert_eq!(labels(0.0, 1.0), ["0", "0.2", "0.4", "0.6", "0.8", "1.0"]);
        // A VAE's loss curve.
        assert_eq!(labels(99.2, 164.3), ["80", "100", "120", "140", "160", "180"]);
    }

    #[test]
    fn integer_ticks_for_epochs() {
        assert_eq!(ticks(1.0, 10.0, false, true).1, ["2", "4", "6", "8", "10"]);
        assert_eq!(ticks(1.0, 2.0, false, true).1, ["1", "2"]);
        assert_eq!(ticks(0.0, 49.0, false, true).1, ["0", "10", "20", "30", "40"]);
        assert_eq!(ticks(1.0, 5.0, false, true).1, ["1", "2", "3", "4", "5"]);
        assert_eq!(ticks(-4.4, 4.4, false, false).1, ["-4", "-2", "0", "2", "4"]);
    }

    proptest::proptest! {
        #[test]
        fn prop_nice_ticks_cover_the_range(lo in -1e6f64..1e6, log_span in -6f64..6.0, cover: bool) {
            let hi = lo + 10f64.powf(log_span);
            proptest::prop_assume!(hi > lo);
            let t = Ticks::nice(lo, hi, cover, false);
            let n = t.values.len();
            // Covering ticks can always number 4 to 8; ticks inside the range
            // sometimes only 3 (steps 1, 2, 5 leave gaps).
            let counts = if cover { 4..=8 } else { 3..=8 };
            proptest::prop_assert!(counts.contains(&n), "{n} ticks for [{lo}, {hi}]: {:?}", t.values);
            // Consecutive multiples of one step 1, 2 or 5 × 10^exponent (up
            // to rounding, relative to the values' magnitude).
            let unit = 10f64.powi(t.exponent);
            let tol = 8.0 * f64::EPSILON * lo.abs().max(hi.abs()) + 1e-9 * unit;
            let step = [1.0, 2.0, 5.0]
                .into_iter()
                .map(|m| m * unit)
                .find(|s| ((t.values[1] - t.values[0]) - s).abs() < tol);
            proptest::prop_assert!(step.is_some(), "{:?}", t.values);
            let step = step.unwrap_or(unit);
            for (i, v) in t.values.iter().enumerate() {
                proptest::prop_assert!(((v - t.values[0]) - i as f64 * step).abs() < tol);
                proptest::prop_assert!((v / step - (v / step).round()).abs() < 1e-6 + tol / step);
            }
            let (first, last) = t.range();
            let slack = 1e-9 * step;
            if cover {
                proptest::prop_assert!(first <= lo && last >= hi, "{:?} for [{lo}, {hi}]", t.values);
            } else {
                proptest::prop_assert!(first >= lo - slack && last <= hi + slack, "{:?} for [{lo}, {hi}]", t.values);
            }
            // Labels are distinct.
            let labels = t.labels();
            let mut unique = labels.clone();
            unique.dedup();
            proptest::prop_assert_eq!(unique.len(), n, "{:?}", labels);
        }
    }

    /// Renders with and without the glyphs and checks the text: it changes
    /// only pixels inside its boxes, the boxes lie in the picture, apart from
    /// each other and from the plot area, and some are left of the y axis.
    fn check_text(render: impl Fn(&mut TextLayer) -> (Image, Axes)) -> Vec<Rect> {
        let mut shown = TextLayer::default();
        let (with, axes) = render(&mut shown);
        let mut hidden = TextLayer {
            hidden: true,
            ..TextLayer::default()
        };
        let (without, _) = render(&mut hidden);
        assert_eq!(shown.boxes, hidden.boxes);
        let boxes = shown.boxes;
        let mut changed = 0;
        for y in 0..with.height() {
            for x in 0..with.width() {
                if with.pixel(x, y) != without.pixel(x, y) {
                    changed += 1;
                    let inside = boxes.iter().any(|b| b.contains(x as i64, y as i64));
                    assert!(inside, "pixel ({x}, {y}) changed outside the text");
                    assert_eq!(with.pixel(x, y), Some(&TEXT_COLOR[..]));
                }
            }
        }
        assert!(changed > 100, "{changed}");
        let apart = |a: &Rect, b: &Rect| a.right < b.left || b.right < a.left || a.bottom < b.top || b.bottom < a.top;
        for (i, a) in boxes.iter().enumerate() {
            assert!(a.left >= 0 && a.top >= 0, "{a:?}");
            assert!(
                a.right < with.width() as i64 && a.bottom < with.height() as i64,
                "{a:?}"
            );
            assert!(apart(a, &axes.area), "{a:?} overlaps the plot area {:?}", axes.area);
            for b in &boxes[i + 1..] {
                assert!(apart(a, b), "{a:?} overlaps {b:?}");
            }
        }
        let left_of_axis = boxes
            .iter()
            .filter(|b| b.right < axes.area.left && b.top >= axes.area.top - 4 && b.bottom <= axes.area.bottom + 4)
            .count();
        assert!(left_of_axis >= 4, "{left_of_axis} y tick labels");
        boxes
    }

    #[test]
    fn line_plot_text_lands_only_in_its_boxes() {
        let train: Vec<f64> = (0..10).map(|i| 100.0 + 60.0 / (1.0 + i as f64)).collect();
        let test: Vec<f64> = train.iter().map(|v| v - 5.0).collect();
        let series: [(&str, &[f64]); 2] = [("train_loss", &train), ("test_loss", &test)];
        let labels = PlotLabels::axes("epoch", 1.0, "loss (nats)").with_title("vae-mnist");
        let boxes = check_text(|text| line_plot(&series, &labels, 640, 400, text).unwrap());
        // 6 y ticks (100 to 160 by 20 would be 4; 100..=160 by 10 is 7:
        // whichever, at least 4), 5 epochs, 2 names, 3 titles.
        assert!(boxes.len() >= 4 + 5 + 2 + 3, "{}", boxes.len());
        // Many series wrap the legend onto more lines, still apart.
        let many: Vec<(String, Vec<f64>)> = (0..12).map(|k| (format!("series_{k}"), vec![k as f64, 1.0])).collect();
        let many: Vec<(&str, &[f64])> = many.iter().map(|(n, v)| (n.as_str(), v.as_slice())).collect();
        check_text(|text| line_plot(&many, &labels, 640, 400, text).unwrap());
        check_text(|text| line_plot(&many, &PlotLabels::default(), 300, 200, text).unwrap());
    }

    #[test]
    fn scatter_text_lands_only_in_its_boxes() {
        let points: Vec<[f64; 2]> = (0..200)
            .map(|i| [(i as f64 * 0.1).sin() * 3.0, (i as f64 * 0.37).cos() * 3.0])
            .collect();
        let layer = ScatterLayer {
            points: &points,
            color: SAMPLE_COLOR,
            radius: 1,
        };
        let extent = Extent::around(&points, 0.1);
        let boxes = check_text(|text| scatter(&[layer], extent, 300, text).unwrap());
        assert!(boxes.len() >= 8, "{}", boxes.len());
        // The plot area is square and takes most of the picture.
        let (_, axes) = scatter(&[layer], extent, 300, &mut TextLayer::default()).unwrap();
        assert_eq!(axes.area.width(), axes.area.height());
        assert!(axes.area.width() > 240, "{:?}", axes.area);
    }
}
