"""A causal LM's prompt/completion and chat data as token ids, with the tokens its loss counts.

These are the formats of TRL's ``SFTTrainer`` with its defaults for them: a prompt's completion is
trained on and the prompt is not (TRL's ``completion_only_loss``), and of a chat the assistant's
turns are (``assistant_only_loss``, Unsloth's ``train_on_responses_only``): the model learns to
answer, not to write the questions, and the loss fit's range test and guard read is the answers'.
A completion given as text ends with the tokenizer's end-of-text token (learning where an answer
stops), unless the length limit cut it short.

A chat is rendered with the tokenizer's chat template, and which characters are an assistant's turn
is read off the rendering itself: where the conversation up to that message ends once the template
has opened the assistant's turn (``add_generation_prompt``), and where it ends with the message.
The tokenizer's character offsets then mark the tokens. That needs a fast tokenizer, and a template
that renders the start of a conversation as the start of the whole (one that rewrites earlier
turns, as some reasoning models' do, does not): both are checked, and the error says what to give
instead.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from lrpilot.autopilot._data import Encoded

__all__ = ["encode_lm", "needs_template"]

Span = tuple[int, int]


def needs_template(rows: Sequence[dict[str, Any]], form: str) -> bool:
    """Whether the data is a chat (messages, or a prompt and completion given as messages)."""
    return form == "messages" or (form == "prompt-completion" and bool(rows) and not isinstance(rows[0]["prompt"], str))


def _messages(value: Any, where: str, role: str) -> list[dict[str, str]]:
    """A list of ``{"role", "content"}`` messages, checked."""
    if isinstance(value, str):
        raise ValueError(
            f'{where}: {role!r} must be a list of {{"role", "content"}} messages, got text (a CSV cell cannot '
            "hold a list: give chats as .jsonl)"
        )
    if not isinstance(value, list) or not value:
        raise ValueError(f'{where}: {role!r} must be a non-empty list of {{"role", "content"}} messages')
    for number, message in enumerate(value, start=1):
        if not isinstance(message, dict) or not isinstance(message.get("role"), str):
            raise ValueError(f'{where}: {role!r}, message {number}: expected an object with a "role" (text)')
        if not isinstance(message.get("content"), str):
            raise ValueError(f'{where}: {role!r}, message {number}: expected a "content" that is text')
    return value


def _conversation(row: dict[str, Any], form: str, where: str) -> tuple[list[dict[str, str]], list[int]]:
    """The row's messages and the indices of those the loss counts."""
    if form == "messages":
        messages = _messages(row["messages"], where, "messages")
        trained = [i for i, message in enumerate(messages) if message["role"] == "assistant"]
        if not trained:
            raise ValueError(f'{where}: no message has the role "assistant": the loss counts the assistant\'s turns')
        return messages, trained
    prompt = _messages(row["prompt"], where, "prompt")
    completion = _messages(row["completion"], where, "completion")
    return prompt + completion, list(range(len(prompt), len(prompt) + len(completion)))


def _render(tokenizer: Any, messages: list[dict[str, str]], opened: bool = False) -> str:
    text: str = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=opened)
    return text


def _opened(tokenizer: Any, messages: list[dict[str, str]]) -> str:
    """The rendering of `messages` with the assistant's turn opened; for none, "" where the template
    cannot render an empty conversation (many read ``messages[0]``, and fail as their code does)."""
    if messages:
        return _render(tokenizer, messages, opened=True)
    try:
        return _render(tokenizer, [], opened=True)
    except Exception:  # a template's own error, whatever its kind: nothing comes before the first turn
        return ""


def _chat_spans(tokenizer: Any, row: dict[str, Any], form: str, where: str) -> tuple[str, list[Span]]:
    """A chat's rendered text and the character spans of the turns the loss counts."""
    from jinja2 import TemplateError

    conversation, trained = _conversation(row, form, where)
    try:
        return _spans(tokenizer, conversation, trained, where)
    except TemplateError as exc:  # the template's own refusal (a role it does not take, turns out of order)
        raise ValueError(f"{where}: the tokenizer's chat template refused this conversation: {exc}") from None


def _spans(
    tokenizer: Any, conversation: list[dict[str, str]], trained: list[int], where: str
) -> tuple[str, list[Span]]:
    """`_chat_spans` once the conversation is checked."""
    whole = _render(tokenizer, conversation)
    spans = []
    for i in trained:
        before, upto = _opened(tokenizer, conversation[:i]), _render(tokenizer, conversation[: i + 1])
        if not (upto.startswith(before) and whole.startswith(upto)):
            raise ValueError(
                f"{where}: the tokenizer's chat template does not render the start of this conversation (up to "
                f"message {i + 1}) as the start of the whole, so its answers cannot be told from its prompts; give "
                "the data as prompt and completion text instead"
            )
        spans.append((len(before), len(upto)))
    return whole, spans


def _example(
    tokenizer: Any, row: dict[str, Any], form: str, where: str, max_length: int
) -> tuple[list[int], list[int]]:
    """One example's token ids and targets (1: the loss counts it), truncated to `max_length`."""
    if form == "prompt-completion" and isinstance(row["prompt"], str) != isinstance(row["completion"], str):
        raise ValueError(f"{where}: 'prompt' and 'completion' must both be text or both be lists of messages")
    chat = needs_template([row], form)
    if chat:
        text, spans = _chat_spans(tokenizer, row, form, where)
    else:
        prompt, completion = row["prompt"], row["completion"]
        text, spans = prompt + completion, [(len(prompt), len(prompt) + len(completion))]
    out = tokenizer(text, add_special_tokens=not chat, return_offsets_mapping=True)
    ids = list(out["input_ids"])
    targets = [int(end > start and any(a <= start < b for a, b in spans)) for start, end in out["offset_mapping"]]
    eos = tokenizer.eos_token_id
    if not chat and eos is not None and (not ids or ids[-1] != eos) and len(ids) < max_length:
        ids, targets = [*ids, eos], [*targets, 1]  # the answer's end, where the limit left room for it
    return ids[:max_length], targets[:max_length]


def encode_lm(
    tokenizer: Any, rows: list[dict[str, Any]], form: str, *, max_length: int, path: Path, what: str
) -> tuple[Encoded, int]:
    """Prompt/completion or chat rows (`lrpilot.autopilot._data.read_lm`, `form` not ``"text"``) as
    token ids with their targets, and how many rows were left out: those whose counted tokens the
    length limit cut off (a token counts where the model predicts it, so not the first). None left
    is an error naming the limit."""
    if not getattr(tokenizer, "is_fast", False):
        raise ValueError(
            f"--model: {form} data needs a fast tokenizer (a tokenizer.json), whose character offsets tell the "
            "tokens the loss counts; this model's is a slow one"
        )
    ids, targets = [], []
    for number, row in enumerate(rows, start=1):
        seq, counted = _example(tokenizer, row, form, f"{what}: {path.name}, row {number}", max_length)
        if any(counted[1:]):
            ids.append(seq)
            targets.append(counted)
    if not ids:
        answers = "assistant turns" if form == "messages" else "completions"
        raise ValueError(
            f"{what}: {path.name}: no row keeps a token of its {answers} within the first {max_length} tokens; "
            "raise --max-length"
        )
    return Encoded(ids, None, targets=targets), len(rows) - len(ids)
