"""A small report document: headings, paragraphs, tables and figures → Markdown and self-contained HTML.

Every report opens with the disclaimer. Markdown links figures as files next to it; HTML embeds them as
base64 PNG data URIs, so report.html can be mailed or archived on its own.
"""

from __future__ import annotations

import base64
import html
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from facediag.scoring.results import DISCLAIMER

MISSING = "—"
LONG_CELL = 30  # characters: longer cells may wrap in HTML, shorter ones stay on one line
CSS = """
body { font-family: system-ui, -apple-system, 'Segoe UI', sans-serif; margin: 2em auto; max-width: 1500px;
       padding: 0 1em; color: #1a1a1a; }
.disclaimer { background: #fff3cd; border: 2px solid #e0a800; padding: 0.8em 1em; font-size: 1.15em; }
table { border-collapse: collapse; margin: 0.5em 0 1.5em; font-size: 0.92em; }
caption { caption-side: top; text-align: left; font-weight: 600; padding-bottom: 0.3em; }
th, td { border: 1px solid #c8c8c8; padding: 0.3em 0.6em; text-align: left; vertical-align: top; }
td { white-space: nowrap; }
.scroll { overflow-x: auto; }
td.long { white-space: normal; min-width: 14em; }
th { background: #f0f0f0; }
tr.best { background: #d4edda; font-weight: 600; }
tr.tie { background: #eef7f0; }
tr.failed { background: #f8d7da; }
figure { display: inline-block; margin: 0.5em 1em 1em 0; }
figure img { max-width: 560px; border: 1px solid #ddd; }
figcaption { font-size: 0.9em; color: #444; }
pre { background: #f6f6f6; padding: 0.6em; overflow-x: auto; }
"""


def fmt_number(value: Any, digits: int = 3) -> str:
    """A float with ``digits`` decimals; '—' for None / NaN / pandas' NA (e.g. the std of one value)."""
    if value is None or value is pd.NA or (isinstance(value, float) and not math.isfinite(value)):
        return MISSING
    if isinstance(value, (int,)) and not isinstance(value, bool):
        return str(value)
    return f"{float(value):.{digits}f}"


def fmt_interval(value: Any, low: Any, high: Any, digits: int = 3) -> str:
    """``0.950 [0.863, 0.983]``; '—' when the value is missing."""
    if fmt_number(value) == MISSING:
        return MISSING
    return f"{fmt_number(value, digits)} [{fmt_number(low, digits)}, {fmt_number(high, digits)}]"


def fmt_with_ci(metrics: dict[str, Any], key: str, digits: int = 3) -> str:
    """``metrics[key]`` with its interval ``metrics[key + '_ci']`` when there is one."""
    interval = metrics.get(f"{key}_ci")
    if not interval:
        return fmt_number(metrics.get(key), digits)
    return fmt_interval(metrics.get(key), *interval, digits=digits)


