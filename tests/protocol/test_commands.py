"""The command-argument contract: one model per command name, unknown arguments refused."""

from __future__ import annotations

from typing import get_args

import pytest
from pydantic import ValidationError

from protocol.commands import COMMAND_ARGS, ForceArgs, TestScanArgs, UpdateOffer, error_fields, parse_args
from protocol.messages import CommandName


def test_every_command_name_has_an_arguments_model() -> None:
    assert set(COMMAND_ARGS) == set(get_args(CommandName))


def test_parse_args_returns_the_commands_model() -> None:
    assert parse_args("test_scan", {"source": "adf", "max_pages": 2}) == TestScanArgs(source="adf", max_pages=2)
    assert parse_args("restart_agent", {}) == ForceArgs(force=False)
    offer = parse_args("update", {"rollout_id": "r1", "url": "https://fleet/b", "version": "0.2.0"})
    assert isinstance(offer, UpdateOffer) and offer.kind == "app"
    assert parse_args("collect_logs", {}).model_dump() == {}


@pytest.mark.parametrize(
    ("name", "args", "fields"),
    [
        ("test_scan", {"max_pages": 0}, ["max_pages"]),
        ("test_scan", {"source": "camera"}, ["source"]),
        ("reboot", {"forse": True}, ["forse"]),
        ("collect_logs", {"since": "yesterday"}, ["since"]),
        ("rotate_certificate", {"now": 1}, ["now"]),
        ("update", {"rollout_id": "r1", "url": "ftp://x", "version": "1"}, ["url"]),
        ("update", {"url": "https://x/b"}, ["rollout_id", "version"]),
    ],
)
def test_bad_arguments_name_their_fields(name: str, args: dict[str, object], fields: list[str]) -> None:
    """Bad input: what the fleet answers 422 with and the device puts in its rejection."""
    with pytest.raises(ValidationError) as caught:
        parse_args(name, args)  # type: ignore[arg-type]
    assert error_fields(caught.value) == fields
