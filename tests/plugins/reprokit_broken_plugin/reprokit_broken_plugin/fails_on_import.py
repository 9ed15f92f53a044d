"""A plugin module that cannot be imported (its dependency is missing)."""

import reprokit_no_such_dependency  # noqa: F401

comparator = None
