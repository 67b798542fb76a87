//! The shape and parameter table of a spec (seed 000, question 2a).
//!
//! For each layer: its output dims, its number of weights and of biases.
//!
//! | Layer | Output side | Weights | Biases |
//! |---|---|---|---|
//! | `CONV-K-N-sS-pP` on `H×W×C` | `⌊(H + 2P − K)/S⌋ + 1` | `C·K·K·N` | `N` |
//! | `CONVT-K-N-sS-pP` on `H×W×C` | `(H − 1)·S − 2P + K` | `C·K·K·N` | `N` |
//! | `POOL-K`, `AVGPOOL-K` on `H×W×C` | `⌊H/K⌋` | 0 | 0 |
//! | `FLATTEN` on `H×W×C` | `H·W·C` | 0 | 0 |
//! | `FC-N` on `D` | `N` | `D·N` | `N` |
//!
//! A layer that does not fit its input (a kernel larger than the padded
//! input, a convolution after `FLATTEN`, `FC` on an image) is an
//! [`Error::LayerDoesNotFit`] naming the layer, never a panic; counts that
//! overflow `usize` are errors too, and so are sizes of 0 (which the parser
//! refuses, but a spec built with [`Spec::new`] may hold).

use crate::spec::{ConvSpec, Dims, Layer, Spec};
use crate::{Error, Result};
use std::fmt;

/// Output side of a convolution (or a pooling window): `⌊(n + 2p − k)/s⌋ + 1`,
/// `None` when the window does not fit (`k > n + 2p`) or `s = 0`.
///
/// ```
/// // Seed 000: CONV-9-32 on 128 → 120; POOL-2 (k = s = 2) on 120 → 60.
/// assert_eq!(deepgen_cnn::conv_output_size(128, 9, 1, 0), Some(120));
/// assert_eq!(deepgen_cnn::conv_output_size(120, 2, 2, 0), Some(60));
/// assert_eq!(deepgen_cnn::conv_output_size(4, 5, 1, 0), None);
/// ```
pub fn conv_output_size(n: usize, kernel: usize, stride: usize, padding: usize) -> Option<usize> {
    let padded = n.checked_add(padding.checked_mul(2)?)?;
    if stride == 0 || kernel == 0 || kernel > padded {
        return None;
    }
    Some((padded - kernel) / stride + 1)
}

/// Output side of a transposed convolution: `(n − 1)·s − 2p + k + output_padding`,
/// `None` when it is not positive (too much padding) or overflows.
///
/// ```
/// // DCGAN's generator: 7 → 14 with k = 4, s = 2, p = 1.
/// assert_eq!(deepgen_cnn::conv_transpose_output_size(7, 4, 2, 1, 0), Some(14));
/// assert_eq!(deepgen_cnn::conv_transpose_output_size(1, 2, 1, 1, 0), None);
/// ```
pub fn conv_transpose_output_size(
    n: usize,
    kernel: usize,
    stride: usize,
    padding: usize,
    output_padding: usize,
) -> Option<usize> {
    let full = n
        .checked_sub(1)?
        .checked_mul(stride)?
        .checked_add(kernel)?
        .checked_add(output_padding)?;
    full.checked_sub(padding.checked_mul(2)?).filter(|&m| m > 0)
}

/// One row of the table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayerShape {
    /// The layer's canonical token (`INPUT-128x128x3`, `CONV-9-32`, …).
    pub token: String,
    /// Output dims of the layer.
    pub output: Dims,
    /// The factors of the weight count in seed 000's order: `[C, K, K, N]`
    /// for a convolution, `[D, N]` for `FC`, empty without weights.
    pub weight_factors: Vec<usize>,
    /// Number of weights (the product of `weight_factors`, 0 without).
    pub weights: usize,
    /// Number of biases.
    pub biases: usize,
}

/// The shape and parameter table of a [`Spec`]; `Display` prints it in
/// seed 000's layout with totals.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShapeTable {
    rows: Vec<LayerShape>,
}

