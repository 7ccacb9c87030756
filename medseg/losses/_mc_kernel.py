r"""The margin-calibration kernel: loss and analytic gradient in one forward call, eager or compiled.

Why not plain autograd: the margin λ_ik = s_ik − max_{j≠k} s_ij (Yu et al., IJCV 2021, Eq. (8)) composed from
``topk``/``gather``/``where``/``softplus`` stores several ``(B, K, *spatial)`` intermediates and walks memory a
dozen times. Here the forward computes the loss and its gradient together, and the backward only hands the
gradient over. Two implementations of the same maths:

* :func:`mc_eager`, the default: whole-tensor ATen ops, most of them in place: the top-2 of each pixel from one
  ``amax`` and a masked ``amax`` (no ``argmax``, which is slow along the class axis on a CPU), the labels' terms by
  one ``gather``/``scatter`` pair, ``softplus`` and an in-place ``sigmoid`` for the value and the gradient, the
  top-2 correction of the gradient by two ``addcmul_``. No compile step, so no one-off cost.
* :func:`mc_fused`, compiled with ``torch.compile`` (inductor): the same maths written over the K class slices of
  each pixel, which inductor turns into one vectorised loop that reads the logits and labels once.

``backend="auto"`` (the loss's default) runs the eager kernel and switches a configuration (dtype, device, options,
K, spatial size, batch of one or more) to the compiled one only after the eager kernel has spent
:data:`AUTO_COMPILE_AFTER_S` seconds on it in this process: the rent-or-buy rule, so a short run (a test, a
fine-tune of a few hundred steps, ``medseg bench``) never pays a compile, and a long one pays it once it has spent
about what the compile costs, which keeps its total within about twice that of the better choice in hindsight.
The compiled kernel takes any batch size above one without recompiling, so a ragged last batch does not recompile
(a batch of one runs eagerly until it has earned its own compile), and its inductor cache key does not depend on
the thread count (``cpp.dynamic_threads``), so the cache of one process serves the next at any thread count.

Measured with ``medseg bench loss`` on the project's shared 2-core CPU (AVX512, torch 2.13), float32 logits
(8, 5, 256, 256), forward+backward, as ratios to ``torch.nn.functional.cross_entropy`` from paired interleaved
runs, median (range) of two runs at load average 3.1–4.7 from other jobs (docs/results/loss_benchmark.md has the
commands and every row):

* steady state, 1 thread: eager kernel 3.1–4.6x, compiled kernel 0.84x (0.27–1.63) and 0.82x (0.62–1.14); at 2
  threads, where the oversubscribed machine made cross-entropy itself 3.5x slower than at 1 thread, the compiled
  kernel measured 0.96x (0.22–4.51) and 1.42x (1.13–1.58).
* first step in a fresh process (import, build, one step), CPU time: 0.99x (1 thread) and 1.10x (2 threads) the
  CPU of the same process with cross-entropy (about 6.4 s, mostly imports), with an empty or a warm inductor
  cache alike, since nothing compiles on the first step.
* the one-off compile, when ``auto`` decides to pay it (measured as a first step with ``backend="compile"``):
  28.9 s of CPU (4.8x the cross-entropy process) with an empty inductor cache, 13.8 s (1.8x) with a warm one,
  and 11.8 s (2.0x) at 2 threads from the cache a 1-thread process filled; 8.4 s of wall time in-process.

Gradient of the margin (the "top-2 trick"): with T the set of classes scoring the maximum m1 of a pixel (one class
unless scores tie), T2 the set scoring the largest value m2 below it, ``g_k = ∂ℓ/∂λ_k`` and ``G = Σ_k g_k``,
``g_T = Σ_{k∈T} g_k``:

.. math::

    \frac{∂ℓ}{∂s_j} = g_j − [j∈T]\,(G − g_T) − [j∈T2]\,\frac{g_T}{|T2|} \quad (|T| = 1),\qquad
    \frac{∂ℓ}{∂s_j} = g_j − [j∈T]\Big(\frac{G − g_T}{|T|} + \frac{g_T − g_j}{|T| − 1}\Big) \quad (|T| ≥ 2).

At ties the max splits its subgradient evenly among the tied classes, as the backward of ``torch.amax`` does; the
loss value does not depend on that choice.
"""

