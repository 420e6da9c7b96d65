"""XML bodies: the document as a dict in xmltodict's shape, parsed by expat through ``defusedxml``."""

from __future__ import annotations

from typing import Any

from pullctl.run.formats.base import FormatError, Parser


class Xml(Parser):
    """The document as a dict, built from the parser's events (no element tree is kept)."""

    rows = False

    def __init__(self) -> None:
        from defusedxml.ElementTree import DefusedXMLParser

        self._tree = _DictBuilder()
        self._parser = DefusedXMLParser(target=self._tree)

    def feed(self, data: bytes) -> list[Any]:
        self._guarded(self._parser.feed, data)
        return []

    def close(self) -> list[Any]:
        self._guarded(self._parser.close)
        return [self._tree.root]

    @staticmethod
    def _guarded(call: Any, *args: Any) -> None:
        from xml.etree.ElementTree import ParseError

        from defusedxml import EntitiesForbidden, ExternalReferenceForbidden

        try:
            call(*args)
        except EntitiesForbidden as exc:
            raise FormatError(
                f"XML entity declarations are refused (entity {exc.name!r}): expanding entities (a 'billion"
                " laughs' payload) could exhaust memory"
            ) from None
        except ExternalReferenceForbidden as exc:
            raise FormatError(f"XML external entity references are refused ({exc.sysid!r})") from None
        except ParseError as exc:
            raise FormatError(f"not well-formed XML: {exc}") from None


class _DictBuilder:
    """ElementTree parser target -> xmltodict's shape: attributes as ``@name``, text as ``#text`` beside
    attributes or children (else the element is its text, or null when empty), repeated children as a
    list; namespaced names as ``prefix:name`` with the document's own prefixes."""

    def __init__(self) -> None:
        self.root: dict[str, Any] | None = None
        self._stack: list[tuple[str, dict[str, Any], list[str]]] = []
        self._prefixes: dict[str, str] = {}
        self._declared: list[tuple[str, str]] = []

    def start_ns(self, prefix: str, uri: str) -> None:
        self._prefixes[uri] = prefix
        self._declared.append((prefix, uri))

    def _name(self, tag: str) -> str:
        if not tag.startswith("{"):
            return tag
        uri, _, local = tag[1:].partition("}")
        prefix = self._prefixes.get(uri, "")
        return f"{prefix}:{local}" if prefix else local

    def start(self, tag: str, attrs: dict[str, str]) -> None:
        node = {f"@xmlns:{p}" if p else "@xmlns": uri for p, uri in self._declared}
        self._declared = []
        node.update({f"@{self._name(k)}": v for k, v in attrs.items()})
        self._stack.append((self._name(tag), node, []))

    def data(self, text: str) -> None:
        self._stack[-1][2].append(text)

    def end(self, tag: str) -> None:
        name, node, texts = self._stack.pop()
        text = "".join(texts).strip()
        value: Any
        if node:
            if text:
                node["#text"] = text
            value = node
        else:
            value = text or None
        if not self._stack:
            self.root = {name: value}
            return
        parent = self._stack[-1][1]
        if name not in parent:
            parent[name] = value
        elif isinstance(parent[name], list):
            parent[name].append(value)
        else:
            parent[name] = [parent[name], value]

    def close(self) -> dict[str, Any] | None:
        return self.root
