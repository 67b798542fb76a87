//! The adversarial losses, each tied to the divergence its discriminator
//! estimates ([`crate::divergence`]).
//!
//! `a_r = D(x)`, `a_f = D(G(z))` are the discriminator's raw outputs
//! (logits, or critic values); all expectations are batch means.
//!
//! | loss | discriminator minimises | generator minimises | optimal D's value |
//! |---|---|---|---|
//! | minimax (saturating) | `E softplus(−a_r) + E softplus(a_f)` | `E log(1 − σ(a_f)) = −E softplus(a_f)` | `log 4 − 2 JS` |
//! | non-saturating | same | `E softplus(−a_f) = −E log σ(a_f)` | `log 4 − 2 JS` |
//! | least squares (labels ±1) | `E (1 − a_r)² + E (1 + a_f)²` | `E (1 − a_f)²` | `2 − Δ` (triangular discrimination) |
//! | hinge | `E relu(1 − a_r) + E relu(1 + a_f)` | `−E a_f` | `2 − 2 TV` |
//! | Wasserstein | `E a_f − E a_r` (+ a gradient penalty) | `−E a_f` | `−W₁` (1-Lipschitz D) |
//!
//! Each margin loss's discriminator objective is twice the risk `R_l(D)` of
//! the classification view with `l(α) = softplus(−α)`, `(1 − α)²`,
//! `max(0, 1 − α)`: at the pointwise optimum it is `−I_f(P_d‖P_g)`
//! ([`crate::divergence::MarginLoss`]). The minimax generator loss saturates:
//! its gradient `∂/∂a_f [−softplus(a_f)] = −σ(a_f)` vanishes when the
//! discriminator rejects the samples (`a_f → −∞`), while the non-saturating
//! one's, `−σ(−a_f)`, tends to −1 (Goodfellow et al. 2014, section 3).

use crate::{Error, Result};
use candle::Tensor;
use deepgen_numerics::softplus;
use serde::{Deserialize, Serialize};

/// The adversarial loss of a GAN.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum GanLoss {
    /// Goodfellow et al.'s minimax game: the generator minimises
    /// `E log(1 − D(G(z)))`, which saturates.
    Minimax,
    /// The same discriminator, the generator maximising `E log D(G(z))`
    /// (DCGAN's and PyTorch's example's loss).
    #[default]
    NonSaturating,
    /// Least squares with labels ±1 (LSGAN, a = −1, b = c = 1).
    LeastSquares,
    /// The hinge loss (Lim & Ye 2017; SNGAN, BigGAN).
    Hinge,
    /// The Wasserstein critic (WGAN); pair it with a gradient penalty.
    Wasserstein,
}

deepgen_core::named_choices!(GanLoss, "loss" {
    Minimax => "minimax",
    NonSaturating => "non-saturating",
    LeastSquares => "least-squares",
    Hinge => "hinge",
    Wasserstein => "wasserstein",
});

impl GanLoss {
    /// Whether `σ(D)` is the discriminator's probability that its input is
    /// real (the logistic losses).
    pub fn is_logistic(self) -> bool {
        matches!(self, GanLoss::Minimax | GanLoss::NonSaturating)
    }

    /// The discriminator's loss on real outputs `a_r` and generated outputs
    /// `a_f` (any shapes; each side's mean): see the module table.
    ///
    /// # Errors
    /// Candle errors.
    pub fn discriminator_loss(self, real: &Tensor, fake: &Tensor) -> Result<Tensor> {
        let loss = match self {
            GanLoss::Minimax | GanLoss::NonSaturating => {
                (softplus(&real.neg()?)?.mean_all()? + softplus(fake)?.mean_all()?)?
            }
            GanLoss::LeastSquares => ((1.0 - real)?.sqr()?.mean_all()? + (fake + 1.0)?.sqr()?.mean_all()?)?,
            GanLoss::Hinge => ((1.0 - real)?.relu()?.mean_all()? + (fake + 1.0)?.relu()?.mean_all()?)?,
            GanLoss::Wasserstein => (fake.mean_all()? - real.mean_all()?)?,
        };
        Ok(loss)
    }

