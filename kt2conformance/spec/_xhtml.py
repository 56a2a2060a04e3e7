"""Narrative XHTML as the HL7 validator reads and checks it.

FHIR's `xhtml` (Narrative.div) is judged by what a Koppeltaal server runs: HAPI FHIR 8.2's
validator (org.hl7.fhir 6.5.18). It does not use an XML parser: `XhtmlParser` in XML mode reads
the text leniently (nothing after the root element's end is read; an unclosed root is closed at
the end; attributes without values are allowed; a mismatched end tag, an unknown entity, a `<`
not starting a tag, are errors), and `InstanceValidator` then checks the tree: the XHTML
namespace, a `div` root, only the basic HTML elements and attributes, no block element inside a
paragraph, well-formed `href`/`src` URLs, no active (`javascript:`) or literal (`urn:`, `cid:`)
links, `#` links and images that resolve inside the resource, idrefs that name one element. The
FHIRPath functions behind txt-1 (`htmlChecks()`: allowed names) and txt-2 (`htmlChecks2()`:
some text or an image) read the same tree.

`parse` ports the parser; `problems` the context-free checks; `fragment_problems` those that look
into the resource; `names_ok` and `has_content` are txt-1 and txt-2.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from kt2conformance.spec._lexical import is_absolute_url

__all__ = ["XNode", "XhtmlError", "fragment_problems", "has_content", "names_ok", "parse", "problems"]

XHTML_NS = "http://www.w3.org/1999/xhtml"
_END = "\uffff"  # the Java parser's END_OF_CHARS, (char) -1
_UNDEFINED_NS = "http://error/undefined-namespace"
_XML_ENTITIES = {"quot": '"', "amp": "&", "apos": "'", "lt": "<", "gt": ">"}

# InstanceValidator.HTML_ELEMENTS (also FHIRPathEngine.checkHtmlNames' list)
HTML_ELEMENTS = frozenset({
    "p", "br", "div", "h1", "h2", "h3", "h4", "h5", "h6", "a", "span", "b", "em", "i", "strong",
    "small", "big", "tt", "dfn", "q", "var", "abbr", "acronym", "cite", "blockquote", "hr", "address",
    "bdo", "kbd", "sub", "sup", "ul", "ol", "li", "dl", "dt", "dd", "pre", "table", "caption",
    "colgroup", "col", "thead", "tr", "tfoot", "tbody", "th", "td", "code", "samp", "img", "map", "area"})
HTML_ATTRIBUTES = frozenset({
    "title", "style", "class", "id", "idref", "lang", "xml:lang", "dir", "accesskey", "tabindex",
    "span", "width", "align", "valign", "char", "charoff", "abbr", "axis", "headers", "scope", "rowspan",
    "colspan"})
HTML_COMBOS = frozenset({
    "a.href", "a.name", "img.src", "img.border", "div.xmlns", "blockquote.cite", "q.cite", "a.charset",
    "a.type", "a.hreflang", "a.rel", "a.rev", "a.shape", "a.coords", "img.alt", "img.longdesc",
    "img.height", "img.width", "img.usemap", "img.ismap", "map.name", "area.shape", "area.coords",
    "area.href", "area.nohref", "area.alt", "table.summary", "table.width", "table.border", "table.frame",
    "table.rules", "table.cellspacing", "table.cellpadding", "pre.space", "td.nowrap"})
_BLOCKS = frozenset({"div", "blockquote", "table", "ol", "ul", "p"})
_URL_PUNCTUATION = frozenset(";?:@&=+$.,/%-_~#[]!'()*|")
# MimeTypeUtil.checkValidMimeType (Java's \w and \s are ASCII)
_MIME = re.compile(r"(\w+|\*)/([\w\-+]+|\*)((;\s*(\w+)=\s*(\S+))?)", re.ASCII)


class XhtmlError(Exception):
    """The text cannot be read as XHTML (the validator's "Error parsing XHTML")."""


@dataclass
class XNode:
    """A node of the parsed tree: an element (name, attributes, children), text or a comment."""

    kind: str  # "element", "text" or "comment"
    name: str = ""
    attributes: dict[str, str | None] = field(default_factory=dict)
    children: list[XNode] = field(default_factory=list)
    content: str = ""

    def elements(self) -> Iterator[XNode]:
        """This node and every element below it, in document order."""
        if self.kind == "element":
            yield self
            for child in self.children:
                yield from child.elements()


@dataclass
class _Namespaces:
    default: str | None = None
    original_prefix: str | None = None
    prefixes: dict[str, str | None] = field(default_factory=dict)

    def copy(self) -> _Namespaces:
        return _Namespaces(self.default, self.original_prefix, dict(self.prefixes))

    def of_prefix(self, prefix: str) -> str | None:
        if self.original_prefix is not None and self.original_prefix == prefix:
            return self.default
        return self.prefixes[prefix] if prefix in self.prefixes else _UNDEFINED_NS


def _java_whitespace(ch: str) -> bool:
    """Character.isWhitespace."""
    if ch in "\t\n\u000b\u000c\r\u001c\u001d\u001e\u001f":
        return True
    return unicodedata.category(ch) in ("Zs", "Zl", "Zp") and ch not in "\u00a0\u2007\u202f"


def _letter_or_digit(ch: str) -> bool:
    """Character.isLetterOrDigit (per UTF-16 unit: astral characters are not letters to it)."""
    if ch == _END or ord(ch) > 0xFFFF:
        return False
    category = unicodedata.category(ch)
    return category[0] == "L" or category == "Nd"


def _name_char(ch: str) -> bool:
    return _letter_or_digit(ch) or ch in "_-:."


def _split_name(text: str) -> tuple[str | None, str]:
    prefix, colon, local = text.partition(":")
    return (prefix, local) if colon else (None, text)


def _java_int(text: str, base: int) -> int | None:
    """Integer.parseInt: an optional sign and digits, within 32 bits; None otherwise."""
    digits = "0-9" if base == 10 else "0-9a-fA-F"
    if not re.fullmatch(f"[+-]?[{digits}]+", text, re.ASCII):
        return None
    value = int(text, base)
    return value if -(2**31) <= value < 2**31 else None


class _Parser:
    """XhtmlParser.parse in XML mode, must be well-formed (as the validator's JSON reader runs it)."""

    def __init__(self, source: str) -> None:
        self.text = source
        self.pos = 0
        self.entity_issue = False

    def peek(self) -> str:
        return self.text[self.pos] if self.pos < len(self.text) else _END

    def read(self) -> str:
        ch = self.peek()
        if ch != _END:
            self.pos += 1
        return ch

    def parse(self) -> XNode:
        self.skip_whitespace_and_comments()
        if self.peek() != "<":
            raise XhtmlError(f"does not start with a tag (found {self.peek()!r})")
        self.read()
        prefix, local = _split_name(self.read_name().lower())
        root = XNode("element", local)
        self.attributes(root)
        namespaces = self.normalize(prefix, root, None, True)
        if self.read() == "/":
            if self.peek() != ">":
                raise XhtmlError(f"unexpected non-end of element {local}")
            self.read()
        else:
            self.inner(root, namespaces)
        return root

    def skip_whitespace_and_comments(self) -> None:
        while True:
            while _java_whitespace(self.peek()) or self.peek() == "\ufeff":
                self.read()
            if self.peek() != "<":
                return
            self.read()
            if self.peek() == "!":
                self.read()
                if self.peek() == "-":
                    self.read()
                    if self.peek() != "-":
                        raise XhtmlError(f"unrecognised element type <!{self.peek()}")
                    self.read()
                    if self.peek() == " ":
                        self.read()
                    self.comment_end()
                else:
                    self.doctype_end()
            elif self.peek() == "?":
                if len(self.tag_end()) < 2:
                    raise XhtmlError("a processing instruction without content")
            else:
                self.pos -= 1  # pushChar('<')
                return

    def inner(self, node: XNode, namespaces: _Namespaces) -> None:
        text: list[str] = []
        while self.peek() != _END:
            ch = self.peek()
            if ch == "<":
                self.add_text(node, text)
                self.read()
                if self.peek() == "!":
                    node.children.append(XNode("comment", content=self.comment_end()))
                elif self.peek() == "?":
                    node.children.append(XNode("comment", content=self.tag_end()))
                elif self.peek() == "/":
                    self.read()
                    _, local = _split_name(self.tag_end())
                    if node.name == local:
                        return
                    raise XhtmlError(f'Malformed XHTML: found "</{local}>" expecting "</{node.name}>"')
                elif _letter_or_digit(self.peek()):
                    self.element(node, namespaces)
                else:
                    raise XhtmlError(f"node {node.name!r} has unexpected content {self.peek()!r}")
            elif ch == "&":
                self.literal(text)
            else:
                text.append(self.read())
        self.add_text(node, text)

    @staticmethod
    def add_text(node: XNode, text: list[str]) -> None:
        if text:
            node.children.append(XNode("text", content="".join(text)))
            text.clear()

    def element(self, parent: XNode, namespaces: _Namespaces) -> None:
        prefix, local = _split_name(self.read_name())
        node = XNode("element", local)
        parent.children.append(node)
        self.attributes(node)
        inner_namespaces = self.normalize(prefix, node, namespaces, False)
        if self.read() == "/":
            if self.peek() != ">":
                raise XhtmlError(f"unexpected non-end of element {local}")
            self.read()
        elif local == "script":
            script: list[str] = []
            while self.peek() != _END and not "".join(script[-9:]).endswith("</script>"):
                script.append(self.read())
        else:
            self.inner(node, inner_namespaces)

    def attributes(self, node: XNode) -> None:
        while _java_whitespace(self.peek()):
            self.read()
        while self.peek() not in (">", "/", _END):
            name = self.read_name()
            if not name:
                raise XhtmlError(f"unable to read an attribute on <{node.name}>")
            while _java_whitespace(self.peek()):
                self.read()
            if _name_char(self.peek()) or self.peek() in (">", "/"):
                node.attributes[name] = None
            elif self.peek() != "=":
                raise XhtmlError(f"unable to read the value of attribute {name!r} on <{node.name}>")
            else:
                self.read()
                while _java_whitespace(self.peek()):
                    self.read()
                quote = self.read() if self.peek() in ('"', "'") else _END
                node.attributes[name] = self.attribute_value(quote)
            while _java_whitespace(self.peek()):
                self.read()

    def attribute_value(self, term: str) -> str:
        value: list[str] = []
        while self.peek() != _END and self.peek() != ">" and (term != _END or self.peek() != "/") \
                and self.peek() != term:
            if self.peek() == "&":
                self.literal(value)
            else:
                value.append(self.read())
        if self.peek() == term:
            self.read()
        return "".join(value)

    def normalize(self, prefix: str | None, node: XNode, parent: _Namespaces | None, root: bool) -> _Namespaces:
        """XhtmlParser.normalizeNamespaces: declarations move into the map; the element's own
        namespace is stated as `xmlns` where it differs from its parent's."""
        mine = parent.copy() if parent is not None else _Namespaces()
        for name in list(node.attributes):
            if name == "xmlns":
                mine.default = node.attributes.pop(name)
            elif name.startswith("xmlns:"):
                mine.prefixes[name[6:]] = node.attributes.pop(name)
        if prefix is not None:
            namespace = mine.of_prefix(prefix)
            if namespace is None:
                raise XhtmlError(f"namespace prefix {prefix!r} has no value")
            if namespace != mine.default:
                node.attributes["xmlns"] = namespace
                mine.default, mine.original_prefix = namespace, prefix
                mine.prefixes.pop(prefix, None)
        if mine.default is not None and (root or parent is None or mine.default != parent.default):
            node.attributes["xmlns"] = mine.default
        for name, value in mine.prefixes.items():
            if root or parent is None or name not in parent.prefixes:
                node.attributes[f"xmlns:{name}"] = value
        return mine

    def literal(self, out: list[str]) -> None:
        self.read()  # &
        name: list[str] = []
        while self.peek() not in ";&'\"><":
            if self.peek() == _END:
                # the Java parser loops here for ever: never a valid narrative
                raise XhtmlError("an entity reference runs to the end of the text")
            name.append(self.read())
        self.read()
        ref = "".join(name)
        if not ref:
            raise XhtmlError(f"invalid literal declaration following text {''.join(out)!r}")
        if ref[0] == "#":
            if len(ref) < 2:
                raise XhtmlError("an empty character reference")
            number = _java_int(ref[1:], 10)
            if number is None and ref[1] == "x":
                number = _java_int(ref[2:], 16)
            if number is not None:
                if not 0 <= number <= 0x10FFFF:
                    raise XhtmlError(f"&{ref}; is not a character")
                out.append(chr(number))
            return
        if ref not in _XML_ENTITIES:
            # XML mode: only XML's five entities; an HTML one is an issue, an unknown one fatal
            self.entity_issue = True
            out.append("?")
            return
        out.append(_XML_ENTITIES[ref])

    def tag_end(self) -> str:
        out: list[str] = []
        while self.peek() not in (">", _END):
            out.append(self.read())
        if self.peek() == _END:
            raise XhtmlError("unexpected end of the html source")
        self.read()
        return "".join(out)

    def doctype_end(self) -> str:
        out: list[str] = []
        while self.peek() != ">":
            if self.peek() == _END:
                raise XhtmlError("unexpected end of the html source")
            out.append(self.read())
        self.read()
        return "".join(out)

    def comment_end(self) -> str:
        """readToCommentEnd: after `<!` (or `<!--`), to the end of the comment (or `<!…>`)."""
        if self.peek() == "!":
            self.read()
        out: list[str] = []
        simple = True
        if self.peek() == "-":
            self.read()
            simple = self.peek() != "-"
            if simple:
                out.append("-")
            else:
                self.read()
        doctype_entities = False
        while True:
            ch = self.peek()
            if ch == "-":
                self.read()
                if self.peek() == "-":
                    self.read()
                    if self.peek() == ">":
                        break
                    self.pos -= 1  # pushChar('-')
                    out.append("-")
                else:
                    out.append("-")
            elif doctype_entities and ch == "]":
                out.append(self.read())
                if self.peek() == ">":
                    break
            elif simple and ch == ">" and not doctype_entities:
                break
            elif ch == "[" and "".join(out).startswith("DOCTYPE "):
                doctype_entities = True
                out.append(self.read())
            elif ch != _END:
                out.append(self.read())
            else:
                raise XhtmlError("unexpected end of the html source")
        self.read()
        return "".join(out)

    def read_name(self) -> str:
        out: list[str] = []
        while _name_char(self.peek()):
            out.append(self.read())
        return "".join(out)


@lru_cache(maxsize=1024)
def _parsed(div: str) -> tuple[XNode | None, str | None]:
    parser = _Parser(div)
    try:
        root = parser.parse()
    except XhtmlError as exc:
        return None, f"cannot be read as XHTML: {exc}"
    except RecursionError:
        return None, "cannot be read as XHTML: nested too deep"
    return root, ("an HTML entity (XHTML knows only &quot; &amp; &apos; &lt; &gt;)" if parser.entity_issue else None)


def parse(div: str) -> XNode | None:
    """The tree the validator reads from a div, or None when it cannot read one."""
    return _parsed(div)[0]


def problems(div: str) -> list[str]:
    """What the validator refuses in a div, without looking outside it: its reading, the
    namespace, the root's name, the elements and attributes, block elements in a paragraph,
    links and image sources as URLs, active and literal links."""
    root, issue = _parsed(div)
    if root is None:
        return [issue or "cannot be read as XHTML"]
    found = [issue] if issue else []
    if root.attributes.get("xmlns") != XHTML_NS:
        found.append(f"the narrative's namespace must be {XHTML_NS}, not {root.attributes.get('xmlns')!r}")
    if root.name != "div":
        found.append(f"the narrative's root element must be div, not {root.name!r}")
    for child in root.children:
        _inner(child, False, found)
    for node in root.elements():
        if node.name == "a" and node.attributes.get("href") is not None:
            found.extend(_link_problems(node.attributes["href"] or ""))
        if node is not root and node.name in ("a", "img"):
            url = node.attributes.get("href" if node.name == "a" else "src")
            problem = _url_problem(url)
            if problem is not None:
                found.append(problem)
    return found


def _inner(node: XNode, in_para: bool, found: list[str]) -> None:
    """checkInnerNS and checkInnerNames."""
    if node.kind == "comment" and node.content.startswith("DOCTYPE"):
        found.append("a DOCTYPE declaration in the narrative")
    if node.kind != "element":
        return
    namespace = node.attributes.get("xmlns")
    if namespace is not None and namespace != XHTML_NS:
        found.append(f"an element of namespace {namespace!r} in the narrative")
    if node.name not in HTML_ELEMENTS:
        found.append(f"element {node.name!r} is not allowed in the narrative")
    for name in node.attributes:
        if not (name.startswith("xmlns") or name in HTML_ATTRIBUTES or f"{node.name}.{name}" in HTML_COMBOS
                or name == "xml:space"):
            found.append(f"attribute {name!r} is not allowed on {node.name!r} in the narrative")
    if in_para and node.name in _BLOCKS:
        found.append(f"a {node.name!r} is not allowed inside a paragraph")
    for child in node.children:
        _inner(child, in_para or node.name == "p", found)


def _link_problems(href: str) -> list[str]:
    """checkReferences, the part that needs nothing but the link."""
    if not href:
        return ["a hyperlink with an empty href"]
    if not href.startswith("#") and ":" in href and is_absolute_url(href):
        scheme = href.split(":", 1)[0]
        if scheme in ("javascript", "vbscript"):
            return [f"hyperlink {href!r} has active content ({scheme}:)"]
        if scheme in ("urn", "cid"):
            return [f"hyperlink {href!r} is a literal ({scheme}:), not a link"]
    return []


def _url_problem(url: str | None) -> str | None:
    """UrlUtil.checkValidUrl."""
    if url is None:
        return None
    if not url:
        return "an empty URL in the narrative"
    if url.startswith("data:"):
        parts = url[5:].split(",")
        while len(parts) > 1 and parts[-1] == "":
            parts.pop()  # Java's split drops trailing empty strings
        if len(parts) < 2:
            return f"data URL {url[:40]!r} has no data"
        if len(parts) > 2:
            return f"data URL {url[:40]!r} has more than one comma"
        head = parts[0].lstrip(" ")
        if head.endswith(";base64") and not _valid_base64(parts[1]):
            return f"data URL {url[:40]!r} has invalid base64 data"
        mime = head[: head.rfind(";")] if head.endswith(";base64") else head
        if mime.strip() and not _mime_ok(mime):
            return f"data URL {url[:40]!r} has an invalid media type"
        return None
    bad = sorted({ch for ch in url if not (unicodedata.category(ch) == "Nd" or ch.isalpha() or ch in _URL_PUNCTUATION)})
    return f"URL {url[:60]!r} has characters a URL may not have: {bad}" if bad else None


def _valid_base64(text: str) -> bool:
    """Base64Util.isValidBase64: letters, digits and `/=+` counted (whitespace skipped) come in
    fours; nothing else is looked at."""
    count = sum(1 for ch in text if ch.isalnum() or ch in "/=+")
    return count == 0 or count % 4 == 0


def _mime_ok(mime: str) -> bool:
    """MimeTypeUtil.checkValidMimeType."""
    return bool(_MIME.fullmatch(mime))


def fragment_problems(div: str, resource: Any) -> list[str]:
    """What needs the resource around the narrative: `#` links name an element id or an anchor
    in it, `#` image sources exactly one id, and an idref at most one."""
    root = parse(div)
    if root is None:
        return []
    found: list[str] = []
    for node in root.elements():
        href = node.attributes.get("href") if node.name == "a" else None
        if href is not None and href.startswith("#") and href != "#" \
                and _count(resource, href[1:], anchors=True) == 0:
            found.append(f"hyperlink {href!r} names nothing in the resource")
        src = node.attributes.get("src") if node.name == "img" else None
        if src is not None and src.startswith("#"):
            n = _count(resource, src[1:], anchors=False)
            if n != 1:
                found.append(f"image source {src!r} " + ("names nothing in the resource" if n == 0 else
                                                         "names more than one element"))
        idref = node.attributes.get("idref")
        if idref is not None and _count(resource, idref, anchors=False) > 1:
            found.append(f"idref {idref!r} names more than one element")
    return found


def _count(value: Any, fragment: str, anchors: bool) -> int:
    """countFragmentMatches / countTargetMatches: elements with this id in the resource, and ids
    (and, for links, `<a name>` anchors) in its narratives."""
    count = 0
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, list):
            stack.extend(item)
        elif isinstance(item, dict):
            if item.get("id") == fragment:
                count += 1
            div = item.get("div")
            if isinstance(div, str):
                tree = parse(div)
                if tree is not None:
                    for node in tree.elements():
                        count += node.attributes.get("id") == fragment
                        count += anchors and node.name == "a" and node.attributes.get("name") == fragment
            stack.extend(v for v in item.values() if isinstance(v, (dict, list)))
    return count


