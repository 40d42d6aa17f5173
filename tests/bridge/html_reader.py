"""A small HTML reader for the page tests: elements with their attributes, text, the form
they sit in and whether a label wraps them (what a screen reader and a script rely on)."""

from __future__ import annotations

from dataclasses import dataclass, field
from html.parser import HTMLParser


@dataclass
class Element:
    tag: str
    attrs: dict[str, str | None]
    in_label: bool = False
    form: int | None = None
    text: str = ""


@dataclass
class Page(HTMLParser):
    html: str
    elements: list[Element] = field(default_factory=list)

    def __post_init__(self):
        super().__init__(convert_charrefs=True)
        self._labels = 0
        self._form: int | None = None
        self._forms = 0
        self._open: list[Element] = []
        self.feed(self.html)

    def handle_starttag(self, tag, attrs):
        element = Element(tag, dict(attrs), self._labels > 0, self._form)
        self.elements.append(element)
        if tag == "label":
            self._labels += 1
        elif tag == "form":
            self._form = self._forms
            self._forms += 1
        if tag not in ("input", "meta", "link", "br", "img", "path"):
            self._open.append(element)

    def handle_endtag(self, tag):
        if tag == "label":
            self._labels -= 1
        elif tag == "form":
            self._form = None
        while self._open:
            if self._open.pop().tag == tag:
                break

    def handle_data(self, data):
        for element in self._open:
            element.text += data

    def all(self, tag: str | None = None, **attrs) -> list[Element]:
        """Elements with these attribute values; ``True`` means "present, any value"."""
        def matches(e: Element, name: str, value) -> bool:
            return name in e.attrs if value is True else e.attrs.get(name) == value
        return [e for e in self.elements if (tag is None or e.tag == tag)
                and all(matches(e, k.rstrip("_"), v) for k, v in attrs.items())]

    def one(self, tag: str | None = None, **attrs) -> Element:
        found = self.all(tag, **attrs)
        assert len(found) == 1, f"expected one {tag} {attrs}, found {len(found)}"
        return found[0]
