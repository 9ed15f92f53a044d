"""Build hook (hatchling): compiles reprokit's optional native statistics, see
``tools/build_native.py``. A wheel that carries the library is tagged for the platform; where
it cannot be built the wheel stays pure Python and numpy computes the statistics."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

from hatchling.builders.hooks.plugin.interface import BuildHookInterface


def _builder(root: Path) -> Any:
    spec = importlib.util.spec_from_file_location("build_native", root / "tools/build_native.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class NativeStatsHook(BuildHookInterface):  # type: ignore[misc]
    PLUGIN_NAME = "custom"

    def initialize(self, version: str, build_data: dict[str, Any]) -> None:
        if self.target_name != "wheel":
            return
        native = _builder(Path(self.root))
        built = native.build(Path(self.root), log=self.app.display_warning)
        if built is None:
            return
        build_data["pure_python"] = False
        build_data["infer_tag"] = True
        if version != "editable":  # an editable install imports it from the source folder
            build_data["force_include"][str(built)] = native.LIBRARY.as_posix()
