//! The layer-spec language: a network written as one line of tokens.
//!
//! ```text
//! INPUT-128x128x3 CONV-9-32 POOL-2 CONV-5-64 POOL-2 CONV-5-64 POOL-2 FLATTEN FC-3
//! ```
//!
//! Tokens are separated by white space; the parts of a token by `-`. Layer
//! names and options are case-insensitive; [`Spec`]'s `Display` writes the
//! canonical form (upper-case names, lower-case options), which parses back to
//! the same spec.
//!
//! | Token | Layer |
//! |---|---|
//! | `INPUT-HxWxC` | an `H×W×C` image input (`C` channels), or `INPUT-N` for a flat vector; first token, once |
//! | `CONV-K-N[-sS][-pP]` | `N` filters of `K×K`, stride `S` (default 1), zero padding `P` (default 0) |
//! | `CONVT-K-N[-sS][-pP]` | transposed convolution, output side `(H − 1)·S − 2P + K` |
//! | `POOL-K` | `K×K` max pooling, stride `K` |
//! | `AVGPOOL-K` | `K×K` average pooling, stride `K` |
//! | `FLATTEN` | `H×W×C` → `H·W·C` (channel-major, as PyTorch's `flatten`) |
//! | `FC-N` | fully connected, `N` outputs |
//!
//! **Activations.** `CONV`, `CONVT` and `FC` are followed by ReLU, except the
//! last token of the spec, which is linear (a classifier's logits). A suffix
//! sets it explicitly: `-relu`, `-lrelu` (leaky ReLU, slope 0.2), `-tanh`,
//! `-sigmoid`, `-linear`; e.g. `CONVT-4-1-s2-p1-sigmoid`. Options and the
//! activation may come in any order after the required numbers.
//!
//! **Errors** name the token, its 1-based position in the spec (`INPUT` is 1)
//! and the 1-based character offset where it starts.

use crate::{Error, Result};
use std::fmt;
use std::str::FromStr;

/// The nonlinearity after a layer with weights.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Activation {
    /// `max(x, 0)`; the default for every layer but the last (seed 000: "Activation function 用 ReLU").
    Relu,
    /// `max(x, 0.2·x)`, the DCGAN discriminator's slope ([`LEAKY_RELU_SLOPE`]).
    LeakyRelu,
    /// `tanh(x)`.
    Tanh,
    /// `1 / (1 + e^{−x})`.
    Sigmoid,
    /// The identity; the default for the last layer.
    Linear,
}

/// The negative slope of [`Activation::LeakyRelu`] (Radford et al. 2016, DCGAN).
pub const LEAKY_RELU_SLOPE: f64 = 0.2;

impl Activation {
    /// Every activation, in the order the docs list them.
    pub const ALL: [Activation; 5] = [
        Activation::Relu,
        Activation::LeakyRelu,
        Activation::Tanh,
        Activation::Sigmoid,
        Activation::Linear,
    ];

    /// The suffix that selects it: `relu`, `lrelu`, `tanh`, `sigmoid`, `linear`.
    pub fn name(self) -> &'static str {
        match self {
            Activation::Relu => "relu",
            Activation::LeakyRelu => "lrelu",
            Activation::Tanh => "tanh",
            Activation::Sigmoid => "sigmoid",
            Activation::Linear => "linear",
        }
    }

    fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|a| a.name().eq_ignore_ascii_case(name))
    }

    /// Applies the activation elementwise (ReLU through deepgen-core's op,
    /// whose gradient at exactly 0 is 0, as PyTorch's).
    pub fn apply(self, xs: &candle::Tensor) -> candle::Result<candle::Tensor> {
        match self {
            Activation::Relu => deepgen_core::ops::relu(xs),
            Activation::LeakyRelu => candle_nn::ops::leaky_relu(xs, LEAKY_RELU_SLOPE),
            Activation::Tanh => xs.tanh(),
            Activation::Sigmoid => candle_nn::ops::sigmoid(xs),
            Activation::Linear => Ok(xs.clone()),
        }
    }
}

impl fmt::Display for Activation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The shape of what flows between layers: an image or a flat vector (the
/// batch dimension left out).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Dims {
    /// `height × width × channels`, stored by Candle as `[N, C, H, W]`.
    Image {
        /// Rows.
        height: usize,
        /// Columns.
        width: usize,
        /// Channels.
        channels: usize,
    },
    /// A vector of this many features, `[N, D]`.
    Flat(usize),
}

