"""A causal LM's data as token ids, with the tokens its loss counts.

These are the formats of TRL's ``SFTTrainer`` with its defaults for them: a prompt's completion is
trained on and the prompt is not (TRL's ``completion_only_loss``), and of a chat the assistant's
turns are (``assistant_only_loss``, Unsloth's ``train_on_responses_only``): the model learns to
answer, not to write the questions, and the loss fit's range test and guard read is the answers'.
Plain text and a completion given as text end with the tokenizer's end-of-text token (learning
where a document or an answer stops), unless the length limit cut them short. A chat's messages may
also come as ShareGPT's ``{"from", "value"}`` (its speakers mapped to roles), an assistant's turn may
be a call of tools (``tool_calls``, counted like any answer; the tools' results are not), and a
row's ``tools`` (function schemas) and ``chat_template_kwargs`` (the template's own switches, such as
Qwen3's ``enable_thinking``) go to the template as TRL passes them.

A chat is rendered with the tokenizer's chat template, and which characters are an assistant's turn
is read off the renderings themselves, with no per-model knowledge: what the model writes after the
template's generation prompt (``add_generation_prompt``), to the end of the message (`_turn`). The
tokenizer's character offsets then mark the tokens, which needs a fast tokenizer (checked). Turns
whose renderings extend one another share a sequence; a template that renders earlier turns
differently once a later one follows (reasoning models drop earlier reasoning) gets each such turn
in a sequence of its own, as the model sees it at inference (`_pieces`). On the real templates TRL
stores, the counted tokens are those TRL's own training templates mark (``tests/autopilot``).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NamedTuple

from lrpilot.autopilot._data import Encoded

__all__ = ["Encoding", "encode_lm", "encode_text", "needs_template"]

Span = tuple[int, int]


class Encoding(NamedTuple):
    """A causal LM's rows as token ids, and what the length limit and the template did to them."""

    data: Encoded
    left_out: int = 0
    """Rows left out: the length limit cut off every token their loss counts."""
    split: int = 0
    """Chats that became more than one sequence (`_pieces`)."""
    cut: int = 0
    """Sequences the length limit cut short (their ends are not trained)."""


def needs_template(rows: Sequence[dict[str, Any]], form: str) -> bool:
    """Whether the data is a chat (messages, or a prompt and completion given as messages)."""
    return form == "messages" or (form == "prompt-completion" and bool(rows) and not isinstance(rows[0]["prompt"], str))


SHAREGPT_ROLES = {"human": "user", "gpt": "assistant", "user": "user", "assistant": "assistant", "system": "system"}
"""ShareGPT's speakers as the chat roles templates know (as Unsloth's ``standardize_sharegpt``)."""


def _message(message: Any, where: str) -> dict[str, Any]:
    """One message, checked: ``{"role", "content"}`` (with any other keys a template reads, such as an
    assistant's ``tool_calls`` — whose content may then be absent — or a tool result's ``name``), or
    ShareGPT's ``{"from", "value"}``, turned into the former."""
    if isinstance(message, dict) and "from" in message and "value" in message and "role" not in message:
        speaker = message["from"]
        if speaker not in SHAREGPT_ROLES:
            known = ", ".join(SHAREGPT_ROLES)
            raise ValueError(f'{where}: "from" must be one of {known} (ShareGPT\'s speakers), got {speaker!r}')
        rest = {k: v for k, v in message.items() if k not in ("from", "value")}
        message = {"role": SHAREGPT_ROLES[speaker], "content": message["value"], **rest}
    if not isinstance(message, dict) or not isinstance(message.get("role"), str):
        raise ValueError(f'{where}: expected an object with a "role" (text)')
    content = message.get("content")
    calls = message.get("tool_calls")
    if calls is not None and not (isinstance(calls, list) and calls and all(isinstance(c, dict) for c in calls)):
        raise ValueError(f'{where}: "tool_calls" must be a non-empty list of objects, got {calls!r}')
    if not (isinstance(content, str) or (content is None and calls)):
        raise ValueError(
            f'{where}: expected a "content" that is text (or none, beside "tool_calls"); content given as a list '
            "of parts (images, audio) needs a multimodal model, which fit does not train"
        )
    return dict(message)


