//! SimCLR through core's trainer: the anchor's network (parameter count),
//! training lowers NT-Xent, the memory bank is a ring kept in the
//! checkpoint (a resumed run ends where an uninterrupted one does), bad
//! configurations are refused; the probes against independent computations.

use candle::{DType, Device, IndexOp, Tensor};
use deepgen_contrastive::{
    Augmentation, Augmentations, KnnConfig, Labelled, ProbeConfig, SimClr, SimClrConfig, as_images, knn_predict,
    linear_probe,
};
use deepgen_core::rng::{randn, rng_from_seed};
use deepgen_core::train::{TrainConfig, fit};
use deepgen_core::{AdamConfig, Trainer, load_model};
use deepgen_data::{BatcherConfig, PairBatcher};

#[test]
fn the_default_model_is_the_anchors() {
    let trainer = Trainer::<SimClr>::new(&SimClrConfig::default(), AdamConfig::default(), 0, &Device::Cpu).unwrap();
    // f: 320 + 18,496 + 401,536; g: 16,512 + 8,256.
    assert_eq!(trainer.parameter_count(), 445_120);
    let xs = Tensor::zeros((3, 784), DType::F32, &Device::Cpu).unwrap();
    let h = trainer.model().represent(&xs).unwrap();
    assert_eq!(h.dims(), &[3, 128]);
    assert_eq!(trainer.model().project(&h).unwrap().dims(), &[3, 64]);
}

/// `n` distinct 12 × 12 images: each the sum of three Gaussian bumps
/// (σ = 1.2 pixels) at random places.
fn bumps(n: usize, seed: u64) -> Tensor {
    use rand::Rng;
    let mut rng = rng_from_seed(seed);
    let mut pixels = vec![0f32; n * 144];
    for image in pixels.chunks_exact_mut(144) {
        for _ in 0..3 {
            let (cy, cx) = (rng.random_range(0.0..12.0f32), rng.random_range(0.0..12.0f32));
            for (p, v) in image.iter_mut().enumerate() {
                let (y, x) = ((p / 12) as f32, (p % 12) as f32);
                *v += (-((y - cy).powi(2) + (x - cx).powi(2)) / (2.0 * 1.44)).exp();
            }
        }
    }
    Tensor::from_vec(pixels, (n, 144), &Device::Cpu).unwrap()
}

fn small_config(bank: usize) -> SimClrConfig {
    SimClrConfig {
        encoder: "INPUT-12x12x1 CONV-3-8-p1 POOL-2 FLATTEN FC-16-relu".into(),
        projection: vec![16, 8],
        temperature: 0.5,
        memory_bank_size: bank,
        augmentations: Augmentations(vec![
            Augmentation::Affine {
                degrees: 10.0,
                scale: (0.9, 1.1),
                translate: 0.1,
            },
            Augmentation::GaussianNoise { sd: 0.05 },
        ]),
    }
}

fn run(config: &SimClrConfig, epochs: usize, dir: &std::path::Path, resume: bool) -> Vec<f64> {
    let xs = bumps(128, 1);
    let recipe = config.augmentations.clone();
    let augment = move |x: &Tensor, rng: &mut deepgen_core::StdRng| -> deepgen_core::Result<Tensor> {
        Ok(recipe.apply(&as_images(x, (1, 12, 12))?, rng)?)
    };
    let batcher = BatcherConfig {
        batch_size: 32,
        drop_last: true,
        ..Default::default()
    };
    let mut data = PairBatcher::new(&xs, batcher, &Device::Cpu, augment).unwrap();
    let adam = AdamConfig {
        lr: 3e-3,
        ..Default::default()
    };
    let mut trainer = Trainer::<SimClr>::new(config, adam, 3, &Device::Cpu).unwrap();
    let train = TrainConfig {
        epochs,
        seed: 3,
        run_dir: Some(dir.to_path_buf()),
        resume,
        progress: false,
    };
    let records = fit(&train, &mut trainer, &mut data, |_, _| Ok(())).unwrap();
    records.iter().map(|r| r.train.get("loss").unwrap()).collect()
}

/// Ten epochs of four batches lower the loss well below its start, with
/// and without a memory bank.
#[test]
fn training_lowers_the_loss() {
    for bank in [0, 48] {
        let dir = tempfile::tempdir().unwrap();
        let losses = run(&small_config(bank), 10, dir.path(), false);
        let (first, last) = (losses[0], losses[losses.len() - 1]);
        assert!(last.is_finite() && last < first - 0.3, "bank {bank}: {losses:?}");
    }
}

/// Three epochs at once, or two then a resumed third: the same weights and
/// the same bank.
#[test]
fn a_resumed_run_ends_where_an_uninterrupted_one_does() {
    let config = small_config(40);
    let (whole, split) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    run(&config, 3, whole.path(), false);
    run(&config, 2, split.path(), false);
    run(&config, 3, split.path(), true);
    let (a, _) = load_model::<SimClr>(whole.path(), &Device::Cpu).unwrap();
    let (b, _) = load_model::<SimClr>(split.path(), &Device::Cpu).unwrap();
    let xs = bumps(8, 5);
    let same = |x: &Tensor, y: &Tensor| {
        let d = (x - y)
            .unwrap()
            .abs()
            .unwrap()
            .max_all()
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        assert_eq!(d, 0.0);
    };
    same(&a.represent(&xs).unwrap(), &b.represent(&xs).unwrap());
    same(a.bank().unwrap(), b.bank().unwrap());
}

