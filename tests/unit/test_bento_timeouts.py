"""BentoML's request timeout as every Bento runs it (``bento_services.oip.timeouts``): a finished
request leaves no timer behind (BentoML 1.4's kept each request alive for the whole timeout), and
a slow one still gets BentoML's 504."""

from __future__ import annotations

import asyncio

from bento_services.oip.timeouts import cancel_request_timers


def serve_one(seconds: float, timeout: float) -> tuple[list[dict], list]:
    """One HTTP request through ``TimeoutMiddleware`` to an app answering after ``seconds``: the
    messages sent and the middleware's timers still pending in the loop afterwards."""
    from bentoml._internal.server.http.traffic import TimeoutMiddleware

    async def app(scope, receive, send):
        await asyncio.sleep(seconds)
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    async def run():
        sent = []

        async def receive():
            return {"type": "http.request", "body": b""}

        async def send(message):
            sent.append(message)

        await TimeoutMiddleware(app, timeout=timeout)({"type": "http"}, receive, send)
        return sent, [h for h in asyncio.get_running_loop()._scheduled
                      if not h.cancelled() and getattr(h._callback, "__name__", "") == "_set_timer_out"]

    return asyncio.run(run())


def test_a_finished_request_leaves_no_timer_behind():
    cancel_request_timers()
    sent, pending = serve_one(0.0, timeout=60)
    assert sent[0]["status"] == 200 and sent[-1]["body"] == b"ok"
    assert pending == []  # BentoML's own middleware leaves its 60 s timer, holding the request


def test_a_request_over_the_timeout_still_gets_a_504():
    cancel_request_timers()
    sent, pending = serve_one(5.0, timeout=0.05)
    assert sent[0]["status"] == 504 and b"Not able to process the request in 0.05 seconds" in sent[-1]["body"]
    assert pending == []