impl ShapeTable {
    /// The rows, `INPUT` first.
    pub fn rows(&self) -> &[LayerShape] {
        &self.rows
    }

    /// The network's output dims (those of the last row).
    pub fn output(&self) -> Dims {
        // `Spec::table` always pushes the INPUT row.
        self.rows.last().map_or(Dims::Flat(0), |r| r.output)
    }

    /// Total number of weights.
    pub fn total_weights(&self) -> usize {
        self.rows.iter().map(|r| r.weights).sum()
    }

    /// Total number of biases.
    pub fn total_biases(&self) -> usize {
        self.rows.iter().map(|r| r.biases).sum()
    }

    /// Total number of parameters, weights plus biases.
    pub fn total_parameters(&self) -> usize {
        self.total_weights() + self.total_biases()
    }
}

impl Spec {
    /// The shape and parameter table (see the [module docs](crate::shape)).
    ///
    /// ```
    /// let spec: deepgen_cnn::Spec =
    ///     "INPUT-128x128x3 CONV-9-32 POOL-2 CONV-5-64 POOL-2 CONV-5-64 POOL-2 FLATTEN FC-3".parse()?;
    /// assert_eq!(spec.table()?.total_parameters(), 189_187);
    /// # Ok::<(), deepgen_cnn::Error>(())
    /// ```
    ///
    /// # Errors
    /// [`Error::LayerDoesNotFit`] naming the first layer that does not fit its
    /// input.
    pub fn table(&self) -> Result<ShapeTable> {
        let input = self.input();
        if input.elem_count().is_none() {
            return Err(Error::LayerDoesNotFit {
                position: 1,
                token: self.input_token(),
                input: input.to_string(),
                reason: "the input has more values than fit in memory".into(),
            });
        }
        let zero_input = match input {
            Dims::Image {
                height,
                width,
                channels,
            } => height == 0 || width == 0 || channels == 0,
            Dims::Flat(n) => n == 0,
        };
        if zero_input {
            // The parser refuses a 0; a spec built with `Spec::new` may hold one.
            return Err(Error::LayerDoesNotFit {
                position: 1,
                token: self.input_token(),
                input: input.to_string(),
                reason: "every input size must be at least 1".into(),
            });
        }
        let mut rows = vec![LayerShape {
            token: self.input_token(),
            output: input,
            weight_factors: Vec::new(),
            weights: 0,
            biases: 0,
        }];
        let mut dims = input;
        let mut total = 0usize;
        for (index, layer) in self.layers().iter().enumerate() {
            let token = self.layer_token(index).unwrap_or_default();
            let does_not_fit = |reason: String| Error::LayerDoesNotFit {
                position: index + 2,
                token: token.clone(),
                input: dims.to_string(),
                reason,
            };
            let (output, weight_factors, biases) = layer_shape(layer, dims).map_err(does_not_fit)?;
            let weights = if weight_factors.is_empty() {
                Some(0)
            } else {
                weight_factors.iter().try_fold(1usize, |acc, &f| acc.checked_mul(f))
            };
            let weights = weights
                .filter(|_| output.elem_count().is_some())
                .ok_or_else(|| does_not_fit("the layer is too large to count".into()))?;
            total = total
                .checked_add(weights)
                .and_then(|t| t.checked_add(biases))
                .ok_or_else(|| does_not_fit("the network has more parameters than fit in memory".into()))?;
            rows.push(LayerShape {
                token,
                output,
                weight_factors,
                weights,
                biases,
            });
            dims = output;
        }
        Ok(ShapeTable { rows })
    }
}

