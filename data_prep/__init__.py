"""Raw public data (UCSC Xena GDC hub) -> tidy per-modality tables for coherent_jax."""
