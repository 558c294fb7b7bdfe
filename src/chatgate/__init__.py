"""chatgate: one front door for every chat model.

>>> from chatgate import Gateway
>>> with Gateway() as gw:                                          # doctest: +SKIP
...     print(gw.chat_sync(messages=[{"role": "user", "content": "Hi"}]).text)
"""

from chatgate.config import Connection, Settings, load_settings
from chatgate.errors import (
    AuthenticationError,
    ChatgateError,
    ConfigError,
    ContextLengthError,
    InvalidRequestError,
    ModelNotFoundError,
    UnsupportedParameterError,
    UpstreamError,
)
from chatgate.gateway import Gateway, ModelInfo
from chatgate.types import ChatChunk, ChatRequest, ChatResponse, Message, Usage

__version__ = "0.1.0"

__all__ = [
    "AuthenticationError",
    "ChatChunk",
    "ChatRequest",
    "ChatResponse",
    "ChatgateError",
    "ConfigError",
    "Connection",
    "ContextLengthError",
    "Gateway",
    "InvalidRequestError",
    "Message",
    "ModelInfo",
    "ModelNotFoundError",
    "Settings",
    "UnsupportedParameterError",
    "UpstreamError",
    "Usage",
    "__version__",
    "load_settings",
]