impl Dims {
    /// The number of values per example, `H·W·C` or `D` (`None` on overflow).
    pub fn elem_count(self) -> Option<usize> {
        match self {
            Dims::Image {
                height,
                width,
                channels,
            } => height.checked_mul(width)?.checked_mul(channels),
            Dims::Flat(n) => Some(n),
        }
    }

    /// The dims of a batch of `n` in Candle's layout: `[n, C, H, W]` or `[n, D]`.
    pub fn batch_dims(self, n: usize) -> Vec<usize> {
        match self {
            Dims::Image {
                height,
                width,
                channels,
            } => vec![n, channels, height, width],
            Dims::Flat(d) => vec![n, d],
        }
    }
}

/// Seed 000's notation: `120×120×32` for an image, `9216×1` for a vector.
impl fmt::Display for Dims {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Dims::Image {
                height,
                width,
                channels,
            } => write!(f, "{height}×{width}×{channels}"),
            Dims::Flat(n) => write!(f, "{n}×1"),
        }
    }
}

/// A convolution or transposed convolution: `CONV-K-N[-sS][-pP]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ConvSpec {
    /// Side `K` of the square kernel.
    pub kernel: usize,
    /// Number of filters `N` (output channels).
    pub filters: usize,
    /// Stride `S` (seed 000: 1).
    pub stride: usize,
    /// Zero padding `P` on every side (seed 000: 0).
    pub padding: usize,
    /// The nonlinearity after the layer.
    pub activation: Activation,
}

impl ConvSpec {
    /// `K×K`, `N` filters, stride 1, padding 0, ReLU: seed 000's `CONV-K-N`.
    pub fn new(kernel: usize, filters: usize) -> Self {
        ConvSpec {
            kernel,
            filters,
            stride: 1,
            padding: 0,
            activation: Activation::Relu,
        }
    }
}

/// One layer after the input.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Layer {
    /// `CONV-K-N[-sS][-pP]`.
    Conv(ConvSpec),
    /// `CONVT-K-N[-sS][-pP]`.
    ConvTranspose(ConvSpec),
    /// `POOL-K`: `K×K` max pooling with stride `K`.
    MaxPool {
        /// Window side and stride.
        kernel: usize,
    },
    /// `AVGPOOL-K`: `K×K` average pooling with stride `K`.
    AvgPool {
        /// Window side and stride.
        kernel: usize,
    },
    /// `FLATTEN`.
    Flatten,
    /// `FC-N`.
    Fc {
        /// Number of outputs.
        units: usize,
        /// The nonlinearity after the layer.
        activation: Activation,
    },
}

impl Layer {
    /// The activation after the layer (`None` for layers without weights).
    pub fn activation(&self) -> Option<Activation> {
        match self {
            Layer::Conv(c) | Layer::ConvTranspose(c) => Some(c.activation),
            Layer::Fc { activation, .. } => Some(*activation),
            Layer::MaxPool { .. } | Layer::AvgPool { .. } | Layer::Flatten => None,
        }
    }

    /// The layer's token, writing the activation only when it differs from
    /// `default`.
    fn token(&self, default: Activation) -> String {
        let suffix = |a: Activation| {
            if a == default { String::new() } else { format!("-{a}") }
        };
        let conv = |name: &str, c: &ConvSpec| {
            let mut s = format!("{name}-{}-{}", c.kernel, c.filters);
            if c.stride != 1 {
                s.push_str(&format!("-s{}", c.stride));
            }
            if c.padding != 0 {
                s.push_str(&format!("-p{}", c.padding));
            }
            s + &suffix(c.activation)
        };
        match self {
            Layer::Conv(c) => conv("CONV", c),
            Layer::ConvTranspose(c) => conv("CONVT", c),
            Layer::MaxPool { kernel } => format!("POOL-{kernel}"),
            Layer::AvgPool { kernel } => format!("AVGPOOL-{kernel}"),
            Layer::Flatten => "FLATTEN".into(),
            Layer::Fc { units, activation } => format!("FC-{units}{}", suffix(*activation)),
        }
    }
}

/// A parsed network: the input dims and the layers after it.
///
/// ```
/// use deepgen_cnn::{Activation, Layer, Spec};
/// let spec: Spec = "INPUT-28x28x1 CONV-5-8-p2 POOL-2 FLATTEN FC-10".parse()?;
/// assert_eq!(spec.layers().len(), 4);
/// assert_eq!(spec.layers()[3], Layer::Fc { units: 10, activation: Activation::Linear });
/// assert_eq!(spec.to_string(), "INPUT-28x28x1 CONV-5-8-p2 POOL-2 FLATTEN FC-10");
/// # Ok::<(), deepgen_cnn::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Spec {
    input: Dims,
    layers: Vec<Layer>,
}

