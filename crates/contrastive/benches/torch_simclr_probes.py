"""PyTorch's side of deepgen's SimCLR probe comparison (README, "SimCLR"): the anchor
(../shared/anchors/torch_simclr_mnist.py, copied here) with its seed from SEED and its per-epoch
probes left out, then the trained encoder scored by the anchor's probe (20 epochs of Adam 1e-2)
and by the logistic regression's optimum, J = mean cross-entropy + |W|^2/(2Cn) with C = 1 on
standardised features, solved by torch.optim.LBFGS in f64 (strong Wolfe line search) -- the
problem deepgen's default probe solves.

    SEED=0 THREADS=1 ~/torchvenv/bin/python crates/contrastive/benches/torch_simclr_probes.py data/mnist 5

Needs only torch (install it in a venv outside the repo; CI never runs this)."""
import gzip, sys, time, os, math
import numpy as np, torch
from torch import nn
import torch.nn.functional as F
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from torch_simclr_step import augment, encoder, ntxent  # the anchor's, copied once
torch.set_num_threads(int(os.environ.get("THREADS", "2"))); torch.manual_seed(int(os.environ.get("SEED", "0")))
d = sys.argv[1]; E = int(sys.argv[2]) if len(sys.argv) > 2 else 3
def idx(p):
    b = gzip.open(p).read(); n = b[3]; dims = [int.from_bytes(b[4+4*i:8+4*i], "big") for i in range(n)]
    return np.frombuffer(b, np.uint8, offset=4+4*n).reshape(dims)
xtr = torch.from_numpy(idx(f"{d}/train-images-idx3-ubyte.gz").astype(np.float32) / 255).unsqueeze(1)
ytr = torch.from_numpy(idx(f"{d}/train-labels-idx1-ubyte.gz").astype(np.int64))
xte = torch.from_numpy(idx(f"{d}/t10k-images-idx3-ubyte.gz").astype(np.float32) / 255).unsqueeze(1)
yte = torch.from_numpy(idx(f"{d}/t10k-labels-idx1-ubyte.gz").astype(np.int64))

def feats(f, x):
    with torch.no_grad(): return torch.cat([f(x[i:i + 1000]) for i in range(0, x.shape[0], 1000)])
def probe(f, E=20):
    a, b = feats(f, xtr), feats(f, xte); mu, sd = a.mean(0), a.std(0) + 1e-6; a, b = (a - mu) / sd, (b - mu) / sd
    lin = nn.Linear(128, 10); o = torch.optim.Adam(lin.parameters(), 1e-2)
    for ep in range(E):
        p = torch.randperm(60000)
        for i in range(0, 60000, 512):
            j = p[i:i + 512]; o.zero_grad(); F.cross_entropy(lin(a[j]), ytr[j]).backward(); o.step()
    return (lin(b).argmax(1) == yte).float().mean().item()

f = encoder(); g = nn.Sequential(nn.Linear(128, 128), nn.ReLU(), nn.Linear(128, 64))
opt = torch.optim.Adam(list(f.parameters()) + list(g.parameters()), 1e-3)
for ep in range(E):
    t0 = time.perf_counter(); p = torch.randperm(60000); tot = 0
    for i in range(0, 60000 - 255, 256):
        x = xtr[p[i:i + 256]]; opt.zero_grad(); l = ntxent(g(f(augment(x))), g(f(augment(x)))); l.backward(); opt.step(); tot += l.item()
    print(f"simclr_epoch {ep + 1} loss {tot / (60000 // 256):.4f} seconds {time.perf_counter() - t0:.1f} ", flush=True)

def probe_lbfgs(f, C=1.0):
    """The regularised logistic regression's optimum: mean CE + |W|^2/(2Cn), full batch, L-BFGS (strong Wolfe), f64."""
    a, b = feats(f, xtr).double(), feats(f, xte).double(); mu = a.mean(0); sd = a.std(0) + 1e-6; a, b = (a - mu) / sd, (b - mu) / sd
    n = a.shape[0]; W = torch.zeros(128, 10, dtype=torch.float64, requires_grad=True); c = torch.zeros(10, dtype=torch.float64, requires_grad=True)
    o = torch.optim.LBFGS([W, c], lr=1, max_iter=1000, history_size=10, tolerance_grad=1e-9, tolerance_change=0, line_search_fn="strong_wolfe")
    def J():
        o.zero_grad(); l = F.cross_entropy(a @ W + c, ytr) + (W * W).sum() / (2 * C * n); l.backward(); return l
    o.step(J); g = torch.cat([W.grad.flatten(), c.grad]).norm().item()
    return (((b @ W + c).argmax(1) == yte).double().mean().item(), g, J().item())
acc, g, j = probe_lbfgs(f)
print(f"linear_probe_20 {probe(f):.4f} linear_probe_lbfgs {acc:.4f} grad_norm {g:.2e} J {j:.6f}", flush=True)
