"""Tool calling, in one place: how tools, calls and results are written into a conversation, and how calls are
read back out of an answer (whole, or as it streams).

The format is Hermes' (NousResearch; Qwen2.5 and others use it, and vLLM's `hermes` parser reads it): the tools
are listed as JSON function schemas between `<tools>` and `</tools>` in the system prompt, each call is
`<tool_call>\\n{"name": ..., "arguments": {...}}\\n</tool_call>`, and results come back as
`<tool_response>\\n...\\n</tool_response>` in a user turn. A chat template that renders tools and calls itself
in this format is used as it is (`native`). A template that ignores tools (SmolLM2's, the embedded tiny
model's) gets the format written into the messages before it renders them (`written`), so training,
evaluation and serving all see the same text. A template that renders calls in some other way is refused by
name rather than served with calls nobody parses.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jsonschema

CALL_OPEN, CALL_CLOSE = "<tool_call>\n", "\n</tool_call>"
RESULT_OPEN, RESULT_CLOSE = "<tool_response>\n", "\n</tool_response>"
NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
EMPTY_PARAMETERS = {"type": "object", "properties": {}}
_CALL_HEAD = re.compile(r'^\{"name": "([A-Za-z0-9_-]{1,64})", "arguments": ')
_PROBE = "tunewright_probe_tool"


TOOLS_INTRO = (
    "You may call one or more functions to assist with the user query. The functions are listed within "
    "<tools></tools>:\n<tools>\n"
)
TOOLS_OUTRO = (
    "\n</tools>\nTo call a function, answer with its name and arguments as JSON within <tool_call></tool_call>:\n"
    f'{CALL_OPEN}{{"name": <function-name>, "arguments": <args-json-object>}}{CALL_CLOSE}'
)


class ToolError(ValueError):
    """Tools, a tool choice or a chat template that cannot be used; the message says why."""


@dataclass(frozen=True)
class Call:
    name: str
    arguments: dict[str, Any]
    id: str = ""

    def as_message_part(self) -> dict[str, Any]:
        """The call as OpenAI writes it in an assistant message (`arguments` as JSON text)."""
        arguments = json.dumps(self.arguments, ensure_ascii=False)
        function = {"name": self.name, "arguments": arguments}
        return {"id": self.id or new_call_id(), "type": "function", "function": function}


def new_call_id() -> str:
    return f"call_{uuid.uuid4().hex[:24]}"


def check_tools(tools: Sequence[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """OpenAI function tools by name, each with a valid JSON Schema for its parameters (an absent one: no
    parameters); raises `ToolError` naming the tool and the problem."""
    by_name: dict[str, dict[str, Any]] = {}
    for i, tool in enumerate(tools):
        function = tool.get("function") if tool.get("type", "function") == "function" else None
        if not isinstance(function, dict) or not isinstance(function.get("name"), str):
            raise ToolError(f"tools[{i}]: a tool is {{'type': 'function', 'function': {{'name': ...}}}}")
        name = function["name"]
        if not NAME.match(name):
            raise ToolError(f"tools[{i}]: the name {name!r} is not 1-64 letters, digits, '_' or '-'")
        if name in by_name:
            raise ToolError(f"tools[{i}]: two tools are named {name!r}")
        parameters = function.get("parameters") or EMPTY_PARAMETERS
        try:
            jsonschema.validators.validator_for(parameters).check_schema(parameters)
        except jsonschema.SchemaError as exc:
            raise ToolError(f"tools[{i}] ({name}): parameters are not a valid JSON Schema: {exc.message}") from None
        by_name[name] = {**function, "parameters": parameters}
    return by_name


PROBE_TOOLS = [{"type": "function", "function": {"name": _PROBE, "description": "d", "parameters": EMPTY_PARAMETERS}}]
PROBE_CONVERSATION = [
    {"role": "user", "content": "u"},
    {
        "role": "assistant",
        "content": "",
        "tool_calls": [{"id": "call_0", "type": "function", "function": {"name": _PROBE, "arguments": {}}}],
    },
]


def template_mode(probe: str) -> str:
    """How a chat template takes tools, from its rendering of `PROBE_CONVERSATION` with `PROBE_TOOLS`: `native`
    when it writes the tools and Hermes calls itself, `written` when it ignores tools (this module writes them
    into the messages); a template that writes calls in another format raises `ToolError`."""
    if _PROBE not in probe:
        return "written"
    if f'{CALL_OPEN}{{"name": "{_PROBE}"' in probe:
        return "native"
    raise ToolError(
        "the chat template writes tool calls in its own format, which is not Hermes' <tool_call> JSON; "
        "tunewright reads calls in that format only"
    )


def written(messages: Sequence[dict[str, Any]], tools: Sequence[dict[str, Any]] | None) -> list[dict[str, Any]]:
    """`messages` with the tools, the assistant's calls and the tools' results written as Hermes text, for a
    template that renders plain role/content messages."""
    out: list[dict[str, Any]] = []
    if tools:
        listing = "\n".join(
            json.dumps({"type": "function", "function": t.get("function", t)}, ensure_ascii=False) for t in tools
        )
        block = f"{TOOLS_INTRO}{listing}{TOOLS_OUTRO}"
        if messages and messages[0]["role"] == "system":
            out.append({"role": "system", "content": f"{messages[0].get('content') or ''}\n\n{block}".lstrip()})
            messages = messages[1:]
        else:
            out.append({"role": "system", "content": block})
    for m in messages:
        if m["role"] == "assistant" and m.get("tool_calls"):
            calls = [call_text(c["function"]["name"], arguments_of(c)) for c in m["tool_calls"]]
            content = "\n".join([m["content"], *calls] if m.get("content") else calls)
            out.append({"role": "assistant", "content": content})
        elif m["role"] == "tool":
            result = f"{RESULT_OPEN}{m.get('content') or ''}{RESULT_CLOSE}"
            if out and out[-1]["role"] == "user" and out[-1]["content"].startswith(RESULT_OPEN):
                out[-1] = {"role": "user", "content": f"{out[-1]['content']}\n{result}"}
            else:
                out.append({"role": "user", "content": result})
        else:
            out.append({"role": m["role"], "content": m.get("content") or ""})
    return out


def with_argument_objects(messages: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """`messages` with each call's arguments as an object, as chat templates want them (OpenAI sends JSON text)."""
    out = []
    for m in messages:
        if m.get("tool_calls"):
            calls = [{**c, "function": {**c["function"], "arguments": arguments_of(c)}} for c in m["tool_calls"]]
            m = {**m, "tool_calls": calls}
        out.append(m)
    return out


