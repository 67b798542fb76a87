//! Plots as PNG, drawn by [`plotters`]: loss curves ([`line_plot`]) and 2-D
//! scatter plots of samples over data and mode centres ([`scatter_plot`]).
//!
//! plotters' bitmap backend renders into an RGB buffer of ours, the `png`
//! crate encodes it, and deepgen-core's one atomic writer
//! ([`write_atomic`]: temporary name, then rename) puts it in place, so a
//! crash never leaves a half-written picture under the final name. Text is
//! drawn by ab_glyph from Hack Regular, a TrueType font embedded in the
//! binary by the `epaint_default_fonts` crate (egui's fonts; Hack is under
//! the MIT licence and the Bitstream Vera licence), so plots carry legible
//! text on a machine with no font installed.

use anyhow::{Context, Result, anyhow, ensure};
use deepgen_core::checkpoint::write_atomic;
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::FontStyle;
use std::ops::Range;
use std::path::Path;
use std::sync::OnceLock;

/// Width of the pictures [`line_plot`] writes.
pub const LINE_PLOT_WIDTH: u32 = 800;
/// Height of the pictures [`line_plot`] writes.
pub const LINE_PLOT_HEIGHT: u32 = 500;
/// Side of the square plot area of [`scatter_plot`]'s pictures.
pub const SCATTER_AREA_SIDE: u32 = 560;

/// The family name the embedded font is registered under. plotters' own
/// defaults ask for `sans-serif`, so registering it there also covers any
/// text whose font we do not set.
const FONT: &str = "sans-serif";
/// Font sizes in pixels: title, axis titles, tick labels and legend.
const TITLE_SIZE: u32 = 22;
const AXIS_TITLE_SIZE: u32 = 16;
const LABEL_SIZE: u32 = 14;

/// Series colours (matplotlib's `tab10`), cycled.
pub const PALETTE: [(u8, u8, u8); 10] = [
    (31, 119, 180),
    (255, 127, 14),
    (44, 160, 44),
    (214, 39, 40),
    (148, 103, 189),
    (140, 86, 75),
    (227, 119, 194),
    (127, 127, 127),
    (188, 189, 34),
    (23, 190, 207),
];

/// Series with at most this many points get a marker at each point, so a
/// run of a few epochs shows where the measurements are.
const MAX_MARKED_POINTS: usize = 40;

/// One named curve of a [`line_plot`].
#[derive(Clone, Copy, Debug)]
pub struct Series<'a> {
    /// The legend's name for it.
    pub name: &'a str,
    /// `(x, y)` points in drawing order; non-finite ones are skipped.
    pub points: &'a [(f64, f64)],
}

/// One set of points of a [`scatter_plot`], drawn in one colour.
#[derive(Clone, Copy, Debug)]
pub struct ScatterLayer<'a> {
    /// The legend's name for it (empty: not in the legend).
    pub name: &'a str,
    /// `[x, y]` points; non-finite ones and those outside the extent are skipped.
    pub points: &'a [[f64; 2]],
    /// Marker colour, RGB.
    pub color: (u8, u8, u8),
    /// Marker radius in pixels (0 draws one pixel).
    pub size: u32,
}

/// Writes a line plot of `series` to `path` as an
/// [`LINE_PLOT_WIDTH`] × [`LINE_PLOT_HEIGHT`] RGB PNG: each series in its own
/// colour with its name in the legend, `title` above, `x_label` and
/// `y_label` as axis titles, tick labels on both axes. Non-finite points are
/// skipped; the axes span the finite ones. When every x is an integer (epochs)
/// the x ticks are integers too.
///
/// # Errors
/// When no series has a finite point, or the file cannot be written (the
/// error names it); nothing is written then.
pub fn line_plot(series: &[Series<'_>], title: &str, x_label: &str, y_label: &str, path: &Path) -> Result<()> {
    let (width, height) = (LINE_PLOT_WIDTH, LINE_PLOT_HEIGHT);
    let (rgb, ()) = render(width, height, |root| draw_lines(root, series, title, x_label, y_label))
        .with_context(|| format!("cannot draw line plot `{}`", path.display()))?;
    write_png(&rgb, width, height, path)
}

/// The finite points of each series, in order.
fn finite_series(series: &[Series<'_>]) -> Vec<Vec<(f64, f64)>> {
    series
        .iter()
        .map(|s| {
            s.points
                .iter()
                .copied()
                .filter(|(x, y)| x.is_finite() && y.is_finite())
                .collect()
        })
        .collect()
}

/// The span of the y values.
fn y_range_span(points: &[(f64, f64)]) -> f64 {
    let (lo, hi) = points.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), p| {
        (lo.min(p.1), hi.max(p.1))
    });
    hi - lo
}