def names_ok(div: Any) -> bool:
    """txt-1 as the validator evaluates `htmlChecks()`: every element and attribute (the root's
    included) is in its lists, and no DOCTYPE."""
    root = parse(div) if isinstance(div, str) else None
    return root is not None and _names_ok(root)


def _names_ok(node: XNode) -> bool:
    if node.kind == "comment":
        return not node.content.startswith("DOCTYPE")
    if node.kind != "element":
        return True
    if node.name not in HTML_ELEMENTS:
        return False
    for name in node.attributes:
        if not (name.startswith("xmlns") or name in HTML_ATTRIBUTES or name == "xml:space"
                or f"{node.name}.{name}" in HTML_COMBOS):
            return False
    return all(_names_ok(child) for child in node.children)


def has_content(div: Any) -> bool:
    """txt-2 as the validator evaluates it (`htmlChecks2()`): some text that is not whitespace
    (Java's trim: characters up to U+0020), or an image."""
    root = parse(div) if isinstance(div, str) else None
    return root is not None and _has_content(root)


def _has_content(node: XNode) -> bool:
    if node.kind == "text":
        return bool(node.content.strip("".join(chr(c) for c in range(33))))
    if node.kind == "element" and node.name == "img":
        return True
    return any(_has_content(child) for child in node.children)

