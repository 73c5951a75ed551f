"""The HTTP face of the status model (extra ``dashboard``): above ``_observe``."""
