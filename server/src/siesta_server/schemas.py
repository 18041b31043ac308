"""Request bodies of the OpenAI-compatible API (plus llama-server's sampling extensions).

Unknown fields are ignored, as llama-server does, so clients written for either server work.
Fields of the wrong type or out of range are rejected with a 400 naming the field.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, StrictStr

MAX_N = 16
MAX_STOP_STRINGS = 16
# Each generated token is matched against the end of every stop string (on the decode
# thread), so their length is bounded too.
MAX_STOP_LENGTH = 256
INT32_MAX = 2**31 - 1

Probability = Annotated[float, Field(ge=0.0, le=1.0)]
Penalty = Annotated[float, Field(ge=-2.0, le=2.0)]
StopString = Annotated[StrictStr, Field(max_length=MAX_STOP_LENGTH)]


class _Body(BaseModel):
    model_config = ConfigDict(extra="ignore")


class TextPart(_Body):
    type: Literal["text"]
    text: StrictStr


class ChatMessage(_Body):
    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: StrictStr | list[TextPart] | None = None
    name: StrictStr | None = None

    def text(self) -> str:
        if self.content is None:
            return ""
        if isinstance(self.content, str):
            return self.content
        return "".join(part.text for part in self.content)


class JSONSchemaFormat(_Body):
    name: StrictStr = "response"
    schema_: dict[str, Any] | None = Field(default=None, alias="schema")
    strict: StrictBool | None = None


class ResponseFormat(_Body):
    type: Literal["text", "json_object", "json_schema"]
    json_schema: JSONSchemaFormat | None = None
    # llama-server also accepts the schema directly here.
    schema_: dict[str, Any] | None = Field(default=None, alias="schema")


class StreamOptions(_Body):
    include_usage: StrictBool = False


class _SamplingFields(_Body):
    model: StrictStr | None = None
    max_tokens: Annotated[StrictInt, Field(ge=1, le=INT32_MAX)] | None = None
    temperature: Annotated[float, Field(ge=0.0, le=2.0)] | None = None
    top_p: Probability | None = None
    top_k: Annotated[StrictInt, Field(ge=0, le=INT32_MAX)] | None = None
    min_p: Probability | None = None
    typical_p: Probability | None = None
    repeat_penalty: Annotated[float, Field(gt=0.0, le=10.0)] | None = None
    repeat_last_n: Annotated[StrictInt, Field(ge=0, le=INT32_MAX)] | None = None
    presence_penalty: Penalty | None = None
    frequency_penalty: Penalty | None = None
    seed: StrictInt | None = None
    stop: StopString | Annotated[list[StopString], Field(max_length=MAX_STOP_STRINGS)] | None = None
    n: Annotated[StrictInt, Field(ge=1, le=MAX_N)] = 1
    stream: StrictBool = False
    stream_options: StreamOptions | None = None
    logit_bias: dict[str, Annotated[float, Field(ge=-100.0, le=100.0)]] | None = None
    response_format: ResponseFormat | None = None
    grammar: StrictStr | None = None  # llama-server extension: a raw GBNF grammar
    ignore_eos: StrictBool = False  # llama-server extension
    user: StrictStr | None = None

    def stop_strings(self) -> list[str]:
        if self.stop is None:
            return []
        return [self.stop] if isinstance(self.stop, str) else list(self.stop)


class ChatCompletionRequest(_SamplingFields):
    messages: Annotated[list[ChatMessage], Field(min_length=1)]
    max_completion_tokens: Annotated[StrictInt, Field(ge=1, le=INT32_MAX)] | None = None
    logprobs: StrictBool | None = None
    tools: list[dict[str, Any]] | None = None


Prompt = (
    StrictStr
    | Annotated[list[StrictStr], Field(min_length=1, max_length=MAX_N)]
    | Annotated[list[StrictInt], Field(min_length=1)]
    | Annotated[list[Annotated[list[StrictInt], Field(min_length=1)]], Field(min_length=1)]
)


class CompletionRequest(_SamplingFields):
    prompt: Prompt
    echo: StrictBool = False
    logprobs: StrictInt | None = None
    suffix: StrictStr | None = None


class EmbeddingRequest(_Body):
    model: StrictStr | None = None
    input: (
        StrictStr
        | Annotated[list[StrictStr], Field(min_length=1)]
        | Annotated[list[StrictInt], Field(min_length=1)]
        | Annotated[list[Annotated[list[StrictInt], Field(min_length=1)]], Field(min_length=1)]
    )
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: Annotated[StrictInt, Field(ge=1, le=INT32_MAX)] | None = None
    user: StrictStr | None = None
