"""Record types shared by every stage, and normalisation of the input shapes users have.

A Conversation is the training unit for chat SFT; the seed's `{"prompt", "response"}` form
and column-mapped inputs become one at read time. A PreferencePair holds a prompt with a
chosen and a rejected answer. Each keeps `id` and `source` so any
training example traces back to the raw line it came from.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

ROLES = ("system", "user", "assistant")


class RecordError(ValueError):
    """A record whose shape cannot be normalised; the reader quarantines it with the reason."""


@dataclass
class Message:
    role: str
    content: str


@dataclass
class Conversation:
    messages: list[Message]
    id: str
    source: str
    meta: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def text(self) -> str:
        """All message contents joined: the text a record would train on."""
        return "\n".join(m.content for m in self.messages)

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
        return cls(
            [*pair.prompt, *pair.chosen, *pair.rejected], pair.id, pair.source, pair.meta, len(pair.prompt),
            len(pair.chosen),
        )  # fmt: skip

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
        return "\n".join(m.content for m in self.key_messages())

    def to_dict(self) -> dict[str, Any]:
        as_list = [asdict(m) for m in self.messages]
        p, c = self.prompt_len, self.prompt_len + self.chosen_len
        return {
            "prompt": as_list[:p], "chosen": as_list[p:c], "rejected": as_list[c:], "id": self.id,
            "source": self.source, "meta": self.meta,
        }  # fmt: skip


def _text(value: Any, what: str) -> str:
    if not isinstance(value, str):
        raise RecordError(f"{what} must be a string, found {type(value).__name__}")
    return value


def parse_messages(value: Any, what: str) -> list[Message]:
    if isinstance(value, str):
        return [Message("assistant" if what != "prompt" else "user", value)]
    if not isinstance(value, list) or not value:
        raise RecordError(f"{what} must be a non-empty list of messages")
    out = []
    for i, m in enumerate(value):
        if not isinstance(m, dict) or "role" not in m or "content" not in m:
            raise RecordError(f"{what}[{i}] must be an object with 'role' and 'content'")
        if m["role"] not in ROLES:
            raise RecordError(f"{what}[{i}].role must be one of {ROLES}, found {m['role']!r}")
        out.append(Message(m["role"], _text(m["content"], f"{what}[{i}].content")))
    return out


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
    if cols["messages"] in obj:
        messages = parse_messages(obj[cols["messages"]], "messages")
    elif cols["prompt"] in obj and cols["response"] in obj:
        messages = []
        if obj.get(cols["system"]):
            messages.append(Message("system", _text(obj[cols["system"]], "system")))
        messages.append(Message("user", _text(obj[cols["prompt"]], "prompt")))
        messages.append(Message("assistant", _text(obj[cols["response"]], "response")))
    else:
        found = ", ".join(sorted(obj)) or "no keys"
        raise RecordError(f"expected '{cols['messages']}' or '{cols['prompt']}'+'{cols['response']}', found {found}")
    if not any(m.role == "assistant" for m in messages):
        raise RecordError("conversation has no assistant turn")
    if not any(m.role == "user" for m in messages):
        raise RecordError("conversation has no user turn")
    return Conversation(messages, rid, src, meta)


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
