//! The decoder's output bias initialised from the data
//! ([`deepgen_vae::Decoder::init_output_bias`]): checked in f64 against its
//! defining property — with the output weights at zero it is the
//! maximum-likelihood independent-pixel model, so moving any bias away from
//! it by a small step makes the data less likely — and against the data's
//! means; other parameters are untouched; bad inputs are errors.

use candle::{DType, Device, Tensor};
use candle_nn::VarMap;
use deepgen_core::nn::Linear;
use deepgen_core::rng::{rand_uniform, rng_from_seed};
use deepgen_core::seeded_var_builder;
use deepgen_vae::decoder::MARGINAL_CLAMP;
use deepgen_vae::{Architecture, Decoder, DecoderKind, OutputBias, VaeConfig, vae};
use proptest::prelude::*;
use proptest::test_runner::{RngSeed, TestCaseError};

type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

/// Seed of the case generator unless `PROPTEST_RNG_SEED` sets one.
const PROPTEST_SEED: u64 = 0x5eed_0000_0000_0b1a;

fn fail(e: impl std::fmt::Display) -> TestCaseError {
    TestCaseError::fail(e.to_string())
}

/// `n` images of `d` pixels: each pixel is 0 with probability `p_zero`
/// (like MNIST's background), else uniform in [0, 1]; column 0 is always 0
/// and column 1 always 1, the cases the clamp is for.
fn images(seed: u64, n: usize, d: usize, p_zero: f64) -> Result<Vec<Vec<f64>>> {
    let u = rand_uniform(&mut rng_from_seed(seed), (n, 2 * d), 0.0, 1.0, &Device::Cpu)?
        .to_dtype(DType::F64)?
        .to_vec2::<f64>()?;
    Ok(u.iter()
        .map(|row| {
            (0..d)
                .map(|j| match j {
                    0 => 0.0,
                    1 => 1.0,
                    _ if row[j] < p_zero => 0.0,
                    _ => row[d + j],
                })
                .collect()
        })
        .collect())
}

fn tensor(rows: &[Vec<f64>]) -> Result<Tensor> {
    let d = rows[0].len();
    let flat: Vec<f32> = rows.iter().flatten().map(|&v| v as f32).collect();
    Ok(Tensor::from_vec(flat, (rows.len(), d), &Device::Cpu)?)
}

fn values(t: &Tensor) -> Result<Vec<f64>> {
    Ok(t.to_dtype(DType::F64)?.to_vec1::<f64>()?)
}

/// `−Σ_n log p(x_nj)` of one pixel column under `p(x) = Bern(σ(b))` on grey
/// levels (binary cross-entropy, as the decoder scores it), in f64.
fn bernoulli_nll(column: &[f64], b: f64) -> f64 {
    let softplus = |t: f64| t.max(0.0) + (-t.abs()).exp().ln_1p();
    column.iter().map(|&x| softplus(b) - x * b).sum()
}

/// `½ Σ_n (x_nj − b)²`, the unit-variance Gaussian's `−log p` up to a constant.
fn gaussian_nll(column: &[f64], b: f64) -> f64 {
    column.iter().map(|&x| 0.5 * (x - b) * (x - b)).sum()
}

/// A pixel column's negative log-likelihood as a function of its bias.
type PixelNll = fn(&[f64], f64) -> f64;

fn mlp_model(decoder: DecoderKind, d: usize, seed: u64) -> Result<(deepgen_vae::Vae, VarMap)> {
    let varmap = VarMap::new();
    let config = VaeConfig {
        input_dim: d,
        hidden_dim: 6,
        latent_dim: 2,
        decoder,
        ..Default::default()
    };
    let model = vae(&config, seeded_var_builder(&varmap, seed, DType::F32, &Device::Cpu))?;
    Ok((model, varmap))
}