fn draw_lines(
    root: &DrawingArea<BitMapBackend<'_>, Shift>,
    series: &[Series<'_>],
    title: &str,
    x_label: &str,
    y_label: &str,
) -> Result<()> {
    let finite = finite_series(series);
    let all: Vec<(f64, f64)> = finite.iter().flatten().copied().collect();
    ensure!(!all.is_empty(), "no finite point to plot in {} series", series.len());
    let x_range = padded_range(all.iter().map(|p| p.0), 0.0);
    let y_range = padded_range(all.iter().map(|p| p.1), 0.05);
    let integer_x = all.iter().all(|(x, _)| x.fract() == 0.0);

    let mut chart = ChartBuilder::on(root)
        .caption(title, (FONT, TITLE_SIZE))
        .margin(12)
        // Room for the last x tick label, which is centred on the right edge.
        .margin_right(28)
        .x_label_area_size(48)
        .y_label_area_size(72)
        .build_cartesian_2d(x_range.clone(), y_range)?;
    let whole = |v: &f64| format!("{v:.0}");
    // As many decimals as ticks about a tenth of the span apart need:
    // `140`, not `140.0`, for losses in nats.
    let span = y_range_span(&all);
    let decimals = if span > 0.0 {
        (1.0 - span.log10()).ceil().max(0.0) as usize
    } else {
        2
    };
    let y_ticks = move |v: &f64| format!("{v:.decimals$}");
    let mut mesh = chart.configure_mesh();
    mesh.y_label_formatter(&y_ticks);
    mesh.x_desc(x_label)
        .y_desc(y_label)
        .label_style((FONT, LABEL_SIZE))
        .axis_desc_style((FONT, AXIS_TITLE_SIZE))
        .light_line_style(RGBColor(240, 240, 240));
    if integer_x {
        // With no more labels than integers in the span, plotters' nice steps
        // are whole numbers, so no epoch is labelled 1.5.
        let integers = (x_range.end - x_range.start).floor() as usize + 1;
        mesh.x_labels(integers.clamp(2, 10)).x_label_formatter(&whole);
    }
    mesh.draw()?;

    for (i, (s, points)) in series.iter().zip(&finite).enumerate() {
        let color = rgb(PALETTE[i % PALETTE.len()]);
        let marker = if points.len() <= MAX_MARKED_POINTS { 3 } else { 0 };
        chart
            .draw_series(LineSeries::new(points.iter().copied(), color.stroke_width(2)).point_size(marker))?
            .label(s.name)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 24, y)], color.stroke_width(3)));
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .label_font((FONT, LABEL_SIZE))
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()?;
    Ok(())
}

