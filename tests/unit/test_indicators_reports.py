"""The fiche's documents (``services.indicators.reports``), pure rendering.

The CSV reads back (``csv`` module) to the very values given, null as empty cells and
the mechanisms flattened in ``Mechanism`` order; the JSON reads back to them too; the
HTML page escapes what it is given, links every figure to its lineage and has one SVG
chart per indicator, with no bar for a null value.
"""

from __future__ import annotations

import csv
import io
import json
import re
import xml.etree.ElementTree as ET
from datetime import date
from html.parser import HTMLParser
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from services.indicators import reference, reports
from shared.codec import event_from_dict
from shared.events import Mechanism
from tests.factories import Q1, Q2, submission

DIGEST = "sha256:" + "0123456789abcdef" * 4
HOSTILE = '<script>alert("x")</script>&amp;\'"'
SVG_NS = "{http://www.w3.org/2000/svg}"


def figures(**overrides: Any) -> dict[str, Any]:
    values: dict[str, Any] = {
        "envies_recueillies": 3,
        "projets_accompagnes": 2,
        "projets_developpes": 1,
        "porteurs": 4,
        "taux_transformation": 0.3333,
        "actions_abouties": 1,
        "participants": 1234567,
        "participants_moyen": 12.0,
        "impact_percu": 4.25,
        "mecanismes_mobilisation": {m.value: i for i, m in enumerate(Mechanism)},
        "delai_decision_jours": 14.5,
        "montant_attribue_cents": 6_000_012,
    }
    values.update(overrides)
    return values


def fiche(rows: dict[str | None, dict[str, Any]] | None = None) -> reports.Fiche:
    if rows is None:
        rows = {
            Q1: figures(),
            Q2: figures(
                envies_recueillies=0,
                taux_transformation=None,
                participants_moyen=None,
                impact_percu=None,
                delai_decision_jours=None,
            ),
            None: figures(envies_recueillies=3, taux_transformation=0.0001, impact_percu=1.1),
        }
    return reports.Fiche(date(2026, 1, 1), date(2027, 1, 1), 42, DIGEST, rows)


def parse_cell(code: str, cell: str) -> Any:
    if cell == "":
        return None
    return float(cell) if code in reports.DECIMALS else int(cell)


def test_csv_header_flattens_the_mechanisms_in_mechanism_order() -> None:
    header = next(csv.reader(io.StringIO(reports.fiche_csv(fiche()))))
    mechanisms = [f"mecanismes_mobilisation.{m.value}" for m in Mechanism]
    assert len(mechanisms) == 9
    codes = list(reference.INDICATOR_CODES)
    at = codes.index("mecanismes_mobilisation")
    expected = codes[:at] + mechanisms + codes[at + 1 :]
    assert header == ["quartier", "from", "to", "as_of_seq", "as_of_digest", *expected]
    assert header == reports.csv_columns()


def test_csv_reads_back_to_the_same_values() -> None:
    report = fiche()
    text = reports.fiche_csv(report)
    assert text.endswith("\r\n") and "\r\n" in text.splitlines(keepends=True)[0]
    lines = list(csv.DictReader(io.StringIO(text)))
    assert [line["quartier"] for line in lines] == [Q1, Q2, "total"]
    for line, values in zip(lines, report.rows.values(), strict=True):
        assert (line["from"], line["to"]) == ("2026-01-01", "2027-01-01")
        assert (line["as_of_seq"], line["as_of_digest"]) == ("42", DIGEST)
        back: dict[str, Any] = {}
        for code in reference.INDICATOR_CODES:
            if code == "mecanismes_mobilisation":
                back[code] = {m.value: int(line[f"{code}.{m.value}"]) for m in Mechanism}
            else:
                back[code] = parse_cell(code, line[code])
        assert back == values
        # and the same types: ints stay ints, floats stay floats
        for code in reference.INDICATOR_CODES:
            assert type(back[code]) is type(values[code]), code


def test_csv_writes_numbers_exactly_and_null_as_empty() -> None:
    line = list(csv.DictReader(io.StringIO(reports.fiche_csv(fiche()))))
    q1, q2, total = line
    assert q1["taux_transformation"] == "0.3333"
    assert q1["participants_moyen"] == "12.0"
    assert q1["delai_decision_jours"] == "14.5"
    assert q1["participants"] == "1234567"
    assert q1["montant_attribue_cents"] == "6000012"
    assert total["taux_transformation"] == "0.0001"  # not 1e-04
    assert total["impact_percu"] == "1.1"  # not 1.1000000000000001
    for code in ("taux_transformation", "participants_moyen", "impact_percu"):
        assert q2[code] == "", code
    assert q2["delai_decision_jours"] == ""
    assert q2["envies_recueillies"] == "0"  # zero is not null