/// Every variable's values, by name, except `skip`.
fn other_values(varmap: &VarMap, skip: &str) -> Result<Vec<(String, Vec<f32>)>> {
    let vars = varmap.data().lock().map_err(|e| e.to_string())?;
    let mut out: Vec<_> = vars
        .iter()
        .filter(|(name, _)| name.as_str() != skip)
        .map(|(name, var)| Ok((name.clone(), var.as_tensor().flatten_all()?.to_vec1::<f32>()?)))
        .collect::<Result<_>>()?;
    out.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(out)
}

fn check_mlp(decoder: DecoderKind, seed: u64, n: usize, d: usize, p_zero: f64) -> Result<()> {
    let rows = images(seed, n, d, p_zero)?;
    let (model, varmap) = mlp_model(decoder, d, seed)?;
    let before = other_values(&varmap, "decoder.out.bias")?;
    model.decoder().init_output_bias(&tensor(&rows)?)?;
    assert_eq!(
        other_values(&varmap, "decoder.out.bias")?,
        before,
        "only the output bias moves"
    );
    let bias = values(&varmap.get(
        (d,),
        "decoder.out.bias",
        candle_nn::Init::Const(0.0),
        DType::F32,
        &Device::Cpu,
    )?)?;
    for (j, &b) in bias.iter().enumerate() {
        let column: Vec<f64> = rows.iter().map(|r| r[j]).collect();
        let mean = column.iter().sum::<f64>() / n as f64;
        let (expected, nll): (f64, PixelNll) = match decoder {
            DecoderKind::Bernoulli => {
                let p = mean.clamp(MARGINAL_CLAMP, 1.0 - MARGINAL_CLAMP);
                ((p / (1.0 - p)).ln(), bernoulli_nll)
            }
            DecoderKind::Gaussian | DecoderKind::GaussianLearned => (mean, gaussian_nll),
        };
        assert!((b - expected).abs() < 1e-4, "pixel {j}: bias {b}, expected {expected}");
        // Away from the clamp, b minimises the data's negative log-likelihood:
        // a step of 0.05 either way costs likelihood.
        if (MARGINAL_CLAMP..=1.0 - MARGINAL_CLAMP).contains(&mean) {
            let at = nll(&column, b);
            assert!(
                nll(&column, b - 0.05) > at && nll(&column, b + 0.05) > at,
                "pixel {j}: bias {b} is not the likelihood's minimum"
            );
        }
    }
    Ok(())
}