/// Writes a scatter plot of `layers` (drawn in order, each in its colour,
/// the named ones in the legend) to `path` as an RGB PNG whose plot area is a
/// [`SCATTER_AREA_SIDE`]-pixel square with equal scales on both axes, and
/// `title` above. `extent` is `([x_min, x_max], [y_min, y_max])`; the shorter
/// side is widened about its centre to the longer one's length so a circle
/// stays round. `None` centres a square on the finite points, 10 % larger
/// than they need.
///
/// # Errors
/// When no layer has a finite point, `extent` is not finite with
/// `min < max`, or the file cannot be written (the error names it); nothing
/// is written then.
pub fn scatter_plot(
    layers: &[ScatterLayer<'_>],
    title: &str,
    extent: Option<([f64; 2], [f64; 2])>,
    path: &Path,
) -> Result<()> {
    let (width, height) = scatter_size();
    let panel = Panel {
        layers,
        arrows: &[],
        title,
    };
    let (rgb, _area) = render(width, height, |root| draw_scatter(root, &panel, extent))
        .with_context(|| format!("cannot draw scatter plot `{}`", path.display()))?;
    write_png(&rgb, width, height, path)
}

/// Arrows of a vector field (a score) at points: each drawn from its origin
/// along its vector, in one colour.
#[derive(Clone, Copy, Debug)]
pub struct ArrowLayer<'a> {
    /// Where each arrow starts.
    pub origins: &'a [[f64; 2]],
    /// Each arrow's displacement, in data units.
    pub vectors: &'a [[f64; 2]],
    /// Line colour, RGB.
    pub color: (u8, u8, u8),
}

/// One square panel of a [`panels_plot`]: points, arrows and a title.
#[derive(Clone, Copy, Debug)]
pub struct Panel<'a> {
    /// Point layers, drawn first.
    pub layers: &'a [ScatterLayer<'a>],
    /// Arrow layers, drawn over the points.
    pub arrows: &'a [ArrowLayer<'a>],
    /// The panel's title.
    pub title: &'a str,
}

/// Writes `panels` side by side, each a [`scatter_plot`]-style square over
/// the same `extent` (so a learned vector field sits beside the true one
/// on equal axes), to `path` as a PNG.
///
/// # Errors
/// As [`scatter_plot`]; no panel.
pub fn panels_plot(panels: &[Panel<'_>], extent: ([f64; 2], [f64; 2]), path: &Path) -> Result<()> {
    ensure!(!panels.is_empty(), "no panel to draw");
    let (width, height) = scatter_size();
    let total = width * panels.len() as u32;
    let (rgb, ()) = render(total, height, |root| {
        for (i, panel) in panels.iter().enumerate() {
            let x0 = (i as u32 * width) as i32;
            let area = root.clone().shrink((x0, 0), (width, height));
            draw_scatter(&area, panel, Some(extent))?;
        }
        Ok(())
    })
    .with_context(|| format!("cannot draw `{}`", path.display()))?;
    write_png(&rgb, total, height, path)
}

/// Pixels around a scatter plot's area: margin, title band, label areas.
const SCATTER_MARGIN: u32 = 12;
const SCATTER_TITLE: u32 = 40;
const SCATTER_LEFT: u32 = 64;
const SCATTER_BOTTOM: u32 = 44;

/// The picture size that leaves exactly a [`SCATTER_AREA_SIDE`] square for
/// the plot.
fn scatter_size() -> (u32, u32) {
    let width = SCATTER_AREA_SIDE + SCATTER_LEFT + 2 * SCATTER_MARGIN;
    let height = SCATTER_AREA_SIDE + SCATTER_TITLE + SCATTER_BOTTOM + 2 * SCATTER_MARGIN;
    (width, height)
}

/// The square extent a scatter plot shows: `extent` widened to a square, or
/// one around the finite points.
fn square_extent(points: &[[f64; 2]], extent: Option<([f64; 2], [f64; 2])>) -> Result<(Range<f64>, Range<f64>)> {
    let ([x0, x1], [y0, y1]) = match extent {
        Some(e) => {
            let ([x0, x1], [y0, y1]) = e;
            let ok = |lo: f64, hi: f64| lo.is_finite() && hi.is_finite() && lo < hi;
            ensure!(
                ok(x0, x1) && ok(y0, y1),
                "extent {e:?} is not finite with min < max on both axes"
            );
            e
        }
        None => {
            let fold = |d: usize| {
                points.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), p| {
                    (lo.min(p[d]), hi.max(p[d]))
                })
            };
            let ((x0, x1), (y0, y1)) = (fold(0), fold(1));
            let half = 0.5 * (x1 - x0).max(y1 - y0) * 1.1;
            let half = if half > 0.0 { half } else { 1.0 };
            let (cx, cy) = (0.5 * (x0 + x1), 0.5 * (y0 + y1));
            ([cx - half, cx + half], [cy - half, cy + half])
        }
    };
    let half = 0.5 * (x1 - x0).max(y1 - y0);
    let (cx, cy) = (0.5 * (x0 + x1), 0.5 * (y0 + y1));
    Ok(((cx - half)..(cx + half), (cy - half)..(cy + half)))
}

