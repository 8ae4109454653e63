"""The one schema of the ``snipit`` metadata document, checked when a checkpoint is read.

Every reader of a checkpoint's document (loading, ``report``, ``train --resume``, ``convert``)
gets it from :func:`~snipit_cli.models.checkpoint.read_metadata`, which runs :func:`validate`:
a field of the wrong type is refused there, named by its dotted path, instead of surfacing as
an internal error wherever the field is first used. Fields are optional (older files have
fewer) and unknown fields are allowed, except in records that are passed on as keyword
arguments (``training.pruning.options``), where an unknown key could not be used.

A small hand-written checker rather than a JSON Schema library: the document is small, and the
error must be one sentence naming the field. One file of ~360 lines on purpose: the first half
(the checkers) exists only to write the second (the document's fields), and the schema reads as
one declaration only with them at hand.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from snipit_cli.models.input_spec import MAX_INPUT_VALUES  # the probe's bound, recorded sizes alike


class SchemaError(ValueError):
    """A field that does not have its type: ``field must be <what>, got <value>``."""

    def __init__(self, field: str, what: str, value: Any) -> None:
        super().__init__(f"{field or 'the document'} must be {what}, got {_shown(value)}")


@dataclass(frozen=True)
class Check:
    """One field's type: ``test`` accepts a value, ``what`` says it in words."""

    what: str
    test: Callable[[Any, str], None]

    def __call__(self, value: Any, field: str) -> None:
        self.test(value, field)


def _shown(value: Any) -> str:
    text = json.dumps(value) if _jsonable(value) else repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _jsonable(value: Any) -> bool:
    try:
        json.dumps(value)
    except (TypeError, ValueError):
        return False
    return True


def _simple(what: str, accept: Callable[[Any], bool]) -> Check:
    def test(value: Any, field: str) -> None:
        if not accept(value):
            raise SchemaError(field, what, value)

    return Check(what, test)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return (isinstance(value, int | float) and not isinstance(value, bool)) and value == value  # not NaN


def integer(minimum: int | None = None) -> Check:
    what = {None: "an integer", 0: "an integer >= 0", 1: "a positive integer"}.get(
        minimum, f"an integer >= {minimum}"
    )
    return _simple(what, lambda v: _is_int(v) and (minimum is None or v >= minimum))


def number(low: float | None = None, high: float | None = None, positive: bool = False) -> Check:
    if positive:
        return _simple("a positive number", lambda v: _is_number(v) and v > 0)
    what = "a number" if low is None else f"a number in [{low}, {high}]"
    return _simple(what, lambda v: _is_number(v) and (low is None or low <= v <= high))


STRING = _simple("a string", lambda v: isinstance(v, str))
BOOLEAN = _simple("true or false", lambda v: isinstance(v, bool))
ANY_OBJECT = _simple("an object", lambda v: isinstance(v, Mapping))


def nullable(check: Check) -> Check:
    """``check`` or JSON null (the field's message stays the check's own)."""
    return Check(check.what, lambda value, field: None if value is None else check(value, field))


def list_of(item: Check, length: int | None = None, non_empty: bool = False, what: str = "") -> Check:
    """A list whose items pass ``item``; an item's error names the list as a whole."""
    what = what or (
        f"a list of {length} {_plural(item.what)}"
        if length
        else f"a {'non-empty ' if non_empty else ''}list of {_plural(item.what)}"
    )

    def test(value: Any, field: str) -> None:
        ok = isinstance(value, list) and (length is None or len(value) == length)
        ok = ok and (not non_empty or bool(value))
        if not ok:
            raise SchemaError(field, what, value)
        for i, entry in enumerate(value):
            try:
                item(entry, f"{field}[{i}]")
            except SchemaError:
                raise SchemaError(field, what, value) from None

    return Check(what, test)


