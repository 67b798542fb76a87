//! `deepgen train cnn`, `deepgen eval cnn` and `deepgen cnn summary`.

use crate::args::{DataArg, RunFlags};
use crate::run::{NoTraining, RunDefaults, TrainRun, group_thousands, load_dataset, open_device, say};
use anyhow::{Context, Result, bail};
use clap::Args;
use deepgen_cnn::{Classifier, DEFAULT_MNIST_SPEC, Dims, Evaluator, Spec};
use deepgen_core::DeviceChoice;
use deepgen_data::{BatcherConfig, LabelledBatcher};
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// The layer-spec language, for `--help`.
pub const SPEC_HELP: &str = "\
A spec is one line of tokens separated by spaces:
  INPUT-HxWxC          an H×W image with C channels (or INPUT-N, a vector); first, once
  CONV-K-N[-sS][-pP]   N filters of K×K, stride S (default 1), zero padding P (default 0)
  CONVT-K-N[-sS][-pP]  transposed convolution, output side (H − 1)·S − 2P + K
  POOL-K               K×K max pooling, stride K
  AVGPOOL-K            K×K average pooling, stride K
  FLATTEN              H×W×C → a vector of H·W·C
  FC-N                 fully connected, N outputs
CONV, CONVT and FC are followed by ReLU, except the last token, which is linear.
A suffix sets the activation: -relu, -lrelu (slope 0.2), -tanh, -sigmoid, -linear.

Seed 000's network:
  INPUT-128x128x3 CONV-9-32 POOL-2 CONV-5-64 POOL-2 CONV-5-64 POOL-2 FLATTEN FC-3";

/// The defaults of `deepgen train cnn`: three epochs of Adam at PyTorch's
/// default rate, batches of 64 (Candle's MNIST example).
const DEFAULTS: RunDefaults = RunDefaults {
    epochs: 3,
    batch_size: 64,
    lr: 1e-3,
};

/// Flags of `deepgen train cnn`.
#[derive(Debug, Args)]
#[command(after_long_help = SPEC_HELP)]
pub struct TrainArgs {
    /// The network in the layer-spec language; it must take 28×28 grey
    /// images and end in 10 logits [default: the LeNet-class
    /// "INPUT-28x28x1 CONV-5-32-p2 POOL-2 CONV-5-64-p2 POOL-2 FLATTEN FC-512 FC-10";
    /// with --resume, the run's own spec].
    #[arg(long, value_name = "SPEC")]
    pub spec: Option<String>,
    #[command(flatten)]
    pub run: RunFlags,
}

/// The `[model]` table of a CNN run's `config.toml`: the network's spec.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CnnTable {
    /// The layer spec [default: the LeNet-class MNIST spec].
    pub spec: Option<String>,
}

/// Flags of `deepgen cnn summary`.
#[derive(Debug, Args)]
#[command(after_long_help = SPEC_HELP)]
pub struct SummaryArgs {
    /// The network, e.g. "INPUT-28x28x1 CONV-5-8 POOL-2 FLATTEN FC-10"
    /// [default: the MNIST default spec].
    #[arg(value_name = "SPEC")]
    pub spec: Option<String>,
}

/// Flags of `deepgen eval cnn`.
#[derive(Debug, Args)]
pub struct EvalArgs {
    /// Run directory of `deepgen train cnn` (or its checkpoint file).
    #[arg(long, value_name = "DIR", default_value = "runs/cnn-mnist")]
    pub run: PathBuf,
    /// Data set whose test split is evaluated.
    #[arg(long, value_enum, default_value_t = DataArg::Mnist)]
    pub data: DataArg,
    /// Folder with the four IDX files [default: data/mnist or data/fashion-mnist].
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Device: cpu, cuda, cuda:N, metal or auto.
    #[arg(long, value_name = "D", default_value = "auto")]
    pub device: DeviceChoice,
}

/// Parses a spec given on the command line; errors point at the token.
pub(crate) fn parse_spec(text: &str) -> Result<Spec> {
    let spec = Spec::parse(text).map_err(|e| spec_error(text, e))?;
    spec.table().map_err(|e| spec_error(text, e))?;
    Ok(spec)
}

