"""Image parts as the native providers want them: inline base64 with a media type, or
a URL."""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass

from chatgate.errors import InvalidRequestError


@dataclass(frozen=True, slots=True)
class Image:
    """An image part, as the providers want it: inline bytes or a URL."""

    url: str | None = None
    media_type: str | None = None
    data: str | None = None  # base64


def image(url: str, param: str) -> Image:
    """A ``data:`` URL split into media type and base64 data; anything else stays a URL."""
    if not url.startswith("data:"):
        return Image(url=url, media_type=_guess_type(url))
    head, _, data = url[5:].partition(",")
    media_type, _, encoding = head.partition(";")
    if encoding != "base64" or not data:
        raise InvalidRequestError(
            "an image data URL must be base64: data:<type>;base64,<data>", param=param
        )
    try:
        base64.b64decode(data[:64] + "=" * (-len(data[:64]) % 4), validate=True)
    except binascii.Error:
        raise InvalidRequestError("the image data is not base64", param=param) from None
    return Image(media_type=media_type or "image/png", data=data)


def _guess_type(url: str) -> str:
    path = url.split("?", 1)[0].lower()
    for ext, media_type in (
        (".png", "image/png"),
        (".gif", "image/gif"),
        (".webp", "image/webp"),
        (".heic", "image/heic"),
    ):
        if path.endswith(ext):
            return media_type
    return "image/jpeg"
