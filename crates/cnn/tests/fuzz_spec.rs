//! The layer-spec parser and its shape inference fed arbitrary text and
//! adversarial token sequences (issue 18): `Spec::parse`, `Spec::table`, the
//! table's `Display` and the canonical text return `Ok` or a clean error,
//! never panic (tests run with overflow checks, so an unchecked product is a
//! panic here), and a parsed spec's canonical text parses back to it.

use deepgen_cnn::{Activation, ConvSpec, Dims, Error, Layer, Spec};
use proptest::prelude::*;

/// Parses `text`, and when it parses, builds the table, prints it, and
/// checks the canonical text round-trips; when it does not, checks the
/// error points at a token of the text.
fn check_spec_text(text: &str) -> Result<(), TestCaseError> {
    match Spec::parse(text) {
        Ok(spec) => {
            let canonical = spec.to_string();
            let again = Spec::parse(&canonical).map_err(|e| TestCaseError::fail(format!("{canonical:?}: {e}")))?;
            prop_assert_eq!(&again, &spec, "{:?} → {:?}", text, canonical);
            check_table(&spec)?;
        }
        Err(Error::EmptySpec) => prop_assert!(text.trim().is_empty(), "{text:?}"),
        Err(Error::Parse {
            token,
            position,
            offset,
            reason,
        }) => {
            prop_assert!(position >= 1 && offset >= 1 && !reason.is_empty());
            let at: String = text.chars().skip(offset - 1).take(token.chars().count()).collect();
            prop_assert_eq!(at, token);
        }
        Err(other) => prop_assert!(false, "unexpected error {other}"),
    }
    Ok(())
}

/// The table of `spec` is `Ok` with consistent totals, or `LayerDoesNotFit`.
fn check_table(spec: &Spec) -> Result<(), TestCaseError> {
    match spec.table() {
        Ok(table) => {
            prop_assert_eq!(table.rows().len(), spec.layers().len() + 1);
            let total = table.total_weights().checked_add(table.total_biases());
            prop_assert_eq!(total, Some(table.total_parameters()));
            for row in table.rows() {
                prop_assert!(row.output.elem_count().is_some(), "{row:?}");
            }
            let printed = table.to_string();
            prop_assert!(printed.contains("Parameters in all"));
        }
        Err(Error::LayerDoesNotFit { position, reason, .. }) => {
            prop_assert!(position >= 1 && position <= spec.layers().len() + 1 && !reason.is_empty());
        }
        Err(other) => prop_assert!(false, "unexpected error {other}"),
    }
    Ok(())
}

/// A number as text: small, zero, at and past the limits of `u32`, `u64`
/// and `usize`, signed, padded, empty, or not a number at all.
fn arb_number() -> impl Strategy<Value = String> {
    prop_oneof![
        16 => (1usize..40).prop_map(|n| n.to_string()),
        1 => Just("0".to_string()),
        1 => Just(u32::MAX.to_string()),
        1 => Just("4294967296".to_string()),
        1 => Just((1usize << 32).to_string()),
        1 => Just((1usize << 63).to_string()),
        1 => Just(usize::MAX.to_string()),
        1 => Just((usize::MAX / 2).to_string()),
        1 => Just("18446744073709551616".to_string()),
        1 => Just("99999999999999999999999999".to_string()),
        1 => any::<usize>().prop_map(|n| n.to_string()),
        1 => prop::sample::select(vec!["+5", "-1", "007", "", "x", "1e3", "٣", "0x10", " "]).prop_map(str::to_string),
    ]
}

fn arb_activation_text() -> impl Strategy<Value = String> {
    prop::sample::select(vec![
        "relu", "lrelu", "tanh", "sigmoid", "linear", "RELU", "Tanh", "gelu", "",
    ])
    .prop_map(str::to_string)
}

/// An option of a layer: `sN`, `pN`, an activation, or junk.
fn arb_option() -> impl Strategy<Value = String> {
    prop_oneof![
        2 => arb_number().prop_map(|n| format!("s{n}")),
        2 => arb_number().prop_map(|n| format!("p{n}")),
        2 => arb_activation_text(),
        1 => arb_number().prop_map(|n| format!("S{n}")),
        1 => arb_number(),
    ]
}