/// The error with the spec underneath and a caret line under the token it
/// names (by position), e.g.
///
/// ```text
/// invalid spec: token 2 `CONV-x-32` (at character 15): kernel size `x` is not a positive integer
///   INPUT-28x28x1 CONV-x-32 FC-10
///                 ^^^^^^^^^
/// ```
fn spec_error(text: &str, err: deepgen_cnn::Error) -> anyhow::Error {
    let position = match &err {
        deepgen_cnn::Error::Parse { position, .. } | deepgen_cnn::Error::LayerDoesNotFit { position, .. } => {
            Some(*position)
        }
        _ => None,
    };
    let mut message = format!("invalid spec: {err}");
    if let Some(position) = position
        && let Some((offset, len)) = token_span(text, position)
    {
        // One column per character; white space shown as spaces.
        let shown: String = text.chars().map(|c| if c.is_whitespace() { ' ' } else { c }).collect();
        message.push_str(&format!(
            "\n  {}\n  {}{}",
            shown.trim_end(),
            " ".repeat(offset),
            "^".repeat(len.max(1))
        ));
    }
    anyhow::anyhow!(message)
}

/// 0-based character offset and length of the `position`-th (1-based)
/// white-space separated token.
fn token_span(text: &str, position: usize) -> Option<(usize, usize)> {
    let mut index = 0;
    let mut start = None;
    let chars: Vec<char> = text.chars().collect();
    for (i, c) in chars.iter().enumerate() {
        match (c.is_whitespace(), start) {
            (false, None) => start = Some(i),
            (true, Some(s)) => {
                index += 1;
                if index == position {
                    return Some((s, i - s));
                }
                start = None;
            }
            _ => {}
        }
    }
    let s = start?;
    (index + 1 == position).then_some((s, chars.len() - s))
}

/// `deepgen cnn summary`: the shape and parameter table.
pub fn summary(args: &SummaryArgs) -> Result<()> {
    let text = args.spec.as_deref().unwrap_or(DEFAULT_MNIST_SPEC);
    let spec = parse_spec(text)?;
    say(&spec.table()?.to_string());
    Ok(())
}

/// Whether the spec takes MNIST's 28×28 grey images and ends in 10 logits.
pub(crate) fn check_mnist_spec(spec: &Spec) -> Result<()> {
    let input_ok = matches!(
        spec.input(),
        Dims::Image {
            height: 28,
            width: 28,
            channels: 1
        } | Dims::Flat(784)
    );
    if !input_ok {
        bail!(
            "the spec's input `{}` does not take 28×28 grey images; start it with INPUT-28x28x1 (or INPUT-784)",
            spec.input_token()
        );
    }
    let output = spec.table()?.output();
    if output != Dims::Flat(10) {
        bail!("the spec ends in {output}, not 10 logits; end it with FC-10");
    }
    Ok(())
}

/// `deepgen train cnn`: trains a classifier through core's loop.
pub fn train(args: &TrainArgs) -> Result<()> {
    let (mut run, table, training) = TrainRun::start::<CnnTable, NoTraining>(&args.run, "cnn", |_| DEFAULTS)?;
    // `--spec`, else the config file's (with --resume, the run's own), else the default.
    let spec = parse_spec(
        args.spec
            .as_deref()
            .or(table.spec.as_deref())
            .unwrap_or(DEFAULT_MNIST_SPEC),
    )?;
    check_mnist_spec(&spec)?;
    let device = run.open_device()?;
    let data = run.load_images()?;

    let (test_images, test_labels) = (data.test_images.clone(), data.test_labels.clone());
    let mut classifier = Classifier::new(&spec, run.adam(), run.settings.seed, &device)?
        .with_evaluation(move |cnn, _| Ok(cnn.test_metrics(&test_images, &test_labels)?));
    let batcher = BatcherConfig {
        batch_size: run.settings.batch_size,
        ..Default::default()
    };
    let mut batches = LabelledBatcher::new(&data.train_images, &data.train_labels, batcher, &device)?;

    let file = run.file(
        "cnn",
        CnnTable {
            spec: Some(spec.to_string()),
        },
        training,
    );
    run.create_run_dir(&file)?;
    run.announce(&format!(
        "training `{spec}` ({} parameters) on {} ({} train / {} test images)",
        group_thousands(classifier.model().n_parameters()),
        run.settings.data.name(),
        data.n_train(),
        data.n_test()
    ));
    run.announce(&run.schedule_summary(&device));
    let Some(records) = run.fit(&mut classifier, &mut batches, &file, |_, _| Ok(()))? else {
        return Ok(());
    };
    let accuracy = records
        .last()
        .and_then(|last| last.eval.get("test_accuracy"))
        .map_or_else(String::new, |a| format!(", test accuracy {:.2} %", 100.0 * a));
    run.say_done(&records, &accuracy, &[]);
    Ok(())
}

