"""A causal LM's prompt/completion and chat data (`lrpilot.autopilot._chat`, `_data.read_lm`): the
format read from the columns, the tokens the loss counts, the length limit, the checks, and fit on
a chat end to end. The tokenizer is a byte-level BPE with ChatML's special tokens and template
(`tests.autopilot.conftest.chat_tokenizer`), trained here: an LLM's kind of tokenizer, no download."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
import torch

from lrpilot.autopilot import fit
from lrpilot.autopilot._chat import encode_lm, encode_text
from lrpilot.autopilot._data import column_map, read_lm
from lrpilot.autopilot._hf import load_hf_task
from lrpilot.autopilot._target import _format_note
from tests.autopilot.conftest import CHATML, chat_tokenizer, save_chat_lm, write_rows

CHAT = [
    {"role": "system", "content": "Be brief."},
    {"role": "user", "content": "Who art thou?"},
    {"role": "assistant", "content": "A poor player."},
    {"role": "user", "content": "And then?"},
    {"role": "assistant", "content": "Heard no more."},
]
TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "The weather in a city",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
        },
    }
]
CALL = {"type": "function", "function": {"name": "get_weather", "arguments": {"city": "Verona"}}}
AGENT = [
    {"role": "user", "content": "Weather in Verona?"},
    {"role": "assistant", "tool_calls": [CALL]},
    {"role": "tool", "name": "get_weather", "content": "sunny"},
    {"role": "assistant", "content": "Sunny in Verona."},
]
TOOL_CHATML = (
    "{%- if tools %}<|im_start|>system\n# Tools\n<tools>\n{% for tool in tools %}{{ tool | tojson }}\n{% endfor %}"
    "</tools><|im_end|>\n{% endif %}"
    "{% for m in messages %}"
    "{%- if m['role'] == 'tool' %}"
    "{%- if loop.first or messages[loop.index0 - 1]['role'] != 'tool' %}<|im_start|>user{% endif %}"
    "\n<tool_response>\n{{ m['content'] }}\n</tool_response>"
    "{%- if loop.last or messages[loop.index0 + 1]['role'] != 'tool' %}<|im_end|>\n{% endif %}"
    "{% else %}<|im_start|>{{ m['role'] }}\n{{ m['content'] or '' }}"
    "{%- for call in m.get('tool_calls') or [] %}<tool_call>\n{\"name\": \"{{ call['function']['name'] }}\", "
    "\"arguments\": {{ call['function']['arguments'] | tojson }}}\n</tool_call>{% endfor %}<|im_end|>\n"
    "{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
"""ChatML with tools in the manner of Qwen2.5's template: the schemas in a system turn, a call as
JSON in ``<tool_call>`` tags, consecutive tool results in one user turn."""
HERE = Path("chat.jsonl")
WHERE: dict[str, Any] = {"max_length": 128, "path": HERE, "what": "--data"}


@pytest.fixture(scope="module")
def tokenizer() -> Any:
    return chat_tokenizer()


def _jsonl(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return path


def _counted(tokenizer: Any, rows: list[dict[str, Any]], form: str, max_length: int = 128) -> tuple[str, str]:
    """The first row's tokens the loss counts and those it does not, decoded."""
    encoded = encode_lm(tokenizer, rows, form, max_length=max_length, path=HERE, what="--data").data
    assert encoded.targets is not None
    ids, targets = encoded.ids[0], encoded.targets[0]
    counted = tokenizer.decode([i for i, t in zip(ids, targets, strict=True) if t])
    rest = tokenizer.decode([i for i, t in zip(ids, targets, strict=True) if not t])
    return counted, rest


def test_a_completion_counts_its_own_tokens_and_the_end_of_text(tokenizer: Any) -> None:
    rows = [{"prompt": "Q: Who art thou?\nA:", "completion": " A poor player."}]
    counted, rest = _counted(tokenizer, rows, "prompt-completion")
    assert (counted, rest) == (" A poor player.<|endoftext|>", "Q: Who art thou?\nA:")
    encoded = encode_lm(tokenizer, rows, "prompt-completion", max_length=128, path=HERE, what="--data").data
    labels = encoded.batch([0], tokenizer.pad_token_id)["labels"][0]
    prompt_tokens = len(tokenizer("Q: Who art thou?\nA:")["input_ids"])
    assert (labels[:prompt_tokens] == -100).all()  # the model is not taught to write the questions
    assert (labels[prompt_tokens:] != -100).all()