/// One token from the grammar's vocabulary: mostly a layer with the right
/// count of numbers (which may be 0, huge or junk) and options, sometimes
/// any name with any parts.
fn arb_token() -> impl Strategy<Value = String> {
    let options = || {
        prop::collection::vec(arb_option(), 0..3).prop_map(|o| o.iter().map(|o| format!("-{o}")).collect::<String>())
    };
    let conv = prop::sample::select(vec!["CONV", "conv", "CONVT", "ConvT"]);
    let pool = prop::sample::select(vec!["POOL", "AVGPOOL", "avgpool"]);
    let any_name = prop::sample::select(vec![
        "INPUT", "CONV", "CONVT", "POOL", "AVGPOOL", "FLATTEN", "FC", "BOGUS", "",
    ]);
    prop_oneof![
        4 => (conv, arb_number(), arb_number(), options()).prop_map(|(name, k, n, o)| format!("{name}-{k}-{n}{o}")),
        2 => (pool, arb_number()).prop_map(|(name, k)| format!("{name}-{k}")),
        2 => Just("FLATTEN".to_string()),
        3 => (arb_number(), prop::option::of(arb_activation_text()))
            .prop_map(|(n, a)| format!("FC-{n}{}", a.map_or(String::new(), |a| format!("-{a}")))),
        1 => (any_name, prop::collection::vec(arb_option(), 0..4)).prop_map(|(name, parts)| {
            let mut all = vec![name.to_string()];
            all.extend(parts);
            all.join("-")
        }),
    ]
}

/// White space between tokens, ASCII and not.
fn arb_space() -> impl Strategy<Value = String> {
    prop::sample::select(vec![" ", "  ", "\t", "\n", "\u{3000}", "\u{a0}", "\u{2003}"]).prop_map(str::to_string)
}

/// A spec text: usually an input token first, then tokens of the grammar.
fn arb_token_text() -> impl Strategy<Value = String> {
    (
        prop::bool::weighted(0.9),
        (
            prop::collection::vec(arb_number(), 3..4),
            any::<bool>(),
            prop::sample::select(vec!["x", "X", "×", "*"]),
        ),
        prop::collection::vec((arb_token(), arb_space()), 0..7),
        arb_space(),
    )
        .prop_map(|(with_input, (dims, flat, sep), tokens, lead)| {
            let mut text = lead;
            if with_input {
                let dims = if flat { dims[0].clone() } else { dims.join(sep) };
                text.push_str(&format!("INPUT-{dims} "));
            }
            for (token, space) in tokens {
                text.push_str(&token);
                text.push_str(&space);
            }
            text
        })
}

/// A size for a spec built directly: anything, 0 included (which the parser
/// never produces, but `Spec::new` accepts and `Spec::table` checks).
fn arb_size() -> impl Strategy<Value = usize> {
    prop_oneof![
        6 => 1usize..40,
        1 => Just(0),
        1 => Just(usize::MAX),
        1 => (20u32..64).prop_map(|s| 1usize << s),
        1 => any::<usize>(),
    ]
}

fn arb_activation() -> impl Strategy<Value = Activation> {
    prop::sample::select(Activation::ALL.to_vec())
}

fn arb_conv() -> impl Strategy<Value = ConvSpec> {
    (arb_size(), arb_size(), arb_size(), arb_size(), arb_activation()).prop_map(
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
        arb_size().prop_map(|kernel| Layer::MaxPool { kernel }),
        arb_size().prop_map(|kernel| Layer::AvgPool { kernel }),
        Just(Layer::Flatten),
        (arb_size(), arb_activation()).prop_map(|(units, activation)| Layer::Fc { units, activation }),
    ]
}

fn arb_dims() -> impl Strategy<Value = Dims> {
    prop_oneof![
        (arb_size(), arb_size(), arb_size()).prop_map(|(height, width, channels)| Dims::Image {
            height,
            width,
            channels
        }),
        arb_size().prop_map(Dims::Flat),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// Any Unicode text.
    #[test]
    fn prop_any_text_never_panics(text in any::<String>()) {
        check_spec_text(&text)?;
    }

    /// Any text over the grammar's alphabet, so that some of it parses.
    #[test]
    fn prop_alphabet_text_never_panics(text in "[A-Za-z0-9x×\\- \t]{0,60}") {
        check_spec_text(&text)?;
    }

    /// Token sequences from the grammar's vocabulary with numbers at and past
    /// the limits (0, `u32::MAX`, `usize::MAX`, `2^64`), signs, junk options
    /// and Unicode white space.
    #[test]
    fn prop_vocabulary_tokens_never_panic(text in arb_token_text()) {
        check_spec_text(&text)?;
    }

    /// Specs built directly, with zero and huge sizes in every field: the
    /// table checks them all and never overflows or divides by zero.
    #[test]
    fn prop_table_of_any_spec_never_panics(input in arb_dims(), layers in prop::collection::vec(arb_layer(), 0..6)) {
        let spec = Spec::new(input, layers);
        check_table(&spec)?;
        // The canonical text of any spec parses, or is a clean parse error
        // (a 0 the parser refuses).
        check_spec_text(&spec.to_string())?;
    }
}
