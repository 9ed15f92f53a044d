"""Entry points that fail: the loader and the capture must warn, name them and carry on."""

from __future__ import annotations

from typing import Any

NOT_CALLABLE = 42


def raises() -> dict[str, Any]:
    raise RuntimeError("instrument offline (password=hunter2)")


def not_json() -> dict[str, Any]:
    return {"ok": 1, "handle": object()}


def secretive() -> dict[str, Any]:
    return {"api_token": "abc", "url": "https://user:hunter2@lab.example/api", "gain": 2}


class Gadget:
    """A type the ``failing`` comparator declares (by qualified name) and cannot handle."""


class _Failing:
    # float is built in: reprokit must never hand a float to this plugin
    types = ("reprokit_broken_plugin.Gadget", float)

    def encode(self, value: Any) -> Any:
        if isinstance(value, float):
            raise AssertionError("a built-in float reached a plugin")
        return {"gadget": object()}  # not JSON: encoding must fail, naming the plugin

    def compare(self, reference: Any, current: Any, tolerance: Any) -> Any:
        raise ZeroDivisionError("comparison blew up")


class _Incomplete:
    types = (Gadget,)

    def encode(self, value: Gadget) -> Any:
        return {}


class _BadTypes(_Incomplete):
    types = 3  # not iterable: reading it must not crash the loader

    def compare(self, reference: Any, current: Any, tolerance: Any) -> Any:
        return None


bad_types = _BadTypes()
failing = _Failing()
incomplete = _Incomplete()