def test_a_completion_counts_the_end_of_text_a_tokenizer_appends_itself(tokenizer: Any) -> None:
    """A tokenizer whose post-processor appends the end-of-text token (``add_eos_token``) gives it no
    characters, so the offsets had left it out of the loss: the model never learned to stop."""
    from tokenizers import processors
    from transformers import PreTrainedTokenizerFast

    backend = copy.deepcopy(tokenizer.backend_tokenizer)
    backend.post_processor = processors.TemplateProcessing(
        single="$A <|endoftext|>", special_tokens=[("<|endoftext|>", tokenizer.eos_token_id)]
    )
    appending = PreTrainedTokenizerFast(tokenizer_object=backend, eos_token="<|endoftext|>")
    rows = [{"prompt": "Q: Who art thou?\nA:", "completion": " A poor player."}]
    counted, rest = _counted(appending, rows, "prompt-completion")
    assert (counted, rest) == (" A poor player.<|endoftext|>", "Q: Who art thou?\nA:")


def test_a_chat_counts_the_assistants_turns_with_their_end_of_turn(tokenizer: Any) -> None:
    counted, rest = _counted(tokenizer, [{"messages": CHAT}], "messages")
    assert counted == "A poor player.<|im_end|>\nHeard no more.<|im_end|>\n"
    assert rest == (
        "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nWho art thou?<|im_end|>\n<|im_start|>assistant\n"
        "<|im_start|>user\nAnd then?<|im_end|>\n<|im_start|>assistant\n"
    )


def test_a_prompt_and_completion_of_messages_count_the_completions_messages(tokenizer: Any) -> None:
    rows = [{"prompt": CHAT[:2], "completion": CHAT[2:3]}]
    counted, rest = _counted(tokenizer, rows, "prompt-completion")
    assert counted == "A poor player.<|im_end|>\n"  # the chat's end token, no end-of-text appended
    assert rest.endswith("<|im_start|>assistant\n")


def test_the_length_limit_cuts_the_end_and_leaves_out_rows_it_emptied(tokenizer: Any) -> None:
    long = {"prompt": "Speak: ", "completion": "to be or not to be, that is the question " * 4}
    counted, _ = _counted(tokenizer, [long], "prompt-completion", max_length=12)
    assert not counted.endswith("<|endoftext|>")  # a completion cut short has not ended
    rows = [{"prompt": "words " * 40, "completion": " yes"}, {"prompt": "Q:", "completion": " no"}]
    encoding = encode_lm(tokenizer, rows, "prompt-completion", max_length=16, path=HERE, what="--data")
    assert (len(encoding.data.ids), encoding.left_out, encoding.cut) == (1, 1, 0)  # the kept row fits
    emptied = r"chat.jsonl: no row keeps a token of its completions within the first 16 tokens; raise --max-length"
    with pytest.raises(ValueError, match=emptied):
        encode_lm(tokenizer, rows[:1], "prompt-completion", max_length=16, path=HERE, what="--data")


def test_the_format_is_read_from_the_columns_and_the_evaluation_data_must_share_it(tmp_path: Path) -> None:
    roles = column_map(None)
    chat = _jsonl(tmp_path / "chat.jsonl", [{"messages": CHAT, "text": "ignored"}])
    assert read_lm(chat, roles, "--data") == ("messages", [{"messages": CHAT}])  # a chat first
    pairs = write_rows(tmp_path / "pairs.csv", [{"instruction": "Q:", "output": " A"}], ("instruction", "output"))
    mapped = column_map({"prompt": "instruction", "completion": "output"})
    assert read_lm(pairs, mapped, "--data") == ("prompt-completion", [{"prompt": "Q:", "completion": " A"}])
    text = _jsonl(tmp_path / "text.jsonl", [{"text": "plain words"}])
    assert read_lm(text, roles, "--data")[0] == "text"
    with pytest.raises(ValueError, match=r"--eval: text.jsonl has no column 'messages'; the training data is messages"):
        read_lm(text, roles, "--eval", "messages")
    nothing = _jsonl(tmp_path / "other.jsonl", [{"body": "words"}])
    none = r"has none of a causal LM's columns: messages or prompt \+ completion or text"
    with pytest.raises(ValueError, match=none):
        read_lm(nothing, roles, "--data")


