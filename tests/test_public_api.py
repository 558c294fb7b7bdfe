"""The curated public namespace stays complete and sorted."""

from __future__ import annotations

import chatgate


def test_all_is_sorted_and_importable() -> None:
    assert chatgate.__all__ == sorted(chatgate.__all__)
    for name in chatgate.__all__:
        assert hasattr(chatgate, name), name


def test_gateway_is_public() -> None:
    assert "Gateway" in chatgate.__all__
