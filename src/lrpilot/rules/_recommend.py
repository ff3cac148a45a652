"""`recommend`: a peak LR, a band, a schedule and a warmup before any training, each from a rule with
its source.

The rules run in a fixed order (the order of `RULES`):

1. **Where the peak comes from.** Your own tuned LR (``ref_lr``) if you give one; else a published
   rule or a tool default for the method and optimizer: GPT-3's size table or DeepSeek's compute law
   for pretraining, the full fine-tuning range pinned to model sizes, LoRA ≈ 10× full fine-tuning,
   Unsloth's RL default, Goyal et al.'s 0.1 × B/256 for SGD.
2. **Batch size.** Only from a batch the starting LR belongs to (your ``ref_batch_size``, Goyal's
   256, DeepSeek's B_opt): linear for SGD, square root for Adam / AdamW. Tool defaults and the
   articles' ranges (docs/sources.md) state no batch size, so they are not scaled (a note says so).
3. **Schedule and warmup** by method; **LoRA+** as an option for LoRA and QLoRA.
4. **The band** around the peak, from the confidence.

**Confidence** says how far the sources stretch to reach your setup:

* ``high``: the peak rests on your own tuned LR, moved by at most 32× in batch size (the span Goyal
  et al. verified linear scaling over).
* ``medium``: a published rule or tool default applied inside the span its sources cover (the full
  fine-tuning rule's span includes "1e-5 at ≥7B"), or your own LR moved more than 32× in batch size.
* ``low``: outside it: SGD without a reference (its one anchor is ResNet-50 on ImageNet), RL (one
  tool's default, no size rule), a model below the full fine-tuning range's 110M, or outside GPT-3's
  table (125M–175B) for pretraining without a token budget.

The band is ``peak ÷ f … peak × f`` with f = 2, 3, 10 for high, medium, low: one adjustment step
of the size article 000 advises (×2–3), widened to an order of magnitude where the sources differ
that much.
"""

from __future__ import annotations

import itertools
import math
import re
from dataclasses import asdict, dataclass
from numbers import Real
from typing import Any, Literal

from lrpilot import _validate as check
from lrpilot.rules._optimizers import OPTIMIZERS, SGD_MOMENTUM, Optimizer, optimizer_named
from lrpilot.rules._table import DEEPSEEK, FULL_FT_ANCHORS, GPT3_TABLE, rule
from lrpilot.schedules import Cosine, Linear, Schedule

__all__ = [
    "BAND_FACTOR",
    "DECAYS",
    "LORA_PLUS_RATIO",
    "METHODS",
    "OPTIMIZERS",
    "SGD_MOMENTUM",
    "PriorCheck",
    "Reason",
    "Recommendation",
    "Setup",
    "parse_count",
    "recommend",
]

METHODS = ("pretraining", "full", "lora", "qlora", "rl")
"""Training methods: pretraining, full fine-tuning, LoRA, QLoRA, RL fine-tuning (DPO, GRPO, PPO)."""

DECAYS = ("cosine", "linear")

Confidence = Literal["high", "medium", "low"]
BAND_FACTOR: dict[str, float] = {"high": 2.0, "medium": 3.0, "low": 10.0}
"""The band is ``peak ÷ f … peak × f`` with this f for each confidence."""

_LORA_8B_NOTE = (
    "the values quoted with a model size are for 8B models (2e-4 for Llama 3.1 8B, article 001; 2e-4 in axolotl's "
    "llama-3/lora-8b.yml, 3e-4 in torchtune's llama3_1/8B_lora.yaml)"
)
"""Where the typical LoRA LRs come from, for the note on a LoRA peak outside them: article 002 gives its
range with no model size (and article 003's 1e-4–3e-4 is for pretraining at base size), so the 8B
anchors are the configs' and article 001's."""

NEAR_EDGE = 10**0.1
"""An LR within this factor of the band's end (a tenth of a decade: about the resolution of a range
test, whose ramp takes 12.5 steps a decade and whose curve is smoothed over 0.2) is "just" outside
it: fit's default demo had warned of a disagreement for a peak of 0.025 against a band ending at
0.0246. The verdict stays ``above`` or ``below``: what fit does with a weak test outside the band
(`lrpilot.autopilot._search.weak_fall`) is unchanged."""
LORA_PLUS_RATIO = 16.0
"""LoRA+'s η_B / η_A: the paper's guide λ ≈ 2⁴."""

_MAX_VERIFIED_BATCH_RATIO = 32.0  # Goyal et al.: 256 → 8192
_FT_DIVISOR = math.sqrt(10 * 100)  # "10–100× below pretraining": the geometric middle
_OWNER = "recommend"

