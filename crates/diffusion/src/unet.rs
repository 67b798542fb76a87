//! The small UNet of `anchors/torch_ddpm_mnist.py`, layer for layer
//! (669,601 parameters, the same names), for 28×28 images:
//!
//! ```text
//! time:  sin-emb(64) → Linear(64, 256) → SiLU → Linear(256, 256)
//! in:    Conv3×3 1→32
//! down:  Res(32→32) @28 → Conv3×3/2 → Res(32→64) @14 → Conv3×3/2
//! mid:   Res(64→64), Res(64→64) @7
//! up:    nearest×2 → Conv3×3 → [·, skip 64] → Res(128→64) @14
//!        nearest×2 → Conv3×3 → [·, skip 32] → Res(96→32) @28
//! out:   GroupNorm(8, 32) → SiLU → Conv3×3 32→1
//! Res(a→b)(x, e) = Conv(SiLU(GN(Conv(SiLU(GN(x))) + Linear(SiLU(e))))) + skip(x),  skip = Conv1×1 if a ≠ b
//! ```
//!
//! Each group norm and the SiLU after it are one op (deepgen-core's
//! `group_norm`, with a one-pass backward); each upsampling and the 3×3
//! convolution after it are one resize-convolution computed at the low
//! resolution (deepgen-core's `upsample_conv2d_with_bias`).

use crate::Result;
use crate::embedding::sinusoidal_embedding;
use candle::{Module, Tensor};
use candle_nn::VarBuilder;
use deepgen_core::nn::{Conv2d, GroupNorm, Linear, conv2d, group_norm, linear};

/// Groups of every group norm.
const GROUPS: usize = 8;
/// PyTorch's group-norm ε.
const GN_EPS: f64 = 1e-5;
/// Width of the sinusoidal embedding.
const SINUSOID_DIM: usize = 64;
/// Width of the time embedding.
const TIME_DIM: usize = 256;

/// A residual block with a time shift.
#[derive(Debug, Clone)]
struct Res {
    n1: GroupNorm,
    c1: Conv2d,
    t: Linear,
    n2: GroupNorm,
    c2: Conv2d,
    skip: Option<Conv2d>,
}

impl Res {
    fn new(c_in: usize, c_out: usize, vb: VarBuilder) -> Result<Self> {
        Ok(Self {
            n1: group_norm(GROUPS, c_in, GN_EPS, vb.pp("n1"))?,
            c1: conv2d(c_in, c_out, 3, 1, 1, vb.pp("c1"))?,
            t: linear(TIME_DIM, c_out, vb.pp("t"))?,
            n2: group_norm(GROUPS, c_out, GN_EPS, vb.pp("n2"))?,
            c2: conv2d(c_out, c_out, 3, 1, 1, vb.pp("c2"))?,
            skip: if c_in == c_out {
                None
            } else {
                Some(conv2d(c_in, c_out, 1, 1, 0, vb.pp("skip"))?)
            },
        })
    }

    /// `x [n, a, h, w]`, `e_act = SiLU(e) [n, 256]`.
    fn forward(&self, x: &Tensor, e_act: &Tensor) -> Result<Tensor> {
        let h = self
            .c1
            .forward_shifted(&self.n1.forward_silu(x)?, &self.t.forward(e_act)?)?;
        let h = self.c2.forward(&self.n2.forward_silu(&h)?)?;
        let skip = match &self.skip {
            Some(conv) => conv.forward(x)?,
            None => x.clone(),
        };
        Ok((h + skip)?)
    }
}

/// The MNIST UNet.
#[derive(Debug, Clone)]
pub struct UNet {
    temb0: Linear,
    temb2: Linear,
    cin: Conv2d,
    d1: Res,
    ds1: Conv2d,
    d2: Res,
    ds2: Conv2d,
    m1: Res,
    m2: Res,
    us2: Conv2d,
    u2: Res,
    us1: Conv2d,
    u1: Res,
    nout: GroupNorm,
    cout: Conv2d,
}

impl UNet {
    /// The network under `vb` (PyTorch's initialisation).
    ///
    /// # Errors
    /// Candle errors.
    pub fn new(vb: VarBuilder) -> Result<Self> {
        Ok(Self {
            temb0: linear(SINUSOID_DIM, TIME_DIM, vb.pp("temb.0"))?,
            temb2: linear(TIME_DIM, TIME_DIM, vb.pp("temb.2"))?,
            cin: conv2d(1, 32, 3, 1, 1, vb.pp("cin"))?,
            d1: Res::new(32, 32, vb.pp("d1"))?,
            ds1: conv2d(32, 32, 3, 2, 1, vb.pp("ds1"))?,
            d2: Res::new(32, 64, vb.pp("d2"))?,
            ds2: conv2d(64, 64, 3, 2, 1, vb.pp("ds2"))?,
            m1: Res::new(64, 64, vb.pp("m1"))?,
            m2: Res::new(64, 64, vb.pp("m2"))?,
            us2: conv2d(64, 64, 3, 1, 1, vb.pp("us2"))?,
            u2: Res::new(128, 64, vb.pp("u2"))?,
            us1: conv2d(64, 64, 3, 1, 1, vb.pp("us1"))?,
            u1: Res::new(96, 32, vb.pp("u1"))?,
            nout: group_norm(GROUPS, 32, GN_EPS, vb.pp("nout"))?,
            cout: conv2d(32, 1, 3, 1, 1, vb.pp("cout"))?,
        })
    }

    /// The output at images `x [n, 1, 28, 28]` and timesteps `t [n]`.
    ///
    /// # Errors
    /// Shape errors; Candle errors.
    pub fn forward(&self, x: &Tensor, t: &Tensor) -> Result<Tensor> {
        let e = self.temb0.forward(&sinusoidal_embedding(t, SINUSOID_DIM)?)?.silu()?;
        let e = self.temb2.forward(&e)?.silu()?;
        let h = self.cin.forward(x)?;
        let h1 = self.d1.forward(&h, &e)?;
        let h2 = self.d2.forward(&self.ds1.forward(&h1)?, &e)?;
        let h = self.ds2.forward(&h2)?;
        let h = self.m2.forward(&self.m1.forward(&h, &e)?, &e)?;
        let h = self.us2.forward_upsampled(&h)?;
        let h = self.u2.forward(&Tensor::cat(&[&h, &h2], 1)?, &e)?;
        let h = self.us1.forward_upsampled(&h)?;
        let h = self.u1.forward(&Tensor::cat(&[&h, &h1], 1)?, &e)?;
        Ok(self.cout.forward(&self.nout.forward_silu(&h)?)?)
    }
}
