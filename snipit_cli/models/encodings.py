"""The tensor storages a checkpoint can use, by name; free of torch, so the CLI builds its
``--storage`` choices from this declaration at start-up (``models.storage`` does the encoding)."""

from __future__ import annotations

from typing import Literal

Storage = Literal["sparse", "dense"]

#: What prune and train write unless told otherwise: plain safetensors with the model's own keys,
#: which safetensors, timm and every other tool load; "sparse" is snipit's archive format.
DEFAULT_STORAGE: Storage = "dense"

#: What a command writes: one safetensors file, or a hub-style folder (``config.json`` with timm's
#: fields, ``model.safetensors``, a ``README.md`` model card) that timm's ``local-dir:`` loads.
OutputFormat = Literal["safetensors", "hf"]
