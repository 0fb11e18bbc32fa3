"""train/logs.py: the files a run documents exist from its start, and a resumed run keeps what they hold."""

import json

from clipblip.train.config import TrainConfig
from clipblip.train.logs import Logger


def _logger(out, start_step=0):
    return Logger(out, TrainConfig(progress=False, out=str(out)), main=True, start_step=start_step)


def test_rejects_file_exists_empty_from_the_start_and_a_resume_keeps_it(tmp_path):
    log = _logger(tmp_path)
    log.close()
    assert (tmp_path / "rejects.jsonl").read_text() == ""  # README lists it among a run's outputs: nothing rejected
    log = _logger(tmp_path)
    log.rejects([("img-7", "cannot decode")])
    log.close()
    log = _logger(tmp_path, start_step=5)  # resumed: the records skipped before stay listed
    log.close()
    lines = [json.loads(line) for line in (tmp_path / "rejects.jsonl").read_text().splitlines()]
    assert lines == [{"id": "img-7", "reason": "cannot decode"}]