_METHOD_ALIASES = {
    "pretrain": "pretraining",
    "full-ft": "full",
    "full_ft": "full",
    "fft": "full",
    "full-finetuning": "full",
    "full_finetuning": "full",
    "finetune": "full",
    "sft": "full",
    "rlhf": "rl",
    "dpo": "rl",
    "grpo": "rl",
    "ppo": "rl",
}
_ALIAS_NOTES = {
    "sft": "method 'sft' read as full fine-tuning (all weights trained); for SFT with LoRA adapters use 'lora' "
    "(or 'qlora')",
}
"""Aliases whose meaning is a choice, not a spelling: the recommendation says which it took."""

MIN_TEXT_COUNT = 1000
"""The smallest size accepted as text (``"7"``, the CLI's ``-p 7``): below it a size is nearly always a
missing suffix (7B, 7M). Numbers passed in code and models are counted, not typed, so they are taken
from 1."""
_FLAGS = {
    "params": "--params",
    "method": "--method",
    "optimizer": "--optimizer",
    "batch_size": "--batch-size",
    "steps": "--steps",
    "tokens": "--tokens",
    "seq_len": "--seq-len",
    "ref_lr": "--ref-lr",
    "ref_batch_size": "--ref-batch-size",
    "decay": "--decay",
}
"""`lrpilot recommend`'s flag for each input of `recommend`."""


@dataclass(frozen=True)
class InputNames:
    """How an error names `recommend`'s inputs: by their keyword arguments (``batch_size=0``) for
    Python, or by the flags of ``lrpilot recommend`` (``--batch-size 0``, `CLI_NAMES`) for the
    command line, so that each user reads the names they typed."""

    flags: bool = False

    def __call__(self, param: str) -> str:
        """``batch_size``, or ``--batch-size``."""
        return _FLAGS[param] if self.flags else param

    def given(self, param: str, value: object) -> str:
        """An input with its value as the user wrote it: ``steps=100``, or ``--steps 100``."""
        return f"{_FLAGS[param]} {value}" if self.flags else f"{param}={value!r}"

    def inputs(self, values: dict[str, object]) -> str:
        """Several inputs as given: every one in Python (``steps=None, tokens='2B'``); on the command
        line the flags given, then those left out (``--tokens 2B; no --steps, --seq-len``)."""
        if not self.flags:
            return ", ".join(self.given(k, v) for k, v in values.items())
        given = [self.given(k, v) for k, v in values.items() if v is not None]
        missing = [self(k) for k, v in values.items() if v is None]
        if not given:
            return "none of them"
        return "; ".join(filter(None, (", ".join(given), "no " + ", ".join(missing) if missing else "")))


PYTHON_NAMES = InputNames()
CLI_NAMES = InputNames(flags=True)

_SUFFIX = {"": 1.0, "k": 1e3, "m": 1e6, "b": 1e9, "g": 1e9, "t": 1e12}
_COUNT = re.compile(r"^\s*([0-9]*\.?[0-9]+(?:e[+-]?[0-9]+)?)\s*([kmbgt]?)\s*$", re.IGNORECASE)


def parse_count(value: object, param: str = "params", owner: str = _OWNER, *, names: InputNames = PYTHON_NAMES) -> int:
    """A count of parameters or tokens: a positive number, a string such as ``"135M"``, ``"7B"``,
    ``"1.5T"``, ``"2e9"`` (suffixes k, M, B or G, T), or, for ``params``, a model (any object with
    ``.parameters()``, e.g. a ``torch.nn.Module``: its parameters' ``numel`` are summed; a 4-bit
    quantized layer reports its packed storage, about half its real count). `names` says how an error
    names `param` (``lrpilot recommend`` passes `CLI_NAMES`: ``--params``).

    >>> parse_count("135M"), parse_count("1.5B"), parse_count(7e9)
    (135000000, 1500000000, 7000000000)
    """
    model = ", or a model" if param == "params" and not names.flags else ""  # the command line takes a size only
    valid = f"a number ≥ 1 or a size like '135M', '7B'{model}"
    if param == "params" and callable(getattr(value, "parameters", None)):
        module: Any = value
        n = sum(int(p.numel()) for p in module.parameters())
        if n < 1:
            raise ValueError(f"{owner}: the model passed as params has no parameters")
        return n
    if isinstance(value, str):
        m = _COUNT.match(value)
        if m is None:
            raise ValueError(f"{owner}: {names(param)} must be {valid}, got {value!r}")
        x = float(m.group(1)) * _SUFFIX[m.group(2).lower()]
        _check_typed_count(x, value, param, owner, names)
    elif isinstance(value, bool) or not isinstance(value, Real):
        raise ValueError(f"{owner}: {names(param)} must be {valid}, got {value!r}")
    else:
        x = float(value)
    if not (math.isfinite(x) and x >= 1):
        raise ValueError(f"{owner}: {names(param)} must be {valid}, got {value!r}")
    return round(x)


