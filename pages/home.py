import streamlit as st

st.title("MedMCQA LoRA")
st.write("Fine-tune a small Llama-family model on MedMCQA with LoRA, then ask it questions here.")
st.info("No adapter yet? Train one offline: `python train_adapter.py --preset cpu-demo --data-dir ../shared/data/medmcqa`")