impl Spec {
    /// A spec from its parts (sizes are checked by [`Spec::table`]).
    pub fn new(input: Dims, layers: Vec<Layer>) -> Self {
        Spec { input, layers }
    }

    /// Parses the layer-spec language (see the module docs).
    ///
    /// # Errors
    /// [`Error::EmptySpec`] for blank text; [`Error::Parse`] naming the first
    /// bad token, its 1-based position and character offset.
    pub fn parse(text: &str) -> Result<Self> {
        let tokens = tokenize(text);
        let Some(first) = tokens.first() else {
            return Err(Error::EmptySpec);
        };
        let input = parse_input(first)?;
        let n_tokens = tokens.len();
        let layers = tokens
            .iter()
            .skip(1)
            .map(|token| {
                let default = if token.position == n_tokens {
                    Activation::Linear
                } else {
                    Activation::Relu
                };
                parse_layer(token, default)
            })
            .collect::<Result<_>>()?;
        Ok(Spec { input, layers })
    }

    /// The input dims.
    pub fn input(&self) -> Dims {
        self.input
    }

    /// The layers after the input, in order.
    pub fn layers(&self) -> &[Layer] {
        &self.layers
    }

    /// The canonical token of layer `index` (0-based in [`Spec::layers`]).
    pub fn layer_token(&self, index: usize) -> Option<String> {
        let layer = self.layers.get(index)?;
        Some(layer.token(self.default_activation(index)))
    }

    /// The canonical input token, `INPUT-128x128x3` or `INPUT-784`.
    pub fn input_token(&self) -> String {
        match self.input {
            Dims::Image {
                height,
                width,
                channels,
            } => format!("INPUT-{height}x{width}x{channels}"),
            Dims::Flat(n) => format!("INPUT-{n}"),
        }
    }

    /// The activation a layer gets without a suffix: linear for the last
    /// layer, ReLU otherwise.
    fn default_activation(&self, index: usize) -> Activation {
        if index + 1 == self.layers.len() {
            Activation::Linear
        } else {
            Activation::Relu
        }
    }
}

/// A spec is its text in configuration files and checkpoints.
impl TryFrom<String> for Spec {
    type Error = Error;
    fn try_from(text: String) -> Result<Self> {
        text.parse()
    }
}

impl From<Spec> for String {
    fn from(spec: Spec) -> String {
        spec.to_string()
    }
}

impl FromStr for Spec {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        Spec::parse(s)
    }
}

/// The canonical text, which [`Spec::parse`] reads back to an equal spec.
impl fmt::Display for Spec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.input_token())?;
        for index in 0..self.layers.len() {
            if let Some(token) = self.layer_token(index) {
                write!(f, " {token}")?;
            }
        }
        Ok(())
    }
}

/// A token with where it was found.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Token<'a> {
    text: &'a str,
    /// 1-based index among the tokens.
    position: usize,
    /// 1-based character offset of its first character.
    offset: usize,
}

impl Token<'_> {
    fn error(&self, reason: impl Into<String>) -> Error {
        Error::Parse {
            token: self.text.to_string(),
            position: self.position,
            offset: self.offset,
            reason: reason.into(),
        }
    }
}

fn tokenize(text: &str) -> Vec<Token<'_>> {
    let mut tokens = Vec::new();
    let mut start: Option<(usize, usize)> = None; // (byte, char offset)
    for (char_idx, (byte_idx, c)) in text.char_indices().enumerate() {
        match (c.is_whitespace(), start) {
            (false, None) => start = Some((byte_idx, char_idx + 1)),
            (true, Some((from, offset))) => {
                tokens.push(Token {
                    text: &text[from..byte_idx],
                    position: tokens.len() + 1,
                    offset,
                });
                start = None;
            }
            _ => {}
        }
    }
    if let Some((from, offset)) = start {
        tokens.push(Token {
            text: &text[from..],
            position: tokens.len() + 1,
            offset,
        });
    }
    tokens
}

const LAYER_NAMES: &str = "INPUT, CONV, CONVT, POOL, AVGPOOL, FLATTEN, FC";

