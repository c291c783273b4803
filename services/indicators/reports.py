"""The fiche as documents: CSV, JSON and a printable HTML page (issue 5, reports).

What the city attaches to its *contrat de ville* evaluation: the 12 indicators of
CONTRACT 3 for one period and one ``as_of`` sequence, one row per quartier and a
row for all quartiers together. Everything here is a pure function of a ``Fiche``
(no I/O, no clock): the figures come from ``store.indicators`` and are written as
they are, so every cell equals the ``/indicators`` answer it comes from.

- The total row is the figures of all quartiers *together* (``quartier=None``), not
  a sum of the rows: ratios, means and medians are not additive. It is labelled
  ``total`` in the CSV and the JSON.
- Numbers are written exactly: ``int`` as digits, ``float`` (already rounded
  half-even by the store) as Python's shortest round-tripping form, never in
  exponent notation; null as an empty CSV cell, JSON null, ``—`` on the page.
- ``mecanismes_mobilisation`` is an object in the JSON and nine columns
  ``mecanismes_mobilisation.<mechanism>`` in the CSV, in ``Mechanism`` order.
- The HTML page (Jinja2, autoescaped) has the table, every figure linking to its
  lineage (a relative link), and one inline SVG bar chart per indicator across the
  quartiers; no script and no external resource, so it prints and archives as is.
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from decimal import ROUND_HALF_EVEN, Decimal
from functools import cache
from typing import Any
from urllib.parse import urlencode

import jinja2
from markupsafe import Markup, escape

from services.indicators.reference import INDICATOR_CODES
from shared.events import Mechanism

FICHE = "1.1.6"
TOTAL = "total"
"""The label of the all-quartiers row in the CSV and the JSON."""

MOBILISATION = "mecanismes_mobilisation"
MECHANISMS: tuple[str, ...] = tuple(m.value for m in Mechanism)

INDICATOR_LABELS: dict[str, str] = {
    "envies_recueillies": "Envies recueillies",
    "projets_accompagnes": "Projets accompagnés",
    "projets_developpes": "Projets développés (financés)",
    "porteurs": "Porteurs de projet",
    "taux_transformation": "Taux de transformation (projets développés / envies)",
    "actions_abouties": "Actions abouties",
    "participants": "Participants",
    "participants_moyen": "Participants par action (moyenne)",
    "impact_percu": "Impact perçu (score moyen, 1 à 5)",
    MOBILISATION: "Mécanismes de mobilisation",
    "delai_decision_jours": "Délai de décision (jours, médiane)",
    "montant_attribue_cents": "Montant attribué (€)",
}
"""French labels of the page, one per code of CONTRACT 3."""

MECHANISM_LABELS: dict[str, str] = {
    "bouche_a_oreille": "Bouche-à-oreille",
    "reseaux_sociaux": "Réseaux sociaux",
    "centre_social": "Centre social",
    "conseil_citoyen": "Conseil citoyen",
    "ecole": "École",
    "mediateur": "Médiateur",
    "affichage": "Affichage",
    "evenement": "Événement",
    "autre": "Autre",
}

DECIMALS = {
    "taux_transformation": 4,
    "participants_moyen": 2,
    "impact_percu": 2,
    "delai_decision_jours": 1,
}
"""Decimal places of the non-integer indicators (CONTRACT 3), for the page."""

assert tuple(INDICATOR_LABELS) == INDICATOR_CODES, "a label per indicator, in contract order"
assert tuple(MECHANISM_LABELS) == MECHANISMS, "a label per mechanism, in Mechanism order"

Number = int | float | None


@dataclass(frozen=True)
class Fiche:
    """The figures of one report.

    ``rows`` maps a quartier code to its 12 indicators as ``store.indicators``
    returns them, in the order of the report; the key ``None`` is all quartiers
    together (the total row, computed with ``quartier=None``).
    """

    start: date
    end: date
    as_of_seq: int
    as_of_digest: str
    rows: Mapping[str | None, Mapping[str, Any]]

    def __post_init__(self) -> None:
        if self.end <= self.start:
            raise ValueError(f"end {self.end} must be after start {self.start} (exclusive)")
        for quartier, values in self.rows.items():
            where = TOTAL if quartier is None else repr(quartier)
            if quartier == TOTAL:
                raise ValueError(f"a quartier may not be called {TOTAL!r}: that is the total row")
            if set(values) != set(INDICATOR_CODES):
                raise ValueError(f"row {where}: expected the indicators {INDICATOR_CODES}")
            for code in INDICATOR_CODES:
                if code == MOBILISATION:
                    counts = values[code]
                    if not isinstance(counts, Mapping) or set(counts) != set(MECHANISMS):
                        raise ValueError(f"row {where}: {code} must map the 9 mechanisms")
                    for count in counts.values():
                        _check_number(count, f"row {where}: {code}", nullable=False)
                else:
                    _check_number(values[code], f"row {where}: {code}", nullable=True)


def _check_number(value: Any, where: str, *, nullable: bool) -> None:
    if value is None and nullable:
        return
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(
            f"{where}: expected a number{' or None' if nullable else ''}, got {value!r}"
        )
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"{where}: {value!r} is not a finite number")


def plain_number(value: Number) -> str:
    """A figure as written in the CSV: digits, ``.`` for decimals, ``""`` for null.

    A float is written as Python prints it (the shortest text that reads back as the
    same float, so ``0.3333`` stays ``0.3333``), never in exponent notation.
    """
    if value is None:
        return ""
    if isinstance(value, float):
        text = repr(value)
        if "e" in text or "E" in text:
            text = format(Decimal(text), "f")
        return text
    return str(value)


# --- CSV and JSON -------------------------------------------------------------------


def csv_columns() -> list[str]:
    """The CSV header: the row's context, then every indicator, mechanisms flattened."""
    columns = ["quartier", "from", "to", "as_of_seq", "as_of_digest"]
    for code in INDICATOR_CODES:
        if code == MOBILISATION:
            columns.extend(f"{MOBILISATION}.{m}" for m in MECHANISMS)
        else:
            columns.append(code)
    return columns


