"""The agent as a real process (real mosquitto, the SANE ``test`` backend, a real HTTP file
endpoint): pages waiting for the fleet lie encrypted on its card, reach the fleet once each
byte-identical after a restart, and a card whose key went missing stops the agent with a clear error
and nothing deleted."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from device.agent import Agent
from device.config import AgentConfig
from device.delivery.sealing import MAGIC
from device.errors import OutboxKeyError
from tests.device.agent_harness import AgentProcess, FileReceiver, Recorder, agent_config, sane_conf, wait_until
from tests.services import Mosquitto


def test_pages_wait_encrypted_and_reach_the_fleet_once(
    tmp_path: Path, mosquitto: Mosquitto, sane_dir: Path, recorder: Recorder, receiver: FileReceiver
) -> None:
    """Three feeder pages captured with no fleet: each file on the card is sealed (no PNG in it)
    and the key-encryption key lives outside the state directory. With its data key removed the
    agent refuses to start, saying why, and deletes nothing. With the key back and the fleet
    there, each page file arrives once, its sha256 that of the page event; the card keeps nothing."""
    board = tmp_path / "board"
    sane_conf(sane_dir)
    config = agent_config(tmp_path, mosquitto.port, at_rest={"key_file": str(board / "outbox.kek")})
    agent = AgentProcess(config, tmp_path, sane_dir)
    try:
        agent.start()
        result = agent.scan(source="adf", max_pages=3)
        assert result["pages"] == 3, agent.logs()
        recorder.wait_for(lambda r: len(r.events("page_captured")) == 3, 30, "the page events")
        shas = {e.page.sha256 for e in recorder.events("page_captured")}
        files = agent.state / "files"
        blobs = {p.name: p.read_bytes() for p in files.iterdir()}
        assert set(blobs) == shas
        assert all(b.startswith(MAGIC) and b"PNG" not in b and b"IHDR" not in b for b in blobs.values())
        assert (board / "outbox.kek").stat().st_size == 32 and not (agent.state / "outbox.kek").exists()
        assert agent.terminate() == 0

        key = (agent.state / "outbox.key").read_bytes()
        (agent.state / "outbox.key").unlink()
        with pytest.raises(OutboxKeyError, match=fr"is missing and {len(blobs)} encrypted file\(s\) wait"):
            Agent(AgentConfig.model_validate(config))  # the outbox is its first part: nothing has started
        assert {p.name: p.read_bytes() for p in files.iterdir()} == blobs
        (agent.state / "outbox.key").write_bytes(key)  # restored, as the README says

        config["fleet_url"] = receiver.url
        agent.path.write_text(yaml.safe_dump(config))
        agent.start()
        wait_until(lambda: agent.status()["outbox"]["files"] == 0, 30, "the files to reach the fleet")
        # (the test backend's sheets are alike: equal pages are one file, sent once)
        assert set(receiver.files) == shas and receiver.puts == len(shas) and receiver.bad == 0
        assert all(body.startswith(b"\x89PNG") for body in receiver.files.values())
        assert not list(files.iterdir())
    finally:
        agent.close()
