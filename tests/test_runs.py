import pytest

from irl_core.runs import Run


def test_recording_marks_failed_and_cancelled(tmp_path):
    run = Run(tmp_path / "a")
    run.set_status("running", step=0)
    step = 3
    with pytest.raises(ValueError):
        with run.recording(lambda: step):
            raise ValueError("bad batch")
    st = run.status()
    assert st["status"] == "failed" and "ValueError: bad batch" in st["error"] and "bad batch" in st["error_tail"]
    run2 = Run(tmp_path / "b")
    with pytest.raises(KeyboardInterrupt):
        with run2.recording(lambda: step):
            raise KeyboardInterrupt
    assert run2.status()["status"] == "cancelled" and run2.status()["step"] == 3


def test_metrics_tolerate_a_partial_line_and_truncate(tmp_path):
    run = Run(tmp_path / "r")
    for s in range(1, 6):
        run.log(s, loss=1.0 / s)
    with open(run.path / "metrics.jsonl", "a") as f:
        f.write('{"step": 6, "lo')  # a line being written
    assert [r["step"] for r in run.metrics()] == [1, 2, 3, 4, 5]
    run.truncate_metrics(3)
    assert [r["step"] for r in run.metrics()] == [1, 2, 3]
