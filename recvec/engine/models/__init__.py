"""The model kinds (popularity, ALS, text encoders, sequence encoders, hybrids) and fitting them on a split."""
