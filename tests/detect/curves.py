"""Hand-written loss curves with known answers, shared by the detector, guard and doctor tests."""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt

Curve = npt.NDArray[np.float64]


def clean(n: int = 2000, seed: int = 0, *, start: float = 4.0, end: float = 1.5, noise: float = 0.03) -> Curve:
    """A healthy run: exponential decay towards `end` with multiplicative Student-t noise (df=10)."""
    rng = np.random.default_rng(seed)
    t = np.arange(n, dtype=np.float64)
    level = end + (start - end) * np.exp(-t / (n / 8))
    return level * (1.0 + noise * rng.standard_t(df=10, size=n) / math.sqrt(10 / 8))


def clean_grads(n: int = 2000, seed: int = 1) -> Curve:
    """Grad norms of a healthy run: rising over a short warmup, then slowly falling, log-normal noise."""
    rng = np.random.default_rng(seed)
    t = np.arange(n, dtype=np.float64)
    level = 2.0 * np.minimum(1.0, (t + 1) / 50) * np.exp(-t / (2 * n)) + 0.2
    return level * np.exp(0.15 * rng.standard_normal(n))


def confident_classifier_grads(n: int = 600, seed: int = 8) -> Curve:
    """Grad norms of a classifier fine-tune: about 1 while it predicts near chance, then growing
    ×5–8 from step 300 as it grows confident (a confidently wrong example no longer cancels out)."""
    grads = clean_grads(n=n, seed=seed) / 2.2 + 0.1
    grads[300:] *= np.linspace(5.0, 8.0, n - 300)
    return grads


def with_spike(curve: Curve, at: int, factor: float = 3.0) -> Curve:
    out = curve.copy()
    out[at] *= factor
    return out


def rising_from(curve: Curve, at: int, per_step: float) -> Curve:
    """The curve until `at`, then a rise of `per_step` (relative) per step: a slow divergence."""
    out = curve.copy()
    k = np.arange(out.size - at, dtype=np.float64)
    out[at:] = out[at:] * (1.0 + per_step * k)
    return out


# fmt: off
LORA_RELAPSE = np.array([
    0.6761, 0.7697, 0.5187, 0.5571, 0.6112, 0.3506, 0.2833, 0.5611, 0.6743, 0.6698, 0.4224, 0.3352,
    0.4401, 0.6104, 0.6082, 0.9868, 0.4489, 0.7310, 0.6249, 0.6246, 0.5776, 0.6249, 0.5788, 0.6655,
    0.7600, 0.6170, 0.6575, 0.7438, 0.8157, 0.7354, 0.7872, 0.7735, 0.7097, 0.7305, 0.7145, 0.7117,
    0.6974, 0.6787, 0.6975, 0.6968, 0.7177, 0.6937, 0.7001, 0.7222, 0.6989, 0.6978
])
# fmt: on
"""A real run that learned and drifted back to chance: `lrpilot fit --method lora` of
all-MiniLM-L6-v2 on 720 SST-2 training texts (50 steps, peak 7.07e-3; the training losses of steps
4–49, after the range test's ramp stood for the first 4). Its 8-step median fell to 0.53 by step
20, then rose to ln 2 and stayed (validation accuracy 0.75 at step 13, 0.40 at the end); batch
losses of 32 texts are so noisy that the rise is ~2.5 sigmas of step-to-step noise, under the
divergence test's 4."""
