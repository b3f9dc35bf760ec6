"""ME-ADA (ME-ADA, Zhao et al., NeurIPS 2020): maximum-entropy adversarial copies of the features, offline or online."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from method_utils import (
    assert_equals_baseline,
    assert_stack_equals_singles,
    batch_of,
    configs_for,
    make_run,
    random_heads,
    train,
    unit_blobs,
)

from featbench.api import seed_stream
from featbench.errors import ConfigError
from featbench.plugins import meada as meada_module
from featbench.plugins.meada import MEADA, ascent_gradient, max_phase
from featbench.training.trainer import DATA_ORDER_STREAM, init_weight


def max_objective(x, x0, y, w, beta, gamma, lamda=None):
    """J for one example: CE (or the smoothed hinge with lamda) + beta H(softmax) - gamma ||x - x0||^2."""
    z = w @ x
    cls = F.cross_entropy(z.unsqueeze(0), y.view(1)) if lamda is None else lamda * F.cross_entropy((z / lamda).unsqueeze(0), y.view(1))
    p = torch.softmax(z, 0)
    return cls - beta * (p * torch.log(p)).sum() - gamma * ((x - x0) ** 2).sum()


def ascend(x0, y, w, steps, step_size, beta, gamma):
    """Plain per-example gradient ascent on J by autograd, then projection onto the sphere."""
    x = x0.clone()
    for _ in range(steps):
        x = x.detach().requires_grad_(True)
        (g,) = torch.autograd.grad(max_objective(x, x0, y, w, beta, gamma), x)
        x = x.detach() + step_size * g
    return x / x.norm()


@pytest.mark.parametrize("beta,gamma", [(0.0, 0.0), (10.0, 0.0), (1.0, 3.0)])
def test_closed_form_ascent_gradient_equals_autograd(beta, gamma):
    x0, y = unit_blobs(n=6, d=8, C=3, seed=1)
    x0, y = torch.as_tensor(x0), torch.as_tensor(y)
    x = x0 + 0.1 * torch.randn(6, 8, generator=torch.Generator().manual_seed(0))
    w = random_heads(1, 3, 8, seed=2)
    got = ascent_gradient(x.unsqueeze(0), x0.unsqueeze(0), y, w, torch.tensor([beta]), torch.tensor([gamma]))[0]
    for i in range(6):
        xi = x[i].clone().requires_grad_(True)
        (want,) = torch.autograd.grad(max_objective(xi, x0[i], y[i], w[0], beta, gamma), xi)
        torch.testing.assert_close(got[i], want, atol=1e-5, rtol=1e-4)


def test_run_loss_in_the_max_objective():
    x, y = unit_blobs(n=6, d=8, C=3, seed=1)
    cfg = configs_for(MEADA, None, {"max_loss": "run", "lamda": 0.3, "beta": 2.0, "gamma": 0.5, "step_size": 0.1, "steps": 1})
    run = make_run(MEADA, cfg, x, y, 3)
    w = random_heads(1, 3, 8, seed=2)
    aug = MEADA(run)
    xt, yt = torch.as_tensor(x), torch.as_tensor(y)
    got = aug._perturb(xt, yt, w)[0]
    lam = float(torch.tensor(0.3))
    for i in range(6):
        xi = xt[i].clone().requires_grad_(True)
        (g,) = torch.autograd.grad(max_objective(xi, xt[i], yt[i], w[0], 2.0, 0.5, lamda=lam), xi)
        want = xt[i] + 0.1 * g
        torch.testing.assert_close(got[i], want / want.norm(), atol=1e-5, rtol=1e-4)


def test_zero_steps_or_zero_step_size_give_the_originals():
    x, y = unit_blobs(n=10, d=8, C=3, seed=3)
    xt, yt = torch.as_tensor(x), torch.as_tensor(y)
    w = random_heads(2, 3, 8, seed=4)
    out = max_phase(xt, yt, w, torch.tensor([0, 5]), torch.tensor([0.3, 0.0]), torch.tensor([1.0, 1.0]), torch.tensor([1.0, 1.0]))
    torch.testing.assert_close(out, xt.expand(2, -1, -1), atol=1e-6, rtol=0)


def test_small_steps_do_not_decrease_the_objective_and_leave_the_heads_alone():
    x, y = unit_blobs(n=10, d=8, C=3, seed=5)
    xt, yt = torch.as_tensor(x), torch.as_tensor(y)
    w = random_heads(1, 3, 8, seed=6)
    w_before = w.clone()
    values = []
    for steps in range(6):
        out = max_phase(xt, yt, w, torch.tensor([steps]), torch.tensor([0.02]), torch.tensor([1.0]), torch.tensor([0.5]),
                        project=False)[0]
        values.append(torch.stack([max_objective(out[i], xt[i], yt[i], w[0], 1.0, 0.5) for i in range(10)]))
    values = torch.stack(values)
    assert torch.all(values[1:] >= values[:-1] - 1e-6) and torch.all(values[-1] > values[0])
    assert torch.equal(w, w_before)


@pytest.mark.parametrize("perturb_generated,sizes", [("true", [40, 80, 160]), ("false", [40, 80, 120])])
def test_dataset_growth_and_labels(perturb_generated, sizes):
    x, y = unit_blobs(n=40, d=8, C=3, seed=7)
    cfg = configs_for(MEADA, None, {"phases": 2, "every": 2, "steps": 2, "perturb_generated": perturb_generated})
    run = make_run(MEADA, cfg, x, y, 3, epochs=8, batch_size=16)
    aug, w = MEADA(run), random_heads(1, 3, 8, seed=8)
    w_before = w.clone()
    rows_x, rows_y, seen = [torch.as_tensor(x).unsqueeze(0)], [torch.as_tensor(y)], []
    for epoch in range(8):
        extra = aug.on_epoch_start(epoch, w)
        if extra is not None:
            seen.append(epoch)
            rows_x.append(extra.x)
            rows_y.append(extra.y)
    assert seen == [1, 3]  # (e + 1) mod 2 = 0, two phases only
    assert [sum(r.shape[0] for r in rows_y[:i + 1]) for i in range(3)] == sizes
    assert torch.equal(torch.cat(rows_y[1:2]), torch.as_tensor(y))  # generated rows keep their sources' labels
    if perturb_generated == "true":
        assert torch.equal(rows_y[2], torch.cat(rows_y[:2]))
        second = max_phase(torch.cat(rows_x[:2], 1), torch.cat(rows_y[:2]), w, *(run.hp[k] for k in ("steps", "step_size", "beta", "gamma")))
        torch.testing.assert_close(rows_x[2], second)  # the second phase re-perturbs the first phase's rows
    assert torch.equal(w, w_before)


def reference_meada(x, y, C, cfg, epochs, batch_size, seed):
    """Straightforward offline ME-ADA training: a growing list of rows, per-example ascent, SGD by hand."""
    x, y = torch.as_tensor(x), torch.as_tensor(y)
    w = init_weight(C, x.shape[1], seed).clone()
    buf = torch.zeros_like(w)
    order = torch.Generator().manual_seed(seed_stream(seed, DATA_ORDER_STREAM))
    data_x, data_y, phases = list(x), list(y), 0
    for epoch in range(epochs):
        if (epoch + 1) % cfg["every"] == 0 and phases < cfg["phases"]:
            new = [ascend(xi, yi, w, int(cfg["steps"]), cfg["step_size"], cfg["beta"], cfg["gamma"]) for xi, yi in zip(data_x, data_y)]
            data_y = data_y + list(data_y)
            data_x = data_x + new
            phases += 1
        perm = torch.randperm(len(data_y), generator=order)
        for s in range(0, len(data_y), batch_size):
            idx = perm[s:s + batch_size].tolist()
            xb, yb = torch.stack([data_x[i] for i in idx]), torch.stack([data_y[i] for i in idx])
            wr = w.clone().requires_grad_(True)
            z = xb @ wr.T - cfg["delta"] * F.one_hot(yb, C)
            (g,) = torch.autograd.grad(cfg["lamda"] * F.cross_entropy(z / cfg["lamda"], yb), wr)
            buf = 0.9 * buf + g + cfg["wd"] * w
            w = w - cfg["lr"] * buf
    return w


def test_training_equals_a_straightforward_implementation():
    x, y = unit_blobs(n=40, d=8, C=3, seed=9)
    (cfg,) = configs_for(MEADA, None, {"phases": 2, "every": 2, "steps": 3, "step_size": 0.2, "beta": 1.0, "gamma": 0.5,
                                       "lr": 1.0, "lamda": 0.5})
    got = train(MEADA, [cfg], x, y, 3, epochs=5, batch_size=16)[0]
    want = reference_meada(x, y, 3, {k: float(torch.tensor(v)) for k, v in cfg.items() if not isinstance(v, str)}, 5, 16, 0)
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-4)


def test_no_phases_is_the_baseline_exactly():
    x, y = unit_blobs(n=70, d=12, C=3)
    for schedule in ("offline", "online"):
        assert_equals_baseline(MEADA, configs_for(MEADA, None, {"phases": 0, "every": 1, "schedule": schedule}, lr=1.0)[0], x, y, 3)


def test_online_schedule_trains_on_the_batch_and_its_adversarial_copy():
    x, y = unit_blobs(n=12, d=8, C=3, seed=10)
    cfg = configs_for(MEADA, None, {"schedule": "online", "steps": 2}, {"schedule": "online", "steps": 4, "beta": 0.0})
    run = make_run(MEADA, cfg, x, y, 3)
    w = random_heads(2, 3, 8, seed=11)
    aug = MEADA(run)
    assert aug.on_epoch_start(9, w) is None
    out = aug.augment(batch_of(x, y, w))
    xt, yt = torch.as_tensor(x), torch.as_tensor(y)
    assert out.x.shape == (2, 24, 8) and torch.equal(out.targets.index[:, 0], torch.cat([yt, yt]))
    assert torch.equal(out.x[:, :12], xt.expand(2, -1, -1))
    torch.testing.assert_close(out.x[:, 12:], max_phase(xt, yt, w, *(run.hp[k] for k in ("steps", "step_size", "beta", "gamma"))))


def test_stack_equals_single_runs_through_phases():
    x, y = unit_blobs(n=70, d=12, C=3)
    configs = configs_for(MEADA, None, {"steps": 0}, {"steps": 2, "step_size": 0.5}, {"steps": 3, "beta": 0.0, "lr": 0.5},
                          phases=2, every=1)
    assert_stack_equals_singles(MEADA, configs, x, y, 3, epochs=3)


def test_growth_beyond_the_memory_bound_is_refused(monkeypatch):
    x, y = unit_blobs(n=40, d=8, C=3)
    monkeypatch.setattr(meada_module, "MAX_GENERATED_BYTES", 40 * 8 * 4 * 2)
    run = make_run(MEADA, configs_for(MEADA, None, {"phases": 2}), x, y, 3)
    with pytest.raises(ConfigError, match="GiB of generated rows"):
        MEADA(run)
    MEADA(make_run(MEADA, configs_for(MEADA, None, {"phases": 2, "perturb_generated": "false"}), x, y, 3))  # 2 n rows fit
