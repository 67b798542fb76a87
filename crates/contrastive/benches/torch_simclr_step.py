"""Same-minutes PyTorch side of deepgen's simclr bench: NT-Xent fwd+bwd (N=512, d=128; torch_micro.py's)
and one step of torch_simclr_mnist.py's loop at batch 256 (augment both views, f, g, backward, Adam).
Functions copied from ../shared/anchors/torch_simclr_mnist.py and torch_micro.py. 2 threads; medians of 7 after 2.

    ~/torchvenv/bin/python crates/contrastive/benches/torch_simclr_step.py   # right after `cargo bench -p deepgen-contrastive`

augment, encoder and ntxent are imported by torch_simclr_probes.py; the timing runs only as a script.

Needs only torch (install it in a venv outside the repo; CI never runs this)."""
import math, os, statistics, sys, time, importlib.util
import torch
from torch import nn
import torch.nn.functional as F
def bench(fn, reps=7, warm=2):
    for _ in range(warm): fn()
    ts = []
    for _ in range(reps):
        t0 = time.perf_counter(); fn(); ts.append(time.perf_counter() - t0)
    return statistics.median(ts)
def augment(x):
    n = x.shape[0]
    ang = (torch.rand(n) - 0.5) * 2 * math.radians(20); sc = 0.8 + 0.4 * torch.rand(n)
    tx, ty = (torch.rand(n) - 0.5) * 0.4, (torch.rand(n) - 0.5) * 0.4
    th = torch.stack([torch.stack([sc * torch.cos(ang), -sc * torch.sin(ang), tx], 1),
                      torch.stack([sc * torch.sin(ang), sc * torch.cos(ang), ty], 1)], 1)
    g = F.affine_grid(th, x.shape, align_corners=False)
    y = F.grid_sample(x, g, align_corners=False)
    y = y + 0.1 * torch.randn_like(y)
    m = torch.ones_like(y); cx = torch.randint(0, 20, (n,)); cy = torch.randint(0, 20, (n,)); on = torch.rand(n) < 0.5
    for i in torch.nonzero(on).flatten().tolist(): m[i, :, cy[i]:cy[i]+8, cx[i]:cx[i]+8] = 0
    return y * m
def encoder():
    return nn.Sequential(nn.Conv2d(1, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(),
                         nn.MaxPool2d(2), nn.Flatten(), nn.Linear(64 * 49, 128), nn.ReLU())
def ntxent(z1, z2, t=0.5):
    z = F.normalize(torch.cat([z1, z2]), dim=1); n = z1.shape[0]
    s = z @ z.T / t; s.fill_diagonal_(float("-inf"))
    return F.cross_entropy(s, torch.cat([torch.arange(n, 2 * n), torch.arange(0, n)]))
if __name__ == "__main__":
    torch.set_num_threads(2); torch.manual_seed(0)
    z1 = torch.randn(512, 128, requires_grad=True); z2 = torch.randn(512, 128, requires_grad=True)
    def nt():
        ntxent(z1, z2).backward()
    print(f"ntxent_fwd_bwd_n512_d128_s {bench(nt):.5f}")
    f = encoder(); g = nn.Sequential(nn.Linear(128, 128), nn.ReLU(), nn.Linear(128, 64))
    opt = torch.optim.Adam(list(f.parameters()) + list(g.parameters()), 1e-3)
    x = torch.rand(256, 1, 28, 28)
    print(f"simclr_views_b256_s {bench(lambda: (augment(x), augment(x))):.4f}")
    def step():
        opt.zero_grad(); l = ntxent(g(f(augment(x))), g(f(augment(x)))); l.backward(); opt.step()
    print(f"simclr_step_b256_s {bench(step):.4f}")
