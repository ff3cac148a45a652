"""The rule table: every rule `recommend` can apply, with its source, as data.

Each record is the doctor's `Rule` (``id``, ``text``, ``source``): one citation style for the whole
library. ``lrpilot recommend --rules`` prints this table; every `Reason` in a recommendation names
one of these ids. Only rules and constants that a published paper, a tool's own config, or one of
the five explanatory articles on the learning rate the project started from (cited as "article
000" … "article 004"; ``docs/sources.md`` quotes what each rule rests on) states are used; the
source says which.
"""

from __future__ import annotations

from lrpilot._citation import Rule

__all__ = ["DEEPSEEK", "FULL_FT_ANCHORS", "GPT3_TABLE", "RULES", "Rule", "rule"]

GPT3_TABLE: tuple[tuple[float, float], ...] = (
    (125e6, 6.0e-4),
    (350e6, 3.0e-4),
    (760e6, 2.5e-4),
    (1.3e9, 2.0e-4),
    (2.7e9, 1.6e-4),
    (6.7e9, 1.2e-4),
    (13e9, 1.0e-4),
    (175e9, 0.6e-4),
)
"""(parameters, peak LR) of the GPT-3 models (Brown et al. 2020, Table 2.1), AdamW, cosine to 10 %."""

DEEPSEEK = {"lr_coef": 0.3118, "lr_exp": -0.1250, "batch_coef": 0.2920, "batch_exp": 0.3271}
"""η_opt = 0.3118·C^−0.1250 and B_opt = 0.2920·C^0.3271 (C in FLOPs, B in tokens): DeepSeek LLM (2024)."""

FULL_FT_ANCHORS: tuple[tuple[float, float], tuple[float, float]] = ((110e6, 5e-5), (7e9, 1e-5))
"""(parameters, peak LR) at the two ends of the full fine-tuning range 1e-5…5e-5."""

