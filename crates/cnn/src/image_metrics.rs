//! The one evaluator of generated images: a trained classifier run judges a
//! set of images against a reference set (the MNIST or Fashion-MNIST test
//! set), whatever model or framework made them.
//!
//! - features: the classifier's penultimate layer ([`Evaluator::features`]);
//! - Fréchet classifier distance (FCD): the Fréchet distance between
//!   Gaussians fitted to the two feature sets (FID with the classifier in
//!   Inception's place), `‖μ₁−μ₂‖² + Tr(Σ₁ + Σ₂ − 2(Σ₁^{1/2} Σ₂ Σ₁^{1/2})^{1/2})`;
//! - precision and recall: Kynkäänniemi et al.'s k-nearest-neighbour
//!   manifolds (k = 3) in the same features — how many samples look real,
//!   and how much of the real set the samples cover;
//! - the predicted-class histogram, its KL to uniform `ln K − H(p̂)` (0 for
//!   balanced classes, `ln K` for one class) and the mean max-softmax
//!   confidence.

use crate::Result;
use crate::classifier::Evaluator;
use candle::{DType, Tensor};
use deepgen_numerics::{GaussianStats, frechet_distance, knn_precision_recall};

/// Neighbours of the precision/recall manifolds (Kynkäänniemi et al. 2019).
pub const PR_NEIGHBOURS: usize = 3;

/// The reference side of a comparison, computed once: its feature rows and
/// their Gaussian.
#[derive(Debug, Clone)]
pub struct Reference {
    rows: Vec<f64>,
    dim: usize,
    stats: GaussianStats,
}

impl Reference {
    /// The number of reference images.
    pub fn n_images(&self) -> usize {
        self.stats.n
    }
}

/// What the evaluator says about a set of images.
#[derive(Debug, Clone, PartialEq)]
pub struct ImageScores {
    /// Images scored.
    pub n_images: usize,
    /// Reference images they were compared with.
    pub n_reference: usize,
    /// Fréchet classifier distance to the reference.
    pub fcd: f64,
    /// Fraction of the images inside the reference's k-NN manifold.
    pub precision: f64,
    /// Fraction of the reference inside the images' k-NN manifold.
    pub recall: f64,
    /// Images per predicted class.
    pub class_histogram: Vec<usize>,
    /// `KL(p̂ ‖ uniform) = ln K − H(p̂)` of the predicted classes, nats.
    pub class_kl_to_uniform: f64,
    /// Mean largest softmax probability.
    pub mean_confidence: f64,
}

impl Evaluator {
    /// The penultimate-layer features of `images` as `f64` rows and their
    /// width.
    ///
    /// # Errors
    /// Images that do not fit the network.
    pub fn feature_rows(&self, images: &Tensor) -> Result<(Vec<f64>, usize)> {
        let features = self.features(images)?;
        let dim = features.dim(1)?;
        let rows = features.to_dtype(DType::F64)?.flatten_all()?.to_vec1::<f64>()?;
        Ok((rows, dim))
    }

    /// The reference side of [`Evaluator::score`] (e.g. the test set).
    ///
    /// # Errors
    /// Images that do not fit the network; fewer than 2 images.
    pub fn reference(&self, images: &Tensor) -> Result<Reference> {
        let (rows, dim) = self.feature_rows(images)?;
        let stats = GaussianStats::from_rows(&rows, dim)?;
        Ok(Reference { rows, dim, stats })
    }

    /// FCD, precision, recall and the class statistics of `images` against
    /// `reference`.
    ///
    /// # Errors
    /// Images that do not fit the network; fewer images than the metrics
    /// need (more than [`PR_NEIGHBOURS`]).
    pub fn score(&self, images: &Tensor, reference: &Reference) -> Result<ImageScores> {
        let (rows, dim) = self.feature_rows(images)?;
        let stats = GaussianStats::from_rows(&rows, dim)?;
        let fcd = frechet_distance(&stats, &reference.stats)?;
        let pr = knn_precision_recall(&reference.rows, &rows, reference.dim, PR_NEIGHBOURS)?;
        let classes = self.evaluate(images)?;
        let k = classes.histogram.len().max(1) as f64;
        Ok(ImageScores {
            n_images: stats.n,
            n_reference: reference.n_images(),
            fcd,
            precision: pr.precision,
            recall: pr.recall,
            class_kl_to_uniform: (k.ln() - classes.class_entropy()).max(0.0),
            class_histogram: classes.histogram,
            mean_confidence: classes.mean_confidence,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::cnn;
    use crate::spec::Spec;
    use candle::Device;
    use candle_nn::VarMap;
    use deepgen_core::rng::{rand_uniform, rng_from_seed};
    use deepgen_core::seeded_var_builder;

    fn evaluator() -> Result<Evaluator> {
        let spec: Spec = "INPUT-6x6x1 CONV-3-4-p1 POOL-2 FLATTEN FC-8 FC-4".parse()?;
        let varmap = VarMap::new();
        Evaluator::new(cnn(&spec, seeded_var_builder(&varmap, 1, DType::F32, &Device::Cpu))?)
    }

    /// The same images against themselves: FCD 0, precision and recall 1;
    /// the class KL is ln K minus the entropy of the histogram.
    #[test]
    fn a_set_against_itself_is_perfect() -> Result<()> {
        let evaluator = evaluator()?;
        let images = rand_uniform(&mut rng_from_seed(2), (200, 1, 6, 6), 0.0, 1.0, &Device::Cpu)?;
        let reference = evaluator.reference(&images)?;
        let scores = evaluator.score(&images, &reference)?;
        assert!(scores.fcd.abs() < 1e-6, "{scores:?}");
        assert_eq!((scores.precision, scores.recall), (1.0, 1.0));
        assert_eq!((scores.n_images, scores.n_reference), (200, 200));
        assert_eq!(scores.class_histogram.iter().sum::<usize>(), 200);
        let p: Vec<f64> = scores.class_histogram.iter().map(|&c| c as f64 / 200.0).collect();
        let entropy: f64 = p.iter().filter(|&&q| q > 0.0).map(|&q| -q * q.ln()).sum();
        assert!((scores.class_kl_to_uniform - (4f64.ln() - entropy)).abs() < 1e-12);
        Ok(())
    }

    /// Images far from the reference: a large FCD, precision and recall 0.
    #[test]
    fn far_apart_sets_score_zero() -> Result<()> {
        let evaluator = evaluator()?;
        let real = rand_uniform(&mut rng_from_seed(3), (100, 1, 6, 6), 0.0, 0.1, &Device::Cpu)?;
        let fake = (rand_uniform(&mut rng_from_seed(4), (100, 1, 6, 6), 0.0, 0.1, &Device::Cpu)? + 50.0)?;
        let scores = evaluator.score(&fake, &evaluator.reference(&real)?)?;
        assert!(scores.fcd > 1.0, "{scores:?}");
        assert_eq!((scores.precision, scores.recall), (0.0, 0.0));
        // Too few images for 3 neighbours is an error, not a panic.
        assert!(
            evaluator
                .score(&fake.narrow(0, 0, 3)?, &evaluator.reference(&real)?)
                .is_err()
        );
        Ok(())
    }
}
