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


# fmt: off
LORA_BATCH8_OVERSHOOTS = (
    np.array([
    0.687, 0.677, 0.736, 0.675, 0.693, 0.636, 0.702, 0.654, 0.675, 0.665, 0.631, 0.700,
    0.650, 0.704, 0.598, 0.638, 0.563, 0.615, 0.670, 0.655, 0.820, 0.485, 0.712, 0.643,
    0.588, 0.608, 0.564, 0.470, 0.504, 0.465, 0.311, 0.369, 0.199, 0.190, 1.303, 0.323,
    0.894, 1.646, 1.247, 1.660, 0.483, 0.453, 0.817, 0.610, 0.879, 0.568,
    ]),
    np.array([
    0.687, 0.690, 0.703, 0.639, 0.697, 0.649, 0.656, 0.658, 0.662, 0.749, 0.713, 0.719,
    0.641, 0.704, 0.580, 0.636, 0.757, 0.781, 0.634, 0.594, 0.543, 0.542, 0.527, 0.580,
    0.663, 0.340, 0.702, 0.729, 0.428, 0.447, 0.175, 0.701, 0.382, 0.133, 0.715, 0.798,
    0.081, 0.271, 0.345, 0.307, 0.614, 0.608, 0.829, 1.228, 1.100, 0.749, 0.799, 1.018,
    0.816, 0.677, 0.323, 0.187,
    ]),
)
# fmt: on
"""Two real runs that learned, overshot for a few steps and came back by themselves: `lrpilot fit
--method lora --batch-size 8` of all-MiniLM-L6-v2 on 1,600 SST-2 training texts
(`benchmarks/fit_user_path.py --batch-size 8`, seeds 2 and 3, peaks 1.69e-3 and 1.82e-3 of a
200-step run), their training losses up to the rollback the guard took when its short median was 8
losses (at step 45 and 51: a "collapse"). Trained on without the guard, at the same peaks, they
ended at 0.408 and 0.414 (the guarded fits at 0.454 and 0.431)."""

# fmt: off
LORA_BATCH8_COLLAPSE = np.array([
    0.766, 0.671, 0.650, 0.754, 0.620, 0.634, 0.626, 0.630, 0.671, 0.697, 0.632, 0.560,
    0.653, 0.636, 0.802, 0.632, 0.714, 0.497, 0.696, 0.426, 0.339, 0.739, 0.709, 0.513,
    0.589, 0.162, 0.680, 0.194, 0.251, 0.641, 0.449, 0.552, 1.380, 0.409, 0.561, 0.241,
    0.484, 0.389, 0.126, 1.010, 0.429, 0.129, 1.022, 0.550, 2.241, 0.890, 0.974, 0.515,
    0.531, 0.411, 0.731, 0.529, 0.562, 0.512, 0.444, 0.301, 1.063, 0.815, 0.743, 0.219,
    0.641, 0.839, 0.362, 0.327, 0.216, 1.590, 0.670, 0.541, 0.292, 0.214, 0.927, 0.509,
    0.350, 0.977, 0.249, 0.489, 0.278, 0.609, 0.231, 0.394, 1.703, 0.395, 0.224, 0.329,
    1.379, 1.077, 0.166, 0.919, 0.385, 0.661, 0.374, 0.341, 0.577, 1.190, 0.517, 0.743,
    0.678, 0.414, 0.899, 0.714, 0.530, 0.813, 0.481, 0.548, 0.601, 0.607, 0.689, 0.540,
    0.438, 0.632, 0.879, 0.761, 0.490, 0.808, 0.675, 0.827, 0.480, 0.870, 0.731, 0.568,
    0.393, 0.531, 0.673, 0.523, 0.726, 0.664, 0.620, 0.636, 0.560, 0.574, 0.450, 0.683,
    0.549, 0.532, 0.514, 0.543, 0.670, 0.582, 0.551, 0.582, 0.577, 0.564, 0.439, 0.573,
    0.735, 0.690, 0.700, 0.934, 0.680, 0.878, 0.648, 0.744, 0.742, 0.548, 0.700, 0.574,
    0.668, 0.665, 0.746, 0.672, 0.663, 0.643, 0.631, 0.641, 0.732, 0.734, 0.669, 0.668,
    0.633, 0.655, 0.705, 0.664, 0.663, 0.700, 0.630, 0.704, 0.624, 0.862, 0.766, 0.739,
    0.741, 0.596, 0.706, 0.725, 0.699, 0.691, 0.704, 0.658, 0.693, 0.627, 0.732, 0.697,
    0.700, 0.725, 0.729, 0.629, 0.668, 0.721, 0.721, 0.700,
])
# fmt: on
"""A real run that learned and slid back to chance: the same fine-tune as
`LORA_BATCH8_OVERSHOOTS`, seed 1, at 4.64e-3 (over the cliff of that grid), without a guard
(validation loss 0.696 at the end)."""