def _messages(value: Any, where: str, role: str) -> list[dict[str, Any]]:
    """A list of messages (`_message`), checked. Given as text, the error tells JSON text of a list
    (messages encoded twice, ``json.dumps`` of them in a ``.jsonl`` row; a ``.jsonl`` file had
    been told to use ``.jsonl``) from other text (a CSV cell's)."""
    if isinstance(value, str):
        try:
            encoded = isinstance(json.loads(value), list)
        except json.JSONDecodeError:
            encoded = False
        hint = (
            "the JSON text of a list, not the list: give each row's messages as a list in a .jsonl (json.dumps of "
            "the whole row, not of its messages)"
            if encoded
            else "text (a CSV cell cannot hold a list: give chats as .jsonl)"
        )
        raise ValueError(f'{where}: {role!r} must be a list of {{"role", "content"}} messages, got {hint}')
    if not isinstance(value, list) or not value:
        raise ValueError(f'{where}: {role!r} must be a non-empty list of {{"role", "content"}} messages')
    return [_message(message, f"{where}: {role!r}, message {number}") for number, message in enumerate(value, 1)]


def _decoded(value: Any, where: str, role: str) -> Any:
    """A row's `role` value as TRL takes it: given, or as its JSON text (an empty text: none)."""
    if not isinstance(value, str):
        return value
    if not value:
        return None
    try:
        return json.loads(value)
    except json.JSONDecodeError as exc:
        raise ValueError(f"{where}: {role!r} is text but not JSON ({exc.msg})") from None


def _tools(value: Any, where: str) -> list[dict[str, Any]] | None:
    """A row's tools: function schemas (a list of objects, or that list as JSON text, as TRL takes
    them), or None where the row has none."""
    value = _decoded(value, where, "tools")
    if value is None or (isinstance(value, list) and not value):
        return None
    if not (isinstance(value, list) and all(isinstance(tool, dict) for tool in value)):
        raise ValueError(f"{where}: 'tools' must be a list of function schemas (objects), got {value!r}")
    return value or None


RESERVED_KWARGS = ("conversation", "messages", "tools", "tokenize", "add_generation_prompt", "continue_final_message")
"""Arguments of ``apply_chat_template`` that fit sets itself (the tools come from their own column),
so a row's ``chat_template_kwargs`` may not."""


def _template_kwargs(value: Any, where: str) -> dict[str, Any]:
    """A row's ``chat_template_kwargs``: an object (or its JSON text) of the variables its template
    reads beyond the messages, passed to ``apply_chat_template`` as TRL's ``SFTTrainer`` passes them;
    ``{}`` where the row has none."""
    value = _decoded(value, where, "chat_template_kwargs")
    if value is None or (isinstance(value, dict) and not value):
        return {}
    if not isinstance(value, dict):
        raise ValueError(f"{where}: 'chat_template_kwargs' must be an object of template variables, got {value!r}")
    taken = [key for key in value if key in RESERVED_KWARGS]
    if taken:
        raise ValueError(
            f"{where}: 'chat_template_kwargs' may not set {', '.join(map(repr, taken))}: fit sets "
            f"{', '.join(RESERVED_KWARGS)} itself (tools come from the 'tools' column)"
        )
    return value


def _conversation(row: dict[str, Any], form: str, where: str) -> tuple[list[dict[str, Any]], list[int]]:
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


Extra = dict[str, Any]
"""What a row's template gets beside the messages: its ``tools`` and its ``chat_template_kwargs``."""
Piece = tuple[str, list[Span]]
"""A text to train on and the character spans in it that the loss counts."""
Tokens = tuple[list[int], list[int]]
"""Token ids and their targets (1 where the loss counts the token)."""