/// Output dims, weight factors and bias count of `layer` on `input`, or why
/// it does not fit.
fn layer_shape(layer: &Layer, input: Dims) -> std::result::Result<(Dims, Vec<usize>, usize), String> {
    let image = |what: &str| match input {
        Dims::Image {
            height,
            width,
            channels,
        } => Ok((height, width, channels)),
        Dims::Flat(_) => Err(format!("{what} needs an H×W×C image, not a flat vector")),
    };
    match *layer {
        Layer::Conv(ConvSpec {
            kernel,
            filters,
            stride,
            padding,
            ..
        }) => {
            let (height, width, channels) = image("a convolution")?;
            at_least_one(&[("kernel", kernel), ("filters", filters), ("stride", stride)])?;
            let side = |n: usize| {
                conv_output_size(n, kernel, stride, padding).ok_or_else(|| {
                    format!(
                        "kernel {kernel} does not fit a {height}×{width} input with padding {padding} \
                         (it needs K ≤ H + 2P)"
                    )
                })
            };
            let output = Dims::Image {
                height: side(height)?,
                width: side(width)?,
                channels: filters,
            };
            Ok((output, vec![channels, kernel, kernel, filters], filters))
        }
        Layer::ConvTranspose(ConvSpec {
            kernel,
            filters,
            stride,
            padding,
            ..
        }) => {
            let (height, width, channels) = image("a transposed convolution")?;
            at_least_one(&[("kernel", kernel), ("filters", filters), ("stride", stride)])?;
            let side = |n: usize| {
                conv_transpose_output_size(n, kernel, stride, padding, 0)
                    .ok_or_else(|| format!("padding {padding} leaves no output: (H − 1)·S − 2P + K must be positive"))
            };
            let output = Dims::Image {
                height: side(height)?,
                width: side(width)?,
                channels: filters,
            };
            Ok((output, vec![channels, kernel, kernel, filters], filters))
        }
        Layer::MaxPool { kernel } | Layer::AvgPool { kernel } => {
            let (height, width, channels) = image("pooling")?;
            at_least_one(&[("window", kernel)])?;
            if kernel > height || kernel > width {
                return Err(format!(
                    "a {kernel}×{kernel} window does not fit a {height}×{width} input"
                ));
            }
            let output = Dims::Image {
                height: height / kernel,
                width: width / kernel,
                channels,
            };
            Ok((output, Vec::new(), 0))
        }
        Layer::Flatten => {
            let n = input.elem_count().ok_or("the input is too large to flatten")?;
            Ok((Dims::Flat(n), Vec::new(), 0))
        }
        Layer::Fc { units, .. } => match input {
            Dims::Flat(_) if units == 0 => Err("FC needs at least 1 unit".into()),
            Dims::Flat(d) => Ok((Dims::Flat(units), vec![d, units], units)),
            Dims::Image { .. } => Err("FC needs a flat vector; put FLATTEN before it".into()),
        },
    }
}

/// An error naming the first of `sizes` that is 0 (the parser refuses a 0;
/// a spec built with [`Spec::new`] may hold one, and a pooling window of 0
/// would divide by zero).
fn at_least_one(sizes: &[(&str, usize)]) -> std::result::Result<(), String> {
    match sizes.iter().find(|(_, n)| *n == 0) {
        Some((name, _)) => Err(format!("its {name} is 0; it must be at least 1")),
        None => Ok(()),
    }
}

