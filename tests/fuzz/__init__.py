"""Byte-level fuzzing of the client core (``DiscordConnection``); see docs/testing.md.

``corpus.py``          the case format (one file per case in ``corpus/``) and WebSocket framing;
``make_corpus.py``     regenerates ``corpus/`` from real sessions against the local gateway;
``mutators.py``        byte, frame and payload mutations;
``driver.py``          runs one case against a fresh client, as an adapter would, and checks
                       the error contract;
``engine.py``          the time-boxed loop of seeded mutations, failure classes, crash files;
``__main__.py``        ``python -m tests.fuzz``: the long profile, replay, minimize;
``atheris_client.py``  a coverage-guided entry point (atheris), not in CI;
``test_fuzz.py``       what CI runs; ``test_regressions.py`` what the fuzzer found.
"""
