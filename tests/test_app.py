from pathlib import Path

from streamlit.testing.v1 import AppTest

ROOT = Path(__file__).resolve().parent.parent


def test_overview_renders():
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=60).run()
    assert not at.exception
    assert any("Gridworld-pinpad" in h.value for h in at.header)
    at.number_input[0].set_value(5).run()
    assert not at.exception