def list_of_objects(item: Check) -> Check:
    """A list of objects; an error inside one names it (``history[2].epoch``)."""

    def test(value: Any, field: str) -> None:
        if not isinstance(value, list):
            raise SchemaError(field, "a list of objects", value)
        for i, entry in enumerate(value):
            item(entry, f"{field}[{i}]")

    return Check("a list of objects", test)


def _plural(what: str) -> str:
    """``a positive integer`` -> ``positive integers``: the article dropped, the noun plural."""
    words = what.split(" ")[1:]
    nouns = [i for i, w in enumerate(words) if w in ("integer", "number", "string", "object")]
    if nouns:
        words[nouns[0]] += "s"
    return " ".join(words)


def obj(fields: Mapping[str, Check], closed: bool = False) -> Check:
    """An object whose known ``fields`` (all optional) pass their checks; ``closed``: no others."""

    def test(value: Any, field: str) -> None:
        if not isinstance(value, Mapping):
            raise SchemaError(field, "an object", value)
        for key, entry in value.items():
            path = f"{field}.{key}" if field else str(key)
            if key in fields:
                fields[key](entry, path)
            elif closed:
                raise SchemaError(path, f"absent (known: {', '.join(fields)})", entry)

    return Check("an object", test)


def mapping_of(item: Check) -> Check:
    """An object of any keys whose values pass ``item`` (slim records, storage tensors)."""

    def test(value: Any, field: str) -> None:
        if not isinstance(value, Mapping):
            raise SchemaError(field, "an object", value)
        for key, entry in value.items():
            item(entry, f"{field}.{key}")

    return Check("an object", test)


def required(check: Check, *keys: str) -> Check:
    """``check``, plus: each of ``keys`` is present."""

    def test(value: Any, field: str) -> None:
        check(value, field)
        for key in keys:
            if key not in value:
                raise SchemaError(f"{field}.{key}" if field else key, "present", None)

    return Check(check.what, test)


def at_most(check: Check, limit: int, what: str) -> Check:
    """``check``, then: the product of the list is at most ``limit`` (``what`` says so)."""

    def test(value: Any, field: str) -> None:
        check(value, field)
        if math.prod(value) > limit:
            raise SchemaError(field, what, value)

    return Check(check.what, test)


SIZES = list_of(integer(0), what="a list of sizes (integers >= 0)")
NAMES = list_of(STRING)
MAYBE_STRING = nullable(STRING)
MAYBE_COUNT = nullable(integer(0))

ARCH = required(
    obj(
        {
            "spec": STRING,
            "kwargs": nullable(ANY_OBJECT),
            "num_classes": nullable(integer(1)),
        }
    ),
    "spec",
)

MODEL = obj(
    {
        "source": STRING,
        "arch": nullable(ARCH),
        "input_size": nullable(
            at_most(
                list_of(integer(1), length=3),
                MAX_INPUT_VALUES,
                f"C,H,W of at most {MAX_INPUT_VALUES:,} values in all (3x4096x4096)",
            )
        ),
        "input_size_from": MAYBE_STRING,
        "mean": nullable(list_of(number(), non_empty=True)),
        "std": nullable(list_of(number(positive=True), non_empty=True)),
        "num_classes": nullable(integer(1)),
        "pretrained": BOOLEAN,
    }
)

SPARSITY = obj({"target": number(0, 1), "achieved": number(0, 1), "of": STRING})
SCHEDULE = list_of(number(0, 1))

CALIBRATION = obj(
    {
        "data": MAYBE_STRING,
        "split": MAYBE_STRING,
        "batches": MAYBE_COUNT,
        "batch_size": MAYBE_COUNT,
        "samples": MAYBE_COUNT,
        "seed": nullable(integer()),
        "scoring_rounds": MAYBE_COUNT,
        "passes": MAYBE_COUNT,
        "samples_read": MAYBE_COUNT,
        "world_size": nullable(integer(1)),
        "backend": MAYBE_STRING,
        "samples_per_rank": nullable(list_of(integer(0))),
    }
)

COLLAPSE = obj({"guard": BOOLEAN, "min_layer_density": nullable(number(0, 1)), "held": NAMES})

