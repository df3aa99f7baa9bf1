"""What the app does, without Streamlit: adapters and runs, questions (check, answer, explain), rows, reports."""