def test_plain_text_ends_with_the_end_of_text_unless_cut_short_or_ended_already(tokenizer: Any) -> None:
    rows = [{"text": "A poor player."}, {"text": "word " * 40}, {"text": "The rest is silence.<|endoftext|>"}]
    encoding = encode_text(tokenizer, rows, max_length=16)
    ids = encoding.data.ids
    assert encoding.cut == 1
    eos = tokenizer.eos_token_id
    assert tokenizer.decode(ids[0]) == "A poor player.<|endoftext|>"  # as TRL's SFTTrainer appends it
    assert len(ids[1]) == 16
    assert eos not in ids[1]
    assert tokenizer.decode(ids[2]) == "The rest is silence.<|endoftext|>"
    assert ids[2].count(eos) == 1


def test_sharegpt_conversations_are_read_as_chats_with_their_speakers_as_roles(tokenizer: Any, tmp_path: Path) -> None:
    speakers = {"system": "system", "user": "human", "assistant": "gpt"}
    shared = [{"from": speakers[m["role"]], "value": m["content"]} for m in CHAT]
    data = _jsonl(tmp_path / "sharegpt.jsonl", [{"conversations": shared, "id": "a1"}])
    form, rows = read_lm(data, column_map(None), "--data")
    assert (form, rows) == ("messages", [{"messages": shared}])
    assert _counted(tokenizer, rows, form) == _counted(tokenizer, [{"messages": CHAT}], "messages")
    robot = [{"from": "robot", "value": "beep"}]
    with pytest.raises(ValueError, match=r"row 1: 'messages', message 1: \"from\" must be one of .*got 'robot'"):
        encode_lm(tokenizer, [{"messages": robot}], "messages", **WHERE)


@pytest.mark.parametrize("as_json", [False, True])
def test_a_tool_calling_chat_counts_the_calls_and_answers_not_the_results(as_json: bool) -> None:
    tokenizer = chat_tokenizer(TOOL_CHATML)
    tools = json.dumps(TOOLS) if as_json else TOOLS  # TRL takes both
    counted, rest = _counted(tokenizer, [{"messages": AGENT, "tools": tools}], "messages", max_length=512)
    call = '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Verona"}}\n</tool_call>'
    assert counted == f"{call}<|im_end|>\nSunny in Verona.<|im_end|>\n"
    assert rest.startswith('<|im_start|>system\n# Tools\n<tools>\n{"type": "function"')  # the schemas reached it
    assert "<tool_response>\nsunny\n</tool_response>" in rest


def test_a_users_agent_data_in_sharegpt_form_with_tools_loads_as_a_task(tmp_path: Path) -> None:
    chat_lm = save_chat_lm(tmp_path / "agent-gpt2", TOOL_CHATML, positions=512)  # the schemas take room
    agent = [{"from": "human", "value": AGENT[0]["content"]}, *AGENT[1:]]
    rows = [{"conversations": agent, "tools": json.dumps(TOOLS)}] * 10
    task = load_hf_task(chat_lm, _jsonl(tmp_path / "agent.jsonl", rows), kind="causal-lm", max_length=512)
    assert task.lm_format == "messages"
    assert task.train_data.targets is not None
    ids, targets = task.train_data.ids[0], task.train_data.targets[0]
    counted = task.tokenizer.decode([i for i, t in zip(ids, targets, strict=True) if t])
    assert counted.startswith("<tool_call>\n")
    assert counted.endswith("Sunny in Verona.<|im_end|>\n")


