"""The incoming state, checked for its shape where it is first read.

A state is {"bookmarks": {stream: entry}}, each entry an object that may hold a
bookmark (`replication_key_value`, a string) and `partitions`, a list of such objects,
each with its `context` object. The SDK reads anything else with a traceback, or not at
all; here it fails in one line naming what is wrong, before any request.
"""

from __future__ import annotations

import typing as t

from tap_optico.bookmarks import PARTITIONS, VALUE, StateError

if t.TYPE_CHECKING:
    import logging

T = t.TypeVar("T")

_KINDS: dict[type, str] = {dict: "an object", list: "a list", str: "a string", bool: "a boolean"}


def checked_state(state: dict[str, t.Any], logger: logging.Logger) -> dict[str, t.Any]:
    """The state to load, its shape checked; a whole STATE message stands for its value.

    Raises:
        StateError: a part of the state is not of the shape this tap reads.
    """
    if state.get("type") == "STATE" and "value" in state:
        logger.info("the state is a whole STATE message: reading its value")
        state = _expect(dict, state["value"], "value")
    bookmarks = _expect(dict, state.get("bookmarks", {}), "bookmarks")
    for stream, entry in bookmarks.items():
        where = f"bookmarks.{stream}"
        _bookmark(_expect(dict, entry, where), where)
        partitions = _expect(list, entry.get(PARTITIONS, []), f"{where}.{PARTITIONS}")
        for index, partition in enumerate(partitions):
            at = f"{where}.{PARTITIONS}[{index}]"
            _bookmark(_expect(dict, partition, at), at)
            if partition.get("context") is not None:
                _expect(dict, partition["context"], f"{at}.context")
    return state


def _bookmark(entry: dict[str, t.Any], where: str) -> None:
    if entry.get(VALUE) is not None:
        _expect(str, entry[VALUE], f"{where}.{VALUE}")


def _expect(kind: type[T], value: object, where: str) -> T:
    if not isinstance(value, kind):
        found = "null" if value is None else _KINDS.get(type(value), "a number")
        msg = f"the state's {where} is {found}, not {_KINDS[kind]}; fix or remove the state"
        raise StateError(msg)
    return value