    /// The generator's loss on the discriminator's outputs `a_f` for its
    /// samples: see the module table.
    ///
    /// # Errors
    /// Candle errors.
    pub fn generator_loss(self, fake: &Tensor) -> Result<Tensor> {
        let loss = match self {
            GanLoss::Minimax => softplus(fake)?.mean_all()?.neg()?,
            GanLoss::NonSaturating => softplus(&fake.neg()?)?.mean_all()?,
            GanLoss::LeastSquares => (1.0 - fake)?.sqr()?.mean_all()?,
            GanLoss::Hinge | GanLoss::Wasserstein => fake.mean_all()?.neg()?,
        };
        Ok(loss)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::divergence::{MarginLoss, margin_risk};
    use candle::{DType, Device};
    use proptest::prelude::*;

    fn tensor(values: &[f64]) -> Tensor {
        Tensor::from_slice(values, values.len(), &Device::Cpu).unwrap()
    }

    fn scalar(t: &Tensor) -> f64 {
        t.to_dtype(DType::F64).unwrap().to_scalar::<f64>().unwrap()
    }

    /// The losses on a batch against their formulas in f64, element by element.
    fn by_hand(loss: GanLoss, real: &[f64], fake: &[f64]) -> (f64, f64) {
        let mean = |v: &[f64], f: &dyn Fn(f64) -> f64| v.iter().map(|&x| f(x)).sum::<f64>() / v.len() as f64;
        let d = match loss {
            GanLoss::Minimax | GanLoss::NonSaturating => {
                mean(real, &|a| -(1.0 / (1.0 + (-a).exp())).ln())
                    + mean(fake, &|a| -(1.0 - 1.0 / (1.0 + (-a).exp())).ln())
            }
            GanLoss::LeastSquares => mean(real, &|a| (1.0 - a).powi(2)) + mean(fake, &|a| (1.0 + a).powi(2)),
            GanLoss::Hinge => mean(real, &|a| (1.0 - a).max(0.0)) + mean(fake, &|a| (1.0 + a).max(0.0)),
            GanLoss::Wasserstein => mean(fake, &|a| a) - mean(real, &|a| a),
        };
        let g = match loss {
            GanLoss::Minimax => mean(fake, &|a| (1.0 - 1.0 / (1.0 + (-a).exp())).ln()),
            GanLoss::NonSaturating => mean(fake, &|a| -(1.0 / (1.0 + (-a).exp())).ln()),
            GanLoss::LeastSquares => mean(fake, &|a| (1.0 - a).powi(2)),
            GanLoss::Hinge | GanLoss::Wasserstein => -mean(fake, &|a| a),
        };
        (d, g)
    }

    proptest! {
        #[test]
        fn prop_losses_match_their_formulas(
            real in prop::collection::vec(-8.0f64..8.0, 1..12),
            fake in prop::collection::vec(-8.0f64..8.0, 1..12),
        ) {
            for loss in GanLoss::ALL {
                let (d, g) = by_hand(loss, &real, &fake);
                let d_ours = scalar(&loss.discriminator_loss(&tensor(&real), &tensor(&fake)).unwrap());
                let g_ours = scalar(&loss.generator_loss(&tensor(&fake)).unwrap());
                prop_assert!((d - d_ours).abs() < 1e-10 * (1.0 + d.abs()), "{loss}: D {d_ours} vs {d}");
                prop_assert!((g - g_ours).abs() < 1e-10 * (1.0 + g.abs()), "{loss}: G {g_ours} vs {g}");
            }
        }

        /// The discriminator's loss is twice the classification risk of its
        /// margin loss, with P_d uniform on the real outputs' atoms and P_g on
        /// the generated ones'.
        #[test]
        fn prop_discriminator_loss_is_twice_the_margin_risk(
            real in prop::collection::vec(-6.0f64..6.0, 1..10),
            fake in prop::collection::vec(-6.0f64..6.0, 1..10),
        ) {
            let (nr, nf) = (real.len(), fake.len());
            let d: Vec<f64> = real.iter().chain(&fake).copied().collect();
            let p_d: Vec<f64> = (0..nr + nf).map(|i| if i < nr { 1.0 / nr as f64 } else { 0.0 }).collect();
            let p_g: Vec<f64> = (0..nr + nf).map(|i| if i < nr { 0.0 } else { 1.0 / nf as f64 }).collect();
            for (loss, margin) in [
                (GanLoss::NonSaturating, MarginLoss::Logistic),
                (GanLoss::LeastSquares, MarginLoss::Square),
                (GanLoss::Hinge, MarginLoss::Hinge),
            ] {
                let ours = scalar(&loss.discriminator_loss(&tensor(&real), &tensor(&fake)).unwrap());
                let risk = margin_risk(margin, &d, &p_d, &p_g).unwrap();
                prop_assert!((ours - 2.0 * risk).abs() < 1e-9 * (1.0 + ours.abs()), "{loss}: {ours} vs 2 × {risk}");
            }
        }
    }

    /// The saturating generator's gradient vanishes as D rejects its samples;
    /// the non-saturating one's does not.
    #[test]
    fn minimax_generator_gradient_saturates() -> Result<()> {
        let grad = |loss: GanLoss, a: f64| -> Result<f64> {
            let var = candle::Var::new(&[a], &Device::Cpu)?;
            let grads = loss.generator_loss(var.as_tensor())?.backward()?;
            Ok(grads.get(&var).expect("gradient").to_vec1::<f64>()?[0])
        };
        for a in [-2.0, -6.0, -12.0] {
            let (sat, non_sat) = (grad(GanLoss::Minimax, a)?, grad(GanLoss::NonSaturating, a)?);
            let sigmoid = 1.0 / (1.0 + (-a).exp());
            assert!((sat + sigmoid).abs() < 1e-12, "minimax: {sat} vs −σ(a) = {}", -sigmoid);
            assert!((non_sat + (1.0 - sigmoid)).abs() < 1e-12, "non-saturating: {non_sat}");
        }
        assert!(grad(GanLoss::Minimax, -12.0)?.abs() < 1e-5 && grad(GanLoss::NonSaturating, -12.0)?.abs() > 0.99);
        Ok(())
    }

    #[test]
    fn names_round_trip_and_bad_names_are_errors() {
        for loss in GanLoss::ALL {
            assert_eq!(loss.name().parse::<GanLoss>().unwrap(), loss);
        }
        let err = "wgan".parse::<GanLoss>().unwrap_err().to_string();
        assert!(err.contains("wgan") && err.contains("hinge"), "{err}");
    }
}