def tool_template(base: str) -> str:
    """A chat template that does what `written` does, then renders with `base`: for other runtimes (vLLM,
    llama.cpp, transformers) to render tools, calls and results as tunewright trains and serves them. Without
    tools and tool messages the conversation reaches `base` untouched."""
    preamble = (Path(__file__).parent / "tool_template.jinja").read_text(encoding="utf-8")
    names = {"TOOLS_INTRO": TOOLS_INTRO, "TOOLS_OUTRO": TOOLS_OUTRO, "CALL_OPEN": CALL_OPEN}
    names |= {"CALL_CLOSE": CALL_CLOSE, "RESULT_OPEN": RESULT_OPEN, "RESULT_CLOSE": RESULT_CLOSE}
    for name, text in names.items():
        preamble = preamble.replace(f"__{name}__", json.dumps(text))  # a JSON string literal is a Jinja one
    return preamble + base


def arguments_of(call: dict[str, Any]) -> dict[str, Any]:
    """A call's arguments as an object (OpenAI sends them as JSON text, templates want the object)."""
    arguments = call["function"].get("arguments") or {}
    if isinstance(arguments, str):
        try:
            arguments = json.loads(arguments)
        except json.JSONDecodeError as exc:
            raise ToolError(f"the arguments of a call to {call['function']['name']!r} are not JSON: {exc}") from None
    if not isinstance(arguments, dict):
        raise ToolError(f"the arguments of a call to {call['function']['name']!r} are not a JSON object")
    return arguments


def call_text(name: str, arguments: dict[str, Any]) -> str:
    """One call as the model writes it."""
    return f"{CALL_OPEN}{json.dumps({'name': name, 'arguments': arguments}, ensure_ascii=False)}{CALL_CLOSE}"