# fmt: off
LORA_UNBALANCED_COLLAPSE = np.array([
    0.708, 0.696, 0.643, 0.492, 0.423, 0.682, 0.175, 0.074, 0.618, 0.164, 0.345, 0.161,
    0.268, 0.312, 0.079, 0.200, 0.193, 0.624, 0.123, 0.450, 0.383, 0.132, 0.223, 0.361,
    0.273, 0.521, 0.005, 0.186, 0.059, 0.287, 0.018, 0.791, 0.305, 0.191, 0.857, 0.546,
    0.210, 0.049, 0.366, 0.518, 0.290, 0.478, 0.301, 0.165, 0.383, 0.242, 0.264, 0.233,
    0.043, 1.005, 0.071, 0.370, 0.102, 0.104, 0.380, 0.237, 0.386, 0.245, 0.082, 0.236,
    0.046, 1.460, 0.623, 0.941, 0.268, 0.083, 0.211, 0.731, 0.233, 0.387, 0.360, 0.645,
    0.280, 0.390, 0.483, 0.410, 0.395, 0.381, 0.566, 0.578, 0.195, 0.279, 0.375, 0.157,
    0.485, 0.490, 0.497, 0.378, 0.495, 0.375, 0.620, 0.132, 0.373, 0.615, 0.259, 0.131,
    0.621, 0.378, 0.257, 0.369,
])
# fmt: on
"""A real collapse onto the majority class: a LoRA fine-tune of all-MiniLM-L6-v2 at batch 16 on
1,600 SST-2 training texts, 90 % of them negative (`benchmarks/guard_unbalanced.py`'s data, seed 0),
at 1e-2 without a guard, its 100 training losses; it ended predicting "negative" for every sentence
(validation accuracy 0.90, loss 0.326, the labels' entropy 0.325: a number that looks good)."""

# fmt: off
LORA_UNBALANCED_LEARNED = np.array([
    0.708, 0.725, 0.733, 0.691, 0.617, 0.630, 0.500, 0.369, 0.503, 0.303, 0.422, 0.043,
    0.262, 0.310, 0.013, 0.229, 0.244, 0.854, 0.058, 0.442, 0.329, 0.112, 0.396, 0.322,
    0.197, 0.220, 0.101, 0.237, 0.035, 0.231, 0.021, 0.835, 0.020, 0.174, 0.969, 0.661,
    0.242, 0.067, 0.153, 0.256, 0.272, 0.382, 0.182, 0.158, 0.320, 0.148, 0.187, 0.196,
    0.052, 0.619, 0.068, 0.269, 0.033, 0.051, 0.284, 0.088, 0.261, 0.188, 0.036, 0.286,
    0.039, 0.138, 0.272, 0.292, 0.211, 0.130, 0.107, 0.177, 0.106, 0.317, 0.119, 0.448,
    0.102, 0.158, 0.244, 0.145, 0.352, 0.316, 0.188, 0.171, 0.109, 0.166, 0.191, 0.046,
    0.107, 0.286, 0.366, 0.099, 0.306, 0.437, 0.774, 0.031, 0.322, 0.442, 0.186, 0.026,
    0.396, 0.170, 0.263, 0.118,
])
# fmt: on
"""The same fine-tune at 2e-3: it learned (validation accuracy 0.92, loss 0.281)."""
