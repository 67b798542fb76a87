"""The PyTorch side of `benches/gemm_peak.rs`, and the work in the anchors'
training steps, for the lower bound of each step on this machine.

    THREADS=2 venv/bin/python crates/core/benches/torch_flops.py ../shared/anchors data/mnist

Prints `torch.mm` on 2048 x 2048 f32 matrices (median of 7; GFLOP/s =
2 n^3 / s / 1e9), then the floating-point operations that
`torch.utils.flop_counter.FlopCounterMode` counts (matrix products and
convolutions, forward and backward; element-wise work is not counted) in
one training step of the DCGAN pair (batch 64), of the DDPM UNet (batch 128)
and in one UNet forward pass (batch 256), each anchor's own code: the
script runs an anchor's definitions (everything before its `if mode ==`
dispatch) and calls the `step` it defines. Not part of CI."""
import os, statistics, sys, time
import torch
from torch.utils.flop_counter import FlopCounterMode

anchors, data = sys.argv[1], sys.argv[2]
torch.set_num_threads(int(os.environ.get("THREADS", "2")))


def timed(fn, reps=7, warm=2):
    for _ in range(warm): fn()
    ts = []
    for _ in range(reps):
        t0 = time.perf_counter(); fn(); ts.append(time.perf_counter() - t0)
    return statistics.median(ts)


n = 2048
a, b = torch.randn(n, n), torch.randn(n, n)
s = timed(lambda: torch.mm(a, b))
print(f"torch_mm_f32_{n}_s {s:.4f} ({2 * n ** 3 / s / 1e9:.1f} GFLOP/s, {torch.get_num_threads()} threads)")


def anchor(name, mode="step"):
    """The anchor's namespace after its definitions and data loading."""
    path = os.path.join(anchors, name)
    source = open(path).read().split('\nif mode == "step":')[0]
    sys.argv = [path, data, mode]
    scope = {"__name__": "anchor"}
    exec(compile(source, path, "exec"), scope)
    return scope


def flops(fn):
    counter = FlopCounterMode(display=False)
    with counter:
        fn()
    return counter.get_total_flops()


gan = anchor("torch_dcgan_mnist.py")
x = gan["xtr"][:64]
print(f"dcgan_step_b64_gflop {flops(lambda: gan['step'](x)) / 1e9:.3f}")

ddpm = anchor("torch_ddpm_mnist.py")
x = ddpm["xtr"][:128]
print(f"ddpm_unet_train_step_b128_gflop {flops(lambda: ddpm['step'](x)) / 1e9:.3f}")
with torch.no_grad():
    xs, ts = torch.randn(256, 1, 28, 28), torch.full((256,), 500)
    print(f"ddpm_unet_forward_b256_gflop {flops(lambda: ddpm['net'](xs, ts)) / 1e9:.3f}")
