"""Stream processing: the pure metrics core (`state`, `metrics`) and the Faust glue that feeds it.

Kept import-light on purpose: importing `processors` loads nothing, so the core can be used (by tests,
replay, the API) without pulling in Faust or a Kafka client.
"""
