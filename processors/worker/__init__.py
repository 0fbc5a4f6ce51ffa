"""The worker: Faust runs the consumer group, the table and its changelog; the batch protocol
(`batch.py`) folds the input with the pure core and stores it effectively once."""
