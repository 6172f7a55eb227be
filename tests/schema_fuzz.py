"""Schemathesis against a running llmwatch, one worker process per share of the operations.

    python -m tests.schema_fuzz http://127.0.0.1:3000 'POST /api/open-wrapper=750,300' ...

Each job is `METHOD PATH=POSITIVE,NEGATIVE`: that many generated cases of each mode. Every
response must pass the checks below: no 5xx, a documented status, a documented content type,
headers and a body that conform to the declared schema. Prints one JSON line per job: the
operation, the cases sent, the statuses seen and the first few failures (with a curl command).
The test (`tests/integration/test_schemathesis.py`) runs two of these side by side: hypothesis
generation is single-threaded and is what takes the time.
"""

from __future__ import annotations

import json
import sys
from collections import Counter
from typing import Any

import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]
STREAM_READ_S = 0.3  # an SSE response never ends: read this long, then check what came
EVENT_STREAMS = ("/api/events", "/api/stream")
MAX_FAILURES = 5


def run(base: str, label: str, counts: tuple[int, int]) -> dict[str, Any]:
    method, path = label.split(" ", 1)
    operation = schemathesis.openapi.from_url(base + "/openapi.json")[path][method]
    report: dict[str, Any] = {"op": label, "cases": 0, "statuses": Counter(), "failures": []}
    session = requests.Session()
    timeout = STREAM_READ_S if path in EVENT_STREAMS else 30.0
    for mode, examples in zip((GenerationMode.POSITIVE, GenerationMode.NEGATIVE), counts):
        if examples:
            fuzz(operation, mode, examples, base, session, timeout, report)
    return report


def fuzz(
    operation: Any, mode: GenerationMode, examples: int, base: str,
    session: requests.Session, timeout: float, report: dict[str, Any],
) -> None:  # fmt: skip
    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(
        max_examples=examples, deadline=None, database=None, derandomize=False,
        phases=[Phase.generate], suppress_health_check=list(HealthCheck),
    )  # fmt: skip
    def one(case: Any) -> None:
        response = case.call(session=session, base_url=base, timeout=timeout)
        report["cases"] += 1
        report["statuses"][response.status_code] += 1
        try:
            case.validate_response(response, checks=CHECKS)
        except BaseException as exc:  # noqa: BLE001 - FailureGroup is a BaseExceptionGroup
            if len(report["failures"]) < MAX_FAILURES:
                report["failures"].append(f"[{mode.value}] {exc}"[:3000])

    try:
        one()
    except Unsatisfiable:
        if mode is GenerationMode.POSITIVE:
            raise  # (negative: the operation takes no input that could be invalid)


def main(argv: list[str]) -> int:
    base, jobs = argv[0], argv[1:]
    for job in jobs:
        label, _, counts = job.rpartition("=")
        positive, negative = (int(n) for n in counts.split(","))
        print(json.dumps(run(base, label, (positive, negative))), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