def fmt_count(value: Any) -> str:
    """MACs / parameter counts in engineering units: 1.23 G, 456 M, 12.3 k."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return MISSING
    value = float(value)
    for scale, unit in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= scale:
            return f"{value / scale:.3g} {unit}"
    return f"{value:.0f}"


@dataclass
class _Block:
    kind: str  # heading | text | table | figure | code
    content: Any
    level: int = 2
    caption: str = ""
    row_classes: Sequence[str] | None = None


class Report:
    """Collects blocks in order; ``write`` renders report.md and report.html into a folder."""

    def __init__(self, title: str):
        self.title = title
        self.blocks: list[_Block] = []

    def heading(self, text: str, level: int = 2) -> Report:
        self.blocks.append(_Block("heading", text, level=level))
        return self

    def text(self, paragraph: str) -> Report:
        self.blocks.append(_Block("text", paragraph))
        return self

    def code(self, text: str) -> Report:
        self.blocks.append(_Block("code", text))
        return self

    def table(self, frame: pd.DataFrame, caption: str = "", row_classes: Sequence[str] | None = None) -> Report:
        """A table of display strings (format numbers first); ``row_classes`` style rows (best, tie, failed)."""
        if row_classes is not None and len(row_classes) != len(frame):
            raise ValueError(f"row_classes has {len(row_classes)} entries for {len(frame)} rows")
        self.blocks.append(_Block("table", frame.reset_index(drop=True), caption=caption, row_classes=row_classes))
        return self

    def figure(self, png: str | Path, caption: str = "") -> Report:
        png = Path(png)
        if not png.is_file():
            raise FileNotFoundError(f"report figure {png} does not exist")
        self.blocks.append(_Block("figure", png, caption=caption))
        return self

    # -- rendering ---------------------------------------------------------------------------------
    def to_markdown(self, base_dir: str | Path) -> str:
        """Markdown with figure links relative to ``base_dir`` (where report.md will live)."""
        base_dir = Path(base_dir).resolve()
        lines = [f"# {self.title}", "", f"> **{DISCLAIMER}**", ""]
        for block in self.blocks:
            if block.kind == "heading":
                lines += ["#" * block.level + " " + block.content, ""]
            elif block.kind == "text":
                lines += [block.content, ""]
            elif block.kind == "code":
                lines += ["```", block.content.rstrip("\n"), "```", ""]
            elif block.kind == "table":
                if block.caption:
                    lines += [f"**{block.caption}**", ""]
                lines += [*_markdown_table(block.content), ""]
            elif block.kind == "figure":
                target = _relative(block.content, base_dir)
                lines += [f"![{block.caption}]({target})", "", f"*{block.caption}*" if block.caption else "", ""]
        lines += ["---", f"*{DISCLAIMER}*", ""]
        return "\n".join(lines)

    def to_html(self) -> str:
        """One self-contained HTML page: figures embedded as base64 PNG."""
        esc = html.escape
        parts = [
            "<!DOCTYPE html>",
            '<html lang="en"><head><meta charset="utf-8">',
            f"<title>{esc(self.title)}</title><style>{CSS}</style></head><body>",
            f"<h1>{esc(self.title)}</h1>",
            f'<p class="disclaimer" role="note" id="disclaimer"><strong>{esc(DISCLAIMER)}</strong></p>',
        ]
        for block in self.blocks:
            if block.kind == "heading":
                level = min(max(block.level, 2), 6)
                parts.append(f"<h{level}>{esc(block.content)}</h{level}>")
            elif block.kind == "text":
                parts.append(f"<p>{esc(block.content)}</p>")
            elif block.kind == "code":
                parts.append(f"<pre>{esc(block.content)}</pre>")
            elif block.kind == "table":
                parts.append(_html_table(block.content, block.caption, block.row_classes))
            elif block.kind == "figure":
                data = base64.b64encode(block.content.read_bytes()).decode("ascii")
                parts.append(
                    f'<figure><img src="data:image/png;base64,{data}" alt="{esc(block.caption)}">'
                    f"<figcaption>{esc(block.caption)}</figcaption></figure>"
                )
        parts += [f'<p class="disclaimer"><strong>{esc(DISCLAIMER)}</strong></p>', "</body></html>", ""]
        return "\n".join(parts)

    def write(self, out_dir: str | Path, stem: str = "report") -> dict[str, Path]:
        """Write ``<stem>.md`` and ``<stem>.html`` into ``out_dir``; return their paths."""
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        md, page = out_dir / f"{stem}.md", out_dir / f"{stem}.html"
        md.write_text(self.to_markdown(out_dir), encoding="utf-8")
        page.write_text(self.to_html(), encoding="utf-8")
        return {"md": md, "html": page}


def _relative(path: Path, base_dir: Path) -> str:
    return Path(os.path.relpath(path.resolve(), base_dir)).as_posix()


def _cell(value: Any) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return MISSING
    return str(value)


def _markdown_table(frame: pd.DataFrame) -> list[str]:
    def md(value: Any) -> str:
        return _cell(value).replace("|", "\\|").replace("\n", " ")

    header = "| " + " | ".join(md(c) for c in frame.columns) + " |"
    rule = "|" + "|".join("---" for _ in frame.columns) + "|"
    rows = ["| " + " | ".join(md(v) for v in row) + " |" for row in frame.itertuples(index=False)]
    return [header, rule, *rows]


def _html_table(frame: pd.DataFrame, caption: str, row_classes: Sequence[str] | None) -> str:
    esc = html.escape
    head = "".join(f'<th scope="col">{esc(str(c))}</th>' for c in frame.columns)
    body = []
    for i, row in enumerate(frame.itertuples(index=False)):
        css = f' class="{esc(row_classes[i])}"' if row_classes and row_classes[i] else ""
        cells = [_cell(v) for v in row]
        body.append(f"<tr{css}>" + "".join(
            f'<td class="long">{esc(c)}</td>' if len(c) > LONG_CELL else f"<td>{esc(c)}</td>" for c in cells) + "</tr>")
    cap = f"<caption>{esc(caption)}</caption>" if caption else ""
    table = f"<table>{cap}<thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"
    return f'<div class="scroll">{table}</div>'
