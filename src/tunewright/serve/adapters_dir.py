"""A directory of LoRA adapters in NIM's layout, kept in sync with the engine.

Every subdirectory holding `adapter_config.json` is an adapter named after it. The scan
runs at start and every `adapters_rescan_s` seconds: new adapters are loaded, changed ones
(newer weights) reloaded, vanished ones unloaded. Only adapters the scan loaded are ever
unloaded by it. A subdirectory whose name is not a valid adapter name is skipped with a
warning, so a name can never reach outside the directory.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

from tunewright.engine import Engine
from tunewright.engine.lora import ADAPTER_NAME

log = logging.getLogger("tunewright.serve")


def scan(directory: Path) -> dict[str, tuple[Path, float]]:
    """name -> (path, modification time of its files) for every adapter under `directory`."""
    found = {}
    for sub in sorted(p for p in directory.iterdir() if p.is_dir()) if directory.is_dir() else []:
        if not (sub / "adapter_config.json").is_file():
            continue
        if not ADAPTER_NAME.match(sub.name):
            log.warning("adapters_dir: %s is not a valid adapter name; skipped", sub.name)
            continue
        found[sub.name] = (sub, max(p.stat().st_mtime for p in sub.iterdir() if p.is_file()))
    return found


class AdapterDirectory:
    def __init__(self, engine: Engine, directory: Path, reserved: set[str]) -> None:
        self.engine, self.directory, self.reserved = engine, directory, reserved
        self.loaded: dict[str, float] = {}

    def sync(self) -> None:
        """Load new and changed adapters, unload vanished ones (only those this directory loaded)."""
        found = scan(self.directory)
        for name, (path, mtime) in found.items():
            if name in self.reserved or self.loaded.get(name) == mtime:
                continue
            try:
                self.engine.add_adapter(name, path)
                self.loaded[name] = mtime
                log.info("adapters_dir: loaded %s", name)
            except (ValueError, OSError) as exc:
                log.warning("adapters_dir: %s not loaded: %s", name, exc)
        for name in [n for n in self.loaded if n not in found]:
            self.engine.remove_adapter(name)
            del self.loaded[name]
            log.info("adapters_dir: unloaded %s", name)

    async def keep_in_sync(self, every_s: float) -> None:
        while True:
            await asyncio.sleep(every_s)
            await asyncio.to_thread(self.sync)
