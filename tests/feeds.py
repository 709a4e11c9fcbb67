"""Building RSS documents for tests: a feed whose items tests add between polls."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import format_datetime
from pathlib import Path
from xml.sax.saxutils import escape

SEED = Path(__file__).parent / "data" / "seed-article.txt"


def seed_story() -> tuple[str, str]:
    """The example story, a real article: (headline, first paragraphs)."""
    lines = [ln.strip() for ln in SEED.read_text(encoding="utf-8").splitlines()]
    start = lines.index("Newszop") + 1
    body = [ln for ln in lines[start:] if ln]
    title = body[0]
    summary = " ".join(ln for ln in body[1:6] if ln not in ("Send Push", "image"))
    return title, summary


@dataclass
class Item:
    title: str
    link: str
    summary: str = ""
    guid: str | None = None
    published: datetime = field(default_factory=lambda: datetime.now(UTC))


@dataclass
class RSS:
    title: str = "Test feed"
    items: list[Item] = field(default_factory=list)

    def add(self, title: str, link: str, summary: str = "", guid: str | None = None,
            published: datetime | None = None) -> Item:
        item = Item(title, link, summary, guid, published or datetime.now(UTC))
        self.items.insert(0, item)
        return item

    def render(self) -> str:
        parts = [f"<?xml version='1.0' encoding='utf-8'?>\n<rss version='2.0'><channel>"
                 f"<title>{escape(self.title)}</title><link>https://example.org/</link>"
                 f"<description>test</description>"]
        for it in self.items:
            guid = f"<guid isPermaLink='false'>{escape(it.guid)}</guid>" if it.guid else ""
            parts.append(
                f"<item><title>{escape(it.title)}</title><link>{escape(it.link)}</link>{guid}"
                f"<description>{escape(it.summary)}</description>"
                f"<pubDate>{format_datetime(it.published, usegmt=True)}</pubDate></item>")
        parts.append("</channel></rss>")
        return "".join(parts)