def _render(tokenizer: Any, messages: list[dict[str, Any]], extra: Extra, opened: bool = False) -> str:
    """`messages` as the template renders them (`opened`: with the assistant's turn opened, as for
    generation); for none, "" where the template cannot render an empty conversation (many read
    ``messages[0]``, and fail as their code does)."""
    try:
        text: str = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=opened, **extra)
    except Exception:
        if messages:
            raise
        return ""  # a template's own error, whatever its kind: nothing comes before the first turn
    return text


def _chat_pieces(tokenizer: Any, row: dict[str, Any], form: str, where: str) -> list[Piece]:
    """A chat as the texts to train on, each with the character spans of the turns the loss counts."""
    from jinja2 import TemplateError

    conversation, trained = _conversation(row, form, where)
    extra = {"tools": _tools(row.get("tools"), where), **_template_kwargs(row.get("chat_template_kwargs"), where)}
    try:
        return _pieces(tokenizer, conversation, extra, trained, where)
    except TemplateError as exc:  # the template's own refusal (a role it does not take, turns out of order)
        raise ValueError(f"{where}: the tokenizer's chat template refused this conversation: {exc}") from None


def _turn(tokenizer: Any, conversation: list[dict[str, Any]], extra: Extra, i: int, where: str) -> Piece:
    """The conversation up to turn `i` as the template renders it with that turn last, and the span
    of the characters the model writes in it: from where the conversation before it, with the turn
    opened for generation, ends — or, for a template whose generation prompt prefills more than
    the data's turn holds (a thinking model's ``<think>`` for an answer without reasoning), from
    where the two part — to the end."""
    upto = _render(tokenizer, conversation[: i + 1], extra)
    before = _render(tokenizer, conversation[:i], extra, opened=True)
    if upto.startswith(before):
        return upto, [(len(before), len(upto))]
    closed = _render(tokenizer, conversation[:i], extra)
    start = next((k for k, (a, b) in enumerate(zip(before, upto, strict=False)) if a != b), len(before))
    if not upto.startswith(closed) or start < len(closed):
        raise ValueError(
            f"{where}: the tokenizer's chat template renders the conversation before message {i + 1} differently "
            "once that message follows, so its answer cannot be told from its prompt; give the data as prompt and "
            "completion text instead"
        )
    return upto, [(start, len(upto))]


def _pieces(
    tokenizer: Any, conversation: list[dict[str, Any]], extra: Extra, trained: list[int], where: str
) -> list[Piece]:
    """`_chat_pieces` once the conversation is checked. Each counted turn is taken in the context the
    model writes it in (`_turn`); turns whose renderings extend one another share one text, which
    for most templates makes the whole chat one. A template that renders earlier turns differently
    once a later one follows (reasoning models drop earlier turns' reasoning) gives one text per
    such turn, as the model sees each at inference."""
    pieces: list[Piece] = []
    for i in trained:
        text, span = _turn(tokenizer, conversation, extra, i, where)
        if pieces and text.startswith(pieces[-1][0]):
            pieces[-1] = (text, [*pieces[-1][1], *span])
        else:
            pieces.append((text, span))
    return pieces