/// `189187` → `189,187`.
pub(crate) fn group_thousands(n: usize) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// Seed 000's table: `Layer`, `Output dimensions`, `Number of weights`
/// (`3×9×9×32 = 7,776`), `Number of biases`, then the totals.
impl fmt::Display for ShapeTable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let headers = ["Layer", "Output dimensions", "Number of weights", "Number of biases"];
        let mut cells: Vec<[String; 4]> = self
            .rows
            .iter()
            .map(|r| {
                let weights = if r.weight_factors.is_empty() {
                    group_thousands(r.weights)
                } else {
                    let factors: Vec<String> = r.weight_factors.iter().map(usize::to_string).collect();
                    format!("{} = {}", factors.join("×"), group_thousands(r.weights))
                };
                [
                    r.token.clone(),
                    r.output.to_string(),
                    weights,
                    group_thousands(r.biases),
                ]
            })
            .collect();
        cells.push([
            "Total".into(),
            String::new(),
            group_thousands(self.total_weights()),
            group_thousands(self.total_biases()),
        ]);
        let mut widths = headers.map(|h| h.chars().count());
        for row in &cells {
            for (w, cell) in widths.iter_mut().zip(row) {
                *w = (*w).max(cell.chars().count());
            }
        }
        let [w0, w1, w2, w3] = widths;
        writeln!(
            f,
            "{:<w0$}  {:<w1$}  {:>w2$}  {:>w3$}",
            headers[0], headers[1], headers[2], headers[3]
        )?;
        for row in &cells {
            writeln!(f, "{:<w0$}  {:<w1$}  {:>w2$}  {:>w3$}", row[0], row[1], row[2], row[3])?;
        }
        write!(
            f,
            "Parameters in all: {} (weights {} + biases {})",
            group_thousands(self.total_parameters()),
            group_thousands(self.total_weights()),
            group_thousands(self.total_biases())
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::Activation;
    use proptest::prelude::*;

    const SEED_SPEC: &str = "INPUT-128x128x3 CONV-9-32 POOL-2 CONV-5-64 POOL-2 CONV-5-64 POOL-2 FLATTEN FC-3";

    fn image(height: usize, width: usize, channels: usize) -> Dims {
        Dims::Image {
            height,
            width,
            channels,
        }
    }

    #[test]
    fn seed_table_exactly() -> Result<()> {
        let table = Spec::parse(SEED_SPEC)?.table()?;
        // Seed 000, question 2a, row by row: (layer, output, weight factors, biases).
        // Weights: 3·9·9·32 = 7776, 32·5·5·64 = 51200, 64·5·5·64 = 102400, 9216·3 = 27648.
        let expected: [(&str, Dims, &[usize], usize); 9] = [
            ("INPUT-128x128x3", image(128, 128, 3), &[], 0),
            ("CONV-9-32", image(120, 120, 32), &[3, 9, 9, 32], 32),
            ("POOL-2", image(60, 60, 32), &[], 0),
            ("CONV-5-64", image(56, 56, 64), &[32, 5, 5, 64], 64),
            ("POOL-2", image(28, 28, 64), &[], 0),
            ("CONV-5-64", image(24, 24, 64), &[64, 5, 5, 64], 64),
            ("POOL-2", image(12, 12, 64), &[], 0),
            ("FLATTEN", Dims::Flat(9216), &[], 0),
            ("FC-3", Dims::Flat(3), &[9216, 3], 3),
        ];
        assert_eq!(table.rows().len(), expected.len());
        for (row, (token, output, factors, biases)) in table.rows().iter().zip(expected) {
            assert_eq!(row.token, token);
            assert_eq!(row.output, output, "{token}");
            assert_eq!(row.weight_factors, factors, "{token}");
            assert_eq!(row.biases, biases, "{token}");
        }
        let weights: Vec<usize> = table.rows().iter().map(|r| r.weights).collect();
        assert_eq!(weights, [0, 7776, 0, 51_200, 0, 102_400, 0, 0, 27_648]);
        assert_eq!(table.total_weights(), 189_024);
        assert_eq!(table.total_biases(), 163);
        // 7808 + 51264 + 102464 + 27651 = 189,187, the seed's total.
        assert_eq!(table.total_parameters(), 189_187);
        assert_eq!(table.output(), Dims::Flat(3));
        Ok(())
    }

    #[test]
    fn seed_table_prints_in_the_seed_layout() -> Result<()> {
        let text = Spec::parse(SEED_SPEC)?.table()?.to_string();
        let expected = "\
Layer            Output dimensions    Number of weights  Number of biases
INPUT-128x128x3  128×128×3                            0                 0
CONV-9-32        120×120×32            3×9×9×32 = 7,776                32
POOL-2           60×60×32                             0                 0
CONV-5-64        56×56×64            32×5×5×64 = 51,200                64
POOL-2           28×28×64                             0                 0
CONV-5-64        24×24×64           64×5×5×64 = 102,400                64
POOL-2           12×12×64                             0                 0
FLATTEN          9216×1                               0                 0
FC-3             3×1                    9216×3 = 27,648                 3
Total                                           189,024               163
Parameters in all: 189,187 (weights 189,024 + biases 163)";
        assert_eq!(text, expected);
        Ok(())
    }

    #[test]
    fn strides_padding_and_transposed_layers() -> Result<()> {
        // CONV-5-32-p2 keeps 28 (28 + 4 − 5 + 1); CONV-3-8-s2-p1 halves it: ⌊(28 + 2 − 3)/2⌋ + 1 = 14.
        // CONVT-4-1-s2-p1 doubles 14: 13·2 − 2 + 4 = 28.
        let spec = Spec::parse("INPUT-28x28x1 CONV-5-32-p2 CONV-3-8-s2-p1 CONVT-4-1-s2-p1 AVGPOOL-4")?;
        let table = spec.table()?;
        let outputs: Vec<Dims> = table.rows().iter().map(|r| r.output).collect();
        assert_eq!(
            outputs,
            [
                image(28, 28, 1),
                image(28, 28, 32),
                image(14, 14, 8),
                image(28, 28, 1),
                image(7, 7, 1)
            ]
        );
        // CONVT weights are C·K·K·N = 8·4·4·1.
        assert_eq!(table.rows()[3].weights, 128);
        assert_eq!(table.total_parameters(), (32 * 25 + 32) + (8 * 32 * 9 + 8) + (128 + 1));
        // Pooling drops the remainder: 7 → 3.
        let table = Spec::parse("INPUT-7x9x2 POOL-2")?.table()?;
        assert_eq!(table.output(), image(3, 4, 2));
        Ok(())
    }

    #[test]
    fn a_layer_that_does_not_fit_is_an_error_naming_it() -> Result<()> {
        let cases = [
            (
                "INPUT-28x28x1 CONV-5-8 POOL-2 CONV-5-8 POOL-2 CONV-5-8",
                6,
                "CONV-5-8",
                "kernel 5",
            ),
            ("INPUT-8x8x1 FLATTEN CONV-3-4", 3, "CONV-3-4", "flat vector"),
            ("INPUT-8x8x1 FC-10", 2, "FC-10", "FLATTEN"),
            ("INPUT-3x3x1 POOL-4", 2, "POOL-4", "window"),
            ("INPUT-1x1x1 CONVT-2-1-p1", 2, "CONVT-2-1-p1", "no output"),
            ("INPUT-784 POOL-2", 2, "POOL-2", "flat vector"),
        ];
        for (text, want_position, want_token, want_reason) in cases {
            match Spec::parse(text)?.table() {
                Err(Error::LayerDoesNotFit {
                    position,
                    token,
                    reason,
                    ..
                }) => {
                    assert_eq!((position, token.as_str()), (want_position, want_token), "{text}");
                    assert!(reason.contains(want_reason), "{text}: {reason}");
                }
                other => panic!("{text}: expected LayerDoesNotFit, got {other:?}"),
            }
        }
        let err = Spec::parse("INPUT-28x28x1 CONV-5-8 POOL-2 CONV-5-8 POOL-2 CONV-5-8")?
            .table()
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "layer 6 `CONV-5-8` does not fit its 4×4×8 input: kernel 5 does not fit a 4×4 input \
             with padding 0 (it needs K ≤ H + 2P)"
        );
        Ok(())
    }

    #[test]
    fn huge_layers_are_errors_not_overflows() -> Result<()> {
        let spec = Spec::parse(&format!("INPUT-{} FC-{}", usize::MAX, usize::MAX))?;
        assert!(matches!(spec.table(), Err(Error::LayerDoesNotFit { .. })));
        let spec = Spec::parse(&format!("INPUT-{0}x{0}x2 FLATTEN", usize::MAX / 2))?;
        assert!(spec.table().is_err());
        Ok(())
    }

    /// Found by `tests/fuzz_spec.rs`: `AVGPOOL-0` (or `POOL-0`) built with
    /// `Spec::new` on a 1×1×1 input divided by zero in `Spec::table`
    /// ("attempt to divide by zero"); every size of 0 is a `LayerDoesNotFit`
    /// naming it.
    #[test]
    fn zero_sizes_from_spec_new_are_errors_not_panics() {
        let conv = |kernel, filters, stride| {
            Layer::Conv(ConvSpec {
                stride,
                ..ConvSpec::new(kernel, filters)
            })
        };
        let convt = |kernel, filters, stride| {
            Layer::ConvTranspose(ConvSpec {
                stride,
                ..ConvSpec::new(kernel, filters)
            })
        };
        let cases = [
            (image(1, 1, 1), Layer::AvgPool { kernel: 0 }, 2, "window is 0"),
            (image(28, 28, 1), Layer::MaxPool { kernel: 0 }, 2, "window is 0"),
            (image(28, 28, 1), conv(0, 4, 1), 2, "kernel is 0"),
            (image(28, 28, 1), conv(3, 0, 1), 2, "filters is 0"),
            (image(28, 28, 1), conv(3, 4, 0), 2, "stride is 0"),
            (image(28, 28, 1), convt(0, 4, 1), 2, "kernel is 0"),
            (image(28, 28, 1), convt(3, 4, 0), 2, "stride is 0"),
            (
                Dims::Flat(10),
                Layer::Fc {
                    units: 0,
                    activation: Activation::Linear,
                },
                2,
                "at least 1 unit",
            ),
            (image(0, 28, 1), Layer::Flatten, 1, "input size"),
            (Dims::Flat(0), Layer::Flatten, 1, "input size"),
        ];
        for (input, layer, want_position, want_reason) in cases {
            match Spec::new(input, vec![layer]).table() {
                Err(Error::LayerDoesNotFit { position, reason, .. }) => {
                    assert_eq!(position, want_position, "{layer:?}: {reason}");
                    assert!(reason.contains(want_reason), "{layer:?}: {reason}");
                }
                other => panic!("{input:?} {layer:?}: expected LayerDoesNotFit, got {other:?}"),
            }
        }
    }

    #[test]
    fn thousands_are_grouped() {
        assert_eq!(group_thousands(0), "0");
        assert_eq!(group_thousands(999), "999");
        assert_eq!(group_thousands(7776), "7,776");
        assert_eq!(group_thousands(189_187), "189,187");
        assert_eq!(group_thousands(1_000_000), "1,000,000");
    }

    proptest! {
        /// The conv output size is the largest m with (m − 1)·s + k ≤ n + 2p.
        #[test]
        fn prop_conv_output_size_is_the_last_window_that_fits(
            n in 1..60usize, k in 1..12usize, s in 1..5usize, p in 0..4usize,
        ) {
            match conv_output_size(n, k, s, p) {
                Some(m) => {
                    prop_assert!((m - 1) * s + k <= n + 2 * p);
                    prop_assert!(m * s + k > n + 2 * p);
                }
                None => prop_assert!(k > n + 2 * p),
            }
        }

        /// A transposed convolution inverts the size map of a convolution with
        /// the same k, s, p whenever (n + 2p − k) is a multiple of s.
        #[test]
        fn prop_transposed_size_inverts_conv_size(m in 1..30usize, k in 1..8usize, s in 1..4usize, p in 0..3usize) {
            if let Some(n) = conv_transpose_output_size(m, k, s, p, 0) {
                prop_assert_eq!(conv_output_size(n, k, s, p), Some(m));
            }
        }
    }
}
