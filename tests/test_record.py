"""Record: a typed named tuple that costs a start-up no annotation checks."""

from __future__ import annotations

import pickle
import pickletools
import subprocess
import sys

import pytest

from analyzer.record import Record
from support import REPO


class Point(Record):
    """A point."""

    x: int
    y: int = 0
    label: str = "origin"

    def moved(self, dx: int) -> Point:
        return self._replace(x=self.x + dx)

    @property
    def norm(self) -> int:
        return abs(self.x) + abs(self.y)


def test_a_record_is_a_named_tuple_with_its_body() -> None:
    point = Point(3, -4)
    assert point == (3, -4, "origin") and isinstance(point, tuple)
    assert Point._fields == ("x", "y", "label")
    assert Point(1, label="a") == Point(x=1, y=0, label="a")
    assert point.moved(1) == Point(4, -4) and point.norm == 7
    assert Point.__doc__ == "A point." and Point.__module__ == __name__
    assert Point.__annotations__ == {"x": "int", "y": "int", "label": "str"}  # as written, not checked
    assert repr(point) == "Point(x=3, y=-4, label='origin')"
    # Cached facts are pickles of records: they load back as the same class.
    assert pickle.loads(pickle.dumps(point)) == point and type(pickle.loads(pickle.dumps(point))) is Point


def test_a_record_unpickles_without_calling_python_code() -> None:
    """A namedtuple's __new__ is a Python function: a record is rebuilt by
    tuple.__new__ instead (REDUCE), not by its class's __new__ (NEWOBJ)."""
    pickled = pickle.dumps([Point(1, 2), Point(3)], protocol=pickle.HIGHEST_PROTOCOL)
    operations = {operation.name for operation, _, _ in pickletools.genops(pickled)}
    assert "NEWOBJ" not in operations and "REDUCE" in operations
    assert pickle.loads(pickled) == [Point(1, 2), Point(3)]


def test_a_record_refuses_what_a_named_tuple_refuses() -> None:
    with pytest.raises(TypeError, match="without a default follows"):

        class Late(Record):
            a: int = 1
            b: int

    with pytest.raises(TypeError, match="from Record alone"):

        class Mixed(Record, dict):  # type: ignore[misc]
            a: int

    with pytest.raises(AttributeError, match="_replace"):

        class Clobbered(Record):
            a: int

            def _replace(self) -> None:  # type: ignore[override]
                pass

    with pytest.raises(TypeError, match="base class"):
        Record()


def test_importing_the_analysis_makes_no_typing_named_tuple() -> None:
    """typing.NamedTuple compiles each string annotation when its class is made:
    none of the analyzer's records is made that way."""
    probe = (
        "import typing\n"
        "made = []\n"
        "original = typing.NamedTupleMeta.__new__\n"
        "def counted(cls, name, bases, namespace):\n"
        "    made.append(namespace['__module__'] + '.' + name)\n"
        "    return original(cls, name, bases, namespace)\n"
        "typing.NamedTupleMeta.__new__ = counted\n"
        "import analyzer.cli, analyzer.audit, analyzer.fix, analyzer.graph, analyzer.rules\n"
        "print(' '.join(m for m in made if m.startswith('analyzer')))\n"
    )
    environment = {"PATH": "/usr/bin:/bin"}
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, cwd=REPO, check=True, env=environment
    )
    assert done.stdout.split() == []
