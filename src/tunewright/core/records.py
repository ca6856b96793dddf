"""Record types shared by every stage, and normalisation of the input shapes users have.

A Conversation is the training unit for chat SFT; the seed's `{"prompt", "response"}` form
and column-mapped inputs become one at read time. A PreferencePair holds a prompt with a
chosen and a rejected answer. Each keeps `id` and `source` so any
training example traces back to the raw line it came from.

Tool use: a conversation may declare `tools` (OpenAI function schemas, as a list or as JSON
text), assistant messages may carry `tool_calls` and `tool` messages carry the results, in
OpenAI's shape (TRL's `tools` column is the same). ShareGPT/Hermes records (`conversations`
with `from`/`value`, the tools in a `<tools>` block of the system prompt, calls in
`<tool_call>` blocks, results in `<tool_response>`) and Glaive records (`system` with the
functions as JSON after its text, `chat` with `USER:` / `ASSISTANT:` / `FUNCTION RESPONSE:`
turns and `<functioncall>` calls) are normalised to that shape. A call whose
arguments are not a JSON object, do not validate against its tool's parameters, or name a tool
the record does not declare makes the record a RecordError (the reader quarantines it).
"""

from __future__ import annotations

import copy
import json
import re
from dataclasses import asdict, dataclass, field
from typing import Any

import jsonschema

from tunewright.core.tools import (
    RESULT_CLOSE,
    RESULT_OPEN,
    ToolError,
    arguments_of,
    call_text,
    check_tools,
    parse_calls,
)

ROLES = ("system", "user", "assistant", "tool")
SHAREGPT_ROLES = {"system": "system", "human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant"}
SHAREGPT_ROLES |= dict.fromkeys(("tool", "function_response", "observation", "ipython"), "tool")
_TOOLS_BLOCK = re.compile(r"\s*<tools>\s*(.*?)\s*</tools>\s*", re.DOTALL)
_GLAIVE_TURN = re.compile(r"(?:^|\n)\s*(USER|ASSISTANT|FUNCTION RESPONSE):")
_GLAIVE_QUOTED_ARGUMENTS = re.compile(r'\{\s*"name":\s*("(?:[^"\\]|\\.)*"),\s*"arguments":\s*\'(.*)\'\s*\}', re.DOTALL)
_RESULT = re.compile(re.escape(RESULT_OPEN.strip()) + r"\s*(.*?)\s*" + re.escape(RESULT_CLOSE.strip()), re.DOTALL)


class RecordError(ValueError):
    """A record whose shape cannot be normalised; the reader quarantines it with the reason."""


@dataclass
class Message:
    role: str
    content: str
    tool_calls: list[dict[str, Any]] | None = None  # an assistant's calls, OpenAI's shape, arguments as objects
    tool_call_id: str | None = None  # a tool result: the call it answers

    def text(self) -> str:
        """The content and the calls as the model writes them: what dedup, filters and decontamination read."""
        calls = [call_text(c["function"]["name"], c["function"]["arguments"]) for c in self.tool_calls or []]
        return "\n".join([self.content, *calls] if self.content else calls)

    def to_dict(self) -> dict[str, Any]:
        """The message as chat templates and JSONL take it (tool fields only where set)."""
        out: dict[str, Any] = {"role": self.role, "content": self.content}
        if self.tool_calls:
            out["tool_calls"] = copy.deepcopy(self.tool_calls)
        if self.tool_call_id is not None:
            out["tool_call_id"] = self.tool_call_id
        return out


@dataclass
class Conversation:
    messages: list[Message]
    id: str
    source: str
    meta: dict[str, Any] = field(default_factory=dict)
    tools: list[dict[str, Any]] = field(default_factory=list)  # OpenAI function tools the conversation declares

    def to_dict(self) -> dict[str, Any]:
        """A snapshot (later changes to the record do not reach it), tool fields only where set."""
        out = {"messages": [m.to_dict() for m in self.messages], "id": self.id, "source": self.source}
        out["meta"] = copy.deepcopy(self.meta)
        return {**out, "tools": copy.deepcopy(self.tools)} if self.tools else out

    def text(self) -> str:
        """All message contents (and calls) joined: the text a record would train on."""
        return "\n".join(m.text() for m in self.messages)

    def template_messages(self) -> list[dict[str, Any]]:
        """The messages as chat templates take them."""
        return [m.to_dict() for m in self.messages]

    def prompt_messages(self) -> list[Message]:
        """The messages before the final assistant turn (what a model is asked)."""
        last = max(i for i, m in enumerate(self.messages) if m.role == "assistant")
        return self.messages[:last]

    def final_answer(self) -> str:
        """The content of the last assistant turn (the reference answer)."""
        return [m for m in self.messages if m.role == "assistant"][-1].content

    def key_messages(self) -> list[Message]:
        """What makes two records the same example (exact dedup): every message."""
        return self.messages


