"""The recommendation engine: data, splits, models, user encoders, evaluation, tuning, storage."""
