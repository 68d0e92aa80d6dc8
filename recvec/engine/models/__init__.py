"""The model kinds (popularity, ALS, text encoders, sequence encoders, hybrids, the item-item peers)
and fitting them on a split (``fit.py``). ``MODEL_KINDS`` lives here, free of heavy imports, for
the CLI's choices."""

#: Every model kind ``ModelConfig(kind=...)`` accepts.
MODEL_KINDS = ("popular", "als", "als-time", "text", "hybrid", "sequence", "ease", "transition")