def test_plain_number_never_uses_exponents() -> None:
    assert reports.plain_number(None) == ""
    assert reports.plain_number(0) == "0"
    assert reports.plain_number(1e-4) == "0.0001"
    assert reports.plain_number(1e-7) == "0.0000001"
    assert reports.plain_number(1e16) == "10000000000000000"
    assert reports.plain_number(0.1 + 0.2) == "0.30000000000000004"  # what Python prints
    assert float(reports.plain_number(2 / 3)) == 2 / 3


def test_csv_quotes_what_needs_quoting() -> None:
    report = fiche({'Q,"1"': figures(), None: figures()})
    lines = list(csv.reader(io.StringIO(reports.fiche_csv(report))))
    assert [line[0] for line in lines[1:]] == ['Q,"1"', "total"]


def test_json_round_trip() -> None:
    report = fiche()
    doc = json.loads(reports.fiche_json(report))
    assert doc == {
        "from": "2026-01-01",
        "to": "2027-01-01",
        "as_of": {"seq": 42, "digest": DIGEST},
        "rows": [
            {"quartier": Q1, "indicators": report.rows[Q1]},
            {"quartier": Q2, "indicators": report.rows[Q2]},
            {"quartier": "total", "indicators": report.rows[None]},
        ],
    }
    assert list(doc["rows"][0]["indicators"]) == list(reference.INDICATOR_CODES)
    mechanisms = doc["rows"][0]["indicators"]["mecanismes_mobilisation"]
    assert list(mechanisms) == [m.value for m in Mechanism]
    assert reports.fiche_document(report) == doc


def test_the_reference_figures_go_through_unchanged() -> None:
    """Figures as the store and the reference compute them (ints, rounded floats, None)."""
    log = [
        (1, submission("EnvieRecorded", aggregate_id="e1", occurred_at="2026-03-01T10:00:00Z")),
        (2, submission("EnvieRecorded", aggregate_id="e2", occurred_at="2026-03-02T10:00:00Z")),
        (3, submission("EnvieRecorded", aggregate_id="e3", quartier=Q2)),
        (4, submission("GrantAwarded", aggregate_id=f"FPH-2026-{Q1}",
                       occurred_at="2026-04-01T10:00:00Z")),
        (5, submission("ImpactAssessed", aggregate_id="p1", occurred_at="2026-05-01T10:00:00Z",
                       data={"scores": {"1": 1, "2": 1, "5": 1}})),
    ]  # fmt: skip
    events = [(seq, event_from_dict(doc)) for seq, doc in log]
    period = {"start": date(2026, 1, 1), "end": date(2027, 1, 1), "as_of_seq": 5}
    rows: dict[str | None, dict[str, Any]] = {
        q: reference.compute(events, quartier=q, **period) for q in (Q1, Q2, None)
    }
    report = reports.Fiche(date(2026, 1, 1), date(2027, 1, 1), 5, DIGEST, rows)
    doc = json.loads(reports.fiche_json(report))
    assert [r["indicators"] for r in doc["rows"]] == list(rows.values())
    q1 = next(csv.DictReader(io.StringIO(reports.fiche_csv(report))))
    assert q1["taux_transformation"] == "0.5"
    assert q1["impact_percu"] == "2.67"


def test_fiche_refuses_what_the_store_never_gives() -> None:
    with pytest.raises(ValueError, match="indicators"):
        fiche({Q1: {"envies_recueillies": 1}})
    with pytest.raises(ValueError, match="mechanisms"):
        fiche({Q1: figures(mecanismes_mobilisation={"ecole": 1})})
    with pytest.raises(TypeError, match="porteurs"):
        fiche({Q1: figures(porteurs="4")})
    with pytest.raises(TypeError, match="porteurs"):
        fiche({Q1: figures(porteurs=True)})
    with pytest.raises(ValueError, match="finite"):
        fiche({Q1: figures(impact_percu=float("nan"))})
    with pytest.raises(ValueError, match="total"):
        fiche({"total": figures()})
    with pytest.raises(ValueError, match="after"):
        reports.Fiche(date(2026, 1, 1), date(2026, 1, 1), 0, DIGEST, {})


def test_filename() -> None:
    assert reports.filename(fiche(), "csv") == "fiche-1.1.6_2026-01-01_2027-01-01_seq42.csv"


# --- the page -----------------------------------------------------------------------


