"""Token estimates for LLMonitor runs that did not report `tokensUsage`, counted the way Lunary
counts them (packages/backend/src/utils/countToken.ts), with bpe-openai's tiktoken-compatible BPE:

- encoding: o200k_base for gpt-4o, the o-series (o1, o3, o4-mini…), gpt-4.1 and gpt-5;
  cl100k_base for everything else (including unknown and non-OpenAI models);
- prompt, when the input is a list of chat messages: 3 tokens per message, the tokens of every
  value (objects as compact JSON), 1 more for the `role`, plus 3 for the primed reply; tool/function
  specs (`extra.tools` / `extra.functions`) add the tokens of their compact JSON;
- prompt from any other input, and the completion: the tokens of the text (`output.text` when
  the output has one, a string as is, anything else as compact JSON).

Encodings load lazily on first use (about 50 ms each), never at import.
"""

from __future__ import annotations

import functools
import re
import warnings
from typing import Any

import orjson

TOKENS_PER_MESSAGE = 3
TOKENS_PER_ROLE = 1
REPLY_PRIMING = 3

_O200K = re.compile(r"^(gpt-4o|chatgpt-4o|gpt-4\.1|gpt-4\.5|gpt-5|o\d)")


def encoding_name(model: str | None) -> str:
    """The BPE a model's tokens are counted with."""
    name = (model or "").strip().lower().rsplit("/", 1)[-1].replace("gpt-35", "gpt-3.5")
    return "o200k_base" if _O200K.match(name) else "cl100k_base"


@functools.lru_cache(maxsize=4)
def _encoding(name: str) -> Any:
    with warnings.catch_warnings():
        # bpe-openai 0.1.4 reads its rank files (at import and per encoding) with the
        # deprecated importlib.resources API.
        warnings.simplefilter("ignore", DeprecationWarning)
        import bpe_openai  # deferred: loading the rank tables is not free

        return bpe_openai.get_encoding(name)


@functools.lru_cache(maxsize=8192)
def count_text(text: str, encoding: str = "cl100k_base") -> int:
    """Tokens of a plain string (special-token text counts as ordinary text, as in a prompt)."""
    if not text:
        return 0
    return len(_encoding(encoding).encode_ordinary(text))


def _as_text(value: Any) -> str:
    if isinstance(value, str):
        return value
    return orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS).decode()


def count_messages(messages: list[Any], encoding: str, tools: Any = None) -> int:
    total = REPLY_PRIMING
    for message in messages:
        total += TOKENS_PER_MESSAGE
        if not isinstance(message, dict):
            total += count_text(_as_text(message), encoding)
            continue
        for key, value in message.items():
            total += count_text(_as_text(value), encoding)
            if key == "role":
                total += TOKENS_PER_ROLE
    if tools:
        total += count_text(_as_text(tools), encoding)
    return total


def prompt_tokens(model: str | None, prompt: Any, extra: Any = None) -> int | None:
    """Estimated prompt tokens of an llm run's input, or None when there is no input."""
    if prompt is None or prompt == "" or prompt == []:
        return None
    encoding = encoding_name(model)
    if isinstance(prompt, list):
        tools = None
        if isinstance(extra, dict):
            tools = extra.get("tools") or extra.get("functions")
        return count_messages(prompt, encoding, tools)
    return count_text(_as_text(prompt), encoding)


def completion_tokens(model: str | None, output: Any) -> int | None:
    """Estimated completion tokens of an llm run's output, or None when there is no output."""
    if output is None or output == "":
        return None
    if isinstance(output, dict) and isinstance(output.get("text"), str):
        output = output["text"]
    return count_text(_as_text(output), encoding_name(model))
