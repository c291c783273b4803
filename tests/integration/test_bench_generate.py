"""``bench.generate.load`` on a real nats-server: the generated log lands in FPH_EVENTS
exactly as ``EventLog.append`` would have written it."""

from __future__ import annotations

import pytest
from nats.aio.client import Client as NATS
from nats.js import JetStreamContext
from nats.js import api as js_api

from bench.generate import generate, load
from shared.codec import parse_logged
from shared.log import EVENT_TYPE_HEADER, EventLog, StreamsMissing, subject_of
from shared.subjects import EVENTS_STREAM

pytestmark = pytest.mark.anyio

N = 20_000


async def test_load_appends_every_generated_event_with_the_logs_headers_and_bytes(
    nc: NATS, js: JetStreamContext
):
    assert await load(nc, generate(N, seed=11)) == N

    info = await js.stream_info(EVENTS_STREAM)
    assert info.state.last_seq == N and info.state.messages == N
    assert await EventLog(js).last_seq() == N

    events = list(generate(N, seed=11))  # deterministic: the same events again
    for seq in (1, 2, 3, 777, N // 2, N - 1, N):
        event = events[seq - 1]
        msg = await js.get_msg(EVENTS_STREAM, seq)
        assert msg.subject == subject_of(event)
        assert msg.data == event.to_json()
        assert msg.headers is not None
        assert msg.headers[js_api.Header.MSG_ID.value] == str(event.event_id)
        assert msg.headers[EVENT_TYPE_HEADER] == event.type
        assert parse_logged(msg.data).event_id == event.event_id


async def test_load_needs_the_streams(nc: NATS):
    with pytest.raises(StreamsMissing):
        await load(nc, generate(3))