/// `deepgen eval cnn`: test loss, accuracy and the predicted-class histogram
/// of a trained run.
pub fn eval(args: &EvalArgs) -> Result<()> {
    let device = open_device(args.device)?;
    let evaluator = Evaluator::load(&args.run, &device)
        .with_context(|| format!("cannot load the classifier in `{}`", args.run.display()))?;
    check_mnist_spec(evaluator.model().spec())?;
    let dataset = args.data.require_images()?;
    let data = load_dataset(dataset, &args.data.dir(args.data_dir.as_deref()))?;
    let (loss, accuracy) = evaluator.accuracy(&data.test_images, &data.test_labels)?;
    let evaluation = evaluator.evaluate(&data.test_images)?;
    say(&format!(
        "`{}`: {} ({} parameters)",
        args.run.display(),
        evaluator.model().spec(),
        group_thousands(evaluator.model().n_parameters())
    ));
    say(&format!(
        "{dataset} test set ({} images): test_loss {loss:.4}  test_accuracy {:.2} %  mean confidence {:.4}",
        evaluation.n_images(),
        100.0 * accuracy,
        evaluation.mean_confidence
    ));
    let names = dataset.class_names();
    let histogram: Vec<String> = evaluation
        .histogram
        .iter()
        .enumerate()
        .map(|(class, count)| format!("{}: {count}", names.get(class).copied().unwrap_or("?")))
        .collect();
    say(&format!("predicted classes: {}", histogram.join("  ")));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_spans_count_characters() {
        assert_eq!(token_span("INPUT-28x28x1 CONV-x-32 FC-10", 2), Some((14, 9)));
        assert_eq!(token_span("  A  BB\tCCC ", 3), Some((8, 3)));
        assert_eq!(token_span("A×B C", 2), Some((4, 1)));
        assert_eq!(token_span("A B", 3), None);
    }

    #[test]
    fn spec_errors_point_at_the_token() {
        let err = parse_spec("INPUT-28x28x1 CONV-x-32 FC-10").unwrap_err().to_string();
        assert_eq!(
            err,
            "invalid spec: token 2 `CONV-x-32` (at character 15): kernel size `x` is not a positive integer\n  \
             INPUT-28x28x1 CONV-x-32 FC-10\n                ^^^^^^^^^"
        );
        let err = parse_spec("INPUT-8x8x1 CONV-9-4").unwrap_err().to_string();
        assert!(
            err.starts_with("invalid spec: layer 2 `CONV-9-4` does not fit"),
            "{err}"
        );
        assert!(
            err.ends_with("\n  INPUT-8x8x1 CONV-9-4\n              ^^^^^^^^"),
            "{err}"
        );
    }

    #[test]
    fn mnist_specs_are_checked() -> Result<()> {
        check_mnist_spec(&parse_spec(DEFAULT_MNIST_SPEC)?)?;
        check_mnist_spec(&parse_spec("INPUT-784 FC-10")?)?;
        let err = check_mnist_spec(&parse_spec("INPUT-32x32x3 FLATTEN FC-10")?).unwrap_err();
        assert!(err.to_string().contains("INPUT-28x28x1"), "{err}");
        let err = check_mnist_spec(&parse_spec("INPUT-28x28x1 FLATTEN FC-3")?).unwrap_err();
        assert!(err.to_string().contains("FC-10"), "{err}");
        Ok(())
    }
}
