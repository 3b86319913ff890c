"""Record: the base of the analyzer's records, typing.NamedTuple to a type checker.

At run time typing.NamedTuple checks each field's annotation when the class is
made, and an annotation that is a string (every one, under `from __future__
import annotations`) is compiled for that: the ~60 records of a `check` cost
27 ms of each start, most of what it spends outside the analysis. A record
here is the same collections.namedtuple, with the annotations kept as
written, and no check that only a type checker needs. It also pickles
into what loads a quarter faster (see _reduce).
"""

from __future__ import annotations

import collections
from typing import TYPE_CHECKING, Any

__all__ = ["Record"]

if TYPE_CHECKING:
    from typing import NamedTuple as Record
else:
    # What the class body may not set, and what it sets that the tuple class keeps as its own.
    _PROHIBITED = frozenset(
        {"__new__", "__init__", "__slots__", "__getnewargs__", "_fields", "_field_defaults", "_make", "_replace"}
    )
    _SPECIAL = frozenset({"__module__", "__name__", "__annotations__"})

    class _RecordMeta(type):
        def __new__(cls, name: str, bases: tuple[type, ...], namespace: dict[str, Any]) -> type:
            if bases != (_Base,):
                raise TypeError(f"{name}: a record derives from Record alone")
            fields = namespace.get("__annotations__", {})
            with_default = [field for field in fields if field in namespace]
            if with_default != list(fields)[len(fields) - len(with_default) :]:
                raise TypeError(f"{name}: a field without a default follows one with a default")
            record = collections.namedtuple(
                name, fields, defaults=[namespace[f] for f in with_default], module=namespace["__module__"]
            )
            record.__annotations__ = fields
            record.__reduce__ = _reduce
            for key, value in namespace.items():
                if key in _PROHIBITED:
                    raise AttributeError(f"{name}: cannot overwrite the record attribute {key}")
                if key not in _SPECIAL and key not in fields:
                    setattr(record, key, value)
            return record

    def _reduce(record: tuple[object, ...]) -> tuple[object, tuple[type, tuple[object, ...]]]:
        # Unpickled by tuple.__new__, in C: a namedtuple's own __new__ is a Python
        # function, called once per record, and cached facts hold some 30,000.
        return (tuple.__new__, (type(record), tuple(record)))

    _Base = type.__new__(_RecordMeta, "Record", (), {})

    def Record(*_args: object, **_kwargs: object) -> None:  # noqa: N802 - named as the class it stands for
        raise TypeError("Record is a base class: `class Point(Record): x: int`")

    Record.__mro_entries__ = lambda bases: (_Base,)