def _label(quartier: str | None) -> str:
    return TOTAL if quartier is None else quartier


def fiche_csv(fiche: Fiche) -> str:
    """One line per row of the fiche (RFC 4180: comma, CRLF, quotes where needed)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(csv_columns())
    for quartier, values in fiche.rows.items():
        line = [
            _label(quartier),
            fiche.start.isoformat(),
            fiche.end.isoformat(),
            str(fiche.as_of_seq),
            fiche.as_of_digest,
        ]
        for code in INDICATOR_CODES:
            if code == MOBILISATION:
                line.extend(plain_number(values[code][m]) for m in MECHANISMS)
            else:
                line.append(plain_number(values[code]))
        writer.writerow(line)
    return out.getvalue()


def fiche_document(fiche: Fiche) -> dict[str, Any]:
    """The JSON document: ``{"from", "to", "as_of": {"seq", "digest"}, "rows": [...]}``;
    each row ``{"quartier", "indicators"}`` with the values of ``/indicators``."""
    rows = []
    for quartier, values in fiche.rows.items():
        indicators: dict[str, Any] = {}
        for code in INDICATOR_CODES:
            if code == MOBILISATION:
                indicators[code] = {m: values[code][m] for m in MECHANISMS}
            else:
                indicators[code] = values[code]
        rows.append({"quartier": _label(quartier), "indicators": indicators})
    return {
        "from": fiche.start.isoformat(),
        "to": fiche.end.isoformat(),
        "as_of": {"seq": fiche.as_of_seq, "digest": fiche.as_of_digest},
        "rows": rows,
    }


def fiche_json(fiche: Fiche) -> str:
    return json.dumps(fiche_document(fiche), ensure_ascii=False, indent=2) + "\n"


def filename(fiche: Fiche, extension: str) -> str:
    """``fiche-1.1.6_<from>_<to>_seq<n>.<extension>``."""
    return (
        f"fiche-{FICHE}_{fiche.start.isoformat()}_{fiche.end.isoformat()}"
        f"_seq{fiche.as_of_seq}.{extension}"
    )


# --- the page -----------------------------------------------------------------------

NNBSP = "\u202f"  # narrow no-break space: French thousands separator and before % and €


def _group(digits: str) -> str:
    """``1234567`` -> ``1 234 567`` (narrow no-break spaces)."""
    head = len(digits) % 3 or 3
    parts = [digits[:head]] + [digits[i : i + 3] for i in range(head, len(digits), 3)]
    return NNBSP.join(parts)


def _french(value: Decimal, places: int) -> str:
    """A decimal with ``places`` decimals, French style: ``-1 234,50``."""
    text = format(value.quantize(Decimal(1).scaleb(-places), rounding=ROUND_HALF_EVEN), "f")
    sign = "-" if text.startswith("-") else ""
    whole, _, fraction = text.lstrip("-").partition(".")
    return sign + _group(whole) + ("," + fraction if fraction else "")


def display(code: str, value: Number) -> str:
    """A figure as shown on the page (French notation); ``—`` for null.

    Money is shown in euros from the integer cents, the transformation rate as a
    percentage, other decimals with the contract's number of places.
    """
    if value is None:
        return "—"
    if code == "montant_attribue_cents":
        return _french(Decimal(int(value)) / 100, 2) + NNBSP + "€"
    exact = Decimal(repr(value)) if isinstance(value, float) else Decimal(value)
    if code == "taux_transformation":
        return _french(exact * 100, 2) + NNBSP + "%"
    return _french(exact, DECIMALS.get(code, 0))


def lineage_url(
    fiche: Fiche, code: str, quartier: str | None, prefix: str = "../indicators"
) -> str:
    """The relative link to the events behind a figure (``/indicators/<code>/lineage``).

    Relative to the page (``/reports/fiche.html``), so it also works when the service
    is served under a path prefix.
    """
    query: dict[str, Any] = {}
    if quartier is not None:
        query["quartier"] = quartier
    query.update(
        {"from": fiche.start.isoformat(), "to": fiche.end.isoformat(), "as_of_seq": fiche.as_of_seq}
    )
    return f"{prefix}/{code}/lineage?{urlencode(query)}"


# SVG geometry (user units; the page scales a chart down to its width, so the font size
# is chosen for a chart printed about 13 cm wide, two to a landscape A4 line).
FONT = 14
LABEL_W = 170  # quartier labels, right-aligned at this x
HEADING_W = 150  # group headings (mechanisms), left of the quartier labels
PLOT_W = 330
VALUE_W = 110
ROW_H = 20
BAR_H = 14
GROUP_GAP = 6
PAD = 6
PALETTE = ("#3b6ea5", "#d08a2e", "#5a9a5a", "#a4508b", "#6c6c6c", "#b5483b", "#3f8f8f")
MAX_LABEL = 20


@dataclass(frozen=True)
class Bar:
    label: str
    value: Number
    text: str
    color: str = PALETTE[0]


def _short(label: str) -> str:
    return label if len(label) <= MAX_LABEL else label[: MAX_LABEL - 1] + "…"


def _n(x: float) -> str:
    return f"{x:.2f}".rstrip("0").rstrip(".")


def bar_chart(code: str, title: str, groups: Sequence[tuple[str | None, Sequence[Bar]]]) -> Markup:
    """A horizontal bar chart as inline SVG: one row per ``Bar`` (label, bar, value text),
    in groups whose heading, if any, stands left of the group's first row; a null value
    gets its ``text`` (``—``) and no bar.

    The scale runs from ``min(0, values)`` to ``max(0, values)``, with a zero line.
    Every text is escaped; the SVG is well-formed XML.
    """
    headed = any(heading is not None for heading, _ in groups)
    label_right = (HEADING_W if headed else 0) + LABEL_W
    plot_x = label_right + 10
    value_x = plot_x + PLOT_W + 8
    width = value_x + VALUE_W
    numbers = [float(b.value) for _, bars in groups for b in bars if b.value is not None]
    lo = min([0.0, *numbers])
    hi = max([0.0, *numbers])
    if hi == lo:
        hi = lo + 1.0

    def x(v: float) -> float:
        return plot_x + (v - lo) / (hi - lo) * PLOT_W

    def text(cls: str, tx: float, ty: float, content: str, **attrs: str) -> str:
        extra = "".join(f' {k.replace("_", "-")}="{escape(v)}"' for k, v in attrs.items())
        return f'<text class="{cls}" x="{_n(tx)}" y="{_n(ty)}"{extra}>{content}</text>'

    parts: list[str] = []
    y = float(PAD)
    count = 0
    for index, (heading, bars) in enumerate(groups):
        if headed and index > 0:
            y += GROUP_GAP
            parts.append(
                f'<line class="separator" x1="0" y1="{_n(y - GROUP_GAP / 2)}" x2="{width}" '
                f'y2="{_n(y - GROUP_GAP / 2)}" stroke="#ccc" stroke-width="1"/>'
            )
        if heading is not None:
            parts.append(
                text("group", 0, y + ROW_H / 2 + FONT * 0.35, escape(heading), font_weight="bold")
            )
        for bar in bars:
            count += 1
            middle = y + ROW_H / 2
            baseline = middle + FONT * 0.35
            label = f"<title>{escape(bar.label)}</title>{escape(_short(bar.label))}"
            parts.append(text("label", label_right, baseline, label, text_anchor="end"))
            if bar.value is not None:
                v = float(bar.value)
                left, right = x(min(0.0, v)), x(max(0.0, v))
                parts.append(
                    f'<rect class="bar" x="{_n(left)}" y="{_n(middle - BAR_H / 2)}" '
                    f'width="{_n(right - left)}" height="{BAR_H}" fill="{bar.color}">'
                    f"<title>{escape(bar.label)} : {escape(bar.text)}</title></rect>"
                )
            parts.append(text("value", value_x, baseline, escape(bar.text)))
            y += ROW_H
    if count == 0:
        parts.append(text("label", 0, y + ROW_H / 2 + FONT * 0.35, "Aucun quartier"))
        y += ROW_H
    zero = x(0.0)
    parts.append(
        f'<line class="axis" x1="{_n(zero)}" y1="{PAD - 2}" x2="{_n(zero)}" '
        f'y2="{_n(y + 2)}" stroke="#333" stroke-width="1"/>'
    )
    height = y + PAD
    return Markup(
        f'<svg xmlns="http://www.w3.org/2000/svg" class="chart" data-code="{escape(code)}" '
        f'viewBox="0 0 {width} {_n(height)}" width="{width}" height="{_n(height)}" '
        f'role="img" font-family="sans-serif" font-size="{FONT}">'
        f"<title>{escape(title)}</title>" + "".join(parts) + "</svg>"
    )


def _charts(fiche: Fiche) -> list[dict[str, Any]]:
    """One chart per indicator across the quartiers, the mechanisms' (wide) last; the
    total is in the caption (beside the quartiers it would dwarf every count)."""
    quartiers = [(q, v) for q, v in fiche.rows.items() if q is not None]
    total = fiche.rows.get(None)
    charts = []
    for code in [c for c in INDICATOR_CODES if c != MOBILISATION] + [MOBILISATION]:
        title = INDICATOR_LABELS[code]
        if code == MOBILISATION:
            groups: list[tuple[str | None, list[Bar]]] = [
                (
                    MECHANISM_LABELS[m],
                    [
                        Bar(q, v[code][m], display(code, v[code][m]), PALETTE[i % len(PALETTE)])
                        for i, (q, v) in enumerate(quartiers)
                    ],
                )
                for m in MECHANISMS
            ]
            caption = (
                None
                if total is None
                else "Tous quartiers : "
                + " ; ".join(
                    f"{MECHANISM_LABELS[m]} {display(code, total[code][m])}" for m in MECHANISMS
                )
            )
        else:
            groups = [(None, [Bar(q, v[code], display(code, v[code])) for q, v in quartiers])]
            caption = None if total is None else f"Tous quartiers : {display(code, total[code])}"
        charts.append(
            {
                "code": code,
                "title": title,
                "svg": bar_chart(code, title, groups),
                "caption": caption,
                "wide": code == MOBILISATION,
            }
        )
    return charts


def _table(fiche: Fiche) -> list[dict[str, Any]]:
    """Per row: its label, the 11 figures and the 9 mechanism counts, each with its link
    (two tables on the page: twenty columns do not fit across a sheet)."""
    rows = []
    for quartier, values in fiche.rows.items():
        cells = [
            {"text": display(code, values[code]), "href": lineage_url(fiche, code, quartier),
             "code": code}
            for code in INDICATOR_CODES
            if code != MOBILISATION
        ]  # fmt: skip
        href = lineage_url(fiche, MOBILISATION, quartier)
        mechanisms = [
            {"text": display(MOBILISATION, values[MOBILISATION][m]), "href": href,
             "code": f"{MOBILISATION}.{m}"}
            for m in MECHANISMS
        ]  # fmt: skip
        rows.append(
            {
                "label": "Tous quartiers (total)" if quartier is None else quartier,
                "total": quartier is None,
                "cells": cells,
                "mechanisms": mechanisms,
            }
        )
    return rows


@cache
def _environment() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.PackageLoader("services.indicators", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )


def fiche_html(fiche: Fiche) -> str:
    """The printable page: context, table (each figure a link to its lineage), charts."""
    template = _environment().get_template("fiche.html")
    return template.render(
        title=f"Fiche {FICHE} — indicateurs",
        fiche=fiche,
        start=fiche.start.isoformat(),
        end=fiche.end.isoformat(),
        labels=INDICATOR_LABELS,
        codes=[c for c in INDICATOR_CODES if c != MOBILISATION],
        mobilisation=MOBILISATION,
        mechanisms=[MECHANISM_LABELS[m] for m in MECHANISMS],
        rows=_table(fiche),
        charts=_charts(fiche),
    )
