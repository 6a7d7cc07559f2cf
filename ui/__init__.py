"""The Streamlit app's shared pieces (the pages live in pages/, the library in lab/)."""
