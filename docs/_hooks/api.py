"""MkDocs hooks for jrnn's API reference.

- ``on_pre_build``: every public name (``jrnn.__all__`` and the ``__all__`` of ``jrnn.init``, ``jrnn.sharding``,
  ``jrnn.flax.nnx`` and ``jrnn.flax.linen``) must have a docstring of its own and appear in an ``::: name``
  directive of a page under ``docs/api/``; otherwise the build fails, naming what is missing.
- ``on_page_content``: the Sphinx roles the docstrings use (``:func:`jrnn.scan```, ``:class:`LSTMState```) become
  links to the referenced object's entry (through mkdocs-autorefs), instead of printing the role.
"""

from __future__ import annotations

import importlib
import pathlib
import re

from mkdocs.exceptions import PluginError

NAMESPACES = ("jrnn", "jrnn.init", "jrnn.sharding", "jrnn.flax.nnx", "jrnn.flax.linen")
DIRECTIVE = re.compile(r"^:::\s+([\w.]+)", flags=re.M)
ROLE = re.compile(r":(?:func|class|meth|mod|attr|data|obj):<code>~?([\w.]+?)(\(\))?</code>")


def _resolve(dotted: str) -> object:
    """``jrnn.flax.nnx`` -> that object (an attribute, not always a submodule)."""
    head, *rest = dotted.split(".")
    obj = importlib.import_module(head)
    for i, part in enumerate(rest):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            obj = importlib.import_module(".".join([head, *rest[:i + 1]]))
    return obj


def _public_names() -> dict[str, object]:
    names = {}
    for namespace in NAMESPACES:
        module = _resolve(namespace)
        exported = getattr(module, "__all__", None)
        if exported is None:
            raise PluginError(f"{namespace} has no __all__: the API reference cannot know its public names")
        for name in exported:
            names[f"{namespace}.{name}"] = getattr(module, name)
    return names


def _has_own_docstring(obj: object) -> bool:
    doc = (getattr(obj, "__doc__", None) or "").strip()
    if not doc:
        return False
    name = getattr(obj, "__name__", "")
    # A NamedTuple or dataclass without a docstring gets a generated one: "Name(field, ...)".
    return not re.fullmatch(rf"{re.escape(name)}\(.*\)", doc, flags=re.S)


def on_pre_build(config, **kwargs) -> None:
    api = pathlib.Path(config["docs_dir"]) / "api"
    documented = set()
    for page in sorted(api.glob("*.md")):
        documented.update(DIRECTIVE.findall(page.read_text()))
    problems = []
    for qualname, obj in _public_names().items():
        if qualname not in documented:
            problems.append(f"{qualname} is in __all__ but no docs/api/*.md page has '::: {qualname}'")
        if not _has_own_docstring(obj):
            problems.append(f"{qualname} has no docstring")
    unknown = sorted(d for d in documented if d not in _public_names() and d not in NAMESPACES + ("jrnn.flax",))
    problems += [f"docs/api documents {d}, which is not a public name" for d in unknown]
    if problems:
        raise PluginError("the API reference is incomplete:\n  " + "\n  ".join(problems))


def _identifier(name: str) -> str:
    """``scan`` -> ``jrnn.scan`` for a short public name; a dotted name stays as written."""
    if "." in name:
        return name
    import jrnn

    return f"jrnn.{name}" if name in jrnn.__all__ else name


def on_page_content(html: str, page, config, files) -> str:
    def link(match: re.Match) -> str:
        name = match.group(1) + (match.group(2) or "")
        return f'<autoref identifier="{_identifier(match.group(1))}" optional><code>{name}</code></autoref>'

    return ROLE.sub(link, html)