def test_tools_are_read_where_the_file_has_them(tmp_path: Path) -> None:
    rows = [{"messages": AGENT, "functions": TOOLS}, {"messages": CHAT}]
    data = _jsonl(tmp_path / "agent.jsonl", rows)
    form, read = read_lm(data, column_map({"tools": "functions"}), "--data")
    assert form == "messages"
    assert [row["tools"] for row in read] == [TOOLS, None]
    assert "tools" not in read_lm(data, column_map(None), "--data")[1][0]  # no column of that name


@pytest.mark.parametrize(
    ("row", "message"),
    [
        ({"messages": AGENT, "tools": "get_weather"}, r"row 1: 'tools' is text but not JSON"),
        ({"messages": AGENT, "tools": {"name": "get_weather"}}, r"row 1: 'tools' must be a list of function schemas"),
        ({"prompt": "Q:", "completion": " A", "tools": TOOLS}, r"row 1: 'tools' go to a chat template, and this"),
        (
            {"prompt": "Q:", "completion": " A", "chat_template_kwargs": {"enable_thinking": False}},
            r"row 1: 'chat_template_kwargs' go to a chat template, and this prompt and completion are text",
        ),
        ({"messages": CHAT, "chat_template_kwargs": "thinking"}, r"row 1: 'chat_template_kwargs' is text but not JSON"),
        ({"messages": CHAT, "chat_template_kwargs": [1]}, r"'chat_template_kwargs' must be an object of template"),
        (
            {"messages": CHAT, "chat_template_kwargs": {"add_generation_prompt": True}},
            r"'chat_template_kwargs' may not set 'add_generation_prompt': fit sets conversation, messages, tools",
        ),
        ({"messages": [{"role": "assistant", "tool_calls": []}]}, r"message 1: \"tool_calls\" must be a non-empty"),
        ({"messages": CHAT[:2]}, r"row 1: no message has the role \"assistant\""),
        ({"messages": [{"role": "user"}]}, r"row 1: 'messages', message 1: expected a \"content\" that is text"),
        (
            {"messages": [{"role": "user", "content": [{"type": "image"}]}]},
            r"content given as a list of parts \(images, audio\) needs a multimodal model",
        ),
        ({"messages": []}, r"row 1: 'messages' must be a non-empty list"),
        ({"messages": "user: hi"}, r"got text \(a CSV cell cannot hold a list: give chats as .jsonl\)"),
        ({"messages": json.dumps(CHAT)}, r"got the JSON text of a list, not the list: give each row's messages"),
        ({"prompt": CHAT[:2], "completion": "A poor player."}, r"must both be text or both be lists of messages"),
    ],
)
def test_a_malformed_chat_is_named_by_its_row(row: dict[str, Any], message: str) -> None:
    form = "messages" if "messages" in row else "prompt-completion"
    with pytest.raises(ValueError, match=message):
        encode_lm(chat_tokenizer(TOOL_CHATML), [row], form, max_length=128, path=HERE, what="--data")


def test_a_template_that_renders_the_context_differently_once_the_turn_follows_is_refused(tokenizer: Any) -> None:
    counting = "{{ messages | length }} turns\n" + CHATML  # what comes before a turn changes once it is there
    refused = r"row 1: the tokenizer's chat template renders the conversation before message 3 differently once"
    with pytest.raises(ValueError, match=refused):
        encode_lm(chat_tokenizer(counting), [{"messages": CHAT}], "messages", max_length=128, path=HERE, what="--data")


def test_a_conversation_the_template_refuses_is_named_by_its_row(tokenizer: Any) -> None:
    no_system = "{% if messages[0]['role'] == 'system' %}{{ raise_exception('System role not supported') }}{% endif %}"
    with pytest.raises(ValueError, match=r"row 1: the tokenizer's chat template refused .*System role not supported"):
        encode_lm(chat_tokenizer(no_system + CHATML), [{"messages": CHAT}], "messages", **WHERE)


