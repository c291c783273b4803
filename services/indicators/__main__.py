"""``python -m services.indicators`` (or ``fph-indicators``): run the indicators service."""

from __future__ import annotations

from services.indicators.app import create_app
from services.indicators.settings import IndicatorsSettings
from shared.serve import serve


def main(argv: list[str] | None = None) -> None:
    serve(
        "indicators",
        "Indicators service: follows FPH_EVENTS into its store and serves the fiche 1.1.6"
        " indicators (GET /indicators?quartier=&from=&to=&as_of_seq=), the events behind each"
        " figure (GET /indicators/<code>/lineage) and /metrics. Settings: FPH_* variables"
        " (FPH_NATS_URL, FPH_QUARTIERS, FPH_TIMEZONE, FPH_INDICATORS_DATABASE_URL,"
        " FPH_INDICATORS_PORT...).",
        IndicatorsSettings(),
        create_app,
        argv,
    )


if __name__ == "__main__":
    main()
