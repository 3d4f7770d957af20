"""``@app.job(...)`` refuses options it does not know, at import, naming the closest one: a
typo like ``max_atempts=1`` must not silently leave the default of 3 attempts in force."""

from __future__ import annotations

import pytest

from conveyor import Conveyor


@pytest.mark.parametrize(("typo", "meant"), [
    ("max_atempts", "max_attempts"), ("max_attempt", "max_attempts"), ("time_out", "timeout"),
    ("concurency", "concurrency"), ("limitkey", "limit_key"),
])
def test_a_misspelt_option_raises_naming_the_closest(typo: str, meant: str) -> None:
    app = Conveyor(redis_url="redis://127.0.0.1:1")
    with pytest.raises(TypeError, match=f"unknown option '{typo}': did you mean '{meant}'"):
        @app.job(**{typo: 1})
        async def send(to: str) -> None: ...

    assert "send" not in app.registry


def test_an_option_with_no_close_match_lists_the_valid_ones() -> None:
    app = Conveyor(redis_url="redis://127.0.0.1:1")
    with pytest.raises(TypeError, match=r"unknown option 'retries': \(valid options: name, "):
        app.job(retries=0)


def test_valid_options_still_register() -> None:
    app = Conveyor(redis_url="redis://127.0.0.1:1")

    @app.job(queue="mail", max_attempts=1, timeout=1.0, rate="6/m", concurrency=2)
    async def send(to: str) -> None: ...

    assert app.registry["send"].max_attempts == 1