@dataclass
class PreferencePair:
    prompt: list[Message]
    chosen: list[Message]
    rejected: list[Message]
    id: str
    source: str
    meta: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class PairRecord(Conversation):
    """A preference pair as it flows through curation: `messages` holds the prompt, then the chosen
    answer, then the rejected one, so cleaning, PII handling and decontamination see every text;
    dedup and the data card see the prompt and the chosen answer (`key_messages`, `text`)."""

    prompt_len: int = 0
    chosen_len: int = 0

    @classmethod
    def of(cls, pair: PreferencePair) -> PairRecord:
        messages = [*pair.prompt, *pair.chosen, *pair.rejected]
        return cls(messages, pair.id, pair.source, pair.meta, prompt_len=len(pair.prompt), chosen_len=len(pair.chosen))

    def prompt_messages(self) -> list[Message]:
        return self.messages[: self.prompt_len]

    def chosen(self) -> list[Message]:
        return self.messages[self.prompt_len : self.prompt_len + self.chosen_len]

    def rejected(self) -> list[Message]:
        return self.messages[self.prompt_len + self.chosen_len :]

    def key_messages(self) -> list[Message]:
        return self.messages[: self.prompt_len + self.chosen_len]

    def final_answer(self) -> str:
        return self.chosen()[-1].content

    def text(self) -> str:
        return "\n".join(m.text() for m in self.key_messages())

    def to_dict(self) -> dict[str, Any]:
        as_list = [m.to_dict() for m in self.messages]
        p, c = self.prompt_len, self.prompt_len + self.chosen_len
        return {
            "prompt": as_list[:p], "chosen": as_list[p:c], "rejected": as_list[c:], "id": self.id,
            "source": self.source, "meta": self.meta,
        }  # fmt: skip


def _text(value: Any, what: str) -> str:
    if not isinstance(value, str):
        raise RecordError(f"{what} must be a string, found {type(value).__name__}")
    return value


def parse_messages(value: Any, what: str, tools: dict[str, dict[str, Any]] | None = None) -> list[Message]:
    """Messages in OpenAI's shape (or one string); calls are checked against `tools` (name -> function)."""
    if isinstance(value, str):
        return [Message("assistant" if what != "prompt" else "user", value)]
    if not isinstance(value, list) or not value:
        raise RecordError(f"{what} must be a non-empty list of messages")
    out = []
    for i, m in enumerate(value):
        if not isinstance(m, dict) or "role" not in m or ("content" not in m and not m.get("tool_calls")):
            raise RecordError(f"{what}[{i}] must be an object with 'role' and 'content'")
        if m["role"] not in ROLES:
            raise RecordError(f"{what}[{i}].role must be one of {ROLES}, found {m['role']!r}")
        calls = m.get("tool_calls") or None
        if calls is not None and m["role"] != "assistant":
            raise RecordError(f"{what}[{i}]: only assistant messages carry tool_calls")
        content = m.get("content")
        content = "" if content is None and calls else _text(content, f"{what}[{i}].content")
        checked = [_checked_call(c, j, tools or {}) for j, c in enumerate(calls)] if calls else None
        call_id = m.get("tool_call_id")
        out.append(Message(m["role"], content, checked, None if call_id is None else str(call_id)))
    return out