def _examples(tokenizer: Any, row: dict[str, Any], form: str, where: str, max_length: int) -> list[tuple[Tokens, bool]]:
    """A row's token ids and targets (1: the loss counts it), each truncated to `max_length` (and
    whether it was): one sequence, or for a chat whose template renders earlier turns differently
    later, one per such turn (`_pieces`)."""
    if form == "prompt-completion" and isinstance(row["prompt"], str) != isinstance(row["completion"], str):
        raise ValueError(f"{where}: 'prompt' and 'completion' must both be text or both be lists of messages")
    chat = needs_template([row], form)
    if chat:
        pieces = _chat_pieces(tokenizer, row, form, where)
    else:
        for role, given in [
            ("tools", _tools(row.get("tools"), where) is not None),
            ("chat_template_kwargs", bool(_template_kwargs(row.get("chat_template_kwargs"), where))),
        ]:
            if given:
                raise ValueError(f"{where}: {role!r} go to a chat template, and this prompt and completion are text")
        prompt, completion = row["prompt"], row["completion"]
        pieces = [(prompt + completion, [(len(prompt), len(prompt) + len(completion))])]
    out = []
    for text, spans in pieces:
        encoded = tokenizer(text, add_special_tokens=not chat, return_offsets_mapping=True)
        ids = list(encoded["input_ids"])
        offsets = encoded["offset_mapping"]
        targets = [int(end > start and any(a <= start < b for a, b in spans)) for start, end in offsets]
        if not chat:
            ids, targets = _ended(tokenizer, ids, targets, max_length)
        out.append(((ids[:max_length], targets[:max_length]), len(ids) > max_length))
    return out


def _ended(tokenizer: Any, ids: list[int], targets: list[int], max_length: int) -> tuple[list[int], list[int]]:
    """`ids` with the end-of-text token appended (and counted), unless the length limit leaves no
    room for it (the text was cut short, so it does not end there). Where they end with it already,
    it is counted: a tokenizer that appends it itself (``add_eos_token``) gives it no characters, so
    its character offsets had left a completion's end untaught."""
    eos = tokenizer.eos_token_id
    if eos is not None and ids and ids[-1] == eos:
        return ids, [*targets[:-1], 1] if targets else targets
    if eos is None or len(ids) >= max_length:
        return ids, targets
    return [*ids, eos], [*targets, 1]


def encode_text(tokenizer: Any, rows: list[dict[str, Any]], max_length: int) -> Encoding:
    """Plain-text rows as token ids, every token counted, each ending with the end-of-text token
    (`_ended`) as TRL's ``SFTTrainer`` appends it: the model learns where a document stops."""
    full = tokenizer([str(row["text"]) for row in rows])["input_ids"]
    ended = [_ended(tokenizer, list(seq), [], max_length)[0] for seq in full]
    return Encoding(Encoded([seq[:max_length] for seq in ended], None), cut=sum(len(seq) > max_length for seq in ended))


def encode_lm(
    tokenizer: Any,
    rows: list[dict[str, Any]],
    form: str,
    *,
    max_length: int,
    path: Path,
    what: str,
    numbers: Sequence[int] | None = None,
) -> Encoding:
    """Prompt/completion or chat rows (`lrpilot.autopilot._data.read_lm`, `form` not ``"text"``) as
    token ids with their targets (`Encoding`; a row is left out when the length limit cut off
    every token its loss counts; a token counts where the model predicts it, so not the first).
    None left is an error naming the limit. `numbers`: each row's number in `path` (from 1), which
    a malformed row's error names; the rows' own order (1, 2, …) by default."""
    if not getattr(tokenizer, "is_fast", False):
        raise ValueError(
            f"--model: {form} data needs a fast tokenizer (a tokenizer.json), whose character offsets tell the "
            "tokens the loss counts; this model's is a slow one"
        )
    ids: list[list[int]] = []
    targets: list[list[int]] = []
    left_out = split = cut = 0
    for number, row in zip(numbers or range(1, len(rows) + 1), rows, strict=True):
        examples = _examples(tokenizer, row, form, f"{what}: {path.name}, row {number}", max_length)
        kept = [(tokens, was_cut) for tokens, was_cut in examples if any(tokens[1][1:])]
        left_out += not kept
        split += len(kept) > 1
        cut += sum(was_cut for _, was_cut in kept)
        ids.extend(seq for (seq, _), _ in kept)
        targets.extend(counted for (_, counted), _ in kept)
    if not ids:
        answers = "assistant turns" if form == "messages" else "completions"
        raise ValueError(
            f"{what}: {path.name}: no row keeps a token of its {answers} within the first {max_length} tokens; "
            "raise --max-length"
        )
    return Encoding(Encoded(ids, None, targets=targets), left_out, split, cut)
