"""A literal port of the official SeA training loop (idstcv/SeA main.py / classifier.py; SeA paper §3.1,
Alg. 1, Eqs. 4-11),
with the seeding hooks featbench needs to compare trajectories: same init, same data order.

It is deliberately written the straightforward way: nn.Linear, torch.optim.SGD, autograd for the
adversarial feature gradient, softmax / zero-diagonal / renormalise as the official code does.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from featbench.api import seed_stream
from featbench.training.trainer import DATA_ORDER_STREAM, init_weight


def smoothed_hinge(out, y, lamda, delta):
    out = out.clone()
    out[torch.arange(len(y)), y] -= delta
    return lamda * F.cross_entropy(out / lamda, y)


def get_adv(model, x, y, lamda, delta, alpha, eta):
    x = x.clone().requires_grad_(True)
    loss = smoothed_hinge(model(x), y, lamda, delta)
    (g,) = torch.autograd.grad(loss, x)
    x = x.detach()
    g = F.normalize(g, dim=1)
    if alpha == 0:
        sim = g @ x.t()
        sim.fill_diagonal_(float("-inf"))
        q = F.one_hot(sim.argmax(1), len(x)).to(x.dtype)
    else:
        q = torch.softmax(g @ x.t() / alpha, dim=1)
        q.fill_diagonal_(0)
        q = q / q.sum(1, keepdim=True)
    d = F.normalize(q @ x, dim=1)
    return F.normalize(x + eta * d, dim=1)


def train_reference(
    xtr,
    ytr,
    num_classes,
    *,
    lr=1.6,
    wd=1e-6,
    lamda=0.1,
    delta=0.0,
    alpha=0.01,
    eta=0.8,
    epochs=100,
    batch_size=256,
    seed=0,
    augment=True,
    device="cpu",
):
    """Returns the trained weight (C, d). ``augment=False`` is the Baseline. ``device`` as ``.cuda()`` in the
    official code (the data-order generator stays on the CPU so every device sees the same order)."""
    xtr = torch.as_tensor(xtr, dtype=torch.float32, device=device)
    ytr = torch.as_tensor(ytr, dtype=torch.int64, device=device)
    n, d = xtr.shape
    model = torch.nn.Linear(d, num_classes, bias=False).to(device)
    with torch.no_grad():
        model.weight.copy_(init_weight(num_classes, d, seed))
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9, weight_decay=wd)
    order = torch.Generator().manual_seed(seed_stream(seed, DATA_ORDER_STREAM))
    for _ in range(epochs):
        perm = torch.randperm(n, generator=order).to(device)
        xe, ye = xtr[perm], ytr[perm]
        for s in range(0, n, batch_size):
            x, y = xe[s : s + batch_size], ye[s : s + batch_size]
            if augment and eta != 0 and len(y) >= 2:
                x = get_adv(model, x, y, lamda, delta, alpha, eta)
            opt.zero_grad()
            smoothed_hinge(model(x), y, lamda, delta).backward()
            opt.step()
    return model.weight.detach()
