"""The generated docs (docs/) match the code, and what they show is valid."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from shared import docs
from shared.codec import FieldError, InvalidEvent, event_from_dict
from shared.events import EVENT_TYPES
from shared.receipts import Receipt

JSON_BLOCK = re.compile(r"```json\n(.*?)\n```", re.DOTALL)


def test_docs_are_fresh():
    stale = docs.stale_files()
    assert stale == [], (
        "docs/ is out of date with the code: " + ", ".join(stale) + "; run `make docs`"
    )


def test_generation_is_deterministic():
    assert docs.render() == docs.render()


def _md_examples() -> list[dict[str, Any]]:
    text = (docs.DOCS_DIR / "events.md").read_text(encoding="utf-8")
    blocks = [json.loads(b) for b in JSON_BLOCK.findall(text)]
    return [b for b in blocks if "event_id" in b and "type" in b and "data" in b]


def test_every_example_in_the_docs_validates():
    shown = _md_examples()
    assert shown, "no example events found in docs/events.md"
    for doc in shown:
        event = event_from_dict(doc)
        assert event.type == doc["type"]
    asyncapi = json.loads((docs.DOCS_DIR / "asyncapi.json").read_text(encoding="utf-8"))
    in_asyncapi = [
        example["payload"]
        for message in asyncapi["channels"]["inbox"]["messages"].values()
        for example in message.get("examples", [])
    ]
    assert in_asyncapi
    for doc in in_asyncapi:
        event_from_dict(doc)


def test_docs_cover_all_15_event_types():
    assert len(EVENT_TYPES) == 15
    assert [d["type"] for d in _md_examples()] == list(EVENT_TYPES)
    text = (docs.DOCS_DIR / "events.md").read_text(encoding="utf-8")
    for name in EVENT_TYPES:
        assert f"\n## {name}\n" in text
    schemas = sorted(p.name for p in (docs.DOCS_DIR / "schemas").glob("*.json"))
    assert schemas == sorted([f"{n}.json" for n in EVENT_TYPES] + ["receipt.json"])
    asyncapi = json.loads((docs.DOCS_DIR / "asyncapi.json").read_text(encoding="utf-8"))
    assert set(asyncapi["channels"]["events"]["messages"]) == set(EVENT_TYPES)


def test_schemas_name_owner_aggregate_and_version():
    for name, cls in EVENT_TYPES.items():
        schema = json.loads((docs.DOCS_DIR / "schemas" / f"{name}.json").read_text("utf-8"))
        assert schema["x-fph-owner"] == cls.OWNER
        assert schema["x-fph-aggregate"] == cls.AGGREGATE.value
        assert schema["x-fph-schema-version"] == cls.CURRENT_VERSION
        assert f"Owner service: {cls.OWNER}" in schema["description"]
        assert schema["properties"]["type"]["const"] == name
        assert cls.CURRENT_VERSION in schema["properties"]["schema_version"]["enum"]


def test_examples_are_checked_when_generating():
    good = docs.examples()["CommitteeDecided"]
    bad = {**good, "data": {**good["data"], "members_present": 8}}
    with pytest.raises(InvalidEvent):
        docs.validate_example(bad)
    # Valid but not as written (a default filled in): also refused.
    envie = docs.examples()["EnvieRecorded"]
    without_place = {**envie, "data": {k: v for k, v in envie["data"].items() if k != "place"}}
    with pytest.raises(ValueError, match="not canonical"):
        docs.validate_example(without_place)


def test_a_wrong_example_fails_generation(tmp_path: Path, monkeypatch, capsys):
    occurred_at, aggregate_id, correlation, causation, data = docs._EXAMPLE_PARTS["GrantPaid"]
    wrong = (occurred_at, aggregate_id, correlation, causation, {**data, "amount_cents": 10.0})
    monkeypatch.setitem(docs._EXAMPLE_PARTS, "GrantPaid", wrong)
    with pytest.raises(InvalidEvent):
        docs.render()
    out = tmp_path / "docs"
    assert docs.main(["--out", str(out)]) == 2
    assert "data.amount_cents" in capsys.readouterr().err
    assert not out.exists()


def test_receipt_schema_describes_what_the_project_emits():
    schema = json.loads((docs.DOCS_DIR / "schemas" / "receipt.json").read_text("utf-8"))
    accepted_shape, rejected_shape = schema["oneOf"]
    accepted = json.loads(Receipt.accepted(1, "e", 2).to_json())
    assert set(accepted) == set(accepted_shape["required"])
    assert accepted["status"] == accepted_shape["properties"]["status"]["const"]
    rejected = json.loads(Receipt.rejected(1, None, [FieldError("f", "m", "c")]).to_json())
    assert set(rejected) == set(rejected_shape["required"])
    assert rejected["status"] == rejected_shape["properties"]["status"]["const"]
    error_shape = schema["$defs"]["FieldError"]
    assert set(rejected["errors"][0]) == set(error_shape["required"])


def test_check_reports_missing_stale_and_left_over_files(tmp_path: Path, capsys):
    out = tmp_path / "docs"
    assert docs.main(["--out", str(out)]) == 0
    assert docs.stale_files(out) == []
    assert docs.main(["--check", "--out", str(out)]) == 0

    (out / "events.md").write_text("old\n", encoding="utf-8")
    (out / "schemas" / "GrantPaid.json").unlink()
    (out / "schemas" / "GrantCancelled.json").write_text("{}\n", encoding="utf-8")
    assert docs.stale_files(out) == [
        "events.md (stale)",
        "schemas/GrantPaid.json (missing)",
        "schemas/GrantCancelled.json (no longer generated)",
    ]
    capsys.readouterr()
    assert docs.main(["--check", "--out", str(out)]) == 1
    err = capsys.readouterr().err
    assert "events.md (stale)" in err
    assert "make docs" in err

    assert docs.main(["--out", str(out)]) == 0
    assert docs.stale_files(out) == []
    assert not (out / "schemas" / "GrantCancelled.json").exists()
