"""The app: `streamlit run app.py`. Pages live in pages/ and only read artifacts through irl_core."""
import streamlit as st

st.set_page_config(page_title="Internal RL explorer", layout="wide")

pages = [
    st.Page("pages/overview.py", title="Overview", icon=":material/home:", default=True),
    st.Page("pages/base_model.py", title="Linear probes", icon=":material/layers:", url_path="probes"),
]
st.navigation(pages).run()