@pytest.mark.parametrize("bad", [24, 11])  # a training row, a held-out one
def test_a_malformed_chat_is_named_by_its_row_in_the_file_after_rows_are_held_out(
    bad: int, chat_lm: Path, tmp_path: Path
) -> None:
    """Without --eval, a tenth of the rows is held out before the chats are encoded; an error in one
    had named its place among the training rows (the file's row 25 as "row 23"), or among the
    held-out ones."""
    rows: list[dict[str, Any]] = [{"messages": CHAT}] * 30
    rows[bad] = {"messages": []}
    data = _jsonl(tmp_path / "chat.jsonl", rows)
    with pytest.raises(ValueError, match=rf"--data: chat.jsonl, row {bad + 1}: 'messages' must be a non-empty list"):
        load_hf_task(chat_lm, data, kind="causal-lm")


def test_a_slow_tokenizer_is_refused_for_completions() -> None:
    transformers = pytest.importorskip("transformers")
    slow = transformers.ByT5Tokenizer()  # a Python tokenizer (no character offsets); needs no files
    with pytest.raises(ValueError, match=r"prompt-completion data needs a fast tokenizer"):
        encode_lm(slow, [{"prompt": "a", "completion": "b"}], "prompt-completion", max_length=32, path=HERE, what="x")


def test_a_chat_for_a_tokenizer_without_a_template_is_refused(chat_lm: Path, tmp_path: Path) -> None:
    bare = tmp_path / "bare"
    bare.mkdir()
    for item in chat_lm.iterdir():  # the same model, its tokenizer without the template
        (bare / item.name).write_bytes(item.read_bytes())
    chat_tokenizer(None).save_pretrained(bare)
    (bare / "chat_template.jinja").unlink(missing_ok=True)
    data = _jsonl(tmp_path / "chat.jsonl", [{"messages": CHAT}] * 12)
    no_template = r"the data is a chat, and the tokenizer in .* has no chat template"
    with pytest.raises(ValueError, match=no_template):
        load_hf_task(bare, data, kind="causal-lm")
    texts = _jsonl(tmp_path / "texts.jsonl", [{"prompt": "Who art thou?", "completion": " A poor player."}] * 12)
    chats = _jsonl(tmp_path / "chats.jsonl", [{"prompt": CHAT[1:2], "completion": CHAT[2:3]}] * 4)
    assert load_hf_task(bare, texts, kind="causal-lm").lm_format == "prompt-completion"  # text needs no template
    with pytest.raises(ValueError, match=no_template):  # the evaluation's chats do
        load_hf_task(bare, texts, chats, kind="causal-lm")


def test_the_evaluation_loss_is_the_mean_over_the_counted_tokens(chat_lm: Path, tmp_path: Path) -> None:
    rows = [{"prompt": f"Line {i}: speak,", "completion": " " + "and more " * (1 + i % 3)} for i in range(20)]
    task = load_hf_task(chat_lm, _jsonl(tmp_path / "train.jsonl", rows), kind="causal-lm")
    model = task.build_model(0).eval()
    total, count = 0.0, 0
    with torch.no_grad():
        for i in range(len(task.val_data.ids)):
            ids = torch.tensor([task.val_data.ids[i]])
            targets = torch.tensor(task.val_data.targets[i]) if task.val_data.targets else None
            assert targets is not None
            logp = model(input_ids=ids).logits[0, :-1].log_softmax(-1)
            nll = -logp.gather(1, ids[0, 1:, None])[:, 0]
            total, count = total + float(nll[targets[1:] == 1].sum()), count + int(targets[1:].sum())
    assert task.metrics(model).loss == pytest.approx(total / count, rel=1e-4)


@pytest.mark.filterwarnings("ignore:`is_gradient_checkpointing` is deprecated:FutureWarning")
@pytest.mark.parametrize("method", ["full", "lora"])
def test_fit_trains_a_chat_on_the_assistants_turns_and_says_so(method: str, chat_lm: Path, tmp_path: Path) -> None:
    rows = [{"conversation": [*CHAT[:2], {"role": "assistant", "content": f"Player number {i}."}]} for i in range(40)]
    rows.append({"conversation": [{"role": "user", "content": "words " * 80}, CHAT[2]]})  # its answer past the limit
    result = fit(
        model=chat_lm,
        data=_jsonl(tmp_path / "train.jsonl", rows),
        task_type="causal-lm",
        method=method,
        columns={"messages": "conversation"},
        max_length=64,
        budget=6,
        finder_steps=12,
        out=tmp_path / "run",
        report=False,
    )
    assert result.status == "finished"
    assert "(messages)" in result.record.task
    note = next(n for n in result.record.notes if n.startswith("messages data"))
    assert "the loss counts the assistant turns' tokens only" in note
    assert "1 training and 0 evaluation rows had none left within the first 64 tokens" in note
    transformers = pytest.importorskip("transformers")
    saved = transformers.AutoTokenizer.from_pretrained(result.model_path)
    assert saved.chat_template == CHATML  # the saved folder renders chats as it was trained on them


