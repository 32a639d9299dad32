"""What a run of AMI Setvar actions sets on a channel, read the way Asterisk
reads them: a plain ``Variable``/``Value``, or ``ARRAY(name,...)`` whose
names and value Asterisk splits with its argument parser
(``__ast_app_separate_args`` with remove_chars, main/app.c), written out
here from its rules rather than from the encoder's."""

from __future__ import annotations

from collections.abc import Iterable


def separate_args(text: str) -> list[str]:
    """Commas split, except inside (), [] or "..."; a quote is dropped; a
    backslash is dropped and the character after it kept as it is."""
    args: list[str] = []
    current: list[str] = []
    paren = bracket = 0
    quote = False
    chars = iter(text)
    for char in chars:
        if char == "(":
            paren += 1
        elif char == ")":
            paren = max(paren - 1, 0)
        elif char == "[":
            bracket += 1
        elif char == "]":
            bracket = max(bracket - 1, 0)
        elif char == '"':
            quote = not quote
            continue
        elif char == "\\":
            current.append(next(chars, ""))
            continue
        elif char == "," and not (paren or bracket or quote):
            args.append("".join(current))
            current = []
            continue
        current.append(char)
    if current or text.endswith(",") or not args:
        args.append("".join(current))
    return args


def variables_set(actions: Iterable[dict[str, str]]) -> dict[str, str]:
    found: dict[str, str] = {}
    for action in actions:
        if action["Action"] != "Setvar":
            continue
        name, value = action["Variable"], action["Value"]
        if name.startswith("ARRAY(") and name.endswith(")"):
            names, values = separate_args(name[6:-1]), separate_args(value)
            found.update({n: values[i] if i < len(values) else "" for i, n in enumerate(names)})
        else:
            found[name] = value
    return found