/// Draws the scatter plot; returns the plot area's pixel columns and rows.
fn draw_scatter(
    root: &DrawingArea<BitMapBackend<'_>, Shift>,
    panel: &Panel<'_>,
    extent: Option<([f64; 2], [f64; 2])>,
) -> Result<(Range<i32>, Range<i32>)> {
    let (layers, title) = (panel.layers, panel.title);
    let finite: Vec<Vec<[f64; 2]>> = layers
        .iter()
        .map(|l| {
            l.points
                .iter()
                .copied()
                .filter(|p| p.iter().all(|v| v.is_finite()))
                .collect()
        })
        .collect();
    let all: Vec<[f64; 2]> = finite.iter().flatten().copied().collect();
    ensure!(
        !all.is_empty() || (extent.is_some() && !panel.arrows.is_empty()),
        "no finite point to plot in {} layers",
        layers.len()
    );
    let (x_range, y_range) = square_extent(&all, extent)?;

    let root = root.margin(SCATTER_MARGIN, SCATTER_MARGIN, SCATTER_MARGIN, SCATTER_MARGIN);
    let (title_band, rest) = root.split_vertically(SCATTER_TITLE);
    title_band.draw(&Text::new(
        title.to_string(),
        (SCATTER_LEFT as i32 + SCATTER_AREA_SIDE as i32 / 2, 4),
        (FONT, TITLE_SIZE)
            .into_font()
            .color(&BLACK)
            .pos(plotters::style::text_anchor::Pos::new(
                plotters::style::text_anchor::HPos::Center,
                plotters::style::text_anchor::VPos::Top,
            )),
    ))?;
    let mut chart = ChartBuilder::on(&rest)
        .x_label_area_size(SCATTER_BOTTOM)
        .y_label_area_size(SCATTER_LEFT)
        .build_cartesian_2d(x_range.clone(), y_range.clone())?;
    chart
        .configure_mesh()
        .label_style((FONT, LABEL_SIZE))
        .light_line_style(RGBColor(240, 240, 240))
        .draw()?;

    let inside = |p: &[f64; 2]| x_range.contains(&p[0]) && y_range.contains(&p[1]);
    for (layer, points) in layers.iter().zip(&finite) {
        let color = rgb(layer.color);
        let shown = points.iter().filter(|p| inside(p)).map(|p| (p[0], p[1]));
        let drawn = chart.draw_series(PointSeries::<_, _, Circle<_, _>, _>::new(
            shown,
            layer.size,
            color.filled(),
        ))?;
        if !layer.name.is_empty() {
            drawn
                .label(layer.name)
                .legend(move |(x, y)| Circle::new((x + 8, y), 4, color.filled()));
        }
    }
    for arrows in panel.arrows {
        let style = rgb(arrows.color).stroke_width(1);
        let lines = arrows
            .origins
            .iter()
            .zip(arrows.vectors)
            .filter(|(o, v)| inside(o) && o.iter().chain(v.iter()).all(|x| x.is_finite()))
            .flat_map(|(o, v)| arrow_strokes(*o, *v));
        chart.draw_series(lines.map(|stroke| PathElement::new(stroke, style)))?;
    }
    if layers.iter().any(|l| !l.name.is_empty()) {
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperRight)
            .label_font((FONT, LABEL_SIZE))
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .draw()?;
    }
    Ok(chart.plotting_area().get_pixel_range())
}

