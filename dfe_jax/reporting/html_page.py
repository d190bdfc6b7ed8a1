"""The report page: sections with a table of contents, tables and images, in one HTML file.

Images are PNG files beside `report.html`, referenced by relative path, so the folder opens
from disk (file://) with no server; styles are inline.
"""

import html

_STYLE = """
body { font-family: -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; margin: 0 auto;
       max-width: 1200px; padding: 1em 2em; color: #222; line-height: 1.4; }
h1 { margin-bottom: 0.2em; } h2 { border-bottom: 1px solid #ccc; margin-top: 2em; }
nav { background: #f6f6f6; padding: 0.5em 1em; border-radius: 4px; }
nav ol { margin: 0.3em 0; }
table { border-collapse: collapse; font-size: 12px; margin: 0.5em 0; }
th, td { border: 1px solid #ddd; padding: 2px 6px; text-align: left; vertical-align: top; }
th { background: #f0f0f0; position: sticky; top: 0; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
img { max-width: 100%; display: block; margin: 0.5em 0; }
img.thumb { display: inline-block; max-height: 72px; margin: 0 2px; }
.note { color: #555; font-size: 13px; } .why { color: #8a4b00; }
.scroll { max-height: 480px; overflow: auto; }
"""


def esc(text):
  """HTML-escapes any value."""
  return html.escape(str(text))


def fmt(value, digits=3):
  """A number as the tables show it."""
  if isinstance(value, (int,)) or (hasattr(value, "dtype") and value.dtype.kind in "iu"):
    return f"{int(value):,}"
  return f"{float(value):.{digits}g}"


def table(headers, rows, *, scroll=False, raw_columns=()):
  """An HTML table; numbers right-aligned; columns in `raw_columns` are trusted HTML."""
  head = "".join(f"<th>{esc(h)}</th>" for h in headers)
  body = []
  for row in rows:
    cells = []
    for i, value in enumerate(row):
      if i in raw_columns:
        cells.append(f"<td>{value}</td>")
      elif isinstance(value, (int, float)) or hasattr(value, "dtype"):
        cells.append(f'<td class="num">{fmt(value)}</td>')
      else:
        cells.append(f"<td>{esc(value)}</td>")
    body.append("<tr>" + "".join(cells) + "</tr>")
  out = f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"
  return f'<div class="scroll">{out}</div>' if scroll else out


def image(name, alt):
  """An image beside the report, by relative path."""
  return f'<img src="{esc(name)}" alt="{esc(alt)}">'


def paragraph(text, cls="note"):
  """A paragraph of (escaped) text."""
  return f'<p class="{cls}">{esc(text)}</p>'


class Page:
  """Sections in order; `render()` adds the title, provenance and table of contents."""

  def __init__(self, title):
    self.title = title
    self.sections = []  # (anchor, heading, [html parts])

  def section(self, anchor, heading):
    """Starts a section and returns its list of HTML parts to append to."""
    parts = []
    self.sections.append((anchor, heading, parts))
    return parts

  def render(self, preamble_html=""):
    """The whole page as one HTML string."""
    toc = "".join(f'<li><a href="#{esc(a)}">{esc(h)}</a></li>' for a, h, _ in self.sections)
    body = "".join(f'<section id="{esc(a)}"><h2>{esc(h)}</h2>{"".join(parts)}</section>'
                   for a, h, parts in self.sections)
    return (f"<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>{esc(self.title)}</title><style>{_STYLE}</style></head><body>"
            f"<h1>{esc(self.title)}</h1>{preamble_html}"
            f"<nav><b>Contents</b><ol>{toc}</ol></nav>{body}</body></html>")
