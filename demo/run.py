"""`make demo`: real alerts within seconds, with no network and no Slack token.

Serves three real feed snapshots (demo/feeds/) on 127.0.0.1; after the
monitor's first poll has recorded them, "publishes" breaking stories into them
a few seconds apart, among them the North Korean troops story carried by two
outlets under different headlines, so you see one alert for it, not two. The
monitor runs as `news-monitor run` with the console destination, showing the
alerts and warnings only (`-v` shows every log line), and the demo stops by
itself after the last story (`--forever` keeps it running). Its config and state
stay in demo/ (demo/monitor.yaml, demo/state/), so afterwards
`news-monitor stories --config demo/monitor.yaml` shows what it grouped.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import shutil
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime
from email.utils import format_datetime
from pathlib import Path
from xml.sax.saxutils import escape

from aiohttp import web

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent

BREAKING = [
    ("cnn", "'Several thousands' of North Korean troops set to be sent to Ukraine frontline",
     "https://edition.cnn.com/2024/10/10/world/north-korea-troops-ukraine?utm_source=rss",
     "Several thousand North Korean soldiers are undergoing intense military training inside "
     "Russia and could be deployed to the frontline in Ukraine by the end of 2024, according "
     "to the Institute for the Study of War."),
    ("fox", "COP26: world leaders gather in Glasgow for climate summit",
     "https://www.foxnews.com/world/cop26-climate-summit-glasgow",
     "Leaders of nearly 200 countries open two weeks of climate talks aimed at keeping "
     "net zero targets within reach."),
    ("latimes", "North Korea readies thousands of troops for Ukraine war, think tank says",
     "https://www.latimes.com/world-nation/story/2024-10-10/north-korea-troops-ukraine",
     "The Institute for the Study of War says several thousand North Korean soldiers are "
     "training in Russia for deployment to the Ukraine frontline."),
    ("cnn", "Covid-19 antiviral pill cuts hospitalisations by half, maker says",
     "https://edition.cnn.com/2021/10/17/health/covid-antiviral-pill",
     "A new antiviral pill halved the risk of hospitalisation in a late-stage trial."),
]


class DemoFeeds:
    def __init__(self) -> None:
        self.extra: dict[str, list[str]] = {"cnn": [], "fox": [], "latimes": []}
        self.polls = 0

    def body(self, name: str) -> bytes:
        raw = (HERE / "feeds" / f"headlines-2021-10-17_{name}.xml").read_bytes()
        items = "".join(self.extra[name]).encode()
        return raw.replace(b"<item>", items + b"<item>", 1) if items else raw

    def publish(self, name: str, title: str, link: str, summary: str) -> None:
        now = format_datetime(datetime.now(UTC), usegmt=True)
        self.extra[name].insert(0, (
            f"<item><title>{escape(title)}</title><link>{escape(link)}</link>"
            f"<guid>{escape(link)}</guid><description>{escape(summary)}</description>"
            f"<pubDate>{now}</pubDate></item>"))

    async def handle(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        if name not in self.extra:
            raise web.HTTPNotFound()
        self.polls += 1
        return web.Response(body=self.body(name), content_type="application/rss+xml")


def serve(feeds: DemoFeeds, ready: threading.Event, port: list[int]) -> None:
    async def main() -> None:
        app = web.Application()
        app.router.add_get("/{name}.xml", feeds.handle)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port.append(site._server.sockets[0].getsockname()[1])  # type: ignore[union-attr]
        ready.set()
        await asyncio.Event().wait()

    asyncio.run(main())


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--forever", action="store_true", help="keep running after the last story")
    ap.add_argument("--gap", type=float, default=3.0, help="seconds between stories")
    ap.add_argument("-v", "--verbose", action="store_true", help="show every log line")
    ap.add_argument("--dir", type=Path, default=HERE,
                    help="where the config and state go (default: demo/)")
    args = ap.parse_args()

    feeds = DemoFeeds()
    ready, port = threading.Event(), []
    threading.Thread(target=serve, args=(feeds, ready, port), daemon=True).start()
    ready.wait(10)
    base = f"http://127.0.0.1:{port[0]}"
    shutil.rmtree(args.dir / "state", ignore_errors=True)  # each demo starts afresh
    args.dir.mkdir(parents=True, exist_ok=True)
    config = args.dir / "monitor.yaml"
    config.write_text(
        "# written by demo/run.py (make demo) for its own feed server; rewritten each run\n"
        "state: sqlite:///state/monitor.db\n"
        # The snapshots' items are from 2021: the schedule would learn that these
        # feeds are quiet and poll them less often; the demo wants 2s.
        "poll: {interval: 2s, timeout: 5s, max_interval: 2s}\n"
        "feeds:\n"
        f"  - {{name: CNN, url: '{base}/cnn.xml'}}\n"
        f"  - {{name: Fox News, url: '{base}/fox.xml'}}\n"
        f"  - {{name: LA Times, url: '{base}/latimes.xml'}}\n"
        f"watchlists: {ROOT / 'watchlists'}\n"
        f"templates: {ROOT / 'templates'}\n"
        "destinations:\n  console: {type: console}\n", encoding="utf-8")
    exe = Path(sys.executable).parent / "news-monitor"
    cmd = [str(exe) if exe.exists() else sys.executable, *([] if exe.exists() else
           ["-m", "monitor.cli"]), "run", "--config", str(config)]
    print(f"demo: serving sample feeds on {base}; the monitor's first poll records "
          "what is there, then breaking stories arrive", flush=True)
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    if not args.verbose:
        env["NEWS_MONITOR_LOG_LEVEL"] = "warning"  # the alerts are the show
    proc = subprocess.Popen(cmd, env=env)
    try:
        while feeds.polls < 3 and proc.poll() is None:
            time.sleep(0.2)
        for outlet, title, link, summary in BREAKING:
            time.sleep(args.gap)
            print(f"\ndemo: {outlet} publishes: {title}\n", flush=True)
            feeds.publish(outlet, title, link, summary)
        time.sleep(args.gap + 3)
        if args.forever:
            proc.wait()
    except KeyboardInterrupt:
        pass
    finally:
        proc.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(10)
    shown = os.path.relpath(config) if not os.path.relpath(config).startswith("..") else config
    print("\ndemo: done. What it grouped: "
          f"news-monitor stories --all-sources --config {shown}\n"
          "      `make run` watches real feeds the same way.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