/// The shaft of the arrow from `o` along `v` and its two head strokes
/// (a quarter of its length, 25° off the shaft).
fn arrow_strokes(o: [f64; 2], v: [f64; 2]) -> [Vec<(f64, f64)>; 3] {
    let tip = (o[0] + v[0], o[1] + v[1]);
    let head = |angle: f64| {
        let (sin, cos) = angle.sin_cos();
        let back = (-0.25 * v[0], -0.25 * v[1]);
        vec![
            tip,
            (tip.0 + back.0 * cos - back.1 * sin, tip.1 + back.0 * sin + back.1 * cos),
        ]
    };
    let spread = 25f64.to_radians();
    [vec![(o[0], o[1]), tip], head(spread), head(-spread)]
}

fn rgb((r, g, b): (u8, u8, u8)) -> RGBColor {
    RGBColor(r, g, b)
}

/// `lo..hi` of the finite `values`, widened by `pad` of its length on each
/// side; a single value `v` gives `v ± max(|v| / 10, 1/2)`.
fn padded_range(values: impl Iterator<Item = f64>, pad: f64) -> Range<f64> {
    let (lo, hi) = values.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| (lo.min(v), hi.max(v)));
    if hi > lo {
        let d = pad * (hi - lo);
        (lo - d)..(hi + d)
    } else {
        let d = (lo.abs() / 10.0).max(0.5);
        (lo - d)..(hi + d)
    }
}

/// Registers the embedded font with plotters, once per process.
fn register_font() -> Result<()> {
    static REGISTERED: OnceLock<bool> = OnceLock::new();
    let ok = *REGISTERED.get_or_init(|| {
        plotters::style::register_font(FONT, FontStyle::Normal, epaint_default_fonts::HACK_REGULAR).is_ok()
    });
    ensure!(ok, "the embedded font (Hack Regular) cannot be read");
    Ok(())
}

