//! The classifier on real MNIST: a few hundred steps of a small network must
//! reach 90 % test accuracy. Needs `data/mnist` (`cargo xtask fetch-mnist`);
//! `cargo xtask test-all` runs it when the files are there. About 18 s of CPU
//! time (seed 0 reaches 92.7 %).

use deepgen_cnn::{Classifier, Evaluator, Spec};
use deepgen_core::candle::Device;
use deepgen_core::rng::rng_from_seed;
use deepgen_core::train::{StepCtx, TrainStep};
use deepgen_data::{Batcher, BatcherConfig, load_mnist};
use std::path::Path;

/// Two strided convolutions (28 → 12 → 5) and the logits; 6,042 parameters.
/// Strides instead of pooling keep it cheap on the CPU.
const SMALL_SPEC: &str = "INPUT-28x28x1 CONV-5-8-s2 CONV-3-16-s2 FLATTEN FC-10";
const STEPS: usize = 300;
const N_TEST: usize = 2000;

#[test]
#[ignore = "needs data/mnist"]
fn a_few_hundred_steps_reach_90_percent() -> Result<(), Box<dyn std::error::Error>> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../data/mnist");
    let mnist = load_mnist(&dir)?;
    let spec = Spec::parse(SMALL_SPEC)?;
    assert_eq!(
        spec.table()?.total_parameters(),
        (25 * 8 + 8) + (8 * 9 * 16 + 16) + (400 * 10 + 10)
    );
    let device = Device::Cpu;
    let config = deepgen_core::AdamConfig {
        lr: 3e-3,
        ..Default::default()
    };
    let mut classifier = Classifier::new(&spec, config, 0, &device)?;
    let config = BatcherConfig {
        batch_size: 64,
        ..Default::default()
    };
    let mut batcher = Batcher::new(&mnist.train_images, Some(&mnist.train_labels), config, &device)?;
    let mut rng = rng_from_seed(0);
    batcher.start_epoch(&mut rng);
    for step in 0..STEPS {
        let batch = batcher.batch(step % batcher.n_batches())?;
        let labels = batch.labels.ok_or("the batcher lost the labels")?;
        classifier.train_step(&(batch.images, labels), &StepCtx::default(), &mut rng)?;
    }
    let test_images = mnist.test_images.narrow(0, 0, N_TEST)?;
    let test_labels = mnist.test_labels.narrow(0, 0, N_TEST)?;
    let (loss, accuracy) = Evaluator::new(classifier.model().clone())?.accuracy(&test_images, &test_labels)?;
    assert!(
        accuracy > 0.90,
        "test accuracy {accuracy} (loss {loss}) after {STEPS} steps"
    );

    // As an evaluator, it finds every digit among real test images and is
    // fairly confident about them.
    let evaluation = Evaluator::new(classifier.model().clone())?.evaluate(&test_images)?;
    assert!(
        evaluation.histogram.iter().all(|&count| count > 100),
        "{:?}",
        evaluation.histogram
    );
    assert!(evaluation.mean_confidence > 0.7, "{}", evaluation.mean_confidence);
    assert!(evaluation.class_entropy() > 0.95 * 10f64.ln());
    Ok(())
}
