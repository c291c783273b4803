"""Settings of every service read the shared FPH_* variables the same way."""

from __future__ import annotations

import pytest

from services.funding.settings import FundingSettings
from services.intake.settings import IntakeSettings
from services.review.settings import ReviewSettings


@pytest.mark.parametrize("cls", [IntakeSettings, ReviewSettings, FundingSettings])
def test_comma_separated_lists_from_the_environment(cls, monkeypatch):
    monkeypatch.setenv("FPH_QUARTIERS", "QN09301M, QN09302M")
    monkeypatch.setenv("FPH_SOURCES", "city,asso-x")
    monkeypatch.setenv("FPH_SOURCE_TYPES", '{"asso-x": ["EnvieRecorded"]}')
    settings = cls()
    assert settings.quartiers == ["QN09301M", "QN09302M"]
    assert settings.sources == ["city", "asso-x"]
    assert settings.source_types == {"asso-x": ["EnvieRecorded"]}


def test_review_reads_partners_and_the_committee_rule(monkeypatch):
    monkeypatch.setenv("FPH_PARTNERS", "centre-social-nord, asso-y")
    monkeypatch.setenv("FPH_REVIEW_COMMITTEE_RULE", "residents_at_least_half")
    monkeypatch.setenv("FPH_QUARTIERS", "QN09301M")
    settings = ReviewSettings()
    assert settings.partners == ["centre-social-nord", "asso-y"]
    assert settings.review_committee_rule == "residents_at_least_half"
    assert settings.quartiers == ["QN09301M"]