RULES: tuple[Rule, ...] = (
    # --- where the peak comes from -----------------------------------------------------------
    Rule(
        "reference",
        "Your own LR, tuned on this setup at ref_batch_size, is the starting point; only the batch rule moves it.",
        "your tuning run (ref_lr at ref_batch_size)",
    ),
    Rule(
        "gpt3-size",
        "Pretraining with AdamW: the peak LR by model size, log-log between GPT-3's models: 125M 6e-4, 350M 3e-4, "
        "760M 2.5e-4, 1.3B 2e-4, 2.7B 1.6e-4, 6.7B 1.2e-4, 13B 1e-4, 175B 6e-5 (held at the ends). Larger models "
        "want smaller LRs.",
        "Brown et al. 2020, 'Language Models are Few-Shot Learners' (GPT-3), Table 2.1; article 003 (larger models "
        "need smaller LRs; 1e-4–3e-4 at base size)",
    ),
    Rule(
        "deepseek-compute",
        "Pretraining with AdamW and a known token budget: η_opt = 0.3118·C^−0.1250 at the batch "
        "B_opt = 0.2920·C^0.3271 tokens, C = 6·N·D FLOPs. More compute (a bigger model or a longer run) → a "
        "lower LR.",
        "DeepSeek-AI 2024, 'DeepSeek LLM: Scaling Open-Source Language Models with Longtermism', §3.1; "
        "C ≈ 6·N·D as in Kaplan et al. 2020, 'Scaling Laws for Neural Language Models'",
    ),
    Rule(
        "full-ft-size",
        "Full fine-tuning with AdamW: 5e-5 at ≤110M parameters down to 1e-5 at ≥7B, log-log in between (the "
        "1e-5–5e-5 range, its ends pinned to model sizes).",
        "articles 002/003 (full fine-tuning 1e-5–5e-5), article 001 (a 7B model ≈ 1e-5); Devlin et al. 2019, "
        "'BERT', App. A.3 (5e-5, 3e-5, 2e-5 for BERT-base, 110M); Hugging Face "
        "TrainingArguments' default 5e-5",
    ),
    Rule(
        "lora-10x",
        "LoRA: ≈ 10× the full fine-tuning LR of the same model (≈ 15× for very short runs), roughly independent "
        "of the rank.",
        "Schulman et al. 2025, 'LoRA Without Regret' (Thinking Machines Lab); the same ratio in "
        "axolotl's llama-3 examples (lora-8b.yml 2e-4, fft-8b.yaml 2e-5) and torchtune's Llama 3.1 8B configs "
        "(LoRA 3e-4, full 2e-5); articles 000/003 (LoRA needs a several-times higher LR)",
    ),
    Rule(
        "qlora-as-lora",
        "QLoRA: the LoRA LR (the frozen base is quantized; the adapters train as in LoRA).",
        "Unsloth docs (2e-4 for LoRA and QLoRA) and torchtune llama3_1 8B_lora / 8B_qlora (both 3e-4)",
    ),
    Rule(
        "rl-default",
        "RL fine-tuning (DPO, GRPO, PPO) with AdamW: ≈ 5e-6, far below supervised fine-tuning. No model-size rule.",
        "Unsloth docs (5e-6 for RL: DPO/GRPO)",
    ),
    Rule(
        "goyal-reference",
        "SGD with momentum 0.9: η = 0.1 × B/256 (B in examples), with a gradual warmup.",
        "Goyal et al. 2017, 'Accurate, Large Minibatch SGD: Training ImageNet in 1 Hour' (ResNet-50, batch 256 "
        "to 8192)",
    ),
    Rule(
        "finetune-below-pretrain",
        "Fine-tuning uses LRs 10–100× below pretraining: ÷√(10·100) ≈ ÷31.6, the geometric middle.",
        "articles 000 and 002",
    ),
    # --- batch size --------------------------------------------------------------------------
    Rule(
        "linear-batch",
        "SGD: the LR scales linearly with the batch size, η ∝ B (verified from 256 to 8192, 32×).",
        "Goyal et al. 2017, 'Accurate, Large Minibatch SGD'; article 004 (linear vs square-root scaling depends on "
        "the optimizer)",
    ),
    Rule(
        "sqrt-batch",
        "Adam / AdamW: the LR scales with the square root of the batch size, η ∝ √B (the paper also adjusts "
        "1−β and ε).",
        "Malladi et al. 2022, 'On the SDEs and Scaling Rules for Adaptive Gradient Algorithms' (NeurIPS 2022); "
        "article 004",
    ),
    # --- schedule ----------------------------------------------------------------------------
    Rule(
        "cosine-pretraining",
        "Pretraining: linear warmup, then cosine decay to a floor of 10 % of the peak.",
        "article 003 ('cosine decay is the modern default'; 'a small floor (often 10% of peak)'), article 002",
    ),
    Rule(
        "linear-finetuning",
        "Full fine-tuning and RL: linear decay to 0.",
        "article 003 ('linear is common in fine-tuning'), article 004 (linear decay to zero matches or beats cosine); "
        "Hugging Face TrainingArguments' default lr_scheduler_type='linear'",
    ),
    Rule(
        "cosine-lora",
        "LoRA and QLoRA: cosine decay to 0.",
        "article 001 (Llama 3.1 8B LoRA at 2e-4 with a cosine scheduler); axolotl llama-3/lora-8b.yml and torchtune's "
        "LoRA configs (cosine)",
    ),
    Rule("decay-choice", "The decay shape you asked for replaces the default one.", "your input (decay)"),
    Rule(
        "warmup-pretraining",
        "Pretraining warmup: 1 % of the run, kept within 200–2,000 steps and at most 10 % of the run.",
        "article 003 (warm up 'for the first few hundred to few thousand steps'); Goyal et al. 2017 (a gradual warmup "
        "makes the large LR safe)",
    ),
    Rule(
        "warmup-finetuning",
        "Fine-tuning warmup (full, LoRA, QLoRA, RL): 10 % of the run, at most 100 steps.",
        "axolotl llama-3/lora-8b.yml (10 % warmup), torchtune's LoRA configs (100 warmup steps)",
    ),
    # --- options and the band ----------------------------------------------------------------
    Rule(
        "lora-plus",
        "LoRA+ (optional, LoRA and QLoRA): give the B matrices a 16× higher LR than A (λ = η_B/η_A ≈ 2⁴).",
        "Hayou, Ghosh & Yu 2024, 'LoRA+: Efficient Low Rank Adaptation of Large Models' (ICML 2024); "
        "nikhil-ghosh-berkeley/loraplus README (its example uses 20); up to ~2× faster, +1–2 %",
    ),
    Rule(
        "band",
        "The range is peak ÷ f … peak × f, f = 2 / 3 / 10 for high / medium / low confidence: one adjustment step "
        "of the size article 000 advises (×2–3), an order of magnitude where the sources differ that much.",
        "article 000 ('adjust by factors of two or three — not by an order of magnitude')",
    ),
)
"""Every rule `recommend` can apply, in the order it applies them."""

_BY_ID = {r.id: r for r in RULES}


def rule(rule_id: str) -> Rule:
    """The rule with this id (KeyError for an unknown one: ids are lrpilot's, not the user's)."""
    return _BY_ID[rule_id]