/// Runs `draw` on a white `width × height` RGB bitmap; returns its bytes
/// and what `draw` returned.
fn render<T>(
    width: u32,
    height: u32,
    draw: impl FnOnce(&DrawingArea<BitMapBackend<'_>, Shift>) -> Result<T>,
) -> Result<(Vec<u8>, T)> {
    register_font()?;
    let mut buffer = vec![0u8; width as usize * height as usize * 3];
    let drawn = {
        let root = BitMapBackend::with_buffer(&mut buffer, (width, height)).into_drawing_area();
        root.fill(&WHITE)?;
        let drawn = draw(&root)?;
        root.present().map_err(|e| anyhow!("cannot finish the picture: {e}"))?;
        drawn
    };
    Ok((buffer, drawn))
}

/// Encodes the RGB bytes as a PNG and writes them to `path` atomically.
fn write_png(rgb: &[u8], width: u32, height: u32, path: &Path) -> Result<()> {
    let mut bytes = Vec::new();
    {
        let mut encoder = png::Encoder::new(&mut bytes, width, height);
        encoder.set_color(png::ColorType::Rgb);
        encoder.set_depth(png::BitDepth::Eight);
        let mut writer = encoder.write_header()?;
        writer.write_image_data(rgb)?;
        writer.finish()?;
    }
    write_atomic(path, &bytes).with_context(|| format!("cannot write plot `{}`", path.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Width, height, colour type and pixel bytes of the PNG at `path`.
    fn decode(path: &Path) -> (u32, u32, png::ColorType, Vec<u8>) {
        let bytes = std::fs::read(path).unwrap();
        let mut reader = png::Decoder::new(std::io::Cursor::new(bytes)).read_info().unwrap();
        let mut buf = vec![0; reader.output_buffer_size().unwrap()];
        let info = reader.next_frame(&mut buf).unwrap();
        buf.truncate(info.buffer_size());
        (info.width, info.height, info.color_type, buf)
    }

    fn count(data: &[u8], color: (u8, u8, u8)) -> usize {
        data.chunks_exact(3)
            .filter(|p| *p == [color.0, color.1, color.2])
            .count()
    }

    /// Pixels darker than mid-grey in every channel: text, axes and frame.
    fn dark(data: &[u8]) -> usize {
        data.chunks_exact(3).filter(|p| p.iter().all(|&c| c < 100)).count()
    }

    fn files_in(dir: &Path) -> Vec<String> {
        std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect()
    }

    fn loss_points(start: f64, n: usize, scale: f64) -> Vec<(f64, f64)> {
        (0..n)
            .map(|i| (1.0 + i as f64, start + scale / (1.0 + i as f64)))
            .collect()
    }

    #[test]
    fn line_plot_is_a_png_with_each_series_in_its_colour() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("loss.png");
        let train = loss_points(100.0, 20, 60.0);
        let mut test = loss_points(105.0, 20, 50.0);
        test[3].1 = f64::NAN;
        test[7].0 = f64::INFINITY;
        let series = [
            Series {
                name: "train_loss",
                points: &train,
            },
            Series {
                name: "test_loss",
                points: &test,
            },
        ];
        line_plot(&series, "vae-mnist", "epoch", "loss per image", &path).unwrap();
        let (w, h, color, data) = decode(&path);
        assert_eq!((w, h, color), (LINE_PLOT_WIDTH, LINE_PLOT_HEIGHT, png::ColorType::Rgb));
        for c in &PALETTE[..2] {
            // A 2-pixel line across most of the plot leaves hundreds.
            assert!(count(&data, *c) > 300, "{c:?}: {}", count(&data, *c));
        }
        assert!(count(&data, PALETTE[2]) == 0);
        assert!(dark(&data) > 1000, "{}", dark(&data));
        assert_eq!(files_in(dir.path()), ["loss.png"]);
    }

    #[test]
    fn text_is_drawn() {
        // The same plot with and without a title and axis titles: only text
        // differs, and it must leave pixels.
        let points = loss_points(1.0, 5, 1.0);
        let series = [Series {
            name: "loss",
            points: &points,
        }];
        let render_with = |title: &str, x: &str, y: &str| {
            render(LINE_PLOT_WIDTH, LINE_PLOT_HEIGHT, |root| {
                draw_lines(root, &series, title, x, y)
            })
            .unwrap()
            .0
        };
        let with = render_with("A long title: loss per image", "epoch", "nats");
        let without = render_with("", "", "");
        let changed = with
            .chunks_exact(3)
            .zip(without.chunks_exact(3))
            .filter(|(a, b)| a != b)
            .count();
        assert!(changed > 200, "{changed}");
        // The x tick labels are integers for integer x.
        assert!(dark(&with) > dark(&without));
    }

    #[test]
    fn a_single_point_or_a_flat_series_still_plots() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("one.png");
        for points in [vec![(1.0, 3.0)], vec![(1.0, 2.0), (2.0, 2.0), (3.0, 2.0)]] {
            let series = [Series {
                name: "s",
                points: &points,
            }];
            line_plot(&series, "", "x", "y", &path).unwrap();
            let (_, _, _, data) = decode(&path);
            assert!(count(&data, PALETTE[0]) > 0);
        }
    }

    #[test]
    fn nothing_to_plot_is_an_error_and_writes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bad.png");
        let nan = [(1.0, f64::NAN), (f64::NAN, 2.0), (f64::INFINITY, 1.0)];
        let cases: [&[Series<'_>]; 3] = [
            &[],
            &[Series {
                name: "empty",
                points: &[],
            }],
            &[Series {
                name: "nan",
                points: &nan,
            }],
        ];
        for series in cases {
            let err = line_plot(series, "t", "x", "y", &path).unwrap_err();
            assert!(format!("{err:#}").contains("bad.png"), "{err:#}");
        }
        let nan2 = [[f64::NAN, 0.0]];
        let layer = ScatterLayer {
            name: "nan",
            points: &nan2,
            color: (255, 0, 0),
            size: 2,
        };
        assert!(scatter_plot(&[], "t", None, &path).is_err());
        assert!(scatter_plot(&[layer], "t", None, &path).is_err());
        assert!(files_in(dir.path()).is_empty(), "{:?}", files_in(dir.path()));
    }

    #[test]
    fn a_missing_folder_is_an_error_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("missing").join("loss.png");
        let points = [(1.0, 1.0), (2.0, 0.5)];
        let series = [Series {
            name: "loss",
            points: &points,
        }];
        let err = line_plot(&series, "t", "x", "y", &path).unwrap_err();
        assert!(format!("{err:#}").contains("missing/loss.png"), "{err:#}");
        let layer = ScatterLayer {
            name: "",
            points: &[[0.0, 0.0]],
            color: (0, 0, 255),
            size: 2,
        };
        assert!(scatter_plot(&[layer], "t", None, &path).is_err());
        assert!(files_in(dir.path()).is_empty());
    }

    /// A ring of 8 modes with samples around them, as a GAN's mode-coverage
    /// plot will show it.
    fn ring() -> (Vec<[f64; 2]>, Vec<[f64; 2]>) {
        let modes: Vec<[f64; 2]> = (0..8)
            .map(|k| {
                let a = k as f64 * std::f64::consts::FRAC_PI_4;
                [2.0 * a.cos(), 2.0 * a.sin()]
            })
            .collect();
        let samples = (0..400)
            .map(|i| {
                let m = modes[i % 8];
                let (u, v) = ((i as f64 * 0.7).sin(), (i as f64 * 1.3).cos());
                [m[0] + 0.1 * u, m[1] + 0.1 * v]
            })
            .collect();
        (samples, modes)
    }

    #[test]
    fn scatter_plot_shows_each_layer_in_its_colour_on_a_square() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("scatter.png");
        let (mut samples, modes) = ring();
        samples.push([f64::NAN, 0.0]);
        let layers = [
            ScatterLayer {
                name: "samples",
                points: &samples,
                color: (31, 119, 180),
                size: 2,
            },
            ScatterLayer {
                name: "modes",
                points: &modes,
                color: (214, 39, 40),
                size: 5,
            },
        ];
        scatter_plot(&layers, "ring of 8", None, &path).unwrap();
        let (w, h, color, data) = decode(&path);
        assert_eq!((w, h), scatter_size());
        assert_eq!(color, png::ColorType::Rgb);
        for layer in &layers {
            assert!(
                count(&data, layer.color) > 50,
                "{}: {}",
                layer.name,
                count(&data, layer.color)
            );
        }
        assert!(dark(&data) > 500);

        // The plot area is the stated square; a narrow extent is widened to
        // a square about its centre, and `None` is a square 10 % wider than
        // the points' bounding box, centred on it.
        let panel = Panel {
            layers: &layers,
            arrows: &[],
            title: "",
        };
        let (_, (columns, rows)) = render(w, h, |root| draw_scatter(root, &panel, None)).unwrap();
        let side = SCATTER_AREA_SIDE as i32;
        assert_eq!(
            (columns.len() as i32, rows.len() as i32),
            (side, side),
            "{columns:?} {rows:?}"
        );
        let (x_range, y_range) = square_extent(&[], Some(([-1.0, 1.0], [-3.0, 3.0]))).unwrap();
        assert_eq!((x_range, y_range), (-3.0..3.0, -3.0..3.0));
        let (x_range, y_range) = square_extent(&[[1.0, 1.0], [3.0, 2.0]], None).unwrap();
        assert!((x_range.end - x_range.start - 2.2).abs() < 1e-12);
        assert!((y_range.end - y_range.start - 2.2).abs() < 1e-12);
        assert!((x_range.start + x_range.end - 4.0).abs() < 1e-12 && (y_range.start + y_range.end - 3.0).abs() < 1e-12);
    }

    /// Two panels side by side, each with its arrows in its colour: the
    /// picture is two scatter plots wide, the arrows cover pixels in the
    /// left half (red) and the right half (blue) only.
    #[test]
    fn panels_plot_draws_arrow_fields_side_by_side() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("field.png");
        let origins: Vec<[f64; 2]> = (0..25)
            .map(|k| [f64::from(k % 5) - 2.0, f64::from(k / 5) - 2.0])
            .collect();
        let inward: Vec<[f64; 2]> = origins.iter().map(|o| [-0.4 * o[0], -0.4 * o[1]]).collect();
        let (red, blue) = ((214, 39, 40), (31, 119, 180));
        let left = [ArrowLayer {
            origins: &origins,
            vectors: &inward,
            color: red,
        }];
        let right = [ArrowLayer {
            origins: &origins,
            vectors: &inward,
            color: blue,
        }];
        let panels = [
            Panel {
                layers: &[],
                arrows: &left,
                title: "learned",
            },
            Panel {
                layers: &[],
                arrows: &right,
                title: "true",
            },
        ];
        panels_plot(&panels, ([-3.0, 3.0], [-3.0, 3.0]), &path).unwrap();
        let (w, h, _, data) = decode(&path);
        let (sw, sh) = scatter_size();
        assert_eq!((w, h), (2 * sw, sh));
        let half = |rgb: (u8, u8, u8), right_half: bool| {
            data.chunks_exact(3)
                .enumerate()
                .filter(|(i, p)| ((i % w as usize) >= sw as usize) == right_half && (p[0], p[1], p[2]) == rgb)
                .count()
        };
        assert!(
            half(red, false) > 200 && half(red, true) == 0,
            "{} {}",
            half(red, false),
            half(red, true)
        );
        assert!(
            half(blue, true) > 200 && half(blue, false) == 0,
            "{} {}",
            half(blue, true),
            half(blue, false)
        );
        assert!(panels_plot(&[], ([-3.0, 3.0], [-3.0, 3.0]), &path).is_err());
    }

    #[test]
    fn a_bad_extent_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("scatter.png");
        let layer = ScatterLayer {
            name: "p",
            points: &[[0.0, 0.0]],
            color: (0, 0, 255),
            size: 2,
        };
        for extent in [
            ([1.0, 1.0], [0.0, 1.0]),
            ([0.0, 1.0], [f64::NAN, 1.0]),
            ([0.0, f64::INFINITY], [0.0, 1.0]),
        ] {
            assert!(scatter_plot(&[layer], "t", Some(extent), &path).is_err());
        }
        assert!(files_in(dir.path()).is_empty());
        // Points outside a given extent are left out, not an error (no name,
        // so no legend marker in that colour either).
        let layer = ScatterLayer { name: "", ..layer };
        scatter_plot(&[layer], "t", Some(([5.0, 6.0], [5.0, 6.0])), &path).unwrap();
        let (_, _, _, data) = decode(&path);
        assert_eq!(count(&data, layer.color), 0);
    }

    /// Writes the two example pictures to `$DEEPGEN_PLOT_EXAMPLES` (when set)
    /// for a person to look at.
    #[test]
    fn examples_for_the_eye() {
        let Some(dir) = std::env::var_os("DEEPGEN_PLOT_EXAMPLES") else {
            return;
        };
        let dir = Path::new(&dir);
        std::fs::create_dir_all(dir).unwrap();
        let train = loss_points(100.0, 30, 60.0);
        let test = loss_points(104.0, 30, 55.0);
        let series = [
            Series {
                name: "train_loss",
                points: &train,
            },
            Series {
                name: "test_loss",
                points: &test,
            },
        ];
        line_plot(
            &series,
            "vae-mnist",
            "epoch",
            "loss per image",
            &dir.join("loss_curve.png"),
        )
        .unwrap();
        let (samples, modes) = ring();
        let layers = [
            ScatterLayer {
                name: "samples",
                points: &samples,
                color: (31, 119, 180),
                size: 2,
            },
            ScatterLayer {
                name: "mode centres",
                points: &modes,
                color: (214, 39, 40),
                size: 5,
            },
        ];
        scatter_plot(&layers, "ring of 8 Gaussians", None, &dir.join("scatter.png")).unwrap();
    }
}
