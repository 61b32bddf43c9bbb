"""Environment overrides as operators write them: a list may be comma-separated.

pydantic-settings reads a list or table from the environment only as JSON, and a value
that is not JSON stopped start-up with a 44-line traceback (issue 29). Here a list of
plain values (``credits.admins``, ``discord.guild_ids``, ``slack.file_hosts`` ...) may also
be given as ``a,b,c``; anything else that is not JSON fails with one sentence saying how
to write it, which ``load_settings`` turns into a ``ConfigError``.
"""

from __future__ import annotations

import types
import typing
from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel
from pydantic.fields import FieldInfo
from pydantic_settings import EnvSettingsSource

_PLAIN = (str, int, float)


def _plain_list(field: FieldInfo | None) -> bool:
    """Whether the field is a list (or set, tuple) of strings or numbers."""
    if field is None:
        return False
    annotation = field.annotation
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        members = [a for a in typing.get_args(annotation) if a is not type(None)]
        annotation = members[0] if len(members) == 1 else annotation
    if typing.get_origin(annotation) not in (list, set, tuple, frozenset):
        return False
    return all(
        arg in _PLAIN or arg is Ellipsis or typing.get_origin(arg) is typing.Literal
        for arg in typing.get_args(annotation)
    )


class LenientEnvSource(EnvSettingsSource):
    """``EnvSettingsSource`` with comma-separated lists and one-line errors."""

    def explode_env_vars(
        self, field_name: str, field: FieldInfo, env_vars: Mapping[str, str | None]
    ) -> dict[str, Any]:
        """An empty list variable (``KONTEXT_CREDITS__ADMINS=`` in a Compose ``.env``)
        is the empty list; pydantic-settings would hand ``""`` to the list."""
        result = super().explode_env_vars(field_name, field, env_vars)
        section = field.annotation
        if isinstance(section, type) and issubclass(section, BaseModel):
            for key, value in result.items():
                inner = section.model_fields.get(key)
                if value == "" and _plain_list(inner):
                    result[key] = []
        return result

    def decode_complex_value(self, field_name: str, field: FieldInfo, value: Any) -> Any:
        try:
            return super().decode_complex_value(field_name, field, value)
        except ValueError:
            if isinstance(value, str) and _plain_list(field):
                stripped = value.strip()
                if not stripped.startswith("["):
                    return [part.strip() for part in stripped.split(",") if part.strip()]
            example = (
                '\'["a", "b"]\' or a,b'
                if _plain_list(field)
                else 'JSON, e.g. \'[{"name": "bfl", "api_key": "..."}]\''
            )
            raise ValueError(
                f"{field_name}: the value is not valid JSON; write it as {example}"
            ) from None


def env_error_line(exc: Exception) -> str:
    """One sentence for a ``SettingsError`` from the environment: the variable, what is
    wrong and how to write it."""
    text = str(exc)
    section = text.split('field "', 1)[1].split('"', 1)[0] if 'field "' in text else ""
    cause = exc.__cause__
    reason = str(cause) if isinstance(cause, ValueError) else ""
    key, _, how = reason.partition(": ")
    if section and key and key != section:
        name = f"KONTEXT_{section.upper()}__{key.upper()}"
    elif section:
        name = f"KONTEXT_{section.upper()}"
    else:
        name = "an environment variable"
    if not how:
        how = "its value is not valid JSON; a list or table must be written as JSON"
    return f"{name}: {how}"


__all__ = ["LenientEnvSource", "env_error_line"]