class Links(HTMLParser):
    """The page's links (cell code -> href) per row header, and every tag seen."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: set[str] = set()
        self.rows: list[dict[str, str]] = []
        self.row_labels: list[str] = []
        self._code: str | None = None
        self._in_row_header = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        self.tags.add(tag)
        if tag == "tr":
            self.rows.append({})
            self.row_labels.append("")
        elif tag == "th" and a.get("scope") == "row":
            self._in_row_header = True
        elif tag == "td" and a.get("data-code"):
            self._code = a["data-code"]
        elif tag == "a" and self._code is not None:
            self.rows[-1][self._code] = a["href"] or ""

    def handle_endtag(self, tag: str) -> None:
        if tag == "td":
            self._code = None
        elif tag == "th":
            self._in_row_header = False

    def handle_data(self, data: str) -> None:
        if self._in_row_header:
            self.row_labels[-1] += data


def svgs(page: str) -> dict[str, ET.Element]:
    """Every inline chart, parsed as XML (so they are well-formed), by indicator code."""
    out = {}
    for text in re.findall(r"<svg\b.*?</svg>", page, flags=re.S):
        element = ET.fromstring(text)
        out[element.attrib["data-code"]] = element
    return out


def test_html_has_the_context_and_one_chart_per_indicator() -> None:
    page = reports.fiche_html(fiche())
    assert "<title>Fiche 1.1.6 — indicateurs" in page
    assert "<h1>Fiche 1.1.6 — indicateurs</h1>" in page
    assert DIGEST in page and "2026-01-01" in page and "2027-01-01" in page
    assert "42" in page
    for label in ("Envies recueillies", "Projets accompagnés", "Mécanismes de mobilisation"):
        assert label in page
    assert page.count("<svg") == len(reference.INDICATOR_CODES) == 12
    charts = list(svgs(page))
    assert sorted(charts) == sorted(reference.INDICATOR_CODES)
    assert charts[-1] == "mecanismes_mobilisation"  # the wide one, last
    assert "@media print" in page
    # nothing to fetch, nothing to run
    parser = Links()
    parser.feed(page)
    assert not parser.tags & {"script", "link", "img", "iframe", "object"}
    assert "http://" not in page.replace('xmlns="http://www.w3.org/2000/svg"', "")
    assert "https://" not in page


def test_html_null_is_a_dash_and_no_bar() -> None:
    page = reports.fiche_html(fiche())
    charts = svgs(page)
    for code in ("taux_transformation", "participants_moyen", "impact_percu"):
        bars = charts[code].findall(f".//{SVG_NS}rect[@class='bar']")
        values = [t.text for t in charts[code].findall(f".//{SVG_NS}text[@class='value']")]
        assert len(bars) == 1, code  # Q1 only; Q2 is null (the total is in the caption)
        assert values[1] == "—", code
    bars = charts["envies_recueillies"].findall(f".//{SVG_NS}rect[@class='bar']")
    assert len(bars) == 2  # zero is a value: a bar of width 0
    assert [b.attrib["width"] for b in bars][1] == "0"
    mobilisation = charts["mecanismes_mobilisation"]
    assert len(mobilisation.findall(f".//{SVG_NS}rect[@class='bar']")) == 9 * 2
    # the table shows the dash too, French notation elsewhere
    assert ">—</a>" in page
    assert "33,33\u202f%" in page  # taux_transformation 0.3333
    assert "60\u202f000,12\u202f€" in page  # 6,000,012 cents
    assert "1\u202f234\u202f567" in page


def test_html_escapes_a_hostile_label() -> None:
    page = reports.fiche_html(fiche({HOSTILE: figures(), None: figures()}))
    assert "<script" not in page
    assert "&lt;script&gt;" in page
    assert 'alert("x")' not in page  # quotes escaped too
    svgs(page)  # still well-formed XML
    parser = Links()
    parser.feed(page)
    assert HOSTILE in parser.row_labels  # shown as text, exactly
    assert parser.row_labels.count(HOSTILE) == 2  # in both tables
    href = parser.rows[parser.row_labels.index(HOSTILE)]["envies_recueillies"]
    assert parse_qs(urlsplit(href).query)["quartier"] == [HOSTILE]


def test_html_links_every_figure_to_its_lineage() -> None:
    page = reports.fiche_html(fiche())
    parser = Links()
    parser.feed(page)
    table: dict[str, dict[str, str]] = {}  # the figures' table and the mechanisms' table
    for label, links in zip(parser.row_labels, parser.rows, strict=True):
        table.setdefault(label, {}).update(links)
    columns = reports.csv_columns()[5:]
    for label, quartier in ((Q1, Q1), (Q2, Q2), ("Tous quartiers (total)", None)):
        links = table[label]
        assert sorted(links) == sorted(columns), label
        for column, href in links.items():
            code = column.split(".")[0]
            parts = urlsplit(href)
            assert not parts.scheme and not parts.netloc  # relative
            assert parts.path == f"../indicators/{code}/lineage"
            query = parse_qs(parts.query)
            expected = {"from": ["2026-01-01"], "to": ["2027-01-01"], "as_of_seq": ["42"]}
            if quartier is not None:
                expected["quartier"] = [quartier]
            assert query == expected, (label, column)


def test_html_without_quartiers_still_renders() -> None:
    page = reports.fiche_html(fiche({None: figures()}))
    assert page.count("<svg") == 12
    assert "Aucun quartier" in page
