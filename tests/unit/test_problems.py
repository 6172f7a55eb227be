import orjson
import pytest

from shared.errors import ErrorDetail, TooManyRequests, Unavailable
from shared.problems import PROBLEM_JSON, from_error, problem_body, validation_details

pytestmark = pytest.mark.unit


def test_problem_shape() -> None:
    body = problem_body(422, "bad", instance="/x", errors=[ErrorDetail("body.a", "required")])
    assert set(body) == {"type", "title", "status", "detail", "instance", "errors"}
    assert body["errors"] == [{"location": "body.a", "message": "required", "value": None}]
    assert body["title"] == "Unprocessable Content"


def test_locations_are_dotted_with_indexes() -> None:
    details = validation_details(
        [{"loc": ("events", 3, "timestamp"), "msg": "invalid", "input": "x"}], prefix=("body",)
    )
    assert details[0].location == "body.events[3].timestamp"


def test_large_values_are_not_echoed_whole() -> None:
    body = problem_body(400, "bad", errors=[ErrorDetail("body", "too big", "x" * 10_000)])
    assert len(orjson.dumps(body)) < 1000


@pytest.mark.parametrize(
    "exc,status", [(Unavailable(), 503), (TooManyRequests(retry_after=3), 429)]
)
def test_retryable_errors_carry_retry_after(exc, status) -> None:
    response = from_error(exc, "/api/x")
    assert response.status_code == status
    assert response.media_type == PROBLEM_JSON
    assert int(response.headers["retry-after"]) >= 1
