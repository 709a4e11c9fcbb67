"""The watchlist query language: text -> syntax tree (pure).

A watchlist says what it wants either as lists (``all:``, ``any:``, ``none:``)
or as a query, or both (ANDed)::

    query: '("North Korea*" OR Pyongyang OR DPRK) AND (Ukraine OR Kursk) NOT "South Korea"'

The language, loosest-binding first:

=====================  ==========================================================
``a OR b``             either
``a AND b``, ``a b``   both (adjacent terms are ANDed)
``NOT a``, ``-a``      not; ``a NOT b`` means ``a AND NOT b``
``a NEAR/5 b``         both, at most 5 words apart, either order, in one field
``(...)``              grouping
``title:x``            scope a term, phrase or group to a field: ``title:``,
                       ``summary:``, ``source:`` (the feed's name) or ``link:``
``word``, ``"a b"``    a word, a phrase (consecutive words)
``word*``, ``"a b*"``  prefix wildcard on the (last) word
=====================  ==========================================================

Words are compared after :func:`monitor.text.tokenize`, so case, accents and
punctuation do not matter and ``North-Korean`` is the phrase ``north korean``.
Unscoped terms look in the title and the summary, but a phrase never spans the
two. ``link:`` is different: its text is a case-insensitive substring of the
link's host and path, not words. Operators are upper case only (``and`` is a
word); put anything that looks like syntax in quotes.

The tree is made of frozen dataclasses: :class:`Term` leaves under
:class:`And`, :class:`Or`, :class:`Not` and :class:`Near`. A field scope is not a
node: the parser pushes it down into each term. Nothing here knows how matching
is done; ``monitor.match`` compiles these trees, and :func:`render` turns a tree
back into query text (``parse(render(node)) == node``).

A query that can match without any of its terms present (``NOT x``,
``a OR NOT b``) would alert on nearly every entry; :func:`validate` rejects it,
and :func:`condition` builds a watchlist's whole condition and validates it.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from monitor.errors import QueryError
from monitor.text import is_cjk, normalize, tokenize

__all__ = [
    "FIELDS",
    "And",
    "Near",
    "Node",
    "Not",
    "Or",
    "Term",
    "condition",
    "from_lists",
    "parse",
    "render",
    "terms",
    "validate",
]

FIELDS = frozenset({"title", "summary", "source", "link"})
MAX_DEPTH = 32  # nested groups and NOTs; deeper than any real watchlist


@dataclass(frozen=True, slots=True, kw_only=True)
class Term:
    """A word or phrase. ``words`` are normalised tokens; with ``prefix`` the
    last one is a prefix. ``field`` is None for title-or-summary. For
    ``field == "link"`` ``words`` holds one normalised substring instead.
    ``source_text`` is the term as the user wrote it (no quotes, no field), the
    text that alerts show and highlight."""

    words: tuple[str, ...]
    prefix: bool = False
    field: str | None = None
    source_text: str


@dataclass(frozen=True, slots=True)
class And:
    children: tuple[Node, ...]


@dataclass(frozen=True, slots=True)
class Or:
    children: tuple[Node, ...]


@dataclass(frozen=True, slots=True)
class Not:
    child: Node


@dataclass(frozen=True, slots=True, kw_only=True)
class Near:
    """Both terms within ``distance`` words of each other (that many words or
    fewer between them), in either order, within one field."""

    left: Term
    right: Term
    distance: int


Node = Term | And | Or | Not | Near


# --- Building terms ---------------------------------------------------------------


def _word_term(text: str, *, field: str | None, offset: int, literal: bool) -> Term:
    """A Term from a word or the inside of a phrase. In query syntax (not
    ``literal``) a ``*`` anywhere but at the end is an error."""
    source_text = text
    if field == "link":
        return _link_term(text, offset=offset)
    prefix = text.endswith("*")
    body = text[:-1] if prefix else text
    if not literal and "*" in body:
        raise QueryError(
            "wildcard * is only allowed at the end of a term", offset=offset + body.index("*")
        )
    if prefix and not literal and not _ends_in_word(body):
        raise QueryError(
            "wildcard * must follow a word directly (inside the quotes for a phrase)",
            offset=offset + len(text) - 1,
        )
    words = tuple(tokenize(body))
    if not words:
        raise QueryError(f"term {text!r} has no letters or digits", offset=offset)
    if prefix:
        last = words[-1]
        if len(last) < 2 and not is_cjk(last):
            raise QueryError(
                "wildcard * needs at least two letters before it", offset=offset + len(text) - 1
            )
    return Term(words=words, prefix=prefix, field=field, source_text=source_text)


def _ends_in_word(text: str) -> bool:
    return bool(text) and bool(tokenize(text[-1]))


_SCHEME = re.compile(r"^[a-z][a-z0-9+.-]*://")


def _link_term(text: str, *, offset: int) -> Term:
    value = _SCHEME.sub("", normalize(text)).rstrip("*")
    if not value:
        raise QueryError("link: needs some text of the link's host or path", offset=offset)
    if any(c.isspace() for c in value):
        raise QueryError("link: text cannot contain spaces", offset=offset)
    return Term(words=(value,), prefix=False, field="link", source_text=text)


# --- Lexer -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Token:
    kind: str  # ( ) AND OR NOT NEAR FIELD WORD PHRASE END
    text: str
    offset: int
    number: int = 0  # NEAR distance


_FIELD_PREFIX = re.compile(r"([A-Za-z]+):")
_NEAR = re.compile(r"NEAR(?:/(.*))?")
#: The largest NEAR distance: words apart within one field, which a summary's
#: length bounds long before; the matcher's core counts positions in 32 bits.
NEAR_MAX = 10_000
_DIGITS = re.compile(r"[0-9]+")
#: What opens a phrase, and what closes one: "North Korea", “North Korea”,
#: „Nordkorea“.
_QUOTES = '"\u201c\u201d\u201e'
_CLOSING = re.compile('["\u201c\u201d]')
_BARE = re.compile('[^\\s()"\u201c\u201d\u201e]+')


def _lex(text: str) -> Iterator[_Token]:
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c.isspace():
            i += 1
        elif c in "()":
            yield _Token(c, c, i)
            i += 1
        elif c in _QUOTES:  # straight, or curly as a word processor or Slack writes them
            m = _CLOSING.search(text, i + 1)
            if m is None:
                raise QueryError('unterminated phrase: missing closing "', offset=i)
            yield _Token("PHRASE", text[i + 1 : m.start()], i)
            i = m.end()
        elif c == "-":
            if i + 1 >= n or text[i + 1].isspace() or text[i + 1] == ")":
                raise QueryError("- needs a term right after it (-word means NOT word)", offset=i)
            yield _Token("NOT", "-", i)
            i += 1
        else:
            m = _BARE.match(text, i)
            assert m is not None
            word = m.group()
            field = _FIELD_PREFIX.match(word)
            if field:
                name = field.group(1).lower()
                if name not in FIELDS:
                    raise QueryError(
                        f"unknown field {field.group(1)!r}: use title:, summary:, source: or"
                        " link: (or quote the term)",
                        offset=i,
                    )
                yield _Token("FIELD", name, i)
                i += field.end()
                if name == "link" and i < n and not text[i].isspace() and text[i] not in '()"':
                    # A link's text is not query syntax: take it whole.
                    m = _BARE.match(text, i)
                    assert m is not None
                    yield _Token("WORD", m.group(), i)
                    i = m.end()
                continue
            if word in ("AND", "OR", "NOT"):
                yield _Token(word, word, i)
            elif near := _NEAR.fullmatch(word):
                if not _DIGITS.fullmatch(near.group(1) or ""):
                    raise QueryError("NEAR/n needs a number, as in NEAR/5", offset=i)
                if len(near.group(1)) > 6 or int(near.group(1)) > NEAR_MAX:
                    raise QueryError(f"NEAR/n takes n up to {NEAR_MAX} (words apart in one "
                                     "field)", offset=i)
                yield _Token("NEAR", word, i, int(near.group(1)))
            else:
                yield _Token("WORD", word, i)
            i = m.end()
    yield _Token("END", "", n)


# --- Parser ------------------------------------------------------------------------


class _Parser:
    """Recursive descent over the grammar::

    query   := or
    or      := and ("OR" and)*
    and     := unary (["AND"] unary | "NOT" unary)*
    unary   := ("NOT" | "-") unary | near
    near    := primary ["NEAR/n" primary]
    primary := "(" or ")" | FIELD ":" primary | WORD | PHRASE
    """

    def __init__(self, text: str) -> None:
        self.tokens = list(_lex(text))
        self.pos = 0
        self.depth = 0

    @property
    def peek(self) -> _Token:
        return self.tokens[self.pos]

    def take(self) -> _Token:
        token = self.tokens[self.pos]
        self.pos += 1
        return token

    def parse(self) -> Node:
        if self.peek.kind == "END":
            raise QueryError("empty query", offset=0)
        node = self.or_(None, field=None)
        token = self.peek
        if token.kind == ")":
            raise QueryError("unbalanced parenthesis: no ( for this )", offset=token.offset)
        assert token.kind == "END", token
        return node

    def or_(self, after: _Token | None, *, field: str | None) -> Node:
        children = [self.and_(after, field=field)]
        while self.peek.kind == "OR":
            op = self.take()
            children.append(self.and_(op, field=field))
        return children[0] if len(children) == 1 else Or(tuple(children))

    def and_(self, after: _Token | None, *, field: str | None) -> Node:
        children = [self.unary(after, field=field)]
        while self.peek.kind not in ("OR", ")", "END"):
            if self.peek.kind == "AND":
                op = self.take()
                children.append(self.unary(op, field=field))
            else:  # "a NOT b", or adjacent terms
                children.append(self.unary(None, field=field))
        return children[0] if len(children) == 1 else And(tuple(children))

    def unary(self, after: _Token | None, *, field: str | None) -> Node:
        token = self.peek
        if token.kind == "NOT":
            self.take()
            with self.nested(token):
                return Not(self.unary(token, field=field))
        return self.near(after, field=field)

    def near(self, after: _Token | None, *, field: str | None) -> Node:
        left = self.primary(after, field=field)
        if self.peek.kind != "NEAR":
            return left
        op = self.take()
        if self.peek.kind in ("NOT", "("):
            raise QueryError("NEAR/n needs a single term or phrase on each side", offset=op.offset)
        right = self.primary(op, field=field)
        if not isinstance(left, Term) or not isinstance(right, Term):
            raise QueryError("NEAR/n needs a single term or phrase on each side", offset=op.offset)
        if "link" in (left.field, right.field):
            raise QueryError("NEAR/n does not work on link:", offset=op.offset)
        if not _near_fields(left, right):
            raise QueryError("NEAR/n needs both sides in the same field", offset=op.offset)
        if self.peek.kind == "NEAR":
            raise QueryError(
                "NEAR/n cannot be chained; join NEAR pairs with AND", offset=self.peek.offset
            )
        return Near(left=left, right=right, distance=op.number)

    def primary(self, after: _Token | None, *, field: str | None) -> Node:
        token = self.take()
        kind = token.kind
        if kind == "WORD":
            return _word_term(token.text, field=field, offset=token.offset, literal=False)
        if kind == "PHRASE":
            return _word_term(token.text, field=field, offset=token.offset + 1, literal=False)
        if kind == "(":
            with self.nested(token):
                if self.peek.kind == ")":
                    raise QueryError("empty parentheses", offset=token.offset)
                if self.peek.kind == "END":
                    raise QueryError("unbalanced parenthesis: no ) for this (", offset=token.offset)
                node = self.or_(None, field=field)
                if self.take().kind != ")":
                    raise QueryError("unbalanced parenthesis: no ) for this (", offset=token.offset)
                return node
        if kind == "FIELD":
            if field is not None:
                raise QueryError(
                    f"{token.text}: cannot be used inside {field}:(...)", offset=token.offset
                )
            if self.peek.kind not in ("WORD", "PHRASE", "("):
                raise QueryError(
                    f"{token.text}: needs a term, phrase or (group) right after it",
                    offset=token.offset,
                )
            return self.primary(token, field=token.text)
        # Something that cannot start a term: say what is missing where.
        self.pos -= 1
        if after is not None and after.kind != "(":
            raise QueryError(
                f"operator {after.text} needs a term on its right", offset=after.offset
            )
        if kind in ("AND", "OR", "NEAR"):
            raise QueryError(f"operator {token.text} needs a term on its left", offset=token.offset)
        if kind == ")":
            raise QueryError("unbalanced parenthesis: no ( for this )", offset=token.offset)
        raise QueryError("empty query", offset=token.offset)  # pragma: no cover

    def nested(self, token: _Token) -> _Depth:
        return _Depth(self, token)


class _Depth:
    def __init__(self, parser: _Parser, token: _Token) -> None:
        self.parser = parser
        self.token = token

    def __enter__(self) -> None:
        self.parser.depth += 1
        if self.parser.depth > MAX_DEPTH:
            raise QueryError("query nests too deeply", offset=self.token.offset)

    def __exit__(self, *exc: object) -> None:
        self.parser.depth -= 1


_LOOKS_LIKE_OPERATOR = re.compile(r"and|or|not|near(?:/[0-9]*)?", re.I)


def lowercase_operators(text: str) -> list[tuple[str, int]]:
    """``and``/``or``/``not``/``near/5`` not in upper case (``And``, ``Or`` too)
    standing between two terms (pure): almost always meant as operators, but
    operators are upper case, so they are words that must appear. (word,
    offset) each; empty for a query that does not lex."""
    try:
        tokens = list(_lex(text))
    except QueryError:
        return []
    found = []
    for before, tok, after in zip(tokens, tokens[1:], tokens[2:], strict=False):
        if (tok.kind == "WORD" and _LOOKS_LIKE_OPERATOR.fullmatch(tok.text)
                and before.kind in ("WORD", "PHRASE", ")")
                and after.kind in ("WORD", "PHRASE", "(", "FIELD")):
            found.append((tok.text, tok.offset))
    return found


def _fields(term: Term) -> frozenset[str]:
    return frozenset({"title", "summary"}) if term.field is None else frozenset({term.field})


def _near_fields(left: Term, right: Term) -> frozenset[str]:
    """The fields a NEAR pair can be found in: where both sides may be."""
    return _fields(left) & _fields(right)


# --- Public API --------------------------------------------------------------------


def parse(text: str) -> Node:
    """Parse query text into a tree. Raises QueryError with a 0-based offset."""
    return _Parser(text).parse()


def from_lists(all: Sequence[str], any: Sequence[str], none: Sequence[str]) -> Node | None:
    """The tree for ``all:``/``any:``/``none:`` lists, or None if they are all empty.

    Each item is literal text, not query syntax (``"AND"`` is the word "and"),
    except that a trailing ``*`` makes its last word a prefix. Items are ANDed,
    ``any`` items ORed among themselves, each ``none`` item negated.
    """
    children: list[Node] = [_list_term(item) for item in all]
    if any:
        alternatives = [_list_term(item) for item in any]
        children.append(alternatives[0] if len(alternatives) == 1 else Or(tuple(alternatives)))
    children.extend(Not(_list_term(item)) for item in none)
    if not children:
        return None
    return children[0] if len(children) == 1 else And(tuple(children))


def _list_term(item: str) -> Term:
    text = item.strip()
    if not text:
        raise QueryError("empty watchlist term", offset=0)
    return _word_term(text, field=None, offset=0, literal=True)


def condition(
    *,
    all: Sequence[str] = (),
    any: Sequence[str] = (),
    none: Sequence[str] = (),
    query: str | None = None,
) -> Node | None:
    """A watchlist's whole condition: its lists AND its query, validated.

    None when it has no terms at all. Raises QueryError for a query that does
    not parse and for a condition with no positive term (see :func:`validate`).
    """
    parts = [node for node in (from_lists(all, any, none), _parse_opt(query)) if node]
    if not parts:
        return None
    node = parts[0] if len(parts) == 1 else And(tuple(parts))
    validate(node)
    return node


def _parse_opt(query: str | None) -> Node | None:
    return None if query is None else parse(query)


def validate(node: Node) -> None:
    """Raise QueryError if ``node`` can match an entry in which none of its terms occur.

    Such a condition (``NOT x``, ``a OR NOT b``, only ``none:``) would alert on
    almost everything; the matcher also relies on every match having a term hit.
    """
    if _holds_without_terms(node):
        raise QueryError(
            "query matches entries that contain none of its terms; it needs a term"
            " that must be present (NOT alone matches almost everything)",
            offset=0,
        )


def _holds_without_terms(node: Node) -> bool:
    """Evaluate ``node`` against an entry where no term occurs."""
    if isinstance(node, (Term, Near)):
        return False
    if isinstance(node, Not):
        return not _holds_without_terms(node.child)
    if isinstance(node, And):
        return all(_holds_without_terms(child) for child in node.children)
    return any(_holds_without_terms(child) for child in node.children)


def terms(node: Node) -> list[Term]:
    """Every distinct term in ``node``, left to right (negated ones included)."""
    seen: dict[Term, None] = {}
    for term in _walk_terms(node):
        seen.setdefault(term, None)
    return list(seen)


def _walk_terms(node: Node) -> Iterator[Term]:
    if isinstance(node, Term):
        yield node
    elif isinstance(node, Near):
        yield node.left
        yield node.right
    elif isinstance(node, Not):
        yield from _walk_terms(node.child)
    else:
        for child in node.children:
            yield from _walk_terms(child)


# --- Rendering ---------------------------------------------------------------------

_PLAIN = re.compile(r"[^\W_][^\s()\":]*")


def render(node: Node) -> str:
    """Query text for ``node``: ``parse(render(node)) == node`` for any tree the
    parser can produce. Terms keep their ``source_text`` when it reads back the
    same, otherwise (list items with odd punctuation) they are rebuilt from
    their words."""
    if isinstance(node, Term):
        return _render_term(node)
    if isinstance(node, Near):
        return f"{_render_term(node.left)} NEAR/{node.distance} {_render_term(node.right)}"
    if isinstance(node, Not):
        child = node.child
        inner = render(child)
        return f"NOT ({inner})" if isinstance(child, (And, Or)) else f"NOT {inner}"
    if isinstance(node, And):
        return " AND ".join(
            f"({render(c)})" if isinstance(c, (And, Or)) else render(c) for c in node.children
        )
    return " OR ".join(f"({render(c)})" if isinstance(c, Or) else render(c) for c in node.children)


def _render_term(term: Term) -> str:
    scope = f"{term.field}:" if term.field else ""
    text = term.source_text
    if not _reads_back(text, term):
        text = term.words[0] if term.field == "link" else " ".join(term.words)
        text += "*" if term.prefix else ""
    if _PLAIN.fullmatch(text) and text not in ("AND", "OR", "NOT") and not _NEAR.fullmatch(text):
        return scope + text
    return f'{scope}"{text}"'


def _reads_back(text: str, term: Term) -> bool:
    if '"' in text:
        return False
    try:
        again = _word_term(text, field=term.field, offset=0, literal=False)
    except QueryError:
        return False
    return again == term
