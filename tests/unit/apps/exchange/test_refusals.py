"""The idempotency key of a money request (withdrawals and Lightning payments share it)."""

from __future__ import annotations

import json

import pytest

from scnode_exchange.refusals import RefusalError, idempotency_key, refusal_response


def test_the_field_or_the_header_and_never_two_different_ones() -> None:
    assert idempotency_key("k-1", None) == "k-1"
    assert idempotency_key(None, "k-2") == "k-2"
    assert idempotency_key("k-3", "k-3") == "k-3"
    with pytest.raises(RefusalError) as missing:
        idempotency_key(None, None)
    assert (missing.value.status, missing.value.code) == (422, "idempotency_key_required")
    with pytest.raises(RefusalError) as differ:
        idempotency_key("k-1", "k-2")
    answer = refusal_response(differ.value)
    assert answer.status_code == 422
    assert json.loads(bytes(answer.body)) == {
        "detail": "field and header idempotency keys differ",
        "code": "bad_request",
    }