def written_reply(message: dict[str, Any]) -> str:
    """An OpenAI reply message as the model wrote it: its content, then its `tool_calls` in this format. Arguments
    that are not a JSON object stay as they came, so a reader counts the call as malformed."""
    calls = []
    for call in message.get("tool_calls") or []:
        function = call.get("function") or {}
        name, arguments = str(function.get("name", "")), function.get("arguments", "")
        try:
            calls.append(call_text(name, arguments_of(call)))
        except (ToolError, KeyError):
            calls.append(f'{CALL_OPEN}{{"name": {json.dumps(name)}, "arguments": {arguments}}}{CALL_CLOSE}')
    return "\n".join([message["content"], *calls] if message.get("content") else calls)


def parse_calls(text: str) -> tuple[str | None, list[Call]]:
    """(content, calls) of an answer: the text before its first call, and every complete call in it. An answer
    with no complete call is all content."""
    calls, first = [], None
    for match in re.finditer(re.escape(CALL_OPEN) + r"(.*?)" + re.escape(CALL_CLOSE), text, re.DOTALL):
        try:
            body = json.loads(match.group(1))
        except json.JSONDecodeError:
            continue
        if isinstance(body, dict) and isinstance(body.get("name"), str) and isinstance(body.get("arguments"), dict):
            calls.append(Call(body["name"], body["arguments"], new_call_id()))
            first = match.start() if first is None else first
    if not calls:
        return text, []
    content = text[:first].strip()
    return content or None, calls


class CallStream:
    """Reads an answer as it streams and says what to send: content deltas, and for each call its start (id and
    name) then its arguments as they come. Text that may still turn out to open or close a call is held back."""

    def __init__(self) -> None:
        self.buffer = ""
        self.in_call = False
        self.calls = 0  # calls started so far
        self.started = False  # this call's id and name are out

    def feed(self, text: str, final: bool = False) -> list[tuple[str, Any]]:
        """Events for `text`: ("content", str), ("call", (index, id, name)), ("arguments", (index, str))."""
        self.buffer += text
        events: list[tuple[str, Any]] = []
        while self._step(events, final):
            pass
        return events

    def _step(self, events: list[tuple[str, Any]], final: bool) -> bool:
        """Read what the buffer allows; True when the state moved on (so another step may read more)."""
        if not self.in_call:
            at = self.buffer.find(CALL_OPEN)
            if at >= 0:
                if at and not self.calls:  # content comes before the first call; only separators after it
                    events.append(("content", self.buffer[:at]))
                self.buffer, self.in_call, self.started = self.buffer[at + len(CALL_OPEN) :], True, False
                return True
            keep = len(self.buffer) if self.calls else 0 if final else _open_prefix(self.buffer)
            if len(self.buffer) > keep:
                events.append(("content", self.buffer[: len(self.buffer) - keep]))
                self.buffer = self.buffer[len(self.buffer) - keep :]
            return False
        if not self.started:
            head = _CALL_HEAD.match(self.buffer)
            if head is None:
                return False
            events.append(("call", (self.calls, new_call_id(), head.group(1))))
            self.buffer, self.started = self.buffer[head.end() :], True
            return True
        end = self.buffer.find(CALL_CLOSE)
        if end >= 0:
            arguments = self.buffer[:end].rstrip()
            if arguments.endswith("}"):  # the call object's own closing brace
                arguments = arguments[:-1]
            if arguments:
                events.append(("arguments", (self.calls, arguments)))
            self.buffer, self.in_call = self.buffer[end + len(CALL_CLOSE) :], False
            self.calls += 1
            return True
        hold = len("}" + CALL_CLOSE)
        if len(self.buffer) > hold:
            events.append(("arguments", (self.calls, self.buffer[:-hold])))
            self.buffer = self.buffer[-hold:]
        return False


def _open_prefix(text: str) -> int:
    """The length of the longest end of `text` that could be the start of a call's opening tag."""
    for n in range(min(len(text), len(CALL_OPEN)), 0, -1):
        if CALL_OPEN.startswith(text[-n:]):
            return n
    return 0