def _trl_template(name: str) -> str:
    """A model's chat template as TRL stores it (``trl/chat_templates``: the Hub's, byte for byte)."""
    trl_templates = pytest.importorskip("trl.chat_template_utils")
    return (Path(trl_templates.__file__).parent / "chat_templates" / f"{name}.jinja").read_text(encoding="utf-8")


def _trl_counted(tokenizer: Any, messages: list[dict[str, Any]], tools: Any, **kwargs: Any) -> str:
    """The tokens TRL's SFTTrainer counts with ``assistant_only_loss`` (its training template's
    ``{% generation %}`` marks: `get_training_chat_template`), decoded."""
    from trl.chat_template_utils import get_training_chat_template

    template = get_training_chat_template(tokenizer) or tokenizer.chat_template
    out = tokenizer.apply_chat_template(
        messages,
        tools=tools,
        chat_template=template,
        tokenize=True,
        return_dict=True,
        return_assistant_tokens_mask=True,
        **kwargs,
    )
    return str(tokenizer.decode([i for i, m in zip(out["input_ids"], out["assistant_masks"], strict=True) if m]))


TWO_TURNS = [message for message in CHAT if message["role"] != "system"]


@pytest.mark.parametrize(
    "template",
    ["cohere2", "gemma3", "idefics3", "lfm2_2_5", "qwen2_5_vl", "qwen3", "qwen3_instruct_2507", "qwen3_vl", "smolvlm"],
)
@pytest.mark.parametrize("chat", ["two turns", "system", "agent"])
def test_the_counted_tokens_are_trls_on_real_models_templates(template: str, chat: str) -> None:
    tokenizer = chat_tokenizer(_trl_template(template))
    messages, tools = {"two turns": (TWO_TURNS, None), "system": (CHAT, None), "agent": (AGENT, TOOLS)}[chat]
    row = {"messages": messages, "tools": tools}
    try:
        theirs = _trl_counted(tokenizer, messages, tools)
    except Exception:  # the template takes no such conversation (no tools, strict alternation)
        with pytest.raises(ValueError, match=r"the tokenizer's chat template refused this conversation"):
            encode_lm(tokenizer, [row], "messages", max_length=4096, path=HERE, what="--data")
        return
    encoded = encode_lm(tokenizer, [row], "messages", max_length=4096, path=HERE, what="--data").data
    assert encoded.targets is not None
    ours = "".join(
        tokenizer.decode([i for i, t in zip(ids, targets, strict=True) if t])
        for ids, targets in zip(encoded.ids, encoded.targets, strict=True)
    )
    assert ours == theirs


@pytest.mark.parametrize("as_json", [False, True])
def test_a_rows_chat_template_kwargs_reach_the_template_as_trl_passes_them(as_json: bool) -> None:
    tokenizer = chat_tokenizer(_trl_template("qwen3"))
    switches = {"enable_thinking": False}  # Qwen3's generation prompt then closes an empty <think> itself
    row = {"messages": CHAT[1:3], "chat_template_kwargs": json.dumps(switches) if as_json else switches}
    encoded = encode_lm(tokenizer, [row], "messages", max_length=4096, path=HERE, what="--data").data
    assert encoded.targets is not None
    ours = tokenizer.decode([i for i, t in zip(encoded.ids[0], encoded.targets[0], strict=True) if t])
    assert ours == "A poor player.<|im_end|>\n"
    prefilled = (
        "<think>\n\n</think>\n\n"  # TRL's marks take what the generation prompt prefills; fit leaves it to the prompt
    )
    assert _trl_counted(tokenizer, CHAT[1:3], None, **switches) == prefilled + ours
    thinking = encode_lm(tokenizer, [{"messages": CHAT[1:3]}], "messages", max_length=4096, path=HERE, what="--data")
    assert thinking.data.targets is not None
    counted = tokenizer.decode([i for i, t in zip(thinking.data.ids[0], thinking.data.targets[0], strict=True) if t])
    assert (
        counted == "<think>\n\n</think>\n\nA poor player.<|im_end|>\n"
    )  # without it the model learns to skip thinking


