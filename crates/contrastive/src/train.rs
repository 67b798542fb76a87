//! [`SimClr`] as a [`TrainableModel`]: a batch is two views of the same
//! images; both go through `f` and `g` in one pass, NT-Xent (or its
//! memory-bank form) is minimised by one Adam step over `net.`, and the
//! second views enter the bank.

use crate::Error;
use crate::config::SimClrConfig;
use crate::loss::{nt_xent, nt_xent_with_bank};
use crate::model::SimClr;
use candle::{DType, Tensor};
use candle_nn::VarBuilder;
use deepgen_core::{Metrics, Optimizers, StdRng, StepCtx, TrainableModel};

impl TrainableModel for SimClr {
    type Config = SimClrConfig;
    type Batch = (Tensor, Tensor);
    const FAMILY: &'static str = "simclr";
    const OPTIMIZER_GROUPS: &'static [&'static str] = &["net."];

    fn build(config: &SimClrConfig, vb: VarBuilder) -> deepgen_core::Result<Self> {
        Ok(SimClr::new(config, vb)?)
    }

    fn config(&self) -> &SimClrConfig {
        SimClr::config(self)
    }

    /// Returns `loss`, weighted by the number of images.
    fn train_step(
        &self,
        (first, second): &(Tensor, Tensor),
        ctx: &StepCtx,
        optimizers: &mut Optimizers,
        _rng: &mut StdRng,
    ) -> deepgen_core::Result<Metrics> {
        let n = first.dim(0)?;
        let (loss, second_projections) = self.loss(first, second, ctx.global_step * n)?;
        optimizers.minimise(&loss)?;
        self.enqueue(&second_projections, ctx.global_step * n)?;
        let value = loss.to_dtype(DType::F64)?.to_scalar::<f64>()?;
        Ok(Metrics::new().with("loss", value).weighted(n as f64))
    }
}

impl SimClr {
    /// The loss on two views `[N, …]` of N ≥ 2 images, and the second
    /// views' projections (for the bank). `enqueued` rows have entered the
    /// bank before this batch; only those (at most `M`) serve as negatives.
    ///
    /// # Errors
    /// Fewer than 2 images; views of different shapes; Candle errors.
    pub fn loss(&self, first: &Tensor, second: &Tensor, enqueued: usize) -> crate::Result<(Tensor, Tensor)> {
        let n = first.dim(0)?;
        if n < 2 {
            return Err(Error::invalid(
                "batch size",
                n,
                "SimCLR contrasts each image with the other images of its batch: at least 2",
            ));
        }
        if first.dims() != second.dims() {
            return Err(Error::shape(
                "second views",
                second.dims(),
                format!("{:?}", first.dims()),
            ));
        }
        let z = self.project(&self.represent(&Tensor::cat(&[first, second], 0)?)?)?;
        let (z1, z2) = (z.narrow(0, 0, n)?, z.narrow(0, n, n)?);
        let temperature = self.config().temperature;
        let filled = self.bank().map_or(0, |bank| enqueued.min(bank.dim(0).unwrap_or(0)));
        let loss = match self.bank() {
            Some(bank) if filled > 0 => nt_xent_with_bank(&z1, &z2, &bank.narrow(0, 0, filled)?, temperature)?,
            _ => nt_xent(&z1, &z2, temperature)?,
        };
        Ok((loss, z2))
    }
}
