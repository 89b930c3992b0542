"""A trivial FastAPI endpoint (the issue's reference point): the cheapest possible upstream.

python bench/support/trivial_upstream.py <port>
"""

from __future__ import annotations

import sys

import uvicorn
from fastapi import FastAPI

app = FastAPI()


@app.get("/health")
async def health() -> dict[str, str]:
    return {"status": "healthy"}


@app.get("/api/v1/cases/{case_id}")
async def case(case_id: str) -> dict[str, str]:
    return {"case_id": case_id, "title": "trivial"}


if __name__ == "__main__":
    uvicorn.run(
        app,
        host="127.0.0.1",
        port=int(sys.argv[1]),
        loop="uvloop",
        http="httptools",
        access_log=False,
        log_level="warning",
    )
