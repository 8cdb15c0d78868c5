"""The control plane's settings from the environment (chalicelib/config.py, docs/local.md)."""

from __future__ import annotations

import pytest

from chalicelib.config import load_settings


def test_an_account_may_have_50_concurrent_calls_unless_the_deployment_says_otherwise() -> None:
    assert load_settings({}).max_concurrent_calls == 50  # docs/api.md, concurrent calls
    assert load_settings({"SIPLINE_MAX_CONCURRENT_CALLS": "400"}).max_concurrent_calls == 400


@pytest.mark.parametrize("raw", ["0", "-3", "many", "2.5"])
def test_a_concurrent_call_limit_that_is_not_a_whole_number_from_1_is_named(raw: str) -> None:
    with pytest.raises(
        ValueError,
        match=f"SIPLINE_MAX_CONCURRENT_CALLS must be a whole number from 1 \\(got '{raw}'\\)",
    ):
        load_settings({"SIPLINE_MAX_CONCURRENT_CALLS": raw})