fn positive(token: &Token<'_>, what: &str, text: &str) -> Result<usize> {
    match text.parse::<usize>() {
        Ok(n) if n > 0 => Ok(n),
        _ => Err(token.error(format!("{what} `{text}` is not a positive integer"))),
    }
}

fn non_negative(token: &Token<'_>, what: &str, text: &str) -> Result<usize> {
    text.parse::<usize>()
        .map_err(|_| token.error(format!("{what} `{text}` is not a non-negative integer")))
}

fn parse_input(token: &Token<'_>) -> Result<Dims> {
    let mut parts = token.text.split('-');
    let name = parts.next().unwrap_or_default();
    if !name.eq_ignore_ascii_case("INPUT") {
        return Err(token.error("a spec starts with its input, e.g. `INPUT-128x128x3` or `INPUT-784`"));
    }
    let (Some(dims), None) = (parts.next(), parts.next()) else {
        return Err(token.error("expected `INPUT-HxWxC` (an image) or `INPUT-N` (a vector)"));
    };
    let sides: Vec<&str> = dims.split(['x', 'X', '×']).collect();
    match sides.as_slice() {
        [n] => Ok(Dims::Flat(positive(token, "input size", n)?)),
        [h, w, c] => Ok(Dims::Image {
            height: positive(token, "input height", h)?,
            width: positive(token, "input width", w)?,
            channels: positive(token, "input channels", c)?,
        }),
        _ => Err(token.error(format!(
            "input dims `{dims}` are neither `HxWxC` (an image) nor `N` (a vector)"
        ))),
    }
}

/// The options after a layer's numbers: `sS`, `pP` and an activation.
#[derive(Default)]
struct Options {
    stride: Option<usize>,
    padding: Option<usize>,
    activation: Option<Activation>,
}

fn parse_options<'a>(
    token: &Token<'_>,
    parts: impl Iterator<Item = &'a str>,
    allow_conv_options: bool,
) -> Result<Options> {
    let mut options = Options::default();
    let expected = if allow_conv_options {
        "expected `sS` (stride), `pP` (padding) or an activation: relu, lrelu, tanh, sigmoid, linear"
    } else {
        "expected an activation: relu, lrelu, tanh, sigmoid, linear"
    };
    for part in parts {
        let twice = || token.error(format!("option `{part}` repeats an earlier one"));
        if let Some(activation) = Activation::from_name(part) {
            if options.activation.replace(activation).is_some() {
                return Err(twice());
            }
            continue;
        }
        let mut chars = part.chars();
        let letter = chars.next().map(|c| c.to_ascii_lowercase());
        let value = chars.as_str();
        let is_number = !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit());
        match letter {
            Some('s') if allow_conv_options && is_number => {
                if options.stride.replace(positive(token, "stride", value)?).is_some() {
                    return Err(twice());
                }
            }
            Some('p') if allow_conv_options && is_number => {
                if options
                    .padding
                    .replace(non_negative(token, "padding", value)?)
                    .is_some()
                {
                    return Err(twice());
                }
            }
            _ if part.is_empty() => return Err(token.error(format!("empty part (two `-` in a row?); {expected}"))),
            _ => return Err(token.error(format!("unknown option `{part}`; {expected}"))),
        }
    }
    Ok(options)
}

