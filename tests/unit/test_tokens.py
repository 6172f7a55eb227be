"""Token estimates (services/aggregator/tokens.py) against known tiktoken counts."""

from __future__ import annotations

import pytest

from services.aggregator import tokens

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("model", "encoding"),
    [
        ("gpt-4o", "o200k_base"),
        ("gpt-4o-mini", "o200k_base"),
        ("openai/gpt-4o", "o200k_base"),
        ("o1", "o200k_base"),
        ("o3-mini", "o200k_base"),
        ("o4-mini", "o200k_base"),
        ("gpt-4.1", "o200k_base"),
        ("gpt-5", "o200k_base"),
        ("GPT-5-mini", "o200k_base"),
        ("gpt-4", "cl100k_base"),
        ("gpt-3.5-turbo", "cl100k_base"),
        ("gpt-35-turbo", "cl100k_base"),
        ("claude-3-5-sonnet", "cl100k_base"),
        ("qwen2.5-coder:latest", "cl100k_base"),
        (None, "cl100k_base"),
        ("omni-model", "cl100k_base"),
    ],
)
def test_encoding_by_model(model: str | None, encoding: str) -> None:
    assert tokens.encoding_name(model) == encoding


@pytest.mark.parametrize(
    ("text", "encoding", "count"),
    [
        # tiktoken's own examples: cl100k "hello world" = [15339, 1917], o200k = [24912, 2375];
        # "tiktoken is great!" = [83, 1609, 5963, 374, 2294, 0] in cl100k.
        ("hello world", "cl100k_base", 2),
        ("hello world", "o200k_base", 2),
        ("tiktoken is great!", "cl100k_base", 6),
        ("", "cl100k_base", 0),
    ],
)
def test_known_counts(text: str, encoding: str, count: int) -> None:
    assert tokens.count_text(text, encoding) == count


def test_special_token_text_counts_as_ordinary_text() -> None:
    assert tokens.count_text("<|endoftext|>", "cl100k_base") > 1


def test_messages_add_per_message_overhead_role_and_reply_priming() -> None:
    messages = [{"role": "user", "content": "hello world"}]
    # 3 (reply priming) + 3 (message) + "user" (1) + 1 (role) + "hello world" (2)
    assert tokens.prompt_tokens("gpt-4", messages) == 10
    two = [{"role": "system", "content": "hello world"}, {"role": "user", "content": "hello world"}]
    assert tokens.prompt_tokens("gpt-4", two) == 3 + 2 * (3 + 1 + 1 + 2)


def test_tools_and_non_string_values_count_as_compact_json() -> None:
    messages = [{"role": "user", "content": [{"type": "text", "text": "hi"}]}]
    content = '[{"type":"text","text":"hi"}]'
    assert tokens.prompt_tokens("gpt-4", messages) == 3 + 3 + 1 + 1 + tokens.count_text(content)
    tools = [{"name": "get_weather"}]
    with_tools = tokens.prompt_tokens("gpt-4", messages, {"tools": tools})
    assert with_tools == tokens.prompt_tokens("gpt-4", messages) + tokens.count_text(
        '[{"name":"get_weather"}]'
    )


def test_plain_prompt_and_completion() -> None:
    assert tokens.prompt_tokens("gpt-4o", "hello world") == 2
    assert tokens.completion_tokens("gpt-4o", "hello world") == 2
    assert tokens.completion_tokens("gpt-4o", {"text": "hello world", "other": 1}) == 2
    assert tokens.completion_tokens(
        "gpt-4", {"role": "assistant", "content": "hi"}
    ) == tokens.count_text('{"role":"assistant","content":"hi"}')
    assert tokens.prompt_tokens("gpt-4o", None) is None
    assert tokens.completion_tokens("gpt-4o", "") is None
