"""Submit one good envie and one bad one, and print their receipts (the README's example).

.venv/bin/python examples/submit_envie.py            # against `make run`
FPH_NATS_URL=nats://host:4222 .venv/bin/python examples/submit_envie.py
"""

import asyncio
import os
import uuid
from datetime import UTC, datetime

from shared.client import SubmitClient

NATS_URL = os.environ.get("FPH_NATS_URL", "nats://127.0.0.1:4333")


async def main() -> None:
    async with await SubmitClient.connect(NATS_URL, source="demo") as client:
        envie = {
            "event_id": str(uuid.uuid4()),
            "type": "EnvieRecorded",
            "schema_version": 1,
            "occurred_at": datetime.now(UTC).isoformat(),
            "quartier": "QN09301M",
            "aggregate_id": uuid.uuid4().hex,
            "correlation_id": None,
            "causation_id": None,
            "data": {
                "channel": "permanence",
                "theme": "cadre_de_vie",
                "summary": "Des bancs et de l'ombre square Jean-Moulin",
                "porteur_id": None,
                "wants_to_carry": True,
            },
        }
        receipt = await client.submit(envie)
        print("good envie:", receipt.as_dict())

        bad = {
            **envie,
            "event_id": str(uuid.uuid4()),
            "quartier": "QN00000X",
            "data": {**envie["data"], "theme": "meteo"},
        }
        receipt = await client.submit(bad)
        print("bad envie: ", receipt.as_dict())


asyncio.run(main())
