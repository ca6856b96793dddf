"""`tunewright review serve RUN`: the blind review of an eval (or replay) run as a local web page.

The page (`review_page.html`, at `/`) shows one prompt at a time with the two answers in the order
`evaluate.review.blind_pairs` fixed (a seeded coin per pair), under A and B, never with model
names; the key stays in this process. Reviewers name themselves, judge by keyboard or mouse,
and each judgment is appended to the run's judgment log before the page moves on, so a reload,
a closed tab or a restarted server resumes where that reviewer stopped. Security is the
server's: it listens on 127.0.0.1 unless told otherwise, and any other address needs a token
(sent as `Authorization: Bearer`, or `?token=` on the page's address), which the page passes
on to the API.
"""

from __future__ import annotations

import hmac
import time
from importlib.resources import files
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response
from pydantic import BaseModel, Field
from starlette.middleware.base import BaseHTTPMiddleware, RequestResponseEndpoint

from tunewright.evaluate.judgments import VERDICTS, ReviewSession

SHOWN = ("pair_id", "question", "reference", "answer_a", "answer_b")
MAX_TEXT = 20_000


class Judgment(BaseModel):
    reviewer: str = Field(min_length=1, max_length=100)
    pair_id: str
    verdict: str
    comment: str = Field("", max_length=MAX_TEXT)
    correction: str = Field("", max_length=MAX_TEXT)


class _Token(BaseHTTPMiddleware):
    """Every request must carry the token (a header, or `?token=` in the address)."""

    def __init__(self, app: Any, token: str) -> None:
        super().__init__(app)
        self.token = token

    async def dispatch(self, request: Request, call_next: RequestResponseEndpoint) -> Response:
        given = request.headers.get("authorization", "").removeprefix("Bearer ").strip()
        given = given or request.query_params.get("token", "")
        if not hmac.compare_digest(given.encode(), self.token.encode()):
            return JSONResponse({"error": "a valid review token is required"}, status_code=401)
        return await call_next(request)


def create_review_app(session: ReviewSession, token: str | None = None) -> FastAPI:
    """The review page and its API over `session` (every route needs `token` when one is given)."""
    app = FastAPI(title="tunewright review", docs_url=None, redoc_url=None, openapi_url=None)
    page = files("tunewright.evaluate").joinpath("review_page.html").read_text(encoding="utf-8")
    shown = [{k: row[k] for k in SHOWN} for row in session.rows]
    if token:
        app.add_middleware(_Token, token=token)

    @app.get("/", response_class=HTMLResponse)
    def index() -> str:
        return page

    @app.get("/api/pairs")
    def pairs() -> dict[str, Any]:
        return {"eval_run": session.eval_id, "pairs": shown}

    @app.get("/api/judgments")
    def judgments(reviewer: str) -> dict[str, Any]:
        mine = {j["pair_id"]: j for j in session.log.latest() if j["reviewer"] == reviewer}
        return {"reviewer": reviewer, "judgments": mine}

    @app.post("/api/judgments", response_model=None)
    def judge(body: Judgment) -> dict[str, Any] | JSONResponse:
        if body.pair_id not in session.key:
            return JSONResponse({"error": f"no pair {body.pair_id!r} in this review"}, status_code=400)
        if body.verdict not in VERDICTS:
            return JSONResponse({"error": f"verdict must be one of {', '.join(VERDICTS)}"}, status_code=400)
        reviewer = body.reviewer.strip()
        if not reviewer:
            return JSONResponse({"error": "reviewer: give a name"}, status_code=400)
        session.log.add({**body.model_dump(), "reviewer": reviewer, "at": time.time()})
        return {"saved": body.pair_id}

    @app.get("/api/progress")
    def progress() -> dict[str, Any]:
        counts: dict[str, int] = {}
        for j in session.log.latest():
            counts[j["reviewer"]] = counts.get(j["reviewer"], 0) + 1
        return {"pairs": len(session.rows), "judged": counts}

    return app
