from pathlib import Path

from streamlit.testing.v1 import AppTest

ROOT = Path(__file__).resolve().parent.parent


def test_overview_renders():
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=60).run()
    assert not at.exception
    assert any("Gridworld-pinpad" in h.value for h in at.header)
    at.number_input[0].set_value(5).run()
    assert not at.exception


def test_probes_page_renders_on_shipped_reports():
    at = AppTest.from_file(str(ROOT / "pages" / "base_model.py"), default_timeout=60).run()
    assert not at.exception
    assert len(at.get("plotly_chart")) >= 1 and not at.warning


def test_probes_page_explains_missing_reports(tmp_path, monkeypatch):
    """On an empty checkpoint folder the page says which command makes the report, and does not crash."""
    import streamlit as st

    import irl_core.reports as reports
    monkeypatch.setattr(reports, "SHIPPED", tmp_path)
    st.cache_data.clear()
    at = AppTest.from_file(str(ROOT / "pages" / "base_model.py"), default_timeout=60).run()
    assert not at.exception
    assert at.warning and "python -m irl_core probes" in at.warning[0].value
    st.cache_data.clear()