def test_chat_template_kwargs_are_read_where_the_file_has_them(tmp_path: Path) -> None:
    rows = [{"messages": CHAT, "switches": {"enable_thinking": False}}, {"messages": CHAT}]
    data = _jsonl(tmp_path / "chats.jsonl", rows)
    form, read = read_lm(data, column_map({"chat_template_kwargs": "switches"}), "--data")
    assert form == "messages"
    assert [row["chat_template_kwargs"] for row in read] == [{"enable_thinking": False}, None]


def test_a_reasoning_models_chat_trains_each_turn_as_the_model_writes_it(chat_lm: Path, tmp_path: Path) -> None:
    tokenizer = chat_tokenizer(_trl_template("qwen3"))  # drops earlier turns' reasoning once a later question comes
    encoding = encode_lm(tokenizer, [{"messages": TWO_TURNS}], "messages", **WHERE)
    encoded, split = encoding.data, encoding.split
    assert encoded.targets is not None
    assert split == 1
    first, second = (tokenizer.decode(ids) for ids in encoded.ids)
    assert first.endswith("<|im_start|>assistant\n<think>\n\n</think>\n\nA poor player.<|im_end|>\n")
    assert second.endswith(
        "A poor player.<|im_end|>\n<|im_start|>user\nAnd then?<|im_end|>\n"
        "<|im_start|>assistant\n<think>\n\n</think>\n\nHeard no more.<|im_end|>\n"
    )
    tokenizer.save_pretrained(chat_lm)
    rows = [{"messages": TWO_TURNS}] * 10 + [{"messages": CHAT[1:3]}] * 10
    task = load_hf_task(chat_lm, _jsonl(tmp_path / "chats.jsonl", rows), kind="causal-lm")
    assert task.split == (9, 18)  # of the 18 chats kept for training (2 held out), the two-turn ones split
    assert len(task.train_data.ids) == 27
    assert "so 9 of 18 training chats train each such turn in the context the model writes it in, as 27 sequences" in (
        _format_note(task) or ""
    )


def test_a_turn_a_generation_prompt_prefills_counts_from_where_the_rendering_departs() -> None:
    tokenizer = chat_tokenizer(_trl_template("deepseek_r1_distill"))  # its generation prompt opens <think>
    counted, rest = _counted(tokenizer, [{"messages": CHAT[1:3]}], "messages")
    assert (counted, rest) == ("A poor player.<｜end▁of▁sentence｜>", "<｜User｜>Who art thou?<｜Assistant｜>")


def test_a_causal_lms_default_length_is_trls_or_its_context_and_cut_rows_are_named(
    chat_lm: Path, tmp_path: Path
) -> None:
    rows = [{"text": "to be or not to be " * (1 + 40 * (i % 2))} for i in range(20)]  # every other one long
    task = load_hf_task(chat_lm, _jsonl(tmp_path / "verse.jsonl", rows), kind="causal-lm")
    assert task.max_length == 128  # the model's context (n_positions), under TRL's 1024
    assert task.cut == sum(len(ids) == 128 for ids in task.train_data.ids) > 0
    note = _format_note(task) or ""
    assert note.startswith("text data: the loss counts every token, and each text ends with the end-of-text token")
    assert f"; {task.cut} of 18 training sequences were longer than 128 tokens and were cut there" in note
    transformers = pytest.importorskip("transformers")
    config = transformers.AutoConfig.from_pretrained(chat_lm)
    config.n_positions = 4096
    config.save_pretrained(chat_lm)
    assert load_hf_task(chat_lm, _jsonl(tmp_path / "verse.jsonl", rows), kind="causal-lm").max_length == 1024
