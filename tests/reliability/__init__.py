"""Reliability and security proof (issue 15): the fault matrix, restarts, approval
spoofing, prompt injection and secret hygiene. `docs/reliability.md` maps every fault to
its documented outcome and the test that proves it."""
