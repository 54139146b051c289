"""The LLM client: one protocol, several backends (HTTP, local jaxlab model, scripted)."""

from jaxlab.llm.base import BaseClient
from jaxlab.llm.cache import CachedClient
from jaxlab.llm.factory import ClientConfig, make_client
from jaxlab.llm.scripted import ScriptedClient, tool_reply
from jaxlab.llm.types import (
    ChatClient,
    ChatRequest,
    ChatResponse,
    Choice,
    LLMError,
    LLMRequestError,
    ToolCall,
    Usage,
    user,
)

__all__ = [
    "BaseClient",
    "CachedClient",
    "ChatClient",
    "ChatRequest",
    "ChatResponse",
    "Choice",
    "ClientConfig",
    "LLMError",
    "LLMRequestError",
    "ScriptedClient",
    "ToolCall",
    "Usage",
    "make_client",
    "tool_reply",
    "user",
]