def _checked_call(call: Any, index: int, tools: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """One call in OpenAI's shape with its arguments as an object, validated against its declared tool."""
    if not isinstance(call, dict) or not isinstance(call.get("function"), dict) or "name" not in call["function"]:
        raise RecordError("a tool call is {'type': 'function', 'function': {'name': ..., 'arguments': ...}}")
    name = call["function"]["name"]
    try:
        arguments = arguments_of(call)
    except ToolError as exc:
        raise RecordError(str(exc)) from None
    if name not in tools:
        declared = "" if tools else " (it declares none)"
        raise RecordError(f"calls {name!r}, which is not one of the record's tools{declared}")
    try:
        jsonschema.validate(arguments, tools[name]["parameters"])
    except jsonschema.ValidationError as exc:
        raise RecordError(f"the arguments of a call to {name!r} do not match its parameters: {exc.message}") from None
    function = {"name": name, "arguments": arguments}
    return {"id": str(call.get("id") or f"call_{index}"), "type": "function", "function": function}


def parse_tools(value: Any) -> tuple[list[dict[str, Any]], dict[str, dict[str, Any]]]:
    """A record's declared tools (a list, or its JSON text) and the same by name, checked."""
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError as exc:
            raise RecordError(f"tools is text that is not JSON: {exc}") from None
    if not isinstance(value, list):
        raise RecordError("tools must be a list of function tools")
    try:
        return value, check_tools(value)
    except ToolError as exc:
        raise RecordError(str(exc)) from None


def _from_sharegpt(turns: Any) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(messages in OpenAI's shape, tools) of a ShareGPT/Hermes `conversations` list."""
    if not isinstance(turns, list) or not turns:
        raise RecordError("conversations must be a non-empty list of turns")
    messages: list[dict[str, Any]] = []
    tools: list[dict[str, Any]] = []
    for i, turn in enumerate(turns):
        if not isinstance(turn, dict) or "from" not in turn or "value" not in turn:
            raise RecordError(f"conversations[{i}] must be an object with 'from' and 'value'")
        role = SHAREGPT_ROLES.get(turn["from"])
        if role is None:
            raise RecordError(
                f"conversations[{i}].from must be one of {sorted(SHAREGPT_ROLES)}, found {turn['from']!r}"
            )
        value = _text(turn["value"], f"conversations[{i}].value")
        if role == "system" and (block := _TOOLS_BLOCK.search(value)):
            tools += [_json_line(line, i) for line in block.group(1).splitlines() if line.strip()]
            value = (value[: block.start()] + " " + value[block.end() :]).strip()
        if role == "assistant":
            content, calls = parse_calls(value)
            parts = [{"type": "function", "function": {"name": c.name, "arguments": c.arguments}} for c in calls]
            messages.append({"role": role, "content": content or "", **({"tool_calls": parts} if parts else {})})
        elif role == "tool":
            results = _RESULT.findall(value) or [value]
            messages += [{"role": "tool", "content": r} for r in results]
        else:
            messages.append({"role": role, "content": value})
    return messages, tools


def _from_glaive(system: str, text: str) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(messages in OpenAI's shape, tools) of a Glaive function-calling record: functions as JSON objects after
    the system prompt's text, turns marked `USER:`, `ASSISTANT:` (a call as `<functioncall> {...}`) and
    `FUNCTION RESPONSE:`, each ending with `<|endoftext|>` or not."""
    messages: list[dict[str, Any]] = []
    prose, tools = _glaive_functions(system.removeprefix("SYSTEM:").strip())
    if prose:
        messages.append({"role": "system", "content": prose})
    parts = _GLAIVE_TURN.split(text)
    for marker, body in zip(parts[1::2], parts[2::2], strict=True):
        body = body.replace("<|endoftext|>", "").strip()
        if marker == "USER":
            messages.append({"role": "user", "content": body})
        elif marker == "FUNCTION RESPONSE":
            messages.append({"role": "tool", "content": body})
        elif "<functioncall>" in body:
            content, _, call = body.partition("<functioncall>")
            name, arguments = _glaive_call(call.strip())
            part = {"type": "function", "function": {"name": name, "arguments": arguments}}
            messages.append({"role": "assistant", "content": content.strip(), "tool_calls": [part]})
        else:
            messages.append({"role": "assistant", "content": body})
    if not messages:
        raise RecordError("chat holds no USER: / ASSISTANT: turns")
    return messages, tools


def _glaive_functions(text: str) -> tuple[str, list[dict[str, Any]]]:
    """The prose of a Glaive system prompt and the function objects written after it."""
    decoder = json.JSONDecoder()
    start = text.find("{")
    prose, tools = (text[:start] if start >= 0 else text).strip().removesuffix("-").strip(), []
    at = start
    while 0 <= at < len(text):
        try:
            function, at = decoder.raw_decode(text, at)
        except json.JSONDecodeError as exc:
            raise RecordError(f"system: a function definition is not JSON: {exc}") from None
        tools.append({"type": "function", "function": function})
        while at < len(text) and text[at].isspace():
            at += 1
    return prose, tools


def _glaive_call(text: str) -> tuple[str, Any]:
    """(name, arguments) of a Glaive `<functioncall>`, whose arguments are often JSON inside single quotes."""
    quoted = _GLAIVE_QUOTED_ARGUMENTS.fullmatch(text)
    try:
        if quoted:
            return json.loads(quoted.group(1)), quoted.group(2)
        call = json.loads(text)
    except json.JSONDecodeError as exc:
        raise RecordError(f"a <functioncall> is not JSON: {exc}") from None
    if not isinstance(call, dict) or not isinstance(call.get("name"), str):
        raise RecordError("a <functioncall> is {'name': ..., 'arguments': ...}")
    return call["name"], call.get("arguments", {})


def _json_line(line: str, turn: int) -> dict[str, Any]:
    try:
        tool = json.loads(line)
    except json.JSONDecodeError as exc:
        raise RecordError(f"conversations[{turn}]: a line of the <tools> block is not JSON: {exc}") from None
    return tool if "function" in tool else {"type": "function", "function": tool}


def _identity(obj: dict[str, Any], source: str, default_id: str) -> tuple[str, str, dict]:
    rid = obj.get("id", default_id)
    meta = obj.get("meta") or {}
    if not isinstance(meta, dict):
        raise RecordError("meta must be an object")
    return str(rid), str(obj.get("source") or source), dict(meta)


def to_conversation(obj: Any, source: str, default_id: str, columns: dict[str, str] | None = None) -> Conversation:
    """Normalise a `messages`, `prompt`/`response` or column-mapped object to a Conversation.

    `columns` maps our field names (`prompt`, `response`, `system`, `messages`) to the
    input's column names.
    """
    if not isinstance(obj, dict):
        raise RecordError(f"expected a JSON object, found {type(obj).__name__}")
    cols = {"messages": "messages", "prompt": "prompt", "response": "response", "system": "system"}
    cols.update(columns or {})
    rid, src, meta = _identity(obj, source, default_id)
    tools, by_name = parse_tools(obj["tools"]) if obj.get("tools") else ([], {})
    if cols["messages"] in obj:
        messages = parse_messages(obj[cols["messages"]], "messages", by_name)
    elif "chat" in obj and isinstance(obj.get("chat"), str):
        turns, found = _from_glaive(obj.get("system") or "", obj["chat"])
        tools, by_name = parse_tools(tools + found) if found else (tools, by_name)
        messages = parse_messages(turns, "chat", by_name)
    elif "conversations" in obj:
        turns, found = _from_sharegpt(obj["conversations"])
        if found:
            tools, by_name = parse_tools(tools + found)
        messages = parse_messages(turns, "conversations", by_name)
    elif cols["prompt"] in obj and cols["response"] in obj:
        messages = []
        if obj.get(cols["system"]):
            messages.append(Message("system", _text(obj[cols["system"]], "system")))
        messages.append(Message("user", _text(obj[cols["prompt"]], "prompt")))
        messages.append(Message("assistant", _text(obj[cols["response"]], "response")))
    else:
        found = ", ".join(sorted(obj)) or "no keys"
        wanted = f"'{cols['messages']}' or '{cols['prompt']}'+'{cols['response']}' (or ShareGPT's 'conversations')"
        raise RecordError(f"expected {wanted}, found {found}")
    if not any(m.role == "assistant" for m in messages):
        raise RecordError("conversation has no assistant turn")
    if not any(m.role == "user" for m in messages):
        raise RecordError("conversation has no user turn")
    return Conversation(messages, rid, src, meta, tools)


def to_preference_pair(obj: Any, source: str, default_id: str) -> PreferencePair:
    """Normalise a preference object: `{prompt, chosen, rejected}` (strings or message lists), or TRL's
    implicit-prompt form, where `chosen` and `rejected` are whole conversations sharing the prompt."""
    if not isinstance(obj, dict):
        raise RecordError(f"expected a JSON object, found {type(obj).__name__}")
    missing = [k for k in ("chosen", "rejected") if k not in obj]
    if missing:
        raise RecordError(f"preference pair is missing {', '.join(missing)}")
    rid, src, meta = _identity(obj, source, default_id)
    chosen, rejected = parse_messages(obj["chosen"], "chosen"), parse_messages(obj["rejected"], "rejected")
    if "prompt" in obj:
        prompt = parse_messages(obj["prompt"], "prompt")
    else:  # implicit prompt: the messages both conversations share
        shared = 0
        while shared < min(len(chosen), len(rejected)) - 1 and chosen[shared] == rejected[shared]:
            shared += 1
        prompt, chosen, rejected = chosen[:shared], chosen[shared:], rejected[shared:]
    if not any(m.role == "user" for m in prompt):
        raise RecordError("preference pair has no prompt (no user turn before the answers)")
    for what, side in (("chosen", chosen), ("rejected", rejected)):
        if side[-1].role != "assistant":
            raise RecordError(f"{what} must end with an assistant answer")
    return PreferencePair(prompt, chosen, rejected, rid, src, meta)


def conversation_from_dict(obj: dict[str, Any]) -> Conversation:
    """Rebuild a Conversation written by `to_dict` (curated splits)."""
    return to_conversation(obj, obj.get("source", ""), obj.get("id", ""))
