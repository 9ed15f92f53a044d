"""Build hook (hatchling): compiles reprokit's optional native statistics, see
``tools/build_native.py``. A wheel that carries the library is tagged for the platform; where
it cannot be built the wheel stays pure Python and numpy computes the statistics. An editable
install gets the library in the source folder (where it is imported from); any other wheel
takes it from a temporary folder, so a read-only source tree builds too."""

from __future__ import annotations

import importlib.util
import shutil
import tempfile
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
    scratch: Path | None = None

    def initialize(self, version: str, build_data: dict[str, Any]) -> None:
        if self.target_name != "wheel":
            return
        native = _builder(Path(self.root))
        editable = version == "editable"
        if not editable:
            self.scratch = Path(tempfile.mkdtemp(prefix="reprokit-native-"))
        built = native.build(Path(self.root), log=self.app.display_warning, into=self.scratch)
        if built is None:
            return
        build_data["pure_python"] = False
        build_data["infer_tag"] = True
        if not editable:
            build_data["force_include"][str(built)] = native.LIBRARY.as_posix()

    def finalize(self, version: str, build_data: dict[str, Any], artifact_path: str) -> None:
        if self.scratch is not None:
            shutil.rmtree(self.scratch, ignore_errors=True)