from __future__ import annotations

import logging
import math
import threading
import time
import types
from collections import defaultdict
from collections.abc import Callable
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch.autograd.function import once_differentiable

logger = logging.getLogger(__name__)

__all__ = [
    "AUTO_COMPILE_AFTER_S",
    "Backend",
    "MarginCalibrationFunction",
    "compile_times",
    "mc_eager",
    "mc_fused",
    "run_kernel",
]

Backend = Literal["auto", "compile", "eager"]

_LN2 = math.log(2.0)

#: ``backend="auto"`` compiles a configuration once the eager kernel has spent this many wall seconds on it in the
#: process. A compile costs 8-25 s on the project's 2-core CPU (less with inductor's on-disk cache) and the compiled
#: kernel saves about four fifths of the eager kernel's time, so 30 s of eager time is about where the compile
#: would have paid for itself (the rent-or-buy rule).
AUTO_COMPILE_AFTER_S = 30.0


def _softplus_threshold(dtype: torch.dtype) -> float:
    """Above this, ``log(1 + e^t)`` equals ``t`` to the dtype's precision (e^-t / t below its epsilon)."""
    return 20.0 if dtype in (torch.float16, torch.bfloat16, torch.float32) else 40.0


def mc_eager(
    x: torch.Tensor,
    labels: torch.Tensor,
    valid: torch.Tensor | None,
    rho_pos: torch.Tensor,
    rho_neg: torch.Tensor,
    scale: torch.Tensor,
    variant: str,
    surrogate: str,
    per_pixel: bool,
    need_grad: bool = True,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Margin-calibration loss and its gradient with respect to the scores, with whole-tensor ATen ops.

    Args:
        x: scores ``(B, K, S)``, ``K >= 2``, float32 or float64, contiguous.
        labels: int64 ``(B, S)`` true classes in ``[0, K)`` (ignored pixels hold any valid class; ``valid`` masks
            them); a label outside raises PyTorch's indexing error.
        valid: bool ``(B, S)`` or ``None`` (every pixel counts).
        rho_pos: ``(K,)`` ρ_k0, offset for pixels of class k (Algorithm 2: s̄ = λ − ρ_k0), in ``x``'s dtype.
        rho_neg: ``(K,)`` ρ_0k, offset for pixels of other classes (s̄ = λ + ρ_0k), in ``x``'s dtype.
        scale: 0-d tensor multiplying the gradient (1/N for a mean; 1 otherwise).
        variant: ``"paper"`` (log₂, unit weights) or ``"reference"`` (natural log, positives weighted by K, every
            term divided by K).
        surrogate: ``"log"`` (ρ-calibrated log-loss) or ``"margin"`` (ρ-margin loss, Eq. (9)).
        per_pixel: return the per-pixel loss ``(B, S)`` instead of its sum.
        need_grad: compute the gradient (``False`` for a loss evaluated without autograd).

    Returns:
        ``(loss, grad)``: the summed (or per-pixel) unscaled loss, NaN where a score is NaN or ``+inf``; and
        ``scale · ∂loss/∂x`` ``(B, K, S)``, or ``None`` without ``need_grad``.
    """
    b, k, s = x.shape
    y = labels.view(b, 1, s)
    # top-2: m1 by amax; every class scoring m1 gets top = 1; m2 - m1 by a second amax with the tops pushed down
    lam = x - x.amax(1, keepdim=True)  # λ of every class but the top; 0 at the top
    top = torch.sign(lam).add_(1.0)
    scratch = torch.add(lam, top, alpha=-torch.finfo(x.dtype).max)
    neg_gap = scratch.amax(1, keepdim=True)  # m2 − m1 <= 0 where the maximum is unique
    pixels = b * s
    # Ties for the maximum need per-pixel counts; one whole-tensor sum (cheaper than a sum over the class axis)
    # tells whether there is any. On an accelerator the branch would cost a sync: the general form runs there.
    any_tie = x.device.type != "cpu" or float(top.sum(dtype=torch.float64)) > pixels
    n_top = top.sum(1, keepdim=True) if any_tie else None
    tie = None if n_top is None else n_top > 1
    if tie is not None:
        neg_gap.masked_fill_(tie, 0.0)  # a tied maximum: m2 = m1
    second: torch.Tensor | None = None
    if need_grad:
        # 1 at the classes scoring m2 (meaningful where the top is unique): the top is pushed down in scratch, so
        # 1 + sign(scratch − (m2 − m1)) is 1 exactly where s = m2 and 0 elsewhere
        second = scratch.sub_(neg_gap).sign_().add_(1.0)
    del scratch
    lam.addcmul_(top, neg_gap, value=-1.0)  # Eq. (8) at the top: m1 − m2
    weight = None if valid is None else valid.view(b, 1, s).to(x.dtype)
    g: torch.Tensor | None = None
    if surrogate == "log":
        # Algorithm 2 with the sign folded in: positives score f(ρ_k0 − λ), negatives f(λ + ρ_0k), with
        # f(z) = log_c(1 + c^z) = softplus(z ln c) / ln c (c = 2 for the paper, e for the reference code).
        c = _LN2 if variant == "paper" else 1.0
        lam_y = lam.gather(1, y)
        t = lam.add_(rho_neg.view(1, k, 1))
        t_y = rho_pos[labels].view(b, 1, s).sub_(lam_y)
        if c != 1.0:
            t.mul_(c)
            t_y.mul_(c)
        t.scatter_(1, y, t_y)
        f = F.softplus(t, threshold=_softplus_threshold(x.dtype))
        pos_extra: torch.Tensor | None = None
        if variant == "reference":
            # BCE-with-logits with pos_weight=K averaged over K classes: K/K for positives, 1/K for the others
            pos_extra = F.softplus(t_y, threshold=_softplus_threshold(x.dtype)).mul_((k - 1) / k)
            f_scale = 1.0 / k
        else:
            f_scale = 1.0 / c
        if per_pixel or weight is not None:
            per = f.sum(1, keepdim=True).mul_(f_scale)
            if pos_extra is not None:
                per.add_(pos_extra)
            if weight is not None:
                per.mul_(weight)
            loss = per.view(b, s) if per_pixel else per.sum()
        else:
            loss = f.sum() * f_scale
            if pos_extra is not None:
                loss = loss + pos_extra.sum()
        work = f  # reused below instead of allocating another (B, K, S) buffer
        if need_grad:
            g = t.sigmoid_()  # d f/dz of every term (for either base)
            g_y = torch.sigmoid(t_y).neg_()  # dz/dλ = −1 for the true class
            if variant == "reference":
                g_y.mul_(k)  # positives weigh K/K, negatives 1/K: scaled by 1/K below
            g.scatter_(1, y, g_y)
    else:
        # Eq. (9) in z: φ_ρ = clamp(z / ρ, 0, 1); ρ = 0 (a class treated as empty) is its limit, the step [z ≥ 0]
        pos = y == torch.arange(k, device=x.device).view(1, k, 1)
        r = torch.where(pos, rho_pos.view(1, k, 1), rho_neg.view(1, k, 1))
        z = torch.where(pos, r - lam, lam + r)
        r_ok = r > 0
        r_safe = torch.where(r_ok, r, 1.0)
        f = torch.where(r_ok, (z / r_safe).clamp(0.0, 1.0), (z >= 0).to(x.dtype))
        work = f
        per = f.sum(1, keepdim=True)
        if weight is not None:
            per.mul_(weight)
        loss = per.view(b, s) if per_pixel else per.sum()
        if need_grad:
            df = torch.where(r_ok & (z > 0) & (z < r), 1.0 / r_safe, 0.0)
            g = torch.where(pos, -df, df)
    if g is None or second is None:
        return loss, None
    if weight is not None:
        g.mul_(weight)
    g_sum = g.sum(1, keepdim=True)
    g_top = torch.mul(g, top, out=work).sum(1, keepdim=True)
    if n_top is None or tie is None:  # a unique maximum everywhere
        g.addcmul_(top, g_top - g_sum)
        if float(second.sum(dtype=torch.float64)) == pixels:  # and a unique second place everywhere
            g.addcmul_(second, g_top, value=-1.0)
        else:
            g.addcmul_(second, g_top / second.sum(1, keepdim=True), value=-1.0)
    else:  # ties somewhere (or an accelerator): the general form
        n_second = second.sum(1, keepdim=True)
        inv = 1.0 / (n_top - 1.0).clamp_min(1.0)
        a = torch.where(tie, (g_sum - g_top) / n_top + g_top * inv, g_sum - g_top)
        b_second = torch.where(tie, 0.0, g_top / n_second.clamp_min(1.0))
        c_self = torch.where(tie, inv, 0.0)
        g.add_(torch.addcmul(-a, g, c_self).mul_(top))
        g.addcmul_(second, b_second, value=-1.0)
    g.mul_(scale / k if variant == "reference" and surrogate == "log" else scale)
    return loss, g


def mc_fused(
    x: torch.Tensor,
    labels: torch.Tensor,
    valid: torch.Tensor | None,
    rho_pos: torch.Tensor,
    rho_neg: torch.Tensor,
    scale: torch.Tensor,
    variant: str,
    surrogate: str,
    per_pixel: bool,
) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
    """The same loss and gradient as :func:`mc_eager`, written for ``torch.compile``.

    Arguments as :func:`mc_eager` (the gradient is always computed). Returns ``(loss, grads)``: the loss (NaN
    where a score is NaN or ``+inf``, or a label lies outside ``[0, K)``), and K flat tensors ``(B·S,)``, the
    slices ``scale · ∂loss/∂x[:, k]``.

    Note:
        Every per-pixel quantity is a flat ``(B·S,)`` vector: the class slices ``x[:, k]`` are reshaped to it
        (pure index arithmetic once compiled), so inductor sees one 1-D iteration space and fuses the whole
        program, reductions included, into a single loop. Stacking the gradient into ``(B, K, S)`` inside the
        program would need a ``(B, S)`` iteration space for the stores, which splits it into several loops that
        write and re-read a dozen temporaries, so that is left to the caller. Run eagerly, this function is
        several times slower than :func:`mc_eager`.
    """
    b_count, k_count, s_count = x.shape
    dtype = x.dtype
    xs = [x[:, k].reshape(-1) for k in range(k_count)]
    y = labels.reshape(-1).to(dtype)
    weight = None if valid is None else valid.reshape(-1).to(dtype)
    # running top-2 values (NaN propagates through maximum/minimum)
    m1 = torch.maximum(xs[0], xs[1])
    m2 = torch.minimum(xs[0], xs[1])
    for k in range(2, k_count):
        m2 = torch.maximum(m2, torch.minimum(m1, xs[k]))
        m1 = torch.maximum(m1, xs[k])
    is_top = [xk == m1 for xk in xs]
    is_second = [(xk == m2) & ~t for xk, t in zip(xs, is_top, strict=True)]  # empty when the maximum is tied
    n_top = is_top[0].to(dtype)
    n_second = is_second[0].to(dtype)
    for k in range(1, k_count):
        n_top = n_top + is_top[k].to(dtype)
        n_second = n_second + is_second[k].to(dtype)
    tie = n_top > 1.5

    g_list: list[torch.Tensor] = []
    g_sum: torch.Tensor | None = None
    g_top: torch.Tensor | None = None
    loss: torch.Tensor | None = None
    for k in range(k_count):
        lam = xs[k] - torch.where(is_top[k], m2, m1)  # Eq. (8)
        pos = y == k
        z = torch.where(pos, rho_pos[k] - lam, lam + rho_neg[k])
        if surrogate == "log":
            # log_b(1 + b^z) = softplus(z ln b) / ln b, written stably with one exp; its z-derivative is
            # sigmoid(z ln b) for either base.
            t = z * _LN2 if variant == "paper" else z
            e = torch.exp(-t.abs())
            f = torch.relu(t) + torch.log1p(e)
            if variant == "paper":
                f = f * (1.0 / _LN2)
            df = torch.where(t >= 0, 1.0, e) / (1.0 + e)
            if variant == "reference":
                f = torch.where(pos, f, f * (1.0 / k_count))
                df = torch.where(pos, df, df * (1.0 / k_count))
        else:
            r = torch.where(pos, rho_pos[k], rho_neg[k])
            r_ok = r > 0
            r_safe = torch.where(r_ok, r, 1.0)
            f = torch.where(r_ok, (z / r_safe).clamp(0.0, 1.0), (z >= 0).to(dtype))
            df = torch.where(r_ok & (z > 0) & (z < r), 1.0 / r_safe, 0.0)
        g = torch.where(pos, -df, df)  # dz/dλ is −1 for positives, +1 for negatives
        if weight is not None:
            g = g * weight
            f = f * weight
        g_list.append(g)
        g_sum = g if g_sum is None else g_sum + g
        top_part = torch.where(is_top[k], g, 0.0)
        g_top = top_part if g_top is None else g_top + top_part
        loss = f if loss is None else loss + f
    if g_sum is None or g_top is None or loss is None:  # pragma: no cover - K >= 2 is checked by the caller
        raise ValueError(f"margin calibration needs K >= 2 classes, got scores of shape {tuple(x.shape)}")
    inv = 1.0 / torch.clamp_min(n_top - 1.0, 1.0)
    a = torch.where(tie, (g_sum - g_top) / n_top + g_top * inv, g_sum - g_top)
    b_second = torch.where(tie, 0.0, g_top / torch.clamp_min(n_second, 1.0))
    c_self = torch.where(tie, inv, 0.0)
    grads = tuple(
        (g_list[j] + torch.where(is_top[j], g_list[j] * c_self - a, 0.0) - torch.where(is_second[j], b_second, 0.0))
        * scale
        for j in range(k_count)
    )
    # a label outside [0, K) would silently count as a negative everywhere: flag it as a NaN loss instead
    bad_label = (y < 0) | (y > k_count - 1)
    loss = loss + torch.where(bad_label, math.nan, 0.0)
    return (loss.view(b_count, s_count) if per_pixel else loss.sum()), grads


# ---------------------------------------------------------------------------------------------------------------
# Compilation: one compiled function per configuration (variant, surrogate, per-pixel output, ignore mask, dtype,
# device). Each gets its own copy of the code object, because dynamo keeps its cache of compiled graphs, and its
# recompile limit (8), per code object: one shared function would run out after a few configurations and shapes.

_lock = threading.Lock()
_compiled: dict[tuple[Any, ...], Callable[..., Any]] = {}
_compile_failed = False  # torch.compile itself is unusable here: every configuration runs eagerly
_failed_configs: set[tuple[Any, ...]] = set()
_compiled_shapes: set[tuple[Any, ...]] = set()  # (configuration, batch of one, K, S) that have run compiled
_eager_seconds: defaultdict[tuple[Any, ...], float] = defaultdict(float)
_compile_times: dict[str, float] = {}


def compile_times() -> dict[str, float]:
    """Wall seconds of each first compiled call in this process (key: a readable signature), compile included.

    The compiled kernel is specialised on K, the flattened spatial size S, dtype, device and the options; the batch
    size is a dynamic dimension (batch size 1 gets its own kernel). A later process reuses inductor's on-disk cache,
    whatever its thread count, so its "compile" takes seconds, not the cold compile time.
    """
    return dict(_compile_times)


def eager_seconds() -> dict[tuple[Any, ...], float]:
    """Wall seconds the eager kernel has run per ``auto`` configuration in this process (the rent-or-buy count)."""
    return dict(_eager_seconds)


def _make_compiled(config: tuple[Any, ...]) -> Callable[..., Any]:
    """``torch.compile`` of a private copy of :func:`mc_fused` (own code object, own dynamo cache)."""
    base = mc_fused
    tag = "_".join(str(c) for c in config).replace(".", "_")
    code = base.__code__.replace(co_name=f"mc_fused__{tag}", co_qualname=f"mc_fused__{tag}")
    clone = types.FunctionType(code, base.__globals__, code.co_name, base.__defaults__, base.__closure__)
    # dynamic=False: a kernel with a symbolic spatial size cannot prove its class slices contiguous and loses
    # vectorisation (measured 2-3x slower); only the batch size is made dynamic (see run_kernel).
    # cpp.dynamic_threads: the generated loops ask OpenMP for the thread count at run time instead of baking in
    # torch.get_num_threads(), which keeps the thread count out of inductor's cache key.
    return torch.compile(clone, fullgraph=True, dynamic=False, options={"cpp.dynamic_threads": True})


def _get_compiled(config: tuple[Any, ...]) -> Callable[..., Any] | None:
    global _compile_failed
    with _lock:
        if _compile_failed:
            return None
        fn = _compiled.get(config)
        if fn is None:
            try:
                fn = _compiled[config] = _make_compiled(config)
            except Exception as err:  # torch.compile unavailable (e.g. unsupported Python/platform)
                _compile_failed = True
                logger.warning("torch.compile unavailable (%s); margin calibration runs eagerly", err)
                return None
        return fn


def _auto_compiles(key: tuple[Any, ...], config: tuple[Any, ...]) -> bool:
    """The rent-or-buy decision of ``backend="auto"`` for one configuration and shape."""
    if _compile_failed or config in _failed_configs:
        return False
    if key in _compiled_shapes:
        return True
    if _eager_seconds[key] < AUTO_COMPILE_AFTER_S:
        return False
    logger.info(
        "margin calibration: the eager kernel has run %.0f s for %s; compiling it (a one-off cost)",
        _eager_seconds[key],
        key,
    )
    return True


def _stack(grads: tuple[torch.Tensor, ...], b_count: int, s_count: int) -> torch.Tensor:
    return torch.stack([g.view(b_count, s_count) for g in grads], dim=1)


def run_kernel(
    backend: Backend,
    x: torch.Tensor,
    labels: torch.Tensor,
    valid: torch.Tensor | None,
    rho_pos: torch.Tensor,
    rho_neg: torch.Tensor,
    scale: torch.Tensor,
    variant: str,
    surrogate: str,
    per_pixel: bool,
    need_grad: bool = True,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Loss and gradient ``(B, K, S)`` (arguments as :func:`mc_eager`) with the given backend.

    ``"eager"`` runs :func:`mc_eager`; ``"compile"`` the ``torch.compile``d :func:`mc_fused` (errors
    propagate); ``"auto"`` the eager kernel until it has spent :data:`AUTO_COMPILE_AFTER_S` seconds on this
    configuration and shape, then the compiled one. With ``"auto"``, a configuration whose compile fails runs
    eagerly from then on (one logged warning); if ``torch.compile`` is unusable altogether, everything does.
    """
    b_count, k_count, s_count = x.shape
    if torch.compiler.is_compiling():  # inside a caller's torch.compile: let the outer compiler trace the maths
        loss, grads = mc_fused(x, labels, valid, rho_pos, rho_neg, scale, variant, surrogate, per_pixel)
        return loss, _stack(grads, b_count, s_count)
    config = (x.dtype, x.device.type, valid is None, variant, surrogate, per_pixel)
    key = (*config, b_count == 1, k_count, s_count)
    if backend == "eager" or (backend == "auto" and not _auto_compiles(key, config)):
        start = time.perf_counter()
        out = mc_eager(x, labels, valid, rho_pos, rho_neg, scale, variant, surrogate, per_pixel, need_grad)
        if backend == "auto":
            _eager_seconds[key] += time.perf_counter() - start
        return out
    fn = _get_compiled(config)
    if fn is None:
        if backend == "compile":
            raise RuntimeError("backend='compile' was requested but torch.compile is unavailable here")
        return mc_eager(x, labels, valid, rho_pos, rho_neg, scale, variant, surrogate, per_pixel, need_grad)
    if b_count > 1:
        # One kernel for every batch size (a smaller last batch does not recompile); 1 is specialised by dynamo.
        for t in (x, labels) if valid is None else (x, labels, valid):
            torch._dynamo.mark_dynamic(t, 0)
    first = key not in _compiled_shapes
    start = time.perf_counter()
    try:
        loss, grads = fn(x, labels, valid, rho_pos, rho_neg, scale, variant, surrogate, per_pixel)
    except Exception as err:
        if backend == "compile":
            raise
        _failed_configs.add(config)
        logger.warning(
            "compiling the margin-calibration kernel failed (%s: %s); falling back to the eager kernel for this "
            "configuration (same values, slower)",
            type(err).__name__,
            err,
        )
        return mc_eager(x, labels, valid, rho_pos, rho_neg, scale, variant, surrogate, per_pixel, need_grad)
    if first:
        _compiled_shapes.add(key)
        seconds = time.perf_counter() - start
        name = (
            f"B={'1' if b_count == 1 else 'any'} K={k_count} S={s_count} {str(x.dtype).removeprefix('torch.')} "
            f"{x.device.type} variant={variant} surrogate={surrogate} per_pixel={per_pixel} "
            f"ignore={valid is not None}"
        )
        _compile_times[name] = seconds
        logger.info("margin-calibration kernel compiled for %s in %.1f s", name, seconds)
    return loss, (_stack(grads, b_count, s_count) if need_grad else None)


def _loss_and_grad(
    x: torch.Tensor,
    labels: torch.Tensor,
    valid: torch.Tensor | None,
    rho_pos: torch.Tensor,
    rho_neg: torch.Tensor,
    variant: str,
    surrogate: str,
    reduction: str,
    backend: Backend,
    need_grad: bool,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The reduced loss and the gradient of that reduced loss (see :class:`MarginCalibrationFunction`)."""
    x = x.contiguous()
    labels = labels.contiguous()
    if valid is not None:
        valid = valid.contiguous()
    per_pixel = reduction == "none"
    scale_value = 1.0
    if reduction == "mean":
        n_valid = labels.numel() if valid is None else int(valid.sum())
        scale_value = 1.0 / max(n_valid, 1)
    scale = torch.tensor(scale_value, dtype=x.dtype, device=x.device)
    loss, grad = run_kernel(
        backend, x, labels, valid, rho_pos, rho_neg, scale, variant, surrogate, per_pixel, need_grad
    )
    return (loss * scale if reduction == "mean" else loss), grad


class MarginCalibrationFunction(torch.autograd.Function):
    """Autograd wrapper: the forward runs the kernel once and keeps the gradient it forms.

    Inputs: ``x`` ``(B, K, S)`` float32/float64 scores, ``labels`` int64 ``(B, S)``, ``valid`` bool ``(B, S)`` or
    ``None``, ``rho_pos``/``rho_neg`` ``(K,)`` in ``x``'s dtype, then ``variant``, ``surrogate``, ``reduction``
    (``"mean"``/``"sum"``/``"none"``), ``backend`` and ``need_grad`` (whether a backward will follow). Output: the
    loss, a scalar or ``(B, S)`` for ``"none"``.

    The gradient of the scores is computed with the loss (analytic, see the module docstring); the first backward
    hands that tensor to autograd (scaled by the incoming gradient in place when that is not 1), so no copy is
    made. A second backward through the same graph (``retain_graph=True``, ``gradcheck``) forms it again from the
    saved inputs with the eager kernel. Peak memory is about four times the logits during the forward, then the
    one gradient tensor.
    """

    @staticmethod
    def forward(
        ctx: Any,
        x: torch.Tensor,
        labels: torch.Tensor,
        valid: torch.Tensor | None,
        rho_pos: torch.Tensor,
        rho_neg: torch.Tensor,
        variant: str,
        surrogate: str,
        reduction: str,
        backend: Backend,
        need_grad: bool,
    ) -> torch.Tensor:
        value, grad = _loss_and_grad(
            x, labels, valid, rho_pos, rho_neg, variant, surrogate, reduction, backend, need_grad
        )
        ctx.save_for_backward(x, labels, valid, rho_pos, rho_neg)
        ctx.options = (variant, surrogate, reduction)
        ctx.grad = grad
        return value

    @staticmethod
    @once_differentiable  # the gradient is a constant: a second derivative raises instead of being wrong
    def backward(ctx: Any, grad_output: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        grad: torch.Tensor | None = ctx.grad
        ctx.grad = None  # hand the tensor over: autograd may take it as the gradient without a copy
        if grad is None:  # a second backward through the same graph: form the gradient again
            x, labels, valid, rho_pos, rho_neg = ctx.saved_tensors
            variant, surrogate, reduction = ctx.options
            _, grad = _loss_and_grad(x, labels, valid, rho_pos, rho_neg, variant, surrogate, reduction, "eager", True)
            if grad is None:  # pragma: no cover - need_grad=True always gives one
                raise RuntimeError("the margin-calibration kernel returned no gradient")
        if ctx.options[2] == "none":
            grad.mul_(grad_output.unsqueeze(1))
        elif grad_output.device.type != "cpu" or float(grad_output) != 1.0:
            grad.mul_(grad_output)  # (the usual loss.backward() passes 1: no scaling pass then)
        return grad.view(ctx.saved_tensors[0].shape), None, None, None, None, None, None, None, None, None