fn parse_layer(token: &Token<'_>, default: Activation) -> Result<Layer> {
    let mut parts = token.text.split('-');
    let name = parts.next().unwrap_or_default().to_ascii_uppercase();
    match name.as_str() {
        "CONV" | "CONVT" => {
            let (Some(k), Some(n)) = (parts.next(), parts.next()) else {
                return Err(token.error(format!("expected `{name}-K-N[-sS][-pP]`")));
            };
            let kernel = positive(token, "kernel size", k)?;
            let filters = positive(token, "number of filters", n)?;
            let options = parse_options(token, parts, true)?;
            let conv = ConvSpec {
                kernel,
                filters,
                stride: options.stride.unwrap_or(1),
                padding: options.padding.unwrap_or(0),
                activation: options.activation.unwrap_or(default),
            };
            Ok(if name == "CONV" {
                Layer::Conv(conv)
            } else {
                Layer::ConvTranspose(conv)
            })
        }
        "POOL" | "AVGPOOL" => {
            let (Some(k), None) = (parts.next(), parts.next()) else {
                return Err(token.error(format!(
                    "expected `{name}-K` (K×K window, stride K; pooling has no activation)"
                )));
            };
            let kernel = positive(token, "pooling size", k)?;
            Ok(if name == "POOL" {
                Layer::MaxPool { kernel }
            } else {
                Layer::AvgPool { kernel }
            })
        }
        "FLATTEN" => match parts.next() {
            None => Ok(Layer::Flatten),
            Some(_) => Err(token.error("FLATTEN takes no arguments")),
        },
        "FC" => {
            let Some(n) = parts.next() else {
                return Err(token.error("expected `FC-N`"));
            };
            let units = positive(token, "number of units", n)?;
            let options = parse_options(token, parts, false)?;
            Ok(Layer::Fc {
                units,
                activation: options.activation.unwrap_or(default),
            })
        }
        "INPUT" => Err(token.error("INPUT may only be the first token")),
        _ => Err(token.error(format!("unknown layer; expected one of {LAYER_NAMES}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const SEED_SPEC: &str = "INPUT-128x128x3 CONV-9-32 POOL-2 CONV-5-64 POOL-2 CONV-5-64 POOL-2 FLATTEN FC-3";

    fn parse_error(text: &str) -> (String, usize, usize, String) {
        match Spec::parse(text) {
            Err(Error::Parse {
                token,
                position,
                offset,
                reason,
            }) => (token, position, offset, reason),
            other => panic!("expected a parse error for {text:?}, got {other:?}"),
        }
    }

    #[test]
    fn parses_the_seed_network() -> Result<()> {
        let spec = Spec::parse(SEED_SPEC)?;
        assert_eq!(
            spec.input(),
            Dims::Image {
                height: 128,
                width: 128,
                channels: 3
            }
        );
        let relu_conv = |k, n| Layer::Conv(ConvSpec::new(k, n));
        assert_eq!(
            spec.layers(),
            &[
                relu_conv(9, 32),
                Layer::MaxPool { kernel: 2 },
                relu_conv(5, 64),
                Layer::MaxPool { kernel: 2 },
                relu_conv(5, 64),
                Layer::MaxPool { kernel: 2 },
                Layer::Flatten,
                Layer::Fc {
                    units: 3,
                    activation: Activation::Linear
                },
            ]
        );
        assert_eq!(spec.to_string(), SEED_SPEC);
        Ok(())
    }

    #[test]
    fn options_activations_and_case() -> Result<()> {
        let spec = Spec::parse("  input-7x7x64\tconvt-4-32-P1-s2   CONVT-4-1-sigmoid-p1-s2 ")?;
        let up = ConvSpec {
            kernel: 4,
            filters: 32,
            stride: 2,
            padding: 1,
            activation: Activation::Relu,
        };
        assert_eq!(spec.layers()[0], Layer::ConvTranspose(up));
        assert_eq!(
            spec.layers()[1],
            Layer::ConvTranspose(ConvSpec {
                filters: 1,
                activation: Activation::Sigmoid,
                ..up
            })
        );
        assert_eq!(
            spec.to_string(),
            "INPUT-7x7x64 CONVT-4-32-s2-p1 CONVT-4-1-s2-p1-sigmoid"
        );
        // An explicit activation that equals the default disappears from the
        // canonical form; one that differs is kept.
        let spec = Spec::parse("INPUT-10 FC-5-relu FC-3-lrelu FC-2-linear")?;
        assert_eq!(spec.to_string(), "INPUT-10 FC-5 FC-3-lrelu FC-2");
        let spec = Spec::parse("INPUT-10 FC-5-linear FC-2-tanh")?;
        assert_eq!(spec.to_string(), "INPUT-10 FC-5-linear FC-2-tanh");
        Ok(())
    }

    #[test]
    fn errors_name_token_position_and_offset() {
        // "INPUT-28x28x1 " is 14 characters, so token 2 starts at character 15.
        let (token, position, offset, reason) = parse_error("INPUT-28x28x1 CONV-x-32 FC-10");
        assert_eq!((token.as_str(), position, offset), ("CONV-x-32", 2, 15));
        assert!(reason.contains("kernel size `x`"), "{reason}");

        // Offsets count characters, not bytes: `×` is one character.
        let (_, position, offset, reason) = parse_error("INPUT-28×28×1 POOL-2 BOGUS-3");
        assert_eq!((position, offset), (3, 22));
        assert!(reason.contains("unknown layer"), "{reason}");

        let err = Spec::parse("INPUT-28x28x1 FC-0").unwrap_err().to_string();
        assert_eq!(
            err,
            "token 2 `FC-0` (at character 15): number of units `0` is not a positive integer"
        );
    }

    #[test]
    fn every_kind_of_bad_token_is_an_error() {
        let cases = [
            ("CONV-5-32 FC-10", 1, "starts with its input"),
            ("INPUT-28x28 FC-10", 1, "neither"),
            ("INPUT-0x28x1 FC-10", 1, "input height `0`"),
            ("INPUT-28x28x1 INPUT-28x28x1", 2, "only be the first"),
            ("INPUT-28x28x1 CONV-5", 2, "CONV-K-N"),
            ("INPUT-28x28x1 CONV-5-8-q2", 2, "unknown option `q2`"),
            ("INPUT-28x28x1 CONV-5-8-s0", 2, "stride `0`"),
            ("INPUT-28x28x1 CONV-5-8-s2-s3", 2, "repeats"),
            ("INPUT-28x28x1 CONV-5-8-tanh-relu", 2, "repeats"),
            ("INPUT-28x28x1 CONV-5--8", 2, "`` is not a positive"),
            ("INPUT-28x28x1 CONV-5-8-", 2, "empty part"),
            ("INPUT-28x28x1 POOL-2-tanh", 2, "no activation"),
            ("INPUT-28x28x1 POOL", 2, "POOL-K"),
            ("INPUT-28x28x1 AVGPOOL-x", 2, "pooling size"),
            ("INPUT-28x28x1 FLATTEN-2", 2, "no arguments"),
            ("INPUT-28x28x1 FLATTEN FC", 3, "FC-N"),
            ("INPUT-28x28x1 FLATTEN FC-10-s2", 3, "unknown option `s2`"),
            ("INPUT-28x28x1 FLATTEN FC-99999999999999999999999", 3, "not a positive"),
        ];
        for (text, want_position, want_reason) in cases {
            let (_, position, _, reason) = parse_error(text);
            assert_eq!(position, want_position, "{text}: {reason}");
            assert!(reason.contains(want_reason), "{text}: `{reason}` lacks `{want_reason}`");
        }
        assert!(matches!(Spec::parse(" \t\n"), Err(Error::EmptySpec)));
    }

    fn arb_activation() -> impl Strategy<Value = Activation> {
        prop::sample::select(Activation::ALL.to_vec())
    }

    fn arb_conv() -> impl Strategy<Value = ConvSpec> {
        (1..9usize, 1..70usize, 1..4usize, 0..4usize, arb_activation()).prop_map(
            |(kernel, filters, stride, padding, activation)| ConvSpec {
                kernel,
                filters,
                stride,
                padding,
                activation,
            },
        )
    }

    fn arb_layer() -> impl Strategy<Value = Layer> {
        prop_oneof![
            arb_conv().prop_map(Layer::Conv),
            arb_conv().prop_map(Layer::ConvTranspose),
            (1..5usize).prop_map(|kernel| Layer::MaxPool { kernel }),
            (1..5usize).prop_map(|kernel| Layer::AvgPool { kernel }),
            Just(Layer::Flatten),
            (1..600usize, arb_activation()).prop_map(|(units, activation)| Layer::Fc { units, activation }),
        ]
    }

    fn arb_dims() -> impl Strategy<Value = Dims> {
        prop_oneof![
            (1..200usize, 1..200usize, 1..5usize).prop_map(|(height, width, channels)| Dims::Image {
                height,
                width,
                channels
            }),
            (1..1000usize).prop_map(Dims::Flat),
        ]
    }

    proptest! {
        /// Display writes the canonical text and parsing it gives the spec back.
        #[test]
        fn prop_display_round_trips(input in arb_dims(), layers in prop::collection::vec(arb_layer(), 0..8)) {
            let spec = Spec::new(input, layers);
            let text = spec.to_string();
            let parsed = Spec::parse(&text).map_err(|e| TestCaseError::fail(format!("{text}: {e}")))?;
            prop_assert_eq!(parsed, spec);
        }

        /// No input makes the parser panic; every error names a token that is in the text.
        #[test]
        fn prop_parser_never_panics(text in "[A-Za-z0-9x× -]{0,40}") {
            match Spec::parse(&text) {
                Ok(_) | Err(Error::EmptySpec) => {}
                Err(Error::Parse { token, offset, .. }) => {
                    let at: String = text.chars().skip(offset - 1).take(token.chars().count()).collect();
                    prop_assert_eq!(at, token);
                }
                Err(other) => prop_assert!(false, "unexpected error {other}"),
            }
        }
    }
}
