"""Fuzz harness for the XML parser and the sans-I/O sessions (see README.md here).

`targets` holds the targets and their oracles, `mutate` the mutations, `program` the input
model and corpus format, `runner` the long runs (``python -m tests.fuzz``); `test_fuzz` runs a
bounded, derandomized number of examples as part of pytest.
"""