fn config() -> ProptestConfig {
    let mut config = ProptestConfig::with_cases(24);
    config.rng_seed = RngSeed::Fixed(
        std::env::var("PROPTEST_RNG_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(PROPTEST_SEED),
    );
    config
}

proptest! {
    #![proptest_config(config())]

    /// For random data sets (sizes, background fraction) and every decoder,
    /// the bias is the data's clamped log-odds or mean, each pixel's
    /// likelihood is at its maximum there, and nothing else changes.
    #[test]
    fn prop_output_bias_is_the_maximum_likelihood_pixel_model(
        seed in any::<u64>(),
        n in 1usize..40,
        d in 3usize..20,
        p_zero in 0.0f64..0.9,
        decoder in prop_oneof![
            Just(DecoderKind::Bernoulli),
            Just(DecoderKind::Gaussian),
            Just(DecoderKind::GaussianLearned),
        ],
    ) {
        check_mlp(decoder, seed, n, d, p_zero).map_err(fail)?;
    }
}

/// The convolutional decoder has one output bias per channel: the mean of
/// all the channel's pixels over the data; the learned-variance decoder's
/// variance half of that bias keeps its value.
#[test]
fn conv_decoder_takes_each_channels_mean() -> Result<()> {
    let (side, channels, n) = (8, 2, 5);
    let d = channels * side * side;
    let rows = images(3, n, d, 0.5)?;
    for decoder in [DecoderKind::Bernoulli, DecoderKind::GaussianLearned] {
        let varmap = VarMap::new();
        let config = VaeConfig {
            architecture: Architecture::Conv,
            input_dim: d,
            channels,
            hidden_dim: 8,
            latent_dim: 2,
            decoder,
            ..Default::default()
        };
        let model = vae(&config, seeded_var_builder(&varmap, 1, DType::F32, &Device::Cpu))?;
        let width = if decoder == DecoderKind::GaussianLearned {
            2 * channels
        } else {
            channels
        };
        let get = || -> Result<Vec<f64>> {
            let var = varmap.get(
                (width,),
                "decoder.deconv2.bias",
                candle_nn::Init::Const(0.0),
                DType::F32,
                &Device::Cpu,
            )?;
            values(&var)
        };
        let before = get()?;
        model.decoder().init_output_bias(&tensor(&rows)?)?;
        let after = get()?;
        for c in 0..channels {
            let pixels = side * side;
            let mean = rows.iter().flat_map(|r| &r[c * pixels..(c + 1) * pixels]).sum::<f64>() / (n * pixels) as f64;
            let expected = match decoder {
                DecoderKind::Bernoulli => (mean / (1.0 - mean)).ln(),
                _ => mean,
            };
            assert!(
                (after[c] - expected).abs() < 1e-5,
                "channel {c}: {} vs {expected}",
                after[c]
            );
        }
        assert_eq!(after[channels..], before[channels..], "the variance half is untouched");
    }
    Ok(())
}

#[test]
fn bad_inputs_are_errors() -> Result<()> {
    let (model, _varmap) = mlp_model(DecoderKind::Bernoulli, 5, 1)?;
    for shape in [vec![3, 4], vec![0, 5], vec![5]] {
        let xs = Tensor::zeros(shape.as_slice(), DType::F32, &Device::Cpu)?;
        let err = model.decoder().init_output_bias(&xs).err().map(|e| e.to_string());
        assert!(
            err.as_deref()
                .is_some_and(|e| e.contains("images for the output bias") && e.contains("[n ≥ 1, 5]")),
            "{shape:?}: {err:?}"
        );
    }
    // A decoder from plain tensors has no variable to set.
    let layer = |i: usize, o: usize| -> Result<Linear> {
        Ok(Linear::new(
            Tensor::zeros((o, i), DType::F32, &Device::Cpu)?,
            Tensor::zeros(o, DType::F32, &Device::Cpu)?,
        ))
    };
    let plain = Decoder::new(DecoderKind::Bernoulli, layer(2, 3)?, layer(3, 5)?, None);
    let err = plain
        .init_output_bias(&Tensor::full(0.5f32, (2, 5), &Device::Cpu)?)
        .err()
        .map(|e| e.to_string());
    assert!(err.as_deref().is_some_and(|e| e.contains("no variable")), "{err:?}");
    Ok(())
}

/// `start_output_bias`: `pytorch` leaves every variable as built (nn.Linear's
/// start), `marginal` is `init_output_bias` to the bit.
#[test]
fn start_output_bias_keeps_pytorch_and_sets_marginal() -> Result<()> {
    let (d, seed) = (6, 3);
    let rows = tensor(&images(seed, 40, d, 0.3)?)?;
    let (model, varmap) = mlp_model(DecoderKind::Bernoulli, d, seed)?;
    let built = other_values(&varmap, "")?;
    model.decoder().start_output_bias(OutputBias::Pytorch, &rows)?;
    assert_eq!(other_values(&varmap, "")?, built, "pytorch keeps nn.Linear's bias");

    model.decoder().start_output_bias(OutputBias::Marginal, &rows)?;
    let (twin, twin_vars) = mlp_model(DecoderKind::Bernoulli, d, seed)?;
    twin.decoder().init_output_bias(&rows)?;
    let started = other_values(&varmap, "")?;
    assert_ne!(started, built, "marginal moves the bias");
    assert_eq!(started, other_values(&twin_vars, "")?);
    Ok(())
}
