"""The app: `streamlit run app.py`. Pages live in app_pages/ and only read artifacts through irl_core.

The sidebar (environment, checkpoint set, device; irl_core.app_state) is drawn here, before any page, and
imports no torch, so the app opens quickly; pages read the choice with ``app_state.current()``.
"""
import streamlit as st

from irl_core import app_state

# page_icon: an emoji favicon is drawn in the browser; a page's :material: icon would be fetched from
# fonts.gstatic.com instead (the app must load nothing from outside).
st.set_page_config(page_title="Internal RL explorer", page_icon="🧭", layout="wide")

# the menu follows the sidebar's environment (its widget state is set before this rerun starts)
env = st.session_state.get(app_state.ENV_KEY, "grid")
pages = [st.Page(p.file, title=p.title, icon=p.icon, url_path=p.url_path or None, default=not p.url_path)
         for p in app_state.pages(env)]
page = st.navigation(pages)
app_state.sidebar()
page.run()