SLIM_ENTRY = obj({"attrs": ANY_OBJECT, "shapes": mapping_of(SIZES)})
NODES = obj({"dense": integer(0), "remaining": integer(0), "sparsity": number(0, 1)})

STORAGE = obj(
    {
        "encoding": STRING,
        "bit_order": STRING,
        "tensors": mapping_of(obj({"shape": SIZES, "dtype": STRING})),
    }
)

#: BatchNorm statistics re-estimated after pruning (``prune --recalibrate-bn``).
RECALIBRATION = obj(
    {
        "data": STRING,
        "batches": integer(1),
        "batch_size": integer(1),
        "samples": integer(0),
        "layers": integer(0),
        "batches_read": list_of(integer(0)),
    }
)

STRUCTURED_OPTIONS = obj(
    {"target": STRING, "min_keep": number(0, 1), "round_to": integer(1), "latency_batch": integer(1)},
    closed=True,
)
#: ``PruneWhileTraining.from_json`` passes these as keyword arguments: closed.
PRUNE_OPTIONS = obj(
    {
        "method": MAYBE_STRING,
        "sparsity": number(0, 1),
        "delay": integer(0),
        "freq": integer(0),
        "steps": nullable(integer(0)),
        "structured": nullable(STRUCTURED_OPTIONS),
        "batches": integer(0),
        "allow_collapse": BOOLEAN,
    },
    closed=True,
)

TRAINING_PRUNING = obj(
    {
        "method": STRING,
        "structured": BOOLEAN,
        "of": STRING,
        "sparsity": number(0, 1),
        "schedule": SCHEDULE,
        "epochs": list_of(integer(0)),
        "events": list_of_objects(
            obj({"epoch": integer(0), "step": integer(0), "target": number(0, 1), "achieved": number(0, 1)})
        ),
        "dense_amount": number(),
        "dense_units": mapping_of(integer(0)),
        "collapse_held": NAMES,
        "calibration": obj({"batches": integer(0), "batch_size": integer(1)}),
        "options": PRUNE_OPTIONS,
    }
)

TRAINING = required(
    obj(
        {
            "epochs": integer(0),
            "epochs_done": integer(0),
            "step": integer(0),
            "optimizer": obj(
                {
                    "name": STRING,
                    "lr": number(),
                    "momentum": number(),
                    "weight_decay": number(),
                    "lr_schedule": STRING,
                }
            ),
            "data": obj(
                {
                    "data": STRING,
                    "split": MAYBE_STRING,
                    "data_root": MAYBE_STRING,
                    "batch_size": integer(1),
                    "holdout": nullable(number(0, 1)),
                    "test_split": MAYBE_STRING,
                    "test_data": MAYBE_STRING,
                    "test": MAYBE_STRING,
                    "train_samples": MAYBE_COUNT,
                    "test_samples": MAYBE_COUNT,
                }
            ),
            "seed": integer(),
            "exclude": NAMES,
            "pruning": nullable(TRAINING_PRUNING),
            "history": list_of_objects(ANY_OBJECT),
        }
    ),
    "epochs_done",
    "step",
)

DOCUMENT = obj(
    {
        "format_version": integer(0),
        "snipit_version": STRING,
        "model": MODEL,
        "method": STRING,
        "structured": BOOLEAN,
        "schedule": SCHEDULE,
        "sparsity": SPARSITY,
        "min_keep": number(0, 1),
        "round_to": integer(1),
        "exclude": NAMES,
        "seed": integer(),
        "calibration": CALIBRATION,
        "collapse": COLLAPSE,
        "recalibration": nullable(RECALIBRATION),
        "slim": mapping_of(SLIM_ENTRY),
        "nodes": NODES,
        "training": TRAINING,
        "storage": STORAGE,
    }
)


def validate(document: Any) -> None:
    """Raise :class:`SchemaError` naming the first field of ``document`` that is not its type."""
    DOCUMENT(document, "")
