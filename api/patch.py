"""RFC 7386 JSON merge patches between two snapshots (contract §6, `metrics_delta`).

`diff_json(old, new)` is the patch that turns `old` into `new`, computed by the server once per vendor
update: members whose value changed, recursing into objects present in both; `null` for a removed
member; arrays and every other value replaced whole. It works on the JSON text as read from Kafka,
splitting objects into their members' raw text (msgspec) and comparing bytes, so no tree of Python
objects is built or kept (parsing a ~2 KB snapshot costs ~10 µs and diffing the trees as much again;
this costs a few). Equal values written differently would only give a patch that sets them again.

A merge patch cannot set a member to `null` (`null` means "remove", RFC 7386 §2), and the snapshot has
nullable fields (`percentage`, `currency`, a top product's `name`): when a value becomes `null`, or a
new member or a replaced object brings the text `null` with it, `diff_json` returns None and the
server sends that update in full (conservative: a string holding "null" does so too). So `apply(old,
diff_json(old, new))` equals `new` whenever there is a patch, byte for byte after `canonical`.

`apply` is the client's side (the Python client; the TypeScript client has the same in `patch.ts`).
"""

from __future__ import annotations

from typing import Any

import msgspec
import orjson


class _NotExpressibleError(Exception):
    """A value became null: a merge patch would remove the key instead."""


_split = msgspec.json.Decoder(dict[str, msgspec.Raw]).decode
Members = dict[str, msgspec.Raw]  # raw JSON text of each member, views into the document (no copies)
_OBJECT = ord("{")
_NULL = msgspec.Raw(b"null")


def members(text: bytes | msgspec.Raw) -> Members:
    """A JSON object's members as raw JSON text (what `diff_json` compares; a caller may keep it for
    the next diff, where this text is the old side)."""
    return _split(text)


def diff_json(old: bytes | Members, new: bytes | Members) -> bytes | None:
    """The merge patch from `old` to `new`, JSON objects given as text (or as their `members`), as
    JSON text; None when no merge patch expresses it."""
    try:
        before = old if isinstance(old, dict) else members(old)
        return _diff_json(before, new if isinstance(new, dict) else members(new))
    except _NotExpressibleError:
        return None


def _diff_json(before: Members, after: Members) -> bytes:
    parts: list[bytes] = []
    for key, value in after.items():
        previous = before.get(key)
        if previous is not None:
            if previous == value:  # most members: compared as bytes, nothing else done
                continue
            if memoryview(value)[0] == _OBJECT and memoryview(previous)[0] == _OBJECT:
                parts.append(orjson.dumps(key) + b":" + _diff_json(members(previous), members(value)))
                continue
        if value == _NULL or (memoryview(value)[0] == _OBJECT and b"null" in bytes(value)):
            raise _NotExpressibleError(key)
        parts.append(orjson.dumps(key) + b":" + value)
    for key in before.keys() - after.keys():
        parts.append(orjson.dumps(key) + b":null")
    return b"{" + b",".join(parts) + b"}"


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