/// Batches of 3 into a bank of 5: rows fill in order and wrap around; a
/// batch larger than the bank leaves its last rows.
#[test]
fn the_memory_bank_is_a_ring() {
    let mut config = small_config(5);
    config.projection = vec![2];
    let trainer = Trainer::<SimClr>::new(&config, AdamConfig::default(), 0, &Device::Cpu).unwrap();
    let model = trainer.model();
    let rows = |values: &[f32]| Tensor::from_vec(values.to_vec(), (values.len() / 2, 2), &Device::Cpu).unwrap();
    model.enqueue(&rows(&[1., 1., 2., 2., 3., 3.]), 0).unwrap();
    model.enqueue(&rows(&[4., 4., 5., 5., 6., 6.]), 3).unwrap();
    let bank = model.bank().unwrap().to_vec2::<f32>().unwrap();
    assert_eq!(bank, [[6., 6.], [2., 2.], [3., 3.], [4., 4.], [5., 5.]]);
    let seven: Vec<f32> = (0..7).flat_map(|i| [i as f32, i as f32]).collect();
    model.enqueue(&rows(&seven), 2).unwrap();
    let bank = model.bank().unwrap().to_vec2::<f32>().unwrap();
    // Batch row k goes to bank row (2 + k) mod 5; rows 5 and 6 overwrite rows 0 and 1 of the batch.
    assert_eq!(bank, [[3., 3.], [4., 4.], [5., 5.], [6., 6.], [2., 2.]]);
}

#[test]
fn bad_configurations_and_batches_are_refused() {
    let err = |c: SimClrConfig| c.validate().err().map(|e| e.to_string()).unwrap_or_default();
    let not_a_vector = SimClrConfig {
        encoder: "INPUT-28x28x1 CONV-3-8 POOL-2".into(),
        ..Default::default()
    };
    assert!(err(not_a_vector).contains("is not a vector"));
    let takes_vectors = SimClrConfig {
        encoder: "INPUT-784 FC-10".into(),
        ..Default::default()
    };
    assert!(err(takes_vectors).contains("must take images"));
    assert!(
        err(SimClrConfig {
            temperature: 0.0,
            ..Default::default()
        })
        .contains("temperature")
    );
    assert!(
        err(SimClrConfig {
            projection: vec![],
            ..Default::default()
        })
        .contains("projection")
    );
    let trainer = Trainer::<SimClr>::new(&small_config(0), AdamConfig::default(), 0, &Device::Cpu).unwrap();
    let xs = bumps(1, 0);
    let one = as_images(&xs, (1, 12, 12)).unwrap();
    let message = trainer.model().loss(&one, &one, 0).unwrap_err().to_string();
    assert!(message.contains("at least 2"), "{message}");
}

/// Four Gaussian clusters in 6-D: the probe separates them; k-NN's
/// predictions equal a brute-force weighted vote computed here.
#[test]
fn the_probes_against_independent_computations() {
    let mut rng = rng_from_seed(21);
    let centres = randn(&mut rng, (4, 6), &Device::Cpu).unwrap() * 3.0;
    let sample = |n: usize, rng: &mut deepgen_core::StdRng| {
        let labels: Vec<u32> = (0..n as u32).map(|i| i % 4).collect();
        let idx = Tensor::from_vec(labels.clone(), n, &Device::Cpu).unwrap();
        let xs = (centres.as_ref().unwrap().index_select(&idx, 0).unwrap() + randn(rng, (n, 6), &Device::Cpu).unwrap())
            .unwrap();
        (xs, idx)
    };
    let (train_x, train_y) = sample(400, &mut rng);
    let (test_x, test_y) = sample(200, &mut rng);
    let train = Labelled {
        features: &train_x,
        labels: &train_y,
    };
    let test = Labelled {
        features: &test_x,
        labels: &test_y,
    };
    let accuracy = linear_probe(train, test, &ProbeConfig::default(), &Device::Cpu).unwrap();
    assert!(accuracy > 0.9, "linear probe {accuracy}");

    let config = KnnConfig {
        k: 7,
        temperature: 0.5,
        chunk: 64,
    };
    let ours = knn_predict(train, &test_x, &config, &Device::Cpu).unwrap();
    let a = train_x.to_vec2::<f32>().unwrap();
    let labels = train_y.to_vec1::<u32>().unwrap();
    let cosine = |u: &[f32], v: &[f32]| {
        let dot: f64 = u.iter().zip(v).map(|(a, b)| f64::from(*a) * f64::from(*b)).sum();
        let norm = |x: &[f32]| x.iter().map(|a| f64::from(*a).powi(2)).sum::<f64>().sqrt();
        dot / (norm(u) * norm(v))
    };
    for (t, query) in test_x.to_vec2::<f32>().unwrap().iter().enumerate() {
        let mut sims: Vec<(f64, usize)> = a.iter().enumerate().map(|(i, row)| (cosine(query, row), i)).collect();
        sims.sort_by(|x, y| y.0.total_cmp(&x.0));
        let mut votes = [0f64; 4];
        for &(s, i) in &sims[..7] {
            votes[labels[i] as usize] += (s / 0.5).exp();
        }
        let best = (0..4).fold(0, |b, c| if votes[c] > votes[b] { c } else { b });
        assert_eq!(ours[t], best as u32, "test row {t}");
    }
    let probe_error = linear_probe(
        train,
        Labelled {
            features: &test_x.i((.., ..3)).unwrap(),
            labels: &test_y,
        },
        &ProbeConfig::default(),
        &Device::Cpu,
    );
    assert!(probe_error.is_err());
}
