"""The vLLM command line: tool calls in the format tunewright trains and serves."""

import shutil
from pathlib import Path

from tunewright.core import chat
from tunewright.core.model_source import ModelSource
from tunewright.core.modeling import load_tokenizer
from tunewright.runtimes.vllm import VllmConfig, VllmLaunch, vllm_command

LAUNCH = VllmLaunch("127.0.0.1", 8000, 1024, 8)


def flags_after(cmd, flag):
    return cmd[cmd.index(flag) + 1] if flag in cmd else None


def test_vllm_parses_hermes_calls_and_gets_the_tool_aware_template(tiny_base, tmp_path):
    cmd = vllm_command(VllmConfig(), "python", ModelSource("m", str(tiny_base)), "m", {}, LAUNCH)
    assert "--enable-auto-tool-choice" in cmd and flags_after(cmd, "--tool-call-parser") == "hermes"
    template = flags_after(cmd, "--chat-template")
    tokenizer = load_tokenizer(tiny_base)
    assert Path(template).read_text(encoding="utf-8") == chat.portable_template(tokenizer) != tokenizer.chat_template
    exported = tmp_path / "exported"  # a model whose template already writes the calls: the parser only
    shutil.copytree(tiny_base, exported)
    tokenizer.chat_template = chat.portable_template(tokenizer)
    tokenizer.save_pretrained(exported)
    cmd = vllm_command(VllmConfig(), "python", ModelSource("m", str(exported)), "m", {}, LAUNCH)
    assert flags_after(cmd, "--tool-call-parser") == "hermes" and "--chat-template" not in cmd
