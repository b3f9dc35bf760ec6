"""Run options declared once: an attrs field made by :func:`option` carries its help text, flag name,
suite-file aliases and parser, and its type annotation says how a raw value (a YAML scalar, or a flag's
string) becomes the field's type. The command line's flags, the suite-file keys and the coercion of their
values are all generated from these declarations (:func:`coerce`, :func:`declared`).
"""

from __future__ import annotations

import types
import typing
from collections.abc import Callable

import attrs

from ..errors import ConfigError, shown
from ..limits import SQLITE_INT_MAX

FLAG = "featbench.flag"  # "--name" (default: the field name with dashes); None: a suite-file key only
HELP = "featbench.help"
METAVAR = "featbench.metavar"
ALIASES = "featbench.aliases"  # other suite-file keys (and flags) for the same option
PARSE = "featbench.parse"  # parse(value, base_dir, from_flags) for values the annotation cannot describe
REPEAT = "featbench.repeat"  # the flag may be given several times (values are collected in a list)


def option(default=attrs.NOTHING, *, help: str, factory: Callable | None = None, flag: str | None = "",
           metavar: str | None = None, aliases: tuple[str, ...] = (), parse: Callable | None = None,
           repeat: bool = False, converter: Callable | None = None):
    """An attrs field that is a run option (see the module docstring). ``flag=None``: not a flag."""
    metadata = {FLAG: flag, HELP: help, METAVAR: metavar, ALIASES: aliases, PARSE: parse, REPEAT: repeat}
    if factory is not None:
        return attrs.field(factory=factory, metadata=metadata, converter=converter)
    return attrs.field(default=default, metadata=metadata, converter=converter)


def declared(cls: type) -> list[attrs.Attribute]:
    """The option fields of an attrs class, their annotations resolved to types."""
    attrs.resolve_types(cls)
    return [f for f in attrs.fields(cls) if HELP in f.metadata]


def flag_of(field: attrs.Attribute) -> str | None:
    flag = field.metadata[FLAG]
    return None if flag is None else flag or "--" + field.name.replace("_", "-")


def scalar_type(annotation) -> type:
    """``int``, ``float``, ``bool`` or ``str`` from ``T`` or ``T | None``."""
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        if len(args) == 1:
            return scalar_type(args[0])
    if annotation in (int, float, bool, str):
        return annotation
    raise TypeError(f"no scalar coercion for {annotation!r}: give the option a parse function")


def coerce(field: attrs.Attribute, value, base: str | None = None, from_flags: bool = False):
    """``value`` (from YAML, or argparse when ``from_flags``) as the field's type; a one-line ConfigError if it
    is not one. Paths are relative to ``base`` (a suite file's directory) where the option's parser says so."""
    parse = field.metadata[PARSE]
    if parse is not None:
        return parse(value, base, from_flags)
    if value is None:
        return None
    name, kind = field.name, scalar_type(field.type)
    if kind is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{name} must be true or false, not {shown(value)}", f"write {name}: true")
        return value
    if kind is int:
        if (
            isinstance(value, bool)
            or not isinstance(value, int)
            and not (isinstance(value, str) and value.strip().lstrip("-").isdigit())
        ):
            raise ConfigError(f"{name} must be a whole number, not {shown(value)}", f"e.g. {name}: 2")
        number = int(value) if isinstance(value, int) or len(value) < 40 else SQLITE_INT_MAX + 1
        if not -SQLITE_INT_MAX - 1 <= number <= SQLITE_INT_MAX:  # what every integer setting is recorded as
            raise ConfigError(
                f"{'--' + name.replace('_', '-') if from_flags else name + ':'} {shown(value)} is outside "
                f"{-SQLITE_INT_MAX - 1}..{SQLITE_INT_MAX} (settings are recorded as signed 64-bit integers)",
                "give a whole number in that range",
            )
        return number
    if kind is float:
        try:
            if isinstance(value, bool):
                raise TypeError
            return float(value)
        except (TypeError, ValueError):
            raise ConfigError(f"{name} must be a number, not {shown(value)}", f"e.g. {name}: 0.2") from None
    if not isinstance(value, (str, int, float)) or isinstance(value, bool):
        raise ConfigError(f"{name} must be a string, not {shown(value)}", f"e.g. {name}: ...")
    return str(value)
