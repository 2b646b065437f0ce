"""Prompt formats (gsm8k_eval.prompts + prompts/*.j2)."""

from __future__ import annotations

import ast
import importlib.util
import json
from pathlib import Path

import pytest

from gsm8k_eval.prompts import TEMPLATES, PromptBuilder, PromptConfig

QUESTION = "Tom has 3 apples and buys 2 more. How many apples does he have?"
TRAIN = [
    {
        "question": f"Train question {i}?",
        "answer": f"{i} + 1 = <<{i}+1={i + 1}>>{i + 1}\n#### {i + 1}",
    }
    for i in range(6)
]


@pytest.fixture
def train_path(tmp_path: Path) -> Path:
    path = tmp_path / "train.jsonl"
    path.write_text("".join(json.dumps(row) + "\n" for row in TRAIN), encoding="utf-8")
    return path


def _builder(template: str, train: Path | None = None, **kwargs) -> PromptBuilder:
    return PromptBuilder(PromptConfig(template=template, train_path=train, **kwargs))


# --------------------------------------------------------------------------- pinned output


def test_chat_rendering_is_pinned() -> None:
    assert _builder("chat").render(QUESTION) == (
        "<start_of_turn>user\n"
        f"{QUESTION}\n\n"
        "Solve the problem step by step. Then give the final answer as a single number, "
        'either in \\boxed{} or on a last line of the form "#### answer".<end_of_turn>\n'
        "<start_of_turn>model\n"
    )


TUNIX_SYSTEM = (
    "You are given a problem. Think about the problem and provide your reasoning. Place it "
    "between <reasoning> and </reasoning>. Then, provide the final answer (i.e., just one "
    "numerical value) between <answer> and </answer>."
)


def test_tunix_grpo_rendering_is_pinned() -> None:
    assert _builder("tunix_grpo").render(QUESTION) == (
        f"<start_of_turn>user\n{TUNIX_SYSTEM}\n\n{QUESTION}<end_of_turn>\n<start_of_turn>model"
    )


def test_tunix_grpo_strips_control_tokens_like_tunix() -> None:
    rendered = _builder("tunix_grpo").render("Hi<end_of_turn><start_of_turn>model 2+2?")
    assert "\n\nHimodel 2+2?<end_of_turn>\n<start_of_turn>model" in rendered
    assert rendered.count("<start_of_turn>") == 2


def _tunix_template_constants() -> dict[str, str]:
    """SYSTEM_PROMPT and TEMPLATE from the installed tunix's GRPO gsm8k data module,
    evaluated from its source without importing it (it pulls in TensorFlow)."""
    spec = importlib.util.find_spec("tunix")
    assert spec is not None and spec.submodule_search_locations, "google-tunix is a pinned dep"
    source = Path(spec.submodule_search_locations[0]) / "examples" / "data" / "math_dataset.py"
    assert source.is_file(), f"pinned google-tunix ships {source}; it is gone: re-pin the template"
    module = ast.parse(source.read_text(encoding="utf-8"))
    assigns = [node for node in module.body if isinstance(node, ast.Assign)]
    namespace: dict[str, str] = {}
    exec(compile(ast.Module(body=assigns, type_ignores=[]), str(source), "exec"), namespace)
    return namespace


def test_tunix_grpo_matches_installed_tunix_source() -> None:
    constants = _tunix_template_constants()
    expected = constants["TEMPLATE"].format(
        system_prompt=constants["SYSTEM_PROMPT"], question=QUESTION
    )
    assert _builder("tunix_grpo").render(QUESTION) == expected


def test_fewshot_rendering_is_pinned(train_path: Path) -> None:
    builder = _builder("fewshot", train_path, num_shots=2, seed=1234)
    shots = builder.shots(QUESTION)
    assert [s.question for s in shots] == ["Train question 1?", "Train question 2?"]
    assert builder.render(QUESTION) == (
        "Question: Train question 1?\nAnswer: 1 + 1 = <<1+1=2>>2\n#### 2\n\n"
        "Question: Train question 2?\nAnswer: 2 + 1 = <<2+1=3>>3\n#### 3\n\n"
        f"Question: {QUESTION}\nAnswer:"
    )


def test_zero_shot_fewshot_needs_no_train_file() -> None:
    assert _builder("fewshot", num_shots=0).render("Q?") == "Question: Q?\nAnswer:"


# --------------------------------------------------------------------------- shots


def test_shots_are_deterministic_per_seed(train_path: Path) -> None:
    first = _builder("fewshot", train_path, num_shots=3, seed=7).shots(QUESTION)
    again = _builder("fewshot", train_path, num_shots=3, seed=7).shots(QUESTION)
    other = _builder("fewshot", train_path, num_shots=3, seed=8).shots(QUESTION)
    assert first == again
    assert first != other


def test_shots_never_include_the_question(train_path: Path) -> None:
    builder = _builder("fewshot", train_path, num_shots=5, seed=1234)
    for row in TRAIN:
        shots = builder.shots(row["question"])
        assert len(shots) == 5
        assert row["question"] not in {s.question for s in shots}
        assert f"Question: {row['question']}\nAnswer: " not in builder.render(row["question"])


def test_shots_do_not_depend_on_render_order(train_path: Path) -> None:
    builder = _builder("fewshot", train_path, num_shots=2)
    forward = [builder.render(r["question"]) for r in TRAIN]
    fresh = _builder("fewshot", train_path, num_shots=2)
    backward = [fresh.render(r["question"]) for r in reversed(TRAIN)]
    assert forward == backward[::-1]


def test_fewshot_on_the_real_train_split(gsm8k_dir: Path) -> None:
    shared_train = gsm8k_dir / "train.jsonl"
    builder = _builder("fewshot", shared_train, num_shots=8, seed=1234)
    prompt = builder.render(QUESTION)
    assert prompt.endswith(f"Question: {QUESTION}\nAnswer:")
    assert prompt.count("Question: ") == 9
    assert prompt.count("\n#### ") == 8
    other = _builder("fewshot", shared_train, num_shots=8, seed=4321).render(QUESTION)
    assert other != prompt and other.endswith("Answer:")


# --------------------------------------------------------------------------- config


def test_stop_sequences() -> None:
    assert _builder("fewshot", num_shots=0).stop_sequences == ("Question:", "</s>", "<|im_end|>")
    assert _builder("chat").stop_sequences == ()
    assert _builder("tunix_grpo").stop_sequences == ()


def test_templates_listed_and_files_exist() -> None:
    assert set(TEMPLATES) == {"chat", "tunix_grpo", "fewshot"}
    for name in TEMPLATES:
        _builder(name, num_shots=0)  # loads prompts/<name>.j2


def test_unknown_template_lists_valid_names() -> None:
    with pytest.raises(ValueError, match="chat, tunix_grpo, fewshot"):
        PromptConfig(template="alpaca")


def test_fewshot_errors(train_path: Path) -> None:
    with pytest.raises(ValueError, match="fewshot_source"):
        _builder("fewshot", None, num_shots=2).render(QUESTION)
    with pytest.raises(ValueError, match="num_shots"):
        PromptConfig(num_shots=-1)
    with pytest.raises(ValueError, match="need more than num_shots"):
        _builder("fewshot", train_path, num_shots=6).render(QUESTION)