def _check_typed_count(x: float, value: str, param: str, owner: str, names: InputNames) -> None:
    """Refuse a size written as text below `MIN_TEXT_COUNT`: ``-p 7`` means 7B or 7M, not a model of
    7 parameters, and the rules would answer it with a low-confidence LR instead of an error."""
    if not (math.isfinite(x) and 1 <= x < MIN_TEXT_COUNT):
        return
    what = "parameters" if param == "params" else param
    typed = value.strip()
    raise ValueError(
        f"{owner}: {names.given(param, value)} is {x:g} {what}, below the minimum of {MIN_TEXT_COUNT:,} for a size "
        f"written as text; did you mean {typed}B or {typed}M?"
    )


def _name(param: str, value: object, known: tuple[str, ...], aliases: dict[str, str], names: InputNames) -> str:
    text = str(value).strip().lower().replace(" ", "_")
    if text in known:
        return text
    if text in aliases:
        return aliases[text]
    hint = check.suggest_name(text, [*known, *aliases])
    raise ValueError(
        f"{_OWNER}: {names(param)} must be one of {list(known)} (or an alias: {', '.join(sorted(aliases))}), "
        f"got {value!r}{hint}"
    )


@dataclass(frozen=True)
class Setup:
    """The validated inputs of a recommendation (batch sizes in examples per optimizer step, counted
    over all devices and accumulation steps; ``tokens`` the run's total; ``optimizer`` the family whose
    rules apply, ``optimizer_name`` the implementation asked for, such as ``paged_adamw_8bit``)."""

    params: int
    method: str
    optimizer: str
    steps: int
    batch_size: int | None = None
    tokens: int | None = None
    seq_len: int | None = None
    ref_lr: float | None = None
    ref_batch_size: int | None = None
    decay: str | None = None
    optimizer_name: str | None = None

    @property
    def adam(self) -> bool:
        return self.optimizer in ("adam", "adamw")

    @property
    def optimizer_spec(self) -> Optimizer:
        """The optimizer as the user named it (``paged_adamw_8bit``; `optimizer` is its family, whose
        rules apply): what the exports write."""
        return optimizer_named(self.optimizer_name or self.optimizer)

    @property
    def optimizer_label(self) -> str:
        """``adamw``, or ``paged_adamw_8bit (adamw rules)`` for an implementation of a family."""
        name = self.optimizer_spec.name
        return name if name == self.optimizer else f"{name} ({self.optimizer} rules)"


@dataclass(frozen=True)
class Reason:
    """One rule applied: its id in `RULES`, what it did here, and the peak LR after it (None for
    rules that shape the schedule rather than move the peak)."""

    rule: str
    effect: str
    lr: float | None = None

    @property
    def text(self) -> str:
        return rule(self.rule).text

    @property
    def source(self) -> str:
        return rule(self.rule).source

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "text": self.text, "source": self.source}


