"""RFC 7386 JSON merge patches between two snapshots (contract §6, `metrics_delta`).

`diff(old, new)` is the patch that turns `old` into `new`: keys whose value changed, recursing into
objects present in both; `null` for a removed key; arrays and every other value replaced whole. A merge
patch cannot set a key to `null` (`null` means "remove", RFC 7386 §2), and the snapshot has nullable
fields (`percentage`, `currency`, a top product's `name`): when a value becomes `null`, or a new key
or a replaced object brings a `null` with it, `diff` returns None and the server sends the full snapshot for that update instead.
So `apply(old, diff(old, new))` equals `new` whenever `diff` gives a patch, byte for byte after
`canonical`.

`apply` is the client's side (the Python client; the TypeScript client has the same in `patch.ts`).
"""

from __future__ import annotations

from typing import Any

import orjson

Json = dict[str, Any]


class _NotExpressibleError(Exception):
    """A value became null: a merge patch would remove the key instead."""


def diff(old: Json, new: Json) -> Json | None:
    """The merge patch from `old` to `new`, or None when no merge patch can express the change."""
    try:
        return _diff(old, new)
    except _NotExpressibleError:
        return None


def _diff(old: Json, new: Json) -> Json:
    patch: Json = {}
    for key, value in new.items():
        if key in old:
            before = old[key]
            if before == value and type(before) is type(value):  # 1 == 1.0 == True in Python
                continue
            if isinstance(value, dict) and isinstance(before, dict):
                patch[key] = _diff(before, value)
                continue
        if _has_null(value):  # an object in a patch merges: its nulls would remove keys
            raise _NotExpressibleError(key)
        patch[key] = value
    for key in old.keys() - new.keys():
        patch[key] = None
    return patch


def _has_null(value: Any) -> bool:
    """Null as the value or in an object within it (an array is carried whole, nulls and all)."""
    if value is None:
        return True
    return isinstance(value, dict) and any(_has_null(v) for v in value.values())


def apply(target: Any, patch: Any) -> Any:
    """RFC 7386 §2 MergePatch(target, patch): a new value; `target` is not modified."""
    if not isinstance(patch, dict):
        return patch
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = apply(result.get(key), value)
    return result


def canonical(value: Any) -> bytes:
    """Sorted keys, no whitespace: two equal JSON documents give the same bytes."""
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS)
