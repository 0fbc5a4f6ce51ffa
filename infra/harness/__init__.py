"""Harnesses that run the whole stack under stress, shared by the tests and the benchmarks: fault
scenarios (`chaos`), the soak (`soak`, `python -m infra.harness.soak`) and WebSocket abuse (`abuse`)."""