@dataclass(frozen=True)
class PriorCheck:
    """Whether an LR (a finder's suggestion, say) agrees with a recommendation: ``agrees`` inside the
    band, else ``above`` or ``below`` it; `ratio` is ``lr / peak``."""

    lr: float
    verdict: Literal["agrees", "above", "below"]
    ratio: float
    message: str

    @property
    def agrees(self) -> bool:
        return self.verdict == "agrees"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Recommendation:
    """A peak LR with its band, the schedule to run it in, and the rules (with sources) behind it.

    Attributes:
        peak_lr: the peak LR (3 significant digits).
        low, high: the band: LRs the rules cannot tell apart from `peak_lr` (see `BAND_FACTOR`).
        schedule: an lrpilot schedule: linear warmup over `warmup_steps`, then the decay to
            ``floor_ratio × peak_lr`` at the run's last step.
        warmup_steps: warmup length in optimizer steps.
        floor_ratio: the floor as a fraction of the peak.
        confidence: ``high``, ``medium`` or ``low`` (see the module docstring).
        reasons: every rule applied, in order.
        setup: the validated inputs.
        lora_plus_ratio: LoRA+'s η_B/η_A (an option: the peak is for plain LoRA), LoRA and QLoRA only.
        notes: caveats (what a rule assumed, what was not scaled, how the peak compares with the
            articles' ranges).
    """

    peak_lr: float
    low: float
    high: float
    schedule: Schedule
    warmup_steps: int
    floor_ratio: float
    confidence: Confidence
    reasons: tuple[Reason, ...]
    setup: Setup
    lora_plus_ratio: float | None = None
    notes: tuple[str, ...] = ()

    @property
    def range(self) -> tuple[float, float]:
        """``(low, high)``: the band, e.g. for a range test to cover."""
        return (self.low, self.high)

    @property
    def total_steps(self) -> int:
        return self.setup.steps

    @property
    def floor_lr(self) -> float:
        return self.floor_ratio * self.peak_lr

    def check(self, lr: float) -> PriorCheck:
        """Does `lr` (e.g. what a range test found) agree with this recommendation?

        >>> rec = recommend("7B", "lora", steps=1000)
        >>> rec.check(rec.peak_lr).verdict, rec.check(rec.high * 4).verdict
        ('agrees', 'above')
        """
        x = check.positive("Recommendation.check", "lr", lr)
        ratio = x / self.peak_lr
        band = f"{self.low:.3g}–{self.high:.3g}"
        rules = ", ".join(r.rule for r in self.reasons if r.lr is not None)
        if self.low <= x <= self.high:
            return PriorCheck(
                x, "agrees", ratio, f"{x:.3g} is within the rules' band {band} (×{ratio:.3g} the prior peak)"
            )
        verdict: Literal["above", "below"] = "above" if x > self.high else "below"
        edge = x / self.high if verdict == "above" else self.low / x
        prior = f"×{ratio:.3g} the prior peak {self.peak_lr:.3g}, from {rules}; confidence {self.confidence}"
        if edge <= NEAR_EDGE:
            end = "top" if verdict == "above" else "bottom"
            message = (
                f"{x:.3g} is just {verdict} the rules' band {band} (×{edge:.3g} its {end}; {prior}): within a "
                "range test's resolution of it, so the two all but agree"
            )
            return PriorCheck(x, verdict, ratio, message)
        far = "far " if max(ratio, 1 / ratio) > BAND_FACTOR[self.confidence] ** 2 else ""
        message = (
            f"{x:.3g} is {far}{verdict} the rules' band {band} ({prior}): either the setup differs from what those "
            f"rules assume (batch size, method, model), or the measurement is off; a short run at each settles it"
        )
        return PriorCheck(x, verdict, ratio, message)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict: the fields, the schedule as a dict and as a spec string."""
        return {
            "peak_lr": self.peak_lr,
            "low": self.low,
            "high": self.high,
            "schedule": self.schedule.to_dict(),
            "spec": self.schedule.to_string(),
            "warmup_steps": self.warmup_steps,
            "total_steps": self.total_steps,
            "floor_ratio": self.floor_ratio,
            "floor_lr": self.floor_lr,
            "lora_plus_ratio": self.lora_plus_ratio,
            "confidence": self.confidence,
            "reasons": [r.to_dict() for r in self.reasons],
            "notes": list(self.notes),
            "setup": asdict(self.setup),
        }


def recommend(
    params: object,
    method: str,
    *,
    optimizer: str = "adamw",
    batch_size: int | None = None,
    steps: int | None = None,
    tokens: object = None,
    seq_len: int | None = None,
    ref_lr: float | None = None,
    ref_batch_size: int | None = None,
    decay: str | None = None,
) -> Recommendation:
    """A starting LR, band, schedule and warmup for a training run, from published rules.

    Args:
        params: the model's size: a count, a string such as ``"135M"`` or ``"7B"`` (at least 1,000
            when written as text: ``"7"`` is refused as a likely typo for 7B or 7M), or the model
            itself (anything with ``.parameters()``).
        method: ``pretraining``, ``full`` (full fine-tuning), ``lora``, ``qlora`` or ``rl``
            (aliases such as ``dpo``, ``grpo``, ``fft`` are accepted; ``sft`` is read as full
            fine-tuning, and a note says so).
        optimizer: ``adamw``, ``adam`` or ``sgd`` (with momentum 0.9), or an implementation of AdamW by
            its Hugging Face name (``adamw_torch_fused``, ``adamw_8bit``, ``adamw_bnb_8bit``,
            ``paged_adamw_8bit``, ``paged_adamw_32bit``): AdamW's rules apply, and the exports
            write that optimizer (`lrpilot.rules.OPTIMIZER_NAMES`). Optimizers without a sourced rule
            (Adafactor, Lion, ...) are refused.
        batch_size: examples (sequences) per optimizer step, over all devices and accumulation.
        steps: the run's length in optimizer steps. Without it, ``tokens / (batch_size × seq_len)``.
            With tokens, batch_size and seq_len all given, it must be the steps they make (else
            `ValueError`: the peak would come from the tokens and the schedule from the steps).
        tokens: the run's token budget (``"2B"``); enables DeepSeek's compute law for pretraining.
            Without it, ``steps × batch_size × seq_len`` when all three are known.
        seq_len: tokens per example.
        ref_lr: an LR you tuned on this setup; it replaces the presets.
        ref_batch_size: the batch size `ref_lr` was tuned at (default: `batch_size`).
        decay: ``cosine`` or ``linear`` to override the method's default decay shape.

    Raises:
        ValueError: a bad or missing input; the message names it, its valid values and what it got.

    >>> rec = recommend("7B", "lora", batch_size=16, steps=2000)
    >>> rec.peak_lr, rec.confidence, rec.schedule.to_string()
    (0.0001, 'medium', 'cosine(peak=0.0001, total_steps=2000, warmup_steps=100)')
    >>> [r.rule for r in rec.reasons]
    ['full-ft-size', 'lora-10x', 'cosine-lora', 'warmup-finetuning', 'lora-plus', 'band']
    """
    inputs = (optimizer, batch_size, steps, tokens, seq_len, ref_lr, ref_batch_size, decay)
    return recommend_named(PYTHON_NAMES, params, method, *inputs)


def recommend_named(  # noqa: PLR0917  (recommend's inputs, in its order)
    names: InputNames,
    params: object,
    method: str,
    optimizer: str = "adamw",
    batch_size: int | None = None,
    steps: int | None = None,
    tokens: object = None,
    seq_len: int | None = None,
    ref_lr: float | None = None,
    ref_batch_size: int | None = None,
    decay: str | None = None,
) -> Recommendation:
    """`recommend` whose errors and notes name its inputs by `names`: ``lrpilot recommend`` passes
    `CLI_NAMES`, so that a bad ``--batch-size`` is called that, not ``batch_size``."""
    s = _setup(names, params, method, optimizer, batch_size, steps, tokens, seq_len, ref_lr, ref_batch_size, decay)
    reasons: list[Reason] = []
    notes: list[str] = _alias_notes(method)
    lr, confidence = _peak(s, reasons, notes, names)
    if not (math.isfinite(lr) and lr > 0):  # a guard; every rule keeps the LR finite and positive
        raise ValueError(f"{_OWNER}: the rules gave a peak LR of {lr!r} for {s}")
    peak = float(f"{lr:.3g}")
    shape, floor_ratio = _decay(s, peak, reasons)
    warmup = _warmup(s, reasons)
    cls = Cosine if shape == "cosine" else Linear
    schedule = cls(peak, s.steps, warmup_steps=warmup, floor_ratio=floor_ratio if floor_ratio else None)
    lora_plus = None
    if s.method in ("lora", "qlora"):
        lora_plus = LORA_PLUS_RATIO
        reasons.append(Reason("lora-plus", f"option: lora_B at {LORA_PLUS_RATIO:g}× the LR of lora_A"))
    f = BAND_FACTOR[confidence]
    low, high = float(f"{peak / f:.3g}"), float(f"{peak * f:.3g}")
    reasons.append(Reason("band", f"÷{f:g} … ×{f:g} ({confidence} confidence): {low:.3g} – {high:.3g}"))
    return Recommendation(
        peak_lr=peak,
        low=low,
        high=high,
        schedule=schedule,
        warmup_steps=warmup,
        floor_ratio=floor_ratio,
        confidence=confidence,
        reasons=tuple(reasons),
        setup=s,
        lora_plus_ratio=lora_plus,
        notes=tuple(notes),
    )


# --- inputs ----------------------------------------------------------------------------------


def _setup(  # noqa: PLR0917  (one positional argument per input, in recommend's order)
    names: InputNames,
    params: object,
    method: str,
    optimizer: str,
    batch_size: int | None,
    steps: int | None,
    tokens: object,
    seq_len: int | None,
    ref_lr: float | None,
    ref_batch_size: int | None,
    decay: str | None,
) -> Setup:
    n = parse_count(params, "params", names=names)
    meth = _name("method", method, METHODS, _METHOD_ALIASES, names)
    spec = optimizer_named(optimizer, _OWNER, names("optimizer"))
    b = None if batch_size is None else check.step_count(_OWNER, names("batch_size"), batch_size, 1)
    sl = None if seq_len is None else check.step_count(_OWNER, names("seq_len"), seq_len, 1)
    d = None if tokens is None else parse_count(tokens, "tokens", names=names)
    t = None if steps is None else check.step_count(_OWNER, names("steps"), steps, 1)
    if t is None:
        if d is None or b is None or sl is None:
            given = names.inputs({"steps": steps, "tokens": tokens, "batch_size": batch_size, "seq_len": seq_len})
            raise ValueError(
                f"{_OWNER}: the run's length is needed for the schedule: give {names('steps')}, or {names('tokens')} "
                f"with {names('batch_size')} and {names('seq_len')} (got {given})"
            )
        t = max(1, math.ceil(d / (b * sl)))
    elif d is None and b is not None and sl is not None:
        d = t * b * sl
    elif d is not None and b is not None and sl is not None:
        _check_steps_match_tokens(t, d, b, sl, tokens, names)
    rlr = None if ref_lr is None else check.positive(_OWNER, names("ref_lr"), ref_lr)
    rb = None if ref_batch_size is None else check.step_count(_OWNER, names("ref_batch_size"), ref_batch_size, 1)
    if rb is not None and rlr is None:
        raise ValueError(
            f"{_OWNER}: {names.given('ref_batch_size', ref_batch_size)} needs {names('ref_lr')}, the LR you tuned at "
            "that batch size (the presets state no batch size to scale from)"
        )
    if meth == "rl" and spec.family == "sgd" and rlr is None:
        raise ValueError(
            f"{_OWNER}: no sourced rule gives an LR for RL fine-tuning with {names.given('optimizer', optimizer)}; use "
            f"{names.given('optimizer', 'adamw')}, or give {names('ref_lr')} (an LR you tuned)"
        )
    dec = None if decay is None else check.choice(_OWNER, names("decay"), _known_lower(decay, DECAYS), DECAYS)
    name = None if spec.name == spec.family else spec.name
    return Setup(n, meth, spec.family, t, b, d, sl, rlr, rb, dec, name)


def _known_lower(value: object, known: tuple[str, ...]) -> object:
    """`value` in lower case where that is one of `known` (``Cosine``, as method and optimizer are
    read whatever their case), else as given, for the error to quote."""
    text = str(value).strip().lower()
    return text if text in known else value


def _check_steps_match_tokens(  # noqa: PLR0917  (the four numbers, then how the user wrote them)
    steps: int, tokens: int, batch_size: int, seq_len: int, given: object, names: InputNames
) -> None:
    """Refuse steps that disagree with the steps the token budget makes: the peak would come from the
    tokens (DeepSeek's compute law) and the schedule's length from the steps, one run described twice."""
    exact = tokens / (batch_size * seq_len)
    implied = max(1, math.ceil(exact))
    if max(1, math.floor(exact)) <= steps <= implied:  # rounding either way is the same run
        return
    raise ValueError(
        f"{_OWNER}: {names.given('steps', steps)} and {names.given('tokens', given)} disagree: {_count(tokens)} tokens "
        f"at {names('batch_size')} {batch_size:,} × {names('seq_len')} {seq_len:,} ({batch_size * seq_len:,} tokens a "
        f"step) make {exact:,.1f} steps; give {names('steps')} or {names('tokens')}, not both (or "
        f"{names.given('steps', implied)})"
    )


def _alias_notes(method: object) -> list[str]:
    """The note for a method alias that is a choice (`_ALIAS_NOTES`), as a list to extend."""
    text = str(method).strip().lower().replace(" ", "_")
    return [_ALIAS_NOTES[text]] if text in _ALIAS_NOTES else []


# --- the peak --------------------------------------------------------------------------------


def _peak(s: Setup, reasons: list[Reason], notes: list[str], names: InputNames) -> tuple[float, Confidence]:
    """The peak LR and its confidence; `notes` name the inputs by `names`, as errors do."""
    if s.ref_lr is not None:
        return _from_reference(s, s.ref_lr, reasons, notes, names)
    if not s.adam:
        return _sgd(s, reasons, notes, names)
    if s.method == "pretraining":
        return _pretraining(s, reasons, notes, names)
    if s.method == "rl":
        reasons.append(Reason("rl-default", "5e-6 (no size rule for RL)", 5e-6))
        return 5e-6, "low"
    lr, confidence = _full_ft(s, reasons, notes)
    if s.method in ("lora", "qlora"):
        lr = _lora(s, lr, reasons, notes)
    return lr, confidence


def _from_reference(
    s: Setup, ref_lr: float, reasons: list[Reason], notes: list[str], names: InputNames
) -> tuple[float, Confidence]:
    ref_b = s.ref_batch_size if s.ref_batch_size is not None else s.batch_size
    at = f" tuned at batch {ref_b:,}" if ref_b is not None else ""
    reasons.append(Reason("reference", f"start from your {ref_lr:.3g}{at}", ref_lr))
    if s.ref_batch_size is None:
        notes.append(
            f"{names('ref_lr')} without {names('ref_batch_size')}: taken as tuned at this batch size, so not scaled"
        )
        return ref_lr, "high"
    if s.batch_size is None:
        notes.append(
            f"no {names('batch_size')} given: {names('ref_lr')} is not scaled from its {names('ref_batch_size')}"
        )
        return ref_lr, "high"
    lr = _scale_batch(s, ref_lr, ref=s.ref_batch_size, batch=s.batch_size, reasons=reasons, notes=notes)
    ratio = max(s.batch_size / s.ref_batch_size, s.ref_batch_size / s.batch_size)
    if ratio > _MAX_VERIFIED_BATCH_RATIO:
        notes.append(f"the batch moves {ratio:.3g}×, beyond the 32× over which Goyal et al. verified batch scaling")
        return lr, "medium"
    return lr, "high"


def _scale_batch(
    s: Setup, lr: float, *, ref: float, batch: float, reasons: list[Reason], notes: list[str], unit: str = ""
) -> float:
    """Move `lr` from batch `ref` to `batch`: linear for SGD, square root for Adam-family."""
    if ref == batch:
        return lr
    ratio = f"{batch:,.0f}/{ref:,.0f}{unit}"
    if s.adam:
        factor = math.sqrt(batch / ref)
        reasons.append(Reason("sqrt-batch", f"×√({ratio}) = ×{factor:.3g}", lr * factor))
    else:
        factor = batch / ref
        reasons.append(Reason("linear-batch", f"×{ratio} = ×{factor:.3g}", lr * factor))
    if s.method in ("lora", "qlora") and batch > ref:
        notes.append("LoRA tolerates large batches worse than full fine-tuning (Schulman et al. 2025)")
    return lr * factor


def _sgd(s: Setup, reasons: list[Reason], notes: list[str], names: InputNames) -> tuple[float, Confidence]:
    lr = 0.1
    reasons.append(Reason("goyal-reference", "0.1 at batch 256", lr))
    if s.batch_size is None:
        notes.append(f"no {names('batch_size')} given: Goyal et al.'s reference batch of 256 is assumed")
    else:
        lr = _scale_batch(s, lr, ref=256, batch=s.batch_size, reasons=reasons, notes=notes)
    if s.method != "pretraining":
        lr /= _FT_DIVISOR
        reasons.append(Reason("finetune-below-pretrain", f"÷{_FT_DIVISOR:.3g}", lr))
    if s.method in ("lora", "qlora"):
        lr = _lora(s, lr, reasons, notes)
    notes.append("SGD's only sourced anchor is ResNet-50 on ImageNet (Goyal et al. 2017): treat this as a guess")
    return lr, "low"


def _pretraining(s: Setup, reasons: list[Reason], notes: list[str], names: InputNames) -> tuple[float, Confidence]:
    if s.tokens is None:
        lr, inside = _loglog(float(s.params), GPT3_TABLE)
        where = "" if inside else ", held at the table's end"
        reasons.append(Reason("gpt3-size", f"{lr:.3g} at {_count(s.params)} parameters{where}", lr))
        length = f"{names('tokens')} (or {names('steps')} with {names('batch_size')} and {names('seq_len')})"
        notes.append(f"give {length} to apply DeepSeek's compute law instead")
        if not inside:
            notes.append(f"{_count(s.params)} parameters is outside GPT-3's table (125M–175B)")
            return lr, "low"
        return lr, "medium"
    c = 6.0 * s.params * s.tokens
    lr = DEEPSEEK["lr_coef"] * c ** DEEPSEEK["lr_exp"]
    b_opt = DEEPSEEK["batch_coef"] * c ** DEEPSEEK["batch_exp"]
    reasons.append(
        Reason(
            "deepseek-compute",
            f"C = 6 × {_count(s.params)} × {_count(s.tokens)} tokens = {c:.3g} FLOPs → {lr:.3g} "
            f"(at B_opt ≈ {b_opt:.3g} tokens per step)",
            lr,
        )
    )
    notes.append(
        "DeepSeek's C counts non-embedding FLOPs per token; 6 × all parameters overcounts it for small models "
        "(a slightly lower LR)"
    )
    if s.batch_size is not None and s.seq_len is not None:
        tokens_per_step = float(s.batch_size * s.seq_len)
        lr = _scale_batch(s, lr, ref=b_opt, batch=tokens_per_step, reasons=reasons, notes=notes, unit=" tokens")
    else:
        to_scale = f"give {names('batch_size')} and {names('seq_len')} to scale"
        notes.append(f"DeepSeek's LR is for its batch B_opt ≈ {b_opt:.3g} tokens: {to_scale}")
    return lr, "medium"


def _full_ft(s: Setup, reasons: list[Reason], notes: list[str]) -> tuple[float, Confidence]:
    lr, inside = _loglog(float(s.params), FULL_FT_ANCHORS)
    n_small = FULL_FT_ANCHORS[0][0]
    held = "" if inside else ", held at the range's end"
    reasons.append(Reason("full-ft-size", f"{lr:.3g} at {_count(s.params)} parameters{held}", lr))
    if s.params < n_small:
        notes.append(
            f"{_count(s.params)} parameters is below the smallest anchor ({_count(n_small)}): small models often "
            "take higher LRs (Adam on small tasks ≈ 1e-3, article 001)"
        )
        return lr, "low"
    return lr, "medium"


def _lora(s: Setup, full_lr: float, reasons: list[Reason], notes: list[str]) -> float:
    lr = 10.0 * full_lr
    reasons.append(Reason("lora-10x", "×10 the full fine-tuning LR", lr))
    if s.method == "qlora":
        reasons.append(Reason("qlora-as-lora", "the LoRA LR, unchanged", lr))
    if s.adam and not 1e-4 <= lr <= 3e-4:
        side = "above" if lr > 3e-4 else "below"
        notes.append(
            f"the LoRA peak {float(f'{lr:.3g}'):.3g} is {side} the 1e-4–3e-4 that article 002 calls typical for LoRA; "
            f"{_LORA_8B_NOTE}"
        )
    return lr


def _loglog(n: float, table: tuple[tuple[float, float], ...]) -> tuple[float, bool]:
    """Log-log interpolation in a (size, lr) table; the end values outside it (and False)."""
    if n <= table[0][0]:
        return table[0][1], n == table[0][0]
    if n >= table[-1][0]:
        return table[-1][1], n == table[-1][0]
    for (n0, lr0), (n1, lr1) in itertools.pairwise(table):
        if n <= n1:
            t = math.log(n / n0) / math.log(n1 / n0)
            return math.exp(math.log(lr0) + t * math.log(lr1 / lr0)), True
    raise AssertionError("unreachable")  # pragma: no cover


def _count(n: float) -> str:
    for suffix, unit in (("T", 1e12), ("B", 1e9), ("M", 1e6), ("k", 1e3)):
        if n >= unit:
            return f"{n / unit:.3g}{suffix}"
    return f"{n:.3g}"


# --- schedule --------------------------------------------------------------------------------

_DEFAULT_DECAY: dict[str, tuple[str, str]] = {
    "pretraining": ("cosine", "cosine-pretraining"),
    "full": ("linear", "linear-finetuning"),
    "rl": ("linear", "linear-finetuning"),
    "lora": ("cosine", "cosine-lora"),
    "qlora": ("cosine", "cosine-lora"),
}


def _decay(s: Setup, peak: float, reasons: list[Reason]) -> tuple[str, float]:
    shape, rule_id = _DEFAULT_DECAY[s.method]
    floor_ratio = 0.1 if s.method == "pretraining" else 0.0
    to = f"to 10 % of the peak ({floor_ratio * peak:.3g})" if floor_ratio else "to 0"
    reasons.append(Reason(rule_id, f"{shape} decay {to}"))
    if s.decay is not None and s.decay != shape:
        reasons.append(Reason("decay-choice", f"{s.decay} decay instead of {shape}"))
        shape = s.decay
    return shape, floor_ratio


def _warmup(s: Setup, reasons: list[Reason]) -> int:
    t = s.steps
    if s.method == "pretraining":
        w, rule_id = min(max(round(0.01 * t), 200), 2000, t // 10), "warmup-pretraining"
    else:
        w, rule_id = min(round(0.1 * t), 100), "warmup-finetuning"
    w = max(0, min(w, t - 1))
    reasons.append(Reason(rule_id, f"{w:,} of {t:,} steps"))
    return w
