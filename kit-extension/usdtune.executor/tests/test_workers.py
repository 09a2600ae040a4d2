"""Worker processes end with the task that started them: a cancelled task or a shutting-down
executor stops them (`stop_all`), and a cancelled task cannot start new ones."""
import subprocess

import pytest

from usdtune_executor import workers


def test_stop_all_ends_running_workers_and_blocks_new_ones_until_the_next_task(tmp_path):
    stage = tmp_path / "empty.usda"
    stage.write_text("#usda 1.0\n")
    # A validation worker waits on stdin for jobs: it runs until stopped.
    waiting = workers.spawn("validation_worker", stage, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    assert waiting.poll() is None
    assert workers.stop_all(grace=5) == 1
    assert waiting.poll() is not None
    with pytest.raises(workers.Stopped):
        workers.spawn("validation_worker", stage)
    workers.begin_task()
    done = workers.run("validation_worker", stage, input=b"", capture_output=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert workers.stop_all() == 0, "a worker that ended is not tracked"
    workers.begin_task()
